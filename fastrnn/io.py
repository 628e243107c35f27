"""Saving and loading models without pickle.

A model file is an uncompressed ``.npz`` (a zip of ``.npy`` arrays) holding:

* ``__header__``: UTF-8 JSON as a uint8 array: the format name and version, the fastrnn
  version, the model's architecture (``config()``), and for every array its shape, dtype
  and SHA-256 digest; the optimizer's class, hyper-parameters and scalar state; any
  ``extra`` JSON the caller gave (epoch, metrics...);
* ``param/<name>``: each parameter array, by its ``named_parameters()`` name;
* ``optim/<index>/<key>``: the optimizer's per-parameter state arrays (optional).

Reading never unpickles (so an untrusted file cannot run code), checks every array's
declared shape and size against the header and the file before reading it (so a forged
header cannot make it allocate more memory than the file holds), and verifies each digest
(so an altered file is refused).  Saving writes a temporary file beside the target,
syncs it and renames it over the target, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import tempfile
import zipfile
import zlib

import numpy as np

__all__ = ["save", "load", "load_checkpoint", "ModelFileError"]

FORMAT = "fastrnn-model"
FORMAT_VERSION = 1
_HEADER = "__header__"
_MAX_HEADER_BYTES = 16 << 20
# what zipfile raises for a damaged archive: besides BadZipFile, a flipped compression
# method gives NotImplementedError, a flipped "encrypted" flag RuntimeError, a damaged
# deflate stream zlib.error
_ZIP_ERRORS = (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError,
               RuntimeError, zlib.error)


class ModelFileError(ValueError):
    """A file that is not a readable fastrnn model: truncated, altered, foreign or of a
    newer format version.

    >>> import fastrnn
    >>> with open("not-a-model.npz", "wb") as f:
    ...     _ = f.write(b"hello")
    >>> try:
    ...     fastrnn.load("not-a-model.npz")
    ... except fastrnn.ModelFileError:
    ...     print("refused")
    refused
    """


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _entry(a: np.ndarray) -> dict:
    return {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _digest(a)}


def _json_ready(value):
    """Optimizer and log values as JSON: numpy scalars to Python numbers, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save(path, model, optimizer=None, extra: dict | None = None) -> None:
    """Write ``model`` (and ``optimizer``'s state, and ``extra`` JSON) to ``path``.

    >>> import os, tempfile, numpy as np, fastrnn
    >>> m = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4, output_size=2,
    ...                                 seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> fastrnn.save(path, m)
    >>> x = np.ones((1, 5, 3), np.float32)
    >>> bool(np.array_equal(fastrnn.load(path).forward(x), m.forward(x)))
    True
    """
    from . import __version__

    arrays = {f"param/{name}": p.data for name, p in model.named_parameters()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "fastrnn_version": __version__, "model": model.config(), "optimizer": None,
              "extra": _json_ready(extra) if extra is not None else None}
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars = {}
        for index, st in sd["state"].items():
            scalars[str(index)] = {}
            for key, value in st.items():
                if isinstance(value, np.ndarray):
                    arrays[f"optim/{index}/{key}"] = value
                else:
                    scalars[str(index)][key] = _json_ready(value)
        header["optimizer"] = {"type": type(optimizer).__name__, "state": scalars,
                               "param_groups": _json_ready(sd["param_groups"])}
    header["arrays"] = {k: _entry(v) for k, v in arrays.items()}
    try:
        text = json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"extra must be JSON-serialisable with finite numbers: {err}") from None
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastrnn-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{_HEADER: np.frombuffer(text.encode(), dtype=np.uint8)}, **arrays)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)       # mkstemp makes it 0600; give it a new file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_member(zf: zipfile.ZipFile, name: str, shape: tuple, dtype: np.dtype,
                 path: str) -> np.ndarray:
    """Read one .npy member, refusing it unless its own header declares ``shape`` and
    ``dtype``; reads exactly the declared bytes (bounded memory), then checks the CRC."""
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        raise ModelFileError(f"{path}: array {name!r} is missing") from None
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size > nbytes + 4096:
        raise ModelFileError(f"{path}: array {name!r} is larger than its header declares")
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(f)
            else:
                got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(f)
            if got_dtype.hasobject or got_shape != shape or got_dtype != dtype or fortran:
                raise ModelFileError(f"{path}: array {name!r} is {got_dtype} {got_shape}, "
                                     f"the header declares {dtype} {shape}")
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ModelFileError(f"{path}: array {name!r} is truncated")
            f.read()            # to the end, so that the zip CRC is checked
    except ModelFileError:
        raise
    except _ZIP_ERRORS as err:
        raise ModelFileError(f"{path}: array {name!r} cannot be read: {err}") from None
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _read(path):
    """The header and every array of a model file, all checked."""
    path = os.fspath(path)
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ModelFileError(f"{path} is not a fastrnn model file (not a readable .npz: "
                             f"{err})") from None
    with zf:
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
        if total > os.path.getsize(path):
            raise ModelFileError(f"{path}: header declares {total} bytes of arrays, more "
                                 f"than the file holds")
        arrays = {}
        for name, (shape, dtype, digest) in specs.items():
            a = _read_member(zf, name, shape, dtype, path)
            if _digest(a) != digest:
                raise ModelFileError(f"{path}: array {name!r} was altered (digest mismatch)")
            arrays[name] = a
    return header, arrays


_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def _size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(value)
    return max(int(value), 0)


def _parameter_count(cfg: dict) -> int | None:
    """How many parameter values the architecture ``cfg`` allocates, without building it;
    None when ``cfg`` is malformed (building it then says why)."""
    def rnn(c):
        G, I, H = _GATES[c["type"]], _size(c["input_size"]), _size(c["hidden_size"])
        L, D = _size(c.get("num_layers", 1)), 2 if c.get("bidirectional") else 1
        bias = 2 * G * H if c.get("bias", True) else 0
        return (D * (G * H * (I + H) + bias) if L else 0) + \
            max(L - 1, 0) * D * (G * H * (D * H + H) + bias)

    def emb(c):
        return _size(c["num_embeddings"]) * _size(c["embedding_dim"]) if c else 0

    def head(c):
        return (_size(c["in_features"]) + 1) * _size(c["out_features"])

    try:
        if cfg["type"] == "SequenceModel":
            return rnn(cfg["rnn"]) + emb(cfg.get("embedding")) + head(cfg["head"])
        return (emb(cfg["src_embedding"]) + rnn(cfg["encoder"]) + emb(cfg["tgt_embedding"])
                + rnn(cfg["decoder"]) + head(cfg["head"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _build_model(header, arrays, path):
    from .model import Seq2Seq, SequenceModel

    cfg = header.get("model")
    kinds = {"SequenceModel": SequenceModel, "Seq2Seq": Seq2Seq}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str) \
            or cfg["type"] not in kinds:
        raise ModelFileError(f"{path}: unknown model type "
                             f"{cfg.get('type') if isinstance(cfg, dict) else cfg!r}")
    # a forged architecture must not make the reader allocate (and initialise) more
    # parameters than the file holds
    stored = sum(a.size for k, a in arrays.items() if k.startswith("param/"))
    claimed = _parameter_count(cfg)
    if claimed is not None and claimed > stored:
        raise ModelFileError(f"{path}: the architecture has {claimed} parameter values, "
                             f"the file holds {stored}")
    try:
        model = kinds[cfg["type"]].from_config(cfg)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: architecture cannot be built: {err}") from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    try:
        model.load_state_dict(params)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: parameters do not fit the architecture: {err}") from None
    return model


def load(path):
    """The model saved in ``path`` (bit-identical parameters).  Raises
    :class:`ModelFileError` for a truncated, altered or foreign file.

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
    header, arrays = _read(path)
    return _build_model(header, arrays, path)


def load_checkpoint(path):
    """``(model, optimizer, extra)`` from ``path``: the optimizer (None if none was saved)
    is rebuilt over the model's parameters with its saved hyper-parameters and state, so
    training resumes exactly.

    >>> import fastrnn
    >>> model = fastrnn.SequenceModel.build("lstm", input_size=2, hidden_size=4, output_size=3,
    ...                                     seed=0)
    >>> opt = fastrnn.optim.Adam(model.parameters(), lr=1e-3)
    >>> fastrnn.save("checkpoint.npz", model, optimizer=opt, extra={"epoch": 3})
    >>> model, opt, extra = fastrnn.load_checkpoint("checkpoint.npz")
    >>> type(opt).__name__, extra["epoch"]
    ('Adam', 3)
    """
    from . import optim

    header, arrays = _read(path)
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
            optimizer = cls(model.parameters())
            optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise ModelFileError(f"{path}: optimizer state cannot be restored: {err}") from None
    return model, optimizer, header.get("extra")
