"""Saving and loading models (and any module) without pickle.

A model file is an uncompressed ``.npz`` (a zip of ``.npy`` arrays) holding:

* ``__header__``: UTF-8 JSON as a uint8 array: the format name and version, the fastrnn
  version, the saved object's architecture (``"model"``), and for every array its shape,
  dtype and SHA-256 digest; the optimizer's class, hyper-parameters and scalar state; any
  ``extra`` JSON the caller gave (epoch, metrics...);
* ``param/<name>``: each parameter array, by its ``named_parameters()`` name;
  a :class:`~fastrnn.Sequential`'s architecture is the list of its layers'
  configurations (containers holding theirs, nested at most ``MAX_DEPTH`` deep), and its
  names are positions and the layers' own names (``param/1.weight_ih_l0``);
* ``optim/<index>/<key>``: the optimizer's per-parameter state arrays (optional).

A quantized layer or cell (:func:`fastrnn.quantize`) has ``"quantized": "int8"`` in its
configuration and keeps its weights ``weight_ih*``, ``weight_hh*`` as the int8 arrays with
their per-row scales beside them (``param/weight_ih_l0_scale``, float32); the biases stay
float32.  Its weights then take a quarter of the float file's bytes.

The architecture is a ``SequenceModel``'s, a ``Seq2Seq``'s or a ``Sequential``'s
configuration (``config()``), or that of one module on its own -- a recurrent layer
(``RNN``, ``LSTM``, ``GRU``, ``FastRNN``, ``FastGRNN`` and their variants), a cell
(``RNNCell``, ``LSTMCell``, ``GRUCell``), ``Linear``, ``Embedding``, a block, a
combinator (``Residual``, ``Concatenate``, ``Bidirectional``) or a head -- as a
``Sequential`` keeps its layers', with the module's ``"dtype"`` added; its parameters
have their own names (``param/weight_ih_l0``).

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

import hashlib
import json
import math
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import module as _module, optim
from .._kinds import KINDS, layer_kind, parameter_shapes
from .._validate import as_dtype, flag, positive_int, projection_size
from .._version import __version__
from ..cells import GRUCell, LSTMCell, RNNCell
from ..heads import HEAD_TYPES
from ..models import Seq2Seq, SequenceModel
from ..module import Module
from ..quantization import (DTYPES as _QUANTIZED, _quantize_module, named_recurrent,
                            quantized_arrays)
from ..sequential import (LAYER_TYPES, MAX_DEPTH, Sequential, _dtype_of, _is_layer,
                          build_layer, layer_config)
from .files import (_PATH_TYPES, _ZIP_ERRORS, MAX_DIRECTORY_BYTES, MAX_MEMBERS,
                    NPZ_EXPANSION, ArrayFileError, _fspath, _open_zip, _read_array,
                    atomic_write, npy_header, npz_names, open_regular_file, read_npy,
                    read_npz, zip_names)

__all__ = ["save", "load", "load_checkpoint", "ModelFileError", "ArrayFileError",
           "atomic_write", "read_npz", "read_npy", "npz_names", "zip_names",
           "open_regular_file", "MAX_MEMBERS", "MAX_DIRECTORY_BYTES", "NPZ_EXPANSION"]

FORMAT = "fastrnn-model"
FORMAT_VERSION = 1
_HEADER = "__header__"
_MAX_HEADER_BYTES = 16 << 20
_MODELS: dict[str, type[SequenceModel] | type[Seq2Seq] | type[Sequential]] = {
    "SequenceModel": SequenceModel, "Seq2Seq": Seq2Seq, "Sequential": Sequential}
# the modules saved on their own besides the layers a Sequential holds (heads among them)
_CELLS = {cls.__name__: cls for cls in (RNNCell, LSTMCell, GRUCell)}
_SAVED = ("a SequenceModel, Seq2Seq or Sequential, a recurrent layer, a cell, a Linear, "
          "an Embedding, a block, a combinator or a head")


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


def _save_arguments(obj, path) -> tuple[Module, object]:
    """``(obj, path)`` in PyTorch's order; the order of fastrnn 0.x, ``(path, model)``,
    taken with a DeprecationWarning (for one release), told apart by the types."""
    if isinstance(obj, _PATH_TYPES) and isinstance(path, Module):
        warnings.warn(f"fastrnn.save(path, model) is deprecated: the object comes first, "
                      f"as in torch.save(obj, f); write fastrnn.save(model, {obj!r}) (the "
                      f"old order is accepted in this release only)", DeprecationWarning,
                      stacklevel=3)
        obj, path = path, obj
    if not isinstance(obj, Module):
        raise TypeError(f"obj must be a fastrnn model or module ({_SAVED}), got "
                        f"{type(obj).__name__}")
    _fspath(path)
    return obj, path


def _architecture(obj: Module) -> dict:
    """What builds ``obj`` again, as the header's ``"model"`` keeps it: a model's
    configuration, or a module's as a Sequential keeps its layers' with its dtype added;
    checked to describe exactly ``obj``'s parameters (what load refuses is not written)."""
    if isinstance(obj, tuple(_MODELS.values())):
        cfg = obj.config()
    elif _is_layer(obj) or type(obj) in _CELLS.values():
        what = f"the {type(obj).__name__}"
        cfg = {**(layer_config(obj) if _is_layer(obj) else obj.config()),
               "dtype": _dtype_of([obj], None, what).name}
    else:
        raise TypeError(f"a {type(obj).__name__} cannot be saved: fastrnn.save takes "
                        f"{_SAVED}")
    try:
        expected = _parameter_shapes(cfg)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise TypeError(f"a {type(obj).__name__} cannot be saved: its configuration does "
                        f"not describe a module fastrnn builds ({err})") from None
    own = {name: p.shape for name, p in obj.named_parameters()}
    if own != {k: v for k, v in expected.items() if _SCALE_OF(k, expected) is None}:
        raise TypeError(f"a {type(obj).__name__} cannot be saved: its parameters "
                        f"{sorted(own)[:5]} are not those its configuration describes "
                        f"{sorted(expected)[:5]}")
    return cfg


def save(obj, path, optimizer=None, extra: dict | None = None) -> None:
    """Write ``obj`` -- a model or any module of fastrnn -- (and ``optimizer``'s state,
    and ``extra`` JSON) to ``path`` (``str``, ``bytes`` or ``os.PathLike``), atomically
    (:func:`atomic_write`); ``obj.save(path)`` does the same.

    ``obj`` is a ``SequenceModel``, ``Seq2Seq`` or ``Sequential``, or one module on its
    own: a recurrent layer (``RNN``, ``LSTM``, ``GRU``, ``FastRNN``, ``FastGRNN``), a cell,
    ``Linear``, ``Embedding``, a block, a combinator or a head; :func:`load` gives it back.
    The arguments are in ``torch.save(obj, f)``'s order; the order of earlier releases,
    ``save(path, model)``, still works in this release, with a ``DeprecationWarning``.

    Raises TypeError for a path or an object of the wrong type, ValueError for ``extra``
    that is not JSON (nan and inf in it are written as null), OSError when the file
    cannot be written; on any error ``path`` is left as it was.

    >>> import os, tempfile, numpy as np, fastrnn
    >>> m = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4, output_size=2,
    ...                                 seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> fastrnn.save(m, path)
    >>> x = np.ones((1, 5, 3), np.float32)
    >>> bool(np.array_equal(fastrnn.load(path).forward(x), m.forward(x)))
    True
    >>> m.rnn.save(path)                                # a layer on its own
    >>> fastrnn.load(path)
    LSTM(3, 4, dtype=float32)
    """
    model, path = _save_arguments(obj, path)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "fastrnn_version": __version__, "model": _architecture(model),
              "optimizer": None,
              "extra": _json_ready(extra) if extra is not None else None}
    arrays = {f"param/{name}": p.data for name, p in model.named_parameters()}
    for prefix, module in named_recurrent(model):
        for name, (q, scale) in quantized_arrays(module).items():     # int8 + scales
            arrays[f"param/{prefix}{name}"] = q
            arrays[f"param/{prefix}{name}{_SCALE}"] = scale
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
        # Any: numpy's stub reads ** of arrays as possibly filling savez's allow_pickle
        members: dict[str, Any] = {_HEADER: np.frombuffer(text.encode(), dtype=np.uint8),
                                   **arrays}
        np.savez(f, **members)


_module.register_writer(save)        # Module.save (module.py, below io, cannot import it)


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
            shape, fortran, dtype = npy_header(f)
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


# ------------------------------------------------------------------- quantized weights

_SCALE = "_scale"


def _SCALE_OF(name: str, shapes: dict) -> str | None:
    """The weight whose per-row scales ``name`` holds, in an architecture's ``shapes``
    (:func:`_parameter_shapes`), or None when ``name`` holds no scales."""
    weight = name[:-len(_SCALE)] if name.endswith(_SCALE) else None
    return weight if weight is not None and weight in shapes else None


def _quantized(c: dict, prefix: str, names: list, out: dict) -> None:
    """A quantized layer's (or cell's) scales beside its weights ``names``, in ``out``."""
    form = c.get("quantized")
    if form is None:
        return
    if form not in _QUANTIZED:
        raise ValueError(f"{prefix[:-1] or 'model'}: quantized must be one of "
                         f"{_QUANTIZED}, got {form!r}")
    for name in names:
        if name.startswith(("weight_ih", "weight_hh")):
            out[prefix + name + _SCALE] = (out[prefix + name][0],)


def _expected_dtype(name: str, shapes: dict, dtype: np.dtype) -> np.dtype:
    """What an architecture's array ``name`` holds: the model's dtype, or a quantized
    weight's int8 and its scales' float32."""
    if _SCALE_OF(name, shapes) is not None:
        return np.dtype(np.float32)
    if name + _SCALE in shapes:
        return np.dtype(np.int8)
    return dtype


def _strip_quantized(cfg):
    """``cfg`` without its layers' ``"quantized"`` keys (what builds the float model)."""
    if isinstance(cfg, dict):
        return {k: _strip_quantized(v) for k, v in cfg.items() if k != "quantized"}
    if isinstance(cfg, list):
        return [_strip_quantized(v) for v in cfg]
    return cfg


def _requantize(params: dict) -> tuple[dict, dict]:
    """The float parameters of ``params`` (a file's: quantized weights as int8 with
    their scales) as ``load_state_dict`` takes them, and ``(q, scale)`` of the int8
    weights by name."""
    floats, int8 = {}, {}
    for name, a in params.items():
        weight = _SCALE_OF(name, params)
        if weight is not None:
            continue
        scale = params.get(name + _SCALE)
        if scale is None:
            floats[name] = a
        else:
            floats[name] = a.astype(np.float32) * scale[:, None]
            int8[name] = (a, scale)
    return floats, int8


def _rnn_shapes(prefix: str, c: dict, out: dict, limit: int) -> None:
    if not isinstance(c, dict) or not isinstance(c.get("type"), str) or c["type"] not in KINDS:
        raise ValueError(f"{prefix[:-1]}: unknown recurrent layer {c!r:.60}")
    I = positive_int(c["input_size"], "input_size")
    H = positive_int(c["hidden_size"], "hidden_size")
    L = positive_int(c.get("num_layers", 1), "num_layers")
    bidirectional = flag(c.get("bidirectional", False), "bidirectional")
    bias = flag(c.get("bias", True), "bias")
    kind = layer_kind(c["type"], reset_after=flag(c.get("reset_after", True), "reset_after"),
                      peephole=flag(c.get("peephole", False), "peephole"),
                      layer_norm=flag(c.get("layer_norm", False), "layer_norm"))
    ranks = [None if c.get(name) is None else positive_int(c[name], name)
             for name in ("w_rank", "u_rank")]
    proj = projection_size(c.get("proj_size", 0), H)
    per_cell = len(kind.cell_shapes(I, H, bias, "", ranks[0], ranks[1], proj))
    if len(out) + L * (2 if bidirectional else 1) * per_cell > limit:
        raise ValueError(f"{prefix[:-1]}: {L} layers are more than a model file holds")
    names = []
    for name, shape in parameter_shapes(kind, I, H, L, bidirectional, bias, ranks[0],
                                        ranks[1], proj):
        out[prefix + name] = shape
        names.append(name)
    _quantized(c, prefix, names, out)


def _embedding_shapes(prefix: str, c, out: dict) -> None:
    if c is not None:
        out[f"{prefix}weight"] = (positive_int(c["num_embeddings"], "num_embeddings"),
                                  positive_int(c["embedding_dim"], "embedding_dim"))


def _linear_shapes(prefix: str, c: dict, out: dict) -> None:
    out[f"{prefix}weight"] = (positive_int(c["out_features"], "out_features"),
                              positive_int(c["in_features"], "in_features"))
    if flag(c.get("bias", True), "bias"):
        out[f"{prefix}bias"] = (out[f"{prefix}weight"][0],)


def _head_shapes(prefix: str, c: dict, out: dict) -> None:
    kind = c.get("type") if isinstance(c, dict) else None
    if not isinstance(kind, str) or kind not in HEAD_TYPES:
        raise ValueError(f"{prefix[:-1]}: unknown head {c!r:.60}")
    for name, shape in HEAD_TYPES[kind].config_shapes(c):
        out[prefix + name] = shape


def _layer_shapes(prefix: str, c, out: dict, limit: int, depth: int = 0) -> None:
    """The parameters of one layer of a :class:`~fastrnn.Sequential` (a block or a
    container: those of its children, recursively, at most ``MAX_DEPTH`` deep)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{prefix[:-1]}: layers nested more than {MAX_DEPTH} deep")
    kind = c.get("type") if isinstance(c, dict) else None
    if kind in KINDS:
        _rnn_shapes(prefix, c, out, limit)
    elif kind == "Embedding":
        _embedding_shapes(prefix, c, out)
    elif kind == "Linear":
        _linear_shapes(prefix, c, out)
    elif isinstance(kind, str) and kind in HEAD_TYPES:
        _head_shapes(prefix, c, out)
    elif isinstance(kind, str) and kind in LAYER_TYPES:
        cls = LAYER_TYPES[kind]
        for name, shape in cls.config_shapes(c):
            out[prefix + name] = shape
        for name, child in cls.config_children(c):
            _layer_shapes(f"{prefix}{name}.", child, out, limit, depth + 1)
    else:
        raise ValueError(f"{prefix[:-1] or 'model'}: unknown layer {c!r:.60}")
    if len(out) > limit:
        raise ValueError(f"{prefix[:-1]}: more layers than a model file holds")


def _cell_shapes(c: dict, out: dict) -> None:
    kind = layer_kind(c["type"][:-len("Cell")],
                      reset_after=flag(c.get("reset_after", True), "reset_after"),
                      peephole=flag(c.get("peephole", False), "peephole"),
                      layer_norm=flag(c.get("layer_norm", False), "layer_norm"))
    shapes = kind.cell_shapes(positive_int(c["input_size"], "input_size"),
                              positive_int(c["hidden_size"], "hidden_size"),
                              flag(c.get("bias", True), "bias"), "")
    out.update(shapes)
    _quantized(c, "", list(dict(shapes)), out)


def _parameter_shapes(cfg: dict, limit: int = MAX_MEMBERS) -> dict[str, tuple]:
    """``name: shape`` of every parameter the architecture ``cfg`` has, in
    ``named_parameters()`` order, without building it; ValueError, TypeError or KeyError
    (saying why) for a malformed ``cfg`` or one of more than ``limit`` arrays."""
    out: dict[str, tuple] = {}
    if cfg["type"] in _CELLS:
        _cell_shapes(cfg, out)
        return out
    if cfg["type"] not in ("SequenceModel", "Seq2Seq"):      # a Sequential, a layer
        _layer_shapes("", cfg, out, limit)
        return out
    if cfg["type"] == "SequenceModel":
        _embedding_shapes("embedding.", cfg.get("embedding"), out)
        _rnn_shapes("rnn.", cfg["rnn"], out, limit)
    else:
        _embedding_shapes("src_embedding.", cfg["src_embedding"], out)
        _rnn_shapes("encoder.", cfg["encoder"], out, limit)
        _embedding_shapes("tgt_embedding.", cfg["tgt_embedding"], out)
        _rnn_shapes("decoder.", cfg["decoder"], out, limit)
    _head_shapes("head.", cfg["head"], out)
    return out


def _parameter_count(cfg: dict) -> int | None:
    """How many parameter values the architecture ``cfg`` allocates, without building it;
    None when ``cfg`` is malformed."""
    try:
        return sum(math.prod(s) for s in _parameter_shapes(cfg).values())
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _known_type(name: str) -> bool:
    """Whether a file's architecture of type ``name`` is one fastrnn builds."""
    return any(name in table for table in (_MODELS, _CELLS, HEAD_TYPES, KINDS,
                                           LAYER_TYPES)) or name in ("Linear", "Embedding")


def _build(cfg: dict):
    """The object an architecture describes (checked by :func:`_check_architecture`)."""
    cfg = _strip_quantized(cfg)
    if cfg["type"] in _MODELS:
        return _MODELS[cfg["type"]].from_config(cfg)
    dtype = as_dtype(cfg["dtype"])
    args = {k: v for k, v in cfg.items() if k != "dtype"}
    if cfg["type"] in _CELLS:
        return _CELLS[args.pop("type")](**args, dtype=dtype)
    return build_layer(args, dtype)


def _check_architecture(header: dict, specs: dict, path: str) -> dict:
    """The architecture, once the header's parameter arrays are exactly its own (names,
    shapes, dtype): then building it allocates no more than the file holds."""
    cfg = header.get("model")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str) \
            or not _known_type(cfg["type"]):
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
        want = _expected_dtype(name, expected, dtype)
        if got_shape != shape or got_dtype != want:
            raise ModelFileError(f"{path}: parameters do not fit the architecture: {name} "
                                 f"is {got_dtype} {got_shape}, the architecture's "
                                 f"{want} {shape}")
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
        model = _build(cfg)
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise ModelFileError(f"{path}: architecture cannot be built: {err}") from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    params, int8 = _requantize(params)
    try:
        model.load_state_dict(params)
        for prefix, module in named_recurrent(model):
            given = {name[len(prefix):]: qs for name, qs in int8.items()
                     if name.startswith(prefix) and "." not in name[len(prefix):]}
            if given:
                _quantize_module(module, prefix[:-1] or type(module).__name__, given)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: parameters do not fit the architecture: {err}") from None
    return model


def load(path):
    """The model (or module) saved in ``path`` (``str``, ``bytes`` or ``os.PathLike``),
    with bit-identical parameters.

    Raises TypeError for a path of another type; FileNotFoundError, IsADirectoryError or
    PermissionError when it cannot be opened; :class:`ModelFileError` (a ValueError) for
    a FIFO, a device or any file that is not a whole, unaltered fastrnn model.

    >>> import numpy as np
    >>> import fastrnn
    >>> model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=4, output_size=3,
    ...                                     seed=0)
    >>> fastrnn.save(model, "model.npz")
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
    >>> fastrnn.save(model, "checkpoint.npz", optimizer=opt, extra={"epoch": 3})
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
