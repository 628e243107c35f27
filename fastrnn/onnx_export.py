"""ONNX export: fastrnn layers and sequence models as ONNX graphs.

The recurrent layers become ONNX ``RNN`` / ``LSTM`` / ``GRU`` nodes, one per layer, with
the weights rearranged to ONNX's conventions:

* LSTM gates: fastrnn (PyTorch) ``i, f, g, o`` -> ONNX ``i, o, f, c``;
* GRU gates: ``r, z, n`` -> ONNX ``z, r, h``, with ``linear_before_reset=1`` (PyTorch's and
  fastrnn's default GRU applies the reset gate after the recurrent product), or 0 for a
  GRU with ``reset_after=False``;
* ``W`` (D, G*H, I), ``R`` (D, G*H, H) and ``B`` (D, 2*G*H) = ``concat(b_ih, b_hh)``,
  direction ``forward``, ``reverse`` (``reverse=True``) or ``bidirectional``; an LSTM's
  peepholes (fastrnn's rows ``p_i, p_f, p_o``) as ``P`` (D, 3H) in ONNX's order ``i, o, f``;
* ``lengths`` -> ``sequence_lens``: padded steps give zero outputs and the final states
  are those of each sequence's last valid step, as fastrnn's ``lengths`` (PyTorch's packed
  sequences);
* between stacked layers, ``Y`` (T, D, B, H) is transposed and reshaped to (T, B, D*H).

A :class:`~fastrnn.SequenceModel` adds its embedding (``Gather``) in front and its readout
after: ``MatMul`` + ``Add`` at every step (many-to-many, one-to-many), or ``Gemm`` on the
last layer's final states (many-to-one).  ``onnx`` is an optional dependency
(``pip install 'fastrnn[onnx]'``), imported only here.
"""

from __future__ import annotations

import numpy as np

from ._version import __version__
from .cells import GRUCell, LSTMCell, RNNCell
from .heads import ManyToMany, ManyToOne
from .io import atomic_write
from .layers import GRU, LSTM, RNN, Embedding, Linear
from .models import Seq2Seq, SequenceModel
from .quantization import refuse_quantized

__all__ = ["export_onnx", "OPSET"]

OPSET = 17
_IR_VERSION = 8          # the IR version of opset 17: readable by ONNX Runtime >= 1.11


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastrnn[onnx]' "
                          "(or pip install onnx)") from None
    return onnx


class _Graph:
    """A small builder: nodes, initializers, unique names."""

    def __init__(self, onnx, dtype: np.dtype):
        self.onnx = onnx
        self.helper = onnx.helper
        self.dtype = dtype
        self.elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
        self.nodes: list = []
        self.inits: list = []
        self.inputs: list = []
        self.outputs: list = []
        self._count = 0

    def name(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def const(self, base: str, array) -> str:
        name = self.name(base)
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, base: str, values) -> str:
        return self.const(base, np.asarray(values, dtype=np.int64))

    def node(self, op: str, inputs, n_out: int = 1, base: str | None = None, **attrs):
        outs = [self.name(base or op.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op, list(inputs), outs, name=self.name(op),
                                                **attrs))
        return outs[0] if n_out == 1 else outs

    def input(self, name: str, elem, shape) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, value: str, name: str, elem, shape) -> None:
        self.nodes.append(self.helper.make_node("Identity", [value], [name],
                                                name=self.name("Identity")))
        self.outputs.append(self.helper.make_tensor_value_info(name, elem, shape))

    def model(self, graph_name: str, doc: str):
        h = self.helper
        graph = h.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.inits)
        m = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                         producer_name="fastrnn", producer_version=__version__,
                         doc_string=doc)
        m.ir_version = _IR_VERSION
        return m


# ---------------------------------------------------------------------------------------
# weights in ONNX's layout
# ---------------------------------------------------------------------------------------

#: an LSTM's peephole rows (fastrnn: p_i, p_f, p_o) in the order of ONNX's P (i, o, f)
_ONNX_PEEPHOLE_ROWS = (0, 2, 1)


def _onnx_weights(module, suffixes, H: int, dtype):
    """W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H) of the directions ``suffixes``, and P
    (D, 3H) for an LSTM with peepholes (else None)."""
    p = module._params
    idx = module.kind.onnx_rows(H)          # fastrnn's stacked gates in ONNX's order
    W = np.stack([p["weight_ih" + s].data[idx] for s in suffixes])
    R = np.stack([p["weight_hh" + s].data[idx] for s in suffixes])
    if ("bias_ih" + suffixes[0]) in p:
        B = np.stack([np.concatenate([p["bias_ih" + s].data[idx], p["bias_hh" + s].data[idx]])
                      for s in suffixes])
    else:
        B = np.zeros((len(suffixes), 2 * len(idx)), dtype)
    P = None
    if module.kind.peephole:
        P = np.stack([p["peephole" + s].data[list(_ONNX_PEEPHOLE_ROWS)].reshape(-1)
                      for s in suffixes]).astype(dtype)
    return W.astype(dtype), R.astype(dtype), B.astype(dtype), P


def _direction(module) -> str:
    """ONNX's direction of a layer (a cell: forward)."""
    if getattr(module, "bidirectional", False):
        return "bidirectional"
    return "reverse" if getattr(module, "reverse", False) else "forward"


def _recurrent_node(g: _Graph, module, X: str, weights, seq_lens: str, h0: str, c0: str,
                    tag: str):
    """One ONNX RNN/LSTM/GRU node of ``module``'s kind (a layer's or a cell's);
    ``weights`` from :func:`_onnx_weights`.  Returns (Y, Y_h, Y_c) names (Y_c '' unless
    LSTM)."""
    kind, H = module.kind, module.hidden_size
    W, R, B, P = weights
    attrs: dict[str, int | str | list[str]] = {"hidden_size": H,
                                               "direction": _direction(module),
                                               **dict(kind.onnx_attributes)}
    if kind.name == "RNN":
        relu = getattr(module, "nonlinearity", "tanh") == "relu"
        attrs["activations"] = ["Relu" if relu else "Tanh"] * W.shape[0]
    ins = [X, g.const(f"{tag}_W", W), g.const(f"{tag}_R", R), g.const(f"{tag}_B", B),
           seq_lens, h0]
    if kind.has_cell:
        ins += [c0, "" if P is None else g.const(f"{tag}_P", P)]
    while ins and ins[-1] == "":
        ins.pop()
    n_out = 3 if kind.has_cell else 2
    outs = g.node(kind.onnx_op, ins, n_out, base=tag, **attrs)
    return outs[0], outs[1], (outs[2] if kind.has_cell else "")


def _stack(g: _Graph, rnn, X: str, seq_lens: str, h0: str, c0: str):
    """The layers of ``rnn`` over time-major X (T, B, I): returns (y (T, B, D*H), h_n
    (L*D, B, H), c_n or '', the last layer's Y_h (D, B, H))."""
    mode, D, L = rnn.mode, rnn.num_directions, rnn.num_layers
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"cannot export an LSTM with proj_size={rnn.proj_size} to ONNX: "
                         f"ONNX's LSTM operator has no projection of h (export the layer "
                         f"without it, or serve it with fastrnn)")
    hs, cs = [], []
    flat = g.ints("shape_TB_DH", [0, 0, -1])
    y = X
    Y_h = ""
    for k in range(L):
        hk = ck = ""
        if h0:
            start, end = g.ints("start", [k * D]), g.ints("end", [(k + 1) * D])
            axes = g.ints("axes", [0])
            hk = g.node("Slice", [h0, start, end, axes], base=f"h0_l{k}")
            if c0:
                ck = g.node("Slice", [c0, start, end, axes], base=f"c0_l{k}")
        suffixes = [rnn._suffix(k, d) for d in range(D)]
        weights = _onnx_weights(rnn, suffixes, rnn.hidden_size, g.dtype)
        Y, Y_h, Y_c = _recurrent_node(g, rnn, y, weights, seq_lens, hk, ck,
                                      f"{mode.lower()}_l{k}")
        t = g.node("Transpose", [Y], perm=[0, 2, 1, 3], base=f"y_l{k}_TBDH")
        y = g.node("Reshape", [t, flat], base=f"y_l{k}")
        hs.append(Y_h)
        cs.append(Y_c)
    h_n = hs[0] if L == 1 else g.node("Concat", hs, axis=0, base="h_n")
    c_n = ""
    if mode == "LSTM":
        c_n = cs[0] if L == 1 else g.node("Concat", cs, axis=0, base="c_n")
    return y, h_n, c_n, Y_h


def _lengths_input(g: _Graph, onnx, with_lengths: bool) -> str:
    if not with_lengths:
        return ""
    g.input("lengths", onnx.TensorProto.INT64, ["batch"])
    return g.node("Cast", ["lengths"], to=onnx.TensorProto.INT32, base="sequence_lens")


def _export_layer(onnx, rnn, dt, with_lengths: bool, with_state: bool):
    g = _Graph(onnx, dt or rnn.dtype)
    D, L, H = rnn.num_directions, rnn.num_layers, rnn.hidden_size
    xshape = ["batch", "T", rnn.input_size] if rnn.batch_first else \
        ["T", "batch", rnn.input_size]
    x = g.input("x", g.elem, xshape)
    if rnn.batch_first:
        x = g.node("Transpose", [x], perm=[1, 0, 2], base="x_TBI")
    seq = _lengths_input(g, onnx, with_lengths)
    h0 = c0 = ""
    if with_state:
        h0 = g.input("h0", g.elem, [L * D, "batch", H])
        if rnn.mode == "LSTM":
            c0 = g.input("c0", g.elem, [L * D, "batch", H])
    y, h_n, c_n, _ = _stack(g, rnn, x, seq, h0, c0)
    if rnn.batch_first:
        y = g.node("Transpose", [y], perm=[1, 0, 2], base="y_BTF")
        g.output(y, "y", g.elem, ["batch", "T", D * H])
    else:
        g.output(y, "y", g.elem, ["T", "batch", D * H])
    g.output(h_n, "h_n", g.elem, [L * D, "batch", H])
    if c_n:
        g.output(c_n, "c_n", g.elem, [L * D, "batch", H])
    return g.model(f"fastrnn_{rnn.mode}",
                   f"fastrnn {rnn!r}: inputs x{', lengths' if with_lengths else ''}"
                   f"{', h0' if with_state else ''}{', c0' if with_state and c0 else ''}; "
                   f"outputs y, h_n{', c_n' if c_n else ''}")


def _export_cell(onnx, cell, dt):
    g = _Graph(onnx, dt or cell.dtype)
    H, mode = cell.hidden_size, cell.mode
    x = g.input("x", g.elem, ["batch", cell.input_size])
    h = g.input("h", g.elem, ["batch", H])
    c = g.input("c", g.elem, ["batch", H]) if mode == "LSTM" else ""
    ax0 = g.ints("axes", [0])
    X = g.node("Unsqueeze", [x, ax0], base="x_1BI")
    h0 = g.node("Unsqueeze", [h, ax0], base="h_1BH")
    c0 = g.node("Unsqueeze", [c, ax0], base="c_1BH") if c else ""
    weights = _onnx_weights(cell, [""], H, g.dtype)
    _, Y_h, Y_c = _recurrent_node(g, cell, X, weights, "", h0, c0, mode.lower())
    g.output(g.node("Squeeze", [Y_h, ax0], base="h_new"), "h_new", g.elem, ["batch", H])
    if Y_c:
        g.output(g.node("Squeeze", [Y_c, ax0], base="c_new"), "c_new", g.elem, ["batch", H])
    return g.model(f"fastrnn_{type(cell).__name__}",
                   f"fastrnn {cell!r}: one step; inputs x, h{', c' if c else ''}; outputs "
                   f"h_new{', c_new' if c else ''}")


def _readout(g: _Graph, lin: Linear, y: str) -> str:
    W = g.const("readout_WT", np.ascontiguousarray(lin.weight.data.T))
    out = g.node("MatMul", [y, W], base="readout_mm")
    if lin.bias is not None:
        out = g.node("Add", [out, g.const("readout_b", lin.bias.data)], base="readout")
    return out


def _export_model(onnx, model: SequenceModel, dt, with_lengths: bool):
    rnn, head = model.rnn, model.head
    g = _Graph(onnx, dt or model.dtype)
    if model.embedding is not None:
        tokens = g.input("x", onnx.TensorProto.INT64, ["batch", "T"])
        tT = g.node("Transpose", [tokens], perm=[1, 0], base="tokens_TB")
        emb = g.const("embedding", model.embedding.weight.data)
        x = g.node("Gather", [emb, tT], axis=0, base="x_TBE")
    else:
        x = g.input("x", g.elem, ["batch", "T", rnn.input_size])
        x = g.node("Transpose", [x], perm=[1, 0, 2], base="x_TBI")
    seq = _lengths_input(g, onnx, with_lengths)
    y, _, _, Y_h = _stack(g, rnn, x, seq, "", "")
    C = head.out_features
    if isinstance(head, ManyToOne):
        # features: the last layer's final states of both directions side by side (B, D*H)
        t = g.node("Transpose", [Y_h], perm=[1, 0, 2], base="h_last_BDH")
        feat = g.node("Reshape", [t, g.ints("shape_B_DH", [0, -1])], base="features")
        lin = head.readout
        ins = [feat, g.const("readout_W", lin.weight.data)]
        if lin.bias is not None:
            ins.append(g.const("readout_b", lin.bias.data))
        out = g.node("Gemm", ins, transB=1, base="out")
        g.output(out, "out", g.elem, ["batch", C])
    elif isinstance(head, ManyToMany):
        out = _readout(g, head.readout, y)
        out = g.node("Transpose", [out], perm=[1, 0, 2], base="out_BTC")
        g.output(out, "out", g.elem, ["batch", "T", C])
    else:
        raise TypeError(f"cannot export a SequenceModel with a {type(head).__name__} head "
                        f"to ONNX (many-to-many, one-to-many and many-to-one are exported)")
    kind = "tokens" if model.embedding is not None else "x"
    return g.model("fastrnn_SequenceModel",
                   f"fastrnn SequenceModel ({type(rnn).__name__}, {type(head).__name__}): "
                   f"input x = {kind} (batch, T{', features' if kind == 'x' else ''})"
                   f"{', lengths (batch,)' if with_lengths else ''}; output out = the "
                   f"model's forward() (logits or values), sample-first")


def _export_linear(onnx, lin: Linear, dt):
    g = _Graph(onnx, dt or lin.dtype)
    x = g.input("x", g.elem, ["batch", lin.in_features])
    g.output(_readout(g, lin, x), "y", g.elem, ["batch", lin.out_features])
    return g.model("fastrnn_Linear", f"fastrnn {lin!r}: y = x W^T + b")


def _export_embedding(onnx, emb: Embedding, dt):
    g = _Graph(onnx, dt or emb.dtype)
    t = g.input("tokens", onnx.TensorProto.INT64, ["batch", "T"])
    y = g.node("Gather", [g.const("weight", emb.weight.data), t], axis=0, base="y")
    g.output(y, "y", g.elem, ["batch", "T", emb.embedding_dim])
    return g.model("fastrnn_Embedding", f"fastrnn {emb!r}: y = weight[tokens]")


def export_onnx(obj, path=None, *, lengths: bool = False, initial_state: bool = False,
                dtype=None):
    """Export ``obj`` as an ONNX model (opset 17); write it to ``path`` if given (at once,
    through :func:`fastrnn.io.atomic_write`: readers never see a partial file) and return
    the ``onnx.ModelProto``.

    ``obj`` and the graph's inputs and outputs (``batch`` and ``T`` are dynamic):

    * :class:`~fastrnn.RNN` / ``LSTM`` / ``GRU``: ``x`` (T, batch, I) (or (batch, T, I)
      with ``batch_first``), ``lengths`` (batch,) int64 if ``lengths=True``, ``h0`` (and
      ``c0``) (L*D, batch, H) if ``initial_state=True``; outputs ``y``, ``h_n`` (and
      ``c_n``) -- the layer's ``__call__``;
    * :class:`~fastrnn.SequenceModel` (many-to-many, one-to-many, many-to-one heads): ``x``
      (batch, T, I), or int64 tokens (batch, T) with an embedding, and ``lengths`` if
      asked for; output ``out`` -- :meth:`SequenceModel.forward` (logits or values);
    * the cells: one step, inputs ``x`` (batch, I), ``h`` (and ``c``) (batch, H); outputs
      ``h_new`` (and ``c_new``);
    * :class:`~fastrnn.Linear`: ``x`` (batch, in) -> ``y``; :class:`~fastrnn.Embedding`:
      int64 ``tokens`` (batch, T) -> ``y``.

    Sequences given ``lengths`` must have at least one step.  A :class:`~fastrnn.Seq2Seq`
    (its greedy decoding is a loop over generated tokens) is refused: export its
    ``encoder`` and ``decoder`` layers and run the loop outside.

    The graph computes in the model's dtype unless ``dtype`` (float32 or float64) is
    given.  ONNX Runtime's CPU kernels of the recurrent operators run float32 only: export
    a float64 model with ``dtype=numpy.float32`` to serve it there.

    >>> import fastrnn
    >>> graph = fastrnn.export_onnx(fastrnn.GRU(3, 4, num_layers=2, seed=0), lengths=True)
    >>> [n.op_type for n in graph.graph.node if n.op_type in ("RNN", "LSTM", "GRU")]
    ['GRU', 'GRU']
    >>> [i.name for i in graph.graph.input]
    ['x', 'lengths']
    """
    refuse_quantized(obj, "export_onnx")
    onnx = _onnx()
    kind = type(obj)
    dt = None
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
    if kind in (RNN, LSTM, GRU):
        m = _export_layer(onnx, obj, dt, bool(lengths), bool(initial_state))
    else:
        if initial_state:
            raise ValueError(f"initial_state=True applies to a recurrent layer, not to a "
                             f"{kind.__name__}")
        if lengths and kind is not SequenceModel:
            raise ValueError(f"lengths=True applies to a recurrent layer or a SequenceModel, "
                             f"not to a {kind.__name__}")
        if kind is SequenceModel:
            m = _export_model(onnx, obj, dt, bool(lengths))
        elif kind in (RNNCell, LSTMCell, GRUCell):
            m = _export_cell(onnx, obj, dt)
        elif kind is Linear:
            m = _export_linear(onnx, obj, dt)
        elif kind is Embedding:
            m = _export_embedding(onnx, obj, dt)
        elif kind is Seq2Seq:
            raise TypeError("a Seq2Seq is not exported to ONNX: its greedy decoding loops "
                            "over generated tokens; export model.encoder and model.decoder "
                            "(recurrent layers) and run the loop outside")
        else:
            raise TypeError(f"cannot export a {kind.__module__}.{kind.__name__} to ONNX: "
                            f"export_onnx takes a fastrnn RNN, LSTM, GRU, RNNCell, LSTMCell, "
                            f"GRUCell, Linear, Embedding or SequenceModel")
    onnx.checker.check_model(m)
    if path is not None:
        with atomic_write(path) as f:      # the protobuf bytes onnx.save_model writes
            f.write(m.SerializeToString())
    return m
