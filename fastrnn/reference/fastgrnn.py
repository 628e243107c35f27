"""The references of FastRNN and FastGRNN (Kusupati et al. 2018), with the low-rank form
of their weights; notation in :mod:`fastrnn.reference`."""

from collections.abc import Callable

import numpy as np

from ._common import (_active_mask, _backward_inputs, _blocks, _check_shape, _input, _keep,
                      _project_inputs, _relu, _row_mask, _steps, _zero_inactive, sigmoid)

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
    x = _input(x)
    dtype = x.dtype
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

