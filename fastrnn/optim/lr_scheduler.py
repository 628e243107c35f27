"""Learning-rate schedules, as ``torch.optim.lr_scheduler``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .._validate import positive_int
from .optimizer import Optimizer, _count, _is_int, _nonneg


class LRScheduler:
    """Base of the learning-rate schedules (``torch.optim.lr_scheduler.LRScheduler``).

    At construction it stores each group's ``lr`` as ``initial_lr`` (the ``base_lrs``) and
    takes the first step (epoch 0); call :meth:`step` after each ``optimizer.step()``.
    ``last_epoch`` other than -1 resumes a schedule and needs ``initial_lr`` in every
    group.  Subclasses define :meth:`get_lr`, the new rates from the current ones.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import SGD, LRScheduler
    >>> class Halve(LRScheduler):
    ...     def get_lr(self):
    ...         return [base * 0.5 ** self.last_epoch for base in self.base_lrs]
    >>> opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    >>> schedule = Halve(opt)
    >>> schedule.step(); schedule.step()
    >>> opt.param_groups[0]["lr"]
    0.25
    """

    #: the hyper-parameters (attributes, saved in the state dict), each with its check
    _hyper: Mapping[str, Callable[[Any, str], Any]] = {}
    # torch's private flags, accepted and ignored when loading one of its state dicts
    _ignored: tuple[str, ...] = ("_get_lr_called_within_step", "_is_initial")

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
        if not _is_int(last_epoch):
            raise TypeError(f"last_epoch must be an int, got {type(last_epoch).__name__}")
        if last_epoch < -1:
            raise ValueError(f"last_epoch must be >= -1, got {last_epoch}")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise ValueError(f"last_epoch={last_epoch} resumes a schedule, but "
                                 f"optimizer.param_groups[{i}] has no 'initial_lr'")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and set each group's ``lr``."""
        self._step_count += 1
        self.last_epoch += 1
        for i, (group, lr) in enumerate(zip(self.optimizer.param_groups, self.get_lr())):
            group["lr"] = _nonneg(lr, f"the learning rate of param_groups[{i}]")
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last :meth:`step`, one per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position and hyper-parameters, as plain numbers and lists."""
        d = {name: getattr(self, name) for name in self._hyper}
        d.update(last_epoch=self.last_epoch, _step_count=self._step_count,
                 base_lrs=list(self.base_lrs), _last_lr=list(self._last_lr))
        return d

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (also a torch scheduler's of the same kind)."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        expected = set(self._hyper) | {"last_epoch", "_step_count", "base_lrs", "_last_lr"}
        keys = set(state_dict) - set(self._ignored)
        if keys != expected:
            raise ValueError(f"state_dict does not match {type(self).__name__}: missing "
                             f"keys {sorted(expected - keys)}, unexpected keys "
                             f"{sorted(keys - expected)}")
        n = len(self.optimizer.param_groups)
        lists = {}
        for name in ("base_lrs", "_last_lr"):
            v = state_dict[name]
            if not isinstance(v, (list, tuple)) or len(v) != n:
                raise ValueError(f"state_dict[{name!r}] must be a list of {n} learning rates "
                                 f"(one per parameter group), got {v!r}")
            lists[name] = [_nonneg(x, f"state_dict[{name!r}][{i}]") for i, x in enumerate(v)]
        last_epoch = state_dict["last_epoch"]
        if not _is_int(last_epoch) or last_epoch < -1:
            raise ValueError(f"state_dict['last_epoch'] must be an int >= -1, got {last_epoch!r}")
        step_count = _count(state_dict["_step_count"], "state_dict['_step_count']")
        self._set_hyper(state_dict)
        self.base_lrs, self._last_lr = lists["base_lrs"], lists["_last_lr"]
        self.last_epoch, self._step_count = int(last_epoch), step_count

    def _set_hyper(self, hp: Mapping[str, Any]) -> None:
        """Check the value in ``hp`` of every hyper-parameter, then set them all."""
        checked = {name: check(hp[name], name) for name, check in self._hyper.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        hp = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._hyper)
        return f"{type(self).__name__}({hp + ', ' if hp else ''}last_epoch={self.last_epoch})"


class LambdaLR(LRScheduler):
    r"""The initial learning rate times a function of the epoch
    (``torch.optim.lr_scheduler.LambdaLR``): :math:`\eta_t = \eta_0 \cdot f(t)`.

    ``lr_lambda`` is one function of the epoch (an int) for every group, or a list of one
    per group.  The functions are not part of :meth:`state_dict`.  A linear warm-up over
    ``w`` steps is ``lambda t: min(1.0, (t + 1) / w)``.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import SGD, LambdaLR
    >>> opt = SGD([Parameter(np.zeros(2))], lr=0.1)
    >>> warmup = LambdaLR(opt, lambda t: min(1.0, (t + 1) / 4))
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(round(warmup.get_last_lr()[0], 6)); opt.step(); warmup.step()
    >>> lrs
    [0.025, 0.05, 0.075, 0.1, 0.1]
    """

    _ignored = LRScheduler._ignored + ("lr_lambdas",)

    def __init__(self, optimizer: Optimizer, lr_lambda, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"lr_lambda must hold one function per parameter group "
                                 f"({n}), got {len(lr_lambda)}")
            fns = list(lr_lambda)
        else:
            fns = [lr_lambda] * n
        for f in fns:
            if not callable(f):
                raise TypeError(f"lr_lambda must be a function of the epoch (or a list of "
                                f"them), got {type(f).__name__}")
        self.lr_lambdas = fns
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * f(self.last_epoch) for f, base_lr in zip(self.lr_lambdas,
                                                                   self.base_lrs)]


class StepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every ``step_size`` epochs
    (``torch.optim.lr_scheduler.StepLR``):
    :math:`\eta_t = \eta_0 \gamma^{\lfloor t / \text{step\_size} \rfloor}`, applied as a
    multiplication of the current rate at each multiple of ``step_size``.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import SGD, StepLR
    >>> opt = SGD([Parameter(np.zeros(2))], lr=1.0)
    >>> sched = StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(sched.get_last_lr()[0]); opt.step(); sched.step()
    >>> lrs
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    _hyper = {"step_size": positive_int, "gamma": _nonneg}
    step_size: int
    gamma: float

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self._set_hyper(dict(step_size=step_size, gamma=gamma))
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]


class ExponentialLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every epoch
    (``torch.optim.lr_scheduler.ExponentialLR``): :math:`\eta_t = \eta_0 \gamma^t`.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import SGD, ExponentialLR
    >>> opt = SGD([Parameter(np.zeros(2))], lr=1.0)
    >>> sched = ExponentialLR(opt, gamma=0.5)
    >>> opt.step(); sched.step(); opt.step(); sched.step()
    >>> sched.get_last_lr()
    [0.25]
    """

    _hyper = {"gamma": _nonneg}
    gamma: float

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self._set_hyper(dict(gamma=gamma))
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        return lrs if self._is_initial else [lr * self.gamma for lr in lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the initial rate to ``eta_min`` over ``T_max`` epochs
    (``torch.optim.lr_scheduler.CosineAnnealingLR``, without restarts):

    .. math::
        \eta_t = \eta_{min} + \tfrac12 (\eta_0 - \eta_{min})
            \left(1 + \cos\left(\frac{t \pi}{T_{max}}\right)\right)

    computed, as torch does, by the recursion
    :math:`\eta_{t} = \eta_{min} + (\eta_{t-1} - \eta_{min})
    \frac{1 + \cos(t \pi / T_{max})}{1 + \cos((t - 1) \pi / T_{max})}`, so that changes made
    to the rate from outside carry on; past ``T_max`` the rate climbs back (period 2 T_max).

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import SGD, CosineAnnealingLR
    >>> opt = SGD([Parameter(np.zeros(2))], lr=1.0)
    >>> sched = CosineAnnealingLR(opt, T_max=4)
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(round(sched.get_last_lr()[0], 6)); opt.step(); sched.step()
    >>> lrs
    [1.0, 0.853553, 0.5, 0.146447, 0.0]
    """

    _hyper = {"T_max": positive_int, "eta_min": _nonneg}
    T_max: int
    eta_min: float

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self._set_hyper(dict(T_max=T_max, eta_min=eta_min))
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups, t, T, eta_min = self.optimizer.param_groups, self.last_epoch, self.T_max, \
            self.eta_min
        if self._is_initial:
            return [group["lr"] for group in groups]
        if self._step_count == 1 and t > 0:
            return [eta_min + (base_lr - eta_min) * (1 + math.cos(t * math.pi / T)) / 2
                    for base_lr in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [group["lr"] + (base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for base_lr, group in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (group["lr"] - eta_min) + eta_min for group in groups]
