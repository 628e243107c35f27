"""A user's data files, read and checked for the ``fastrnn`` command: arrays from a
``.npz`` or ``.npy`` (never unpickled, memory bounded by the file's size, through
:mod:`fastrnn.io`'s readers) and UTF-8 text.

Every mistake in a file raises :class:`DataError` (a ValueError) with a one-line message
that names the file and, where it helps, the option of the command that would fix it; the
command reports it as it is.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from .._validate import all_finite
from ..io import ArrayFileError, npz_names, open_regular_file, read_npy, read_npz


class DataError(ValueError):
    """A mistake in a user's data (a missing or malformed file, arrays of the wrong shape
    or kind, non-finite numbers): the message is one line for the user."""


def describe(a: np.ndarray) -> str:
    return f"{a.dtype} array of shape {a.shape}"


def read_arrays(path: str, what: str = "data",
                names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a .npy (as ``x``) or .npz file (only those of ``names`` that it
    holds, when given); never unpickling; memory bounded by the file's size."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path} is a directory, not {'an' if what[0] in 'aeiou' else 'a'} "
                        f"{what} file")
    npy = path.lower().endswith(".npy")
    try:
        with open_regular_file(path) as f:
            magic = f.read(6)
        if not npy and not zipfile.is_zipfile(path):
            if magic == b"\x93NUMPY":
                npy = True
            else:
                raise DataError(f"{path} is not an .npz file (not a zip archive of .npy "
                                f"arrays)")
        if npy:
            if magic != b"\x93NUMPY":
                raise DataError(f"{path} is not a .npy file (no NumPy header)")
            return {"x": read_npy(path)}
        return read_npz(path, names)
    except DataError:
        raise
    except ValueError as err:                  # ArrayFileError among them
        if "pickle" in str(err) or "Python objects" in str(err):
            raise DataError(f"{path} holds Python objects (pickled data), which fastrnn "
                            f"does not read; save plain numeric arrays") from None
        raise DataError(f"{path} cannot be read as {'a .npy' if npy else 'an .npz'} file: "
                        f"{err}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{path} cannot be read as {'a .npy' if npy else 'an .npz'} file: "
                        f"{err}") from None


def read_text(path: str) -> str:
    """The UTF-8 text of ``path`` (a regular file: a FIFO is refused, not waited on)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        with open_regular_file(path) as f:
            return f.read().decode("utf-8")
    except ArrayFileError as err:
        raise DataError(str(err)) from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") \
            from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a text file") from None


def refuse_nonfinite(a: np.ndarray, name: str, where: str,
                     lengths: np.ndarray | None = None) -> None:
    """:func:`fastrnn._validate.all_finite`'s check (the models make it too), made before
    any training so that the message names the file ``where``: a nan or an inf in ``a``
    (sample-first) is refused; past ``lengths``, in the padding, it may be."""
    try:
        all_finite(a, name, lengths)
    except ValueError as err:
        raise DataError(f"{where}: {err}") from None


def class_labels(y: np.ndarray, valid: np.ndarray, where: str) -> np.ndarray:
    """Class labels as int64: integers as they are, floats if they are whole numbers.

    ``valid`` (y's shape) marks the entries that count, those within each sequence's
    length; the others become 0."""
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    v = y[valid]
    bad = np.flatnonzero(~np.isfinite(v) | (v != np.round(v)))
    if bad.size:
        sample = int(np.nonzero(valid)[0][bad[0]])
        raise DataError(f"{where}: --classify needs y to be class labels, whole numbers; "
                        f"sample {sample} has {v[bad[0]]:g} (give --regress to fit values)")
    if v.size and (v.min() < 0 or v.max() > 2 ** 31):
        raise DataError(f"{where}: class labels y must lie in [0, 2**31], got values in "
                        f"[{v.min():g}, {v.max():g}]")
    out = np.zeros(y.shape, np.int64)
    out[valid] = v.astype(np.int64)
    return out


def check_lengths(lengths: np.ndarray | None, n: int, t: int,
                  path: str) -> np.ndarray | None:
    """``lengths`` as int64 if they are ``n`` integers in [1, ``t``]; None stays None."""
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu" or lengths.shape != (n,):
        raise DataError(f"{path}: lengths must be {n} integers, one per sequence, got "
                        f"{describe(lengths)}")
    if n and (lengths.min() < 1 or lengths.max() > t):
        raise DataError(f"{path}: lengths must lie in [1, {t}] (the number of steps), got "
                        f"values in [{lengths.min()}, {lengths.max()}]")
    return lengths.astype(np.int64)


def arrays_xy(arrays: dict[str, np.ndarray],
              path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """x, y, lengths of a user's .npz, checked; x as floats (N, T, I) or tokens (N, T)."""
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        held = sorted(npz_names(path)) if zipfile.is_zipfile(path) else sorted(arrays)
        raise DataError(f"{path} has no array {' or '.join(missing)} (it holds "
                        f"{held or 'no arrays'}; expected x, y and optionally lengths)")
    x, y = arrays["x"], arrays["y"]
    for name, a in (("x", x), ("y", y)):
        if a.dtype.kind not in "fiub":
            raise DataError(f"{path}: {name} must hold numbers, got {describe(a)}")
    if x.ndim == 2 and x.dtype.kind == "f":
        x = x[..., None]
    if x.ndim not in (2, 3) or x.shape[0] == 0 or x.shape[1] == 0 or \
            (x.ndim == 3 and x.shape[2] == 0):
        raise DataError(f"{path}: x must be sequences (N, T, features) or tokens (N, T), "
                        f"got {describe(arrays['x'])}")
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: y must have one entry per sequence ({x.shape[0]}), got "
                        f"{describe(y)}")
    lengths = check_lengths(arrays.get("lengths"), x.shape[0], x.shape[1], path)
    refuse_nonfinite(x, "x", path, lengths)
    per_step = y.ndim >= 2 and y.shape[:2] == x.shape[:2]
    refuse_nonfinite(y, "y", path, lengths if per_step else None)
    return x, y, lengths
