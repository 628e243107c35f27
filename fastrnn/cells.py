"""Recurrent cells: one time step, for streaming inference and step-by-step models.

The equations, gate order and parameter names are PyTorch's ``nn.RNNCell``,
``nn.LSTMCell`` and ``nn.GRUCell``; a cell runs through the same compiled kernels as the
sequence layers, with one time step.
"""

from __future__ import annotations

import math

import numpy as np

from . import _engine
from ._kinds import KINDS, Kind, layer_kind, suffix
from ._validate import (as_dtype, flag, float_array, kernel_sizes, positive_int, seed_value,
                        state_arrays)
from .module import Module

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]

def init_parameters(module: Module, rng: np.random.Generator, kind: Kind, input_size: int,
                    hidden_size: int, bias: bool, dtype: np.dtype, suffix: str = "",
                    proj_size: int = 0) -> None:
    """Register ``weight_ih``, ``weight_hh`` (and the biases, and an LSTM's projection
    ``weight_hr``) + ``suffix``, drawn from uniform(-1/sqrt(H), 1/sqrt(H)) in that order,
    as PyTorch initialises them."""
    k = 1.0 / math.sqrt(hidden_size)
    fills = {name + suffix: fill for name, _, fill in kind.vectors}
    for name, shape in kind.cell_shapes(input_size, hidden_size, bias, suffix,
                                        proj_size=proj_size):
        fill = fills.get(name)
        module._register(name, rng.uniform(-k, k, shape).astype(dtype) if fill is None
                         else np.full(shape, fill, dtype))


def layer_norm_options(bias, proj_size: int = 0) -> None:
    """What a layer-normalised LSTM (or cell) refuses: ``bias=False`` (its normalisations'
    biases are its biases) and a projection."""
    if not flag(bias, "bias"):
        raise ValueError("layer_norm=True: the normalisations' biases are the LSTM's "
                         "biases; bias=False is not supported with it")
    if proj_size:
        raise ValueError("layer_norm=True does not combine with proj_size")


def variant_options(kind: Kind) -> dict:
    """The constructor options that make ``kind`` a variant (``reset_after=False``,
    ``peephole=True``, ``layer_norm=True``), as a layer's or a cell's configuration keeps
    them: only when set, so files of the plain kinds read as before."""
    return {name: value for name, value, on in (
        ("reset_after", False, kind.reset_before), ("peephole", True, kind.peephole),
        ("layer_norm", True, kind.layer_norm)) if on}


def weight_tuple(module: Module, suffix: str, grad: bool = False) -> _engine.Weights:
    """``(W_ih, W_hh, b_ih, b_hh)`` (or their gradients) as the kernels take them; empty
    bias arrays for a module without biases; then the module's kind's per-unit vectors
    (an LSTM's peepholes), flat, and an LSTM's projection ``weight_hr`` if it has one
    (the order ``_engine.extras`` reads)."""
    p = module._params
    arrays = []
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        param = p.get(name + suffix)
        if param is None:
            if name.startswith("weight"):
                raise ValueError(f"{type(module).__name__} has no parameter {name + suffix}")
            arrays.append(np.empty(0, module.dtype))
        else:
            arrays.append(param.grad if grad else param.data)
    for name, _, _ in module.kind.vectors:
        param = p[name + suffix]
        arrays.append((param.grad if grad else param.data).reshape(-1))
    projection = p.get("weight_hr" + suffix)
    if projection is not None:
        arrays.append(projection.grad if grad else projection.data)
    return tuple(arrays)


def int8_layers(module: Module) -> list:
    """A quantized layer's (or cell's) layer-directions as the int8 loop takes them,
    ``[k][d]`` (``_engine.Q8``; a cell: ``[[record]]``), from its int8 weights and
    float32 biases; packed once and kept (a copy or a pickle packs again on first use).
    Its parameters are read-only from then on: a frozen snapshot."""
    records = module.__dict__.get("_q8")
    if records is not None:
        return records
    p, arrays = module._params, module.__dict__["_q8_arrays"]
    layers = getattr(module, "num_layers", None)
    rows = ([[""]] if layers is None else
            [[suffix(k, d) for d in range(module.num_directions)] for k in range(layers)])
    records = []
    for row in rows:
        records.append([_engine.q8_pack(
            module.kind, *arrays["weight_ih" + sfx], *arrays["weight_hh" + sfx],
            *(p[n + sfx].data if n + sfx in p else np.empty(0, np.float32)
              for n in ("bias_ih", "bias_hh"))) for sfx in row])
    for param in p.values():
        param.data.flags.writeable = False      # dequantize() gives a float copy to change
    object.__setattr__(module, "_q8", records)
    return records


def _without_packing(module: Module) -> dict:
    """``module.__dict__`` as a pickle (or a copy) keeps it: no packed int8 weights,
    which :func:`int8_layers` makes again on first use."""
    state = module.__dict__.copy()
    if state.get("_q8") is not None:
        state["_q8"] = None
    return state


class _CellBase(Module):
    mode = "RNN"
    kind = KINDS["RNN"]
    #: ``"int8"`` for a copy made by :func:`fastrnn.quantize` (inference only), else None
    quantized: str | None = None
    #: with ``quantized``: ``[[record]]``, the cell as the int8 loop takes it
    #: (:func:`int8_layers`)
    _q8: list | None = None
    __getstate__ = _without_packing

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype=np.float32, seed: int | None = None):
        super().__init__()
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.bias = flag(bias, "bias")
        self.dtype = as_dtype(dtype)
        kernel_sizes(type(self).__name__, input_size=self.input_size,
                     gate_width=self.kind.gates * self.hidden_size)
        rng = np.random.default_rng(seed_value(seed))
        init_parameters(self, rng, self.kind, self.input_size, self.hidden_size, self.bias,
                        self.dtype)

    @property
    def _relu(self) -> bool:
        return False

    def config(self) -> dict:
        """What builds this cell again (its parameters apart), as a model file keeps it;
        a variant's option only when set."""
        return {"type": type(self).__name__, "input_size": self.input_size,
                "hidden_size": self.hidden_size, "bias": self.bias,
                **variant_options(self.kind),
                **({"quantized": self.quantized} if self.quantized else {})}

    def _prepare(self, x, state, name="state"):
        x = float_array(x, "x", self.dtype, (1, 2))
        unbatched = x.ndim == 1
        if unbatched:
            x = x[None]
        if x.shape[1] != self.input_size:
            raise ValueError(f"x.shape[-1] must equal input_size={self.input_size}, "
                             f"got {x.shape[1]}")
        B = x.shape[0]
        if B == 0:
            raise ValueError(f"x must have at least one batch row, got shape {x.shape}")
        shape = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        h, c = state_arrays(state, self.kind.has_cell, shape, self.dtype, name)
        h, c = h.reshape(1, B, -1), (None if c is None else c.reshape(1, B, -1))
        return x, h, c, unbatched

    def _result(self, h, c, unbatched):
        h = h[0, 0] if unbatched else h[0]
        if c is None:
            return h
        return h, (c[0, 0] if unbatched else c[0])

    def __call__(self, x, state=None):
        """One step: the new state from ``x`` (B, I) and ``state`` (B, H); zeros if None."""
        if self.quantized:                  # the int8 loop over one step
            x, h, c, unbatched = self._prepare(x, state)
            _engine.q8_step(self.kind, self._relu, x, int8_layers(self)[0][0], h[0],
                            None if c is None else c[0], np.empty_like(h))
            return self._result(h, c, unbatched)
        # arrays that need no conversion take one compiled call; the rest are converted
        # and checked here first, and run the same cell math
        new = _engine.cell_call(self.kind, self._relu, x, state, weight_tuple(self, ""))
        if new is not None:
            return new
        x, h, c, unbatched = self._prepare(x, state)
        gates, gh = _engine.step_workspace(self.kind, x.shape[0], self.hidden_size,
                                           self.dtype)
        _engine.step(self.kind, self._relu, x, weight_tuple(self, ""), h[0],
                     None if c is None else c[0], gates, gh)
        return self._result(h, c, unbatched)

    def forward_train(self, x, state=None):
        """One step that keeps what backward needs.

        Returns ``(new_state, backward)``; ``backward(dstate)`` takes the gradient of the
        new state (zeros if None), adds the parameter gradients into ``.grad`` and returns
        ``(dx, dstate0)``.  It may be called once.
        """
        if self.quantized:
            raise TypeError(f"this {type(self).__name__} is quantized ({self.quantized}): "
                            f"inference only; fastrnn.dequantize() it to train")
        x, h, c, unbatched = self._prepare(x, state)
        B = x.shape[0]
        nact = _engine.active_rows(None, 1, B)
        weights = [[weight_tuple(self, "")]]
        _, tape = _engine.stack_forward(self.kind, self._relu, x, weights, h, c, nact,
                                        train=True)
        new_state = self._result(h.copy(), None if c is None else c.copy(), unbatched)
        done = False

        def backward(dstate=None):
            nonlocal done
            if done:
                raise RuntimeError("backward was already called for this forward_train; "
                                   "run forward_train again")
            shape = (self.hidden_size,) if unbatched else (B, self.hidden_size)
            dh, dc = state_arrays(dstate, self.kind.has_cell, shape, self.dtype, "dstate")
            dh, dc = dh.reshape(1, B, -1), (None if dc is None else dc.reshape(1, B, -1))
            dY = np.zeros((1, B, self.hidden_size), self.dtype)
            dX = _engine.stack_backward(tape, weights, [[weight_tuple(self, "", grad=True)]],
                                        dY, dh, dc)
            done = True
            return (dX[0] if unbatched else dX), self._result(dh, dc, unbatched)

        return new_state, backward

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        return s + f", dtype={self.dtype.name}"


class RNNCell(_CellBase):
    r"""Elman RNN cell: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, act tanh or relu.

    Parameters ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih``, ``bias_hh`` (H,),
    each drawn from uniform(-1/sqrt(H), 1/sqrt(H)).  ``cell(x, h)`` takes x (B, I) or (I,)
    and h of (B, H) or (H,) (zeros if None) and returns the new h.

    >>> import numpy as np, fastrnn
    >>> cell = fastrnn.RNNCell(3, 5, seed=0)
    >>> cell(np.ones((2, 3), np.float32)).shape
    (2, 5)
    """

    mode = "RNN"
    kind = KINDS[mode]

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", *, dtype=np.float32, seed: int | None = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed)

    @property
    def _relu(self) -> bool:
        return self.nonlinearity == "relu"

    def config(self) -> dict:
        return {**super().config(), "nonlinearity": self.nonlinearity}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


class LSTMCell(_CellBase):
    r"""LSTM cell, PyTorch's equations and gate order ``i, f, g, o``::

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
        f = sigmoid(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        o = sigmoid(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g
        h' = o * tanh(c')

    Parameters ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh``
    (4H,), the four gates stacked in that order; uniform(-1/sqrt(H), 1/sqrt(H)) init.
    ``cell(x, (h, c))`` returns the new ``(h, c)``.  ``peephole=True``: the gates read
    the cell state through ``peephole`` (3, H); ``layer_norm=True``: the layer-normalised
    LSTM of Ba et al. (2016) (both as :class:`LSTM`).

    >>> import numpy as np, fastrnn
    >>> cell = fastrnn.LSTMCell(3, 5, seed=0)
    >>> h, c = cell(np.ones((2, 3), np.float32))
    >>> h.shape, c.shape
    ((2, 5), (2, 5))
    """

    mode = "LSTM"
    kind = KINDS[mode]

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 peephole: bool = False, layer_norm: bool = False, dtype=np.float32,
                 seed: int | None = None):
        self.kind = layer_kind(self.mode, peephole=flag(peephole, "peephole"),
                               layer_norm=flag(layer_norm, "layer_norm"))
        if self.kind.layer_norm:
            layer_norm_options(bias)
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", peephole=True" if self.kind.peephole else "") + (
            ", layer_norm=True" if self.kind.layer_norm else "")


class GRUCell(_CellBase):
    r"""GRU cell, PyTorch's equations and gate order ``r, z, n``::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Parameters ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``, ``bias_hh``
    (3H,); uniform(-1/sqrt(H), 1/sqrt(H)) init.  ``cell(x, h)`` returns the new h.
    ``reset_after=False``: the reset gate before the recurrent product (as :class:`GRU`).

    >>> import numpy as np, fastrnn
    >>> cell = fastrnn.GRUCell(3, 5, seed=0)
    >>> h = None                                        # zeros at the first step
    >>> for x_t in np.ones((4, 2, 3), np.float32):      # 4 steps of a batch of 2 rows
    ...     h = cell(x_t, h)
    >>> h.shape
    (2, 5)
    """

    mode = "GRU"
    kind = KINDS[mode]

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 reset_after: bool = True, dtype=np.float32, seed: int | None = None):
        self.kind = layer_kind(self.mode, reset_after=flag(reset_after, "reset_after"))
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", reset_after=False" if self.kind.reset_before else "")
