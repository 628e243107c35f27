"""Layers: the recurrent sequence layers RNN, LSTM, GRU (stacking, two directions,
variable lengths, batch_first; PyTorch's parameter names and semantics), and the dense
``Linear`` readout and ``Embedding`` lookup that models build around them."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from . import _engine
from ._validate import (as_array, as_dtype, flag, float_array, kernel_sizes, lengths_array,
                        positive_int, probability, projection_size, seed_value,
                        state_arrays)
from ._kinds import KINDS, layer_directions, layer_kind, suffix
from .cells import (_without_packing, init_parameters, int8_layers, layer_norm_options,
                    variant_options, weight_tuple)
from .module import Module

__all__ = ["RNN", "LSTM", "GRU", "Linear", "Embedding", "StepStates"]


def _take_rows(a, index):
    """``a[:, index]`` as a new C-contiguous array, one copy (``a[:, index]`` itself is not
    C-contiguous); None stays None."""
    return None if a is None else np.take(a, index, axis=1)


def _unsort(a, inverse):
    """The batch rows (axis 1) of ``a`` back in the caller's order (``inverse`` of the sort
    by length; None: ``a`` as it is)."""
    return a if inverse is None else _take_rows(a, inverse)


def zero_gradient(y: np.ndarray) -> np.ndarray:
    """The gradient of an output ``y`` that nothing reads: zeros of its shape and dtype,
    as a read-only view that holds no memory.  A recurrent layer's ``backward`` takes it
    for ``dy`` without copying it or making zeros: its kernels then skip the outputs'
    gradient at every step.

    >>> import numpy as np
    >>> from fastrnn.layers import zero_gradient
    >>> dy = zero_gradient(np.ones((5, 2, 3), np.float32))
    >>> dy.shape, dy.strides, float(dy.max())
    ((5, 2, 3), (0, 0, 0), 0.0)
    """
    return np.broadcast_to(y.dtype.type(0), y.shape)


# The layout is converted here, once each way: the kernels read and write (T, B, ...)
# arrays, C-contiguous, rows sorted by length; callers (the models too) hand over views in
# the layer's layout, which are copied once into the kernels' arrays, and get back new
# arrays, copied once from them.

def _time_major(a, batch_first: bool, order=None, padded=None) -> np.ndarray:
    """``a`` ((T, B, ...), or (B, T, ...) with ``batch_first``; any strides) as the kernels
    read it: (T, B, ...) C-contiguous, the batch rows taken in ``order`` (None: as they
    are) and zeros where ``padded`` (T, B) is True.  One copy at most: none when ``a``
    already is that array."""
    t = a.swapaxes(0, 1) if batch_first else a
    if order is not None:
        t = np.take(t, order, axis=1)             # a new C-contiguous array
    elif padded is not None:
        t = np.array(t, order="C")                # a new array, to write the zeros into
    else:
        return np.ascontiguousarray(t)
    if padded is not None:
        t[padded] = 0
    return t


def _kernel_dy(dy, batch_first: bool, order) -> np.ndarray | None:
    """The kernels' dY (time-major) from a checked ``dy``: None for zeros without memory
    (:func:`zero_gradient`: the kernels then add nothing at any step), else
    :func:`_time_major`."""
    if not any(dy.strides) and dy[0, 0, 0] == 0 and not np.signbit(dy[0, 0, 0]):
        return None
    return _time_major(dy, batch_first, order)


def _batch_axis(state, name: str):
    """A state of an unbatched call, (L*D, H) (or a tuple (h, c) of them), with a batch
    axis of one row; None stays None."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(_batch_axis(s, f"{name}[{i}]") for i, s in enumerate(state))
    a = np.asarray(state)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_layers*num_directions, hidden_size) "
                         f"with an unbatched x, got shape {a.shape}")
    return a[:, None]


def _drop_batch_axis(state):
    """The states of a one-row batch as an unbatched call returns them."""
    if isinstance(state, tuple):
        return tuple(s[:, 0] for s in state)
    return state[:, 0]


class StepStates(NamedTuple):
    """What :meth:`forward_states` returns: the call's ``y`` and final ``state``, and
    every layer's cell states ``c`` after each step (None without a cell state) and gate
    activations ``gates`` at each step.

    >>> import numpy as np, fastrnn
    >>> y, h_n, c, gates = fastrnn.GRU(3, 4, seed=0).forward_states(np.ones((5, 2, 3)))
    >>> c is None, gates.shape                 # a GRU has no cell state; r, z, n gates
    (True, (1, 5, 2, 12))
    """

    y: np.ndarray
    state: object
    c: np.ndarray | None
    gates: np.ndarray


def _states_layout(a, batch_first: bool, inverse):
    """(L, T, B, F) per-step states (rows sorted by length) as the caller sees them:
    (L, B, T, F) with ``batch_first``, rows back in their order; None stays None."""
    if a is None:
        return None
    if inverse is not None:
        a = np.take(a, inverse, axis=2)
    return np.ascontiguousarray(a.swapaxes(1, 2)) if batch_first else a


def _caller_layout(a, batch_first: bool, inverse=None) -> np.ndarray:
    """The kernels' (T, B, ...) ``a`` as the caller sees it: (B, T, ...) with
    ``batch_first``, the batch rows back in their order (``inverse`` of the sort, None: as
    they are); C-contiguous, one copy at most."""
    if not batch_first:
        return _unsort(a, inverse)
    a = a.swapaxes(0, 1)
    return np.ascontiguousarray(a) if inverse is None else np.take(a, inverse, axis=0)


def _rate_property(name: str) -> property:
    """A recurrent layer's regulariser rate ``name``, checked (``_RNNBase._rate``) wherever
    it is set."""
    def get(self) -> float:
        return getattr(self, "_" + name)

    def set(self, value) -> None:
        setattr(self, "_" + name, self._rate(name, value))

    return property(get, set, doc=f"The {name.replace('_', ' ')} rate (0: none).")


class _RNNBase(Module):
    """What RNN, LSTM and GRU share: the constructor (LSTM's and GRU's is this one; RNN's
    adds ``nonlinearity``), the parameters, and the one path of forward and backward."""

    mode = "RNN"
    kind = KINDS["RNN"]
    #: the Elman RNN's activation; :class:`RNN` sets its own before this constructor runs,
    #: LSTM and GRU have none to choose
    nonlinearity = "tanh"
    #: an LSTM's projection size (PyTorch's ``proj_size``): 0, none
    proj_size = 0
    #: ``"int8"`` for a copy made by :func:`fastrnn.quantize` (inference only), else None
    quantized: str | None = None
    #: with ``quantized``: ``_q8[k][d]``, layer k direction d as the int8 loop takes it
    #: (``_engine.Q8``, cells.int8_layers); the float parameters hold the dequantized
    #: weights
    _q8: list | None = None
    __getstate__ = _without_packing

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, reverse: bool = False,
                 recurrent_dropout: float = 0.0, input_dropout: float = 0.0,
                 zoneout: float = 0.0, zoneout_cell: float | None = None,
                 dtype=np.float32, seed: int | None = None):
        super().__init__()
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.num_layers = positive_int(num_layers, "num_layers")
        self.bias = flag(bias, "bias")
        self.batch_first = batch_first
        self.dropout = dropout
        self.bidirectional = flag(bidirectional, "bidirectional")
        self.reverse = flag(reverse, "reverse")
        if self.reverse and self.bidirectional:
            raise ValueError("reverse=True is one direction read backwards; it does not "
                             "combine with bidirectional=True")
        self.recurrent_dropout = recurrent_dropout
        self.input_dropout = input_dropout
        self.zoneout = zoneout
        if zoneout_cell is None:
            zoneout_cell = self.zoneout if self.kind.has_cell else 0.0
        self.zoneout_cell = zoneout_cell
        self.dtype = as_dtype(dtype)
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', "
                             f"got {self.nonlinearity!r}")
        kernel_sizes(type(self).__name__, input_size=self.input_size,
                     gate_width=self.kind.gates * self.hidden_size)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout applies between recurrent layers; with num_layers=1 it "
                          "has no effect", stacklevel=3)
        seed = seed_value(seed)
        rng = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        D = self.num_directions
        for k, d in layer_directions(self.num_layers, self.bidirectional):
            layer_input = self.input_size if k == 0 else D * self.state_size
            self._init_cell(rng, layer_input, suffix(k, d))

    def _init_cell(self, rng: np.random.Generator, input_size: int, suffix: str) -> None:
        """Register one layer-direction's parameters (PyTorch's names and initial values)."""
        init_parameters(self, rng, self.kind, input_size, self.hidden_size, self.bias,
                        self.dtype, suffix, self.proj_size)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_size(self) -> int:
        """The width of h (of the outputs, per direction): ``proj_size`` if set, else
        ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def config(self) -> dict:
        """What builds this layer again (its parameters apart), as a model file keeps it;
        the options that make a variant or reverse the direction only when set (so files
        of layers without them read as before)."""
        cfg = {"type": type(self).__name__, "input_size": self.input_size,
               "hidden_size": self.hidden_size, "num_layers": self.num_layers,
               "bias": self.bias, "batch_first": self.batch_first, "dropout": self.dropout,
               "bidirectional": self.bidirectional}
        if self.proj_size:
            cfg["proj_size"] = self.proj_size
        if self.quantized:
            cfg["quantized"] = self.quantized
        return {**cfg, **self._options()}

    def _options(self) -> dict:
        """The keyword options that differ from their defaults, as the constructor takes
        them."""
        out: dict = {"reverse": True} if self.reverse else {}
        for name in ("recurrent_dropout", "input_dropout", "zoneout"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.kind.has_cell and self.zoneout_cell != self.zoneout:
            out["zoneout_cell"] = self.zoneout_cell
        return {**out, **variant_options(self.kind)}

    # checked wherever they are set (the constructor, from_torch, a user), as PyTorch
    # accepts them: dropout in [0, 1] (1 zeroes the inputs of layers 1..), a bool layout
    @property
    def dropout(self) -> float:
        return self._dropout

    @dropout.setter
    def dropout(self, value: float) -> None:
        self._dropout = probability(value, "dropout", closed=True)

    def _rate(self, name: str, value) -> float:
        """A regulariser's rate, checked as the constructor checks it, wherever it is set."""
        rate = probability(value, name)
        if rate and name == "zoneout_cell" and not self.kind.has_cell:
            raise ValueError(f"zoneout_cell is the LSTM's; a {type(self).__name__} has no "
                             f"cell state")
        if rate and name == "recurrent_dropout" and self.kind.reset_before:
            raise ValueError("recurrent_dropout is not computed for the GRU with "
                             "reset_after=False")
        if rate and name != "input_dropout" and self.kind.layer_norm:
            raise ValueError(f"{name} is not computed for the LSTM with layer_norm=True "
                             f"(input_dropout and dropout are)")
        return rate

    recurrent_dropout = _rate_property("recurrent_dropout")
    input_dropout = _rate_property("input_dropout")
    zoneout = _rate_property("zoneout")
    zoneout_cell = _rate_property("zoneout_cell")

    @property
    def batch_first(self) -> bool:
        return self._batch_first

    @batch_first.setter
    def batch_first(self, value: bool) -> None:
        self._batch_first = flag(value, "batch_first")

    _suffix = staticmethod(suffix)

    def _layout(self, a):
        """A sample-first array (N, T, ...) as a view in this layer's layout, and an array
        in this layer's layout as a sample-first view (the swap of the first two axes
        unless ``batch_first``: its own inverse).  What the models convert, without
        copying: the data is copied once, between the layer's layout and the kernels'."""
        return a if self.batch_first else a.swapaxes(0, 1)

    def _weights(self, grad: bool = False) -> list:
        """``weights[k][d]``: what the kernels take for layer k, direction d (with
        ``grad``: the arrays their gradients go into)."""
        return [[weight_tuple(self, suffix(k, d), grad)
                 for d in range(self.num_directions)] for k in range(self.num_layers)]

    def _add_grads(self, grads: list) -> None:
        """After a backward pass: the gradients in ``grads`` (from ``_weights(grad=True)``)
        into the parameters' ``.grad``, where they are not already (none here: they are
        the parameters' own)."""

    # -- the one shared path of RNN, LSTM and GRU ---------------------------------------

    def _inference_only(self) -> None:
        """A quantized layer refuses what needs gradients."""
        if self.quantized:
            raise TypeError(f"this {type(self).__name__} is quantized ({self.quantized}): "
                            f"inference only; fastrnn.dequantize() it to train")

    def _run(self, x, state0, lengths, train: bool, state_name: str = "state0"):
        if train:
            self._inference_only()
        if isinstance(x, np.ndarray) and x.ndim == 3:        # before x is copied
            kernel_sizes("x", time_steps_times_batch=x.shape[0] * x.shape[1])
        x = float_array(x, "x", self.dtype, (3, 2), contiguous=False)  # copied once, later
        if x.ndim == 2:
            return self._run_unbatched(x, state0, lengths, train, state_name)
        return self._run_batched(x, state0, lengths, train, state_name, self.batch_first)

    def _run_unbatched(self, x, state0, lengths, train: bool, state_name: str):
        """``x`` (T, input_size) without a batch axis, as torch.nn's layers take it: one
        sequence (``batch_first`` does not apply), states (L*D, H), outputs (T, D*H)."""
        if lengths is not None:
            raise ValueError("lengths applies to a batch; an unbatched x (T, input_size) "
                             "is one sequence of all its steps")
        out = self._run_batched(x[:, None], _batch_axis(state0, state_name), None, train,
                                state_name, batch_first=False)
        y, state = out[0][:, 0], _drop_batch_axis(out[1])
        if not train:
            return y, state
        batched_backward = out[2]

        def backward(dy, dstate=None, *, input_grad=True):
            dy = float_array(dy, "dy", self.dtype, 2, contiguous=False)
            if dy.shape != y.shape:
                raise ValueError(f"dy must have the shape of y, {y.shape}, got {dy.shape}")
            dx, dstate0 = batched_backward(dy[:, None], _batch_axis(dstate, "dstate"),
                                           input_grad=input_grad)
            return (None if dx is None else dx[:, 0]), _drop_batch_axis(dstate0)

        return y, state, backward

    def _run_empty(self, T: int, state0, lengths, train: bool, state_name: str,
                   batch_first: bool):
        """An empty batch (B = 0), as torch.nn's layers take it: empty outputs, the
        (empty) initial states as the final ones, and a backward of empty gradients that
        adds nothing to the parameters' gradients."""
        H, LD, D = self.hidden_size, self.num_layers * self.num_directions, self.num_directions
        P = self.state_size
        lstm = self.kind.has_cell
        if lengths is not None:
            lengths_array(lengths, 0, T)
        h, c = state_arrays(state0, lstm, (LD, 0, P), self.dtype, state_name, (LD, 0, H))
        y = np.zeros((0, T, D * P) if batch_first else (T, 0, D * P), self.dtype)
        state = self._pack(h, c)
        if not train:
            return y, state
        x_shape = (0, T, self.input_size) if batch_first else (T, 0, self.input_size)

        def backward(dy, dstate=None, *, input_grad=True):
            dy = float_array(dy, "dy", self.dtype, 3, contiguous=False)
            if dy.shape != y.shape:
                raise ValueError(f"dy must have the shape of y, {y.shape}, got {dy.shape}")
            dh, dc = state_arrays(dstate, lstm, (LD, 0, P), self.dtype, "dstate", (LD, 0, H))
            dx = np.zeros(x_shape, self.dtype) if input_grad else None
            return dx, self._pack(dh, dc)

        return y, state, backward

    def _run_batched(self, x, state0, lengths, train: bool, state_name: str,
                     batch_first: bool, step_states: bool = False):
        lstm = self.kind.has_cell
        shape = (x.shape[1], x.shape[0], x.shape[2]) if batch_first else x.shape
        T, B, I = shape
        if I != self.input_size:
            raise ValueError(f"x.shape[-1] must equal input_size={self.input_size}, got {I}")
        if T == 0:
            raise ValueError(f"x must have at least one time step, got shape {shape}")
        if B == 0:
            return self._run_empty(T, state0, lengths, train, state_name, batch_first)
        H, LD, P = self.hidden_size, self.num_layers * self.num_directions, self.state_size
        h, c = state_arrays(state0, lstm, (LD, B, P), self.dtype, state_name, (LD, B, H))
        order = inverse = sorted_lengths = padded = None
        if lengths is not None:
            lengths = lengths_array(lengths, B, T)
            order = np.argsort(-lengths, kind="stable")
            if np.all(order[1:] > order[:-1]):   # already sorted: no permutation
                order = None
                sorted_lengths = lengths
            else:
                inverse = np.argsort(order)
                sorted_lengths = lengths[order]
                h, c = _take_rows(h, order), _take_rows(c, order)
        if sorted_lengths is not None and sorted_lengths[-1] < T:
            # padded steps read as zeros: their values (even nan) must reach no gradient
            padded = np.arange(T)[:, None] >= sorted_lengths[None, :]
        x = _time_major(x, batch_first, order, padded)
        nact = _engine.active_rows(sorted_lengths, T, B)
        if self.quantized and not train:
            Y = _engine.q8_stack_forward(self.kind, self.nonlinearity == "relu",
                                         x.reshape(T * B, I), int8_layers(self), h, c, nact,
                                         self.reverse)
            return (_caller_layout(Y, batch_first, inverse),
                    self._pack(_unsort(h, inverse), _unsort(c, inverse)))
        weights = self._weights()
        regularise = train and not step_states
        Y, tape = _engine.stack_forward(self.kind, self.nonlinearity == "relu",
                                        x.reshape(T * B, I), weights, h, c, nact, train,
                                        self.dropout if regularise else 0.0,
                                        self._dropout_rng, self.reverse,
                                        self.recurrent_dropout if regularise else 0.0,
                                        self.input_dropout if regularise else 0.0,
                                        (self.zoneout, self.zoneout_cell), regularise)
        y = _caller_layout(Y, batch_first, inverse)
        DH = Y.shape[2]                  # backward keeps no Y: y may be a copy of it
        state = self._pack(_unsort(h, inverse), _unsort(c, inverse))
        if step_states:
            cs, gates = _engine.step_states(tape, c)
            return StepStates(y, state, _states_layout(cs, batch_first, inverse),
                              _states_layout(gates, batch_first, inverse))
        if not train:
            return y, state

        done = False

        def backward(dy, dstate=None, *, input_grad=True):
            nonlocal done
            if done:
                raise RuntimeError("backward was already called for this forward_train; "
                                   "run forward_train again")
            dy = float_array(dy, "dy", self.dtype, 3, contiguous=False)
            expected = (B, T, DH) if batch_first else (T, B, DH)
            if dy.shape != expected:
                raise ValueError(f"dy must have the shape of y, {expected}, got {dy.shape}")
            dh, dc = state_arrays(dstate, lstm, (LD, B, P), self.dtype, "dstate", (LD, B, H))
            if inverse is not None:
                dh, dc = _take_rows(dh, order), _take_rows(dc, order)
            grads = self._weights(grad=True)
            dX = _engine.stack_backward(tape, weights, grads,
                                        _kernel_dy(dy, batch_first, order),
                                        dh, dc, input_grad=bool(input_grad))
            self._add_grads(grads)
            done = True
            dx = (None if dX is None
                  else _caller_layout(dX.reshape(T, B, I), batch_first, inverse))
            return dx, self._pack(_unsort(dh, inverse), _unsort(dc, inverse))

        return y, state, backward

    def _pack(self, h, c):
        return (h, c) if self.kind.has_cell else h

    def forward_states(self, x, state0=None, lengths=None) -> StepStates:
        """Inference that also returns every layer's per-step states: a
        :class:`StepStates` ``(y, state, c, gates)``.

        ``c`` (L, T, B, D*H) (batch_first: (L, B, T, D*H)) is each layer's cell state
        after every step (an LSTM; None for the other kinds), ``gates`` (L, T, B, D*G*H)
        the gate activations of every step in PyTorch's order (LSTM i, f, g, o; GRU
        r, z, n; FastGRNN z), the directions side by side as in ``y``; zeros at padded
        steps.  They are the kernels' own numbers (the training pass's caches); no dropout.

        >>> import numpy as np, fastrnn
        >>> lstm = fastrnn.LSTM(3, 4, num_layers=2, seed=0)
        >>> out = lstm.forward_states(np.ones((5, 2, 3), np.float32))
        >>> out.c.shape, out.gates.shape
        ((2, 5, 2, 4), (2, 5, 2, 16))
        >>> bool(np.array_equal(out.c[-1, -1], out.state[1][-1]))    # c_T is c_n
        True
        """
        self._inference_only()
        x = float_array(x, "x", self.dtype, 3, contiguous=False)
        if min(x.shape[:2]) == 0:
            raise ValueError(f"x must have at least one time step and one batch row, got "
                             f"shape {x.shape}")
        return self._run_batched(x, state0, lengths, True, "state0", self.batch_first,
                                 step_states=True)

    def forward_train(self, x, state0=None, lengths=None):
        """Forward pass that keeps what backward needs.

        Returns ``(y, state, backward)``.  ``backward(dy, dstate=None)`` takes the gradient
        of ``y`` and of the final state (zeros if None), *adds* every parameter's gradient
        into its ``.grad`` and returns ``(dx, dstate0)``; with ``input_grad=False`` it
        does not compute ``dx`` (returned as None), for a caller that would discard it.
        Dropout (if any) is applied.  ``backward`` may be called once.
        """
        return self._run(x, state0, lengths, train=True)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        s += "".join(f", {k}={v!r}" for k, v in self._options().items())
        return s + f", dtype={self.dtype.name}"


_SHAPES_DOC = """
    Shapes (``D`` = 2 if bidirectional else 1, ``L`` = num_layers):

    * ``x``: (T, B, input_size), or (B, T, input_size) with ``batch_first``;
    * ``y``: (T, B, D*H) or (B, T, D*H): the last layer's outputs, the forward direction in
      the first H columns; 0 at padded steps;
    * states: (L*D, B, H) always (``batch_first`` never applies to states);
    * ``lengths``: (B,) ints in [1, T]: sequence b uses steps t < lengths[b] only, as
      PyTorch's ``pack_padded_sequence(..., enforce_sorted=False)``; the final state is the
      state at each sequence's last valid step;
    * as torch.nn's layers: one unbatched sequence ``x`` (T, input_size), with states
      (L*D, H) and outputs (T, D*H); an empty batch (B = 0) gives empty outputs.

    Regularisers, in ``forward_train`` only, drawn from ``seed``: ``dropout`` on the
    outputs of every layer but the last (a mask per step, PyTorch's); ``input_dropout`` on
    every layer's input and ``recurrent_dropout`` on h entering each recurrent product,
    one mask per sequence, the same at every step (variational dropout, Gal & Ghahramani
    2016; Keras' ``dropout`` and ``recurrent_dropout``).  ``zoneout`` (Krueger et al.
    2017): in training each unit of h keeps its previous value with that probability (of
    c, for an LSTM, with ``zoneout_cell``, by default the same), at every step; at
    inference the expectation ``z * h_{t-1} + (1 - z) * h_t`` (in ``__call__`` and
    ``forward_states`` too).

    ``reverse=True`` (not with ``bidirectional``): the one direction reads each sequence
    from its last valid step to its first (ONNX's ``direction="reverse"``, Keras'
    ``go_backwards`` with the outputs at their own steps); its final state is the state
    after step 0, and its parameters keep the suffix ``_l{k}``.

    Parameters ``weight_ih_l{k}`` (G*H, input_size or D*H), ``weight_hh_l{k}`` (G*H, H),
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (G*H,), suffix ``_reverse`` for the backward
    direction, drawn from uniform(-1/sqrt(H), 1/sqrt(H)) with ``numpy.random.default_rng(seed)``;
    a PyTorch ``state_dict()`` converted to numpy loads 1:1.  ``dropout`` applies to the
    outputs of every layer but the last, in ``forward_train`` only.
"""


class RNN(_RNNBase):
    __doc__ = r"""Elman RNN over a sequence: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

    ``act`` is tanh or relu (``nonlinearity=``); G = 1.  ``y, h_n = rnn(x, h0=None,
    lengths=None)``.
    """ + _SHAPES_DOC + r"""
    >>> import numpy as np, fastrnn
    >>> rnn = fastrnn.RNN(8, 16, num_layers=2, seed=0)
    >>> y, h_n = rnn(np.zeros((5, 3, 8), np.float32))
    >>> y.shape, h_n.shape
    ((5, 3, 16), (2, 3, 16))
    """

    mode = "RNN"
    kind = KINDS[mode]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, *,
                 reverse: bool = False, recurrent_dropout: float = 0.0,
                 input_dropout: float = 0.0, zoneout: float = 0.0,
                 zoneout_cell: float | None = None, dtype=np.float32,
                 seed: int | None = None):
        self.nonlinearity = nonlinearity      # checked by the base, where it was given
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, reverse=reverse,
                         recurrent_dropout=recurrent_dropout, input_dropout=input_dropout,
                         zoneout=zoneout, zoneout_cell=zoneout_cell, dtype=dtype, seed=seed)

    def __call__(self, x, h0=None, lengths=None):
        return self._run(x, h0, lengths, train=False, state_name="h0")

    def config(self) -> dict:
        return {**super().config(), "nonlinearity": self.nonlinearity}

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(_RNNBase):
    __doc__ = r"""Long short-term memory over a sequence (PyTorch's ``nn.LSTM``).

    Gates ``i, f, g, o`` (G = 4)::

        i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    With ``proj_size=P`` (PyTorch's LSTMP, Sak et al. 2014) ``h_t = W_hr (o_t * tanh(c_t))``
    has P < H values: parameters ``weight_hh_l{k}`` (4H, P) and ``weight_hr_l{k}`` (P, H),
    states h (L*D, B, P) and c (L*D, B, H), outputs D*P wide, exactly as
    ``torch.nn.LSTM(..., proj_size=P)``.

    With ``peephole=True`` (Gers & Schmidhuber 2000; ONNX's input ``P``) the gates read the
    cell state: ``i_t = sigmoid(... + p_i * c_{t-1})``, ``f_t = sigmoid(... + p_f *
    c_{t-1})``, ``o_t = sigmoid(... + p_o * c_t)``, with parameters ``peephole_l{k}`` of
    shape (3, H) (rows p_i, p_f, p_o; drawn as the weights are).  torch.nn has no such LSTM.

    With ``layer_norm=True`` (Ba, Kiros & Hinton 2016, "Layer Normalization", its
    appendix) the input and recurrent products are normalised apart, over all 4H gate
    values, and the cell state before the output tanh::

        G_t = LN(W_ih x_t; g_x, b_x) + LN(W_hh h_{t-1}; g_h, b_h)
        h_t = o_t * tanh(LN(c_t; g_c, b_c))
        LN(a; g, b) = g * (a - mean(a)) / sqrt(var(a) + 1e-5) + b

    with parameters ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``ln_ih_weight_l{k}``,
    ``ln_ih_bias_l{k}``, ``ln_hh_weight_l{k}``, ``ln_hh_bias_l{k}`` (4, H) and
    ``ln_cell_weight_l{k}``, ``ln_cell_bias_l{k}`` (1, H), the gains starting at 1 and the
    biases at 0 (the normalisations' biases are the layer's: no ``bias_ih``, ``bias_hh``).
    It does not combine with ``proj_size``, ``peephole``, ``recurrent_dropout`` or
    ``zoneout``.  torch.nn has no such LSTM.

    ``y, (h_n, c_n) = lstm(x, (h0, c0)=None, lengths=None)``.
    """ + _SHAPES_DOC + r"""
    >>> import numpy as np, fastrnn
    >>> lstm = fastrnn.LSTM(8, 16, bidirectional=True, seed=0)
    >>> y, (h_n, c_n) = lstm(np.zeros((5, 3, 8), np.float32), lengths=[5, 2, 4])
    >>> y.shape, h_n.shape
    ((5, 3, 32), (2, 3, 16))
    """

    mode = "LSTM"
    kind = KINDS[mode]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, *, peephole: bool = False,
                 layer_norm: bool = False, reverse: bool = False,
                 recurrent_dropout: float = 0.0, input_dropout: float = 0.0,
                 zoneout: float = 0.0, zoneout_cell: float | None = None,
                 dtype=np.float32, seed: int | None = None):
        self.kind = layer_kind(self.mode, peephole=flag(peephole, "peephole"),
                               layer_norm=flag(layer_norm, "layer_norm"))
        self.proj_size = projection_size(proj_size, positive_int(hidden_size, "hidden_size"))
        if self.kind.layer_norm:
            layer_norm_options(bias=bias, proj_size=self.proj_size)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, reverse=reverse,
                         recurrent_dropout=recurrent_dropout, input_dropout=input_dropout,
                         zoneout=zoneout, zoneout_cell=zoneout_cell, dtype=dtype, seed=seed)

    @property
    def peephole(self) -> bool:
        return self.kind.peephole

    @property
    def layer_norm(self) -> bool:
        return self.kind.layer_norm

    def __call__(self, x, state0=None, lengths=None):
        return self._run(x, state0, lengths, train=False)


class GRU(_RNNBase):
    __doc__ = r"""Gated recurrent unit over a sequence (PyTorch's ``nn.GRU``).

    Gates ``r, z, n`` (G = 3)::

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    With ``reset_after=False`` the reset gate scales h before the recurrent product (Cho
    et al. 2014; Keras' ``reset_after=False``; ONNX's default ``linear_before_reset=0``)::

        n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)

    with the same parameters.  torch.nn has no such GRU.

    ``y, h_n = gru(x, h0=None, lengths=None)``.
    """ + _SHAPES_DOC + r"""
    >>> import numpy as np, fastrnn
    >>> gru = fastrnn.GRU(8, 16, batch_first=True, seed=0)
    >>> y, h_n = gru(np.zeros((3, 5, 8), np.float32))
    >>> y.shape, h_n.shape
    ((3, 5, 16), (1, 3, 16))
    """

    mode = "GRU"
    kind = KINDS[mode]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, reset_after: bool = True,
                 reverse: bool = False, recurrent_dropout: float = 0.0,
                 input_dropout: float = 0.0, zoneout: float = 0.0,
                 zoneout_cell: float | None = None, dtype=np.float32,
                 seed: int | None = None):
        self.kind = layer_kind(self.mode, reset_after=flag(reset_after, "reset_after"))
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, reverse=reverse,
                         recurrent_dropout=recurrent_dropout, input_dropout=input_dropout,
                         zoneout=zoneout, zoneout_cell=zoneout_cell, dtype=dtype, seed=seed)

    @property
    def reset_after(self) -> bool:
        return not self.kind.reset_before

    def __call__(self, x, h0=None, lengths=None):
        return self._run(x, h0, lengths, train=False, state_name="h0")


# ---------------------------------------------------------------------------------------
# Feed-forward building blocks: the readout and the token embedding
# ---------------------------------------------------------------------------------------

class Linear(Module):
    r"""Dense layer ``y = x @ weight.T + bias`` over the last axis (PyTorch's ``nn.Linear``).

    ``weight`` (out_features, in_features) and ``bias`` (out_features,) are drawn from
    uniform(-1/sqrt(in_features), 1/sqrt(in_features)).  ``x`` (..., in_features) gives
    (..., out_features).  The products go through the same BLAS as the recurrent kernels.

    >>> import numpy as np, fastrnn
    >>> fastrnn.Linear(4, 2, seed=0)(np.ones((3, 4), np.float32)).shape
    (3, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32, seed: int | None = None):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        bias = flag(bias, "bias")
        self.dtype = as_dtype(dtype)
        rng = np.random.default_rng(seed_value(seed))
        k = 1.0 / np.sqrt(self.in_features)
        self.weight = self._register(
            "weight", rng.uniform(-k, k, (self.out_features, self.in_features)).astype(self.dtype))
        self.bias = (self._register("bias", rng.uniform(-k, k, self.out_features)
                                    .astype(self.dtype)) if bias else None)

    def _input(self, x):
        if isinstance(x, np.ndarray) and x.ndim:              # before x is copied
            kernel_sizes("x", rows=x.size // max(x.shape[-1], 1))
        a = float_array(x, "x", self.dtype, tuple(range(33)))
        if np.ndim(x) == 0:               # (ascontiguousarray makes a 0-D array 1-D)
            raise ValueError(f"x must be at least 1-D (..., in_features={self.in_features}), "
                             f"got a 0-D array")
        if a.shape[-1] != self.in_features:
            raise ValueError(f"x.shape[-1] must equal in_features={self.in_features}, "
                             f"got {a.shape[-1]}")
        return a

    def _forward(self, x):
        X = x.reshape(-1, self.in_features)
        Y = np.empty((X.shape[0], self.out_features), self.dtype)
        if self.bias is not None:
            Y[...] = self.bias.data
        # Y = X @ W.T (+ b)
        _engine.gemm(X, self.weight.data, Y, False, True, 1.0,
                     1.0 if self.bias is not None else 0.0)
        return X, Y.reshape(x.shape[:-1] + (self.out_features,))

    def __call__(self, x):
        return self._forward(self._input(x))[1]

    def forward_train(self, x):
        """Returns ``(y, backward)``; ``backward(dy)`` adds into ``weight.grad`` (and
        ``bias.grad``) and returns ``dx``."""
        x = self._input(x)
        X, y = self._forward(x)

        def backward(dy):
            dY = float_array(dy, "dy", self.dtype, y.ndim)
            if dY.shape != y.shape:
                raise ValueError(f"dy must have the shape of y, {y.shape}, got {dY.shape}")
            dY = dY.reshape(-1, self.out_features)
            # dW += dY.T @ X ;  db += dY.sum(0) ;  dX = dY @ W
            _engine.gemm(dY, X, self.weight.grad, True, False, 1.0, 1.0)
            if self.bias is not None:
                self.bias.grad += dY.sum(axis=0)
            dX = np.empty_like(X)
            _engine.gemm(dY, self.weight.data, dX, False, False, 1.0, 0.0)
            return dX.reshape(x.shape)

        return y, backward

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}"
                + (", bias=False" if self.bias is None else "") + f", dtype={self.dtype.name}")


class Embedding(Module):
    r"""Lookup table of token vectors: ``y[...] = weight[tokens[...]]`` (PyTorch's
    ``nn.Embedding``).

    ``weight`` (num_embeddings, embedding_dim) is drawn from N(0, 1); the row of
    ``padding_idx`` (if given) is zero and gets no gradient.  ``tokens`` is an integer
    array of any shape; the result has one more axis of size ``embedding_dim``.

    >>> import numpy as np, fastrnn
    >>> fastrnn.Embedding(10, 3, seed=0)(np.array([[1, 2], [3, 4]])).shape
    (2, 2, 3)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 padding_idx: int | None = None, dtype=np.float32, seed: int | None = None):
        super().__init__()
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim")
        if padding_idx is not None:
            if not -self.num_embeddings <= int(padding_idx) < self.num_embeddings:
                raise ValueError(f"padding_idx must be in [-{self.num_embeddings}, "
                                 f"{self.num_embeddings}), got {padding_idx}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        self.dtype = as_dtype(dtype)
        rng = np.random.default_rng(seed_value(seed))
        w = rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(self.dtype)
        if padding_idx is not None:
            w[padding_idx] = 0
        self.weight = self._register("weight", w)

    def _tokens(self, tokens) -> np.ndarray:
        t = as_array(tokens, "tokens")
        if t.dtype.kind not in "iu":
            raise TypeError(f"tokens must be integers, got dtype {t.dtype}")
        if t.size and (t.min() < 0 or t.max() >= self.num_embeddings):
            raise ValueError(f"tokens must lie in [0, {self.num_embeddings}), "
                             f"got values in [{t.min()}, {t.max()}]")
        return t

    def __call__(self, tokens):
        return self.weight.data[self._tokens(tokens)]

    def forward_train(self, tokens):
        """Returns ``(y, backward)``; ``backward(dy)`` adds into ``weight.grad`` and
        returns None (token inputs have no gradient)."""
        t = self._tokens(tokens)
        y = self.weight.data[t]

        def backward(dy):
            dy = float_array(dy, "dy", self.dtype, y.ndim)
            if dy.shape != y.shape:
                raise ValueError(f"dy must have the shape of y, {y.shape}, got {dy.shape}")
            flat = t.reshape(-1)
            rows = dy.reshape(-1, self.embedding_dim)
            if self.padding_idx is not None:
                keep = flat != self.padding_idx
                flat, rows = flat[keep], rows[keep]
            # weight.grad[flat[i]] += rows[i], in order (numpy.add.at's sums, in one loop)
            _engine.scatter_add_rows(flat, rows, self.weight.grad)
            return None

        return y, backward

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s + f", dtype={self.dtype.name}"
