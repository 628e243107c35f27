"""The references of PyTorch's cells: RNN (tanh, relu), LSTM, GRU, and their stacks
(layers and directions); notation in :mod:`fastrnn.reference`."""

from collections.abc import Callable

import numpy as np

from ._common import (NUM_GATES, _backward_inputs, _blocks, _check_shape, _float_dtype,
                      _forward_cache, _input, _input_and_weight_grads, _keep, _prepare,
                      _project_inputs, _relu, _row_mask, _steps, _sum_biases, _zero_inactive,
                      sigmoid)
from .layer_norm import NORMS, ln_lstm_backward, ln_lstm_forward

# ----------------------------------------------------------------------------- RNN


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"tanh": np.tanh, "relu": _relu}


def _activation_grad(nonlinearity, a):
    """d act / d pre-activation, from the activation value ``a``."""
    return 1 - a * a if nonlinearity == "tanh" else (a > 0).astype(a.dtype)


def rnn_forward(x, h0, W_ih, W_hh, b_ih=None, b_hh=None, nonlinearity="tanh",
                lengths=None, reverse=False, hmask=None, zh=None):
    """Elman RNN over a sequence, one layer, one direction.

    (1) G_t = Xp[t] + h_prev @ W_hh.T      with Xp = x @ W_ih.T + b_ih + b_hh
    (2) h_t = act(G_t)                     act = tanh or relu

    ``hmask`` (B, H): recurrent dropout (Gal & Ghahramani 2016), h_prev * hmask in (1)
    at every step; ``zh`` (T, B, H): zoneout, h_t = zh[t] * h_prev + (1 - zh[t]) * h_t
    (the same for the LSTM, with ``zc`` for its c, and the GRU).

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
    Hp, y = np.zeros_like(A), np.zeros_like(A)
    for t in _steps(T, reverse):
        mask = _row_mask(active, t)
        Hp[t] = h
        A[t] = act(Xp[t] + _masked(h, hmask) @ W_hh.T)  # (1), (2)
        y[t] = _zone(zh, t, h, A[t])
        h = _keep(mask, y[t], h)
    _zero_inactive(y, active)
    cache = _forward_cache(x, weights, active, reverse, Hp, A, nonlinearity=nonlinearity,
                           hmask=hmask, zh=zh)
    return y, h, cache


def _masked(h, hmask):
    """h entering the recurrent product: times the recurrent dropout mask, if any."""
    return h if hmask is None else h * hmask


def _zone(z, t, prev, new):
    """Zoneout (Krueger et al. 2017): z * prev + (1 - z) * new with step t's mixing
    weights (masks of 0 and 1, or the rates; None: ``new``)."""
    return new if z is None else z[t] * prev + (1 - z[t]) * new


def _zone_grad(z, t, d):
    """Backward of :func:`_zone`: (the gradient reaching ``new``, the one reaching
    ``prev`` directly)."""
    return (d, 0) if z is None else ((1 - z[t]) * d, z[t] * d)


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
        d_in = dh + dy[t]
        d_new, d_kept = _zone_grad(cache["zh"], t, d_in)
        dG[t] = d_new * _activation_grad(cache["nonlinearity"], A[t])  # (2)
        _zero_inactive(dG[t], mask)
        dh = _keep(mask, _masked(dG[t] @ W_hh, cache["hmask"]) + d_kept, d_in)  # (1)
    dx, grads = _input_and_weight_grads(dG, dG, cache)
    return dx, dh, grads


# ----------------------------------------------------------------------------- LSTM


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih=None, b_hh=None, lengths=None, reverse=False,
                 peephole=None, W_hr=None, hmask=None, zh=None, zc=None):
    """LSTM over a sequence, one layer, one direction (gate blocks i, f, g, o).

    (1) G_t = Xp[t] + h_prev @ W_hh.T      with Xp = x @ W_ih.T + b_ih + b_hh
    (2) i = σ(G_i), f = σ(G_f), g = tanh(G_g), o = σ(G_o)
    (3) c_t = f * c_prev + i * g
    (4) h_t = o * tanh(c_t)

    With ``peephole`` p (3, H) (Gers & Schmidhuber 2000): i = σ(G_i + p_i * c_prev),
    f = σ(G_f + p_f * c_prev), o = σ(G_o + p_o * c_t).  With ``W_hr`` (P, H) (PyTorch's
    proj_size, Sak et al. 2014): (4) h_t = W_hr (o * tanh(c_t)), so h, W_hh's columns and
    h0 have P values.

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
    W_hr = None if W_hr is None else np.asarray(W_hr, dtype=_input(x).dtype)
    x, (h, c), weights, active = _prepare(x, [("h0", h0), ("c0", c0)], W_ih, W_hh,
                                          b_ih, b_hh, 4, lengths,
                                          None if W_hr is None else W_hr.shape[1])
    W_hh = weights[1]
    T, B, H, P = x.shape[0], x.shape[1], c.shape[1], h.shape[1]
    if W_hr is not None:
        _check_shape("W_hr", W_hr, (P, H))
    p_i, p_f, p_o = _peepholes(peephole, H, x.dtype)
    Xp = _project_inputs(x, weights[0], _sum_biases(*weights[2:]))  # (1) input part, all steps
    A = np.zeros((T, B, 4 * H), dtype=x.dtype)
    Cp, C, TC = (np.zeros((T, B, H), dtype=x.dtype) for _ in range(3))
    y, Hp = (np.zeros((T, B, P), dtype=x.dtype) for _ in range(2))
    for t in _steps(T, reverse):
        mask = _row_mask(active, t)
        Hp[t], Cp[t] = h, c
        G_i, G_f, G_g, G_o = _blocks(Xp[t] + _masked(h, hmask) @ W_hh.T, 4)  # (1)
        i, f, g, o = _blocks(A[t], 4)  # views: filling them fills A[t]
        i[:], f[:], g[:] = sigmoid(G_i + p_i * c), sigmoid(G_f + p_f * c), np.tanh(G_g)  # (2)
        c_t = f * c + i * g  # (3)
        o[:] = sigmoid(G_o + p_o * c_t)  # (2)
        C[t] = c_t
        TC[t] = np.tanh(c_t)
        h_t = o * TC[t]  # (4)
        if W_hr is not None:
            h_t = h_t @ W_hr.T  # (4), projected
        y[t] = h_t = _zone(zh, t, h, h_t)
        h, c = _keep(mask, h_t, h), _keep(mask, _zone(zc, t, c, c_t), c)
    _zero_inactive(y, active)
    cache = _forward_cache(x, weights, active, reverse, Hp, A, Cp=Cp, C=C, TC=TC,
                           peephole=None if peephole is None else (p_i, p_f, p_o), W_hr=W_hr,
                           hmask=hmask, zh=zh, zc=zc)
    return y, h, c, cache


def _peepholes(peephole, H, dtype):
    """p_i, p_f, p_o as (H,) arrays of ``dtype`` (zeros without peepholes)."""
    if peephole is None:
        return (np.zeros(H, dtype),) * 3
    p = _check_shape("peephole", np.asarray(peephole, dtype=dtype), (3, H))
    return p[0], p[1], p[2]


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
    dy, (dh, dc) = _backward_inputs(dy, [("dh_n", dh_n), ("dc_n", dc_n)], cache,
                                    cache["Cp"].shape[1:])
    A, W_hh, active = cache["A"], cache["W_hh"], cache["active"]
    Cp, C, TC = cache["Cp"], cache["C"], cache["TC"]
    peephole, W_hr = cache["peephole"], cache["W_hr"]
    p_i, p_f, p_o = peephole if peephole is not None else (0, 0, 0)
    dG = np.zeros_like(A)
    dH = np.zeros_like(cache["Hp"])             # every step's dh, for W_hr's gradient
    for t in _steps(A.shape[0], not cache["reverse"]):
        mask = _row_mask(active, t)
        i, f, g, o = _blocks(A[t], 4)
        dG_i, dG_f, dG_g, dG_o = _blocks(dG[t], 4)  # views: filling them fills dG[t]
        d_out = dh + dy[t]
        d_new, d_kept = _zone_grad(cache["zh"], t, d_out)      # zoneout of h
        dc_new, dc_kept = _zone_grad(cache["zc"], t, dc)       # and of c
        dH[t] = d_new
        _zero_inactive(dH[t], mask)
        dh = d_new if W_hr is None else d_new @ W_hr  # (4) back through the projection
        dG_o[:] = dh * TC[t] * o * (1 - o)  # (4) then (2)
        dc_t = dc_new + dh * o * (1 - TC[t] * TC[t]) + dG_o * p_o  # (4) and o's peephole
        dG_i[:] = dc_t * g * i * (1 - i)  # (3) then (2)
        dG_f[:] = dc_t * Cp[t] * f * (1 - f)  # (3) then (2)
        dG_g[:] = dc_t * i * (1 - g * g)  # (3) then (2)
        _zero_inactive(dG[t], mask)
        dh = _keep(mask, _masked(dG[t] @ W_hh, cache["hmask"]) + d_kept, d_out)  # (1)
        dc = _keep(mask, dc_t * f + dG_i * p_i + dG_f * p_f + dc_kept, dc)  # (3), (2)
    dx, grads = _input_and_weight_grads(dG, dG, cache)
    if W_hr is not None:
        T, B, P = dH.shape
        M = (A[..., 3 * W_hr.shape[1]:] * TC).reshape(T * B, -1)    # o * tanh(c_t)
        grads["weight_hr"] = dH.reshape(T * B, P).T @ M
    if peephole is not None:
        dG_i, dG_f, _, dG_o = _blocks(dG, 4)
        grads["peephole"] = np.stack([(dG_i * Cp).sum(axis=(0, 1)),
                                      (dG_f * Cp).sum(axis=(0, 1)),
                                      (dG_o * C).sum(axis=(0, 1))])
    return dx, dh, dc, grads


# ----------------------------------------------------------------------------- GRU


def gru_forward(x, h0, W_ih, W_hh, b_ih=None, b_hh=None, lengths=None, reverse=False,
                reset_after=True, hmask=None, zh=None):
    """GRU over a sequence, one layer, one direction (gate blocks r, z, n).

    (1) Gh = h_prev @ W_hh.T + b_hh        with Xp = x @ W_ih.T + b_ih
    (2) r = σ(Xp_r + Gh_r), z = σ(Xp_z + Gh_z)
    (3) n = tanh(Xp_n + r * Hn)            Hn = Gh_n = W_hn h_prev + b_hn
    (4) h_t = (1 - z) * n + z * h_prev

    With ``reset_after=False`` (Cho et al. 2014; ONNX's linear_before_reset=0), r scales
    h_prev before its product: (3) n = tanh(Xp_n + W_hn (r * h_prev) + b_hn), and Gh of
    (1) holds the r and z blocks only.

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
    if hmask is not None and not reset_after:
        raise ValueError("hmask (recurrent dropout) is for the GRU with reset_after=True")
    x, (h,), weights, active = _prepare(x, [("h0", h0)], W_ih, W_hh, b_ih, b_hh, 3, lengths)
    W_hh, b_hh = weights[1], weights[3]
    T, B, H = x.shape[0], x.shape[1], h.shape[1]
    Xp = _project_inputs(x, weights[0], weights[2])  # (1) input part, all steps
    A = np.zeros((T, B, 3 * H), dtype=x.dtype)
    y, Hp, Hn = (np.zeros((T, B, H), dtype=x.dtype) for _ in range(3))
    b = b_hh if b_hh is not None else np.zeros(3 * H, x.dtype)
    for t in _steps(T, reverse):
        mask = _row_mask(active, t)
        Hp[t] = h
        Xp_r, Xp_z, Xp_n = _blocks(Xp[t], 3)
        r, z, n = _blocks(A[t], 3)  # views: filling them fills A[t]
        if reset_after:
            Gh_r, Gh_z, Hn[t] = _blocks(_masked(h, hmask) @ W_hh.T + b, 3)  # (1); kept
            r[:], z[:] = sigmoid(Xp_r + Gh_r), sigmoid(Xp_z + Gh_z)  # (2)
            n[:] = np.tanh(Xp_n + r * Hn[t])  # (3)
        else:
            Gh_r, Gh_z = _blocks(h @ W_hh[:2 * H].T + b[:2 * H], 2)  # (1)
            r[:], z[:] = sigmoid(Xp_r + Gh_r), sigmoid(Xp_z + Gh_z)  # (2)
            Hn[t] = r * h  # r * h_prev kept for backward
            n[:] = np.tanh(Xp_n + Hn[t] @ W_hh[2 * H:].T + b[2 * H:])  # (3)
        h_t = n + z * (h - n)  # (4)
        y[t] = h_t = _zone(zh, t, h, h_t)
        h = _keep(mask, h_t, h)
    _zero_inactive(y, active)
    cache = _forward_cache(x, weights, active, reverse, Hp, A, Hn=Hn, reset_after=reset_after,
                           hmask=hmask, zh=zh)
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
    Hp, Hn, after = cache["Hp"], cache["Hn"], cache["reset_after"]
    H = Hp.shape[-1]
    dGx, dGh = np.zeros_like(A), np.zeros_like(A)
    for t in _steps(A.shape[0], not cache["reverse"]):
        mask = _row_mask(active, t)
        r, z, n = _blocks(A[t], 3)
        dGx_r, dGx_z, dGx_n = _blocks(dGx[t], 3)  # views: filling them fills dGx[t]
        dGh_r, dGh_z, dGh_n = _blocks(dGh[t], 3)
        d_in = dh + dy[t]
        dh, d_kept = _zone_grad(cache["zh"], t, d_in)          # zoneout of h
        dGx_n[:] = dh * (1 - z) * (1 - n * n)  # (4) then (3) through tanh
        dGx_z[:] = dh * (Hp[t] - n) * z * (1 - z)  # (4) then (2)
        if after:
            dGh_n[:] = dGx_n * r  # (3)
            dGx_r[:] = dGx_n * Hn[t] * r * (1 - r)  # (3) then (2)
            d_prev = dh * z  # the z * h_prev path of (4)
        else:
            dGh_n[:] = dGx_n  # (3): the product's sum is the pre-activation's
            d_rh = dGx_n @ W_hh[2 * H:]  # (3) into r * h_prev
            dGx_r[:] = d_rh * Hp[t] * r * (1 - r)  # then (2)
            d_prev = dh * z + d_rh * r  # (4) and (3) into h_prev
        dGh_r[:], dGh_z[:] = dGx_r, dGx_z  # (2) r and z see Xp and Gh alike
        _zero_inactive(dGx[t], mask)
        _zero_inactive(dGh[t], mask)
        if after:
            d_prev = d_prev + _masked(dGh[t] @ W_hh, cache["hmask"])  # (1)
        else:
            d_prev = d_prev + dGh[t, :, :2 * H] @ W_hh[:2 * H]  # (1)
        dh = _keep(mask, d_prev + d_kept, d_in)
    dx, grads = _input_and_weight_grads(dGx, dGh, cache)
    if not after:       # the n rows of W_hh multiply r * h_prev, not h_prev
        T, B = Hn.shape[:2]
        grads["weight_hh"][2 * H:] = dGh[:, :, 2 * H:].reshape(T * B, H).T @ Hn.reshape(T * B, H)
    return dx, dh, grads


# ----------------------------------------------------------------------------- stacks


def _direction_forward(mode, x, h0, c0, weights, lengths, reverse, nonlinearity,
                       reset_after, peephole, W_hr, hmask, zones, norms=None):
    """One layer, one direction, with the LSTM's signature for all modes; ``zones`` the
    zoneout arrays (zh, zc); ``norms``: the layer-normalised LSTM's gains and biases."""
    W_ih, W_hh, b_ih, b_hh = weights
    zh, zc = zones
    if norms is not None:
        return ln_lstm_forward(x, h0, c0, W_ih, W_hh, norms, lengths=lengths, reverse=reverse)
    if mode == "LSTM":
        return lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, lengths=lengths,
                            reverse=reverse, peephole=peephole, W_hr=W_hr, hmask=hmask,
                            zh=zh, zc=zc)
    if mode == "GRU":
        y, h_n, cache = gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, lengths=lengths,
                                    reverse=reverse, reset_after=reset_after, hmask=hmask,
                                    zh=zh)
    else:
        y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh,
                                    nonlinearity=nonlinearity, lengths=lengths,
                                    reverse=reverse, hmask=hmask, zh=zh)
    return y, h_n, None, cache


def _direction_backward(mode, dy, dh_n, dc_n, cache):
    if "norms" in cache:
        return ln_lstm_backward(dy, dh_n, dc_n, cache)
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
                  lengths=None, nonlinearity="tanh", reset_after=True, reverse=False,
                  input_masks=None, recurrent_masks=None, zoneout=None):
    """Multi-layer, optionally bidirectional RNN / LSTM / GRU, as PyTorch's modules.

    mode: "RNN", "LSTM" or "GRU". params: PyTorch names ``weight_ih_l{k}{suffix}``,
    ``weight_hh_l{k}{suffix}``, ``bias_ih_l{k}{suffix}``, ``bias_hh_l{k}{suffix}`` with
    suffix "" or "_reverse" (bias keys absent when bias=False), and for an LSTM with
    peepholes ``peephole_l{k}{suffix}`` (3, H), with a projection (PyTorch's proj_size P)
    ``weight_hr_l{k}{suffix}`` (P, H): h0 and the outputs are then P wide, c0 H wide.
    x (T, B, I), time-major.
    h0, c0 (num_layers*D, B, H), layer-major then direction, None for zeros; c0 for the
    LSTM only. No dropout. ``reset_after=False``: the GRU of :func:`gru_forward` with
    that option; ``reverse``: one direction (not bidirectional) that reads each sequence
    from its last valid step to its first.  Dropout, with given masks:
    ``input_masks[k]`` multiplies layer k's input (T, B, I_k) (None: no mask),
    ``recurrent_masks[k * D + d]`` (B, H) h_prev in the recurrent product; zoneout,
    ``zoneout[k * D + d]`` = (zh, zc) of that layer-direction (:func:`lstm_forward`).

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
    if reverse and bidirectional:
        raise ValueError("reverse is one direction: it does not combine with bidirectional")
    D = 2 if bidirectional else 1
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {x.shape}")
    dtype = _float_dtype(x)
    T, B = x.shape[:2]
    H = params["weight_hh_l0"].shape[-1]          # the width of h (an LSTM's P if projected)
    state_shape = (num_layers * D, B, H)
    cell_shape = (num_layers * D, B, params["weight_ih_l0"].shape[0] // NUM_GATES[mode])
    h0 = _initial_state("h0", h0, state_shape, dtype)
    c0 = _initial_state("c0", c0, cell_shape, dtype) if mode == "LSTM" else None
    h_n = np.zeros(state_shape, dtype=dtype)
    c_n = np.zeros(cell_shape, dtype=dtype) if mode == "LSTM" else None
    caches = []
    layer_input = x
    input_masks = input_masks or [None] * num_layers
    recurrent_masks = recurrent_masks or [None] * (num_layers * D)
    zoneout = zoneout or [(None, None)] * (num_layers * D)
    for k in range(num_layers):
        outputs = []
        if input_masks[k] is not None:
            layer_input = layer_input * input_masks[k]
        for d, suffix in enumerate(["", "_reverse"][:D]):
            j = k * D + d
            weights = tuple(params.get(f"{name}_l{k}{suffix}")
                            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            y, h_n[j], c_last, cache = _direction_forward(
                mode, layer_input, h0[j], None if c0 is None else c0[j], weights,
                lengths, d == 1 or reverse, nonlinearity, reset_after,
                params.get(f"peephole_l{k}{suffix}"), params.get(f"weight_hr_l{k}{suffix}"),
                recurrent_masks[j], zoneout[j],
                {name: params[f"{name}_l{k}{suffix}"] for name in NORMS}
                if f"ln_ih_weight_l{k}{suffix}" in params else None)
            if c_n is not None:
                c_n[j] = c_last
            outputs.append(y)
            caches.append(cache)
        layer_input = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
    cache = dict(mode=mode, num_layers=num_layers, D=D, H=H, dtype=dtype, caches=caches,
                 input_masks=input_masks)
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
    cell_shape = (L * D,) + (cache["caches"][0]["Cp"] if lstm else cache["caches"][0]["Hp"]
                             ).shape[1:]
    dh_n = _initial_state("dh_n", dh_n, state_shape, dtype)
    dc_n = _initial_state("dc_n", dc_n, cell_shape, dtype) if lstm else None
    dh0 = np.zeros(state_shape, dtype=dtype)
    dc0 = np.zeros(cell_shape, dtype=dtype) if lstm else None
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
        if cache["input_masks"][k] is not None:
            d_input = d_input * cache["input_masks"][k]
        d_output = d_input
    return d_output, dh0, dc0, grads


