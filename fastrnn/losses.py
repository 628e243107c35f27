"""Losses.  Each returns ``(loss, grad)``: the scalar loss and its gradient with respect to
the predictions, so a model's backward pass starts from ``grad``.

Masks select the entries that count (padded time steps do not); every loss is a mean over
the entries that count.  A ``weight`` (one per sample, or per step, ...: an array of the
leading axes of the entries) weighs each entry's loss, and the mean stays one over the
count of entries, as Keras defines it: ``sum(w * l) / count``.  PyTorch's
``CrossEntropyLoss(weight=)`` divides by the sum of the weights instead; here that is
``count / sum(w)`` times the loss.

A loss object also answers what a model asks of it, so that the models hold no list of
losses: the targets it takes (``check_targets``), how many entries a mean ran over and how
many were predicted right (``count_correct``, reported as ``metric_name``), what a
prediction is (``predict``, ``proba``) and how it is saved (``config``, :func:`from_config`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from ._validate import float_array

__all__ = ["softmax_cross_entropy", "mse", "bce_with_logits", "log_softmax", "softmax",
           "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "CustomLoss", "get_loss",
           "from_config"]


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(softmax(logits))`` computed stably: ``z - max(z) - log(sum(exp(z - max(z))))``.

    >>> import numpy as np
    >>> from fastrnn.losses import log_softmax
    >>> np.exp(log_softmax(np.array([1.0, 1.0]))).round(3)
    array([0.5, 0.5])
    """
    z = logits - logits.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(z - max z) / sum(exp(z - max z))`` along ``axis``.

    >>> import numpy as np
    >>> from fastrnn.losses import softmax
    >>> softmax(np.array([[0.0, np.log(3.0)]])).round(3)
    array([[0.25, 0.75]])
    """
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))``, computed as ``(1 + tanh(z / 2)) / 2`` (no overflow)."""
    return 0.5 * (1 + np.tanh(0.5 * z))


def _mask_array(mask, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise TypeError(f"mask must be boolean, got dtype {m.dtype}")
    if m.shape != shape:
        raise ValueError(f"mask must have shape {shape}, got {m.shape}")
    return m.astype(bool, copy=False)


def _entry_weights(weight, shape: tuple[int, ...], dtype) -> np.ndarray | None:
    """``weight``, an array of the leading axes of ``shape`` (one weight per sample, per
    step, ...), in ``dtype`` and broadcast to ``shape``; None stays None."""
    if weight is None:
        return None
    w = float_array(weight, "weight", dtype, tuple(range(len(shape) + 1)))
    if w.shape != shape[:w.ndim]:
        raise ValueError(f"weight must have the leading axes of the entries {shape}, got "
                         f"shape {w.shape}")
    return np.broadcast_to(w.reshape(w.shape + (1,) * (len(shape) - w.ndim)), shape)


def softmax_cross_entropy(logits, targets, mask=None, ignore_index: int = -100,
                          weight=None):
    """Mean cross-entropy of ``softmax(logits)`` against integer class ``targets``.

    ``logits`` (..., C); ``targets`` (...) ints in [0, C) or ``ignore_index``; ``mask``
    (...) boolean, False entries ignored.  ``loss = -mean(log_softmax(logits)[target])``
    over the entries that count; ``grad = (softmax(logits) - onehot(target)) / count``
    (zero where ignored).  With nothing to count the loss is 0.  ``weight`` (the leading
    axes of ``targets``) weighs each entry: ``loss = -sum(w * log_softmax[target]) /
    count`` (see the module's notes).

    >>> import numpy as np
    >>> from fastrnn.losses import softmax_cross_entropy
    >>> logits = np.zeros((2, 4))                      # uniform over 4 classes
    >>> loss, grad = softmax_cross_entropy(logits, np.array([1, 3]))
    >>> round(loss, 4), round(float(np.log(4)), 4)
    (1.3863, 1.3863)
    >>> grad.shape
    (2, 4)
    """
    logits = np.asarray(logits)
    if logits.dtype.kind != "f":
        raise TypeError(f"logits must be floating, got dtype {logits.dtype}")
    if logits.ndim < 1:
        raise ValueError("logits must have a class axis")
    C = logits.shape[-1]
    t = np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets must hold integer class indices, got dtype {t.dtype}")
    if t.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have shape {logits.shape[:-1]} (logits without the "
                         f"class axis), got {t.shape}")
    valid = t != ignore_index
    m = _mask_array(mask, t.shape)
    if m is not None:
        valid &= m
    if np.any(valid & ((t < 0) | (t >= C))):
        raise ValueError(f"targets must lie in [0, {C}) (or equal ignore_index="
                         f"{ignore_index}), got values in [{t[valid].min()}, {t[valid].max()}]")
    count = int(valid.sum())
    w = _entry_weights(weight, t.shape, logits.dtype)
    logp = log_softmax(logits)
    safe_t = np.where(valid, t, 0)[..., None]
    picked = np.take_along_axis(logp, safe_t, axis=-1)[..., 0]
    if w is not None:
        picked = picked * w
    loss = -float(picked[valid].sum()) / max(count, 1)
    grad = np.exp(logp)
    np.put_along_axis(grad, safe_t, np.take_along_axis(grad, safe_t, axis=-1) - 1, axis=-1)
    scale = valid / max(count, 1)
    grad *= (scale if w is None else scale * w)[..., None].astype(grad.dtype)
    return loss, grad


def _pair(pred, target, name="pred"):
    pred = np.asarray(pred)
    if pred.dtype.kind != "f":
        raise TypeError(f"{name} must be floating, got dtype {pred.dtype}")
    target = float_array(target, "target", pred.dtype, pred.ndim)
    if target.shape != pred.shape:
        raise ValueError(f"target must have the shape of {name}, {pred.shape}, "
                         f"got {target.shape}")
    return pred, target


def _masked_mean(elementwise: np.ndarray, mask, d_elementwise: np.ndarray, weight=None):
    """Mean of ``elementwise`` over the masked entries (a mask of the leading axes
    broadcasts over the trailing ones) and the matching gradient; ``weight`` (leading
    axes too) weighs each entry, the mean staying one over their count."""
    w = _entry_weights(weight, elementwise.shape, elementwise.dtype)
    if w is not None:
        elementwise, d_elementwise = elementwise * w, d_elementwise * w
    if mask is None:
        n = elementwise.size
        return float(elementwise.sum()) / max(n, 1), d_elementwise / max(n, 1)
    m = np.asarray(mask)
    if m.shape != elementwise.shape[:m.ndim]:
        raise ValueError(f"mask must have shape {elementwise.shape[:m.ndim]} (leading axes "
                         f"of the predictions), got {m.shape}")
    m = m.astype(bool).reshape(m.shape + (1,) * (elementwise.ndim - m.ndim))
    m = np.broadcast_to(m, elementwise.shape)
    n = int(m.sum())
    # select, not multiply: a masked-out nan or inf (padding) must not leak in as 0 * nan
    return (float(np.where(m, elementwise, 0).sum()) / max(n, 1),
            np.where(m, d_elementwise, 0) / max(n, 1))


def mse(pred, target, mask=None, weight=None):
    """Mean squared error ``mean((pred - target)**2)``; grad ``2 (pred - target) / n``;
    with ``weight`` (leading axes) ``sum(w * (pred - target)**2) / n``.

    >>> import numpy as np
    >>> from fastrnn.losses import mse
    >>> loss, grad = mse(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    >>> loss, grad
    (5.0, array([1., 3.]))
    """
    pred, target = _pair(pred, target)
    diff = pred - target
    return _masked_mean(diff * diff, mask, 2 * diff, weight)


def bce_with_logits(logits, target, mask=None, weight=None):
    """Binary cross-entropy on logits, stably:
    ``max(z, 0) - z*y + log(1 + exp(-|z|))``; grad ``(sigmoid(z) - y) / n``; ``weight``
    (leading axes) weighs each entry, as in :func:`mse`.

    >>> import numpy as np
    >>> from fastrnn.losses import bce_with_logits
    >>> loss, grad = bce_with_logits(np.array([0.0]), np.array([1.0]))
    >>> round(loss, 4), grad
    (0.6931, array([-0.5]))
    """
    z, y = _pair(logits, target, "logits")
    elementwise = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return _masked_mean(elementwise, mask, _sigmoid(z) - y, weight)


class _Loss:
    """What every loss answers besides ``loss, grad = loss_fn(pred, target, mask)``.

    The defaults are those of a regression loss (element-wise over real-valued targets of
    the head's width): a subclass for classification overrides them.
    """

    name = ""
    #: the name of the per-epoch metric ``count_correct`` counts (None: no metric)
    metric_name: str | None = None

    def __call__(self, pred, target, mask=None, weight=None) -> tuple[float, np.ndarray]:
        """``(loss, grad)``: the mean loss over the entries ``mask`` keeps, each weighed
        by ``weight`` (if given), and its gradient with respect to ``pred``."""
        raise NotImplementedError

    def entry_shape(self, target: np.ndarray) -> tuple[int, ...]:
        """The shape of the entries (one loss term each) of checked targets: the shape
        a weight of every entry has.  Here: the targets without their feature axis."""
        return target.shape[:-1]

    def entry_classes(self, target: np.ndarray) -> np.ndarray:
        """The class of each entry of checked targets (ints of :meth:`entry_shape`, -1
        where an entry does not count), for ``class_weight``; a ``ValueError`` for a loss
        without classes."""
        raise ValueError(f"class_weight needs a classification loss (cross_entropy, or "
                         f"bce_with_logits with one output), got {self!r}")

    def check_targets(self, y, lead: tuple[int, ...], out_features: int, dtype,
                      name: str = "y") -> np.ndarray:
        """``y`` as this loss takes it for outputs of shape ``lead + (out_features,)``;
        ``TypeError`` or ``ValueError`` naming ``name`` otherwise.  Here: real values of
        that shape, in ``dtype`` (the class axis may be left out when it is 1)."""
        y = float_array(y, name, dtype, (len(lead), len(lead) + 1))
        if y.ndim == len(lead) and out_features == 1:
            y = y[..., None]
        if y.shape != lead + (out_features,):
            raise ValueError(f"{name} must have shape {lead + (out_features,)}, got {y.shape}")
        return y

    def count_correct(self, out: np.ndarray, target: np.ndarray,
                      mask: np.ndarray | None) -> tuple[int, float]:
        """``(count, correct)``: how many entries the loss's mean ran over, and how many of
        them were predicted right (0 without a metric).  Here the entries are the rows of
        ``out`` (samples, or the steps ``mask`` keeps)."""
        return int(self._rows(out, mask).sum()), 0.0

    @staticmethod
    def _rows(out: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return mask if mask is not None else np.ones(out.shape[:-1], dtype=bool)

    def predict(self, out: np.ndarray) -> np.ndarray:
        """What a model predicts from its raw outputs (a regression loss: the outputs)."""
        return out

    def proba(self, out: np.ndarray) -> np.ndarray:
        """Probabilities from the raw outputs (classification losses only)."""
        raise ValueError("predict_proba needs a classification loss "
                         "(cross_entropy or bce_with_logits)")

    def config(self) -> dict:
        """The JSON-able description :func:`from_config` rebuilds this loss from."""
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits with integer targets (see
    :func:`softmax_cross_entropy`); ``loss, grad = CrossEntropyLoss()(logits, targets)``.

    Its metric is accuracy over the target entries that count; a model predicts the
    class of highest logit.

    >>> import numpy as np
    >>> from fastrnn.losses import CrossEntropyLoss
    >>> loss, grad = CrossEntropyLoss()(np.zeros((3, 2)), np.array([0, 1, -100]))
    >>> round(loss, 4)                                  # the ignored entry does not count
    0.6931
    >>> CrossEntropyLoss().predict(np.array([[0.1, 2.0], [3.0, 0.0]]))
    array([1, 0])
    """

    name = "cross_entropy"
    metric_name = "accuracy"

    def __init__(self, ignore_index: int = -100):
        self.ignore_index = int(ignore_index)

    def __call__(self, logits, targets, mask=None, weight=None):
        return softmax_cross_entropy(logits, targets, mask, self.ignore_index, weight)

    def entry_shape(self, target):
        """The targets' shape: one class label an entry."""
        return target.shape

    def entry_classes(self, target):
        """The labels, -1 where they equal ``ignore_index``."""
        return np.where(target == self.ignore_index, -1, target)

    def check_targets(self, y, lead, out_features, dtype, name="y"):
        """Integer class labels of shape ``lead``."""
        y = np.asarray(y)
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class labels for cross-entropy, "
                            f"got dtype {y.dtype}")
        if y.shape != lead:
            raise ValueError(f"{name} must have shape {lead}, got {y.shape}")
        return y

    def count_correct(self, out, target, mask):
        """The target entries that count (not ``ignore_index``, kept by ``mask``), and
        those whose highest logit is the target."""
        valid = target != self.ignore_index
        if mask is not None:
            valid &= mask
        return int(valid.sum()), int(((out.argmax(-1) == target) & valid).sum())

    def predict(self, out):
        """The class of highest logit."""
        return out.argmax(axis=-1)

    def proba(self, out):
        """The softmax of the logits."""
        return softmax(out)

    def config(self):
        """The name and ``ignore_index``."""
        return {"name": self.name, "ignore_index": self.ignore_index}


class MSELoss(_Loss):
    """Mean squared error (see :func:`mse`).

    >>> import numpy as np
    >>> from fastrnn.losses import MSELoss
    >>> MSELoss()(np.array([2.0]), np.array([0.0]))[0]
    4.0
    """

    name = "mse"

    def __call__(self, pred, target, mask=None, weight=None):
        return mse(pred, target, mask, weight)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (see :func:`bce_with_logits`).

    Its metric is accuracy: the share of the outputs of a row whose sign matches the
    target (> 0.5), summed over the rows that count; a model predicts 0/1 labels.

    >>> import numpy as np
    >>> from fastrnn.losses import BCEWithLogitsLoss
    >>> round(BCEWithLogitsLoss()(np.array([0.0]), np.array([0.0]))[0], 4)
    0.6931
    >>> BCEWithLogitsLoss().predict(np.array([[-1.0, 2.0]]))
    array([[0, 1]])
    """

    name = "bce_with_logits"
    metric_name = "accuracy"

    def __call__(self, logits, target, mask=None, weight=None):
        return bce_with_logits(logits, target, mask, weight)

    def entry_classes(self, target):
        """0 or 1 (the target > 0.5), for one output a row; a ``ValueError`` for more (a
        multi-label row has no one class)."""
        if target.shape[-1] != 1:
            raise ValueError(f"class_weight needs one output a row for bce_with_logits (a "
                             f"row of {target.shape[-1]} labels has no one class); weigh "
                             f"the rows with sample_weight instead")
        return (target[..., 0] > 0.5).astype(np.int64)

    def count_correct(self, out, target, mask):
        """The rows of ``out`` that count, and the share of each row's outputs whose sign
        matches its target, summed over those rows."""
        rows = self._rows(out, mask)
        return (int(rows.sum()),
                float(((out > 0) == (target > 0.5)).mean(axis=-1)[rows].sum()))

    def predict(self, out):
        """0/1 labels: 1 where the logit is positive."""
        return (out > 0).astype(np.int64)

    def proba(self, out):
        """The sigmoid of the logits."""
        return _sigmoid(out)


def _mask_parameter(fn: Callable) -> str:
    """How ``fn`` takes the mask: ``"required"`` (a parameter ``mask`` without a default:
    always passed, None without padding), ``"optional"`` (one with a default, or
    ``**kwargs``: passed by keyword where there is padding) or ``""`` (none)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):          # a builtin without a signature
        return ""
    mask = params.get("mask")
    if mask is not None and mask.kind not in (mask.VAR_POSITIONAL, mask.VAR_KEYWORD):
        return "required" if mask.default is mask.empty else "optional"
    return "optional" if any(p.kind == p.VAR_KEYWORD for p in params.values()) else ""


class CustomLoss(_Loss):
    """A loss from a function ``fn(outputs, targets) -> (value, grad_outputs)``: ``value``
    the mean loss of the batch (a number) and ``grad_outputs`` its gradient with respect
    to ``outputs`` (their shape).  What a model's ``fit`` plugs in when given a function
    as its loss.

    Where entries must be left out (per-step outputs with ``lengths``), ``fn`` is called
    as ``fn(outputs, targets, mask=mask)`` with ``mask`` the boolean array of the entries
    that count (the leading axes of ``outputs``): ``fn`` takes it as a parameter named
    ``mask`` (a required one is None where nothing is left out); a function without one
    then raises ``ValueError``.  Targets are taken as given, one row per sample; the
    predictions are the outputs; there is no metric; a custom loss is not saved in a model
    file.

    >>> import numpy as np
    >>> from fastrnn.losses import CustomLoss
    >>> def l1(out, target):
    ...     return float(np.abs(out - target).mean()), np.sign(out - target) / out.size
    >>> loss, grad = CustomLoss(l1)(np.array([[1.0, -1.0]]), np.zeros((1, 2)))
    >>> loss, grad
    (1.0, array([[ 0.5, -0.5]]))
    """

    name = "custom"

    def __init__(self, fn: Callable):
        if not callable(fn):
            raise TypeError(f"a custom loss must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.mask_parameter = _mask_parameter(fn)

    def __call__(self, pred, target, mask=None, weight=None):
        if weight is not None:
            raise ValueError(self._unweighted)
        if self.mask_parameter == "required":
            result = self.fn(pred, target, mask=mask)
        elif mask is None:
            result = self.fn(pred, target)
        elif not self.mask_parameter:
            raise ValueError(f"the loss {self!r} takes (outputs, targets) but these outputs "
                             f"have padded steps (lengths): it must take a parameter "
                             f"mask and count only the entries where mask is True")
        else:
            result = self.fn(pred, target, mask=mask)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TypeError(f"the loss {self!r} must return (value, grad_outputs), got "
                            f"{type(result).__name__}")
        value, grad = result
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"the loss {self!r} must return a number as its value, got "
                            f"{type(value).__name__}") from None
        grad = float_array(grad, "grad_outputs", pred.dtype, pred.ndim)
        if grad.shape != pred.shape:
            raise ValueError(f"grad_outputs must have the shape of the outputs, "
                             f"{pred.shape}, got {grad.shape}")
        return value, grad

    _unweighted = ("sample_weight and class_weight need a built-in loss: a custom loss "
                   "says itself how its entries count")

    def entry_shape(self, target):
        """Not known: a ``ValueError`` (a custom loss weighs nothing)."""
        raise ValueError(self._unweighted)

    def check_targets(self, y, lead, out_features, dtype, name="y"):
        """Any array with one row per sample."""
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != lead[0]:
            raise ValueError(f"{name} must have one row per sample ({lead[0]}), got shape "
                             f"{y.shape}")
        return y

    def __repr__(self) -> str:
        return f"CustomLoss({getattr(self.fn, '__name__', type(self.fn).__name__)})"


_LOSSES = {cls.name: cls for cls in (CrossEntropyLoss, MSELoss, BCEWithLogitsLoss)}


def get_loss(loss) -> _Loss:
    """A loss object from a name (``"cross_entropy"``, ``"mse"``, ``"bce_with_logits"``)
    or a loss object.

    >>> from fastrnn.losses import get_loss
    >>> get_loss("mse")
    MSELoss()
    """
    if isinstance(loss, _Loss):
        return loss
    if isinstance(loss, str) and loss in _LOSSES:
        return _LOSSES[loss]()
    raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a loss object, got {loss!r}")


def from_config(cfg: dict) -> _Loss:
    """The loss a :meth:`_Loss.config` describes (``KeyError`` for an unknown name,
    ``TypeError`` for an unknown argument).

    >>> from fastrnn.losses import CrossEntropyLoss, from_config
    >>> from_config(CrossEntropyLoss(ignore_index=0).config()).ignore_index
    0
    """
    args = dict(cfg)
    return _LOSSES[args.pop("name")](**args)
