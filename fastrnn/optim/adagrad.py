"""Adagrad."""

from __future__ import annotations

import numpy as np

from .._validate import flag as _flag
from .functional import adagrad_update
from .optimizer import Optimizer, _nonneg


class Adagrad(Optimizer):
    r"""Adagrad (``torch.optim.Adagrad``).

    With gradient :math:`g_t`, learning rate :math:`\gamma`, learning-rate decay
    :math:`\eta`, weight decay :math:`\lambda`, initial accumulator value :math:`\tau`:

    .. math::
        g_t &\leftarrow \pm g_t + \lambda \theta_{t-1}
            \quad (- \text{ if maximize}) \\
        \tilde\gamma &\leftarrow \gamma / (1 + (t - 1) \eta) \\
        s_t &\leftarrow s_{t-1} + g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \tilde\gamma \frac{g_t}{\sqrt{s_t} + \epsilon}

    with :math:`s_0 = \tau`.

    Args:
        params: an iterable of Parameter, or of dicts defining parameter groups.
        lr: learning rate (default 1e-2).
        lr_decay: learning-rate decay (default 0).
        weight_decay: L2 penalty (default 0).
        initial_accumulator_value: starting value of the sums of squares (default 0).
            As in torch, the optimizer-wide value applies to every group (a group's own
            ``initial_accumulator_value`` is kept in the group but not used).
        eps: added to the denominator (default 1e-10).
        maximize: maximize the objective instead of minimizing it.

    State per parameter: ``step``, ``sum``.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import Adagrad
    >>> w = Parameter(np.zeros(2))
    >>> opt = Adagrad([w], lr=0.1)
    >>> w.grad[:] = [0.5, -1.0]
    >>> opt.step(); opt.step()        # the same gradient twice: the second step is smaller
    >>> w.data.round(4)               # -0.1 - 0.1 / sqrt(2), and its opposite
    array([-0.1707,  0.1707])
    >>> opt.state[0]["sum"]           # the sums of the squared gradients
    array([0.5, 2. ])
    """

    _checks = {**Optimizer._checks, "lr_decay": _nonneg, "weight_decay": _nonneg,
               "initial_accumulator_value": _nonneg, "eps": _nonneg, "maximize": _flag}
    _state_arrays = ("sum",)
    _state_counters = ("step",)

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _new_state(self, name, p, group):
        if name == "sum":                          # torch reads the optimizer-wide value
            return np.full_like(p.data, self.defaults["initial_accumulator_value"])
        return super()._new_state(name, p, group)

    def _update(self, p, state, group, work):
        state["step"] += 1
        adagrad_update(p.data, p.grad, state["sum"], state["step"], lr=group["lr"],
                       lr_decay=group["lr_decay"], weight_decay=group["weight_decay"],
                       eps=group["eps"], maximize=group["maximize"], work=work)
