"""int8 dynamic quantization for inference: :func:`quantize` and :func:`dequantize`.

``fastrnn.quantize(obj)`` returns a copy of a recurrent layer (:class:`~fastrnn.RNN`,
:class:`~fastrnn.LSTM`, :class:`~fastrnn.GRU`), a cell (:class:`~fastrnn.RNNCell`,
:class:`~fastrnn.LSTMCell`, :class:`~fastrnn.GRUCell`) or a model holding such layers
(:class:`~fastrnn.SequenceModel`, :class:`~fastrnn.Sequential`, a container) whose
recurrent products run in int8:

* each row of ``weight_ih`` and ``weight_hh`` (one gate unit) becomes int8 in [-127, 127]
  with its own scale ``max|row| / 127`` (symmetric, per output row), once;
* each row of the inputs and of the hidden state (one batch row, one time step) is
  quantized when it is produced, with its own scale ``max|row| / 127`` (dynamic);
* the products are exact int32 sums (AMX-INT8 tiles, AVX512-VNNI or portable C: the same
  bits on every path), scaled back to float32; the biases and the gate math stay float32.

Everything else of a model -- embeddings, ``Linear`` readouts, heads, blocks -- stays
float32.  The float parameters of a quantized copy hold the dequantized weights
(``q * scale``), read-only: the copy is a frozen snapshot for inference.  Calls, ``predict``
and the :class:`~fastrnn.Stepper` work as for the float model; ``forward_train``, ``fit``
and ``forward_states`` raise ``TypeError`` (:func:`dequantize` gives a float copy to
train).  Refused with a ``ValueError`` naming the option: ``proj_size``, ``peephole``,
``layer_norm``, ``reset_after=False``, ``zoneout``, FastRNN and FastGRNN, float64 modules
(cast to float32 first: only float32 models are quantized) and input or hidden sizes above
65536.

>>> import numpy as np, fastrnn
>>> lstm = fastrnn.LSTM(8, 32, seed=0)
>>> q = fastrnn.quantize(lstm)
>>> x = np.random.default_rng(0).standard_normal((10, 4, 8)).astype(np.float32)
>>> y, (h, c) = lstm(x)
>>> yq, (hq, cq) = q(x)
>>> bool(np.abs(yq - y).max() < 0.05)
True
>>> q.quantized, fastrnn.dequantize(q).quantized
('int8', None)
"""

from __future__ import annotations

import copy

import numpy as np

from . import _engine
from ._kinds import layer_directions, suffix
from .cells import _CellBase, int8_layers
from .fastgrnn import FastGRNN, FastRNN
from .layers import _RNNBase
from .module import Module

__all__ = ["quantize", "dequantize", "quantize_weight", "DTYPES"]

#: the quantized forms :func:`quantize` makes
DTYPES = ("int8",)


def quantize_weight(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(q, scale)``: ``W`` (n, K) as int8 rows ``q = rint(W / scale)`` in [-127, 127],
    ``scale`` (n,) float32 = ``max|W[c, :]| / 127`` (0 for a row of zeros, whose q is 0).

    >>> import numpy as np
    >>> from fastrnn.quantization import quantize_weight
    >>> q, s = quantize_weight(np.array([[0.5, -1.0, 0.25]], np.float32))
    >>> q.tolist(), float(s[0] * 127)
    ([[64, -127, 32]], 1.0)
    """
    W = np.asarray(W, np.float32)
    scale = (np.abs(W).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint(W / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


def _refuse(module: Module, where: str) -> None:
    """What the int8 loop does not run, as a ValueError naming the option."""
    name = type(module).__name__
    if isinstance(module, (FastRNN, FastGRNN)):
        raise ValueError(f"{where}: a {name} cannot be quantized (int8 runs RNN, LSTM "
                         f"and GRU)")
    kind = module.kind
    options = [("proj_size", getattr(module, "proj_size", 0)), ("peephole", kind.peephole),
               ("layer_norm", kind.layer_norm), ("reset_after=False", kind.reset_before),
               ("zoneout", getattr(module, "zoneout", 0) or getattr(module, "zoneout_cell", 0))]
    for option, on in options:
        if on:
            raise ValueError(f"{where}: a {name} with {option} cannot be quantized (int8 "
                             f"runs the plain RNN, LSTM and GRU)")
    if module.dtype != np.float32:
        raise ValueError(f"{where}: a {name} of dtype {module.dtype} cannot be quantized: "
                         f"int8 inference takes float32 modules (cast the parameters to "
                         f"float32 first)")
    for size in ("input_size", "hidden_size"):
        if getattr(module, size) > _engine._lowp.MAX_K:
            raise ValueError(f"{where}: {size}={getattr(module, size)} is more than the "
                             f"int8 product takes ({_engine._lowp.MAX_K})")


def _suffixes(module: Module) -> list[list[str]]:
    """The parameter suffixes of ``module``'s layer-directions, ``[k][d]``."""
    if isinstance(module, _CellBase):
        return [[""]]
    out: list[list[str]] = [[] for _ in range(module.num_layers)]
    for k, d in layer_directions(module.num_layers, module.bidirectional):
        out[k].append(suffix(k, d))
    return out


def _quantize_module(module: Module, where: str, given: dict | None = None) -> None:
    """In place: ``module``'s recurrent weights to int8 (float parameters: q * scale),
    packed for the int8 loop; ``given``: parameter name -> ``(q, scale)`` to take
    instead (a file's)."""
    _refuse(module, where)
    p = module._params
    kept = {}
    for row in _suffixes(module):
        for sfx in row:
            for name in ("weight_ih", "weight_hh"):
                param = p[name + sfx]
                q, scale = (given[name + sfx] if given is not None
                            else quantize_weight(param.data))
                param.data = q.astype(np.float32) * scale[:, None]   # the dequantized weights
                kept[name + sfx] = (q, scale)
    object.__setattr__(module, "_q8", None)
    object.__setattr__(module, "_q8_arrays", kept)
    object.__setattr__(module, "quantized", "int8")
    int8_layers(module)                         # packed now, not at the first call


def quantized_arrays(module: Module) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The int8 weights of a quantized layer or cell and their scales, by parameter name
    (what a model file keeps of them); empty for a module that is not quantized."""
    return dict(getattr(module, "_q8_arrays", {})) if getattr(module, "quantized", None) else {}


def named_recurrent(module: Module, prefix: str = ""):
    """``(prefix, module)`` of every recurrent layer and cell in ``module`` (itself
    included), the prefixes those of ``named_parameters``."""
    if _recurrent(module) or isinstance(module, (FastRNN, FastGRNN)):
        yield prefix, module
        return
    for name, child in module._modules.items():
        yield from named_recurrent(child, f"{prefix}{name}.")


def refuse_quantized(obj, what: str) -> None:
    """A ``TypeError`` naming ``what`` (an export) when ``obj`` holds a quantized layer or
    cell: an export writes float weights, and would turn the int8 model into a float one
    without a word; the caller says so with :func:`dequantize`."""
    if not isinstance(obj, Module):
        return
    for name, module in named_recurrent(obj):
        if getattr(module, "quantized", None):
            where = f" (its {name.rstrip('.')})" if name else ""
            raise TypeError(f"{what}: this {type(obj).__name__} is quantized "
                            f"({module.quantized}){where}, and {what} writes float weights: "
                            f"export fastrnn.dequantize(model), the float32 copy of its int8 "
                            f"weights")


def _recurrent(module: Module) -> bool:
    return isinstance(module, (_RNNBase, _CellBase))


def _walk(module: Module, where: str):
    """Every recurrent layer and cell in ``module`` (itself included), with a name for
    messages (``where`` and its place)."""
    for prefix, found in named_recurrent(module):
        yield found, f"{where}.{prefix[:-1]}" if prefix else where


def quantize(obj: Module, dtype: str = "int8") -> Module:
    """A copy of ``obj`` (a recurrent layer, a cell, or a model or container holding
    them) whose recurrent layers and cells run in int8; ``obj`` is left as it was.

    Every RNN, LSTM, GRU (and cell) inside is quantized; Linear readouts, embeddings and
    the other blocks stay float32.  ``dtype``: ``"int8"`` (the one form there is).
    Raises TypeError for an object that is not a fastrnn module, ValueError for a module
    holding no recurrent layer or one that cannot be quantized (the option is named).

    >>> import numpy as np, fastrnn
    >>> model = fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=16,
    ...                                     output_size=2, seed=0)
    >>> q = fastrnn.quantize(model)
    >>> q.rnn.quantized, q.head.readout.weight.dtype     # the readout stays float32
    ('int8', dtype('float32'))
    >>> q.forward(np.ones((2, 5, 3), np.float32)).shape
    (2, 5, 2)
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not isinstance(obj, Module):
        raise TypeError(f"obj must be a fastrnn module or model, got {type(obj).__name__}")
    found = list(_walk(obj, type(obj).__name__))
    if not found:
        raise ValueError(f"a {type(obj).__name__} holds no recurrent layer or cell to "
                         f"quantize")
    for module, where in found:
        if module.quantized if _recurrent(module) else False:
            raise ValueError(f"{where} is quantized already")
        _refuse(module, where)
    out = copy.deepcopy(obj)
    for module, where in _walk(out, type(out).__name__):
        _quantize_module(module, where)
    return out


def dequantize(obj: Module) -> Module:
    """A float32 copy of a quantized ``obj`` (:func:`quantize`'s): weights ``q * scale``,
    trainable again; ``obj`` is left as it was.  A module with nothing quantized in it
    is copied as it is.

    >>> import numpy as np, fastrnn
    >>> q = fastrnn.quantize(fastrnn.LSTM(3, 8, seed=0))
    >>> f = fastrnn.dequantize(q)
    >>> f.quantized, bool(np.array_equal(f.weight_hh_l0.data, q.weight_hh_l0.data))
    (None, True)
    >>> y, state, backward = f.forward_train(np.ones((4, 2, 3), np.float32))
    """
    if not isinstance(obj, Module):
        raise TypeError(f"obj must be a fastrnn module or model, got {type(obj).__name__}")
    out = copy.deepcopy(obj)
    for module, _ in _walk(out, type(out).__name__):
        if _recurrent(module) and module.quantized:
            for param in module._params.values():
                param.data = param.data.copy()          # writeable again
            object.__setattr__(module, "_q8", None)
            object.__setattr__(module, "_q8_arrays", {})
            object.__setattr__(module, "quantized", None)
    return out
