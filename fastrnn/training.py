"""The training loop every model shares, and what it reports.

* :class:`History` -- what ``fit`` returns: the per-epoch logs and why training stopped.
* :class:`Callback` -- hooks into ``fit`` (:mod:`fastrnn.callbacks` has the usual ones).
* :class:`NonFiniteLossError` -- raised inside a step whose loss or gradient is not
  finite; ``fit`` catches it, restores the last finite weights and says so.

A model subclasses ``_Fittable`` and implements one mini-batch's forward, loss, backward
and update; ``_fit`` runs the epochs, the shuffling, the progress bar, validation and the
callbacks around it, and ``_fit_data`` makes what it trains on (validation split, sample
and class weights).

A weighted loss is Keras's: each entry's loss times its weight, summed and divided by the
number of entries that count (not by the sum of the weights, as PyTorch's
``CrossEntropyLoss(weight=)`` does); an epoch's ``loss`` is that sum over all its
batches divided by their count.  The metrics are not weighted.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ._summary import summary_table
from ._validate import float_array, positive_int, probability, seed_value
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

    ``epoch`` is the epoch's number from 0 (counting the epochs of a resumed run's first
    part, see ``initial_epoch``); ``step`` the mini-batch's number from 0 over the whole
    run (``epoch * batches_per_epoch + batch``); the logs of a batch are its mean loss
    (and metric).

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

    def on_epoch_begin(self, model, epoch: int) -> None:
        pass

    def on_batch_begin(self, model, step: int) -> None:
        pass

    def on_batch_end(self, model, step: int, logs: dict) -> None:
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
              mask: np.ndarray | None,
              weight: np.ndarray | None = None) -> tuple[float, np.ndarray, int, float]:
    """The loss summed over the entries that count (each times its ``weight``, if given),
    its gradient (of the mean), the count and the number of correct predictions: what a
    mini-batch adds to an epoch's logs.  The loss says what its entries are
    (``count_correct``)."""
    loss, grad = loss_fn(out, target, mask) if weight is None else \
        loss_fn(out, target, mask, weight)
    n, ok = loss_fn.count_correct(out, target, mask)
    return loss * n, grad, n, ok


class _Fittable(Module):
    """The training loop shared by every model.

    Subclasses set ``loss`` and implement ``_columns(*data, names=...)`` (arrays indexed
    by sample, checked; ``data`` as the model's ``fit`` takes it, the targets second),
    ``_train_batch`` (forward, loss, backward and optimizer steps on one mini-batch,
    returning summed loss, loss count, correct count) and ``_eval_batch`` (the same sums,
    no update).  The batches they get hold the columns and then the entries' weights
    (None: unweighted).
    """

    loss: _Loss
    #: set inside a :func:`fastrnn.distributed.data_parallel` block
    _data_parallel = None
    #: the names of the arrays of the model's data, the inputs and the targets first
    _data_names: tuple[str, ...] = ("x", "y", "lengths")

    @property
    def metric_name(self) -> str | None:
        """The name of the metric logged beside the loss (the loss's), or None."""
        return self.loss.metric_name

    @property
    def dtype(self) -> np.dtype:
        """The floating dtype the model computes in."""
        raise NotImplementedError

    def _train_batch(self, batch: list, optimizer: Optimizer, clip_norm: float | None,
                     snapshot: list) -> tuple[float, float, float]:
        raise NotImplementedError

    def _eval_batch(self, batch: list) -> tuple[float, float, float]:
        raise NotImplementedError

    def _validation_columns(self, validation_data):
        """``validation_data``, the model's data (the arrays after the targets optional)
        and then optionally sample weights, as :meth:`_fit_data` makes the columns (names
        saying "validation"); None stays None."""
        if validation_data is None:
            return None
        names = self._data_names + ("sample_weight",)
        k = len(self._data_names)
        if not isinstance(validation_data, (tuple, list)) or \
                not 2 <= len(validation_data) <= k + 1:
            forms = [f"({', '.join(names[:n])})" for n in range(2, k + 2)]
            raise TypeError(f"validation_data must be {', '.join(forms[:-1])} or "
                            f"{forms[-1]}")
        v = list(validation_data) + [None] * (k + 1 - len(validation_data))
        columns = self._columns(*v[:k], names=tuple(f"validation {n}"
                                                     for n in self._data_names[:2]))
        return columns + (self._weights(columns[1], v[k], None,
                                        "validation sample_weight"),)

    def _weights(self, y, sample_weight, class_weight, name="sample_weight"):
        """The weight of each entry of the checked targets ``y`` (an array of the leading
        axes of :meth:`_Loss.entry_shape`, broadcast by the loss), ``sample_weight``
        times ``class_weight[class]``; None without either."""
        if sample_weight is None and class_weight is None:
            return None
        shape, dtype = self.loss.entry_shape(y), self.dtype
        w = None
        if sample_weight is not None:
            w = float_array(sample_weight, name, dtype, tuple(range(1, 33)))
            if w.ndim > len(shape) or w.shape != shape[:w.ndim]:
                per_step = f" or {shape} (one a step)" if len(shape) > 1 else ""
                raise ValueError(f"{name} must have shape {shape[:1]} (one weight a "
                                 f"sample){per_step}, got {w.shape}")
            if not (np.isfinite(w).all() and (w >= 0).all()):
                raise ValueError(f"{name} must hold finite weights >= 0")
        if class_weight is not None:
            classes = self.loss.entry_classes(y)
            table = _class_table(class_weight, int(classes.max(initial=0)) + 1, dtype)
            cw = np.where(classes >= 0, table[np.maximum(classes, 0)], 1).astype(dtype)
            w = cw if w is None else cw * w.reshape(w.shape + (1,) * (cw.ndim - w.ndim))
        return w

    def _fit_data(self, data, validation_data, validation_split, sample_weight,
                  class_weight):
        """``(columns, validation)`` for :meth:`_fit`: the checked ``data`` and
        validation data, each ending in the entries' weights.  ``validation_split``
        keeps the last fraction of the samples (before any shuffling) for validation, as
        Keras does, with their sample weights; ``class_weight`` weighs the training
        entries only."""
        split = probability(validation_split, "validation_split")
        if split and validation_data is not None:
            raise ValueError("give validation_data or validation_split, not both")
        columns = self._columns(*data)
        validation = self._validation_columns(validation_data)
        weight = self._weights(columns[1], sample_weight, None)
        if split:
            N = columns[0].shape[0]
            cut = int(math.floor(N * (1 - split)))
            if cut in (0, N):
                raise ValueError(f"validation_split={split} of {N} samples leaves no "
                                 f"training or no validation sample")
            validation = tuple(None if c is None else c[cut:] for c in columns) + \
                (None if weight is None else weight[cut:],)
            columns = tuple(None if c is None else c[:cut] for c in columns)
            weight = None if weight is None else weight[:cut]
        if class_weight is not None:
            weight = self._weights(columns[1], weight, class_weight)
        return columns + (weight,), validation

    def _evaluate(self, data, sample_weight, batch_size) -> dict:
        """``{"loss": ..., metric: ...}`` of ``data`` as ``fit`` takes it, weighted by
        ``sample_weight`` (if given)."""
        columns = self._columns(*data)
        columns = columns + (self._weights(columns[1], sample_weight, None),)
        return self._evaluate_columns(columns, positive_int(batch_size, "batch_size"))

    def _summary_parts(self) -> list[tuple[str, Module, tuple | str]]:
        """``(name, module, output shape)`` of each part, in order (None for an axis of
        any size)."""
        raise NotImplementedError

    def summary(self, print_fn=None) -> None:
        """Print the parts of the model (Keras's ``model.summary()``): each one's name and
        type, output shape (None for the batch and time axes, which any size fills) and
        parameter count, then the total.  ``print_fn`` (default :func:`print`) takes the
        text."""
        rows = [(name, type(m).__name__, shape, m.count_params())
                for name, m, shape in self._summary_parts()]
        text = summary_table(type(self).__name__, rows, self.dtype.itemsize)
        (print if print_fn is None else print_fn)(text)

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
                for cb in callbacks:
                    cb.on_epoch_begin(self, epoch)
                order = rng.permutation(N) if shuffle else np.arange(N)
                starts = range(0, N, batch_size)
                bar = _progress(starts, progress, f"epoch {epoch + 1}/{epochs}", len(starts))
                total = count = correct = 0.0
                try:
                    for i, s in enumerate(bar):
                        step = epoch * len(starts) + i
                        for cb in callbacks:
                            cb.on_batch_begin(self, step)
                        idx, w = order[s:s + batch_size], 1.0
                        if dp is not None:           # this rank's part of the batch
                            idx, w = dp.shard(idx)
                        batch = [None if c is None else c[idx] for c in columns]
                        ls, n, ok = self._train_batch(batch, optimizer, clip_norm, snapshot,
                                                      **train_kwargs)
                        total, count, correct = total + w * ls, count + w * n, correct + w * ok
                        if callbacks:
                            batch_logs = self._logs(ls, n, ok)
                            for cb in callbacks:
                                cb.on_batch_end(self, step, batch_logs)
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


def _class_table(class_weight, size: int, dtype) -> np.ndarray:
    """``class_weight`` (a dict class -> weight) as an array over the classes 0 ..
    max(size, the largest key + 1) - 1; a class it leaves out weighs 1, as in Keras."""
    if not isinstance(class_weight, Mapping):
        raise TypeError(f"class_weight must be a dict of class -> weight, got "
                        f"{type(class_weight).__name__}")
    for k, v in class_weight.items():
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 0:
            raise ValueError(f"class_weight's keys must be class indices (ints >= 0), got "
                             f"{k!r}")
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or \
                not (math.isfinite(float(v)) and float(v) >= 0):
            raise ValueError(f"class_weight[{k}] must be a finite weight >= 0, got {v!r}")
    table = np.ones(max([size] + [int(k) + 1 for k in class_weight]), dtype)
    for k, v in class_weight.items():
        table[int(k)] = v
    return table
