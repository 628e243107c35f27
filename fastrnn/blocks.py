r"""Blocks: the feed-forward layers that go between and after recurrent layers.

* activations :class:`ReLU`, :class:`Tanh`, :class:`Sigmoid`, :class:`GELU`;
* :class:`Dropout` (seeded, inverted scaling, the identity at inference);
* :class:`LayerNorm` over the last axis (PyTorch's ``nn.LayerNorm``);
* :class:`TimePooling` over the valid steps of each sequence (the last one, the mean or
  the maximum), and :class:`AttentionPooling` (additive attention, Bahdanau et al. 2015);
* a *time-distributed dense* block is :class:`fastrnn.Linear` itself: it maps the last
  axis of any (..., in_features) array, so on (B, T, F) it is applied at every step.

Every block has the protocol of the other layers: ``y = block(x, lengths=None)`` at
inference, ``y, backward = block.forward_train(x, lengths=None)`` in training, and
``dx = backward(dy)``, which *adds* the gradients of the block's parameters (if any) into
their ``.grad``.  Sequences are batch-first, ``(B, T, F)``, as in
:class:`fastrnn.Sequential` (see its notes for why).  ``lengths`` (B,) ints in [1, T] is read by
the poolings only; the element-wise blocks take it and ignore it (a padded step's output
reaches nothing: the recurrent layers and the poolings skip it and the losses mask it).

Blocks without parameters compute in the dtype of their input when it is float32 or
float64 (other real inputs in float64); blocks with parameters in their own ``dtype``.

>>> import numpy as np, fastrnn
>>> x = np.array([[-1.0, 0.5]])
>>> y, backward = fastrnn.ReLU().forward_train(x)
>>> y, backward(np.ones_like(y))
(array([[0. , 0.5]]), array([[0., 1.]]))
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from . import _engine
from ._validate import (FLOAT_DTYPES, as_dtype, float_array, lengths_array, positive_int,
                        probability, seed_value, step_mask)
from .layers import Linear
from .losses import _sigmoid
from .module import Module

__all__ = ["Block", "ReLU", "Tanh", "Sigmoid", "GELU", "Dropout", "LayerNorm",
           "TimePooling", "AttentionPooling"]

_ANY_RANK = tuple(range(1, 33))


def _input(x, dtype=None, ndim=_ANY_RANK, name: str = "x",
           contiguous: bool = True) -> np.ndarray:
    """``x`` as a float array (C-contiguous unless not ``contiguous``): in ``dtype``, or
    without one in x's own when it is float32 or float64 (else float64)."""
    if dtype is None:
        dtype = x.dtype if isinstance(x, np.ndarray) and x.dtype in FLOAT_DTYPES \
            else np.dtype(np.float64)
    return float_array(x, name, dtype, ndim, contiguous=contiguous)


def _gradient(dy, y: np.ndarray) -> np.ndarray:
    """``dy`` checked to be the gradient of ``y``: its shape, cast to its dtype."""
    d = float_array(dy, "dy", y.dtype, y.ndim)
    if d.shape != y.shape:
        raise ValueError(f"dy must have the shape of y, {y.shape}, got {d.shape}")
    return d


def _sequences(x, dtype, lengths, name: str = "x", contiguous: bool = True):
    """``(x, lengths, valid)``: a batch-first (B, T, F) array (C-contiguous unless not
    ``contiguous``), its checked lengths and the (B, T) mask of the valid steps (both None
    without lengths)."""
    x = _input(x, dtype, 3, name, contiguous)
    B, T = x.shape[:2]
    if B == 0 or T == 0:
        raise ValueError(f"{name} must hold at least one sequence of at least one step, "
                         f"got shape {x.shape}")
    if lengths is None:
        return x, None, None
    lengths = lengths_array(lengths, B, T)
    return x, lengths, step_mask(lengths, T)


class Block(Module):
    """Base of the blocks: ``forward_train(x, lengths=None) -> (y, backward)`` with
    ``backward(dy) -> dx``, ``__call__(x, lengths=None) -> y``, ``config()``.

    ``reduces_time`` is True for the blocks that map (B, T, F) to (B, F) (the poolings):
    a :class:`fastrnn.Sequential` passes no ``lengths`` past them.

    >>> from fastrnn.blocks import Block, TimePooling
    >>> isinstance(TimePooling("mean"), Block), TimePooling.reduces_time
    (True, True)
    """

    reduces_time = False

    def forward_train(self, x, lengths=None):
        raise NotImplementedError

    def __call__(self, x, lengths=None):
        return self.forward_train(x, lengths)[0]

    def config(self) -> dict:
        """What builds this block again (its parameters apart), as a model file keeps it."""
        return {"type": type(self).__name__}

    @classmethod
    def from_config(cls, cfg: dict, dtype, seed: int | None = None) -> Block:
        """The block a :meth:`config` describes, in ``dtype`` (read by blocks with
        parameters only), what it draws drawn from ``seed`` (read by the blocks that draw:
        given, it replaces the seed a :class:`Dropout`'s configuration holds)."""
        args = {k: v for k, v in cfg.items() if k != "type"}
        return cls(**args)

    @staticmethod
    def config_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, shape)`` of the parameters the block of ``cfg`` has, without building
        it (what a model file is checked against before anything is allocated)."""
        return []

    @staticmethod
    def config_children(cfg: dict) -> list[tuple[str, dict]]:
        """``(name, config)`` of the layers inside the block of ``cfg`` (none)."""
        return []


# ---------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------

class _Activation(Block):
    """An element-wise function: subclasses give ``_apply(x) -> (y, dy_dx)``."""

    def _apply(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, x, lengths=None):
        return self._apply(_input(x))[0]

    def forward_train(self, x, lengths=None):
        y, slope = self._apply(_input(x))

        def backward(dy):
            return _gradient(dy, y) * slope

        return y, backward


class ReLU(_Activation):
    """``y = max(x, 0)``; the gradient at 0 is 0 (PyTorch's).

    >>> import numpy as np, fastrnn
    >>> fastrnn.ReLU()(np.array([-2.0, 0.0, 3.0]))
    array([0., 0., 3.])
    """

    def _apply(self, x):
        return np.maximum(x, x.dtype.type(0)), (x > 0).astype(x.dtype)   # nan stays nan


class Tanh(_Activation):
    """``y = tanh(x)``; ``dy/dx = 1 - y**2``.

    >>> import numpy as np, fastrnn
    >>> fastrnn.Tanh()(np.array([0.0, 100.0]))
    array([0., 1.])
    """

    def _apply(self, x):
        y = np.tanh(x)
        return y, 1 - y * y


class Sigmoid(_Activation):
    """``y = 1 / (1 + exp(-x))`` (computed without overflow); ``dy/dx = y (1 - y)``.

    >>> import numpy as np, fastrnn
    >>> fastrnn.Sigmoid()(np.array([0.0]))
    array([0.5])
    """

    def _apply(self, x):
        y = _sigmoid(x)
        return y, y * (1 - y)


_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


class GELU(_Activation):
    r"""Gaussian error linear unit, PyTorch's ``nn.GELU``.

    ``approximate="none"`` (the default, exact): ``y = x * Phi(x) = x/2 (1 + erf(x/sqrt(2)))``,
    ``dy/dx = Phi(x) + x phi(x)``; ``approximate="tanh"``:
    ``y = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``.

    >>> import numpy as np, fastrnn
    >>> fastrnn.GELU()(np.array([-1.0, 0.0, 1.0])).round(4)
    array([-0.1587,  0.    ,  0.8413])
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _apply(self, x):
        half = x.dtype.type(0.5)
        if self.approximate == "tanh":
            c = x.dtype.type(_SQRT_2_OVER_PI)
            cubic = x.dtype.type(_GELU_CUBIC)
            t = np.tanh(c * (x + cubic * x * x * x))
            slope = half * (1 + t) + half * x * (1 - t * t) * c * (1 + 3 * cubic * x * x)
            return half * x * (1 + t), slope
        cdf = half * (1 + erf(x / x.dtype.type(_SQRT_2)))
        pdf = np.exp(-half * x * x) / x.dtype.type(math.sqrt(2 * math.pi))
        return x * cdf, cdf + x * pdf

    def config(self) -> dict:
        return {**super().config(), "approximate": self.approximate}

    def extra_repr(self) -> str:
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


# ---------------------------------------------------------------------------------------
# Dropout and layer normalisation
# ---------------------------------------------------------------------------------------

class Dropout(Block):
    """Inverted dropout (PyTorch's ``nn.Dropout``): in ``forward_train`` each entry is
    zeroed with probability ``p`` and the others scaled by ``1 / (1 - p)``; at inference
    (``__call__``) the identity.

    The masks come from ``numpy.random.default_rng(seed)``, owned by the block: the same
    seed gives the same masks call after call.  ``p=1`` zeroes everything.

    >>> import numpy as np, fastrnn
    >>> drop = fastrnn.Dropout(0.5, seed=0)
    >>> y, backward = drop.forward_train(np.ones((2, 4)))
    >>> sorted(set(y.ravel().tolist()))                 # dropped, or scaled by 2
    [0.0, 2.0]
    >>> bool(np.array_equal(drop(np.ones(3)), np.ones(3)))
    True
    """

    def __init__(self, p: float = 0.5, seed: int | None = None):
        super().__init__()
        self.p = probability(p, "p", closed=True)
        self.seed = seed_value(seed)
        self._rng = np.random.default_rng(self.seed)

    def __call__(self, x, lengths=None):
        return _input(x)

    def forward_train(self, x, lengths=None):
        x = _input(x)
        if self.p == 1:
            scale = np.zeros_like(x)
        else:
            keep = self._rng.random(x.shape, dtype=x.dtype) >= self.p
            scale = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.p))
        y = x * scale

        def backward(dy):
            return _gradient(dy, y) * scale

        return y, backward

    def config(self) -> dict:
        return {**super().config(), "p": self.p, "seed": self.seed}

    @classmethod
    def from_config(cls, cfg: dict, dtype, seed: int | None = None) -> Dropout:
        args = {k: v for k, v in cfg.items() if k != "type"}
        return cls(**(args if seed is None else {**args, "seed": seed}))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerNorm(Block):
    r"""Layer normalisation over the last axis (PyTorch's ``nn.LayerNorm(normalized_shape)``
    for an int ``normalized_shape``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the mean and the biased
    variance over the last axis; ``weight`` ones and ``bias`` zeros at first (absent with
    ``elementwise_affine=False``; no ``bias`` with ``bias=False``).  ``x`` (...,
    normalized_shape).

    >>> import numpy as np, fastrnn
    >>> norm = fastrnn.LayerNorm(3, dtype=np.float64)
    >>> norm(np.array([[1.0, 2.0, 3.0]])).round(4)
    array([[-1.2247,  0.    ,  1.2247]])
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, *, dtype=np.float32):
        super().__init__()
        self.normalized_shape = positive_int(normalized_shape, "normalized_shape")
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) \
                or not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        self.eps = float(eps)
        self.dtype = as_dtype(dtype)
        F = self.normalized_shape
        self.weight = self._register("weight", np.ones(F, self.dtype)) \
            if elementwise_affine else None
        self.bias = self._register("bias", np.zeros(F, self.dtype)) \
            if elementwise_affine and bias else None

    def _normalise(self, x):
        x = _input(x, self.dtype)
        if x.shape[-1] != self.normalized_shape:
            raise ValueError(f"x.shape[-1] must equal normalized_shape="
                             f"{self.normalized_shape}, got {x.shape[-1]}")
        centred = x - x.mean(axis=-1, keepdims=True)
        inv_std = 1 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True)
                              + self.dtype.type(self.eps))
        xhat = centred * inv_std
        y = xhat if self.weight is None else xhat * self.weight.data
        if self.bias is not None:
            y = y + self.bias.data
        return xhat, inv_std, y

    def __call__(self, x, lengths=None):
        return self._normalise(x)[2]

    def forward_train(self, x, lengths=None):
        xhat, inv_std, y = self._normalise(x)

        def backward(dy):
            dy = _gradient(dy, y)
            rows = dy.reshape(-1, self.normalized_shape)
            if self.bias is not None:
                self.bias.grad += rows.sum(axis=0)
            if self.weight is None:
                dxhat = dy
            else:
                self.weight.grad += (rows * xhat.reshape(rows.shape)).sum(axis=0)
                dxhat = dy * self.weight.data
            # dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / std
            return inv_std * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                              - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))

        return y, backward

    def config(self) -> dict:
        return {**super().config(), "normalized_shape": self.normalized_shape,
                "eps": self.eps, "elementwise_affine": self.weight is not None,
                "bias": self.bias is not None}

    @classmethod
    def from_config(cls, cfg: dict, dtype, seed: int | None = None) -> LayerNorm:
        args = {k: v for k, v in cfg.items() if k != "type"}
        return cls(**args, dtype=dtype)

    @staticmethod
    def config_shapes(cfg):
        F = positive_int(cfg["normalized_shape"], "normalized_shape")
        affine = cfg.get("elementwise_affine", True)
        return [(name, (F,)) for name, on in
                (("weight", affine), ("bias", affine and cfg.get("bias", True))) if on]

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, dtype={self.dtype.name}"


# ---------------------------------------------------------------------------------------
# Pooling over time
# ---------------------------------------------------------------------------------------

_POOLING_MODES = ("last", "mean", "max")


class TimePooling(Block):
    """One vector per sequence from its valid steps: (B, T, F) -> (B, F).

    ``mode="last"``: the output at the last valid step, ``x[b, lengths[b] - 1]`` (for a
    unidirectional recurrent layer, its final state); ``"mean"``: the mean over the valid
    steps; ``"max"``: the maximum over them, per feature (the gradient goes to the first
    step holding it).  Without ``lengths`` every step is valid.  Padded steps are never
    read and get a zero gradient.

    >>> import numpy as np, fastrnn
    >>> x = np.arange(6.0).reshape(1, 3, 2)             # (B=1, T=3, F=2)
    >>> fastrnn.TimePooling("mean")(x, lengths=[2])
    array([[1., 2.]])
    >>> fastrnn.TimePooling("last")(x, lengths=[2])
    array([[2., 3.]])
    """

    reduces_time = True

    def __init__(self, mode: str = "last"):
        super().__init__()
        if mode not in _POOLING_MODES:
            raise ValueError(f"mode must be one of {_POOLING_MODES}, got {mode!r}")
        self.mode = mode

    def forward_train(self, x, lengths=None):
        x, lengths, valid = _sequences(x, None, lengths)
        B, T, F = x.shape
        if self.mode == "mean":
            return self._mean(x, lengths, valid)
        if self.mode == "last":
            index = np.full((B, 1), T - 1) if lengths is None else (lengths - 1)[:, None]
        else:
            masked = x if valid is None else np.where(valid[:, :, None], x, -np.inf)
            index = masked.argmax(axis=1)                # (B, F): the step of each maximum
        index = np.broadcast_to(index[:, None, :] if self.mode == "max"
                                else index[:, :, None], (B, 1, F))
        y = np.take_along_axis(x, index, axis=1)[:, 0]

        def backward(dy):
            dx = np.zeros_like(x)
            np.put_along_axis(dx, index, _gradient(dy, y)[:, None], axis=1)
            return dx

        return y, backward

    @staticmethod
    def _mean(x, lengths, valid):
        T = x.shape[1]
        counts = (np.full(x.shape[0], T) if lengths is None else lengths).astype(x.dtype)
        kept = x if valid is None else np.where(valid[:, :, None], x, x.dtype.type(0))
        y = kept.sum(axis=1) / counts[:, None]

        def backward(dy):
            dx = np.broadcast_to((_gradient(dy, y) / counts[:, None])[:, None], x.shape)
            return dx.copy() if valid is None else np.where(valid[:, :, None], dx,
                                                            x.dtype.type(0))

        return y, backward

    def config(self) -> dict:
        return {**super().config(), "mode": self.mode}

    def extra_repr(self) -> str:
        return repr(self.mode)


class AttentionPooling(Block):
    r"""Additive attention over time (Bahdanau, Cho and Bengio 2015), as a pooling:
    (B, T, F) -> (B, F).

    For each sequence ``b`` and valid step ``t``::

        score_t = v . tanh(W h_t + b)          (W: proj.weight (A, F), b: proj.bias (A,))
        a_t     = softmax over the valid steps of score_t     (padded steps: a_t = 0)
        context = sum_t a_t h_t

    ``A = attention_size``; the projection is a :class:`fastrnn.Linear` (``proj``, its
    initialisation), ``v`` (A,) is drawn from uniform(-1/sqrt(A), 1/sqrt(A)).  All products
    go through fastrnn's BLAS.

    >>> import numpy as np, fastrnn
    >>> attn = fastrnn.AttentionPooling(4, 8, seed=0)
    >>> x = np.ones((2, 5, 4), np.float32)
    >>> attn(x, lengths=[5, 2]).shape
    (2, 4)
    >>> attn.attention(x, lengths=[5, 2])[1].round(2)  # equal steps: equal weights
    array([0.5, 0.5, 0. , 0. , 0. ], dtype=float32)
    """

    reduces_time = True

    def __init__(self, input_size: int, attention_size: int, bias: bool = True, *,
                 dtype=np.float32, seed: int | None = None):
        super().__init__()
        input_size = positive_int(input_size, "input_size")
        attention_size = positive_int(attention_size, "attention_size")
        self.dtype = as_dtype(dtype)
        seeds = np.random.SeedSequence(seed_value(seed)).generate_state(2)
        self.proj = self._add_module("proj", Linear(input_size, attention_size, bias,
                                                    dtype=self.dtype, seed=int(seeds[0])))
        A = self.proj.out_features
        k = 1.0 / math.sqrt(A)
        rng = np.random.default_rng(int(seeds[1]))
        self.v = self._register("v", rng.uniform(-k, k, A).astype(self.dtype))

    @property
    def input_size(self) -> int:
        return self.proj.in_features

    @property
    def attention_size(self) -> int:
        return self.proj.out_features

    def _check(self, x, lengths):
        """``(X, valid, time_axis)``: ``x`` (B, T, F) as a C-contiguous array in either
        layout, (B, T, F) (``time_axis`` 1) or, when ``x`` is the batch-first view of a
        time-major array (a recurrent layer's outputs in a Sequential), that array (T, B,
        F) itself (``time_axis`` 0, no copy), zero at the padded steps; ``valid`` the
        mask of the valid steps in that layout (None without lengths)."""
        x, lengths, valid = _sequences(x, self.dtype, lengths, contiguous=False)
        if x.shape[2] != self.input_size:
            raise ValueError(f"x.shape[-1] must equal input_size={self.input_size}, "
                             f"got {x.shape[2]}")
        time_axis = 1
        if not x.flags.c_contiguous and x.swapaxes(0, 1).flags.c_contiguous:
            x, time_axis = x.swapaxes(0, 1), 0
            valid = None if valid is None else valid.T
        else:
            x = np.ascontiguousarray(x)
        if valid is not None and not valid.all():
            # padding may hold anything: it must reach nothing (a copy, zeros there)
            x = np.where(valid[:, :, None], x, self.dtype.type(0))
        return x, valid, time_axis

    def _weights(self, U, valid, shape, time_axis):
        """The attention weights a of ``shape``, (B, T) or (T, B) as ``time_axis`` says,
        from the tanh projections U (B*T, A) in that layout; ``valid`` the mask."""
        scores = np.empty((U.shape[0], 1), self.dtype)
        _engine.gemm(U, self.v.data[None, :], scores, False, True, 1.0, 0.0)  # U @ v
        scores = scores.reshape(shape)
        if valid is not None:
            scores = np.where(valid, scores, -np.inf)
        scores -= scores.max(axis=time_axis, keepdims=True)
        e = np.exp(scores, out=scores)
        e /= e.sum(axis=time_axis, keepdims=True)
        return e

    def _attend(self, X, valid, time_axis):
        U = np.tanh(self.proj(X)).reshape(-1, self.attention_size)
        return self._weights(U, valid, X.shape[:2], time_axis)

    def attention(self, x, lengths=None) -> np.ndarray:
        """The attention weights ``a`` (B, T) the pooling of ``x`` uses (0 at padded
        steps; each row sums to 1)."""
        X, valid, time_axis = self._check(x, lengths)
        a = self._attend(X, valid, time_axis)
        return a if time_axis == 1 else a.T

    @staticmethod
    def _pool(a, X, time_axis):
        """``context[b] = sum_t a[b, t] x[b, t]`` in either layout."""
        return np.einsum("btf,bt->bf" if time_axis == 1 else "tbf,tb->bf", X, a)

    def __call__(self, x, lengths=None):
        X, valid, time_axis = self._check(x, lengths)
        return self._pool(self._attend(X, valid, time_axis), X, time_axis)

    def forward_train(self, x, lengths=None):
        X, valid, time_axis = self._check(x, lengths)
        S0, S1, F = X.shape
        z, proj_backward = self.proj.forward_train(X)
        U = np.tanh(z).reshape(S0 * S1, -1)
        a = self._weights(U, valid, (S0, S1), time_axis)
        y = self._pool(a, X, time_axis)

        def backward(dy):
            dy = _gradient(dy, y)
            # context = sum_t a_t h_t:  da_t = h_t . dy  (dh_t += a_t dy: below)
            da = np.einsum("btf,bf->bt" if time_axis == 1 else "tbf,bf->tb", X, dy)
            # softmax:  dscore_t = a_t (da_t - sum_s a_s da_s)   (0 at padded steps)
            da -= (a * da).sum(axis=time_axis, keepdims=True)
            da *= a
            dscore = da.reshape(S0 * S1, 1)
            # score = U @ v:  dv += U.T @ dscore,  dU = dscore v.T;  U = tanh(z)
            _engine.gemm(dscore, U, self.v.grad[None, :], True, False, 1.0, 1.0)
            dz = np.multiply(U, U)
            np.subtract(self.dtype.type(1), dz, out=dz)
            dz *= self.v.data
            dz *= dscore
            dX = proj_backward(dz.reshape(S0, S1, -1))
            dX += a[:, :, None] * (dy[:, None, :] if time_axis == 1 else dy[None, :, :])
            return dX if time_axis == 1 else dX.swapaxes(0, 1)

        return y, backward

    def config(self) -> dict:
        return {**super().config(), "input_size": self.input_size,
                "attention_size": self.attention_size, "bias": self.proj.bias is not None}

    @classmethod
    def from_config(cls, cfg: dict, dtype, seed: int | None = None) -> AttentionPooling:
        args = {k: v for k, v in cfg.items() if k != "type"}
        return cls(**args, dtype=dtype, seed=seed)

    @staticmethod
    def config_shapes(cfg):
        F = positive_int(cfg["input_size"], "input_size")
        A = positive_int(cfg["attention_size"], "attention_size")
        shapes = [("v", (A,)), ("proj.weight", (A, F))]
        return shapes + ([("proj.bias", (A,))] if cfg.get("bias", True) else [])

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.attention_size}, dtype={self.dtype.name}"
