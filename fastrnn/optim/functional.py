"""The update rules: one function per algorithm, in place on NumPy arrays.

Each is plain elementwise NumPy with ``out=`` into two scratch arrays (``work``), in the
same operation order as PyTorch's CPU kernels; none writes into ``grad``.  The
optimizers of :mod:`fastrnn.optim` are bookkeeping around these.
"""

from __future__ import annotations

import numpy as np

from .. import _engine


def _work(work, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.empty_like(like), np.empty_like(like)) if work is None else work


def _fusable(param: np.ndarray, *others: np.ndarray) -> bool:
    """Whether the compiled update applies: float32 or float64 arrays of one dtype and
    size, all C-contiguous (their flat views are then views)."""
    return (param.dtype in (np.float32, np.float64) and param.flags.c_contiguous
            and all(o.dtype == param.dtype and o.size == param.size
                    and o.flags.c_contiguous for o in others))


def _needed(array: np.ndarray | None, name: str, when: str) -> np.ndarray:
    """``array``, which the update reads ``when`` (a condition, for the error)."""
    if array is None:
        raise TypeError(f"{name} must be an array when {when}, got None")
    return array


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float, tmp: np.ndarray) -> None:
    """``start += weight * (end - start)`` in place, as ``torch.lerp_``: for ``weight >= 0.5``
    it computes ``end - (end - start) * (1 - weight)``, with the weight in the array's dtype."""
    w = start.dtype.type(weight)
    np.subtract(end, start, out=tmp)
    if abs(w) < 0.5:
        tmp *= w
        start += tmp
    else:
        tmp *= start.dtype.type(1) - w
        np.subtract(end, tmp, out=start)


def _effective_grad(param, grad, weight_decay: float, maximize: bool, a, b) -> np.ndarray:
    """``g = ±grad + weight_decay * param`` (the sign is - when maximizing), written into
    ``a`` (``b`` is scratch) unless it is ``grad`` itself, which is never written."""
    g = grad
    if maximize:
        np.negative(grad, out=a)
        g = a
    if weight_decay != 0:
        np.multiply(param, weight_decay, out=b)
        np.add(g, b, out=a)
        g = a
    return g


def sgd_update(param: np.ndarray, grad: np.ndarray, momentum_buffer: np.ndarray | None, *,
               lr: float, momentum: float = 0.0, dampening: float = 0.0,
               weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
               first_step: bool = False, work=None) -> None:
    """One SGD step on ``param`` in place (see :class:`SGD`).

    ``momentum_buffer`` (same shape, or None when ``momentum == 0``) is updated in place;
    on the ``first_step`` it is set to the gradient.  ``work`` is a pair of scratch arrays
    like ``param`` (allocated when None).

    >>> import numpy as np
    >>> from fastrnn.optim import sgd_update
    >>> w = np.array([1.0, 2.0])
    >>> sgd_update(w, np.array([1.0, -1.0]), None, lr=0.1)
    >>> w
    array([0.9, 2.1])
    """
    a, b = _work(work, param)
    g = _effective_grad(param, grad, weight_decay, maximize, a, b)
    if momentum != 0:
        buf = _needed(momentum_buffer, "momentum_buffer", "momentum != 0")
        if first_step:
            np.copyto(buf, g)                      # b_1 = g_1
        else:
            buf *= momentum                        # b_t = mu b_{t-1} + (1 - tau) g_t
            np.multiply(g, 1 - dampening, out=b)
            buf += b
        if nesterov:
            np.multiply(buf, momentum, out=b)      # g_t + mu b_t
            np.add(g, b, out=a)
            g = a
        else:
            g = buf
    np.multiply(g, -lr, out=b)
    param += b


def adam_update(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
                exp_avg_sq: np.ndarray, max_exp_avg_sq: np.ndarray | None, step: int, *,
                lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
                decoupled_weight_decay: bool = False, work=None) -> None:
    """One Adam (or, with ``decoupled_weight_decay``, AdamW) step on ``param`` in place.

    ``step`` is the number of this step, counting from 1.  The moments ``exp_avg``,
    ``exp_avg_sq`` and (with ``amsgrad``) ``max_exp_avg_sq`` are updated in place.  See
    :class:`Adam`.

    >>> import numpy as np
    >>> from fastrnn.optim import adam_update
    >>> w, m, v = np.array([1.0]), np.zeros(1), np.zeros(1)
    >>> adam_update(w, np.array([0.5]), m, v, None, 1, lr=0.1, beta1=0.9, beta2=0.999,
    ...             eps=1e-8)
    >>> w.round(6)                                     # the first step moves by lr
    array([0.9])
    """
    if weight_decay == 0 and not amsgrad and not maximize and _fusable(
            param, grad, exp_avg, exp_avg_sq):
        # the same operations in one compiled pass (fastrnn/_adam.h), bit for bit
        t = param.dtype.type
        w = t(1 - beta1)
        high = not abs(w) < 0.5                     # _lerp_'s two forms
        _engine.adam_step(param, grad, exp_avg, exp_avg_sq, float(t(1) - w if high else w),
                          high, float(t(beta2)), float(t(1 - beta2)),
                          float(t((1 - beta2 ** step) ** 0.5)), float(t(eps)),
                          float(t(-(lr / (1 - beta1 ** step)))))
        return
    a, b = _work(work, param)
    if decoupled_weight_decay and weight_decay != 0:
        param *= 1 - lr * weight_decay             # theta <- theta (1 - gamma lambda)
        g = _effective_grad(param, grad, 0.0, maximize, a, b)
    else:
        g = _effective_grad(param, grad, weight_decay, maximize, a, b)
    _lerp_(exp_avg, g, 1 - beta1, b)               # m_t = beta1 m + (1 - beta1) g
    exp_avg_sq *= beta2                            # v_t = beta2 v + (1 - beta2) g^2
    np.multiply(g, 1 - beta2, out=b)
    b *= g
    exp_avg_sq += b
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    if amsgrad:
        max_sq = _needed(max_exp_avg_sq, "max_exp_avg_sq", "amsgrad is set")
        np.maximum(max_sq, exp_avg_sq, out=max_sq)
        np.sqrt(max_sq, out=b)
    else:
        np.sqrt(exp_avg_sq, out=b)
    b /= bias_correction2 ** 0.5                   # denom = sqrt(v_hat) + eps
    b += eps
    np.multiply(exp_avg, -step_size, out=a)        # g is no longer needed: a is free
    a /= b
    param += a


def rmsprop_update(param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray,
                   grad_avg: np.ndarray | None, momentum_buffer: np.ndarray | None, *,
                   lr: float, alpha: float, eps: float, weight_decay: float = 0.0,
                   momentum: float = 0.0, centered: bool = False, maximize: bool = False,
                   work=None) -> None:
    """One RMSprop step on ``param`` in place (see :class:`RMSprop`).

    ``square_avg``, ``grad_avg`` (with ``centered``) and ``momentum_buffer`` (with
    ``momentum > 0``) are updated in place.

    >>> import numpy as np
    >>> from fastrnn.optim import rmsprop_update
    >>> w, sq = np.array([1.0]), np.zeros(1)
    >>> rmsprop_update(w, np.array([2.0]), sq, None, None, lr=0.01, alpha=0.99, eps=1e-8)
    >>> w.round(4), sq
    (array([0.9]), array([0.04]))
    """
    a, b = _work(work, param)
    g = _effective_grad(param, grad, weight_decay, maximize, a, b)
    square_avg *= alpha                            # v_t = alpha v + (1 - alpha) g^2
    np.multiply(g, 1 - alpha, out=b)
    b *= g
    square_avg += b
    if centered:
        g_ave = _needed(grad_avg, "grad_avg", "centered is set")
        _lerp_(g_ave, g, 1 - alpha, b)             # g_ave = alpha g_ave + (1 - alpha) g
        np.multiply(g_ave, -1.0, out=b)            # v_t - g_ave^2
        b *= g_ave
        np.add(square_avg, b, out=b)
        np.sqrt(b, out=b)
    else:
        np.sqrt(square_avg, out=b)
    b += eps
    if momentum > 0:
        buf = _needed(momentum_buffer, "momentum_buffer", "momentum > 0")
        buf *= momentum                            # b_t = mu b + g / (sqrt(v~) + eps)
        np.divide(g, b, out=b)
        buf += b
        np.multiply(buf, -lr, out=b)
        param += b
    else:
        np.multiply(g, -lr, out=a)
        a /= b
        param += a


def adagrad_update(param: np.ndarray, grad: np.ndarray, state_sum: np.ndarray, step: int, *,
                   lr: float, lr_decay: float = 0.0, weight_decay: float = 0.0,
                   eps: float = 1e-10, maximize: bool = False, work=None) -> None:
    """One Adagrad step on ``param`` in place (see :class:`Adagrad`); ``step`` counts from 1
    and ``state_sum`` is updated in place.

    >>> import numpy as np
    >>> from fastrnn.optim import adagrad_update
    >>> w, s = np.array([1.0]), np.zeros(1)
    >>> adagrad_update(w, np.array([2.0]), s, 1, lr=0.1)
    >>> w.round(6), s
    (array([0.9]), array([4.]))
    """
    a, b = _work(work, param)
    g = _effective_grad(param, grad, weight_decay, maximize, a, b)
    clr = lr / (1 + (step - 1) * lr_decay)
    np.multiply(g, g, out=b)                       # state_sum += g^2
    state_sum += b
    np.sqrt(state_sum, out=b)
    b += eps
    np.multiply(g, -clr, out=a)
    a /= b
    param += a
