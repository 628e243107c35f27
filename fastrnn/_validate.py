"""Input checks shared by every public entry point: clear errors before any kernel runs."""

from __future__ import annotations

import math
import numbers
import os
import sys
import types
import warnings

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype, name: str = "dtype") -> np.dtype:
    """The floating dtype a module computes in: float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be numpy.float32 or numpy.float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be numpy.float32 or numpy.float64, got {dt}")
    return dt


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def flag(value, name: str) -> bool:
    """A bool argument: ``True``/``False`` (or numpy's), never a truthy string or number."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def probability(value, name: str, closed: bool = False) -> float:
    """A float in [0, 1), or in [0, 1] when ``closed``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and 0 <= v and (v <= 1 if closed else v < 1)):
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value}")
    return v


# The kernels and BLAS take row counts and widths as C ints.
INDEX_MAX = 2**31 - 1


def kernel_sizes(name: str, **sizes: int) -> None:
    """Refuse sizes the kernels cannot index (``rows=T*B``, ``width=G*H``, ...), before
    anything is allocated for them."""
    for what, value in sizes.items():
        if value > INDEX_MAX:
            raise ValueError(f"{name}: {what} = {value} is more than the kernels can index "
                             f"(2**31 - 1); split the batch or the sequences")


def all_finite(a: np.ndarray, name: str, lengths: np.ndarray | None = None) -> None:
    """Refuse nan and inf in a sample-first array (N, T, ...) or (N, ...), counting them and
    naming the first bad sample; with ``lengths`` only the valid steps t < lengths[n] count
    (padding may hold anything, the layers never read it)."""
    if a.dtype.kind != "f":
        return
    ok = np.isfinite(a)
    if ok.all():
        return
    if lengths is not None and a.ndim >= 2:
        valid = np.arange(a.shape[1])[None, :] < lengths[:, None]
        ok |= ~valid.reshape(valid.shape + (1,) * (a.ndim - 2))
        if ok.all():
            return
    index = tuple(int(i) for i in np.argwhere(~ok)[0])
    count = int(np.count_nonzero(~ok))
    raise ValueError(f"{name} holds {count} nan or inf value{'s' if count > 1 else ''}: the "
                     f"first is {name}[{', '.join(map(str, index))}] = {a[index]} in sample "
                     f"{index[0]}; drop or repair such samples (padding past lengths may "
                     f"hold anything)")


_RAGGED = ("for sequences of different lengths, x, lengths = "
           "fastrnn.data.pad_sequences(sequences) pads them into one array and gives their "
           "lengths (pass lengths= too)")


def as_array(x, name: str) -> np.ndarray:
    """``np.asarray(x)``, with the error for a ragged batch (sequences of different
    lengths, which numpy calls an inhomogeneous shape) naming the function that pads it."""
    try:
        a = np.asarray(x)
    except ValueError as err:
        if "inhomogeneous" in str(err):
            raise ValueError(f"{name} must be a rectangular array of numbers, got rows of "
                             f"different lengths: {_RAGGED}") from None
        raise ValueError(f"{name} must be a rectangular array of numbers: {err}") from None
    if a.dtype == object and a.size and isinstance(a.flat[0], (np.ndarray, list, tuple)):
        raise TypeError(f"{name} is an array of arrays (dtype object), as rows of "
                        f"different lengths make: {_RAGGED}")
    return a


def float_array(x, name: str, dtype: np.dtype, ndim: int | tuple[int, ...],
                contiguous: bool = True) -> np.ndarray:
    """``x`` as a C-contiguous array of ``dtype`` with the given rank.

    Integer, boolean and other floating inputs are cast; complex, object, string and
    other inputs are refused.  The result never shares memory with ``x`` unless it already
    was a C-contiguous array of ``dtype`` (callers must not write into it).  With
    ``contiguous=False`` an array of ``dtype`` is returned as it is, whatever its strides
    (for a caller that copies it anyway, into another layout).
    """
    if type(x) is np.ndarray and x.dtype == dtype and \
            (x.flags.c_contiguous or not contiguous) and \
            x.ndim == (ndim if isinstance(ndim, int) else x.ndim) and \
            (isinstance(ndim, int) or x.ndim in ndim):
        return x                                   # the common case, checked cheaply
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    a = as_array(x, name)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got {a.ndim}-D with shape {a.shape}")
    if not contiguous:
        return a.astype(dtype, copy=False)       # a cast keeps the strides' order
    return np.ascontiguousarray(a, dtype=dtype)


def check_shape(a: np.ndarray, name: str, expected: tuple[int, ...]) -> None:
    if a.shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {a.shape}")


def lengths_array(lengths, batch: int, steps: int, name: str = "lengths") -> np.ndarray:
    """``lengths`` as an int64 array (B,) with values in [1, T]."""
    a = np.asarray(lengths)
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},) (one length per batch row), "
                         f"got {a.shape}")
    if batch and (a.min() < 1 or a.max() > steps):
        raise ValueError(f"{name} must lie in [1, {steps}] (the number of time steps), "
                         f"got values in [{a.min()}, {a.max()}]")
    return a.astype(np.int64, copy=False)


class PaddingWarning(UserWarning):
    """A batch given without ``lengths`` whose sequences look padded at their ends: the
    padding is then read as data.  Pass ``lengths=`` (to skip the padding, or
    ``numpy.full(N, T)`` to say every step is data), or filter the warning:
    ``warnings.filterwarnings("ignore", category=fastrnn.PaddingWarning)``.

    >>> import numpy as np, fastrnn
    >>> x, lengths = fastrnn.data.pad_sequences([np.ones((n, 2)) for n in (12, 3, 4, 5)])
    >>> model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=4,
    ...                                     output_size=2, head="many_to_one", seed=0)
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = model.predict(x)                        # no lengths: padding read as data
    >>> caught[0].category.__name__
    'PaddingWarning'
    >>> _ = model.predict(x, lengths)                   # the padding skipped: no warning
    """


#: how much of a batch must look padded, and how long its padding, before it is said
PADDING_ROWS = 0.25             # of the sequences end in a run of one constant step
PADDING_STEPS = 0.25            # of the time steps (and at least MIN_PADDING_STEPS)
MIN_PADDING_STEPS = 3
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside fastrnn (the user's call)."""
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def warn_if_padded(x: np.ndarray, name: str = "x") -> None:
    """Warn (:class:`PaddingWarning`) when a batch (N, T, ...) given without lengths is
    evidently padded at the end: a quarter of its sequences or more (at least two) end in a
    run of one constant step ``v`` (every feature ``v``: all zeros, say) over a quarter of
    the steps or more (at least 3), runs of different lengths, while other sequences do not
    end in ``v`` at all -- what padding sequences of different lengths to the longest gives, and
    what ordinary data (noisy values, images whose last rows are all blank in every
    sample, fixed layouts) does not.  Reads the last step of every sequence, and the
    whole of only those that end in ``v``."""
    if x.ndim < 2 or x.shape[0] < 2 or x.shape[1] < 2 * MIN_PADDING_STEPS:
        return
    N, T = x.shape[:2]
    last = x[:, -1].reshape(N, -1)
    constant = np.flatnonzero((last == last[:, :1]).all(axis=1))
    if constant.size < PADDING_ROWS * N:
        return
    values, counts = np.unique(last[constant, 0], return_counts=True)
    v = values[counts.argmax()]
    rows = constant[last[constant, 0] == v]
    if rows.size < PADDING_ROWS * N or rows.size == N:
        return                                  # every sequence ends in v: not ragged
    same = (x[rows].reshape(rows.size, T, -1) == v).all(axis=2)[:, ::-1]
    runs = np.where(same.all(axis=1), T, same.argmin(axis=1))      # trailing steps of v
    runs = runs[runs >= max(MIN_PADDING_STEPS, math.ceil(PADDING_STEPS * T))]
    if runs.size < max(2, PADDING_ROWS * N) or (runs.size >= 3 and np.unique(runs).size < 2):
        return                                  # (one row alone can be chance)
    warnings.warn(f"{name} looks padded and no lengths were given, so the padding is read "
                  f"as data: {runs.size} of its {N} sequences end in {runs.min()} to "
                  f"{runs.max()} steps of {v.item():g}, others do not. Pass lengths= "
                  f"(fastrnn.data.pad_sequences returns them) to skip the padding, or "
                  f"lengths=numpy.full({N}, {T}) if those steps are data (or filter "
                  f"fastrnn.PaddingWarning)", PaddingWarning, stacklevel=_caller_stacklevel())


def step_mask(lengths: np.ndarray | None, steps: int) -> np.ndarray | None:
    """(B, T) True where t < lengths[b] (the valid steps of checked ``lengths``), or None
    without lengths."""
    if lengths is None:
        return None
    return np.arange(steps)[None, :] < lengths[:, None]


def seed_value(seed, name: str = "seed"):
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"{name} must be a non-negative int or None, got {seed}")
        return seed
    raise TypeError(f"{name} must be an int or None, got {type(seed).__name__}")


def projection_size(value, hidden_size) -> int:
    """An LSTM's ``proj_size``: an int in [0, hidden_size) (0: no projection), as PyTorch
    takes it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"proj_size must be an int, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < hidden_size:
        raise ValueError(f"proj_size must be in [0, hidden_size={hidden_size}) "
                         f"(0: no projection), got {value}")
    return value


def state_arrays(state, lstm: bool, shape: tuple[int, ...], dtype: np.dtype, name: str,
                 c_shape: tuple[int, ...] | None = None):
    """Fresh C-contiguous copies ``(h, c)`` of a recurrent state (``c`` is None unless
    ``lstm``; of ``c_shape`` when it differs from h's, as with an LSTM's projection); zeros
    where ``state`` is None.  The kernels update these in place."""
    c_shape = c_shape or shape
    if state is None:
        return np.zeros(shape, dtype), (np.zeros(c_shape, dtype) if lstm else None)
    if lstm:
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name} must be a tuple (h, c) for an LSTM, "
                            f"got {type(state).__name__}")
        parts = [(state[0], f"{name}[0] (h)"), (state[1], f"{name}[1] (c)")]
    else:
        if isinstance(state, (tuple, list)):
            raise TypeError(f"{name} must be one array (h), not a {type(state).__name__}")
        parts = [(state, name)]
    out = []
    for (value, label), want in zip(parts, (shape, c_shape)):
        if type(value) is np.ndarray and value.dtype == dtype and value.shape == want:
            out.append(value.copy(order="C"))     # the common case, checked cheaply
            continue
        a = float_array(value, label, dtype, len(want))
        check_shape(a, label, want)
        out.append(a.copy())
    return out[0], (out[1] if lstm else None)
