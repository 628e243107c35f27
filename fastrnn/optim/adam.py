"""Adam and AdamW (Adam with decoupled weight decay)."""

from __future__ import annotations

from .._validate import flag as _flag
from .functional import adam_update
from .optimizer import Optimizer, _betas, _nonneg


class Adam(Optimizer):
    r"""Adam (``torch.optim.Adam``).

    With gradient :math:`g_t`, learning rate :math:`\gamma`, betas
    :math:`(\beta_1, \beta_2)`, weight decay :math:`\lambda`, :math:`\epsilon`:

    .. math::
        g_t &\leftarrow \pm g_t + \lambda \theta_{t-1}
            \quad (- \text{ if maximize}; \text{ AdamW instead does }
            \theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma \lambda)) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat v_t &\leftarrow \max(\hat v_{t-1}, v_t) \text{ if amsgrad else } v_t \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t}
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    with :math:`m_0 = v_0 = \hat v_0 = 0`.

    Args:
        params: an iterable of Parameter, or of dicts defining parameter groups.
        lr: learning rate (default 1e-3).
        betas: decay rates of the first and second moment averages, in [0, 1)
            (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty added to the gradient (default 0).
        amsgrad: use the maximum of past second moments (AMSGrad).
        maximize: maximize the objective instead of minimizing it.
        decoupled_weight_decay: decay the parameters directly, as AdamW.

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad).

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import Adam
    >>> w = Parameter(np.array([1.0, -2.0]))
    >>> opt = Adam([w], lr=0.1)
    >>> w.grad[:] = [0.5, -1.0]
    >>> opt.step()
    >>> w.data.round(6)
    array([ 0.9, -1.9])
    """

    _checks = {**Optimizer._checks, "betas": _betas, "eps": _nonneg, "weight_decay": _nonneg,
               "amsgrad": _flag, "maximize": _flag, "decoupled_weight_decay": _flag}
    _state_arrays = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _state_counters = ("step",)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _required_state(self, group):
        base = ("step", "exp_avg", "exp_avg_sq")
        return base + ("max_exp_avg_sq",) if group["amsgrad"] else base

    def _update(self, p, state, group, work):
        state["step"] += 1
        beta1, beta2 = group["betas"]
        adam_update(p.data, p.grad, state["exp_avg"], state["exp_avg_sq"],
                    state.get("max_exp_avg_sq"), state["step"], lr=group["lr"], beta1=beta1,
                    beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    amsgrad=group["amsgrad"], maximize=group["maximize"],
                    decoupled_weight_decay=group["decoupled_weight_decay"], work=work)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (``torch.optim.AdamW``).

    As :class:`Adam`, except that the weight decay multiplies the parameters before the
    step instead of entering the gradient:

    .. math::
        \theta_{t-1} &\leftarrow \theta_{t-1} (1 - \gamma \lambda) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t}
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Args are Adam's, with ``weight_decay`` defaulting to 1e-2.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import AdamW
    >>> w = Parameter(np.array([1.0, -2.0]))
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
    >>> w.grad[:] = 0.0               # no gradient: the decay alone moves the weights
    >>> opt.step()
    >>> w.data                        # times 1 - lr * weight_decay
    array([ 0.95, -1.9 ])
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def _validate(self, hp, where):
        hp = super()._validate(hp, where)
        hp["decoupled_weight_decay"] = True        # also when loading an Adam state dict
        return hp
