"""ONNX import: :func:`from_onnx`, the inverse of :func:`~fastrnn.export_onnx`.

Two kinds of graph are read:

* a graph :func:`~fastrnn.export_onnx` wrote for a recurrent layer, a cell or a
  :class:`~fastrnn.SequenceModel` (embedding, readout, any head): the same kind of object
  with the same configuration and bit for bit the same parameters.  The importer builds
  the object its nodes describe, exports it again and checks that both graphs are the
  same, node for node and value for value: no other arrangement of nodes is read.
* a graph of one ONNX ``RNN`` / ``LSTM`` / ``GRU`` node: a one-layer
  :class:`~fastrnn.RNN` / ``LSTM`` / ``GRU``.  ``W``, ``R``, ``B`` (and ``P``) are
  initializers, or graph inputs whose arrays are given in ``values=``.  The attributes
  fastrnn computes map to layer options (``_SUPPORTED``: directions, ``layout``,
  ``linear_before_reset``, peepholes, the activations); anything else is refused with a
  ``ValueError`` naming the node and the attribute.

The weights go back from ONNX's gate orders to fastrnn's (LSTM ``i, o, f, c`` ->
``i, f, g, o``, GRU ``z, r, h`` -> ``r, z, n``: the rows of
:meth:`fastrnn._kinds.Kind.onnx_rows`), ``B`` = ``concat(b_ih, b_hh)`` splits into the two
biases, ``P`` (``p_i, p_o, p_f``) becomes ``peephole_l0`` (``p_i, p_f, p_o``).  An absent
``B`` gives zero biases (still trainable); an absent or all-zero ``P`` no peepholes.

``sequence_lens``, ``initial_h`` and ``initial_c`` are run-time inputs, not parameters:
pass them to the layer as ``lengths=`` and ``state0=`` -- :func:`run_as_onnx` does it
and returns ONNX's outputs.  Graph inputs that are constants (initializers or
``values=``) are refused for ``sequence_lens``, and for the initial states unless they
are zeros (the layers' own initial state).  What a graph does not hold comes back as
the default: the loss of a model (``'cross_entropy'``), ``dropout`` (0) and an
embedding's ``padding_idx`` (None).  ``onnx`` is an optional dependency, imported when
:func:`from_onnx` runs.
"""

from __future__ import annotations

import inspect
import os
import re

import numpy as np

from ._kinds import KINDS, suffix
from .io import open_regular_file
from .onnx_export import _ONNX_PEEPHOLE_ROWS, _onnx, export_onnx
from .torch_bridge import (_CELLS, _HEADS, _LAYERS, _assemble, _dense_from_state, _float_dtype,
                           _load)

__all__ = ["from_onnx", "run_as_onnx"]


def _each(default, values: dict) -> dict:
    return {op: (default, values) for op in _LAYERS}


#: What the importer maps, in one place.  Per attribute of the ONNX recurrent operators
#: (and per optional input, ``P``), per operator: ``(ONNX's default, {value: the fastrnn
#: layer keywords it becomes})``.  An attribute not listed for its operator (``clip``,
#: ``activation_alpha``, ``activation_beta``, ``linear_before_reset`` of an LSTM, ...) or a
#: value not listed (``input_forget=1``, other activations) is refused, naming the node
#: and the attribute.  ``activations`` are one direction's (the same in both directions;
#: in any case: ``Tanh``, ``tanh``); ``P`` is True when given and not all zero;
#: ``hidden_size`` is read from ``R`` (and checked against the attribute).
_SUPPORTED: dict[str, dict[str, tuple[object, dict]]] = {
    "direction": _each("forward", {"forward": {}, "bidirectional": {"bidirectional": True},
                                   "reverse": {"reverse": True}}),
    "layout": _each(0, {0: {}, 1: {"batch_first": True}}),
    "activations": {
        "RNN": (("tanh",), {("tanh",): {"nonlinearity": "tanh"},
                            ("relu",): {"nonlinearity": "relu"}}),
        "LSTM": (("sigmoid", "tanh", "tanh"), {("sigmoid", "tanh", "tanh"): {}}),
        "GRU": (("sigmoid", "tanh"), {("sigmoid", "tanh"): {}}),
    },
    "linear_before_reset": {"GRU": (0, {0: {"reset_after": False}, 1: {}})},
    "input_forget": {"LSTM": (0, {0: {}})},
    "P": {"LSTM": (False, {False: {}, True: {"peephole": True}})},
}
_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
_MODEL_DOC = re.compile(r"^fastrnn SequenceModel \(\w+, (\w+)\)")
_HEAD_NAMES = {cls.__name__: name for name, cls in _HEADS.items()}


# ---------------------------------------------------------------------------------------
# one recurrent node
# ---------------------------------------------------------------------------------------

def _where(node) -> str:
    return f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node"


def _attributes(onnx, node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _activations(value, op: str, D: int, where: str) -> tuple[str, ...]:
    """One direction's activations from the attribute's list (one per direction)."""
    names = [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    n = len(next(iter(_SUPPORTED["activations"][op][1])))      # 1, 3, 2 a direction
    chunks = {tuple(a.lower() for a in names[d * n:(d + 1) * n]) for d in range(D)}
    if len(names) != n * D or len(chunks) != 1:
        raise ValueError(f"{where}: attribute activations={names} has no fastrnn equivalent "
                         f"(fastrnn takes {n} per direction, the same in every direction)")
    return chunks.pop()


def _options(attrs: dict, op: str, D: int, peepholes: bool, where: str) -> dict:
    """The layer keywords of a node's attributes (and of its input P), from _SUPPORTED."""
    for name in attrs:
        if name != "hidden_size" and op not in _SUPPORTED.get(name, {}):
            raise ValueError(f"{where}: attribute {name}={attrs[name]!r} has no fastrnn "
                             f"equivalent")
    given = {**attrs, "P": peepholes}
    if "activations" in attrs:
        given["activations"] = _activations(attrs["activations"], op, D, where)
    keywords: dict = {}
    for name, per_op in _SUPPORTED.items():
        if op not in per_op:
            continue
        default, values = per_op[op]
        value = given.get(name, default)
        value = value.decode() if isinstance(value, bytes) else \
            tuple(value) if isinstance(value, list) else value
        what = "input P (peepholes)" if name == "P" else f"attribute {name}={value!r}"
        if value not in values:
            raise ValueError(f"{where}: {what} has no fastrnn equivalent (fastrnn computes "
                             f"{', '.join(map(repr, values))})")
        keywords.update(values[value])
    return keywords


def _direction_count(attrs: dict) -> int:
    direction = attrs.get("direction", b"forward")
    return 2 if direction in (b"bidirectional", "bidirectional") else 1


def _shaped(a, shape: tuple, name: str, where: str) -> np.ndarray:
    if a.shape != shape:
        raise ValueError(f"{where}: input {name} has shape {a.shape}, expected {shape}")
    return a


class _Recurrent:
    """What one ONNX RNN/LSTM/GRU node says: its op, the layer keywords, sizes, dtype,
    its weights (W, R, B, P: ONNX's arrays; B and P None if absent) and the names of its
    run-time inputs (X, sequence_lens, initial_h, initial_c; '' if absent)."""

    def __init__(self, onnx, node, consts: dict):
        self.where = _where(node)
        self.op = node.op_type
        self.inputs = self._input_names(node)
        attrs = _attributes(onnx, node)
        D = _direction_count(attrs)
        P = self._const(consts, "P")
        self.options = _options(attrs, self.op, D, P is not None and bool(P.any()),
                                self.where)
        self._read_weights(consts, attrs.get("hidden_size"), D, P)
        self._runtime_inputs(consts)

    def _input_names(self, node) -> dict:
        """Input role (X, W, ...) -> the value's name ('' if absent)."""
        op, where = self.op, self.where
        if op not in _LAYERS or node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{where}: fastrnn reads RNN, LSTM and GRU nodes of the "
                             f"default domain, not {node.domain + '.' if node.domain else ''}"
                             f"{op}")
        takes = _INPUTS if op == "LSTM" else _INPUTS[:6]
        if len(node.input) > len(takes):
            raise ValueError(f"{where} has {len(node.input)} inputs; an ONNX {op} takes "
                             f"{', '.join(takes)}")
        return dict(zip(_INPUTS, list(node.input) + [""] * (len(_INPUTS) - len(node.input))))

    def _read_weights(self, consts: dict, hidden_size, D: int, P) -> None:
        """W, R, B and P (if it gives peepholes), their shapes checked; sizes, dtype."""
        where = self.where
        W, R = self._const(consts, "W"), self._const(consts, "R")
        if W is None or R is None:
            raise ValueError(f"{where}: inputs W and R are required")
        self.dtype = _float_dtype(W.dtype, f"{where}: input W")
        if R.ndim != 3 or W.ndim != 3:
            raise ValueError(f"{where}: inputs W and R must be 3-D, got shapes {W.shape} "
                             f"and {R.shape}")
        self.hidden_size = H = R.shape[2]
        self.input_size = W.shape[2]
        if hidden_size not in (None, H):
            raise ValueError(f"{where}: attribute hidden_size={hidden_size} but R has shape "
                             f"{R.shape} (hidden size {H})")
        GH = KINDS[self.op].gates * H
        self.W = _shaped(W, (D, GH, self.input_size), "W", where)
        self.R = _shaped(R, (D, GH, H), "R", where)
        B = self._const(consts, "B")
        self.B = None if B is None else _shaped(B, (D, 2 * GH), "B", where)
        self.P = (_shaped(P, (D, 3 * H), "P", where)
                  if P is not None and "peephole" in self.options else None)

    def _const(self, consts: dict, name: str) -> np.ndarray | None:
        value = self.inputs[name]
        if not value:
            return None
        if value not in consts:
            raise ValueError(f"{self.where}: input {name} ({value!r}) is neither an "
                             f"initializer nor given in values=")
        return consts[value]

    def _runtime_inputs(self, consts: dict) -> None:
        for name in ("X", "sequence_lens", "initial_h", "initial_c"):
            value = self.inputs[name]
            if value not in consts:
                continue
            if name in ("initial_h", "initial_c") and not np.any(consts[value]):
                self.inputs[name] = ""          # zeros: the layers' own initial state
                continue
            raise ValueError(f"{self.where}: input {name} ({value!r}) is a constant; fastrnn "
                             f"takes it at run time (lengths= and state0= of the layer's "
                             f"call), so it must be a graph input without a value")

    def parameters(self, suffixes: list[str], bias: bool) -> dict:
        """fastrnn's parameters from the ONNX arrays, direction d's names ending in
        ``suffixes[d]``; without ``bias`` none of the biases.  An absent B is zeros."""
        kind = KINDS[self.op]
        H = self.hidden_size
        rows = np.argsort(kind.onnx_rows(H))       # ONNX's gate order back to fastrnn's
        GH = rows.size
        B = np.zeros((self.W.shape[0], 2 * GH), self.dtype) if self.B is None else self.B
        out = {}
        for d, s in enumerate(suffixes):
            out["weight_ih" + s] = self.W[d][rows]
            out["weight_hh" + s] = self.R[d][rows]
            if bias:
                out[kind.biases[0] + s] = B[d, :GH][rows]
                out[kind.biases[1] + s] = B[d, GH:][rows]
            if self.P is not None:
                # the permutation swaps two rows: its own inverse
                out["peephole" + s] = self.P[d].reshape(3, H)[list(_ONNX_PEEPHOLE_ROWS)]
        return out


def _layer(nodes: list[_Recurrent], bias: bool, what: str):
    """The fastrnn layer of a stack of nodes (one per layer), its parameters loaded."""
    first = nodes[0]
    for n in nodes[1:]:
        if (n.op, n.options, n.hidden_size) != (first.op, first.options, first.hidden_size):
            raise ValueError(f"{what}: {n.where} differs from {first.where} in its kind, "
                             f"hidden size or attributes; a fastrnn layer stacks equal ones")
    layer = _LAYERS[first.op](first.input_size, first.hidden_size, num_layers=len(nodes),
                              bias=bias, dtype=first.dtype, seed=0, **first.options)
    params: dict = {}
    for k, n in enumerate(nodes):
        params.update(n.parameters([suffix(k, d) for d in range(layer.num_directions)],
                                   bias))
    _load(layer, params, what)
    return layer


def _cell(node: _Recurrent, bias: bool, what: str):
    """The fastrnn cell of a node that runs one step, its parameters loaded."""
    cls = _CELLS[node.op + "Cell"]
    extra = set(node.options) - set(inspect.signature(cls).parameters)
    if extra:
        raise ValueError(f"{what}: {node.where} does not run a cell's one step (a cell has "
                         f"no {sorted(extra)})")
    cell = cls(node.input_size, node.hidden_size, bias=bias, dtype=node.dtype, seed=0,
               **node.options)
    _load(cell, node.parameters([""], bias), what)
    return cell


# ---------------------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------------------

def _load_model(onnx, model):
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        with open_regular_file(path) as f:
            data = f.read()
        try:
            m = onnx.load_model_from_string(data)
        except Exception as err:      # protobuf's DecodeError, and others
            raise ValueError(f"{path!r} cannot be read as an ONNX model: {err}") from None
        onnx.load_external_data_for_model(m, os.path.dirname(os.path.abspath(path)))
        return m, repr(path)
    if isinstance(model, onnx.ModelProto):
        return model, "the ONNX model"
    raise TypeError(f"model must be a path or an onnx.ModelProto, got "
                    f"{type(model).__module__}.{type(model).__name__}")


def _constants(onnx, graph, values, what: str) -> dict:
    """Initializers and ``values`` (for graph inputs), name -> array."""
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    if values is None:
        return consts
    if not hasattr(values, "items"):
        raise TypeError(f"values must be a mapping of input name -> array, got "
                        f"{type(values).__name__}")
    inputs = {i.name for i in graph.input}
    for name, a in values.items():
        if name not in inputs:
            raise ValueError(f"values[{name!r}]: {what} has no graph input {name!r} (its "
                             f"inputs: {sorted(inputs)})")
        consts[name] = np.asarray(a)
    return consts


def _single_node(onnx, graph, consts: dict, what: str):
    node = _Recurrent(onnx, graph.node[0], consts)
    if not node.inputs["X"]:
        raise ValueError(f"{node.where}: input X is required")
    return _layer([node], bias=True, what=what)


def _producer(graph, value: str):
    """The node whose output is ``value``, or None."""
    for node in graph.node:
        if value in node.output:
            return node
    return None


def _const_input(consts: dict, node, index: int, what: str) -> np.ndarray:
    name = node.input[index] if index < len(node.input) else ""
    if name not in consts:
        raise ValueError(f"{what}: input {index} of {_where(node)} must be an initializer")
    return consts[name]


def _readout(graph, consts: dict, ops: dict, dtype, what: str):
    """(readout Linear, head name) of a model graph: Gemm (many-to-one) or MatMul + Add."""
    if "Gemm" in ops:
        gemm = ops["Gemm"]
        state = {"weight": _const_input(consts, gemm, 1, what)}
        if len(gemm.input) > 2:
            state["bias"] = _const_input(consts, gemm, 2, what)
        return _dense_from_state(state, dtype, "linear", what), "many_to_one"
    matmul = ops["MatMul"]
    state = {"weight": _const_input(consts, matmul, 1, what).T}
    add = next((n for n in graph.node if n.op_type == "Add" and matmul.output[0] in n.input),
               None)
    if add is not None:
        state["bias"] = _const_input(consts, add, 1, what)
    return _dense_from_state(state, dtype, "linear", what), "many_to_many"


def _head_name(doc: str, name: str) -> str:
    """One-to-many and many-to-many heads write the same graph: export_onnx names the
    head in the model's doc string."""
    m = _MODEL_DOC.match(doc)
    if name == "many_to_many" and m and m.group(1) in _HEAD_NAMES:
        return _HEAD_NAMES[m.group(1)]
    return name


def _model(graph, consts: dict, ops: dict, rnn, doc: str, what: str):
    """The SequenceModel around ``rnn``: readout, head and (a Gather) the embedding."""
    readout, head = _readout(graph, consts, ops, rnn.dtype, what)
    embedding = None
    if "Gather" in ops:
        weight = _const_input(consts, ops["Gather"], 0, what)
        embedding = _dense_from_state({"weight": weight}, rnn.dtype, "embedding", what)
    return _assemble(rnn, readout, embedding, _head_name(doc, head), None)


def _exported(onnx, model, consts: dict, what: str):
    """The fastrnn object of a graph export_onnx wrote, checked by exporting it again."""
    graph = model.graph
    nodes = [_Recurrent(onnx, n, consts) for n in graph.node if n.op_type in _LAYERS]
    if not nodes:
        raise ValueError(f"{what} has no RNN, LSTM or GRU node")
    bias = any(n.B is not None and n.B.any() for n in nodes)    # export: zeros for none
    ops = {n.op_type: n for n in graph.node}
    first = nodes[0].inputs
    options: dict = {}
    if "Unsqueeze" in ops:                 # a cell's step: x (B, I) -> X (1, B, I)
        obj = _cell(nodes[0], bias, what)
    elif "Gemm" in ops or "MatMul" in ops:
        obj = _model(graph, consts, ops, _layer(nodes, bias, what), model.doc_string, what)
        options["lengths"] = bool(first["sequence_lens"])
    else:
        obj = _layer(nodes, bias, what)
        producer = _producer(graph, first["X"])
        obj.batch_first = producer is not None and producer.op_type == "Transpose"
        options.update(lengths=bool(first["sequence_lens"]),
                       initial_state=bool(first["initial_h"]))
    _same_graph(onnx, graph, export_onnx(obj, dtype=nodes[0].dtype, **options).graph, obj,
                what)
    return obj


def _signature(onnx, graph):
    """The graph as plain values, apart from its names: each node's op, attributes and
    where its inputs come from (a graph input by name, a constant by value, an output by
    node and position); the graph's inputs and outputs with their types."""
    source: dict = {}
    for t in graph.initializer:
        a = onnx.numpy_helper.to_array(t)
        source[t.name] = ("constant", a.dtype.str, a.shape, a.tobytes())
    inputs = [(i.name, i.type.SerializeToString()) for i in graph.input
              if i.name not in source]
    source.update({name: ("input", name) for name, _ in inputs})
    nodes = []
    for k, n in enumerate(graph.node):
        ins = [source.get(v, ("unknown", v)) if v else "" for v in n.input]
        attrs = sorted((a.name, onnx.helper.get_attribute_value(a)) for a in n.attribute)
        nodes.append((n.op_type, n.domain, attrs, ins, len(n.output)))
        source.update({v: ("node", k, j) for j, v in enumerate(n.output)})
    outputs = [(o.name, o.type.SerializeToString(), source.get(o.name)) for o in graph.output]
    return nodes, inputs, outputs


def _same_graph(onnx, graph, expected, obj, what: str) -> None:
    got, want = _signature(onnx, graph), _signature(onnx, expected)
    if got == want:
        return
    nodes, exp = got[0], want[0]
    for k, (a, b) in enumerate(zip(nodes, exp)):
        if a != b:
            detail = (f"its node {k} ({graph.node[k].op_type} {graph.node[k].name!r}) "
                      f"differs from the {b[0]} node export_onnx writes there")
            break
    else:
        detail = (f"it has {len(nodes)} nodes where export_onnx writes {len(exp)}"
                  if len(nodes) != len(exp) else "its inputs or outputs differ from those "
                  f"export_onnx writes ({[i[0] for i in want[1]]} -> "
                  f"{[o[0] for o in want[2]]})")
    raise ValueError(f"{what} is not a graph fastrnn reads: {detail} for the "
                     f"{type(obj).__name__} its nodes describe, {obj!r}.  fastrnn reads "
                     f"the graphs export_onnx writes and graphs of one RNN, LSTM or GRU "
                     f"node")


def from_onnx(model, *, values=None):
    """The fastrnn layer or model an ONNX graph computes.

    ``model`` is the path of an ``.onnx`` file or an ``onnx.ModelProto``; ``values``
    maps graph inputs that hold parameters (``W``, ``R``, ``B``, ``P`` of a node) to
    their arrays.

    * A graph :func:`~fastrnn.export_onnx` wrote for a recurrent layer, a cell or a
      :class:`~fastrnn.SequenceModel`: that object (same configuration, the same
      parameters bit for bit; the loss is the default, which the graph does not hold).
    * A graph of one ``RNN`` / ``LSTM`` / ``GRU`` node: a one-layer
      :class:`~fastrnn.RNN` / ``LSTM`` / ``GRU``; ``layout=1`` gives ``batch_first``,
      ``direction='reverse'`` ``reverse=True``, ``linear_before_reset=0``
      ``reset_after=False``, ``P`` ``peephole=True``.  Its run-time inputs
      (``sequence_lens``, ``initial_h``, ``initial_c``) are the layer call's ``lengths=``
      and ``state0=``: see :func:`run_as_onnx`.

    Anything else is refused: an attribute fastrnn does not compute (``clip``,
    ``input_forget=1``, other activations, ...) with a ``ValueError`` naming the node and
    the attribute, another arrangement of nodes with a ``ValueError``, an object that is
    not a model with a ``TypeError``.

    >>> import numpy as np, fastrnn
    >>> gru = fastrnn.GRU(3, 4, num_layers=2, bidirectional=True, seed=0)
    >>> back = fastrnn.from_onnx(fastrnn.export_onnx(gru, lengths=True))
    >>> back
    GRU(3, 4, num_layers=2, bidirectional=True, dtype=float32)
    >>> all(np.array_equal(a, back.state_dict()[k]) for k, a in gru.state_dict().items())
    True
    """
    onnx = _onnx()
    m, what = _load_model(onnx, model)
    consts = _constants(onnx, m.graph, values, what)
    if len(m.graph.node) == 1:
        return _single_node(onnx, m.graph, consts, what)
    return _exported(onnx, m, consts, what)


def run_as_onnx(layer, X, sequence_lens=None, initial_h=None, initial_c=None) -> list:
    """Run ``layer`` (from :func:`from_onnx`) on an ONNX node's inputs and return its
    outputs ``[Y, Y_h]`` (LSTM: ``[Y, Y_h, Y_c]``), in ONNX's layout.

    ``X`` is (T, B, I), or (B, T, I) for ``layout=1`` (the layer's ``batch_first``): the
    layer's own input.  ``sequence_lens`` (B,) is its ``lengths``; ``initial_h`` and
    ``initial_c`` are (D, B, H), or (B, D, H) for ``layout=1``, where the layer's states
    are always (D, B, H).  ``Y`` is (T, D, B, H), or (B, T, D, H) for ``layout=1``, where
    the layer's ``y`` is (T, B, D*H) or (B, T, D*H); ``Y_h`` and ``Y_c`` have the layout
    of the initial states.

    >>> import numpy as np, fastrnn
    >>> from fastrnn.onnx_import import run_as_onnx
    >>> lstm = fastrnn.LSTM(3, 4, batch_first=True, bidirectional=True, seed=0)
    >>> Y, Y_h, Y_c = run_as_onnx(lstm, np.ones((5, 7, 3), np.float32), [7, 1, 2, 7, 3])
    >>> Y.shape, Y_h.shape
    ((5, 7, 2, 4), (5, 2, 4))
    """
    bf, has_c = layer.batch_first, layer.kind.has_cell
    if initial_c is not None and not has_c:
        raise ValueError(f"initial_c is an LSTM's; the layer is a {type(layer).__name__}")
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"X must be 3-D, (T, B, I) or (B, T, I) for layout=1, got shape "
                         f"{X.shape}")
    h, c = (None if s is None else np.asarray(s).swapaxes(0, 1) if bf else np.asarray(s)
            for s in (initial_h, initial_c))
    state0 = h
    if has_c and (h is not None or c is not None):
        zeros = np.zeros((layer.num_layers * layer.num_directions, X.shape[0 if bf else 1],
                          layer.hidden_size), layer.dtype)
        state0 = (zeros if h is None else h, zeros if c is None else c)
    y, state = layer(X, state0, lengths=sequence_lens)
    D, H = layer.num_directions, layer.hidden_size
    Y = y.reshape(y.shape[:2] + (D, H))               # (T, B, D, H) or (B, T, D, H)
    Y = Y if bf else Y.transpose(0, 2, 1, 3)
    states = list(state) if has_c else [state]
    return [Y, *(s.swapaxes(0, 1) if bf else s for s in states)]
