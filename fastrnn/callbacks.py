"""Callbacks for ``fit``: :class:`EarlyStopping` and :class:`ModelCheckpoint`.

A callback is a :class:`~fastrnn.training.Callback`: ``fit`` calls ``on_train_begin``,
``on_epoch_end`` after every epoch (True stops training) and ``on_train_end``, also when
training stops early or fails.
"""

from __future__ import annotations

from . import io
from ._validate import positive_int
from .training import Callback

__all__ = ["EarlyStopping", "ModelCheckpoint"]


def _improved(value, best, mode, min_delta) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` (e.g. ``"val_loss"``) has not improved by ``min_delta`` for
    ``patience`` epochs; optionally restore the best weights seen.

    >>> import fastrnn
    >>> stop = fastrnn.EarlyStopping(monitor="val_loss", patience=3)
    >>> # model.fit(x, y, validation_data=(xv, yv), callbacks=[stop])
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "min", restore_best_weights: bool = True):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, float(min_delta)
        self.patience = positive_int(patience, "patience")
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, model, optimizer):
        self.best, self.wait, self.best_weights, self.stopped_epoch = None, 0, None, None

    def on_epoch_end(self, model, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which is not among "
                             f"the logged values {sorted(logs)}")
        value = logs[self.monitor]
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = model.state_dict()
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model):
        if self.restore_best_weights and self.best_weights is not None:
            model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (and the optimizer's state) to ``path`` after each epoch, or only
    when ``monitor`` improved with ``save_best_only``, with :func:`fastrnn.io.save`.

    >>> import fastrnn
    >>> keep = fastrnn.ModelCheckpoint("best.npz", monitor="val_loss", save_best_only=True)
    >>> # model.fit(x, y, validation_data=(xv, yv), callbacks=[keep])
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "min", save_optimizer: bool = True):
        self.path, self.monitor, self.mode = path, monitor, mode
        self.save_best_only, self.save_optimizer = save_best_only, save_optimizer

    def on_train_begin(self, model, optimizer):
        self.best, self.optimizer = None, optimizer

    def on_epoch_end(self, model, epoch, logs):
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None or not _improved(value, self.best, self.mode, 0.0):
                return False
            self.best = value
        io.save(self.path, model, self.optimizer if self.save_optimizer else None,
                extra={"epoch": epoch, "logs": logs})
        return False
