"""Gradient clipping, as ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``."""

from __future__ import annotations

import math

import numpy as np

from .._validate import flag as _flag
from .optimizer import _is_real, _parameters, _Scratch


def clip_grad_norm(parameters, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> float:
    r"""Scale the gradients in place so that their joint norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``; returns the norm before clipping.

    The norm is taken over all gradients together, as if concatenated:
    :math:`\|g\|_p = (\sum_i \|g_i\|_p^p)^{1/p}` (the largest :math:`|g|` for ``inf``).
    Every gradient is multiplied by :math:`\min(1, \text{max\_norm} / (\|g\|_p + 10^{-6}))`.

    Args:
        parameters: a Parameter or an iterable of them.
        max_norm: the largest norm allowed, >= 0.
        norm_type: p > 0, or ``inf`` (default 2).
        error_if_nonfinite: raise RuntimeError (and leave the gradients alone) when the
            norm is nan or inf; otherwise the gradients are scaled by a nan or 0 factor.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import clip_grad_norm
    >>> w = Parameter(np.zeros(2))
    >>> w.grad[:] = [3.0, 4.0]
    >>> clip_grad_norm([w], max_norm=1.0)
    5.0
    >>> w.grad.round(6)
    array([0.6, 0.8])
    """
    params = _parameters(parameters)
    max_norm = _real_or_inf(max_norm, "max_norm")
    if max_norm < 0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    p = _real_or_inf(norm_type, "norm_type")
    if not p > 0:
        raise ValueError(f"norm_type must be > 0 or inf, got {norm_type}")
    error_if_nonfinite = _flag(error_if_nonfinite, "error_if_nonfinite")
    if not params:
        return 0.0
    scratch = _Scratch()
    norms = np.zeros(len(params))                  # the norm of each gradient, then combined
    for i, q in enumerate(params):
        g = q.grad
        if g.size == 0:
            continue
        if p == math.inf:
            norms[i] = np.maximum(g.max(), -g.min())
            continue
        s = scratch.get(0, g)
        np.abs(g, out=s)
        if p == 2:
            s *= s
            norms[i] = math.sqrt(s.sum(dtype=np.float64))
        else:
            np.power(s, s.dtype.type(p), out=s)
            norms[i] = s.sum(dtype=np.float64) ** (1 / p)
    with np.errstate(over="ignore"):
        if p == math.inf:
            total = float(norms.max())
        elif p == 2:
            total = float(np.sqrt(np.sum(norms * norms)))
        else:
            total = float(np.sum(norms ** p) ** (1 / p))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is "
                           f"{total}, so it cannot be clipped; set error_if_nonfinite=False "
                           f"to scale the gradients by the non-finite norm anyway")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:                             # also when nan, as torch.clamp
        for q in params:
            q.grad *= coef
    return total


def _real_or_inf(value, name: str) -> float:
    if not _is_real(value):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be nan")
    return value


def clip_grad_value(parameters, clip_value: float) -> None:
    """Clamp every gradient in place to [-clip_value, clip_value], as
    ``torch.nn.utils.clip_grad_value_``.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import clip_grad_value
    >>> w = Parameter(np.zeros(3))
    >>> w.grad[:] = [-3.0, 0.5, 4.0]
    >>> clip_grad_value(w, 1.0)
    >>> w.grad
    array([-1. ,  0.5,  1. ])
    """
    params = _parameters(parameters)
    clip_value = _real_or_inf(clip_value, "clip_value")
    if clip_value < 0:
        raise ValueError(f"clip_value must be >= 0, got {clip_value}")
    for q in params:
        np.clip(q.grad, -clip_value, clip_value, out=q.grad)
