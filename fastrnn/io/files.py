"""Files read and written safely: regular files only, atomic writes, and ``.npz``/``.npy``
arrays read without pickle, with memory bounded by the file's own size.

The model files of :mod:`fastrnn.io` are read and written through these; so are a user's
data files (the command line's ``--data``) and ``import-torch``'s state dicts.

* :func:`open_regular_file` refuses a FIFO, a device or a socket without reading or
  waiting on it;
* :func:`atomic_write` writes a uniquely named temporary file beside the target, syncs
  it and renames it over the target: a crash never leaves a half-written file, a
  replaced file keeps its mode, a symlink stays a link, the process umask is never
  changed, and concurrent writers never see each other's temporary files;
* :func:`read_npz`, :func:`read_npy`, :func:`npz_names`, :func:`zip_names` read array
  files: a zip announcing more than ``MAX_MEMBERS`` members, or a central directory of
  more than ``MAX_DIRECTORY_BYTES``, is refused from its end record, before it is listed;
  only the members asked for are read, straight into their arrays.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import socket
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import numpy as np

__all__ = ["ArrayFileError", "open_regular_file", "atomic_write", "read_npz", "read_npy",
           "npz_names", "zip_names", "MAX_MEMBERS", "MAX_DIRECTORY_BYTES", "NPZ_EXPANSION"]

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


# ---------------------------------------------------------------------- reading zip files


def npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the header of a ``.npy`` stream, without
    allocating the array (``np.lib.format.read_array`` allocates the shape a member claims
    -- a forged one: MemoryError -- before reading any data)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


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


def _read_npy_data(f, header: tuple[tuple[int, ...], bool, np.dtype], size: int, label: str,
                   holder: str, error: type[Exception],
                   expect: tuple | None = None) -> np.ndarray:
    """The array of the ``.npy`` stream ``f`` of ``size`` bytes, whose ``header`` (from
    :func:`npy_header`) has just been read; never unpickling. The header must declare
    ``expect`` (shape, dtype) if given, and no more bytes than the stream has left (the
    messages call the stream ``holder``); they are read in chunks straight into the array."""
    shape, fortran, dtype = header
    if dtype.hasobject:
        raise error(f"{label} holds Python objects (pickled data), which fastrnn does not "
                    f"read")
    if expect is not None and (shape != expect[0] or dtype != expect[1] or fortran):
        raise error(f"{label} is {dtype} {shape}, the header declares {expect[1]} {expect[0]}")
    nbytes = math.prod(shape) * dtype.itemsize
    left = max(size - f.tell(), 0)
    if nbytes > left:
        raise error(f"{label} is truncated: its header declares {nbytes} bytes, the {holder} "
                    f"holds {left}")
    a = np.empty(shape[::-1] if fortran else shape, dtype)
    buf = a.reshape(-1).view(np.uint8)
    done = 0
    while done < nbytes:
        got = f.readinto(buf[done:done + _CHUNK].data)
        if not got:
            raise error(f"{label} is truncated")
        done += got
    return a.T if fortran else a


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
            a = _read_npy_data(f, npy_header(f), info.file_size, label, "member", error,
                               expect)
            while f.read(_CHUNK):       # to the end, so that the zip CRC is checked
                pass
    except _ZIP_ERRORS as err:
        if isinstance(err, error):
            raise
        raise error(f"{label} cannot be read: {err}") from None
    return a


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
            header = npy_header(f)
        except (ValueError, EOFError) as err:
            raise ArrayFileError(f"{p} is not a .npy file: {err}") from None
        return _read_npy_data(f, header, size, p, "file", ArrayFileError)
