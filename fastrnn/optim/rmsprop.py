"""RMSprop, optionally centered and with momentum."""

from __future__ import annotations

from functools import partial

from .._validate import flag as _flag
from .functional import rmsprop_update
from .optimizer import Optimizer, _nonneg, _unit


class RMSprop(Optimizer):
    r"""RMSprop (``torch.optim.RMSprop``).

    With gradient :math:`g_t`, learning rate :math:`\gamma`, smoothing constant
    :math:`\alpha`, weight decay :math:`\lambda`, momentum :math:`\mu`, :math:`\epsilon`:

    .. math::
        g_t &\leftarrow \pm g_t + \lambda \theta_{t-1}
            \quad (- \text{ if maximize}) \\
        v_t &\leftarrow \alpha v_{t-1} + (1 - \alpha) g_t^2 \\
        \tilde v_t &\leftarrow v_t - \bar g_t^2 \text{ with }
            \bar g_t \leftarrow \alpha \bar g_{t-1} + (1 - \alpha) g_t
            \text{ if centered else } v_t \\
        b_t &\leftarrow \mu b_{t-1} + g_t / (\sqrt{\tilde v_t} + \epsilon), \quad
            \theta_t \leftarrow \theta_{t-1} - \gamma b_t \quad (\text{if } \mu > 0) \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma g_t / (\sqrt{\tilde v_t} + \epsilon)
            \quad (\text{otherwise})

    with :math:`v_0 = \bar g_0 = b_0 = 0`.

    Args:
        params: an iterable of Parameter, or of dicts defining parameter groups.
        lr: learning rate (default 1e-2).
        alpha: smoothing constant, in [0, 1] (default 0.99).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty (default 0).
        momentum: momentum factor (default 0).
        centered: normalise by an estimate of the gradient's variance.
        maximize: maximize the objective instead of minimizing it.

    State per parameter: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` (centered).

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import RMSprop
    >>> w = Parameter(np.array([1.0, -2.0]))
    >>> opt = RMSprop([w], lr=0.01, momentum=0.9, centered=True)
    >>> w.grad[:] = [0.5, -1.0]
    >>> opt.step()
    >>> sorted(opt.state[0])          # momentum and centered add their buffers
    ['grad_avg', 'momentum_buffer', 'square_avg', 'step']
    >>> w.data.round(4)
    array([ 0.8995, -1.8995])
    """

    _checks = {**Optimizer._checks, "alpha": partial(_unit, closed=True), "eps": _nonneg,
               "weight_decay": _nonneg, "momentum": _nonneg, "centered": _flag,
               "maximize": _flag}
    _state_arrays = ("square_avg", "momentum_buffer", "grad_avg")
    _state_counters = ("step",)

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered,
                                      maximize=maximize))

    def _required_state(self, group):
        names: tuple[str, ...] = ("step", "square_avg")
        names += ("momentum_buffer",) if group["momentum"] > 0 else ()
        return names + (("grad_avg",) if group["centered"] else ())

    def _update(self, p, state, group, work):
        state["step"] += 1
        rmsprop_update(p.data, p.grad, state["square_avg"], state.get("grad_avg"),
                       state.get("momentum_buffer"), lr=group["lr"], alpha=group["alpha"],
                       eps=group["eps"], weight_decay=group["weight_decay"],
                       momentum=group["momentum"], centered=group["centered"],
                       maximize=group["maximize"], work=work)
