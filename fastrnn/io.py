"""Saving and loading models without pickle.

A model file is an uncompressed ``.npz`` (a zip of ``.npy`` arrays) holding:

* ``__header__``: UTF-8 JSON as a uint8 array: the format name and version, the fastrnn
  version, the model's architecture (``config()``), and for every array its shape, dtype
  and SHA-256 digest; the optimizer's class, hyper-parameters and scalar state; any
  ``extra`` JSON the caller gave (epoch, metrics...);
* ``param/<name>``: each parameter array, by its ``named_parameters()`` name;
* ``optim/<index>/<key>``: the optimizer's per-parameter state arrays (optional).

Reading never unpickles (so an untrusted file cannot run code) and keeps its memory
bounded by the file's own size:

* only regular files are opened (a FIFO, ``/dev/zero`` or another device is refused
  without reading it);
* a zip announcing more than ``MAX_MEMBERS`` members, or a central directory of more
  than ``MAX_DIRECTORY_BYTES``, is refused from its end record, before it is listed;
* the arrays the header declares may hold no more bytes than the file; their names,
  shapes and dtypes must be exactly those of the declared architecture, which is checked
  before anything is built; each member's own ``.npy`` header must agree, and only the
  declared bytes are read (into the final array, no intermediate copy);
* each digest is verified, so an altered file is refused.

Errors: ``TypeError`` for a path that is not ``str``, ``bytes`` or ``os.PathLike``;
``OSError`` when the path cannot be opened (``FileNotFoundError``, ``IsADirectoryError``,
``PermissionError``); :class:`ModelFileError` (a ``ValueError``) for anything that is not
a regular file holding a readable fastrnn model.

Saving goes through :func:`atomic_write`: a uniquely named temporary file beside the
target, synced and renamed over it, so a crash never leaves a half-written file and
concurrent writers never see each other's temporary files.  :func:`read_npz` and
:func:`read_npy` read other users' array files with the same guards.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import socket
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

import numpy as np

from . import optim
from ._kinds import KINDS, parameter_shapes
from ._version import __version__
from ._validate import as_dtype, flag, positive_int
from .models import Seq2Seq, SequenceModel
from .module import Module

__all__ = ["save", "load", "load_checkpoint", "ModelFileError", "ArrayFileError",
           "atomic_write", "read_npz", "read_npy", "npz_names", "zip_names",
           "open_regular_file", "MAX_MEMBERS", "MAX_DIRECTORY_BYTES", "NPZ_EXPANSION"]

FORMAT = "fastrnn-model"
FORMAT_VERSION = 1
_HEADER = "__header__"
_MAX_HEADER_BYTES = 16 << 20
#: the most members a zip may announce before it is refused unlisted (zipfile keeps an
#: object of about 300 bytes per member); a model file has one per array plus the header,
#: so this allows some 400 bidirectional LSTM layers with Adam's state
MAX_MEMBERS = 10_000
#: the largest central directory (46 bytes and the name per member) read before listing
MAX_DIRECTORY_BYTES = 1 << 20
#: how much larger than their file the arrays :func:`read_npz` reads may be by default
#: (``numpy.savez_compressed`` data); a stored (uncompressed) member is never larger
NPZ_EXPANSION = 100
_CHUNK = 1 << 20
_EOCD, _EOCD_SIZE = b"PK\x05\x06", 22
_ZIP64_LOCATOR, _ZIP64_LOCATOR_SIZE = b"PK\x06\x07", 20
_ZIP64_EOCD, _ZIP64_EOCD_SIZE = b"PK\x06\x06", 56
# what zipfile raises for a damaged archive: besides BadZipFile, a flipped compression
# method gives NotImplementedError, a flipped "encrypted" flag RuntimeError, a damaged
# deflate stream zlib.error
_ZIP_ERRORS = (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError,
               RuntimeError, zlib.error)
_PATH_TYPES = (str, bytes, os.PathLike)
_MODELS: dict[str, type[SequenceModel] | type[Seq2Seq]] = {"SequenceModel": SequenceModel,
                                                            "Seq2Seq": Seq2Seq}


class ModelFileError(ValueError):
    """A file that is not a readable fastrnn model: not a regular file, truncated,
    altered, foreign or of a newer format version.

    >>> import fastrnn
    >>> with open("not-a-model.npz", "wb") as f:
    ...     _ = f.write(b"hello")
    >>> try:
    ...     fastrnn.load("not-a-model.npz")
    ... except fastrnn.ModelFileError:
    ...     print("refused")
    refused
    """


class ArrayFileError(ValueError):
    """An array file (``.npz``, ``.npy``) that :func:`read_npz` or :func:`read_npy`
    refuse: not a regular file, damaged, holding pickled objects, or larger than the
    bounds.

    >>> import os, tempfile, numpy as np
    >>> from fastrnn.io import ArrayFileError, read_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "objects.npz")
    >>> np.savez(path, x=np.array([{"a": 1}], dtype=object))
    >>> try:
    ...     read_npz(path)
    ... except ArrayFileError as err:
    ...     print(str(err).split(": ", 1)[1])
    array 'x' holds Python objects (pickled data), which fastrnn does not read
    """


# ---------------------------------------------------------------------------------- paths


def _fspath(path, name: str = "path") -> str:
    """``path`` as a str (bytes decoded as ``os.fsdecode`` does), or a TypeError naming
    the argument."""
    if not isinstance(path, _PATH_TYPES):
        raise TypeError(f"{name} must be a file path (str, bytes or os.PathLike), got "
                        f"{type(path).__name__}")
    p = os.fspath(path)
    return os.fsdecode(p) if isinstance(p, bytes) else p


def _kind_of(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _refuse_irregular(path: str, mode: int, error: type[Exception],
                      verb: str = "reads") -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(mode):
        raise error(f"{path} is {_kind_of(mode)}, not a regular file; fastrnn {verb} "
                    f"regular files only")


def open_regular_file(path, error: type[Exception] = ArrayFileError):
    """``path`` opened for binary reading if it is a regular file.  A FIFO, a device or a
    socket raises ``error`` (by default :class:`ArrayFileError`, a ValueError) without
    being read or waited on; a directory raises IsADirectoryError, a missing file
    FileNotFoundError.

    >>> import os, tempfile, fastrnn
    >>> try:
    ...     fastrnn.io.open_regular_file(os.devnull)
    ... except ValueError as err:
    ...     print(str(err).split(";")[0])
    /dev/null is a character device, not a regular file
    """
    p = _fspath(path)
    _refuse_irregular(p, os.stat(p).st_mode, error)
    # O_NONBLOCK: were the path swapped for a FIFO since the stat, opening it would wait
    # for a writer; the fstat below then refuses it
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
    try:
        _refuse_irregular(p, os.fstat(fd).st_mode, error)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


# ------------------------------------------------------------------------- atomic writes


def _temporary_prefix(base: str) -> str:
    # the name's own characters stay recognisable, its length stays under NAME_MAX
    return f".{base[:100]}.fastrnn-"


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:             # PermissionError: someone else's live process
        return True
    return True


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Remove the temporary files that earlier writes of ``base`` left behind when their
    process was killed (kill -9, power loss): those named for this host and for a process
    that no longer runs.  A process id reused since is taken for alive (the file stays);
    on other systems than POSIX nothing is removed."""
    if os.name != "posix":
        return
    prefix, host, me = _temporary_prefix(base), _host_tag(), os.getpid()
    try:
        with os.scandir(directory) as entries:
            names = [e.name for e in entries if e.name.startswith(prefix)
                     and e.name.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        parts = name[len(prefix):-len(".tmp")].split("-")
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != me and pid > 0 and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _create_temporary(directory: str, base: str, mode: int) -> tuple[int, str]:
    """A new file beside the target, named ``.<base>.fastrnn-<host>-<pid>-<random>.tmp``
    and created exclusively with ``mode`` (less the umask, applied by the system)."""
    prefix = f"{_temporary_prefix(base)}{_host_tag()}-{os.getpid()}-"
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    for _ in range(100):
        tmp = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; a file system that cannot sync a directory is let be."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new contents to; on leaving the block they
    replace ``path`` at once, so readers see the old file or the whole new one.

    * the temporary file is unique and sits beside the real target (a symlink at
      ``path`` is followed: its target is replaced and the link stays a link);
    * it is synced before the rename, and the directory after it;
    * the replaced file keeps its permission bits; a new file gets those ``open()``
      gives (0o666 less the umask, which is not changed to find out);
    * any exception in the block, KeyboardInterrupt included, removes the temporary file
      and leaves ``path`` as it was; temporary files of the same target left by killed
      processes (``kill -9``) are removed by the next write (POSIX, same host).

    ``path`` must not be a directory (IsADirectoryError) or a device, FIFO or socket
    (ValueError); a missing directory raises FileNotFoundError.

    >>> import os, tempfile
    >>> from fastrnn.io import atomic_write
    >>> path = os.path.join(tempfile.mkdtemp(), "out.bin")
    >>> with atomic_write(path) as f:
    ...     _ = f.write(b"all or nothing")
    >>> open(path, "rb").read()
    b'all or nothing'
    """
    target = os.path.realpath(_fspath(path))
    directory, base = os.path.split(target)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        keep = None
    else:
        _refuse_irregular(target, mode, ValueError, "writes")
        keep = stat.S_IMODE(mode)
    _remove_stale_temporaries(directory, base)
    tmp = None
    try:
        # an existing target's temporary starts private and gets the target's mode before
        # any data goes in; a new file's is created 0o666 for the system to apply the umask
        fd, tmp = _create_temporary(directory, base, 0o600 if keep is not None else 0o666)
        with os.fdopen(fd, "wb") as f:
            if keep is not None:
                if hasattr(os, "fchmod"):
                    os.fchmod(f.fileno(), keep)
                else:
                    os.chmod(tmp, keep)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
        _fsync_directory(directory)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# --------------------------------------------------------------------------------- saving


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()   # no copy of a's bytes


def _entry(a: np.ndarray) -> dict:
    return {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _digest(a)}


def _json_ready(value):
    """Optimizer and log values as JSON: numpy scalars to Python numbers, tuples to lists,
    nan and inf to null (JSON has no such numbers: an inf validation loss is still logged)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check_save_arguments(path, model) -> None:
    if isinstance(path, Module) and isinstance(model, _PATH_TYPES):
        raise TypeError(f"save(path, model, ...) takes the file path first; got a "
                        f"{type(path).__name__} as path and a {type(model).__name__} as "
                        f"model: the arguments look swapped (write "
                        f"fastrnn.save({model!r}, model))")
    _fspath(path)
    if not isinstance(model, (SequenceModel, Seq2Seq)):
        raise TypeError(f"model must be a fastrnn SequenceModel or Seq2Seq, got "
                        f"{type(model).__name__}")


def save(path, model, optimizer=None, extra: dict | None = None) -> None:
    """Write ``model`` (and ``optimizer``'s state, and ``extra`` JSON) to ``path``
    (``str``, ``bytes`` or ``os.PathLike``), atomically (:func:`atomic_write`).

    Raises TypeError for a path or model of the wrong type (and says so when they look
    swapped), ValueError for ``extra`` that is not JSON (nan and inf in it are written as
    null), OSError when the file cannot be written; on any error ``path`` is left as it was.

    >>> import os, tempfile, numpy as np, fastrnn
    >>> m = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4, output_size=2,
    ...                                 seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> fastrnn.save(path, m)
    >>> x = np.ones((1, 5, 3), np.float32)
    >>> bool(np.array_equal(fastrnn.load(path).forward(x), m.forward(x)))
    True
    """
    _check_save_arguments(path, model)
    arrays = {f"param/{name}": p.data for name, p in model.named_parameters()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "fastrnn_version": __version__, "model": model.config(), "optimizer": None,
              "extra": _json_ready(extra) if extra is not None else None}
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict] = {}
        for index, st in sd["state"].items():
            scalars[str(index)] = {}
            for key, value in st.items():
                if isinstance(value, np.ndarray):
                    arrays[f"optim/{index}/{key}"] = value
                else:
                    scalars[str(index)][key] = _json_ready(value)
        header["optimizer"] = {"type": type(optimizer).__name__, "state": scalars,
                               "param_groups": _json_ready(sd["param_groups"])}
    # what load refuses unlisted must not be written (46 bytes, the name and room for a
    # zip64 field per member in the central directory)
    directory_bytes = sum(46 + len(k) + 4 + 28 for k in arrays) + 46 + len(_HEADER) + 4
    if len(arrays) + 1 > MAX_MEMBERS or directory_bytes > MAX_DIRECTORY_BYTES:
        raise ValueError(f"{len(arrays)} arrays are more than a fastrnn model file holds "
                         f"({MAX_MEMBERS - 1} arrays, {MAX_DIRECTORY_BYTES} bytes of names)")
    header["arrays"] = {k: _entry(v) for k, v in arrays.items()}
    try:
        text = json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"extra must be JSON-serialisable with finite numbers: {err}") from None
    with atomic_write(path) as f:
        members = {_HEADER: np.frombuffer(text.encode(), dtype=np.uint8), **arrays}
        np.savez(f, **members)


# ---------------------------------------------------------------------- reading zip files


def _check_zip_directory(f, size: int, path: str, error: type[Exception]) -> None:
    """Refuse, from its end record and before zipfile lists it, a zip that announces more
    than MAX_MEMBERS members or a central directory larger than MAX_DIRECTORY_BYTES
    (zipfile reads that many bytes and makes an object per 46 of them).  The record is
    found as zipfile finds it; a file without one is left to zipfile to refuse."""
    start = max(size - (_EOCD_SIZE + 0xFFFF), 0)
    f.seek(start)
    tail = f.read()
    if tail[-_EOCD_SIZE:-_EOCD_SIZE + 4] == _EOCD and tail[-2:] == b"\0\0":
        at = len(tail) - _EOCD_SIZE
    else:
        at = tail.rfind(_EOCD)
        if at < 0 or len(tail) - at < _EOCD_SIZE:
            return
    count, directory = struct.unpack("<HI", tail[at + 10:at + 16])
    record = start + at
    if record >= _ZIP64_LOCATOR_SIZE + _ZIP64_EOCD_SIZE:
        f.seek(record - _ZIP64_LOCATOR_SIZE)
        if f.read(4) == _ZIP64_LOCATOR:
            f.seek(record - _ZIP64_LOCATOR_SIZE - _ZIP64_EOCD_SIZE)
            rec = f.read(_ZIP64_EOCD_SIZE)
            if rec[:4] == _ZIP64_EOCD:
                count, directory = struct.unpack("<QQ", rec[32:48])
    if count > MAX_MEMBERS or directory > MAX_DIRECTORY_BYTES:
        raise error(f"{path}: the zip lists {count} members in {directory} bytes; fastrnn "
                    f"reads at most {MAX_MEMBERS} members in {MAX_DIRECTORY_BYTES} bytes")
    f.seek(0)


@contextlib.contextmanager
def _open_zip(path: str, error: type[Exception], what: str):
    """``(zipfile, file size)`` of the regular file ``path``, its directory checked."""
    with open_regular_file(path, error) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            _check_zip_directory(f, size, path, error)
            zf = zipfile.ZipFile(f)
        except _ZIP_ERRORS as err:
            if isinstance(err, error):
                raise
            raise error(f"{path} is not {what} (not a readable .npz: {err})") from None
        with zf:
            yield zf, size


def _read_array(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str,
                error: type[Exception], expect: tuple | None = None) -> np.ndarray:
    """One ``.npy`` member, never unpickling.  Its own header must declare ``expect``
    (shape, dtype) if given, and no more bytes than the zip says the member holds; they are
    read in chunks straight into the array, then the member to its end (the CRC check)."""
    if expect is not None:
        nbytes = math.prod(expect[0]) * expect[1].itemsize
        if info.file_size > nbytes + 4096:
            raise error(f"{label} is larger than its header declares")
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype.hasobject:
                raise error(f"{label} holds Python objects (pickled data), which fastrnn "
                            f"does not read")
            if expect is not None and (shape != expect[0] or dtype != expect[1] or fortran):
                raise error(f"{label} is {dtype} {shape}, the header declares "
                            f"{expect[1]} {expect[0]}")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.file_size - f.tell():
                raise error(f"{label} is truncated: its header declares {nbytes} bytes, "
                            f"the member holds {max(info.file_size - f.tell(), 0)}")
            a = np.empty(shape[::-1] if fortran else shape, dtype)
            buf = a.reshape(-1).view(np.uint8)
            done = 0
            while done < nbytes:
                chunk = f.read(min(_CHUNK, nbytes - done))
                if not chunk:
                    raise error(f"{label} is truncated")
                buf[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
                done += len(chunk)
            while f.read(_CHUNK):       # to the end, so that the zip CRC is checked
                pass
    except _ZIP_ERRORS as err:
        if isinstance(err, error):
            raise
        raise error(f"{label} cannot be read: {err}") from None
    return a.T if fortran else a


def _member_key(name: str) -> str:
    return name[:-4] if name.endswith(".npy") else name


def zip_names(path) -> list[str]:
    """The member names of the zip file ``path`` (as ``zipfile.ZipFile.namelist()``), read
    from its directory, which may list at most ``MAX_MEMBERS`` members.  Errors as
    :func:`read_npz`.

    >>> import os, tempfile, numpy as np
    >>> from fastrnn.io import zip_names
    >>> path = os.path.join(tempfile.mkdtemp(), "data.npz")
    >>> np.savez(path, x=np.zeros(3))
    >>> zip_names(path)
    ['x.npy']
    """
    p = _fspath(path)
    with _open_zip(p, ArrayFileError, "a zip file") as (zf, _):
        return zf.namelist()


def npz_names(path) -> list[str]:
    """The names of the arrays in the ``.npz`` file ``path`` (as ``numpy.load`` gives
    them), read from its directory without reading any array.  Errors as
    :func:`read_npz`.

    >>> import os, tempfile, numpy as np
    >>> from fastrnn.io import npz_names
    >>> path = os.path.join(tempfile.mkdtemp(), "data.npz")
    >>> np.savez(path, x=np.zeros(3), y=np.ones(3))
    >>> npz_names(path)
    ['x', 'y']
    """
    p = _fspath(path)
    with _open_zip(p, ArrayFileError, "an .npz file") as (zf, _):
        return list(dict.fromkeys(_member_key(n) for n in zf.namelist()))


def read_npz(path, names: Iterable[str] | None = None, *,
             max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays ``names`` (all of them if None) of the ``.npz`` file ``path``, read
    without pickle and with bounded memory; a name the file lacks is left out of the
    result, and the other members are never read.

    Before reading, the uncompressed sizes the zip declares for the chosen members must
    add up to at most ``max_bytes`` (by default ``NPZ_EXPANSION`` times the file's size:
    a compressed member may be larger than its file, a stored one never is), and each
    member's ``.npy`` header may declare no more bytes than the member holds.

    Raises TypeError for a path of the wrong type, FileNotFoundError,
    IsADirectoryError, PermissionError, and :class:`ArrayFileError` (a ValueError) for
    anything that is not a regular ``.npz`` file of plain arrays within those bounds (a
    FIFO, a device, a truncated or damaged zip, pickled objects, a zip bomb).

    >>> import os, tempfile, numpy as np
    >>> from fastrnn.io import read_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "data.npz")
    >>> np.savez_compressed(path, x=np.zeros((4, 3)), y=np.arange(4), unused=np.ones(9))
    >>> sorted(read_npz(path, ["x", "y", "lengths"]))
    ['x', 'y']
    """
    p = _fspath(path)
    wanted = None if names is None else set(names)
    with _open_zip(p, ArrayFileError, "an .npz file") as (zf, size):
        members = {}
        for info in zf.infolist():
            key = _member_key(info.filename)
            if wanted is None or key in wanted:
                members[key] = info             # a repeated name: the last, as getinfo
        if max_bytes is None:
            limit, bound = NPZ_EXPANSION * size, f"{NPZ_EXPANSION} times the file's size"
        else:
            limit, bound = max_bytes, "max_bytes"
        total = sum(info.file_size for info in members.values())
        if total > limit:
            raise ArrayFileError(f"{p}: the arrays to read declare {total} bytes, more than "
                                 f"{limit} ({bound})")
        return {key: _read_array(zf, info, f"{p}: array {key!r}", ArrayFileError)
                for key, info in members.items()}


def read_npy(path) -> np.ndarray:
    """The array of the ``.npy`` file ``path``, read without pickle; its header may
    declare no more bytes than the file holds (``numpy.load`` allocates what a forged
    header claims before reading).  Errors as :func:`read_npz`.

    >>> import os, tempfile, numpy as np
    >>> from fastrnn.io import read_npy
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(6).reshape(2, 3))
    >>> read_npy(path).shape
    (2, 3)
    """
    p = _fspath(path)
    with open_regular_file(p) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except (ValueError, EOFError) as err:
            raise ArrayFileError(f"{p} is not a .npy file: {err}") from None
        if dtype.hasobject:
            raise ArrayFileError(f"{p} holds Python objects (pickled data), which fastrnn does "
                             f"not read")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > size - f.tell():
            raise ArrayFileError(f"{p}: its header declares {nbytes} bytes of data, the file "
                             f"holds {size - f.tell()}")
        a = np.empty(shape[::-1] if fortran else shape, dtype)
        buf = a.reshape(-1).view(np.uint8)
        done = 0
        while done < nbytes:
            got = f.readinto(buf[done:done + _CHUNK].data)
            if not got:
                raise ArrayFileError(f"{p} is truncated")
            done += got
    return a.T if fortran else a


# ------------------------------------------------------------------------ reading models


def _read_header(zf: zipfile.ZipFile, path: str) -> dict:
    try:
        hinfo = zf.getinfo(_HEADER + ".npy")
    except KeyError:
        raise ModelFileError(f"{path} is not a fastrnn model file (no header)") from None
    if hinfo.file_size > _MAX_HEADER_BYTES:
        raise ModelFileError(f"{path}: header is implausibly large")
    try:
        with zf.open(hinfo) as f:
            # not np.lib.format.read_array: it allocates the shape the member claims
            # (a forged one: MemoryError) before reading any data
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype != np.uint8 or len(shape) != 1 or shape[0] > hinfo.file_size:
                raise ValueError(f"expected UTF-8 bytes, got {dtype} {shape}")
            raw = f.read(shape[0])
            if len(raw) != shape[0]:
                raise ValueError("truncated")
            f.read()            # to the end, so that the zip CRC is checked
        header = json.loads(raw.decode("utf-8"))
    except _ZIP_ERRORS as err:          # UnicodeDecodeError is a ValueError
        raise ModelFileError(f"{path}: header cannot be read: {err}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a fastrnn model file")
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path} has format version {header.get('format_version')}; "
                             f"this fastrnn reads version {FORMAT_VERSION}")
    return header


def _array_specs(header: dict, path: str, size: int) -> dict:
    """``name: (shape, dtype, digest)`` of every array the header lists, checked to add up
    to no more bytes than the file holds."""
    entries = header.get("arrays")
    if not isinstance(entries, dict):
        raise ModelFileError(f"{path}: header lists no arrays")
    total = 0
    specs = {}
    for name, e in entries.items():
        try:
            shape = tuple(int(d) for d in e["shape"])
            dtype = np.dtype(e["dtype"])
            digest = str(e["sha256"])
        except (KeyError, TypeError, ValueError, OverflowError):   # inf: OverflowError
            raise ModelFileError(f"{path}: header entry of {name!r} is malformed") from None
        if dtype.hasobject or dtype.kind not in "fiub" or any(d < 0 for d in shape):
            raise ModelFileError(f"{path}: array {name!r} has a refused dtype or shape")
        total += math.prod(shape) * dtype.itemsize     # Python ints: no wrap-around
        specs[name] = (shape, dtype, digest)
    if total > size:
        raise ModelFileError(f"{path}: header declares {total} bytes of arrays, more "
                             f"than the file holds")
    return specs


def _rnn_shapes(prefix: str, c: dict, out: dict, limit: int) -> None:
    if not isinstance(c, dict) or not isinstance(c.get("type"), str) or c["type"] not in KINDS:
        raise ValueError(f"{prefix[:-1]}: unknown recurrent layer {c!r:.60}")
    I = positive_int(c["input_size"], "input_size")
    H = positive_int(c["hidden_size"], "hidden_size")
    L = positive_int(c.get("num_layers", 1), "num_layers")
    bidirectional = flag(c.get("bidirectional", False), "bidirectional")
    bias = flag(c.get("bias", True), "bias")
    if len(out) + L * (2 if bidirectional else 1) * (4 if bias else 2) > limit:
        raise ValueError(f"{prefix[:-1]}: {L} layers are more than a model file holds")
    for name, shape in parameter_shapes(KINDS[c["type"]], I, H, L, bidirectional, bias):
        out[prefix + name] = shape


def _embedding_shapes(prefix: str, c, out: dict) -> None:
    if c is not None:
        out[f"{prefix}weight"] = (positive_int(c["num_embeddings"], "num_embeddings"),
                                  positive_int(c["embedding_dim"], "embedding_dim"))


def _parameter_shapes(cfg: dict, limit: int = MAX_MEMBERS) -> dict[str, tuple]:
    """``name: shape`` of every parameter the architecture ``cfg`` has, in
    ``named_parameters()`` order, without building it; ValueError, TypeError or KeyError
    (saying why) for a malformed ``cfg`` or one of more than ``limit`` arrays."""
    out: dict[str, tuple] = {}
    if cfg["type"] == "SequenceModel":
        _embedding_shapes("embedding.", cfg.get("embedding"), out)
        _rnn_shapes("rnn.", cfg["rnn"], out, limit)
    else:
        _embedding_shapes("src_embedding.", cfg["src_embedding"], out)
        _rnn_shapes("encoder.", cfg["encoder"], out, limit)
        _embedding_shapes("tgt_embedding.", cfg["tgt_embedding"], out)
        _rnn_shapes("decoder.", cfg["decoder"], out, limit)
    head = cfg["head"]
    out["head.readout.weight"] = (positive_int(head["out_features"], "out_features"),
                                  positive_int(head["in_features"], "in_features"))
    out["head.readout.bias"] = (out["head.readout.weight"][0],)
    return out


def _parameter_count(cfg: dict) -> int | None:
    """How many parameter values the architecture ``cfg`` allocates, without building it;
    None when ``cfg`` is malformed."""
    try:
        return sum(math.prod(s) for s in _parameter_shapes(cfg).values())
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _check_architecture(header: dict, specs: dict, path: str) -> dict:
    """The architecture, once the header's parameter arrays are exactly its own (names,
    shapes, dtype): then building it allocates no more than the file holds."""
    cfg = header.get("model")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str) \
            or cfg["type"] not in _MODELS:
        raise ModelFileError(f"{path}: unknown model type "
                             f"{cfg.get('type') if isinstance(cfg, dict) else cfg!r}")
    try:
        dtype = as_dtype(cfg["dtype"])
        expected = _parameter_shapes(cfg)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{path}: architecture cannot be built: {err}") from None
    stored = {k[len("param/"):]: v for k, v in specs.items() if k.startswith("param/")}
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    if missing or unexpected:
        raise ModelFileError(f"{path}: parameters do not fit the architecture: missing "
                             f"{missing[:5]}, unexpected {unexpected[:5]}")
    for name, shape in expected.items():
        got_shape, got_dtype, _ = stored[name]
        if got_shape != shape or got_dtype != dtype:
            raise ModelFileError(f"{path}: parameters do not fit the architecture: {name} "
                                 f"is {got_dtype} {got_shape}, the architecture's "
                                 f"{dtype} {shape}")
    return cfg


def _read(path):
    """The header and every array it lists, all checked (the parameters against the
    architecture before any is read)."""
    path = _fspath(path)
    with _open_zip(path, ModelFileError, "a fastrnn model file") as (zf, size):
        header = _read_header(zf, path)
        specs = _array_specs(header, path, size)
        _check_architecture(header, specs, path)
        arrays = {}
        for name, (shape, dtype, digest) in specs.items():
            try:
                info = zf.getinfo(name + ".npy")
            except KeyError:
                raise ModelFileError(f"{path}: array {name!r} is missing") from None
            a = _read_array(zf, info, f"{path}: array {name!r}", ModelFileError,
                            (shape, dtype))
            if _digest(a) != digest:
                raise ModelFileError(f"{path}: array {name!r} was altered (digest mismatch)")
            arrays[name] = a
    return path, header, arrays


def _build_model(header, arrays, path):
    cfg = header["model"]
    try:
        model = _MODELS[cfg["type"]].from_config(cfg)
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise ModelFileError(f"{path}: architecture cannot be built: {err}") from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    try:
        model.load_state_dict(params)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: parameters do not fit the architecture: {err}") from None
    return model


def load(path):
    """The model saved in ``path`` (``str``, ``bytes`` or ``os.PathLike``), with
    bit-identical parameters.

    Raises TypeError for a path of another type; FileNotFoundError, IsADirectoryError or
    PermissionError when it cannot be opened; :class:`ModelFileError` (a ValueError) for
    a FIFO, a device or any file that is not a whole, unaltered fastrnn model.

    >>> import numpy as np
    >>> import fastrnn
    >>> model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=4, output_size=3,
    ...                                     seed=0)
    >>> fastrnn.save("model.npz", model)
    >>> same = fastrnn.load("model.npz")
    >>> x = np.ones((1, 5, 2), np.float32)
    >>> bool(np.array_equal(same.predict(x), model.predict(x)))
    True
    """
    path, header, arrays = _read(path)
    return _build_model(header, arrays, path)


def load_checkpoint(path):
    """``(model, optimizer, extra)`` from ``path``: the optimizer (None if none was saved)
    is rebuilt over the model's parameters with its saved hyper-parameters and state, so
    training resumes exactly.  Errors as :func:`load`.

    >>> import fastrnn
    >>> model = fastrnn.SequenceModel.build("lstm", input_size=2, hidden_size=4, output_size=3,
    ...                                     seed=0)
    >>> opt = fastrnn.optim.Adam(model.parameters(), lr=1e-3)
    >>> fastrnn.save("checkpoint.npz", model, optimizer=opt, extra={"epoch": 3})
    >>> model, opt, extra = fastrnn.load_checkpoint("checkpoint.npz")
    >>> type(opt).__name__, extra["epoch"]
    ('Adam', 3)
    """
    path, header, arrays = _read(path)
    model = _build_model(header, arrays, path)
    info = header.get("optimizer")
    optimizer = None
    if info is not None:
        if not isinstance(info, dict):
            raise ModelFileError(f"{path}: optimizer section is malformed")
        cls = getattr(optim, str(info.get("type")), None)
        if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
            raise ModelFileError(f"{path}: unknown optimizer {info.get('type')!r}")
        try:
            state = {}
            for index, scalars in info.get("state", {}).items():
                state[int(index)] = dict(scalars)
            for key, a in arrays.items():
                if key.startswith("optim/"):
                    _, index, name = key.split("/", 2)
                    state.setdefault(int(index), {})[name] = a
            make: Callable[..., optim.Optimizer] = cls     # every subclass takes (params)
            optimizer = make(model.parameters())
            optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise ModelFileError(f"{path}: optimizer state cannot be restored: {err}") from None
    return model, optimizer, header.get("extra")
