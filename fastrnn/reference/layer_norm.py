"""The reference of the layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer
Normalization", the LSTM of its appendix); notation in :mod:`fastrnn.reference`, and:

::

    LN(a; g, b)   g * (a - mean(a)) / sqrt(var(a) + eps) + b over the last axis (var the
                  mean squared deviation, eps = 1e-5, as PyTorch's LayerNorm)
    norms         the six gains and biases, by the layer's parameter names without the
                  layer suffix: ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias (4, H),
                  the normalisations of the input and recurrent products over all 4H
                  gate values at once; ln_cell_weight, ln_cell_bias (1, H), of the cell
    Xn, Xh, Xc    (T, B, 4H), (T, B, 4H), (T, B, H) the normalised input products,
                  recurrent products and cell states, and Rx, Rh, Rc (T, B, 1) their
                  1 / sqrt(var + eps)
"""

import numpy as np

from ._common import (_backward_inputs, _blocks, _forward_cache, _keep, _prepare, _row_mask,
                      _steps, _zero_inactive, sigmoid)

#: the variance epsilon of every normalisation
EPS = 1e-5

NORMS = ("ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_cell_weight",
         "ln_cell_bias")


def _normalise(a):
    """(a - mean) / sqrt(var + eps) over the last axis, and 1 / sqrt(var + eps)."""
    mean = a.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(((a - mean) ** 2).mean(axis=-1, keepdims=True) + EPS)
    return (a - mean) * rstd, rstd


def _normalise_grad(d_xhat, xhat, rstd):
    """The gradient of a's from that of (a - mean) / sqrt(var + eps)."""
    return rstd * (d_xhat - d_xhat.mean(axis=-1, keepdims=True)
                   - xhat * (d_xhat * xhat).mean(axis=-1, keepdims=True))


def _norm_vectors(norms, H, dtype):
    """The six vectors, flat, in the order of NORMS (shapes checked)."""
    out = []
    for name in NORMS:
        rows = 1 if "cell" in name else 4
        a = np.asarray(norms[name], dtype=dtype)
        if a.size != rows * H:
            raise ValueError(f"{name} must have {rows} * H = {rows * H} values, got {a.size}")
        out.append(a.reshape(-1))
    return out


def ln_lstm_forward(x, h0, c0, W_ih, W_hh, norms, lengths=None, reverse=False):
    """The layer-normalised LSTM over a sequence, one layer, one direction.

    (1) G_t = LN(x_t @ W_ih.T; g_x, b_x) + LN(h_prev @ W_hh.T; g_h, b_h)
    (2) i = σ(G_i), f = σ(G_f), g = tanh(G_g), o = σ(G_o)
    (3) c_t = f * c_prev + i * g
    (4) h_t = o * tanh(LN(c_t; g_c, b_c))

    x (T, B, I), h0, c0 (B, H), W_ih (4H, I), W_hh (4H, H), ``norms`` a dict of the six
    gains and biases (module docstring).  Returns y (T, B, H), h_n, c_n (B, H) and the
    cache for :func:`ln_lstm_backward`.

    >>> import numpy as np
    >>> import fastrnn
    >>> from fastrnn.reference import layer_norm
    >>> layer = fastrnn.LSTM(3, 4, layer_norm=True, dtype=np.float64, seed=0)
    >>> w = {k[:-3]: v for k, v in layer.state_dict().items()}     # names without _l0
    >>> x = np.random.default_rng(0).standard_normal((6, 2, 3))
    >>> y, h_n, c_n, cache = layer_norm.ln_lstm_forward(x, np.zeros((2, 4)), np.zeros((2, 4)),
    ...                                                 w["weight_ih"], w["weight_hh"], w)
    >>> bool(np.allclose(y, layer(x)[0], rtol=1e-10, atol=1e-12))
    True
    """
    x, (h, c), weights, active = _prepare(x, [("h0", h0), ("c0", c0)], W_ih, W_hh, None,
                                          None, 4, lengths)
    W_ih, W_hh = weights[:2]
    T, B, H = x.shape[0], x.shape[1], h.shape[1]
    g_x, b_x, g_h, b_h, g_c, b_c = _norm_vectors(norms, H, x.dtype)
    Xn, Rx = _normalise(x @ W_ih.T)  # (1) the input part, all steps at once
    A = np.zeros((T, B, 4 * H), dtype=x.dtype)
    Xh = np.zeros_like(A)
    Hp, Cp, Xc = (np.zeros((T, B, H), dtype=x.dtype) for _ in range(3))
    Rh, Rc = (np.ones((T, B, 1), dtype=x.dtype) for _ in range(2))
    y = np.zeros_like(Hp)
    for t in _steps(T, reverse):
        mask = _row_mask(active, t)
        Hp[t], Cp[t] = h, c
        Xh[t], Rh[t] = _normalise(h @ W_hh.T)
        G_i, G_f, G_g, G_o = _blocks(g_x * Xn[t] + b_x + g_h * Xh[t] + b_h, 4)  # (1)
        i, f, g, o = _blocks(A[t], 4)  # views: filling them fills A[t]
        i[:], f[:], g[:], o[:] = sigmoid(G_i), sigmoid(G_f), np.tanh(G_g), sigmoid(G_o)  # (2)
        c_t = f * c + i * g  # (3)
        Xc[t], Rc[t] = _normalise(c_t)
        y[t] = o * np.tanh(g_c * Xc[t] + b_c)  # (4)
        h, c = _keep(mask, y[t], h), _keep(mask, c_t, c)
    _zero_inactive(y, active)
    cache = _forward_cache(x, weights, active, reverse, Hp, A, Cp=Cp, Xn=Xn, Rx=Rx, Xh=Xh,
                           Rh=Rh, Xc=Xc, Rc=Rc,
                           norms=(g_x, b_x, g_h, b_h, g_c, b_c))
    return y, h, c, cache


def ln_lstm_backward(dy, dh_n, dc_n, cache):
    """Backpropagation through time for :func:`ln_lstm_forward`.

    dy (T, B, H), dh_n, dc_n (B, H) or None (zeros).  Returns dx (T, B, I), dh0, dc0
    (B, H) and grads: ``weight_ih``, ``weight_hh`` and the six names of ``norms``.
    """
    dy, (dh, dc) = _backward_inputs(dy, [("dh_n", dh_n), ("dc_n", dc_n)], cache)
    A, W_hh, active = cache["A"], cache["W_hh"], cache["active"]
    Cp, Xh, Rh, Xc, Rc = (cache[k] for k in ("Cp", "Xh", "Rh", "Xc", "Rc"))
    g_x, _, g_h, _, g_c, b_c = cache["norms"]
    T, B, H = Cp.shape
    dG = np.zeros_like(A)          # the gradient of G_t, (1)
    dU = np.zeros_like(A)          # that of h_prev @ W_hh.T
    d_gh = np.zeros(4 * H, A.dtype)
    d_gc, d_bc = np.zeros(H, A.dtype), np.zeros(H, A.dtype)
    for t in _steps(T, not cache["reverse"]):
        mask = _row_mask(active, t)
        i, f, g, o = _blocks(A[t], 4)
        dG_i, dG_f, dG_g, dG_o = _blocks(dG[t], 4)  # views: filling them fills dG[t]
        dh_t = dh + dy[t]
        tc = np.tanh(g_c * Xc[t] + b_c)
        dG_o[:] = dh_t * tc * o * (1 - o)  # (4) then (2)
        d_norm = dh_t * o * (1 - tc * tc)  # (4): the gradient of g_c * Xc + b_c
        m = mask[:, None] if mask is not None else 1
        d_gc += (m * d_norm * Xc[t]).sum(axis=0)
        d_bc += (m * d_norm).sum(axis=0)
        dc_t = dc + _normalise_grad(d_norm * g_c, Xc[t], Rc[t])  # (4) then (3)
        dG_i[:] = dc_t * g * i * (1 - i)  # (3) then (2)
        dG_f[:] = dc_t * Cp[t] * f * (1 - f)  # (3) then (2)
        dG_g[:] = dc_t * i * (1 - g * g)  # (3) then (2)
        _zero_inactive(dG[t], mask)
        d_gh += (dG[t] * Xh[t]).sum(axis=0)
        dU[t] = _normalise_grad(dG[t] * g_h, Xh[t], Rh[t])  # (1), the recurrent part
        _zero_inactive(dU[t], mask)
        dh = _keep(mask, dU[t] @ W_hh, dh_t)
        dc = _keep(mask, dc_t * f, dc)  # (3)
    x, Hp, Xn, Rx = cache["x"], cache["Hp"], cache["Xn"], cache["Rx"]
    I = x.shape[2]
    dXp = _normalise_grad(dG * g_x, Xn, Rx)  # (1), the input part
    dx = (dXp.reshape(T * B, -1) @ cache["W_ih"]).reshape(T, B, I)
    d_b = dG.sum(axis=(0, 1))
    grads = {"weight_ih": dXp.reshape(T * B, -1).T @ x.reshape(T * B, I),
             "weight_hh": dU.reshape(T * B, -1).T @ Hp.reshape(T * B, H),
             "ln_ih_weight": (dG * Xn).sum(axis=(0, 1)).reshape(4, H),
             "ln_ih_bias": d_b.reshape(4, H),
             "ln_hh_weight": d_gh.reshape(4, H),
             "ln_hh_bias": d_b.reshape(4, H).copy(),
             "ln_cell_weight": d_gc.reshape(1, H),
             "ln_cell_bias": d_bc.reshape(1, H)}
    return dx, dh, dc, grads
