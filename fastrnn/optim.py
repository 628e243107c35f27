r"""Optimizers, gradient clipping and learning-rate schedules with ``torch.optim``'s rules.

Hyper-parameter names, defaults and update rules are PyTorch's (``torch.optim.SGD``,
``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``; ``torch.nn.utils.clip_grad_norm_``;
``torch.optim.lr_scheduler``), so one step from the same parameters and gradients gives
the same numbers, in float32 and float64.

An optimizer is bookkeeping around one update function per algorithm
(:func:`sgd_update`, :func:`adam_update`, :func:`rmsprop_update`, :func:`adagrad_update`):
plain elementwise NumPy over arrays, in place, with ``out=`` into two reused scratch
buffers, and the same operation order as PyTorch's CPU kernels.  The update functions
never write into ``grad``.

The per-parameter state is keyed by the parameter's position (its index over all
parameter groups, in order), so :meth:`Optimizer.state_dict` is a plain, portable
structure of numbers and arrays::

    {"state": {0: {"step": 3, "exp_avg": array, ...}, ...},
     "param_groups": [{"lr": 0.001, "betas": [0.9, 0.999], ..., "params": [0, 1, 2]}]}

It holds nothing that needs pickle: JSON for the numbers plus ``.npz`` for the arrays
store it exactly.
"""

from __future__ import annotations

import math
import numbers
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ._validate import flag as _flag
from ._validate import positive_int
from .module import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
           "sgd_update", "adam_update", "rmsprop_update", "adagrad_update",
           "clip_grad_norm", "clip_grad_value",
           "LRScheduler", "LambdaLR", "StepLR", "ExponentialLR", "CosineAnnealingLR"]


# ----------------------------------------------------------------------------- checks


class _InterruptsHeld:
    """Holds back Ctrl-C (SIGINT) until the block is done, then delivers it: an
    optimizer step updates every parameter and state counter, or none (a step cut half
    way would leave parameters a step apart).  Only the main thread receives signals;
    elsewhere, or under a handler installed from C, this does nothing."""

    def __enter__(self):
        self.previous = self.received = None
        if threading.current_thread() is threading.main_thread():
            handler = signal.getsignal(signal.SIGINT)
            if handler is not None:
                self.previous = handler
                signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame) -> None:
        self.received = (signum, frame)

    def __exit__(self, *exc) -> None:
        if self.previous is None:
            return
        signal.signal(signal.SIGINT, self.previous)
        if self.received is not None and callable(self.previous):
            self.previous(*self.received)        # default_int_handler: KeyboardInterrupt



def _real(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _nonneg(value, name: str) -> float:
    value = _real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _unit(value, name: str, closed: bool = False) -> float:
    """A float in [0, 1) (or [0, 1] when ``closed``)."""
    value = _real(value, name)
    if not (0 <= value <= 1 if closed else 0 <= value < 1):
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value}")
    return value


def _betas(value, name: str) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    return (_unit(value[0], f"{name}[0]"), _unit(value[1], f"{name}[1]"))


def _count(value, name: str) -> int:
    """A step counter from a state dict: an int >= 0 (an integral float is accepted)."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0 and value == int(value)):
        raise ValueError(f"{name} must be an integer >= 0, got {value}")
    return int(value)


def _key(where: str, name: str) -> str:
    """The name of a hyper-parameter in errors: ``lr``, or ``param_groups[1]['lr']``."""
    return f"{where}[{name!r}]" if where else name


def _json_scalar(value) -> bool:
    return value is None or isinstance(value, (bool, numbers.Real, str))


def _parameters(parameters, name: str = "parameters") -> list[Parameter]:
    """``parameters`` (a Parameter or an iterable of them) as a list."""
    if isinstance(parameters, Parameter):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"{name} must be an iterable of Parameter, "
                        f"got {type(parameters).__name__}") from None
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{name}[{i}] must be a Parameter, got {type(p).__name__}")
    return params


class _Scratch:
    """Reusable work arrays: ``get(k, like)`` is the k-th scratch array shaped like
    ``like``, a view of a 1-D buffer per (dtype, k) that grows to the largest parameter."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, int], np.ndarray] = {}

    def get(self, k: int, like: np.ndarray) -> np.ndarray:
        key = (like.dtype.str, k)
        buf = self._buffers.get(key)
        if buf is None or buf.size < like.size:
            buf = self._buffers[key] = np.empty(like.size, like.dtype)
        return buf[:like.size].reshape(like.shape)

    def pair(self, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.get(0, like), self.get(1, like)


def _work(work, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.empty_like(like), np.empty_like(like)) if work is None else work


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


# ----------------------------------------------------------------------------- update rules


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
        buf = momentum_buffer
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
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        np.sqrt(max_exp_avg_sq, out=b)
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
        _lerp_(grad_avg, g, 1 - alpha, b)          # g_ave = alpha g_ave + (1 - alpha) g
        np.multiply(grad_avg, -1.0, out=b)         # v_t - g_ave^2
        b *= grad_avg
        np.add(square_avg, b, out=b)
        np.sqrt(b, out=b)
    else:
        np.sqrt(square_avg, out=b)
    b += eps
    if momentum > 0:
        momentum_buffer *= momentum                # b_t = mu b + g / (sqrt(v~) + eps)
        np.divide(g, b, out=b)
        momentum_buffer += b
        np.multiply(momentum_buffer, -lr, out=b)
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


# ----------------------------------------------------------------------------- base class


class Optimizer:
    """Base of the optimizers: parameter groups, per-parameter state, state dicts.

    ``params`` is an iterable of :class:`~fastrnn.Parameter`, or of dicts each defining a
    parameter group (``{"params": [...], "lr": ...}``); a group's missing hyper-parameters
    take the values in ``defaults``.  Subclasses define ``_validate`` (the hyper-parameter
    checks), ``_state_spec`` and ``_update`` (one call of their update function).

    Attributes:
        param_groups: a list of dicts, each with ``"params"`` (a list of Parameter) and
            the group's hyper-parameters, which may be changed between steps.
        state: per-parameter state, keyed by the parameter's index over all groups,
            created at its first step.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> from fastrnn.optim import SGD
    >>> w = Parameter(np.zeros(2))
    >>> opt = SGD([{"params": [w], "lr": 0.5}], lr=0.1)  # one parameter group
    >>> opt.param_groups[0]["lr"]
    0.5
    >>> w.grad[:] = 1.0
    >>> opt.step(); opt.zero_grad()
    >>> w.data
    array([-0.5, -0.5])
    """

    #: names of the per-parameter state entries: arrays (like the parameter) and counters
    _state_arrays: tuple[str, ...] = ()
    _state_counters: tuple[str, ...] = ()

    def __init__(self, params, defaults: Mapping[str, Any]) -> None:
        self.defaults = self._validate(dict(defaults), "")
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        self._scratch = _Scratch()
        if isinstance(params, (Parameter, np.ndarray, Mapping)) or not isinstance(
                params, Iterable):
            raise TypeError(f"params must be an iterable of Parameter or of dicts (parameter "
                            f"groups), got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("params is empty: the optimizer got no parameters")
        if not all(isinstance(g, Mapping) for g in groups):
            if any(isinstance(g, Mapping) for g in groups):
                raise TypeError("params must hold either only Parameters or only dicts "
                                "(parameter groups), not both")
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- hyper-parameters and state layout, defined by subclasses

    def _validate(self, hp: dict[str, Any], where: str) -> dict[str, Any]:
        """Checked and normalised hyper-parameters; ``where`` prefixes the names in errors."""
        if "lr" in hp:
            hp["lr"] = _nonneg(hp["lr"], _key(where, "lr"))
        return hp

    def _required_state(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        """The state entries every parameter of ``group`` has once it has been stepped."""
        return self._state_arrays + self._state_counters

    def _new_state(self, name: str, p: Parameter, group: Mapping[str, Any]):
        return 0 if name in self._state_counters else np.zeros_like(p.data)

    def _update(self, p: Parameter, state: dict[str, Any], group: Mapping[str, Any],
                work) -> None:
        raise NotImplementedError

    # -- parameter groups

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters (a dict with ``"params"`` and hyper-parameters that
        override the defaults); its parameters get the next indices."""
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        where = f"param_groups[{len(self.param_groups)}]"
        if "params" not in param_group:
            raise ValueError(f"{where} has no 'params' entry")
        group = dict(param_group)
        params = _parameters(group.pop("params"), f"{where}['params']")
        if not params:
            raise ValueError(f"{where}['params'] is empty")
        for i, p in enumerate(params):
            if p.data.dtype.kind != "f":
                raise TypeError(f"{where}['params'][{i}] must hold floating-point data, "
                                f"got dtype {p.data.dtype}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError(f"{where}: a parameter appears more than once in the "
                             f"optimizer's parameter groups")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        group = self._validate(group, where)
        group["params"] = params
        self.param_groups.append(group)

    def _indexed(self):
        """``(index, parameter, group)`` over all groups, in order."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, p, group
                i += 1

    # -- training

    def zero_grad(self) -> None:
        """Fill every parameter's gradient with zeros, in place (same array objects)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad.fill(0)

    def step(self, closure: Callable[[], float] | None = None):
        """Update every parameter from its ``.grad``; returns ``closure()`` if given (it is
        called first, to recompute the gradients)."""
        loss = closure() if closure is not None else None
        for i, p, _ in self._indexed():            # check all before updating any
            if p.grad.shape != p.data.shape or p.grad.dtype != p.data.dtype:
                raise ValueError(f"parameter {i}: grad (shape {p.grad.shape}, dtype "
                                 f"{p.grad.dtype}) does not match data (shape "
                                 f"{p.data.shape}, dtype {p.data.dtype})")
        with _InterruptsHeld():
            for i, p, group in self._indexed():
                state = self.state.setdefault(i, {})
                for name in self._required_state(group):
                    if name not in state:
                        state[name] = self._new_state(name, p, group)
                self._update(p, state, group, self._scratch.pair(p.data))
        return loss

    # -- state dicts

    def state_dict(self) -> dict[str, Any]:
        """A copy of the optimizer's state as plain numbers, lists and arrays.

        ``{"state": {index: {name: array or int}}, "param_groups": [{hyper-parameters...,
        "params": [indices]}]}``; the index of a parameter is its position over all groups.
        """
        groups, i = [], 0
        for group in self.param_groups:
            g = {k: (list(v) if isinstance(v, tuple) else v)
                 for k, v in group.items() if k != "params"}
            g["params"] = list(range(i, i + len(group["params"])))
            i += len(group["params"])
            groups.append(g)
        state = {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for i, s in sorted(self.state.items()) if s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict`: the hyper-parameters of each group and the state of each
        parameter, matched by position.

        The groups must have as many parameters as this optimizer's; every state array must
        have its parameter's shape (it is copied and cast to the parameter's dtype).  Keys
        may be strings of digits (as after a JSON round trip).  Everything is checked before
        anything changes; a mismatch raises ValueError (TypeError for a wrong type).
        """
        name = type(self).__name__
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            got = sorted(map(str, state_dict)) if isinstance(state_dict, Mapping) else \
                type(state_dict).__name__
            raise ValueError(f"state_dict must be a dict with keys 'param_groups' and 'state', "
                             f"got {got}")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, Mapping):
            raise TypeError("state_dict['param_groups'] must be a list and "
                            "state_dict['state'] a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} parameter groups, "
                             f"{name} has {len(self.param_groups)}")
        position: dict[int, int] = {}              # saved index -> index here
        owner: list[int] = []                      # index here -> group number
        groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            where = f"state_dict['param_groups'][{gi}]"
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise ValueError(f"{where} must be a dict with a 'params' entry")
            ids = saved["params"]
            if not isinstance(ids, (list, tuple)) or len(ids) != len(group["params"]):
                n = len(ids) if isinstance(ids, (list, tuple)) else type(ids).__name__
                raise ValueError(f"{where}['params'] must list {len(group['params'])} "
                                 f"parameter indices (this group's size), got {n}")
            for k in ids:
                k = _count(k, f"{where}['params'] entry")
                if k in position:
                    raise ValueError(f"{where}['params']: index {k} appears twice")
                position[k] = len(owner)
                owner.append(gi)
            missing = [k for k in self.defaults if k not in saved]
            if missing:
                raise ValueError(f"{where} lacks hyper-parameters {missing}")
            hp = {k: v for k, v in saved.items() if k != "params"}
            for k, v in hp.items():
                if k not in self.defaults and not _json_scalar(v):
                    raise TypeError(f"{where}[{k!r}] must be a number, bool or str, "
                                    f"got {type(v).__name__}")
            hp = self._validate(hp, where)
            hp["params"] = group["params"]
            groups.append(hp)
        params = [p for group in self.param_groups for p in group["params"]]
        state: dict[int, dict[str, Any]] = {}
        known = self._state_arrays + self._state_counters
        for key, entry in saved_state.items():
            where = f"state_dict['state'][{key!r}]"
            k = int(key) if isinstance(key, str) and key.isdigit() else _count(key, where)
            if k not in position:
                raise ValueError(f"{where}: no parameter has index {k} in param_groups")
            if not isinstance(entry, Mapping):
                raise TypeError(f"{where} must be a dict, got {type(entry).__name__}")
            if not entry:
                continue
            i = position[k]
            p = params[i]
            unknown = [n for n in entry if n not in known]
            missing = [n for n in self._required_state(groups[owner[i]]) if n not in entry]
            if unknown or missing:
                raise ValueError(f"{where} does not match {name}: unknown entries {unknown}, "
                                 f"missing entries {missing}")
            s = {}
            for n, v in entry.items():
                if n in self._state_counters:
                    s[n] = _count(v, f"{where}[{n!r}]")
                    continue
                a = np.asarray(v)
                if a.dtype.kind not in "fiu":
                    raise TypeError(f"{where}[{n!r}] must be a real array, got dtype {a.dtype}")
                if a.shape != p.data.shape:
                    raise ValueError(f"{where}[{n!r}] must have shape {p.data.shape} (the "
                                     f"parameter's), got {a.shape}")
                s[n] = np.array(a, dtype=p.data.dtype, order="C")
            state[i] = s
        self.param_groups = groups
        self.state = state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"


# ----------------------------------------------------------------------------- optimizers


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

    _state_arrays = ("momentum_buffer",)

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _validate(self, hp, where):
        hp = super()._validate(hp, where)
        hp["momentum"] = _nonneg(hp["momentum"], _key(where, "momentum"))
        hp["dampening"] = _real(hp["dampening"], _key(where, "dampening"))
        hp["weight_decay"] = _nonneg(hp["weight_decay"], _key(where, "weight_decay"))
        hp["nesterov"] = _flag(hp["nesterov"], _key(where, "nesterov"))
        hp["maximize"] = _flag(hp["maximize"], _key(where, "maximize"))
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

    _state_arrays = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _state_counters = ("step",)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _validate(self, hp, where):
        hp = super()._validate(hp, where)
        hp["betas"] = _betas(hp["betas"], _key(where, "betas"))
        hp["eps"] = _nonneg(hp["eps"], _key(where, "eps"))
        hp["weight_decay"] = _nonneg(hp["weight_decay"], _key(where, "weight_decay"))
        for flag in ("amsgrad", "maximize", "decoupled_weight_decay"):
            hp[flag] = _flag(hp[flag], _key(where, flag))
        return hp

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
    >>> w.grad[:] = [0.5, -1.0]
    >>> opt.step()
    >>> w.data.round(6)
    array([ 0.85, -1.8 ])
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
    >>> opt = RMSprop([w], lr=0.01)
    >>> w.grad[:] = [0.5, -1.0]
    >>> opt.step()
    >>> w.data.round(6)
    array([ 0.9, -1.9])
    """

    _state_arrays = ("square_avg", "momentum_buffer", "grad_avg")
    _state_counters = ("step",)

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered,
                                      maximize=maximize))

    def _validate(self, hp, where):
        hp = super()._validate(hp, where)
        hp["alpha"] = _unit(hp["alpha"], _key(where, "alpha"), closed=True)
        hp["eps"] = _nonneg(hp["eps"], _key(where, "eps"))
        hp["weight_decay"] = _nonneg(hp["weight_decay"], _key(where, "weight_decay"))
        hp["momentum"] = _nonneg(hp["momentum"], _key(where, "momentum"))
        hp["centered"] = _flag(hp["centered"], _key(where, "centered"))
        hp["maximize"] = _flag(hp["maximize"], _key(where, "maximize"))
        return hp

    def _required_state(self, group):
        names = ("step", "square_avg")
        names += ("momentum_buffer",) if group["momentum"] > 0 else ()
        return names + (("grad_avg",) if group["centered"] else ())

    def _update(self, p, state, group, work):
        state["step"] += 1
        rmsprop_update(p.data, p.grad, state["square_avg"], state.get("grad_avg"),
                       state.get("momentum_buffer"), lr=group["lr"], alpha=group["alpha"],
                       eps=group["eps"], weight_decay=group["weight_decay"],
                       momentum=group["momentum"], centered=group["centered"],
                       maximize=group["maximize"], work=work)


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
    >>> w = Parameter(np.array([1.0, -2.0]))
    >>> opt = Adagrad([w], lr=0.1)
    >>> w.grad[:] = [0.5, -1.0]
    >>> opt.step()
    >>> w.data.round(6)
    array([ 0.9, -1.9])
    """

    _state_arrays = ("sum",)
    _state_counters = ("step",)

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _validate(self, hp, where):
        hp = super()._validate(hp, where)
        for name in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            hp[name] = _nonneg(hp[name], _key(where, name))
        hp["maximize"] = _flag(hp["maximize"], _key(where, "maximize"))
        return hp

    def _new_state(self, name, p, group):
        if name == "sum":                          # torch reads the optimizer-wide value
            return np.full_like(p.data, self.defaults["initial_accumulator_value"])
        return super()._new_state(name, p, group)

    def _update(self, p, state, group, work):
        state["step"] += 1
        adagrad_update(p.data, p.grad, state["sum"], state["step"], lr=group["lr"],
                       lr_decay=group["lr_decay"], weight_decay=group["weight_decay"],
                       eps=group["eps"], maximize=group["maximize"], work=work)


# ----------------------------------------------------------------------------- clipping


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
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
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


# ----------------------------------------------------------------------------- schedules


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

    _hyper: tuple[str, ...] = ()                      # hyper-parameters in the state dict
    # torch's private flags, accepted and ignored when loading one of its state dicts
    _ignored = ("_get_lr_called_within_step", "_is_initial")

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, numbers.Integral):
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
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, numbers.Integral) \
                or last_epoch < -1:
            raise ValueError(f"state_dict['last_epoch'] must be an int >= -1, got {last_epoch!r}")
        step_count = _count(state_dict["_step_count"], "state_dict['_step_count']")
        hyper = self._check_hyper({name: state_dict[name] for name in self._hyper})
        for name, value in hyper.items():
            setattr(self, name, value)
        self.base_lrs, self._last_lr = lists["base_lrs"], lists["_last_lr"]
        self.last_epoch, self._step_count = int(last_epoch), step_count

    def _check_hyper(self, hp: dict[str, Any]) -> dict[str, Any]:
        return hp

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

    _hyper = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        hp = self._check_hyper(dict(step_size=step_size, gamma=gamma))
        self.step_size, self.gamma = hp["step_size"], hp["gamma"]
        super().__init__(optimizer, last_epoch)

    def _check_hyper(self, hp):
        return dict(step_size=positive_int(hp["step_size"], "step_size"),
                    gamma=_nonneg(hp["gamma"], "gamma"))

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

    _hyper = ("gamma",)

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = self._check_hyper(dict(gamma=gamma))["gamma"]
        super().__init__(optimizer, last_epoch)

    def _check_hyper(self, hp):
        return dict(gamma=_nonneg(hp["gamma"], "gamma"))

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

    _hyper = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        hp = self._check_hyper(dict(T_max=T_max, eta_min=eta_min))
        self.T_max, self.eta_min = hp["T_max"], hp["eta_min"]
        super().__init__(optimizer, last_epoch)

    def _check_hyper(self, hp):
        return dict(T_max=positive_int(hp["T_max"], "T_max"),
                    eta_min=_nonneg(hp["eta_min"], "eta_min"))

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
