"""Pure-NumPy reference implementation of the RNN, LSTM and GRU layers.

This module is the oracle of the tests (the kernels of ``fastrnn._core`` must match it
in float64 to 1e-10) and the NumPy baseline of the benchmarks. It is written the way a
careful NumPy user would write it: vectorised over the batch, the input projection of
all time steps done as one matmul before the time loop, the weight gradients as one
matmul each after the backward loop. Only the recurrence is a Python loop over t.
Computations run in the dtype of ``x`` (float32 or float64); inputs are never modified.

Equations, gate order and parameter shapes are PyTorch's ``nn.RNN``, ``nn.LSTM`` and
``nn.GRU``; each forward function states its equations as numbered steps (1), (2), ...
and each backward comment carries the number of the forward step it differentiates ("(3)
then (2)" for a chain through both).

Notation (the one notation of fastrnn: ``_core.pyx`` and ``_cellmath.h`` cite it)
-------------------------------------------------------------------------------------
::

    T, B, I, H    time steps, batch rows, input features, hidden units.
    NG            gate blocks (G in the kernels): 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU:
                  r, z, n). Every (..., NG*H) array holds the blocks side by side in that
                  order.
    x             (T, B, I) input, time-major (X: the same as (T*B, I) rows).
    h_prev, h_t   (B, H) hidden state entering / leaving step t; c_prev, c_t for the LSTM.
    Xp            (T, B, NG*H) input projection of all steps, ``x @ W_ih.T + b_ih``: one
                  matmul over the T*B rows. The RNN and LSTM fold ``b_hh`` into it too; the
                  GRU cannot, because r multiplies ``b_hn``. (The kernels' Gt holds it.)
    Gh            (B, NG*H) recurrent projection of one step, ``h_prev @ W_hh.T``
                  (``+ b_hh`` for the GRU).
    Hn            (T, B, H) GRU only: the n block of Gh of every step, ``W_hn h_prev + b_hn``.
    A             (T, B, NG*H) gate activations (after sigmoid / tanh / relu).
    Hp, Cp        (T, B, H) h_prev (c_prev) of every step, kept for the backward pass.
    dh, dc        (B, H) gradient reaching h_t / c_t: from the step processed after t,
                  plus ``dy[t]``.
    dGx, dGh      (T, B, NG*H) gradient w.r.t. the pre-activations fed by Xp / by Gh.
                  They are one array (dG) except for the GRU, whose n blocks differ
                  (``dGh_n = dGx_n * r``).
    active        (T, B) bool, ``t < lengths[b]``; None without lengths.

After the backward loop, over all T*B rows at once::

    dx    = dGx @ W_ih        dW_ih = dGx.T @ x         db_ih = dGx.sum(0)
    dW_hh = dGh.T @ Hp        db_hh = dGh.sum(0)

Lengths follow ``pack_padded_sequence(..., enforce_sorted=False)``: where ``active[t, b]``
is False, row b keeps its state unchanged and outputs 0. So the forward direction stops
after step ``lengths[b] - 1``, and the reverse direction (t = T-1 down to 0) starts there
from h0. The backward pass ignores ``dy`` at those steps and passes dh, dc through them.
"""

from collections.abc import Callable

import numpy as np

__all__ = [
    "sigmoid",
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "stack_forward",
    "stack_backward",
]

# The oracle imports nothing of the package it checks (it loads on its own, without the
# compiled core), so it states the gate counts itself; tests/test_kinds.py checks that they
# are fastrnn._kinds' counts.
NUM_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


# ----------------------------------------------------------------------------- helpers


def sigmoid(a):
    """Logistic function ``1 / (1 + exp(-a))``, as ``(1 + tanh(a/2)) / 2``: no overflow.

    >>> import numpy as np
    >>> from fastrnn.reference import sigmoid
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist()   # no overflow
    [0.0, 0.5, 1.0]
    """
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _float_dtype(x):
    """float32 and float64 stay as they are; anything else computes in float64."""
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _check_shape(name, a, shape):
    if a is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def _prepare(x, states, W_ih, W_hh, b_ih, b_hh, num_gates, lengths):
    """Cast everything to the dtype of x and check shapes.

    ``states`` is a list of (name, array) pairs, each (B, H). Returns x, the list of
    states, the weights (W_ih, W_hh, b_ih, b_hh) and the (T, B) mask ``active``.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {x.shape}")
    dtype = _float_dtype(x)
    x = x.astype(dtype, copy=False)
    T, B, I = x.shape
    W_ih, W_hh, b_ih, b_hh = (None if a is None else np.asarray(a, dtype=dtype)
                              for a in (W_ih, W_hh, b_ih, b_hh))
    H = W_hh.shape[-1]
    _check_shape("W_ih", W_ih, (num_gates * H, I))
    _check_shape("W_hh", W_hh, (num_gates * H, H))
    _check_shape("b_ih", b_ih, (num_gates * H,))
    _check_shape("b_hh", b_hh, (num_gates * H,))
    states = [_check_shape(name, np.asarray(s, dtype=dtype), (B, H)) for name, s in states]
    return x, states, (W_ih, W_hh, b_ih, b_hh), _active_mask(lengths, T, B)


def _active_mask(lengths, T, B):
    """(T, B) bool, True where step t lies inside sequence b; None without lengths."""
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be integers of shape ({B},), "
                         f"got {lengths.dtype} of shape {lengths.shape}")
    if lengths.min() < 1 or lengths.max() > T:
        raise ValueError(f"lengths must lie in [1, {T}], "
                         f"got min {lengths.min()} and max {lengths.max()}")
    return np.arange(T)[:, None] < lengths[None, :]


def _steps(T, reverse):
    """Time indices in processing order."""
    return range(T - 1, -1, -1) if reverse else range(T)


def _row_mask(active, t):
    return None if active is None else active[t]


def _keep(mask, new, old):
    """``new`` on active rows, ``old`` (the carried state) on the others."""
    return new if mask is None else np.where(mask[:, None], new, old)


def _zero_inactive(a, mask):
    """Zero, in place, the entries of ``a`` (leading axes shaped like mask) where mask is False."""
    if mask is not None:
        a[~mask] = 0


def _blocks(a, n):
    """The n gate blocks of a (..., n*H) array, as views (writing them writes ``a``)."""
    return np.split(a, n, axis=-1)


def _sum_biases(b_ih, b_hh):
    if b_ih is None or b_hh is None:
        return b_hh if b_ih is None else b_ih
    return b_ih + b_hh


def _project_inputs(x, W_ih, bias):
    """Xp = x @ W_ih.T + bias over all T*B rows: one matmul."""
    T, B, I = x.shape
    Xp = (x.reshape(T * B, I) @ W_ih.T).reshape(T, B, -1)
    if bias is not None:
        Xp += bias
    return Xp


def _forward_cache(x, weights, active, reverse, Hp, A, **extra):
    W_ih, W_hh, b_ih, b_hh = weights
    return dict(x=x, W_ih=W_ih, W_hh=W_hh, has_b_ih=b_ih is not None,
                has_b_hh=b_hh is not None, active=active, reverse=reverse,
                Hp=Hp, A=A, **extra)


def _backward_inputs(dy, dstates, cache):
    """dy in the cache dtype with padded steps zeroed, and the state gradients (None -> 0)."""
    x, Hp, active = cache["x"], cache["Hp"], cache["active"]
    dy = _check_shape("dy", np.asarray(dy, dtype=x.dtype), Hp.shape)
    if active is not None:
        dy = np.where(active[:, :, None], dy, 0)  # y is constant 0 there
    zeros = np.zeros(Hp.shape[1:], dtype=x.dtype)
    dstates = [zeros if d is None else
               _check_shape(name, np.asarray(d, dtype=x.dtype), zeros.shape)
               for name, d in dstates]
    return dy, dstates


def _input_and_weight_grads(dGx, dGh, cache):
    """dx and the parameter gradients from the pre-activation gradients of all steps."""
    x, Hp = cache["x"], cache["Hp"]
    T, B, I = x.shape
    dGx = dGx.reshape(T * B, -1)
    dGh = dGh.reshape(T * B, -1)
    dx = (dGx @ cache["W_ih"]).reshape(T, B, I)
    grads = {"weight_ih": dGx.T @ x.reshape(T * B, I),
             "weight_hh": dGh.T @ Hp.reshape(T * B, -1)}
    if cache["has_b_ih"]:
        grads["bias_ih"] = dGx.sum(axis=0)
    if cache["has_b_hh"]:
        grads["bias_hh"] = dGh.sum(axis=0)
    return dx, grads


# ----------------------------------------------------------------------------- RNN


def _relu(a):
    return np.maximum(a, 0)


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"tanh": np.tanh, "relu": _relu}


def _activation_grad(nonlinearity, a):
    """d act / d pre-activation, from the activation value ``a``."""
    return 1 - a * a if nonlinearity == "tanh" else (a > 0).astype(a.dtype)


def rnn_forward(x, h0, W_ih, W_hh, b_ih=None, b_hh=None, nonlinearity="tanh",
                lengths=None, reverse=False):
    """Elman RNN over a sequence, one layer, one direction.

    (1) G_t = Xp[t] + h_prev @ W_hh.T      with Xp = x @ W_ih.T + b_ih + b_hh
    (2) h_t = act(G_t)                     act = tanh or relu

    x (T, B, I), h0 (B, H), W_ih (H, I), W_hh (H, H), b_ih, b_hh (H,) or None.
    Returns y (T, B, H), h_n (B, H) and the cache for ``rnn_backward``.

    >>> import numpy as np
    >>> import fastrnn
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> layer = fastrnn.RNN(3, 4, dtype=np.float64, seed=0)
    >>> w = layer.state_dict()
    >>> y, h_n, cache = reference.rnn_forward(x, np.zeros((2, 4)), w["weight_ih_l0"],
    ...                                       w["weight_hh_l0"], w["bias_ih_l0"], w["bias_hh_l0"])
    >>> y_fast, h_fast = layer(x)                          # the compiled kernels agree
    >>> bool(np.allclose(y, y_fast, rtol=1e-10, atol=1e-12))
    True
    """
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    act = _ACTIVATIONS[nonlinearity]
    x, (h,), weights, active = _prepare(x, [("h0", h0)], W_ih, W_hh, b_ih, b_hh, 1, lengths)
    W_hh = weights[1]
    T, B, H = x.shape[0], x.shape[1], h.shape[1]
    Xp = _project_inputs(x, weights[0], _sum_biases(*weights[2:]))  # (1) input part, all steps
    A = np.zeros((T, B, H), dtype=x.dtype)
    Hp = np.zeros_like(A)
    for t in _steps(T, reverse):
        mask = _row_mask(active, t)
        Hp[t] = h
        h_t = act(Xp[t] + h @ W_hh.T)  # (1), (2)
        A[t] = h_t
        h = _keep(mask, h_t, h)
    y = A.copy()
    _zero_inactive(y, active)
    cache = _forward_cache(x, weights, active, reverse, Hp, A, nonlinearity=nonlinearity)
    return y, h, cache


def rnn_backward(dy, dh_n, cache):
    """Backpropagation through time for ``rnn_forward``.

    dy (T, B, H), dh_n (B, H) or None (zeros). Returns dx (T, B, I), dh0 (B, H) and
    grads: dict with "weight_ih", "weight_hh" and, if the forward had them, "bias_ih",
    "bias_hh".

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> W_ih, W_hh = rng.standard_normal((4, 3)), rng.standard_normal((4, 4))
    >>> y, h_n, cache = reference.rnn_forward(x, np.zeros((2, 4)), W_ih, W_hh)
    >>> dx, dh0, grads = reference.rnn_backward(np.ones_like(y), None, cache)
    >>> dx.shape, dh0.shape, sorted(grads)
    ((6, 2, 3), (2, 4), ['weight_hh', 'weight_ih'])
    """
    dy, (dh,) = _backward_inputs(dy, [("dh_n", dh_n)], cache)
    A, W_hh, active = cache["A"], cache["W_hh"], cache["active"]
    dG = np.zeros_like(A)
    for t in _steps(A.shape[0], not cache["reverse"]):
        mask = _row_mask(active, t)
        dh = dh + dy[t]
        dG[t] = dh * _activation_grad(cache["nonlinearity"], A[t])  # (2)
        _zero_inactive(dG[t], mask)
        dh = _keep(mask, dG[t] @ W_hh, dh)  # (1) into h_prev
    dx, grads = _input_and_weight_grads(dG, dG, cache)
    return dx, dh, grads


# ----------------------------------------------------------------------------- LSTM


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih=None, b_hh=None, lengths=None, reverse=False):
    """LSTM over a sequence, one layer, one direction (gate blocks i, f, g, o).

    (1) G_t = Xp[t] + h_prev @ W_hh.T      with Xp = x @ W_ih.T + b_ih + b_hh
    (2) i = σ(G_i), f = σ(G_f), g = tanh(G_g), o = σ(G_o)
    (3) c_t = f * c_prev + i * g
    (4) h_t = o * tanh(c_t)

    x (T, B, I), h0, c0 (B, H), W_ih (4H, I), W_hh (4H, H), b_ih, b_hh (4H,) or None.
    Returns y (T, B, H), h_n, c_n (B, H) and the cache for ``lstm_backward``.

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> W_ih, W_hh = rng.standard_normal((16, 3)), rng.standard_normal((16, 4))
    >>> h0 = c0 = np.zeros((2, 4))
    >>> y, h_n, c_n, cache = reference.lstm_forward(x, h0, c0, W_ih, W_hh,
    ...                                             lengths=np.array([6, 3]))
    >>> bool((y[3:, 1] == 0).all())                        # padded steps output 0
    True
    """
    x, (h, c), weights, active = _prepare(x, [("h0", h0), ("c0", c0)], W_ih, W_hh,
                                          b_ih, b_hh, 4, lengths)
    W_hh = weights[1]
    T, B, H = x.shape[0], x.shape[1], h.shape[1]
    Xp = _project_inputs(x, weights[0], _sum_biases(*weights[2:]))  # (1) input part, all steps
    A = np.zeros((T, B, 4 * H), dtype=x.dtype)
    y, Hp, Cp, TC = (np.zeros((T, B, H), dtype=x.dtype) for _ in range(4))
    for t in _steps(T, reverse):
        mask = _row_mask(active, t)
        Hp[t], Cp[t] = h, c
        G_i, G_f, G_g, G_o = _blocks(Xp[t] + h @ W_hh.T, 4)  # (1)
        i, f, g, o = _blocks(A[t], 4)  # views: filling them fills A[t]
        i[:], f[:], g[:], o[:] = sigmoid(G_i), sigmoid(G_f), np.tanh(G_g), sigmoid(G_o)  # (2)
        c_t = f * c + i * g  # (3)
        TC[t] = np.tanh(c_t)
        h_t = o * TC[t]  # (4)
        y[t] = h_t
        h, c = _keep(mask, h_t, h), _keep(mask, c_t, c)
    _zero_inactive(y, active)
    cache = _forward_cache(x, weights, active, reverse, Hp, A, Cp=Cp, TC=TC)
    return y, h, c, cache


def lstm_backward(dy, dh_n, dc_n, cache):
    """Backpropagation through time for ``lstm_forward``.

    dy (T, B, H), dh_n, dc_n (B, H) or None (zeros). Returns dx (T, B, I), dh0, dc0
    (B, H) and grads (see ``rnn_backward``).

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> W_ih, W_hh = rng.standard_normal((16, 3)), np.zeros((16, 4))   # no path through h
    >>> h0 = c0 = np.zeros((2, 4))
    >>> y, h_n, c_n, cache = reference.lstm_forward(x, h0, c0, W_ih, W_hh)
    >>> dx, dh0, dc0, grads = reference.lstm_backward(np.zeros_like(y), None,
    ...                                               np.ones((2, 4)), cache)
    >>> dx.shape, grads["weight_hh"].shape
    ((6, 2, 3), (16, 4))
    >>> f = reference.sigmoid(x @ W_ih[4:8].T)            # (T, B, H): the forget gates, (2)
    >>> bool(np.allclose(dc0, f.prod(axis=0)))             # dc_n reaches c0 through (3) alone
    True
    """
    dy, (dh, dc) = _backward_inputs(dy, [("dh_n", dh_n), ("dc_n", dc_n)], cache)
    A, W_hh, active = cache["A"], cache["W_hh"], cache["active"]
    Cp, TC = cache["Cp"], cache["TC"]
    dG = np.zeros_like(A)
    for t in _steps(A.shape[0], not cache["reverse"]):
        mask = _row_mask(active, t)
        i, f, g, o = _blocks(A[t], 4)
        dG_i, dG_f, dG_g, dG_o = _blocks(dG[t], 4)  # views: filling them fills dG[t]
        dh = dh + dy[t]
        dc_t = dc + dh * o * (1 - TC[t] * TC[t])  # (4) through tanh(c_t)
        dG_o[:] = dh * TC[t] * o * (1 - o)  # (4) then (2)
        dG_i[:] = dc_t * g * i * (1 - i)  # (3) then (2)
        dG_f[:] = dc_t * Cp[t] * f * (1 - f)  # (3) then (2)
        dG_g[:] = dc_t * i * (1 - g * g)  # (3) then (2)
        _zero_inactive(dG[t], mask)
        dh = _keep(mask, dG[t] @ W_hh, dh)  # (1) into h_prev
        dc = _keep(mask, dc_t * f, dc)  # (3) into c_prev
    dx, grads = _input_and_weight_grads(dG, dG, cache)
    return dx, dh, dc, grads


# ----------------------------------------------------------------------------- GRU


def gru_forward(x, h0, W_ih, W_hh, b_ih=None, b_hh=None, lengths=None, reverse=False):
    """GRU over a sequence, one layer, one direction (gate blocks r, z, n).

    (1) Gh = h_prev @ W_hh.T + b_hh        with Xp = x @ W_ih.T + b_ih
    (2) r = σ(Xp_r + Gh_r), z = σ(Xp_z + Gh_z)
    (3) n = tanh(Xp_n + r * Hn)
    (4) h_t = (1 - z) * n + z * h_prev

    x (T, B, I), h0 (B, H), W_ih (3H, I), W_hh (3H, H), b_ih, b_hh (3H,) or None.
    Returns y (T, B, H), h_n (B, H) and the cache for ``gru_backward``.

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> W_ih, W_hh = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    >>> y, h_n, cache = reference.gru_forward(x, np.zeros((2, 4)), W_ih, W_hh, reverse=True)
    >>> bool(np.array_equal(y[0], h_n))                    # reverse: the last step is t = 0
    True
    """
    x, (h,), weights, active = _prepare(x, [("h0", h0)], W_ih, W_hh, b_ih, b_hh, 3, lengths)
    W_hh, b_hh = weights[1], weights[3]
    T, B, H = x.shape[0], x.shape[1], h.shape[1]
    Xp = _project_inputs(x, weights[0], weights[2])  # (1) input part, all steps
    A = np.zeros((T, B, 3 * H), dtype=x.dtype)
    y, Hp, Hn = (np.zeros((T, B, H), dtype=x.dtype) for _ in range(3))
    for t in _steps(T, reverse):
        mask = _row_mask(active, t)
        Hp[t] = h
        Gh = h @ W_hh.T  # (1)
        if b_hh is not None:
            Gh += b_hh
        Xp_r, Xp_z, Xp_n = _blocks(Xp[t], 3)
        Gh_r, Gh_z, Hn[t] = _blocks(Gh, 3)  # Hn of every step is kept for backward
        r, z, n = _blocks(A[t], 3)  # views: filling them fills A[t]
        r[:], z[:] = sigmoid(Xp_r + Gh_r), sigmoid(Xp_z + Gh_z)  # (2)
        n[:] = np.tanh(Xp_n + r * Hn[t])  # (3)
        h_t = n + z * (h - n)  # (4)
        y[t] = h_t
        h = _keep(mask, h_t, h)
    _zero_inactive(y, active)
    cache = _forward_cache(x, weights, active, reverse, Hp, A, Hn=Hn)
    return y, h, cache


def gru_backward(dy, dh_n, cache):
    """Backpropagation through time for ``gru_forward``.

    dy (T, B, H), dh_n (B, H) or None (zeros). Returns dx (T, B, I), dh0 (B, H) and
    grads (see ``rnn_backward``).

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> W_ih, W_hh = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    >>> h0 = np.zeros((2, 4))
    >>> y, h_n, cache = reference.gru_forward(x, h0, W_ih, W_hh)
    >>> dx, dh0, grads = reference.gru_backward(np.zeros_like(y), np.ones((2, 4)),
    ...                                         cache)
    >>> dx.shape, dh0.shape
    ((6, 2, 3), (2, 4))
    >>> # dh0 is d sum(h_n) / d h0: a central difference in one entry of h0 agrees
    >>> e = np.zeros_like(h0)
    >>> e[0, 1] = 1e-6
    >>> sum_h_n = lambda h0: reference.gru_forward(x, h0, W_ih, W_hh)[1].sum()
    >>> bool(abs((sum_h_n(h0 + e) - sum_h_n(h0 - e)) / 2e-6 - dh0[0, 1]) < 1e-6)
    True
    """
    dy, (dh,) = _backward_inputs(dy, [("dh_n", dh_n)], cache)
    A, W_hh, active = cache["A"], cache["W_hh"], cache["active"]
    Hp, Hn = cache["Hp"], cache["Hn"]
    dGx, dGh = np.zeros_like(A), np.zeros_like(A)
    for t in _steps(A.shape[0], not cache["reverse"]):
        mask = _row_mask(active, t)
        r, z, n = _blocks(A[t], 3)
        dGx_r, dGx_z, dGx_n = _blocks(dGx[t], 3)  # views: filling them fills dGx[t]
        dGh_r, dGh_z, dGh_n = _blocks(dGh[t], 3)
        dh = dh + dy[t]
        dGx_n[:] = dh * (1 - z) * (1 - n * n)  # (4) then (3) through tanh
        dGh_n[:] = dGx_n * r  # (3)
        dGx_r[:] = dGx_n * Hn[t] * r * (1 - r)  # (3) then (2)
        dGx_z[:] = dh * (Hp[t] - n) * z * (1 - z)  # (4) then (2)
        dGh_r[:], dGh_z[:] = dGx_r, dGx_z  # (2) r and z see Xp and Gh alike
        _zero_inactive(dGx[t], mask)
        _zero_inactive(dGh[t], mask)
        dh = _keep(mask, dGh[t] @ W_hh + dh * z, dh)  # (1) and the z * h_prev path of (4)
    dx, grads = _input_and_weight_grads(dGx, dGh, cache)
    return dx, dh, grads


# ----------------------------------------------------------------------------- stacks


def _direction_forward(mode, x, h0, c0, weights, lengths, reverse, nonlinearity):
    """One layer, one direction, with the LSTM's signature for all modes."""
    W_ih, W_hh, b_ih, b_hh = weights
    if mode == "LSTM":
        return lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, lengths=lengths,
                            reverse=reverse)
    if mode == "GRU":
        y, h_n, cache = gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, lengths=lengths,
                                    reverse=reverse)
    else:
        y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh,
                                    nonlinearity=nonlinearity, lengths=lengths,
                                    reverse=reverse)
    return y, h_n, None, cache


def _direction_backward(mode, dy, dh_n, dc_n, cache):
    if mode == "LSTM":
        return lstm_backward(dy, dh_n, dc_n, cache)
    backward = gru_backward if mode == "GRU" else rnn_backward
    dx, dh0, grads = backward(dy, dh_n, cache)
    return dx, dh0, None, grads


def _initial_state(name, s, shape, dtype):
    if s is None:
        return np.zeros(shape, dtype=dtype)
    return _check_shape(name, np.asarray(s, dtype=dtype), shape)


def stack_forward(mode, x, params, num_layers=1, bidirectional=False, h0=None, c0=None,
                  lengths=None, nonlinearity="tanh"):
    """Multi-layer, optionally bidirectional RNN / LSTM / GRU, as PyTorch's modules.

    mode: "RNN", "LSTM" or "GRU". params: PyTorch names ``weight_ih_l{k}{suffix}``,
    ``weight_hh_l{k}{suffix}``, ``bias_ih_l{k}{suffix}``, ``bias_hh_l{k}{suffix}`` with
    suffix "" or "_reverse" (bias keys absent when bias=False). x (T, B, I), time-major.
    h0, c0 (num_layers*D, B, H), layer-major then direction, None for zeros; c0 for the
    LSTM only. No dropout.

    Returns y (T, B, D*H) (forward direction in the first H columns), h_n, c_n
    (num_layers*D, B, H) (c_n None unless LSTM) and the cache for ``stack_backward``.

    >>> import numpy as np
    >>> import fastrnn
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> layer = fastrnn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    >>> y, h_n, c_n, cache = reference.stack_forward("LSTM", x, layer.state_dict(),
    ...                                              num_layers=2, bidirectional=True)
    >>> y_fast, (h_fast, c_fast) = layer(x)
    >>> y.shape, bool(np.allclose(y, y_fast, rtol=1e-10, atol=1e-12))
    ((6, 2, 8), True)
    """
    if mode not in NUM_GATES:
        raise ValueError(f"mode must be one of {sorted(NUM_GATES)}, got {mode!r}")
    if mode != "LSTM" and c0 is not None:
        raise ValueError(f"c0 is for the LSTM only, got it with mode={mode!r}")
    D = 2 if bidirectional else 1
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {x.shape}")
    dtype = _float_dtype(x)
    T, B = x.shape[:2]
    H = params["weight_hh_l0"].shape[-1]
    state_shape = (num_layers * D, B, H)
    h0 = _initial_state("h0", h0, state_shape, dtype)
    c0 = _initial_state("c0", c0, state_shape, dtype) if mode == "LSTM" else None
    h_n = np.zeros(state_shape, dtype=dtype)
    c_n = np.zeros(state_shape, dtype=dtype) if mode == "LSTM" else None
    caches = []
    layer_input = x
    for k in range(num_layers):
        outputs = []
        for d, suffix in enumerate(["", "_reverse"][:D]):
            j = k * D + d
            weights = tuple(params.get(f"{name}_l{k}{suffix}")
                            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            y, h_n[j], c_last, cache = _direction_forward(
                mode, layer_input, h0[j], None if c0 is None else c0[j], weights,
                lengths, d == 1, nonlinearity)
            if c_n is not None:
                c_n[j] = c_last
            outputs.append(y)
            caches.append(cache)
        layer_input = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
    cache = dict(mode=mode, num_layers=num_layers, D=D, H=H, dtype=dtype, caches=caches)
    return layer_input, h_n, c_n, cache


def stack_backward(dy, dh_n, dc_n, cache):
    """Backpropagation through ``stack_forward``.

    dy (T, B, D*H); dh_n, dc_n (num_layers*D, B, H) or None (zeros); dc_n for the LSTM
    only. Returns dx (T, B, I), dh0, dc0 (num_layers*D, B, H) (dc0 None unless LSTM) and
    grads: dict with the keys of ``params``.

    >>> import numpy as np
    >>> import fastrnn
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> layer = fastrnn.GRU(3, 4, num_layers=2, dtype=np.float64, seed=0)
    >>> y, h_n, c_n, cache = reference.stack_forward("GRU", x, layer.state_dict(), num_layers=2)
    >>> dx, dh0, dc0, grads = reference.stack_backward(np.ones_like(y), None, None, cache)
    >>> sorted(grads) == sorted(layer.state_dict())
    True
    """
    mode, L, D, H, dtype = (cache[key] for key in ("mode", "num_layers", "D", "H", "dtype"))
    lstm = mode == "LSTM"
    if not lstm and dc_n is not None:
        raise ValueError(f"dc_n is for the LSTM only, got it with mode={mode!r}")
    state_shape = (L * D,) + cache["caches"][0]["Hp"].shape[1:]
    dh_n = _initial_state("dh_n", dh_n, state_shape, dtype)
    dc_n = _initial_state("dc_n", dc_n, state_shape, dtype) if lstm else None
    dh0 = np.zeros(state_shape, dtype=dtype)
    dc0 = np.zeros(state_shape, dtype=dtype) if lstm else None
    grads = {}
    d_output = np.asarray(dy, dtype=dtype)
    for k in reversed(range(L)):
        d_input: np.ndarray | None = None
        for d, suffix in enumerate(["", "_reverse"][:D]):
            j = k * D + d
            dx, dh0[j], dc0_j, g = _direction_backward(
                mode, d_output[:, :, d * H:(d + 1) * H], dh_n[j],
                dc_n[j] if lstm else None, cache["caches"][j])
            if dc0 is not None:
                dc0[j] = dc0_j
            d_input = dx if d_input is None else d_input + dx  # both read the layer input
            grads.update({f"{name}_l{k}{suffix}": v for name, v in g.items()})
        assert d_input is not None           # D >= 1 directions
        d_output = d_input
    return d_output, dh0, dc0, grads


# ----------------------------------------------------------------------------- FastRNN, FastGRNN
#
# FastRNN and FastGRNN (Kusupati et al., "FastGRNN: A Fast, Accurate, Stable and Tiny
# Kilobyte Sized Gated Recurrent Neural Network", NeurIPS 2018, equations (2) and (6)), as
# the authors' code (EdgeML, pytorch/edgeml_pytorch/graph/rnn.py: FastRNNCell,
# FastGRNNCell) computes them. The notation above holds, with:
#
#     W, U          (H, I), (H, H): the paper's W and U in PyTorch's layout (out, in), so
#                   ``W x_t`` is ``x @ W.T`` (EdgeML's CUDA cell and C code store them so;
#                   its PyTorch cells, since 2020, store the transposes, (I, H), (H, H)).
#                   One W and one U only: FastGRNN's gate and candidate share them, so
#                   each step has one recurrent product ``h_prev @ U.T`` of width H.
#     P             (B, H) FastGRNN: ``Xp[t] + h_prev @ U.T`` with Xp = x @ W.T (no bias:
#                   the gate and the candidate add different biases to the same P).
#     alpha, beta   FastRNN's trainable scalars before the sigmoid: α = σ(alpha),
#     zeta, nu      β = σ(beta); FastGRNN's: ζ = σ(zeta), ν = σ(nu). Each is an array of
#                   one value (EdgeML: shape (1, 1)); its gradient has its shape.
#     A             (T, B, NG*H) activations: FastRNN NG = 1 (h̃), FastGRNN NG = 2 (z, h̃).
#     dH            (T, B, H) dh at every step (the gradient reaching h_t), 0 at padded
#                   steps: the scalars' gradients are sums over it after the loop.
#
# Low rank (EdgeML's wRank, uRank): W = W2 @ W1, U = U2 @ U1 (see ``low_rank_weight``);
# the recurrences below take the full W and U.

__all__ += [
    "fastrnn_forward",
    "fastrnn_backward",
    "fastgrnn_forward",
    "fastgrnn_backward",
    "low_rank_weight",
    "low_rank_backward",
]


def _quant_tanh(a):
    return np.clip(a, -1, 1)


def _quant_sigm(a):
    return np.clip((a + 1) / 2, 0, 1)


def _quant_sigm4(a):
    return np.clip((a + 2) / 4, 0, 1)


# EdgeML's gen_nonlinearity: the smooth three, and the piecewise-linear ones of its
# quantized models. Each derivative is written in terms of the activation value a.
_FAST_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": sigmoid, "tanh": np.tanh, "relu": _relu,
    "quantTanh": _quant_tanh, "quantSigm": _quant_sigm, "quantSigm4": _quant_sigm4}


def _fast_activation_grad(nonlinearity, a):
    """d act / d pre-activation, from the activation value ``a`` (0 at the kinks)."""
    if nonlinearity == "sigmoid":
        return a * (1 - a)
    if nonlinearity == "tanh":
        return 1 - a * a
    if nonlinearity == "relu":
        return (a > 0).astype(a.dtype)
    if nonlinearity == "quantTanh":
        return (np.abs(a) < 1).astype(a.dtype)
    slope = 0.5 if nonlinearity == "quantSigm" else 0.25  # quantSigm4
    return np.where((a > 0) & (a < 1), slope, 0).astype(a.dtype)


def _fast_activation(what, nonlinearity):
    if nonlinearity not in _FAST_ACTIVATIONS:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, _FAST_ACTIVATIONS))}, "
                         f"got {nonlinearity!r}")
    return _FAST_ACTIVATIONS[nonlinearity]


def _fast_prepare(x, h0, W, U, biases, scalars, lengths):
    """Cast to the dtype of x and check shapes, for FastRNN and FastGRNN.

    ``biases`` and ``scalars`` are lists of (name, array); a bias is (H,) or None, a
    scalar holds one value. Returns x, h0, W, U, the biases, the scalars after the sigmoid
    (0-d arrays), the scalars' shapes and the (T, B) mask ``active``.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {x.shape}")
    dtype = _float_dtype(x)
    x = x.astype(dtype, copy=False)
    T, B, I = x.shape
    W, U = np.asarray(W, dtype=dtype), np.asarray(U, dtype=dtype)
    if U.ndim != 2:
        raise ValueError(f"U must have shape (H, H), got {U.shape}")
    H = U.shape[-1]
    _check_shape("U", U, (H, H))
    _check_shape("W", W, (H, I))
    h0 = _check_shape("h0", np.asarray(h0, dtype=dtype), (B, H))
    biases = [None if b is None else _check_shape(name, np.asarray(b, dtype=dtype), (H,))
              for name, b in biases]
    values, shapes = [], []
    for name, s in scalars:
        s = np.asarray(s, dtype=dtype)
        if s.size != 1:
            raise ValueError(f"{name} must hold one value, got shape {s.shape}")
        values.append(sigmoid(s.reshape(())))
        shapes.append(s.shape)
    return x, h0, W, U, biases, values, shapes, _active_mask(lengths, T, B)


def _plus(a, b):
    return a if b is None else a + b


def _scalar_grad(value, total, shape):
    """Gradient of a scalar before the sigmoid: σ'(s) = σ(s) (1 - σ(s)) times ``total``."""
    return np.full(shape, value * (1 - value) * total, dtype=value.dtype)


def _fast_weight_grads(dP, cache):
    """dx, dW and dU from the gradient w.r.t. the pre-activation P (or G) of all steps."""
    x, Hp = cache["x"], cache["Hp"]
    T, B, I = x.shape
    dP = dP.reshape(T * B, -1)
    dx = (dP @ cache["W"]).reshape(T, B, I)
    return dx, {"weight_ih": dP.T @ x.reshape(T * B, I),
                "weight_hh": dP.T @ Hp.reshape(T * B, -1)}


def fastrnn_forward(x, h0, W, U, b, alpha, beta, update_nonlinearity="tanh", lengths=None,
                    reverse=False):
    """FastRNN over a sequence, one layer, one direction (the paper's equation (2)).

    (1) G_t = Xp[t] + h_prev @ U.T         with Xp = x @ W.T + b
    (2) h̃_t = act(G_t)                     act = update_nonlinearity
    (3) h_t = α h̃_t + β h_prev             α = σ(alpha), β = σ(beta)

    x (T, B, I), h0 (B, H), W (H, I), U (H, H), b (H,) or None; alpha, beta: one value
    each, before the sigmoid (EdgeML initialises alpha = -3, beta = 3, so α ≈ 0.047 and
    β ≈ 0.953). update_nonlinearity: "tanh" (EdgeML's default), "sigmoid", "relu",
    "quantTanh", "quantSigm" or "quantSigm4" (EdgeML's piecewise-linear ones:
    clip(a, -1, 1), clip((a + 1)/2, 0, 1), clip((a + 2)/4, 0, 1)).
    Returns y (T, B, H), h_n (B, H) and the cache for ``fastrnn_backward``: x, W, U,
    active, reverse, Hp (T, B, H) the h_prev of every step, A (T, B, H) the h̃ of every
    step, alpha and beta after the sigmoid (0-d) and their shapes, update_nonlinearity,
    has_b.

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> W, U, b = 0.1 * rng.standard_normal((4, 3)), 0.1 * rng.standard_normal((4, 4)), np.ones(4)
    >>> h0 = np.zeros((2, 4))
    >>> y, h_n, cache = reference.fastrnn_forward(x, h0, W, U, b, [-3.0], [3.0])
    >>> al, be = reference.sigmoid(-3.0), reference.sigmoid(3.0)   # α, β
    >>> h1 = al * np.tanh(x[0] @ W.T + b) + be * h0       # (1)-(3) at t = 0
    >>> bool(np.allclose(y[0], h1)), bool(np.array_equal(y[-1], h_n))
    (True, True)
    """
    act = _fast_activation("update_nonlinearity", update_nonlinearity)
    x, h, W, U, (b,), (a, bt), shapes, active = _fast_prepare(
        x, h0, W, U, [("b", b)], [("alpha", alpha), ("beta", beta)], lengths)
    T, B, H = x.shape[0], x.shape[1], h.shape[1]
    Xp = _project_inputs(x, W, b)  # (1) input part, all steps
    A = np.zeros((T, B, H), dtype=x.dtype)
    y, Hp = np.zeros_like(A), np.zeros_like(A)
    for t in _steps(T, reverse):
        mask = _row_mask(active, t)
        Hp[t] = h
        A[t] = act(Xp[t] + h @ U.T)  # (1), (2)
        h_t = a * A[t] + bt * h  # (3)
        y[t] = h_t
        h = _keep(mask, h_t, h)
    _zero_inactive(y, active)
    cache = dict(x=x, W=W, U=U, active=active, reverse=reverse, Hp=Hp, A=A, alpha=a, beta=bt,
                 scalar_shapes=shapes, update_nonlinearity=update_nonlinearity,
                 has_b=b is not None)
    return y, h, cache


def fastrnn_backward(dy, dh_n, cache):
    """Backpropagation through time for ``fastrnn_forward``.

    dy (T, B, H), dh_n (B, H) or None (zeros). Returns dx (T, B, I), dh0 (B, H) and
    grads: dict with "weight_ih" (of W, (H, I)), "weight_hh" (of U, (H, H)),
    "bias_update" (of b, (H,); only if the forward had b), "alpha" and "beta" (before the
    sigmoid, each of the shape it was given). After the loop, over all T*B rows::

        dx = dG @ W      dW = dG.T @ x      dU = dG.T @ Hp      db = dG.sum(0)
        dalpha = α (1 - α) sum(dH * A)      dbeta = β (1 - β) sum(dH * Hp)

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> W, U = rng.standard_normal((4, 3)), rng.standard_normal((4, 4))
    >>> y, h_n, cache = reference.fastrnn_forward(x, np.zeros((2, 4)), W, U, None, -3.0, 3.0,
    ...                                           lengths=np.array([6, 2]))
    >>> dx, dh0, grads = reference.fastrnn_backward(np.ones_like(y), None, cache)
    >>> dx.shape, dh0.shape, sorted(grads)
    ((6, 2, 3), (2, 4), ['alpha', 'beta', 'weight_hh', 'weight_ih'])
    >>> bool((dx[2:, 1] == 0).all())                       # padded steps get no gradient
    True
    """
    dy, (dh,) = _backward_inputs(dy, [("dh_n", dh_n)], cache)
    A, U, Hp, active = cache["A"], cache["U"], cache["Hp"], cache["active"]
    a, bt = cache["alpha"], cache["beta"]
    act = cache["update_nonlinearity"]
    dG, dH = np.zeros_like(A), np.zeros_like(A)
    for t in _steps(A.shape[0], not cache["reverse"]):
        mask = _row_mask(active, t)
        dh = dh + dy[t]
        dH[t] = dh
        dG[t] = dh * a * _fast_activation_grad(act, A[t])  # (3) then (2)
        _zero_inactive(dG[t], mask)
        _zero_inactive(dH[t], mask)
        dh = _keep(mask, dG[t] @ U + bt * dh, dh)  # (1) and the β h_prev path of (3)
    dx, grads = _fast_weight_grads(dG, cache)
    if cache["has_b"]:
        grads["bias_update"] = dG.reshape(-1, dG.shape[-1]).sum(axis=0)
    shape_a, shape_b = cache["scalar_shapes"]
    grads["alpha"] = _scalar_grad(a, np.sum(dH * A), shape_a)  # (3) through α = σ(alpha)
    grads["beta"] = _scalar_grad(bt, np.sum(dH * Hp), shape_b)  # (3) through β = σ(beta)
    return dx, dh, grads


def fastgrnn_forward(x, h0, W, U, b_z, b_h, zeta, nu, gate_nonlinearity="sigmoid",
                     update_nonlinearity="tanh", lengths=None, reverse=False):
    """FastGRNN over a sequence, one layer, one direction (the paper's equation (6)).

    (1) P_t = Xp[t] + h_prev @ U.T         with Xp = x @ W.T: one W, one U for both
    (2) z_t = gate(P_t + b_z),  h̃_t = update(P_t + b_h)
    (3) h_t = (ζ (1 - z_t) + ν) * h̃_t + z_t * h_prev      ζ = σ(zeta), ν = σ(nu)

    x (T, B, I), h0 (B, H), W (H, I), U (H, H), b_z, b_h (H,) or None (EdgeML's
    bias_gate, bias_update, both initialised to 1); zeta, nu: one value each, before the
    sigmoid (EdgeML initialises zeta = 1, nu = -4, so ζ ≈ 0.731 and ν ≈ 0.018).
    gate_nonlinearity (EdgeML's default "sigmoid") and update_nonlinearity ("tanh"): any
    of "sigmoid", "tanh", "relu", "quantTanh", "quantSigm", "quantSigm4" (see
    ``fastrnn_forward``).
    Returns y (T, B, H), h_n (B, H) and the cache for ``fastgrnn_backward``: x, W, U,
    active, reverse, Hp (T, B, H), A (T, B, 2H) with blocks z, h̃ of every step, zeta and
    nu after the sigmoid (0-d) and their shapes, the two nonlinearities, has_b_z, has_b_h.

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> W, U = 0.1 * rng.standard_normal((4, 3)), 0.1 * rng.standard_normal((4, 4))
    >>> b_z = b_h = np.ones(4)
    >>> h0 = rng.standard_normal((2, 4))
    >>> y, h_n, cache = reference.fastgrnn_forward(x, h0, W, U, b_z, b_h, [1.0], [-4.0])
    >>> P = x[0] @ W.T + h0 @ U.T                          # (1) at t = 0
    >>> z, h_tilde = reference.sigmoid(P + b_z), np.tanh(P + b_h)   # (2)
    >>> zeta, nu = reference.sigmoid(1.0), reference.sigmoid(-4.0)
    >>> bool(np.allclose(y[0], (zeta * (1 - z) + nu) * h_tilde + z * h0))   # (3)
    True
    """
    gate = _fast_activation("gate_nonlinearity", gate_nonlinearity)
    update = _fast_activation("update_nonlinearity", update_nonlinearity)
    x, h, W, U, (b_z, b_h), (zt, n), shapes, active = _fast_prepare(
        x, h0, W, U, [("b_z", b_z), ("b_h", b_h)], [("zeta", zeta), ("nu", nu)], lengths)
    T, B, H = x.shape[0], x.shape[1], h.shape[1]
    Xp = _project_inputs(x, W, None)  # (1) input part, all steps
    A = np.zeros((T, B, 2 * H), dtype=x.dtype)
    y, Hp = (np.zeros((T, B, H), dtype=x.dtype) for _ in range(2))
    for t in _steps(T, reverse):
        mask = _row_mask(active, t)
        Hp[t] = h
        P = Xp[t] + h @ U.T  # (1)
        z, h_tilde = _blocks(A[t], 2)  # views: filling them fills A[t]
        z[:], h_tilde[:] = gate(_plus(P, b_z)), update(_plus(P, b_h))  # (2)
        h_t = (zt * (1 - z) + n) * h_tilde + z * h  # (3)
        y[t] = h_t
        h = _keep(mask, h_t, h)
    _zero_inactive(y, active)
    cache = dict(x=x, W=W, U=U, active=active, reverse=reverse, Hp=Hp, A=A, zeta=zt, nu=n,
                 scalar_shapes=shapes, gate_nonlinearity=gate_nonlinearity,
                 update_nonlinearity=update_nonlinearity, has_b_z=b_z is not None,
                 has_b_h=b_h is not None)
    return y, h, cache


def fastgrnn_backward(dy, dh_n, cache):
    """Backpropagation through time for ``fastgrnn_forward``.

    dy (T, B, H), dh_n (B, H) or None (zeros). Returns dx (T, B, I), dh0 (B, H) and
    grads: dict with "weight_ih" (of W, (H, I)), "weight_hh" (of U, (H, H)),
    "bias_gate" (of b_z) and "bias_update" (of b_h), each (H,) and only if the forward had
    it, "zeta" and "nu" (before the sigmoid, each of the shape it was given). The loop
    keeps dG (T, B, 2H), blocks dG_z, dG_h (the gradients w.r.t. the pre-activations of z
    and h̃); both come from one P, so dP = dG_z + dG_h. After the loop, over all T*B rows::

        dx = dP @ W      dW = dP.T @ x      dU = dP.T @ Hp
        db_z = dG_z.sum(0)                  db_h = dG_h.sum(0)
        dzeta = ζ (1 - ζ) sum(dH * (1 - z) * h̃)          dnu = ν (1 - ν) sum(dH * h̃)

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 2, 3))                 # (T, B, I), float64
    >>> W, U = rng.standard_normal((4, 3)), rng.standard_normal((4, 4))
    >>> b_z = b_h = np.ones(4)
    >>> y, h_n, cache = reference.fastgrnn_forward(x, np.zeros((2, 4)), W, U, b_z, b_h,
    ...                                            1.0, -4.0, reverse=True)
    >>> dx, dh0, grads = reference.fastgrnn_backward(np.zeros_like(y), np.ones((2, 4)), cache)
    >>> sorted(grads)
    ['bias_gate', 'bias_update', 'nu', 'weight_hh', 'weight_ih', 'zeta']
    >>> grads["zeta"].shape, grads["weight_ih"].shape      # the shapes they were given
    ((), (4, 3))
    """
    dy, (dh,) = _backward_inputs(dy, [("dh_n", dh_n)], cache)
    A, U, Hp, active = cache["A"], cache["U"], cache["Hp"], cache["active"]
    zt, n = cache["zeta"], cache["nu"]
    gate, update = cache["gate_nonlinearity"], cache["update_nonlinearity"]
    dG, dH = np.zeros_like(A), np.zeros_like(Hp)
    for t in _steps(A.shape[0], not cache["reverse"]):
        mask = _row_mask(active, t)
        z, h_tilde = _blocks(A[t], 2)
        dG_z, dG_h = _blocks(dG[t], 2)  # views: filling them fills dG[t]
        dh = dh + dy[t]
        dH[t] = dh
        dG_h[:] = dh * (zt * (1 - z) + n) * _fast_activation_grad(update, h_tilde)  # (3), (2)
        dG_z[:] = dh * (Hp[t] - zt * h_tilde) * _fast_activation_grad(gate, z)  # (3), (2)
        _zero_inactive(dG[t], mask)
        _zero_inactive(dH[t], mask)
        dh = _keep(mask, (dG_z + dG_h) @ U + dh * z, dh)  # (1) and the z h_prev path of (3)
    dG_z, dG_h = _blocks(dG, 2)
    dx, grads = _fast_weight_grads(dG_z + dG_h, cache)
    H = Hp.shape[-1]
    if cache["has_b_z"]:
        grads["bias_gate"] = dG_z.reshape(-1, H).sum(axis=0)
    if cache["has_b_h"]:
        grads["bias_update"] = dG_h.reshape(-1, H).sum(axis=0)
    Z, H_tilde = _blocks(A, 2)
    shape_zeta, shape_nu = cache["scalar_shapes"]
    grads["zeta"] = _scalar_grad(zt, np.sum(dH * (1 - Z) * H_tilde), shape_zeta)  # (3)
    grads["nu"] = _scalar_grad(n, np.sum(dH * H_tilde), shape_nu)  # (3)
    return dx, dh, grads


def low_rank_weight(W1, W2):
    """The full matrix of a low-rank factorisation, as EdgeML's wRank / uRank: W = W2 @ W1.

    W1 (r, n_in), W2 (n_out, r): the factors in PyTorch's layout (out, in), as two linear
    maps without bias applied one after the other, ``x @ W.T = (x @ W1.T) @ W2.T`` (W1
    first). EdgeML's CUDA cell, its C code and the FastGRNNCell of edgeml-pytorch 0.3.0
    store them so; its PyTorch cells since 2020 and its TensorFlow cells store the
    transposes, W1ᵀ (n_in, r) and W2ᵀ (r, n_out), and compute ``x @ W1ᵀ @ W2ᵀ``. (The
    paper, its equation (7), writes W = W¹ (W²)ᵀ: its W¹ is this W2, its W² this W1ᵀ.)
    For FastRNN and FastGRNN: W = low_rank_weight(W1, W2) (H, I) of rank r_w,
    U = low_rank_weight(U1, U2) (H, H) of rank r_u.

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> W1, W2 = rng.standard_normal((2, 5)), rng.standard_normal((4, 2))   # r = 2, I = 5, H = 4
    >>> W = reference.low_rank_weight(W1, W2)
    >>> x = rng.standard_normal((3, 5))
    >>> W.shape, bool(np.allclose(x @ W.T, (x @ W1.T) @ W2.T)), int(np.linalg.matrix_rank(W))
    ((4, 5), True, 2)
    """
    W1, W2 = np.asarray(W1), np.asarray(W2)
    if W1.ndim != 2 or W2.ndim != 2 or W2.shape[1] != W1.shape[0]:
        raise ValueError(f"W1 (r, n_in) and W2 (n_out, r) must share r, got W1 {W1.shape} "
                         f"and W2 {W2.shape}")
    return W2 @ W1


def low_rank_backward(dW, W1, W2):
    """Gradients of the factors of ``low_rank_weight(W1, W2)`` from the gradient dW of W.

    dW (n_out, n_in), W1 (r, n_in), W2 (n_out, r). Returns ``dW1 = W2.T @ dW`` (r, n_in)
    and ``dW2 = dW @ W1.T`` (n_out, r), as EdgeML's CUDA backward. The recurrence's
    gradients do not change: ``fastgrnn_backward``'s "weight_ih" is dW, the products
    ``dP.T @ x`` are taken once, then mapped here.

    >>> import numpy as np
    >>> from fastrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> W1, W2 = rng.standard_normal((2, 5)), rng.standard_normal((4, 2))
    >>> R = rng.standard_normal((4, 5))                    # loss = sum(R * W): dW = R
    >>> dW1, dW2 = reference.low_rank_backward(R, W1, W2)
    >>> E = np.zeros_like(W1)
    >>> E[1, 3] = 1e-6                                     # a central difference in W1[1, 3]
    >>> loss = lambda W1: np.sum(R * reference.low_rank_weight(W1, W2))
    >>> bool(abs((loss(W1 + E) - loss(W1 - E)) / 2e-6 - dW1[1, 3]) < 1e-8)
    True
    """
    dW, W1, W2 = np.asarray(dW), np.asarray(W1), np.asarray(W2)
    _check_shape("dW", dW, (W2.shape[0], W1.shape[1]))
    return W2.T @ dW, dW @ W1.T
