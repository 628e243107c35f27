"""Callbacks for ``fit``: :class:`EarlyStopping`, :class:`ModelCheckpoint` and
:class:`LearningRateScheduler`.

A callback is a :class:`~fastrnn.training.Callback`: ``fit`` calls ``on_train_begin``,
``on_epoch_begin`` and ``on_epoch_end`` around every epoch (True from the latter stops
training), ``on_batch_begin`` and ``on_batch_end`` around every mini-batch, and
``on_train_end``, also when training stops early or fails.
"""

from __future__ import annotations

from . import io
from ._validate import positive_int
from .optim import LRScheduler
from .optim.optimizer import _nonneg
from .training import Callback

__all__ = ["EarlyStopping", "ModelCheckpoint", "LearningRateScheduler"]


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
        io.save(model, self.path, self.optimizer if self.save_optimizer else None,
                extra={"epoch": epoch, "logs": logs})
        return False


class LearningRateScheduler(Callback):
    """Set the learning rate from a schedule while ``fit`` trains, per epoch or per step
    (``interval="epoch"`` or ``"step"``; a step is one mini-batch, all its ``tbptt``
    windows included).

    ``schedule`` is one of

    * a schedule of :mod:`fastrnn.optim` (``StepLR``, ``ExponentialLR``,
      ``CosineAnnealingLR``, ``LambdaLR``, ...) made on the optimizer given to ``fit``:
      its ``step()`` runs after every epoch, as in a PyTorch loop, or after every
      mini-batch;
    * a function ``schedule(index, lr) -> new lr`` (Keras's ``LearningRateScheduler``):
      called before every epoch (``index`` the epoch, from 0) or every mini-batch
      (``index`` the step, from 0 over the whole run) with each parameter group's current
      rate, which it sets to the rate returned.

    ``lrs`` lists the rate (of the first parameter group) each epoch or step trained
    with.

    >>> import numpy as np, fastrnn
    >>> from fastrnn.optim import Adam, CosineAnnealingLR
    >>> model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=4,
    ...                                     output_size=2, head="many_to_one", seed=0)
    >>> x, y = np.zeros((8, 3, 2), np.float32), np.arange(8) % 2
    >>> opt = Adam(model.parameters(), lr=0.01)
    >>> cosine = fastrnn.LearningRateScheduler(CosineAnnealingLR(opt, T_max=4))
    >>> _ = model.fit(x, y, epochs=4, optimizer=opt, callbacks=[cosine], progress=False)
    >>> [round(lr, 5) for lr in cosine.lrs]
    [0.01, 0.00854, 0.005, 0.00146]
    >>> warmup = fastrnn.LearningRateScheduler(lambda step, lr: 0.01 * min(1, (step + 1) / 4),
    ...                                        interval="step")
    >>> _ = model.fit(x, y, epochs=3, batch_size=4, callbacks=[warmup], progress=False)
    >>> warmup.lrs
    [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01]
    """

    def __init__(self, schedule, interval: str = "epoch"):
        if interval not in ("epoch", "step"):
            raise ValueError(f"interval must be 'epoch' or 'step', got {interval!r}")
        if not isinstance(schedule, LRScheduler) and not callable(schedule):
            raise TypeError(f"schedule must be a fastrnn.optim schedule (an LRScheduler) or "
                            f"a function (index, lr) -> lr, got {type(schedule).__name__}")
        self.schedule, self.interval = schedule, interval
        self.lrs: list[float] = []

    def on_train_begin(self, model, optimizer):
        if isinstance(self.schedule, LRScheduler) and self.schedule.optimizer is not optimizer:
            raise ValueError("the schedule sets the rate of another optimizer than the one "
                             "fit trains with: give fit optimizer=schedule.optimizer")
        self.optimizer, self.lrs = optimizer, []

    def _begin(self, index: int) -> None:
        if not isinstance(self.schedule, LRScheduler):
            for i, group in enumerate(self.optimizer.param_groups):
                group["lr"] = _nonneg(self.schedule(index, group["lr"]),
                                      f"the rate schedule({index}, lr) returned for "
                                      f"param_groups[{i}]")
        self.lrs.append(self.optimizer.param_groups[0]["lr"])

    def _end(self) -> None:
        if isinstance(self.schedule, LRScheduler):
            self.schedule.step()

    def on_epoch_begin(self, model, epoch):
        if self.interval == "epoch":
            self._begin(epoch)

    def on_batch_begin(self, model, step):
        if self.interval == "step":
            self._begin(step)

    def on_batch_end(self, model, step, logs):
        if self.interval == "step":
            self._end()

    def on_epoch_end(self, model, epoch, logs):
        if self.interval == "epoch":
            self._end()
        return False
