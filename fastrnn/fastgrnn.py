"""FastRNN and FastGRNN layers (Kusupati et al., "FastGRNN: A Fast, Accurate, Stable and
Tiny Kilobyte Sized Gated Recurrent Neural Network", NeurIPS 2018).

Both are the sequence layers of fastrnn (stacking, both directions, ``lengths=``,
``batch_first``, float32 and float64, ``forward_train``, save/load, ``fit``) over the same
compiled time loops as the RNN, LSTM and GRU; what is theirs is a record in
fastrnn/_kinds.py and their cell math in fastrnn/_cellmath.h.

Parameters follow the authors' code (microsoft/EdgeML, ``FastRNNCell``,
``FastGRNNCell``): one ``W`` (``weight_ih``, (H, I)) and one ``U`` (``weight_hh``,
(H, H)), in PyTorch's (out, in) layout; the scalars kept before a sigmoid, so that
alpha, beta, zeta and nu stay in (0, 1); the same initial values.  With ``w_rank`` and
``u_rank`` the weights are low-rank products ``W = weight_ih2 @ weight_ih1`` and
``U = weight_hh2 @ weight_hh1`` (the paper's kilobyte-sized models): the layer stores the
factors and multiplies them out once per call.
"""

from __future__ import annotations

import math

import numpy as np

from ._kinds import KINDS
from ._validate import positive_int
from .layers import _SHAPES_DOC, _RNNBase

__all__ = ["FastRNN", "FastGRNN"]


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


class _FastBase(_RNNBase):
    """What FastRNN and FastGRNN share: low-rank weights, sigmoid-kept scalars, EdgeML's
    initial values."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, w_rank: int | None = None,
                 u_rank: int | None = None, scalar_init: dict[str, float],
                 reverse: bool = False, recurrent_dropout: float = 0.0,
                 input_dropout: float = 0.0, zoneout: float = 0.0,
                 zoneout_cell: float | None = None, dtype=np.float32,
                 seed: int | None = None):
        self.w_rank = None if w_rank is None else positive_int(w_rank, "w_rank")
        self.u_rank = None if u_rank is None else positive_int(u_rank, "u_rank")
        for name, value in scalar_init.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not math.isfinite(value):
                raise ValueError(f"{name}_init must be a finite number, got {value!r}")
        self._scalar_init = {name: float(v) for name, v in scalar_init.items()}
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, reverse=reverse,
                         recurrent_dropout=recurrent_dropout, input_dropout=input_dropout,
                         zoneout=zoneout, zoneout_cell=zoneout_cell, dtype=dtype, seed=seed)

    def _init_cell(self, rng: np.random.Generator, input_size: int, suffix: str) -> None:
        # EdgeML: weights 0.1 * N(0, 1), biases ones, the scalars at their initial values
        for name, shape in self.kind.cell_shapes(input_size, self.hidden_size, self.bias,
                                                 suffix, self.w_rank, self.u_rank):
            base = name[:-len(suffix)] if suffix else name
            if base in self._scalar_init:
                value = np.full(shape, self._scalar_init[base])
            elif base.startswith("weight"):
                value = 0.1 * rng.standard_normal(shape)
            else:
                value = np.ones(shape)
            self._register(name, value.astype(self.dtype))

    def _factors(self, name: str, suffix: str):
        """The two factor parameters of the low-rank weight ``name`` (``name`` 2 @ 1), or
        None for a full-rank one."""
        p = self._params
        if name + suffix in p:
            return None
        return p[name + "1" + suffix], p[name + "2" + suffix]

    def _full(self, name: str, suffix: str, grad: bool) -> np.ndarray:
        """The whole weight ``name`` as the kernels take it (with ``grad``: the array its
        gradient goes into; for a low-rank weight a new one, spread over the factors by
        :meth:`_add_grads`)."""
        factors = self._factors(name, suffix)
        if factors is None:
            param = self._params[name + suffix]
            return param.grad if grad else param.data
        f1, f2 = factors
        if grad:
            return np.zeros((f2.data.shape[0], f1.data.shape[1]), self.dtype)
        return f2.data @ f1.data

    def _cell_weights(self, suffix: str, grad: bool) -> tuple[np.ndarray, ...]:
        W = self._full("weight_ih", suffix, grad)
        U = self._full("weight_hh", suffix, grad)
        biases = [self._params.get(name + suffix) for name in self.kind.biases]
        arrays = [np.empty(0, self.dtype) if b is None else (b.grad if grad else b.data)
                  for b in biases]
        if len(arrays) == 1:
            arrays.append(np.empty(0, self.dtype))          # FastRNN: one bias, as b_ih
        raw = np.array([self._params[name + suffix].data[0] for name, _ in self.kind.scalars])
        scalars = np.zeros(2, self.dtype) if grad else _sigmoid(raw).astype(self.dtype)
        return (W, U, arrays[0], arrays[1], scalars)

    def _weights(self, grad: bool = False) -> list:
        return [[self._cell_weights(self._suffix(k, d), grad)
                 for d in range(self.num_directions)] for k in range(self.num_layers)]

    def _add_grads(self, grads: list) -> None:
        # the low-rank factors' gradients from their product's (W = W2 @ W1: dW1 = W2.T dW,
        # dW2 = dW W1.T) and the raw scalars' from their values' (s = sigmoid(raw))
        for k in range(self.num_layers):
            for d in range(self.num_directions):
                suffix = self._suffix(k, d)
                W_grad, U_grad, _, _, values_grad = grads[k][d]
                for name, full in (("weight_ih", W_grad), ("weight_hh", U_grad)):
                    factors = self._factors(name, suffix)
                    if factors is not None:
                        f1, f2 = factors
                        f1.grad += f2.data.T @ full
                        f2.grad += full @ f1.data.T
                for (name, _), g in zip(self.kind.scalars, values_grad):
                    raw = self._params[name + suffix]
                    s = _sigmoid(raw.data)
                    raw.grad += (g * s * (1 - s)).astype(self.dtype)

    def __call__(self, x, h0=None, lengths=None):
        return self._run(x, h0, lengths, train=False, state_name="h0")

    def config(self) -> dict:
        ranks = {name: r for name, r in (("w_rank", self.w_rank), ("u_rank", self.u_rank))
                 if r is not None}
        return {**super().config(), **ranks}

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.w_rank is not None:
            s += f", w_rank={self.w_rank}"
        if self.u_rank is not None:
            s += f", u_rank={self.u_rank}"
        return s


class FastRNN(_FastBase):
    __doc__ = r"""FastRNN over a sequence (Kusupati et al. 2018, equation (2))::

        h~_t = tanh(W x_t + U h_{t-1} + b)
        h_t  = alpha * h~_t + beta * h_{t-1}

    ``alpha = sigmoid(alpha_raw)``, ``beta = sigmoid(beta_raw)`` are trainable scalars
    (one pair per layer and direction), kept before the sigmoid as parameters ``alpha``
    and ``beta`` of shape (1,), initialised at -3 and 3 (alpha ~ 0.05: the residual
    connection carries the state at first).  Parameters per layer k and direction:
    ``weight_ih_l{k}`` W (H, I_k), ``weight_hh_l{k}`` U (H, H), ``bias_update_l{k}`` b
    (H,), ``alpha_l{k}``, ``beta_l{k}`` (``_reverse`` for the reverse direction);
    with ``w_rank``/``u_rank``: ``weight_ih1`` (r_w, I_k), ``weight_ih2`` (H, r_w) and
    ``weight_hh1`` (r_u, H), ``weight_hh2`` (H, r_u) instead, ``W = weight_ih2 @
    weight_ih1``.  ``y, h_n = rnn(x, h0=None, lengths=None)``.
    """ + _SHAPES_DOC + r"""
    >>> import numpy as np, fastrnn
    >>> rnn = fastrnn.FastRNN(8, 16, seed=0)
    >>> y, h_n = rnn(np.zeros((5, 3, 8), np.float32))
    >>> y.shape, h_n.shape, round(float(rnn.alpha_l0.data[0]), 1)
    ((5, 3, 16), (1, 3, 16), -3.0)
    """

    mode = "FastRNN"
    kind = KINDS[mode]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, w_rank: int | None = None,
                 u_rank: int | None = None, alpha_init: float = -3.0, beta_init: float = 3.0,
                 reverse: bool = False, recurrent_dropout: float = 0.0,
                 input_dropout: float = 0.0, zoneout: float = 0.0,
                 zoneout_cell: float | None = None, dtype=np.float32,
                 seed: int | None = None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, w_rank=w_rank, u_rank=u_rank,
                         scalar_init={"alpha": alpha_init, "beta": beta_init}, reverse=reverse,
                         recurrent_dropout=recurrent_dropout, input_dropout=input_dropout,
                         zoneout=zoneout, zoneout_cell=zoneout_cell, dtype=dtype, seed=seed)


class FastGRNN(_FastBase):
    __doc__ = r"""FastGRNN over a sequence (Kusupati et al. 2018, equation (6))::

        z_t  = sigmoid(W x_t + U h_{t-1} + b_z)
        h~_t = tanh(W x_t + U h_{t-1} + b_h)
        h_t  = (zeta * (1 - z_t) + nu) * h~_t + z_t * h_{t-1}

    One ``W`` and one ``U`` serve the gate and the candidate, so a step costs one
    recurrent product of width H, as a vanilla RNN's.  ``zeta = sigmoid(zeta_raw)`` and
    ``nu = sigmoid(nu_raw)`` are trainable scalars kept before the sigmoid (parameters
    ``zeta``, ``nu`` of shape (1,), initialised at 1 and -4).  Parameters per layer k and
    direction: ``weight_ih_l{k}`` W (H, I_k), ``weight_hh_l{k}`` U (H, H),
    ``bias_gate_l{k}`` b_z, ``bias_update_l{k}`` b_h (H,), ``zeta_l{k}``, ``nu_l{k}``;
    with ``w_rank``/``u_rank`` the factors ``weight_ih1`` (r_w, I_k), ``weight_ih2``
    (H, r_w), ``weight_hh1`` (r_u, H), ``weight_hh2`` (H, r_u), ``W = weight_ih2 @
    weight_ih1``, ``U = weight_hh2 @ weight_hh1``.  ``y, h_n = rnn(x, h0=None,
    lengths=None)``.
    """ + _SHAPES_DOC + r"""
    >>> import numpy as np, fastrnn
    >>> rnn = fastrnn.FastGRNN(8, 16, w_rank=4, u_rank=4, seed=0)
    >>> y, h_n = rnn(np.zeros((5, 3, 8), np.float32))
    >>> y.shape, sum(p.data.size for p in rnn.parameters())
    ((5, 3, 16), 258)
    """

    mode = "FastGRNN"
    kind = KINDS[mode]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, w_rank: int | None = None,
                 u_rank: int | None = None, zeta_init: float = 1.0, nu_init: float = -4.0,
                 reverse: bool = False, recurrent_dropout: float = 0.0,
                 input_dropout: float = 0.0, zoneout: float = 0.0,
                 zoneout_cell: float | None = None, dtype=np.float32,
                 seed: int | None = None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, w_rank=w_rank, u_rank=u_rank,
                         scalar_init={"zeta": zeta_init, "nu": nu_init}, reverse=reverse,
                         recurrent_dropout=recurrent_dropout, input_dropout=input_dropout,
                         zoneout=zoneout, zoneout_cell=zoneout_cell, dtype=dtype, seed=seed)
