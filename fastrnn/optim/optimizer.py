"""The base class of the optimizers (parameter groups, per-parameter state, state
dicts), its scratch buffers, and the checks of hyper-parameters shared by the
optimizers, the clipping functions and the schedules."""

from __future__ import annotations

import math
import numbers
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..module import Parameter


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


def _is_real(value) -> bool:
    """``value`` is a real number (numpy's too), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value) -> bool:
    """``value`` is an integer (numpy's too), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _real(value, name: str) -> float:
    if not _is_real(value):
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
    if not _is_real(value):
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


class Optimizer:
    """Base of the optimizers: parameter groups, per-parameter state, state dicts.

    ``params`` is an iterable of :class:`~fastrnn.Parameter`, or of dicts each defining a
    parameter group (``{"params": [...], "lr": ...}``); a group's missing hyper-parameters
    take the values in ``defaults``.  Subclasses define ``_checks`` (the check of each
    hyper-parameter; ``_validate`` for a rule across them), their state entries and
    ``_update`` (one call of their update function).

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

    #: the check of each hyper-parameter, ``check(value, name) -> value``, in this order
    _checks: Mapping[str, Callable[[Any, str], Any]] = {"lr": _nonneg}
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
        for name, check in self._checks.items():
            if name in hp:
                hp[name] = check(hp[name], _key(where, name))
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
            s: dict[str, Any] = {}
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
