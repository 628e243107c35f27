"""Parameters and the minimal module protocol shared by cells, layers and heads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import numpy as np

__all__ = ["Parameter", "Module"]

_M = TypeVar("_M", bound="Module")

# the writer of model files, fastrnn.io.save: io builds every kind of module when it reads
# a file, so it sits above them all and hands its writer down when it is imported
_writers: list[Callable[..., None]] = []


def register_writer(save: Callable[..., None]) -> None:
    """Make ``save(module, path, optimizer, extra)`` the writer of :meth:`Module.save`."""
    _writers[:] = [save]


class Parameter:
    """A trainable array and its gradient.

    ``data`` and ``grad`` are C-contiguous numpy arrays of one shape and dtype.  Backward
    passes *accumulate* into ``grad``; :meth:`zero_grad` fills it with zeros in place, so
    references to it (an optimizer's, say) stay valid.

    >>> import numpy as np
    >>> from fastrnn import Parameter
    >>> p = Parameter(np.ones((2, 3), np.float32))
    >>> p
    Parameter(shape=(2, 3), dtype=float32)
    >>> p.grad += 1.0
    >>> p.zero_grad()
    >>> float(p.grad.sum())
    0.0

    A pickle holds ``data`` only: unpickled, ``grad`` is zeros (so a model pickles to
    about the size of its weights, which is what Dask, Ray and multiprocessing ship
    between processes; protocol 5 sends the array out of band).  ``copy.copy`` and
    ``copy.deepcopy`` keep ``grad``.
    """

    __slots__ = ("_data", "_grad")

    def __init__(self, data: np.ndarray):
        self._data = np.ascontiguousarray(data)
        self._grad = np.zeros_like(self._data)

    # ``data`` and ``grad`` may be replaced, by arrays of the same shape and a castable
    # dtype: the kernels, the optimizers and save rely on both matching
    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self._data = self._like(value, "data")

    @property
    def grad(self) -> np.ndarray:
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray) -> None:
        self._grad = self._like(value, "grad")

    def _like(self, value, name: str) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise TypeError(f"Parameter.{name} must be a numpy array, got "
                            f"{type(value).__name__}")
        if value.shape != self._data.shape:
            raise ValueError(f"Parameter.{name} must have shape {self._data.shape}, got "
                             f"{value.shape}")
        if not np.can_cast(value.dtype, self._data.dtype, casting="same_kind"):
            raise TypeError(f"Parameter.{name} has dtype {value.dtype}, which cannot be "
                            f"cast to {self._data.dtype}")
        return np.ascontiguousarray(value, dtype=self._data.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad.fill(0)

    def __getstate__(self) -> dict[str, np.ndarray]:
        return {"data": self._data}

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            # the slots, as pickled before Parameter had __getstate__ (0.1.0)
            state = {"data": state[1].get("_data")}
        data = state.get("data") if isinstance(state, dict) else None
        if not isinstance(data, np.ndarray):
            raise TypeError(f"a Parameter's pickled state holds its data array, got "
                            f"{type(data).__name__}")
        self._data = np.ascontiguousarray(data)
        self._grad = np.zeros_like(self._data)

    def __copy__(self) -> Parameter:
        new = type(self).__new__(type(self))
        new._data, new._grad = self._data, self._grad
        return new

    def __deepcopy__(self, memo: dict) -> Parameter:
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new._data, new._grad = self._data.copy(), self._grad.copy()
        return new

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base of everything that owns parameters.

    Subclasses register parameters with :meth:`_register` (in a fixed order, which is the
    order of :meth:`named_parameters`) and sub-modules with :meth:`_add_module`.

    Assigning to a name that is a parameter (``layer.weight_ih_l0 = ...``) or a
    sub-module (``model.head = ...``) replaces it everywhere (forward, optimizers made
    afterwards, save); it takes a :class:`Parameter` of the same shape and dtype, or a
    Module, and anything else raises ``TypeError``.  A new attribute holding a
    Parameter registers it, as in PyTorch.  Registered parameters and sub-modules are
    also attributes: ``layer.weight_ih_l0`` is the Parameter.

    >>> import fastrnn
    >>> layer = fastrnn.GRU(3, 4, seed=0)
    >>> [name for name, p in layer.named_parameters()]
    ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0']
    >>> layer.count_params()
    108
    >>> layer.load_state_dict(layer.state_dict())       # names, shapes and dtypes checked
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_modules", {})
        self._params: dict[str, Parameter]
        self._modules: dict[str, Module]

    def __setattr__(self, name: str, value) -> None:
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            old = params[name]
            if not isinstance(value, Parameter):
                raise TypeError(f"cannot assign {type(value).__name__} to the parameter "
                                f"{name!r} of {type(self).__name__}: assign a "
                                f"fastrnn.Parameter of shape {old.shape}, or write into it "
                                f"({name}.data[...] = array, or load_state_dict)")
            if value.shape != old.shape or value.dtype != old.dtype:
                raise ValueError(f"the parameter {name!r} of {type(self).__name__} must "
                                 f"keep its shape {old.shape} and dtype {old.dtype}, got "
                                 f"{value.shape} {value.dtype}")
            params[name] = value
        elif params is not None and isinstance(value, Parameter):
            params[name] = value
        modules = self.__dict__.get("_modules")
        if modules is not None and name in modules:
            if not isinstance(value, Module):
                raise TypeError(f"cannot assign {type(value).__name__} to the sub-module "
                                f"{name!r} of {type(self).__name__}: assign a Module")
            modules[name] = value
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # only called when normal lookup fails: the registered parameters by name
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _register(self, name: str, data: np.ndarray) -> Parameter:
        p = Parameter(data)
        self._params[name] = p
        return p

    def _add_module(self, name: str, module: _M) -> _M:
        self._modules[name] = module
        return module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(name, Parameter)`` pairs; sub-module names are joined with a dot."""
        for name, p in self._params.items():
            yield prefix + name, p
        for mname, m in self._modules.items():
            yield from m.named_parameters(prefix + mname + ".")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def count_params(self) -> int:
        """The number of parameter values, all parameters together (Keras's name)."""
        return sum(p.data.size for p in self.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter array, by name."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict: Mapping[str, np.ndarray]) -> None:
        """Copy arrays into the parameters, in place.

        Every name must match, every shape must be equal and every dtype castable
        ('same_kind', e.g. float64 into float32).  Everything is checked before anything
        is written, so a failed load changes nothing.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array, "
                            f"got {type(state_dict).__name__}")
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if missing or unexpected:
            raise ValueError(f"state_dict does not match {type(self).__name__}: "
                             f"missing keys {missing}, unexpected keys {unexpected}")
        arrays = {}
        for name, p in params.items():
            a = np.asarray(state_dict[name])
            if a.shape != p.shape:
                raise ValueError(f"state_dict[{name!r}] must have shape {p.shape}, "
                                 f"got {a.shape}")
            if not np.can_cast(a.dtype, p.dtype, casting="same_kind"):
                raise TypeError(f"state_dict[{name!r}] has dtype {a.dtype}, which cannot "
                                f"be cast to {p.dtype}")
            if not p.data.flags.writeable:
                raise TypeError(f"parameter {name!r} is read-only (a quantized copy is a "
                                f"frozen snapshot: fastrnn.dequantize() it, then load)")
            arrays[name] = a
        for name, a in arrays.items():
            params[name].data[...] = a

    def save(self, path, optimizer=None, extra: dict | None = None) -> None:
        """Write this model or module (and ``optimizer``'s state, and ``extra`` JSON) to
        ``path``: ``fastrnn.save(self, path, optimizer, extra)``, read back by
        ``fastrnn.load(path)``.

        >>> import fastrnn
        >>> fastrnn.GRU(3, 4, seed=0).save("gru.npz")
        >>> fastrnn.load("gru.npz")
        GRU(3, 4, dtype=float32)
        """
        _writers[0](self, path, optimizer, extra)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""
