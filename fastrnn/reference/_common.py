"""What the references of fastrnn.reference share: the sigmoid, the checks and casts of
their arguments, the length masks and the products before and after the time loop."""


import numpy as np

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


def _relu(a):
    return np.maximum(a, 0)


def _float_dtype(x):
    """float32 and float64 stay as they are; anything else computes in float64."""
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _check_shape(name, a, shape):
    if a is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def _input(x):
    """``x`` as a (T, B, I) array of its float dtype."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {x.shape}")
    return x.astype(_float_dtype(x), copy=False)


def _prepare(x, states, W_ih, W_hh, b_ih, b_hh, num_gates, lengths, hidden_size=None):
    """Cast everything to the dtype of x and check shapes.

    ``states`` is a list of (name, array) pairs: h (B, P), the others (B, H), where P is
    W_hh's width and H ``hidden_size`` (P unless an LSTM projects h). Returns x, the list
    of states, the weights (W_ih, W_hh, b_ih, b_hh) and the (T, B) mask ``active``.
    """
    x = _input(x)
    dtype = x.dtype
    T, B, I = x.shape
    W_ih, W_hh, b_ih, b_hh = (None if a is None else np.asarray(a, dtype=dtype)
                              for a in (W_ih, W_hh, b_ih, b_hh))
    P = W_hh.shape[-1]
    H = hidden_size or P
    _check_shape("W_ih", W_ih, (num_gates * H, I))
    _check_shape("W_hh", W_hh, (num_gates * H, P))
    _check_shape("b_ih", b_ih, (num_gates * H,))
    _check_shape("b_hh", b_hh, (num_gates * H,))
    states = [_check_shape(name, np.asarray(s, dtype=dtype), (B, P if i == 0 else H))
              for i, (name, s) in enumerate(states)]
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


def _backward_inputs(dy, dstates, cache, cell_shape=None):
    """dy in the cache dtype with padded steps zeroed, and the state gradients (None -> 0):
    dh of h's shape, the others of ``cell_shape`` (h's unless given)."""
    x, Hp, active = cache["x"], cache["Hp"], cache["active"]
    dy = _check_shape("dy", np.asarray(dy, dtype=x.dtype), Hp.shape)
    if active is not None:
        dy = np.where(active[:, :, None], dy, 0)  # y is constant 0 there
    shapes = [Hp.shape[1:]] + [cell_shape or Hp.shape[1:]] * (len(dstates) - 1)
    dstates = [np.zeros(shape, dtype=x.dtype) if d is None else
               _check_shape(name, np.asarray(d, dtype=x.dtype), shape)
               for (name, d), shape in zip(dstates, shapes)]
    return dy, dstates


def _input_and_weight_grads(dGx, dGh, cache):
    """dx and the parameter gradients from the pre-activation gradients of all steps."""
    x, Hp = cache["x"], cache["Hp"]
    if cache.get("hmask") is not None:      # the product read h_prev * the recurrent mask
        Hp = Hp * cache["hmask"]
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


