"""The training loop every model shares, and what it reports.

* :class:`History` -- what ``fit`` returns: the per-epoch logs and why training stopped.
* :class:`Callback` -- hooks into ``fit`` (:mod:`fastrnn.callbacks` has the usual ones).
* :class:`NonFiniteLossError` -- raised inside a step whose loss or gradient is not
  finite; ``fit`` catches it, restores the last finite weights and says so.

A model subclasses ``_Fittable`` and implements one mini-batch's forward, loss, backward
and update; ``_fit`` runs the epochs, the shuffling, the progress bar, validation and the
callbacks around it.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._validate import positive_int, seed_value
from .losses import _Loss
from .module import Module
from .optim import Adam, Optimizer, clip_grad_norm

__all__ = ["History", "Callback", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """Raised inside a training step whose loss or gradient is not finite.

    >>> import fastrnn
    >>> issubclass(fastrnn.training.NonFiniteLossError, FloatingPointError)
    True
    """


@dataclass
class History:
    """What ``fit`` returns: per-epoch ``history[name]`` lists (``loss``, the metric, and
    ``val_*`` with validation data), the number of epochs run and why training stopped.

    >>> from fastrnn.training import History
    >>> h = History()
    >>> h.append({"loss": 0.9}); h.append({"loss": 0.5})
    >>> h["loss"], h.stop_reason
    ([0.9, 0.5], 'completed')
    """

    history: dict = field(default_factory=dict)
    epochs: int = 0
    stop_reason: str = "completed"

    def append(self, logs: dict) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]


class Callback:
    """Hooks into ``fit``.  ``on_epoch_end`` returning True stops training.

    >>> import numpy as np
    >>> import fastrnn
    >>> class StopAtLoss(fastrnn.training.Callback):
    ...     def on_epoch_end(self, model, epoch, logs):
    ...         return logs["loss"] < 10.0              # True stops training
    >>> model = fastrnn.SequenceModel.build("rnn", input_size=1, hidden_size=4, output_size=1,
    ...                                     head="many_to_many", loss="mse", seed=0)
    >>> x = np.zeros((8, 5, 1), np.float32)
    >>> history = model.fit(x, x, epochs=5, callbacks=[StopAtLoss()], progress=False)
    >>> history.epochs
    1
    """

    def on_train_begin(self, model, optimizer) -> None:
        pass

    def on_epoch_end(self, model, epoch: int, logs: dict) -> bool | None:
        return None

    def on_train_end(self, model) -> None:
        pass


def _progress(iterable, enabled: bool, desc: str, total: int):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:      # tqdm is a dependency; run without a bar if it is missing
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def loss_sums(loss_fn: _Loss, out: np.ndarray, target: np.ndarray,
              mask: np.ndarray | None) -> tuple[float, np.ndarray, int, float]:
    """The loss summed over the entries that count, its gradient (of the mean), the count
    and the number of correct predictions: what a mini-batch adds to an epoch's logs.
    The loss says what its entries are (``count_correct``)."""
    loss, grad = loss_fn(out, target, mask)
    n, ok = loss_fn.count_correct(out, target, mask)
    return loss * n, grad, n, ok


class _Fittable(Module):
    """The training loop shared by every model.

    Subclasses set ``loss`` and implement ``_columns(data)`` (arrays indexed by sample),
    ``_train_batch`` (forward, loss, backward and optimizer steps on one mini-batch,
    returning summed loss, loss count, correct count) and ``_eval_batch`` (the same sums,
    no update).
    """

    loss: _Loss
    #: set inside a :func:`fastrnn.distributed.data_parallel` block
    _data_parallel = None

    @property
    def metric_name(self) -> str | None:
        """The name of the metric logged beside the loss (the loss's), or None."""
        return self.loss.metric_name

    def _train_batch(self, batch: list, optimizer: Optimizer, clip_norm: float | None,
                     snapshot: list) -> tuple[float, float, float]:
        raise NotImplementedError

    def _eval_batch(self, batch: list) -> tuple[float, float, float]:
        raise NotImplementedError

    def _validation_columns(self, validation_data):
        """``validation_data`` of a model whose samples are ``(x, y)`` or ``(x, y,
        lengths)``, as :meth:`_columns` makes them (names saying "validation"); None
        stays None."""
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError("validation_data must be (x, y) or (x, y, lengths)")
        lengths = validation_data[2] if len(validation_data) == 3 else None
        return self._columns(validation_data[0], validation_data[1], lengths,
                             ("validation x", "validation y"))

    def _make_optimizer(self, optimizer) -> Optimizer:
        if optimizer is None:
            return Adam(self.parameters(), lr=1e-3)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastrnn.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        return optimizer

    def _everywhere(self, flag: bool) -> bool:
        """``flag`` on this rank and, data-parallel, on every rank."""
        return flag if self._data_parallel is None else self._data_parallel.all(flag)

    def _step(self, optimizer, loss_sum: float, count: float, clip_norm: float | None,
              snapshot: list) -> None:
        """One guarded update from the gradients of the mean loss over ``count`` entries
        (summed over the ranks, data-parallel): refuse non-finite numbers, keep the weights
        that gave the last finite loss in ``snapshot``, clip, step."""
        params = self.parameters()
        if self._data_parallel is not None:
            loss_sum, count = self._data_parallel.reduce(params, loss_sum, count)
        loss = loss_sum / max(count, 1)
        if clip_norm is not None:
            norm = clip_grad_norm(params, clip_norm)
        else:
            norm = math.sqrt(sum(float(np.vdot(p.grad, p.grad)) for p in params))
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise NonFiniteLossError(f"non-finite loss ({loss}) or gradient norm ({norm})")
        for buf, p in zip(snapshot, params):
            np.copyto(buf, p.data)
        optimizer.step()

    def _fit(self, columns, validation, *, epochs, batch_size, optimizer, clip_norm,
             callbacks, progress, shuffle, seed, train_kwargs,
             initial_epoch=0) -> History:
        epochs = positive_int(epochs, "epochs")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral):
            raise TypeError(f"initial_epoch must be an int, got {type(initial_epoch).__name__}")
        initial_epoch = int(initial_epoch)
        if not 0 <= initial_epoch <= epochs:
            raise ValueError(f"initial_epoch must lie in [0, epochs={epochs}], "
                             f"got {initial_epoch}")
        batch_size = positive_int(batch_size, "batch_size")
        if clip_norm is not None and not (math.isfinite(clip_norm) and clip_norm > 0):
            raise ValueError(f"clip_norm must be a positive number, got {clip_norm}")
        optimizer = self._make_optimizer(optimizer)
        callbacks = list(callbacks or ())
        dp = self._data_parallel
        if dp is not None:
            seed = dp.begin(self, seed)          # rank 0's seed and weights on every rank
        rng = np.random.default_rng(seed_value(seed))
        N = columns[0].shape[0]
        if shuffle:
            for _ in range(initial_epoch):      # the orders of the epochs already run
                rng.permutation(N)
        history = History()
        snapshot = [p.data.copy() for p in self.parameters()]
        for cb in callbacks:
            cb.on_train_begin(self, optimizer)
        try:
            for epoch in range(initial_epoch, epochs):
                order = rng.permutation(N) if shuffle else np.arange(N)
                starts = range(0, N, batch_size)
                bar = _progress(starts, progress, f"epoch {epoch + 1}/{epochs}", len(starts))
                total = count = correct = 0.0
                try:
                    for s in bar:
                        idx, w = order[s:s + batch_size], 1.0
                        if dp is not None:           # this rank's part of the batch
                            idx, w = dp.shard(idx)
                        batch = [None if c is None else c[idx] for c in columns]
                        ls, n, ok = self._train_batch(batch, optimizer, clip_norm, snapshot,
                                                      **train_kwargs)
                        total, count, correct = total + w * ls, count + w * n, correct + w * ok
                        if bar is not starts:
                            bar.set_postfix(self._logs(total, count, correct), refresh=False)
                except NonFiniteLossError as err:
                    for buf, p in zip(snapshot, self.parameters()):
                        np.copyto(p.data, buf)
                    history.stop_reason = (f"stopped at epoch {epoch + 1}: {err}; the weights "
                                           f"are those of the last finite loss")
                    warnings.warn(f"fit {history.stop_reason}", RuntimeWarning, stacklevel=3)
                    break
                finally:
                    if bar is not starts:
                        bar.close()
                if dp is not None:
                    total, count, correct = dp.sum(total, count, correct)
                logs = self._logs(total, count, correct)
                if validation is not None:
                    logs.update({f"val_{k}": v for k, v in self._evaluate_columns(
                        validation, batch_size, dp).items()})
                history.append(logs)
                history.epochs = epoch + 1 - initial_epoch
                if any([cb.on_epoch_end(self, epoch, logs) for cb in callbacks]):
                    history.stop_reason = f"stopped early after epoch {epoch + 1}"
                    break
        finally:
            for cb in callbacks:
                cb.on_train_end(self)
        return history

    def _logs(self, total, count, correct) -> dict:
        logs = {"loss": total / max(count, 1)}
        metric = self.metric_name
        if metric is not None:
            logs[metric] = correct / max(count, 1)
        return logs

    def _evaluate_columns(self, columns, batch_size, data_parallel=None) -> dict:
        if data_parallel is not None:          # each rank its part, the sums of all
            columns = data_parallel.part(columns)
        total = count = correct = 0.0
        N = columns[0].shape[0]
        for s in range(0, N, batch_size):
            batch = [None if c is None else c[s:s + batch_size] for c in columns]
            ls, n, ok = self._eval_batch(batch)
            total, count, correct = total + ls, count + n, correct + ok
        if data_parallel is not None:
            total, count, correct = data_parallel.sum(total, count, correct)
        return self._logs(total, count, correct)
