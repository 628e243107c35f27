"""A user's data files, read and checked for the ``fastrnn`` command: arrays from a
``.npz`` or ``.npy`` (never unpickled, memory bounded by the file's size, through
:mod:`fastrnn.io`'s readers), from a ``.csv`` table (:func:`read_csv`) and UTF-8 text.

Every mistake in a file raises :class:`DataError` (a ValueError) with a one-line message
that names the file and, where it helps, the option of the command that would fix it; the
command reports it as it is.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile

import numpy as np

from .._validate import all_finite
from ..io import ArrayFileError, npz_names, open_regular_file, read_npy, read_npz
from . import pad_sequences

#: the columns of a CSV table that are not features (see :func:`read_csv`)
CSV_SEQUENCE, CSV_TARGET, CSV_STEP_TARGET = "sequence", "y", "y_step"


class DataError(ValueError):
    """A mistake in a user's data (a missing or malformed file, arrays of the wrong shape
    or kind, non-finite numbers): the message is one line for the user."""


def describe(a: np.ndarray) -> str:
    return f"{a.dtype} array of shape {a.shape}"


def read_arrays(path: str, what: str = "data",
                names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a .npy (as ``x``), .npz (only those of ``names`` that it holds, when
    given) or .csv file (:func:`read_csv`); never unpickling; memory bounded by the
    file's size."""
    if path.lower().endswith(".csv"):
        return read_csv(path)
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


def _number(text: str, path: str, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}, line {line}: column {column!r} holds {text!r}, not a "
                        f"number") from None


def read_csv(path: str) -> dict[str, np.ndarray]:
    """The sequences of a CSV table as arrays ``x`` (N, T, F), ``lengths`` (N,) when the
    sequences differ in length, ``y`` (N,) or (N, T) when the table has targets, and
    ``sequence`` (N,) their names when it names them.

    The first row names the columns; each further row is one time step.  The column
    ``sequence`` says which sequence a step belongs to (its consecutive rows with one
    value, in file order; without it the whole table is one sequence); ``y`` holds one
    target per sequence (the same on each of its rows, or on its first row only), or
    ``y_step`` one per step; every other column is a feature, a number.  Sequences of
    different lengths are padded after their end, as
    :func:`fastrnn.data.pad_sequences` pads them.
    """
    text = read_text(path)
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not rows[0]:
        raise DataError(f"{path} is empty: a CSV table needs a header row naming its "
                        f"columns")
    header = [name.strip() for name in rows[0]]
    if len(set(header)) != len(header) or "" in header:
        raise DataError(f"{path}: the header row must name each column once, got {header}")
    if CSV_TARGET in header and CSV_STEP_TARGET in header:
        raise DataError(f"{path}: give y (one target per sequence) or y_step (one per "
                        f"step), not both")
    features = [i for i, name in enumerate(header)
                if name not in (CSV_SEQUENCE, CSV_TARGET, CSV_STEP_TARGET)]
    if not features:
        raise DataError(f"{path}: no feature columns (the header names only {header})")
    where = {name: header.index(name) for name in (CSV_SEQUENCE, CSV_TARGET,
                                                   CSV_STEP_TARGET) if name in header}
    ids: list[str] = []
    steps: list[list[list[float]]] = []
    targets: list[list[float | None]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue                                    # a blank line
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, the header names "
                            f"{len(header)}")
        key = row[where[CSV_SEQUENCE]].strip() if CSV_SEQUENCE in where else ""
        if not ids or key != ids[-1]:
            if key in ids:
                raise DataError(f"{path}, line {line}: sequence {key!r} continues after "
                                f"another one; keep each sequence's rows together")
            ids.append(key)
            steps.append([])
            targets.append([])
        steps[-1].append([_number(row[i], path, line, header[i]) for i in features])
        for name in (CSV_TARGET, CSV_STEP_TARGET):
            if name in where:
                cell = row[where[name]].strip()
                targets[-1].append(None if cell == "" else _number(cell, path, line, name))
    if not steps:
        raise DataError(f"{path} has a header and no rows")
    x, lengths = pad_sequences([np.array(s) for s in steps], dtype=np.float64)
    out = {"x": x}
    if CSV_SEQUENCE in where:
        out[CSV_SEQUENCE] = np.array(ids)               # the names, for predict's output
    if lengths.min() != lengths.max():
        out["lengths"] = lengths
    if CSV_STEP_TARGET in where:
        if any(v is None for t in targets for v in t):
            raise DataError(f"{path}: y_step needs a value on every row (one target per "
                            f"step)")
        out["y"] = pad_sequences([np.array(t, dtype=np.float64) for t in targets])[0]
    elif CSV_TARGET in where:
        y = []
        for key, t in zip(ids, targets):
            given = {v for v in t if v is not None}
            if len(given) != 1 or (len(t) > 1 and t[0] is None):
                raise DataError(f"{path}: sequence {key!r} has y {sorted(given) or 'empty'};"
                                f" y is one target per sequence, the same on each of its "
                                f"rows or on its first row only (y_step: one per step)")
            y.append(given.pop())
        out["y"] = np.array(y)
    return out


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
        if path.lower().endswith(".csv"):
            raise DataError(f"{path} has no target column: name it y (one target per "
                            f"sequence) or y_step (one per step)")
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
