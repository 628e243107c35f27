"""PyTorch models in and out: :func:`from_torch` and :func:`to_torch`.

fastrnn's parameters have PyTorch's names, shapes and gate order, so a conversion copies
arrays and nothing else: ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (any number of layers,
either direction, ``batch_first``, with or without biases), ``nn.RNNCell`` /
``nn.LSTMCell`` / ``nn.GRUCell``, ``nn.Linear`` and ``nn.Embedding`` become the fastrnn
module of the same configuration and back.  A plain ``state_dict`` of arrays (a mapping,
or an ``.npz`` file written with ``numpy.savez``) converts without torch installed, so a
deployment box needs numpy and scipy only.

torch is imported inside the functions that need it, never at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from ._kinds import KINDS
from .cells import GRUCell, LSTMCell, RNNCell
from .heads import ManyToMany, ManyToOne, OneToMany
from .io import open_regular_file, read_npz, zip_names
from .layers import GRU, LSTM, RNN, Embedding, Linear
from .models import SequenceModel
from .quantization import refuse_quantized

__all__ = ["from_torch", "to_torch", "from_state_dict", "read_state_dict"]

_LAYERS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
_CELLS = {"RNNCell": RNNCell, "LSTMCell": LSTMCell, "GRUCell": GRUCell}
# G -> the torch.nn kind it tells
_GATES = {kind.gates: name for name, kind in KINDS.items() if kind.in_torch}
_HEADS = {"many_to_many": ManyToMany, "many_to_one": ManyToOne, "one_to_many": OneToMany}
_LAYER_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
_CELL_KEYS = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}


def _float_dtype(dtype, what: str) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{what} has dtype {dt}; fastrnn computes in float32 or float64 "
                        f"(pass dtype=numpy.float32 to convert)")
    return dt


def _torch_dtype_name(module) -> str:
    for p in module.parameters():
        return str(p.dtype).replace("torch.", "")
    return "float32"


def _module_dtype(module, dtype):
    if dtype is not None:
        return _float_dtype(dtype, "dtype")
    name = _torch_dtype_name(module)
    try:
        dt = np.dtype(name)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.float32, np.float64):
        raise TypeError(f"{type(module).__name__} has dtype {name}; fastrnn computes in "
                        f"float32 or float64 (pass dtype=numpy.float32 to convert)")
    return dt


def _numpy_state(module) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _nonlinearity_kw(m, nonlinearity, elman) -> dict:
    """The ``nonlinearity=`` keyword for the fastrnn twin of torch module ``m``.

    ``elman`` is the Elman class of m's family (``nn.RNN`` or ``nn.RNNCell``): m of that
    class passes its own nonlinearity on (``nonlinearity``, if given, must be the same);
    any other kind has none, and ``nonlinearity`` must be None.
    """
    name = type(m).__name__
    if type(m) is elman:
        if nonlinearity is not None and nonlinearity != m.nonlinearity:
            raise ValueError(f"nonlinearity={nonlinearity!r} was asked for, but the nn.{name} "
                             f"uses {m.nonlinearity!r}")
        return {"nonlinearity": m.nonlinearity}
    if nonlinearity is not None:
        raise ValueError(f"nonlinearity= applies to an {elman.__name__}, not to an nn.{name}")
    return {}


# ---------------------------------------------------------------------------------------
# torch -> fastrnn
# ---------------------------------------------------------------------------------------

def _from_torch_module(m, dtype, nonlinearity, readout, embedding, head, loss):
    import torch
    nn = torch.nn
    kind = type(m)
    name = kind.__name__
    if readout is not None or embedding is not None:
        rnn = _from_torch_module(m, dtype, nonlinearity, None, None, None, None)
        if type(rnn) not in _LAYERS.values():
            raise TypeError(f"readout= and embedding= build a SequenceModel around a "
                            f"recurrent layer, got {name}")
        return _assemble(rnn, readout=None if readout is None else
                         _from_torch_module(readout, dtype, None, None, None, None, None),
                         embedding=None if embedding is None else
                         _from_torch_module(embedding, dtype, None, None, None, None, None),
                         head=head, loss=loss)
    if kind in (nn.RNN, nn.LSTM, nn.GRU):
        dt = _module_dtype(m, dtype)
        kw = _nonlinearity_kw(m, nonlinearity, nn.RNN)
        if kind is nn.LSTM and m.proj_size:
            kw["proj_size"] = m.proj_size
        out = _LAYERS[name](m.input_size, m.hidden_size, num_layers=m.num_layers,
                            bias=m.bias, batch_first=m.batch_first, dropout=0.0,
                            bidirectional=m.bidirectional, dtype=dt, seed=0, **kw)
        out.dropout = float(m.dropout)      # no warning for one layer, as torch
        out.load_state_dict(_numpy_state(m))
        return out
    if kind in (nn.RNNCell, nn.LSTMCell, nn.GRUCell):
        dt = _module_dtype(m, dtype)
        kw = _nonlinearity_kw(m, nonlinearity, nn.RNNCell)
        out = _CELLS[name](m.input_size, m.hidden_size, bias=m.bias, dtype=dt, seed=0, **kw)
        out.load_state_dict(_numpy_state(m))
        return out
    if kind is nn.Linear:
        out = Linear(m.in_features, m.out_features, bias=m.bias is not None,
                     dtype=_module_dtype(m, dtype), seed=0)
        out.load_state_dict(_numpy_state(m))
        return out
    if kind is nn.Embedding:
        if m.max_norm is not None:
            raise ValueError(f"nn.Embedding with max_norm={m.max_norm} renormalises rows "
                             f"as it looks them up; fastrnn's Embedding has no equivalent")
        out = Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx,
                        dtype=_module_dtype(m, dtype), seed=0)
        out.load_state_dict(_numpy_state(m))
        return out
    if kind is nn.ModuleDict:
        parts = dict(m.items())
        unknown = sorted(set(parts) - {"rnn", "readout", "embedding"})
        if unknown or "rnn" not in parts:
            raise ValueError(f"a ModuleDict converts to a SequenceModel with the keys 'rnn', "
                             f"'readout' and optionally 'embedding'; got {sorted(parts)}")
        return _from_torch_module(parts["rnn"], dtype, nonlinearity,
                                  parts.get("readout"), parts.get("embedding"), head, loss)
    if isinstance(m, (nn.RNNBase, nn.RNNCellBase, nn.Linear, nn.Embedding)):
        raise TypeError(f"{kind.__module__}.{name} is a subclass of a torch module fastrnn "
                        f"converts; its forward may differ, so it is not converted (convert "
                        f"a plain module loaded with its state_dict)")
    raise TypeError(f"cannot convert {kind.__module__}.{name}: fastrnn converts nn.RNN, "
                    f"nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell, nn.GRUCell, nn.Linear, "
                    f"nn.Embedding (and a ModuleDict of rnn/readout/embedding); convert the "
                    f"parts of a larger model one by one")


def _assemble(rnn, readout, embedding, head, loss):
    """A SequenceModel around converted parts."""
    if readout is None:
        raise ValueError("a SequenceModel needs a readout (an nn.Linear)")
    if not isinstance(readout, Linear):
        raise TypeError(f"readout must be an nn.Linear, got {type(readout).__name__}")
    if embedding is not None and not isinstance(embedding, Embedding):
        raise TypeError(f"embedding must be an nn.Embedding, got {type(embedding).__name__}")
    head = "many_to_many" if head is None else head
    if head not in _HEADS:
        raise ValueError(f"head must be one of {sorted(_HEADS)}, got {head!r}")
    if readout.bias is None:
        raise ValueError("the readout must have a bias: fastrnn heads read out W h + b")
    width = rnn.state_size * rnn.num_directions
    if readout.in_features != width:
        raise ValueError(f"readout.in_features must equal the rnn's output width "
                         f"(proj_size or hidden_size)*num_directions={width}, got "
                         f"{readout.in_features}")
    kw = {"num_directions": rnn.num_directions} if head == "many_to_one" else {}
    h = _HEADS[head](readout.in_features, readout.out_features, dtype=rnn.dtype, seed=0, **kw)
    h.readout.load_state_dict(readout.state_dict())
    rnn.batch_first = False            # a SequenceModel takes sample-first data itself
    if embedding is not None and embedding.dtype != rnn.dtype:
        raise TypeError(f"the embedding has dtype {embedding.dtype}, the rnn {rnn.dtype}")
    return SequenceModel(rnn, h, "cross_entropy" if loss is None else loss, embedding)


# ---------------------------------------------------------------------------------------
# plain state_dicts (no torch needed)
# ---------------------------------------------------------------------------------------

def read_state_dict(path) -> dict:
    """The arrays of a state_dict file: an ``.npz`` (``numpy.savez(path, **state)``, read
    without pickle), or a ``.pt``/``.pth`` file written by ``torch.save(state_dict)``
    (needs torch; read with ``weights_only=True``).

    >>> import os, tempfile, numpy as np, fastrnn
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.npz")
    >>> np.savez(path, **fastrnn.RNN(2, 3, seed=0).state_dict())
    >>> sorted(fastrnn.torch_bridge.read_state_dict(path))
    ['bias_hh_l0', 'bias_ih_l0', 'weight_hh_l0', 'weight_ih_l0']
    """
    path = os.fsdecode(os.fspath(path))
    # a regular file only (a FIFO or a device would block or never end); not found,
    # directory: OSError
    with open_regular_file(path) as f:
        magic = f.read(4)
    if path.lower().endswith((".pt", ".pth")) or (magic[:2] == b"PK" and not
                                                  _is_npz(path)):
        try:
            import torch
        except ImportError:
            raise ValueError(f"{path} is a torch file, which needs torch to read; save the "
                             f"state_dict as .npz instead: numpy.savez(path, **{{k: "
                             f"v.numpy() for k, v in state_dict.items()}})") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:     # torch raises many kinds (UnpicklingError, RuntimeError)
            raise ValueError(f"{path} cannot be read as a torch state_dict: "
                             f"{' '.join(str(err).split()[:40])}") from None
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path} holds a {type(obj).__name__}, not a state_dict "
                             f"(save model.state_dict(), not the model)")
        return {str(k): v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
                for k, v in obj.items()}
    if magic[:2] != b"PK":
        raise ValueError(f"{path} is neither an .npz state_dict (a zip of .npy arrays) nor "
                         f"a torch file (.pt, .pth)")
    try:
        # every member is a tensor of the state_dict: all are read, within read_npz's
        # bound on their declared sizes
        return read_npz(path)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path} cannot be read as an .npz state_dict: {err}") from None


def _is_npz(path: str) -> bool:
    try:
        names = zip_names(path)     # from the zip's directory, of bounded size
    except (ValueError, OSError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def _as_arrays(state) -> dict:
    out = {}
    for k, v in state.items():
        if hasattr(v, "detach"):          # a torch tensor
            v = v.detach().cpu().numpy()
        a = np.asarray(v)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"state_dict[{k!r}] must be a numeric array, got dtype {a.dtype}")
        out[str(k)] = a
    return out


def _state_dtype(arrays: dict, dtype, what: str) -> np.dtype:
    if dtype is not None:
        return _float_dtype(dtype, "dtype")
    kinds = {a.dtype for a in arrays.values() if a.dtype.kind == "f"}
    if len(kinds) != 1:
        raise TypeError(f"{what} has arrays of dtypes {sorted(map(str, kinds))}; pass dtype=")
    return _float_dtype(kinds.pop(), what)


def _layer_from_state(arrays: dict, dtype, nonlinearity, what: str):
    """A recurrent layer from un-prefixed ``weight_ih_l{k}`` ... arrays (an LSTM with
    ``weight_hr_l{k}``: its projection, proj_size its rows)."""
    bad = [k for k in arrays if not _LAYER_KEY.match(k)]
    if bad:
        raise ValueError(f"{what}: unexpected keys {bad} for a recurrent layer")
    if "weight_ih_l0" not in arrays or "weight_hh_l0" not in arrays:
        raise ValueError(f"{what} has no weight_ih_l0 / weight_hh_l0")
    w_ih, w_hh = arrays["weight_ih_l0"], arrays["weight_hh_l0"]
    if w_ih.ndim != 2 or w_hh.ndim != 2:
        raise ValueError(f"{what}: weight_ih_l0 and weight_hh_l0 must be 2-D, got shapes "
                         f"{w_ih.shape} and {w_hh.shape}")
    w_hr = arrays.get("weight_hr_l0")
    kw = {}
    if w_hr is not None:                # LSTMP: weight_hh (4H, P), weight_hr (P, H)
        if w_hr.ndim != 2 or w_hh.shape != (4 * w_hr.shape[1], w_hr.shape[0]):
            raise ValueError(f"{what}: weight_hr_l0 of shape {w_hr.shape} is an LSTM's "
                             f"projection (P, H); weight_hh_l0 must then be (4H, P), got "
                             f"{w_hh.shape}")
        kw["proj_size"] = w_hr.shape[0]
    H = w_hh.shape[1] if w_hr is None else w_hr.shape[1]
    if H == 0 or w_hh.shape[0] % H or w_hh.shape[0] // H not in _GATES:
        raise ValueError(f"{what}: weight_hh_l0 has shape {w_hh.shape}; expected (G*H, H) "
                         f"with G = 1 (RNN), 4 (LSTM) or 3 (GRU)")
    mode = _GATES[w_hh.shape[0] // H]
    layers = 1 + max(int(m.group(2)) for k in arrays if (m := _LAYER_KEY.match(k)))
    if mode == "RNN":
        kw["nonlinearity"] = "tanh" if nonlinearity is None else nonlinearity
    elif nonlinearity is not None:
        raise ValueError(f"nonlinearity= applies to an RNN; {what} is a {mode} "
                         f"(weight_hh_l0 has {w_hh.shape[0] // H}*H rows)")
    layer = _LAYERS[mode](w_ih.shape[1], H, num_layers=layers, bias="bias_ih_l0" in arrays,
                          bidirectional="weight_ih_l0_reverse" in arrays,
                          dtype=_state_dtype(arrays, dtype, what), seed=0, **kw)
    _load(layer, arrays, what)
    return layer


def _cell_from_state(arrays: dict, dtype, nonlinearity, what: str):
    w_hh = arrays.get("weight_hh")
    if w_hh is None or "weight_ih" not in arrays or w_hh.ndim != 2:
        raise ValueError(f"{what}: a cell needs 2-D weight_ih and weight_hh")
    H = w_hh.shape[1]
    if H == 0 or w_hh.shape[0] % H or w_hh.shape[0] // H not in _GATES:
        raise ValueError(f"{what}: weight_hh has shape {w_hh.shape}; expected (G*H, H) with "
                         f"G = 1, 4 or 3")
    mode = _GATES[w_hh.shape[0] // H]
    kw = {}
    if mode == "RNN":
        kw["nonlinearity"] = "tanh" if nonlinearity is None else nonlinearity
    elif nonlinearity is not None:
        raise ValueError(f"nonlinearity= applies to an RNNCell; {what} is a {mode}Cell")
    cell = _CELLS[mode + "Cell"](arrays["weight_ih"].shape[1], H, bias="bias_ih" in arrays,
                                 dtype=_state_dtype(arrays, dtype, what), seed=0, **kw)
    _load(cell, arrays, what)
    return cell


def _load(module, arrays, what):
    try:
        module.load_state_dict(arrays)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{what}: {err}") from None


def _dense_from_state(arrays: dict, dtype, kind, what: str):
    w = arrays.get("weight")
    if w is None or w.ndim != 2 or set(arrays) - {"weight", "bias"}:
        raise ValueError(f"{what}: expected 'weight' (2-D) and optionally 'bias', got "
                         f"{sorted(arrays)}")
    if kind is None:
        kind = "linear" if "bias" in arrays else None
    if kind is None:
        raise ValueError(f"{what} holds only a 2-D 'weight': an nn.Linear without bias or an "
                         f"nn.Embedding? pass kind='linear' or kind='embedding'")
    dt = _state_dtype(arrays, dtype, what)
    m: Embedding | Linear
    if kind == "embedding":
        if "bias" in arrays:
            raise ValueError(f"{what}: an embedding has no bias")
        m = Embedding(w.shape[0], w.shape[1], dtype=dt, seed=0)
    else:
        m = Linear(w.shape[1], w.shape[0], bias="bias" in arrays, dtype=dt, seed=0)
    _load(m, arrays, what)
    return m


def from_state_dict(state, *, dtype=None, nonlinearity=None, kind=None, head=None,
                    loss=None, batch_first: bool = False):
    """The fastrnn object a plain ``state_dict`` describes; no torch needed.

    ``state`` is a mapping of names to arrays (numpy arrays or tensors) or a file path
    (see :func:`read_state_dict`).  The architecture is read from the names and shapes:

    * ``weight_ih_l0``, ``weight_hh_l0``, ... (an ``nn.RNN``/``LSTM``/``GRU``'s keys): the
      layer -- the cell type from the rows of ``weight_hh_l0`` (G*H: 1, 4, 3 gates), layers
      and direction from the names, biases if present; an RNN's ``nonlinearity`` is not in
      the weights (default 'tanh'); ``batch_first`` is not either (default False);
    * ``weight_ih``, ``weight_hh``, ...: the cell;
    * ``weight`` and ``bias``: a Linear; ``weight`` alone needs ``kind='linear'`` or
      ``kind='embedding'``;
    * prefixed keys, as a model's ``state_dict()`` has them (``rnn.weight_ih_l0``,
      ``fc.weight``, ``fc.bias``, ``emb.weight``): a :class:`~fastrnn.SequenceModel` of one
      recurrent layer, the Linear readout whose ``in_features`` is the layer's output width
      and optionally an Embedding whose ``embedding_dim`` is its input size; ``head``
      'many_to_many' (default), 'many_to_one' or 'one_to_many'; ``loss`` (default
      'cross_entropy').  Anything else in it is refused, naming the keys.

    >>> import fastrnn
    >>> model = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4,
    ...                                     output_size=2, head="many_to_one", seed=0)
    >>> state = {k.replace("head.readout", "fc"): v for k, v in model.state_dict().items()}
    >>> sorted(state)[:3]
    ['fc.bias', 'fc.weight', 'rnn.bias_hh_l0']
    >>> type(fastrnn.from_torch(state, head="many_to_one").head).__name__
    'ManyToOne'
    """
    what = "the state_dict"
    if isinstance(state, (str, os.PathLike)):
        what = os.fspath(state)
        state = read_state_dict(state)
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping of name -> array or a file path, got "
                        f"{type(state).__name__}")
    arrays = _as_arrays(state)
    if not arrays:
        raise ValueError(f"{what} is empty")
    if kind not in (None, "linear", "embedding"):
        raise ValueError(f"kind must be None, 'linear' or 'embedding', got {kind!r}")
    if all("." not in k for k in arrays):
        if any(_LAYER_KEY.match(k) for k in arrays):
            layer = _layer_from_state(arrays, dtype, nonlinearity, what)
            layer.batch_first = batch_first
            return layer
        if set(arrays) & _CELL_KEYS:
            return _cell_from_state(arrays, dtype, nonlinearity, what)
        if nonlinearity is not None:
            raise ValueError(f"nonlinearity= applies to an RNN; {what} holds {sorted(arrays)}")
        return _dense_from_state(arrays, dtype, kind, what)
    # a model: group by prefix
    groups: dict[str, dict] = {}
    for k, a in arrays.items():
        prefix, _, leaf = k.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = a
    rnn_groups = [p for p, g in groups.items() if any(_LAYER_KEY.match(k) for k in g)]
    if len(rnn_groups) != 1:
        raise ValueError(f"{what}: expected exactly one recurrent layer (keys weight_ih_l0, "
                         f"...), found {len(rnn_groups)} ({rnn_groups}); convert the parts "
                         f"one by one")
    rp = rnn_groups[0]
    rnn = _layer_from_state(groups.pop(rp), dtype, nonlinearity, f"{what} [{rp}]")
    width = rnn.hidden_size * rnn.num_directions
    readout = embedding = None
    for p, g in groups.items():
        w = g.get("weight")
        name = f"{what} [{p}]"
        if w is None or w.ndim != 2 or set(g) - {"weight", "bias"}:
            raise ValueError(f"{what}: the keys {sorted(p + '.' + k for k in g)} are neither "
                             f"the readout (nn.Linear) nor the embedding; fastrnn's "
                             f"SequenceModel is embedding -> rnn -> linear readout")
        if "bias" in g and w.shape[1] == width and readout is None:
            readout = _dense_from_state(g, dtype or rnn.dtype, "linear", name)
        elif "bias" not in g and w.shape[1] == rnn.input_size and embedding is None:
            embedding = _dense_from_state(g, dtype or rnn.dtype, "embedding", name)
        else:
            raise ValueError(f"{what}: {p}.weight {w.shape} fits neither the readout (an "
                             f"nn.Linear with bias and in_features={width}) nor the "
                             f"embedding (no bias, embedding_dim={rnn.input_size})")
    if readout is None:
        if embedding is None and not groups:
            rnn.batch_first = batch_first
            return rnn
        raise ValueError(f"{what} has no readout: an nn.Linear with bias and "
                         f"in_features={width}")
    return _assemble(rnn, readout, embedding, head, loss)


def from_torch(obj, *, dtype=None, nonlinearity=None, readout=None, embedding=None,
               head=None, loss=None, kind=None, batch_first: bool = False):
    """The fastrnn equivalent of a PyTorch module or state_dict.

    * ``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` -> :class:`~fastrnn.RNN`, ``LSTM``, ``GRU`` with
      the same ``num_layers``, ``bidirectional``, ``batch_first``, ``bias``, ``dropout``
      (and ``nonlinearity``); ``nn.RNNCell``/``LSTMCell``/``GRUCell`` -> the cells;
      ``nn.Linear`` -> :class:`~fastrnn.Linear`; ``nn.Embedding`` ->
      :class:`~fastrnn.Embedding` (with ``padding_idx``).  The weights are copied
      bit for bit, in the module's dtype (float32 or float64) unless ``dtype=`` is given.
    * ``from_torch(rnn, readout=linear, embedding=emb, head='many_to_one')`` builds a
      :class:`~fastrnn.SequenceModel` (head 'many_to_many' by default), as does an
      ``nn.ModuleDict`` with the keys ``rnn``, ``readout`` and optionally ``embedding``.
    * a mapping of arrays or a file path: :func:`from_state_dict` (no torch needed).

    Anything else -- an Embedding with ``max_norm``, other
    module types, subclasses whose ``forward`` may differ -- is refused with a
    ``TypeError`` or ``ValueError`` that names it.

    >>> import numpy as np, fastrnn
    >>> state = fastrnn.GRU(4, 8, num_layers=2, seed=0).state_dict()   # torch's names
    >>> fastrnn.from_torch(state)             # torch.nn.GRU(4, 8, num_layers=2) alike
    GRU(4, 8, num_layers=2, dtype=float32)
    """
    if isinstance(obj, (Mapping, str, os.PathLike)):
        if readout is not None or embedding is not None:
            raise TypeError("readout= and embedding= go with a torch module; a state_dict "
                            "holds the whole model under prefixes")
        return from_state_dict(obj, dtype=dtype, nonlinearity=nonlinearity, kind=kind,
                               head=head, loss=loss, batch_first=batch_first)
    if not _is_torch_module(obj):
        raise TypeError(f"cannot convert a {type(obj).__module__}.{type(obj).__name__}: "
                        f"from_torch takes a torch.nn module, a state_dict (mapping of "
                        f"arrays) or the path of one")
    if kind is not None or batch_first:
        raise TypeError("kind= and batch_first= apply to state_dicts; a torch module "
                        "carries its own configuration")
    return _from_torch_module(obj, dtype, nonlinearity, readout, embedding, head, loss)


def _is_torch_module(obj) -> bool:
    for cls in type(obj).__mro__:
        if cls.__name__ == "Module" and cls.__module__.startswith("torch.nn"):
            return True
    return False


# ---------------------------------------------------------------------------------------
# fastrnn -> torch
# ---------------------------------------------------------------------------------------

def _torch_load(tm, module) -> None:
    import torch
    state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in
             module.state_dict().items()}
    with torch.no_grad():
        tm.load_state_dict(state, strict=True)


def _check_torch_form(module) -> None:
    """TypeError, before torch is imported, for a layer or cell whose form torch.nn does
    not compute: a variant (the GRU with r before the product, the LSTM with peepholes)
    or one reversed direction."""
    kind = getattr(module, "kind", None)
    if kind is not None and not kind.in_torch:
        raise TypeError(f"cannot convert a {kind.label} to torch: torch.nn.{kind.name} "
                        f"does not compute that form")
    if getattr(module, "reverse", False):
        raise TypeError(f"cannot convert a {type(module).__name__} with reverse=True to "
                        f"torch: torch.nn has no reverse-only direction (it is the second "
                        f"half of a bidirectional layer)")


def to_torch(obj):
    """The PyTorch module equivalent to a fastrnn object, with the same weights (copied
    bit for bit, same dtype).

    RNN/LSTM/GRU -> ``nn.RNN``/``nn.LSTM``/``nn.GRU``; the cells -> ``nn.RNNCell`` etc.;
    Linear -> ``nn.Linear``; Embedding -> ``nn.Embedding``; a
    :class:`~fastrnn.SequenceModel` -> an ``nn.ModuleDict`` with ``rnn``, ``readout`` and
    (if it has one) ``embedding`` (the head's reading rule -- every step, or the last
    valid state -- is code, not weights: see the README).  The torch module is built
    without drawing from torch's random generator.

    >>> import fastrnn
    >>> fastrnn.to_torch(fastrnn.LSTM(4, 8, bidirectional=True, seed=0))
    LSTM(4, 8, bidirectional=True)
    """
    refuse_quantized(obj, "to_torch")
    kind = type(obj)
    if kind not in (*_LAYERS.values(), *_CELLS.values(), Linear, Embedding, SequenceModel):
        raise TypeError(f"cannot convert a {kind.__module__}.{kind.__name__} to torch: "
                        f"to_torch takes a fastrnn RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell, "
                        f"Linear, Embedding or SequenceModel")
    if kind is SequenceModel and type(obj.rnn) not in _LAYERS.values():
        # checked before torch is imported, so that the answer is the same without it
        raise TypeError(f"cannot convert a SequenceModel with a {type(obj.rnn).__name__} to "
                        f"torch: torch.nn has RNN, LSTM and GRU only")
    _check_torch_form(obj.rnn if kind is SequenceModel else obj)
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch needs PyTorch (pip install torch)") from None
    nn = torch.nn

    def skip(cls, *args, **kwargs):
        # torch initialises a new module from its global generator: leave the caller's
        # random stream as it was
        with torch.random.fork_rng(devices=[]):
            return cls(*args, **kwargs)

    if kind in _LAYERS.values():
        td = getattr(torch, obj.dtype.name)
        kw = {"nonlinearity": obj.nonlinearity} if kind is RNN else {}
        if obj.proj_size:
            kw["proj_size"] = obj.proj_size
        tm = skip(getattr(nn, kind.__name__), obj.input_size, obj.hidden_size,
                  num_layers=obj.num_layers, bias=obj.bias, batch_first=obj.batch_first,
                  dropout=obj.dropout if obj.num_layers > 1 else 0.0,
                  bidirectional=obj.bidirectional, dtype=td, **kw)
        if obj.num_layers == 1 and obj.dropout:
            tm.dropout = obj.dropout
        _torch_load(tm, obj)
        return tm
    if kind in _CELLS.values():
        td = getattr(torch, obj.dtype.name)
        kw = {"nonlinearity": obj.nonlinearity} if kind is RNNCell else {}
        tm = skip(getattr(nn, kind.__name__), obj.input_size, obj.hidden_size,
                  bias=obj.bias, dtype=td, **kw)
        _torch_load(tm, obj)
        return tm
    if kind is Linear:
        tm = skip(nn.Linear, obj.in_features, obj.out_features, bias=obj.bias is not None,
                  dtype=getattr(torch, obj.dtype.name))
        _torch_load(tm, obj)
        return tm
    if kind is Embedding:
        tm = skip(nn.Embedding, obj.num_embeddings, obj.embedding_dim,
                  padding_idx=obj.padding_idx, dtype=getattr(torch, obj.dtype.name))
        _torch_load(tm, obj)
        return tm
    parts = {"rnn": to_torch(obj.rnn), "readout": to_torch(obj.head.readout)}   # a model
    parts["rnn"].batch_first = True       # a SequenceModel's data is sample-first
    if obj.embedding is not None:
        parts = {"embedding": to_torch(obj.embedding), **parts}
    return nn.ModuleDict(parts)
