"""fastrnn.from_onnx: export_onnx's graphs come back as the same objects, one-node graphs
as layers that compute what ONNX Runtime, onnx.reference and ONNX's own operator test
cases compute, and everything else is refused with an error that names it."""

import importlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import fastrnn  # noqa: E402
from fastrnn.onnx_import import run_as_onnx  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from _tools import PARITY_TOL  # noqa: E402
from test_onnx import _session, ort  # noqa: E402, F401  (the ONNX Runtime fixture)

LAYERS = {"RNN": fastrnn.RNN, "LSTM": fastrnn.LSTM, "GRU": fastrnn.GRU}


def _same_parameters(a, b):
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert list(pa) == list(pb)
    for name, p in pa.items():
        assert p.data.dtype == pb[name].data.dtype, name
        assert np.array_equal(p.data, pb[name].data), name


# ---------------------------------------------------------------------------------------
# export_onnx -> from_onnx: the same object
# ---------------------------------------------------------------------------------------

KINDS = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", None), ("GRU", None)]
VARIANTS = {  # layer keywords, export keywords
    "plain": ({}, {}),
    "bf_nobias_f64": ({"batch_first": True, "bias": False, "dtype": np.float64}, {}),
    "lengths_state": ({}, {"lengths": True, "initial_state": True}),
}


@pytest.mark.parametrize("name,nl", KINDS, ids=["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("layers,bi", [(1, False), (1, True), (2, False), (2, True)],
                         ids=["1", "1bi", "2", "2bi"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_layer_round_trip(name, nl, layers, bi, variant):
    kw, export_kw = VARIANTS[variant]
    kw = {**kw, **({"nonlinearity": nl} if nl else {})}
    layer = LAYERS[name](3, 5, num_layers=layers, bidirectional=bi, seed=1, **kw)
    back = fastrnn.from_onnx(fastrnn.export_onnx(layer, **export_kw))
    assert type(back) is type(layer) and back.config() == layer.config()
    assert repr(back) == repr(layer)
    _same_parameters(back, layer)
    shape = (4, 6, 3) if layer.batch_first else (6, 4, 3)        # B=4, T=6
    x = np.random.default_rng(0).standard_normal(shape).astype(layer.dtype)
    lengths = [6, 2, 5, 1]
    for got, want in zip(back(x, lengths=lengths), layer(x, lengths=lengths)):
        for g, w in zip(*(s if isinstance(s, tuple) else (s,) for s in (got, want))):
            assert np.array_equal(g, w)


OPTION_LAYERS = [  # (class, options): the forms ONNX has and torch.nn has not
    (fastrnn.RNN, {"reverse": True, "nonlinearity": "relu"}),
    (fastrnn.LSTM, {"reverse": True, "peephole": True}),
    (fastrnn.LSTM, {"peephole": True, "bidirectional": True}),
    (fastrnn.GRU, {"reverse": True, "reset_after": False}),
    (fastrnn.GRU, {"reset_after": False, "bidirectional": True, "batch_first": True}),
]


@pytest.mark.parametrize("cls,options", OPTION_LAYERS,
                         ids=[f"{c.__name__}-{'-'.join(o)}" for c, o in OPTION_LAYERS])
@pytest.mark.parametrize("layers", [1, 2])
def test_layer_with_options_round_trip(cls, options, layers):
    layer = cls(3, 5, num_layers=layers, seed=2, **options)
    back = fastrnn.from_onnx(fastrnn.export_onnx(layer, lengths=True, initial_state=True))
    assert back.config() == layer.config() and repr(back) == repr(layer)
    _same_parameters(back, layer)
    shape = (4, 6, 3) if layer.batch_first else (6, 4, 3)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got, want = back(x, lengths=[6, 2, 5, 1]), layer(x, lengths=[6, 2, 5, 1])
    assert np.array_equal(got[0], want[0])


MODELS = [("lstm", "many_to_one", True, None, np.float32),
          ("gru", "many_to_one", False, 11, np.float64),
          ("rnn", "many_to_many", False, None, np.float64),
          ("gru", "many_to_many", True, 11, np.float32),
          ("lstm", "one_to_many", False, 11, np.float32),
          ("rnn", "one_to_many", True, None, np.float64)]


@pytest.mark.parametrize("cell,head,bi,vocab,dtype", MODELS)
@pytest.mark.parametrize("layers", [1, 2])
def test_model_round_trip(tmp_path, cell, head, bi, vocab, dtype, layers):
    m = fastrnn.SequenceModel.build(cell, input_size=None if vocab else 3, vocab_size=vocab,
                                    embedding_dim=4 if vocab else None, hidden_size=5,
                                    output_size=2, head=head, num_layers=layers,
                                    bidirectional=bi, dtype=dtype, seed=0)
    path = tmp_path / "model.onnx"
    fastrnn.export_onnx(m, path, lengths=layers == 2)
    back = fastrnn.from_onnx(path)
    assert type(back.head) is type(m.head) and back.config() == m.config()
    _same_parameters(back, m)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, (3, 6)) if vocab else rng.standard_normal((3, 6, 3))
    assert np.array_equal(back.forward(x, [6, 1, 4]), m.forward(x, [6, 1, 4]))


@pytest.mark.parametrize("cell", [fastrnn.RNNCell(3, 4, seed=0),
                                  fastrnn.RNNCell(3, 4, nonlinearity="relu", seed=0),
                                  fastrnn.LSTMCell(3, 4, bias=False, seed=0),
                                  fastrnn.GRUCell(3, 4, dtype=np.float64, seed=0),
                                  fastrnn.LSTMCell(3, 4, peephole=True, seed=0),
                                  fastrnn.GRUCell(3, 4, reset_after=False, seed=0)],
                         ids=["rnn_tanh", "rnn_relu", "lstm_nobias", "gru_f64",
                              "lstm_peephole", "gru_reset_before"])
def test_cell_round_trip(cell):
    back = fastrnn.from_onnx(fastrnn.export_onnx(cell))
    assert type(back) is type(cell) and repr(back) == repr(cell)
    _same_parameters(back, cell)
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    state = (h, h) if isinstance(cell, fastrnn.LSTMCell) else h
    assert np.array_equal(np.asarray(back(x, state)), np.asarray(cell(x, state)))


@pytest.mark.parametrize("head", ["many_to_one", "one_to_many"])
def test_model_with_options_round_trip(head):
    rnn = fastrnn.LSTM(4, 5, num_layers=2, reverse=True, peephole=True, seed=0)
    cls = fastrnn.ManyToOne if head == "many_to_one" else fastrnn.OneToMany
    m = fastrnn.SequenceModel(rnn, cls(5, 3, seed=0), embedding=fastrnn.Embedding(9, 4))
    back = fastrnn.from_onnx(fastrnn.export_onnx(m, lengths=True))
    assert back.config() == m.config()
    _same_parameters(back, m)
    x = np.random.default_rng(0).integers(0, 9, (3, 6))
    assert np.array_equal(back.forward(x, [6, 1, 4]), m.forward(x, [6, 1, 4]))


def test_float64_exported_as_float32_comes_back_float32():
    m = fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=4, output_size=2,
                                    dtype=np.float64, seed=0)
    back = fastrnn.from_onnx(fastrnn.export_onnx(m, dtype=np.float32))
    assert back.dtype == np.float32
    for name, p in back.named_parameters():
        assert np.array_equal(p.data, dict(m.named_parameters())[name].data
                              .astype(np.float32))


# ---------------------------------------------------------------------------------------
# one ONNX node: a layer, against ONNX Runtime and onnx.reference
# ---------------------------------------------------------------------------------------

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
RUNTIME = ("sequence_lens", "initial_h", "initial_c")


def _node_model(op, arrays: dict, dtype, *, runtime=(), as_inputs=(), outputs=None,
                **attrs):
    """A model of one ``op`` node: X (and the ``runtime`` inputs) graph inputs, the
    ``arrays`` (W, R, B, P) initializers, or graph inputs where named in ``as_inputs``."""
    h = onnx.helper
    elem = h.np_dtype_to_tensor_dtype(np.dtype(dtype))
    names = ["X", "W", "R", "B", *RUNTIME, "P"][:8 if op == "LSTM" else 6]
    used = [n if n == "X" or n in arrays or n in runtime else "" for n in names]
    while not used[-1]:
        used.pop()
    inputs = [h.make_tensor_value_info(n, onnx.TensorProto.INT32 if n == "sequence_lens"
                                       else elem, None)
              for n in used if n and (n not in arrays or n in as_inputs)]
    inits = [onnx.numpy_helper.from_array(np.asarray(a, dtype), n) for n, a in arrays.items()
             if n not in as_inputs]
    outputs = outputs or (["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"])
    node = h.make_node(op, used, outputs, name=f"{op.lower()}_node", **attrs)
    graph = h.make_graph([node], "one_node", inputs,
                         [h.make_tensor_value_info(o, elem, None) for o in outputs if o],
                         inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _random_node(op, D, H=4, I=3, dtype=np.float32, bias=True, peepholes=False, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[op]
    arrays = {"W": rng.uniform(-0.5, 0.5, (D, G * H, I)),
              "R": rng.uniform(-0.5, 0.5, (D, G * H, H))}
    if bias:
        arrays["B"] = rng.uniform(-0.5, 0.5, (D, 2 * G * H))
    if peepholes:
        arrays["P"] = rng.uniform(-0.5, 0.5, (D, 3 * H))
    return {k: v.astype(dtype) for k, v in arrays.items()}


def _runtime(op, D, layout, T=5, B=3, H=4, I=3, dtype=np.float32, seed=1):
    rng = np.random.default_rng(seed)
    feeds = {"X": rng.standard_normal((B, T, I) if layout else (T, B, I)),
             "initial_h": rng.standard_normal((B, D, H) if layout else (D, B, H))}
    if op == "LSTM":
        feeds["initial_c"] = rng.standard_normal(feeds["initial_h"].shape)
    feeds = {k: v.astype(dtype) for k, v in feeds.items()}
    feeds["sequence_lens"] = np.array([5, 2, 4][:B], np.int32)
    return feeds


def _fastrnn_outputs(layer, feeds):
    return run_as_onnx(layer, feeds["X"], feeds.get("sequence_lens"),
                       feeds.get("initial_h"), feeds.get("initial_c"))


# (op, attributes, peepholes)
NODES = [("RNN", {"activations": ["Tanh"]}, False),
         ("RNN", {"direction": "bidirectional", "activations": ["Relu", "Relu"]}, False),
         ("RNN", {"layout": 1}, False),
         ("RNN", {"direction": "reverse"}, False),
         ("LSTM", {}, False),
         ("LSTM", {"direction": "bidirectional", "layout": 1}, False),
         ("LSTM", {"direction": "reverse"}, False),
         ("LSTM", {"direction": "reverse", "layout": 1}, False),
         ("LSTM", {}, True),
         ("LSTM", {"direction": "bidirectional"}, True),
         ("LSTM", {"direction": "reverse"}, True),
         ("GRU", {"linear_before_reset": 1}, False),
         ("GRU", {"linear_before_reset": 1, "direction": "bidirectional"}, False),
         ("GRU", {}, False),
         ("GRU", {"direction": "bidirectional"}, False),
         ("GRU", {"direction": "bidirectional", "layout": 1}, False),
         ("GRU", {"direction": "reverse"}, False)]
NODE_IDS = [f"{op}-{'-'.join(f'{k}={v}' for k, v in a.items()) or 'defaults'}"
            f"{'-P' if p else ''}" for op, a, p in NODES]


def _node_case(op, attrs, peepholes, dtype, seed=0):
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    arrays = _random_node(op, D, dtype=dtype, peepholes=peepholes, seed=seed)
    model = _node_model(op, arrays, dtype, runtime=RUNTIME, hidden_size=4, **attrs)
    return model, _runtime(op, D, attrs.get("layout", 0), dtype=dtype)


def _nodes(keep):
    return pytest.mark.parametrize("op,attrs,peepholes",
                                   [n for n in NODES if keep(n[1])],
                                   ids=[i for i, n in zip(NODE_IDS, NODES) if keep(n[1])])


# ONNX Runtime's CPU kernels refuse layout=1 ("Batchwise recurrent operations (layout ==
# 1) are not supported"); onnx.reference's RNN computes Tanh (and Affine) only
@_nodes(lambda attrs: not attrs.get("layout"))
def test_node_against_onnx_runtime(ort, op, attrs, peepholes):  # noqa: F811
    """float32, with sequence lengths and initial states."""
    model, feeds = _node_case(op, attrs, peepholes, np.float32)
    got = _fastrnn_outputs(fastrnn.from_onnx(model), feeds)
    want = _session(ort, model).run(None, feeds)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, **PARITY_TOL[np.float32])


@_nodes(lambda attrs: "Relu" not in attrs.get("activations", ()))
def test_node_against_onnx_reference(op, attrs, peepholes):
    """float64, with initial states (onnx.reference ignores sequence_lens: full lengths)."""
    model, feeds = _node_case(op, attrs, peepholes, np.float64, seed=2)
    feeds["sequence_lens"][:] = feeds["X"].shape[1 if attrs.get("layout") else 0]
    got = _fastrnn_outputs(fastrnn.from_onnx(model), feeds)
    want = ReferenceEvaluator(model).run(None, feeds)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, **PARITY_TOL[np.float64])


def test_node_without_bias_has_zero_biases():
    arrays = _random_node("LSTM", 2, bias=False)
    layer = fastrnn.from_onnx(_node_model("LSTM", arrays, np.float32,
                                          direction="bidirectional"))
    assert layer.bias and layer.bidirectional
    assert not any(p.data.any() for n, p in layer.named_parameters() if "bias" in n)


def test_node_weights_as_values():
    """W, R, B as graph inputs whose arrays come in values=; the gates in fastrnn's order."""
    arrays = _random_node("LSTM", 1)
    model = _node_model("LSTM", arrays, np.float32, as_inputs=("W", "R", "B"))
    layer = fastrnn.from_onnx(model, values=arrays)
    H = 4
    i, o, f, c = np.split(arrays["W"][0], 4)
    assert np.array_equal(layer.weight_ih_l0.data, np.concatenate([i, f, c, o]))
    b_i, b_o, b_f, b_c = np.split(arrays["B"][0, 4 * H:], 4)
    assert np.array_equal(layer.bias_hh_l0.data, np.concatenate([b_i, b_f, b_c, b_o]))


def test_zero_constants_are_the_default_state_and_no_peepholes():
    """initial_h/initial_c constants of zeros are the layers' own initial state; a P of
    zeros is no peepholes: both are read, exactly equivalent."""
    arrays = {**_random_node("LSTM", 1), "initial_h": np.zeros((1, 3, 4)),
              "initial_c": np.zeros((1, 3, 4)), "P": np.zeros((1, 12))}
    layer = fastrnn.from_onnx(_node_model("LSTM", arrays, np.float32))
    assert "peephole_l0" not in dict(layer.named_parameters())


# ---------------------------------------------------------------------------------------
# ONNX's own operator test cases (onnx/backend/test/case/node/{rnn,gru,lstm}.py)
# ---------------------------------------------------------------------------------------

def _operator_cases() -> dict:
    """name -> (node, inputs, outputs) of every case of the RNN, GRU and LSTM operators,
    captured by calling each ``export*`` of their test classes with ``expect`` replaced."""
    cases: dict = {}

    def capture(node, inputs, outputs, name, **kwargs):
        cases[name] = (node, list(inputs), list(outputs))

    # test_*_seq_length draw their weights from numpy's global generator: seeded here,
    # and left as it was
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002
    for op in ("RNN", "GRU", "LSTM"):
        module = importlib.import_module(f"onnx.backend.test.case.node.{op.lower()}")
        original, module.expect = module.expect, capture
        try:
            for attr in sorted(vars(getattr(module, op))):
                if attr.startswith("export"):
                    getattr(getattr(module, op), attr)()
        finally:
            module.expect = original
    np.random.set_state(state)  # noqa: NPY002
    return cases


CASES = _operator_cases()
# The cases fastrnn's mathematics does not cover, with the reason: none.  Each of the 18
# uses what fastrnn computes: forward, reverse and bidirectional directions, layout 0
# and 1, biases or none, sequence_lens, initial states, the GRU's linear_before_reset=0
# (ONNX's default: reset_after=False), peepholes, the default activations.  Nothing in
# them uses clip, input_forget, activation_alpha/beta or other activations, which
# fastrnn refuses (test_refused_attribute).  A case listed here must be refused.
NOT_COVERED: dict[str, str] = {}


def _case_model(node, inputs, dtype):
    """The case as a one-node model: every input a graph input; X and the run-time inputs
    as feeds, W, R, B, P as values."""
    h = onnx.helper
    present = [n for n in node.input if n]
    arrays = dict(zip(present, inputs))
    elem = h.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = h.make_graph(
        [node], "case",
        [h.make_tensor_value_info(n, onnx.TensorProto.INT32 if n == "sequence_lens" else elem,
                                  a.shape) for n, a in arrays.items()],
        [h.make_tensor_value_info(o, elem, None) for o in node.output if o])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    cast = {n: a if n == "sequence_lens" else a.astype(dtype) for n, a in arrays.items()}
    values = {n: cast.pop(n) for n in ("W", "R", "B", "P") if n in cast}
    return model, values, cast




@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_onnx_operator_case(name, dtype):
    """float32 against the case's expected outputs; float64 against onnx.reference on the
    case's inputs in float64."""
    node, inputs, outputs = CASES[name]
    model, values, feeds = _case_model(node, inputs, dtype)
    if name in NOT_COVERED:
        with pytest.raises(ValueError, match=rf"^{node.op_type} node"):
            fastrnn.from_onnx(model, values=values)
        return
    layer = fastrnn.from_onnx(model, values=values)
    got = run_as_onnx(layer, feeds["X"], feeds.get("sequence_lens"),
                      feeds.get("initial_h"), feeds.get("initial_c"))
    got = [g for g, o in zip(got, node.output) if o]        # the outputs the case checks
    if dtype == np.float32:
        want = outputs
    else:
        want = ReferenceEvaluator(model).run(None, {**feeds, **values})
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, **PARITY_TOL[dtype])


def test_every_operator_case_is_accounted_for():
    assert len(CASES) == 18
    assert set(NOT_COVERED) <= set(CASES)


# ---------------------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------------------

REFUSED = [  # (op, attributes, what the error names)
    ("RNN", {"clip": 1.0}, "clip"),
    ("LSTM", {"input_forget": 1}, "input_forget=1"),
    ("RNN", {"activations": ["LeakyRelu"]}, "activations"),
    ("RNN", {"activations": ["Tanh"], "activation_alpha": [0.5]}, "activation_alpha"),
    ("RNN", {"direction": "bidirectional", "activations": ["Tanh", "Relu"]}, "activations"),
    ("LSTM", {"activations": ["Sigmoid", "Tanh", "Relu"]}, "activations"),
    ("GRU", {"activations": ["HardSigmoid", "Tanh"]}, "activations"),
    ("LSTM", {"linear_before_reset": 1}, "linear_before_reset"),
    ("GRU", {"direction": "sideways"}, "direction='sideways'"),
    ("RNN", {"layout": 2}, "layout=2"),
]


@pytest.mark.parametrize("op,attrs,needle", REFUSED, ids=[r[2] for r in REFUSED])
def test_refused_attribute(op, attrs, needle):
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    model = _node_model(op, _random_node(op, D), np.float32, **attrs)
    with pytest.raises(ValueError, match=rf"^{op} node '{op.lower()}_node': .*{needle}"):
        fastrnn.from_onnx(model)


def test_refused_constant_runtime_inputs():
    arrays = {**_random_node("GRU", 1), "sequence_lens": np.array([2, 2], np.int32)}
    model = _node_model("GRU", arrays, np.float32, linear_before_reset=1)
    with pytest.raises(ValueError, match="GRU node 'gru_node': input sequence_lens .* "
                                         "constant; .*lengths="):
        fastrnn.from_onnx(model)
    arrays = {**_random_node("GRU", 1), "initial_h": np.ones((1, 2, 4))}
    model = _node_model("GRU", arrays, np.float32, linear_before_reset=1)
    with pytest.raises(ValueError, match="input initial_h .* constant"):
        fastrnn.from_onnx(model)


def test_refused_shapes_and_missing_weights():
    arrays = _random_node("LSTM", 1)
    model = _node_model("LSTM", arrays, np.float32, as_inputs=("W",))
    with pytest.raises(ValueError, match="input W .* neither an initializer nor given"):
        fastrnn.from_onnx(model)
    with pytest.raises(ValueError, match=r"input B has shape \(1, 7\), expected \(1, 32\)"):
        fastrnn.from_onnx(_node_model("LSTM", {**arrays, "B": np.zeros((1, 7))},
                                      np.float32))
    with pytest.raises(ValueError, match="hidden_size=5 but R"):
        fastrnn.from_onnx(_node_model("LSTM", arrays, np.float32, hidden_size=5))
    with pytest.raises(ValueError, match=r"input W has shape \(1, 16, 3\), expected "
                                         r"\(2, 16, 3\)"):
        fastrnn.from_onnx(_node_model("LSTM", arrays, np.float32,
                                      direction="bidirectional"))
    with pytest.raises(TypeError, match="float16"):
        fastrnn.from_onnx(_node_model("RNN", _random_node("RNN", 1), np.float16))


def test_refused_models(tmp_path):
    with pytest.raises(TypeError, match="model must be a path or an onnx.ModelProto, got "
                                        "builtins.dict"):
        fastrnn.from_onnx({})
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf \xff\xff")
    with pytest.raises(ValueError, match="cannot be read as an ONNX model"):
        fastrnn.from_onnx(bad)
    with pytest.raises(FileNotFoundError):
        fastrnn.from_onnx(tmp_path / "missing.onnx")
    model = _node_model("RNN", _random_node("RNN", 1), np.float32)
    with pytest.raises(ValueError, match=r"values\['Q'\]: the ONNX model has no graph "
                                         r"input 'Q'"):
        fastrnn.from_onnx(model, values={"Q": np.zeros(3)})
    with pytest.raises(TypeError, match="values must be a mapping"):
        fastrnn.from_onnx(model, values=[1])
    model.graph.node[0].op_type = "Scan"
    with pytest.raises(ValueError, match="Scan node 'rnn_node': fastrnn reads RNN, LSTM and "
                                         "GRU nodes of the default domain, not Scan"):
        fastrnn.from_onnx(model)
    model.graph.node[0].op_type, model.graph.node[0].domain = "LSTM", "com.example"
    with pytest.raises(ValueError, match="not com.example.LSTM"):
        fastrnn.from_onnx(model)


def test_external_data(tmp_path):
    """A model file whose weights are kept beside it (onnx's external data)."""
    layer = fastrnn.GRU(3, 4, num_layers=2, seed=0)
    path = tmp_path / "gru.onnx"
    onnx.save_model(fastrnn.export_onnx(layer), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="gru.data", size_threshold=0)
    assert (tmp_path / "gru.data").exists()
    _same_parameters(fastrnn.from_onnx(str(path)), layer)


@pytest.mark.parametrize("obj", [fastrnn.Linear(3, 2, seed=0), fastrnn.Embedding(5, 2, seed=0)],
                         ids=["linear", "embedding"])
def test_refused_graphs_without_recurrent_nodes(obj):
    with pytest.raises(ValueError, match="the ONNX model has no RNN, LSTM or GRU node"):
        fastrnn.from_onnx(fastrnn.export_onnx(obj))


def test_refused_cell_graph_of_a_bidirectional_node():
    model = fastrnn.export_onnx(fastrnn.GRUCell(3, 4, seed=0))
    gru = next(n for n in model.graph.node if n.op_type == "GRU")
    gru.attribute.append(onnx.helper.make_attribute("direction", "bidirectional"))
    W = next(t for t in model.graph.initializer if t.name == gru.input[1])
    with pytest.raises(ValueError, match="input W has shape"):
        fastrnn.from_onnx(model)
    W.CopyFrom(onnx.numpy_helper.from_array(np.zeros((2, 12, 3), np.float32), W.name))
    for name, shape in ((gru.input[2], (2, 12, 4)), (gru.input[3], (2, 24))):
        t = next(t for t in model.graph.initializer if t.name == name)
        t.CopyFrom(onnx.numpy_helper.from_array(np.zeros(shape, np.float32), name))
    with pytest.raises(ValueError, match=r"does not run a cell's one step \(a cell has no "
                                         r"\['bidirectional'\]\)"):
        fastrnn.from_onnx(model)


def test_refused_altered_export():
    """A node added to (or changed in) an exported graph: not the graph export_onnx writes,
    so it is not read as one."""
    model = fastrnn.export_onnx(fastrnn.LSTM(3, 4, num_layers=2, seed=0))
    relu = onnx.helper.make_node("Relu", [model.graph.node[2].output[0]], ["r"], name="x")
    model.graph.node[3].input[0] = "r"
    model.graph.node.insert(3, relu)
    with pytest.raises(ValueError, match=r"not a graph fastrnn reads: its node 3 \(Relu "
                                         r"'x'\) differs from the LSTM node"):
        fastrnn.from_onnx(model)
    model = fastrnn.export_onnx(fastrnn.GRU(3, 4, seed=0))
    model.graph.node[1].attribute[0].ints[:] = [0, 1, 2, 3]      # the Transpose's perm
    with pytest.raises(ValueError, match=r"its node 1 \(Transpose"):
        fastrnn.from_onnx(model)
    model = fastrnn.export_onnx(fastrnn.RNN(3, 4, seed=0))
    identity = next(n for n in model.graph.node if n.output[0] == "y")
    model.graph.output[0].name = identity.output[0] = "output"
    with pytest.raises(ValueError, match=r"inputs or outputs differ .*\['x'\] -> "
                                         r"\['y', 'h_n'\]"):
        fastrnn.from_onnx(model)


def test_run_as_onnx_refusals():
    with pytest.raises(ValueError, match="initial_c is an LSTM's"):
        run_as_onnx(fastrnn.GRU(3, 4), np.zeros((2, 1, 3), np.float32),
                    initial_c=np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match=r"X must be 3-D, .* got shape \(2, 3\)"):
        run_as_onnx(fastrnn.GRU(3, 4), np.zeros((2, 3), np.float32))


def test_run_as_onnx_lstm_with_initial_h_only():
    """An absent initial_c is zeros, as in ONNX."""
    lstm = fastrnn.LSTM(3, 4, batch_first=True, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    h0 = np.random.default_rng(1).standard_normal((2, 1, 4)).astype(np.float32)
    Y, Y_h, Y_c = run_as_onnx(lstm, x, initial_h=h0)
    y, (h, c) = lstm(x, (h0.swapaxes(0, 1), np.zeros((1, 2, 4), np.float32)))
    assert np.array_equal(Y[:, :, 0], y) and np.array_equal(Y_h[:, 0], h[0])
    assert np.array_equal(Y_c[:, 0], c[0])
