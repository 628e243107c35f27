"""Stochastic gradient descent, with momentum and Nesterov momentum."""

from __future__ import annotations

import numpy as np

from .._validate import flag as _flag
from .functional import sgd_update
from .optimizer import Optimizer, _key, _nonneg, _real


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (``torch.optim.SGD``).

    With gradient :math:`g_t` of parameters :math:`\theta`, learning rate :math:`\gamma`,
    weight decay :math:`\lambda`, momentum :math:`\mu`, dampening :math:`\tau`:

    .. math::
        g_t &\leftarrow \pm g_t + \lambda \theta_{t-1}
            \quad (- \text{ if maximize}) \\
        b_t &\leftarrow g_t \text{ if } t = 1
            \text{ else } \mu b_{t-1} + (1 - \tau) g_t \quad (\text{if } \mu \neq 0) \\
        g_t &\leftarrow g_t + \mu b_t \text{ if nesterov else } b_t
            \quad (\text{if } \mu \neq 0) \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma g_t

    Args:
        params: an iterable of Parameter, or of dicts defining parameter groups.
        lr: learning rate (default 1e-3).
        momentum: momentum factor (default 0).
        dampening: dampening of the momentum (default 0).
        weight_decay: L2 penalty (default 0).
        nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
        maximize: maximize the objective instead of minimizing it.

    State per parameter: ``momentum_buffer`` (with momentum).

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import SGD
    >>> w = Parameter(np.array([1.0, -2.0]))
    >>> opt = SGD([w], lr=0.1, momentum=0.9)
    >>> w.grad[:] = [0.5, -1.0]
    >>> opt.step(); opt.step()
    >>> w.data
    array([ 0.855, -1.71 ])
    """

    _checks = {**Optimizer._checks, "momentum": _nonneg, "dampening": _real,
               "weight_decay": _nonneg, "nesterov": _flag, "maximize": _flag}
    _state_arrays = ("momentum_buffer",)

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _validate(self, hp, where):
        hp = super()._validate(hp, where)
        if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
            raise ValueError(f"{_key(where, 'nesterov')}=True requires momentum > 0 and "
                             f"dampening = 0, got momentum={hp['momentum']}, "
                             f"dampening={hp['dampening']}")
        return hp

    def _required_state(self, group):
        return ()                                  # the momentum buffer starts as a gradient

    def _update(self, p, state, group, work):
        buf, first = None, False
        if group["momentum"] != 0:
            first = "momentum_buffer" not in state
            if first:
                state["momentum_buffer"] = np.empty_like(p.data)
            buf = state["momentum_buffer"]
        sgd_update(p.data, p.grad, buf, lr=group["lr"], momentum=group["momentum"],
                   dampening=group["dampening"], weight_decay=group["weight_decay"],
                   nesterov=group["nesterov"], maximize=group["maximize"],
                   first_step=first, work=work)
