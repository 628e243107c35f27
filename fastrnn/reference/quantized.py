"""The NumPy reference of int8 dynamic quantization (``fastrnn.quantize``): the same
quantization as the kernels (fastrnn/_q8.h), the same rounding and scales, in float32.

Weights, once per output row: ``s_w = max|W[c, :]| / 127``, ``q_w = rint(W / s_w)`` in
[-127, 127] (a row of zeros: s_w = 0, q_w = 0).  Activations, per row and step:
``s_a = max|a| / 127``, ``q_a = rint(a * (1 / s_a))``, the reciprocal rounded to
float32 first (a row of zeros: s_a = 0, q_a = 0).  A
product is exact in integers, then scaled in float32::

    (1) Xp  = base + (q_x @ q_ih.T) * (s_x[:, None] * s_ih)       base: the bias row
    (2) Gh  = (q_h @ q_hh.T) * (s_h[:, None] * s_hh)              per step
    (3) the gate math of ``fastrnn.reference.cells`` in float32

with base = b_ih + b_hh (:func:`input_bias`; the GRU keeps b_hn inside r * (...)).

The kernels add ``base`` in one fused multiply-add where this adds after a multiply, so
the two agree to an ulp or so of each product (a rounding of h to its int8 step can then
go the other way at a later step: compare a step at a time, from the same state).
"""

import numpy as np

from ._common import sigmoid

__all__ = ["quantize_weight", "quantize_rows", "int8_product", "input_bias", "step",
           "layer_forward"]

_F = np.float32


def quantize_weight(W):
    """``(q, s)``: int8 rows of W (n, K) and their scales (n,) float32.

    >>> import numpy as np
    >>> from fastrnn.reference import quantized
    >>> q, s = quantized.quantize_weight(np.array([[1.0, -0.5], [0.0, 0.0]]))
    >>> q.tolist(), s.tolist()
    ([[127, -64], [0, 0]], [0.007874015718698502, 0.0])
    """
    W = np.asarray(W, _F)
    s = (np.abs(W).max(axis=1) / _F(127)).astype(_F)
    q = np.clip(np.rint(W / np.where(s > 0, s, _F(1))[:, None]), -127, 127)
    return q.astype(np.int8), s


def quantize_rows(A):
    """``(q, s)``: the rows of A (m, K) as signed integers in [-127, 127] (int64) and
    their scales (m,) float32 -- the kernels store q + 128 as unsigned bytes.

    >>> import numpy as np
    >>> from fastrnn.reference import quantized
    >>> q, s = quantized.quantize_rows(np.array([[0.2, -0.4, 0.1]]))
    >>> q.tolist()
    [[64, -127, 32]]
    """
    A = np.asarray(A, _F)
    s = (np.abs(A).max(axis=1) / _F(127)).astype(_F)
    inv = (_F(1) / np.where(s > 0, s, _F(1))).astype(_F)
    q = np.clip(np.rint(A * inv[:, None]), -127, 127)
    return q.astype(np.int64), s


def int8_product(A, q_w, s_w, base=None):
    """``base + A @ W.T`` with A quantized per row and W = q_w * s_w per row: (1)/(2).

    >>> import numpy as np
    >>> from fastrnn.reference import quantized
    >>> rng = np.random.default_rng(0)
    >>> A, W = rng.standard_normal((3, 8)), rng.standard_normal((5, 8))
    >>> out = quantized.int8_product(A, *quantized.quantize_weight(W))
    >>> bool(np.abs(out - A @ W.T).max() < 0.1)
    True
    """
    q_a, s_a = quantize_rows(A)
    acc = q_a @ np.asarray(q_w, np.int64).T                  # exact
    out = acc.astype(_F) * (s_a[:, None] * np.asarray(s_w, _F)[None, :])
    return out if base is None else (out + np.asarray(base, _F)).astype(_F)


def input_bias(mode, b_ih, b_hh, GH):
    """The bias row of (1): b_ih + b_hh, but for the GRU's n block, whose b_hn stays
    inside r * (...) (the notation's Xp; zeros without biases).

    >>> import numpy as np
    >>> from fastrnn.reference import quantized
    >>> quantized.input_bias("GRU", np.ones(3), np.ones(3), 3).tolist()   # H = 1
    [2.0, 2.0, 1.0]
    """
    base = np.zeros(GH, _F)
    if b_ih is None:
        return base
    n_hh = 2 * GH // 3 if mode == "GRU" else GH
    base += np.asarray(b_ih, _F)
    base[:n_hh] += np.asarray(b_hh, _F)[:n_hh]
    return base


def step(mode, xp, h, c, q_hh, s_hh, b_hn=None, nonlinearity="tanh"):
    """One step from the input projection ``xp`` (B, G*H) (with :func:`input_bias`) and
    the state ``h`` (and the LSTM's ``c``) (B, H): the new ``(h, c)`` (c None but for the
    LSTM); ``b_hn`` the GRU's b_hh[2H:] (None: zeros).

    >>> import numpy as np
    >>> from fastrnn.reference import quantized
    >>> q_hh, s_hh = quantized.quantize_weight(np.eye(4, 4) * 0.5)
    >>> h, c = quantized.step("RNN", np.zeros((1, 4)), np.ones((1, 4)), None, q_hh, s_hh)
    >>> [round(float(v), 4) for v in h[0]], c              # tanh(0.5) each
    ([0.4621, 0.4621, 0.4621, 0.4621], None)
    """
    H = h.shape[1]
    gh = int8_product(h, q_hh, s_hh)                         # (2)
    if mode == "LSTM":
        g = xp + gh
        i, f, o = sigmoid(g[:, :H]), sigmoid(g[:, H:2 * H]), sigmoid(g[:, 3 * H:])
        c = f * c + i * np.tanh(g[:, 2 * H:3 * H])
        return (o * np.tanh(c)).astype(_F), c.astype(_F)
    if mode == "GRU":
        r = sigmoid(xp[:, :H] + gh[:, :H])
        z = sigmoid(xp[:, H:2 * H] + gh[:, H:2 * H])
        hn = gh[:, 2 * H:] + (0 if b_hn is None else np.asarray(b_hn, _F))
        n = np.tanh(xp[:, 2 * H:] + r * hn)
        return (n + z * (h - n)).astype(_F), None
    a = xp + gh
    return (np.maximum(a, 0) if nonlinearity == "relu" else np.tanh(a)).astype(_F), None


def layer_forward(mode, x, h0, c0, q_ih, s_ih, q_hh, s_hh, b_ih=None, b_hh=None,
                  lengths=None, reverse=False, nonlinearity="tanh"):
    """A quantized layer over x (T, B, I), one direction: ``y`` (T, B, H) (zeros at
    padded steps) and the final ``(h, c)``; lengths as ``fastrnn.reference.cells``.

    >>> import numpy as np
    >>> from fastrnn.reference import quantized
    >>> rng = np.random.default_rng(0)
    >>> W_ih, W_hh = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    >>> y, h, c = quantized.layer_forward("GRU", rng.standard_normal((5, 2, 3)),
    ...                                   np.zeros((2, 4)), None,
    ...                                   *quantized.quantize_weight(W_ih),
    ...                                   *quantized.quantize_weight(W_hh), lengths=[5, 2])
    >>> y.shape, bool(np.array_equal(y[1, 1], h[1])), bool(y[2:, 1].any())
    ((5, 2, 4), True, False)
    """
    x = np.asarray(x, _F)
    T, B, I = x.shape
    GH = q_ih.shape[0]
    base = input_bias(mode, b_ih, b_hh, GH)
    b_hn = None if b_hh is None or mode != "GRU" else np.asarray(b_hh, _F)[2 * GH // 3:]
    xp = int8_product(x.reshape(T * B, I), q_ih, s_ih, base).reshape(T, B, GH)   # (1)
    h = np.array(h0, _F)
    c = None if c0 is None else np.array(c0, _F)
    y = np.zeros((T, B, h.shape[1]), _F)
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        active = (np.ones(B, bool) if lengths is None else np.asarray(lengths) > t)
        h_t, c_t = step(mode, xp[t], h, c, q_hh, s_hh, b_hn, nonlinearity)
        h = np.where(active[:, None], h_t, h)
        if c is not None:
            c = np.where(active[:, None], c_t, c)
        y[t] = np.where(active[:, None], h_t, 0)
    return y, h, c
