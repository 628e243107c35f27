"""The forms beyond the plain cells: the GRU with the reset gate before the recurrent
product (``reset_after=False``), the LSTM with peepholes (``peephole=True``), the LSTM
with a projection (PyTorch's ``proj_size``), one direction read backwards
(``reverse=True``), and PyTorch's other input forms (an unbatched 2-D ``x``, an empty
batch).

Each form against the NumPy reference (float64 to 1e-10), ONNX Runtime and ONNX's
reference evaluator on the same weights, PyTorch where PyTorch computes it; the finite
differences are in tests/test_gradcheck.py, the kernels' own cases in tests/test_core.py.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from fastrnn import _core, _engine
from fastrnn import reference as ref
from fastrnn._kinds import ALL_KINDS, VARIANTS
from _tools import PARITY_TOL as TOL

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]
# (layer class, constructor options, the reference's mode and options)
FORMS = {
    "gru_reset_before": (fastrnn.GRU, {"reset_after": False}, "GRU", {"reset_after": False}),
    "lstm_peephole": (fastrnn.LSTM, {"peephole": True}, "LSTM", {}),
    "rnn_reverse": (fastrnn.RNN, {"reverse": True}, "RNN", {"reverse": True}),
    "lstm_reverse": (fastrnn.LSTM, {"reverse": True}, "LSTM", {"reverse": True}),
    "gru_reverse": (fastrnn.GRU, {"reverse": True}, "GRU", {"reverse": True}),
    "gru_reset_before_reverse": (fastrnn.GRU, {"reset_after": False, "reverse": True}, "GRU",
                                 {"reset_after": False, "reverse": True}),
    "lstm_peephole_reverse": (fastrnn.LSTM, {"peephole": True, "reverse": True}, "LSTM",
                              {"reverse": True}),
    "lstm_proj": (fastrnn.LSTM, {"proj_size": 4}, "LSTM", {}),
    "lstm_proj_peephole": (fastrnn.LSTM, {"proj_size": 2, "peephole": True}, "LSTM", {}),
    "lstm_layer_norm": (fastrnn.LSTM, {"layer_norm": True}, "LSTM", {}),
    "lstm_layer_norm_reverse": (fastrnn.LSTM, {"layer_norm": True, "reverse": True}, "LSTM",
                                {"reverse": True}),
}
# (num_layers, bidirectional, lengths of a batch of 5, batch_first)
STACKS = [(1, False, None, False), (2, False, [7, 2, 5, 1, 7], True),
          (2, True, [3, 7, 7, 1, 4], False), (1, True, None, True)]
STACK_IDS = ["L1", "L2-lengths-bf", "L2-bi-lengths", "L1-bi-bf"]
T, B, I, H = 7, 5, 3, 6


def _cases(forms, layouts, ids):
    """(form, layout) pairs, without a reversed form in a bidirectional layout (reverse is
    one direction)."""
    return [pytest.param(f, layout, id=f"{f}-{i}") for f in forms
            for layout, i in zip(layouts, ids)
            if not (FORMS[f][1].get("reverse") and (layout[1] if isinstance(layout, tuple)
                                                    else layout))]


def _state(rng, layer, dtype):
    LD = layer.num_layers * layer.num_directions
    h0 = rng.standard_normal((LD, B, layer.state_size)).astype(dtype)
    return (h0, rng.standard_normal((LD, B, H)).astype(dtype)) if layer.kind.has_cell else h0


def _as64(state):
    return None if state is None else np.asarray(state, np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("form,stack", _cases(list(FORMS), STACKS, STACK_IDS))
def test_layer_matches_reference(form, stack, dtype):
    cls, options, mode, ref_options = FORMS[form]
    num_layers, bidirectional, lengths, batch_first = stack
    layer = cls(I, H, num_layers=num_layers, bidirectional=bidirectional,
                batch_first=batch_first, dtype=dtype, seed=5, **options)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    state0 = _state(rng, layer, dtype)
    lstm = layer.kind.has_cell
    lengths = None if lengths is None else np.array(lengths)
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    y_r, h_r, c_r, cache = ref.stack_forward(
        mode, x.astype(np.float64), params, num_layers=num_layers,
        bidirectional=bidirectional, h0=_as64(state0[0] if lstm else state0),
        c0=_as64(state0[1]) if lstm else None, lengths=lengths, **ref_options)
    dy = rng.standard_normal(y_r.shape)
    dh_n = rng.standard_normal(h_r.shape)
    dx_r, dh0_r, _, grads_r = ref.stack_backward(dy, dh_n, None, cache)

    x_in = x.swapaxes(0, 1) if batch_first else x
    y, state = layer(x_in, state0, lengths=lengths)
    y = y.swapaxes(0, 1) if batch_first else y
    assert_allclose(y, y_r, **TOL[dtype])
    assert_allclose(state[0] if lstm else state, h_r, **TOL[dtype])
    if lstm:
        assert_allclose(state[1], c_r, **TOL[dtype])

    layer.zero_grad()
    _, _, backward = layer.forward_train(x_in, state0, lengths=lengths)
    dy_in = dy.astype(dtype)
    dx, dstate0 = backward(dy_in.swapaxes(0, 1) if batch_first else dy_in,
                           (dh_n.astype(dtype), np.zeros_like(c_r, dtype)) if lstm
                           else dh_n.astype(dtype))
    assert_allclose(dx.swapaxes(0, 1) if batch_first else dx, dx_r, **TOL[dtype])
    assert_allclose(dstate0[0] if lstm else dstate0, dh0_r, **TOL[dtype])
    assert sorted(grads_r) == sorted(name for name, _ in layer.named_parameters())
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, grads_r[name], err_msg=name,
                        **_grad_tol(layer, dtype, grads_r[name]))


def _grad_tol(layer, dtype, desired):
    """The parity tolerance of a parameter gradient.  In float32 a layer normalisation
    divides by the spread of a few values (H = 6 here), so its gradients carry an error
    of about 1e-6 of their largest value: NumPy's float32 reference has the same."""
    if layer.kind.layer_norm and dtype == np.float32:
        return dict(rtol=TOL[dtype]["rtol"],
                    atol=TOL[dtype]["atol"] * max(1.0, float(np.abs(desired).max())))
    return TOL[dtype]


def _flip_valid(a, lengths):
    """Each sequence's valid steps in reverse order (time-major a), padding left as is."""
    out = a.copy()
    for b, n in enumerate(lengths):
        out[:n, b] = a[:n, b][::-1]
    return out


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU", "FastRNN", "FastGRNN"])
def test_reverse_reads_each_sequence_backwards(kind):
    """A reverse=True layer over x is the forward layer (same weights) over each sequence
    reversed, with its outputs reversed back; its final state is the state at step 0."""
    cls = getattr(fastrnn, kind)
    forward = cls(I, H, num_layers=2, dtype=np.float64, seed=3)
    backward = cls(I, H, num_layers=2, reverse=True, dtype=np.float64, seed=4)
    backward.load_state_dict(forward.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([7, 3, 1, 7, 5])
    y_rev, s_rev = backward(x, lengths=lengths)
    y_fwd, s_fwd = forward(_flip_valid(x, lengths), lengths=lengths)
    assert_allclose(y_rev, _flip_valid(y_fwd, lengths), rtol=1e-12, atol=1e-12)
    pairs = zip(s_rev, s_fwd) if forward.kind.has_cell else [(s_rev, s_fwd)]
    for a, b in pairs:
        assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_reverse_layer_is_the_second_half_of_a_bidirectional_one():
    """reverse=True computes what the _reverse weights of a bidirectional layer compute."""
    bi = fastrnn.LSTM(I, H, bidirectional=True, dtype=np.float64, seed=0)
    rev = fastrnn.LSTM(I, H, reverse=True, dtype=np.float64, seed=1)
    rev.load_state_dict({k.replace("_reverse", ""): v for k, v in bi.state_dict().items()
                         if k.endswith("_reverse")})
    x = np.random.default_rng(1).standard_normal((T, B, I))
    lengths = np.array([2, 7, 4, 4, 1])
    y_bi, (h_bi, c_bi) = bi(x, lengths=lengths)
    y, (h, c) = rev(x, lengths=lengths)
    assert_allclose(y, y_bi[:, :, H:], rtol=1e-12, atol=1e-12)
    assert_allclose(h[0], h_bi[1], rtol=1e-12, atol=1e-12)
    assert_allclose(c[0], c_bi[1], rtol=1e-12, atol=1e-12)


def test_variants_are_records_with_their_own_kernels():
    rows = {k.kernel_id: _core.kind_row(k.kernel_id) for k in ALL_KINDS}
    assert len(rows) == len(ALL_KINDS)              # one kernel number each
    rb, lp = VARIANTS["GRU", "reset_before"], VARIANTS["LSTM", "peephole"]
    assert (rb.kernel_id, lp.kernel_id) == (_core.KIND_GRU_RB, _core.KIND_LSTM_P)
    assert rows[rb.kernel_id]["reset_before"] and not rows[rb.kernel_id]["product_apart"]
    assert rows[lp.kernel_id]["peephole"] and rows[lp.kernel_id]["loop_sums"] == 3
    assert lp.cell_shapes(I, H)[-1] == ("peephole", (3, H))
    assert [name for name, _ in rb.cell_shapes(I, H)] == \
        [name for name, _ in fastrnn.GRU(I, H).kind.cell_shapes(I, H)]


def test_default_forms_are_unchanged():
    """The defaults are PyTorch's forms, with the same parameters and the same draws."""
    assert fastrnn.GRU(I, H).kind is fastrnn.GRU(I, H, reset_after=True).kind
    assert not fastrnn.LSTM(I, H).kind.vectors and not fastrnn.LSTM(I, H).layer_norm
    a, b = fastrnn.GRU(I, H, seed=2), fastrnn.GRU(I, H, reset_after=False, seed=2)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and np.array_equal(pa.data, pb.data)
    assert fastrnn.GRU(I, H).config() == {**fastrnn.GRU(I, H).config()} and \
        "reset_after" not in fastrnn.GRU(I, H).config()
    assert fastrnn.LSTM(I, H, peephole=True).config()["peephole"] is True


@pytest.mark.parametrize("kwargs,message", [
    ({"reverse": True, "bidirectional": True}, "does not combine"),
    ({"reverse": 1}, "reverse"),
])
def test_bad_options(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fastrnn.GRU(I, H, **kwargs)


def test_options_of_another_kind_are_refused():
    from fastrnn._kinds import layer_kind
    with pytest.raises(ValueError, match="option of the GRU"):
        layer_kind("LSTM", reset_after=False)
    with pytest.raises(ValueError, match="option of the LSTM"):
        layer_kind("GRU", peephole=True)
    with pytest.raises(TypeError):
        fastrnn.LSTM(I, H, reset_after=False)
    with pytest.raises((TypeError, ValueError), match="peephole"):
        fastrnn.LSTM(I, H, peephole="yes")


@pytest.mark.parametrize("form", ["gru_reset_before", "lstm_peephole", "lstm_layer_norm"])
def test_cells_step_as_their_layers(form):
    cls, options, _, _ = FORMS[form]
    cell = getattr(fastrnn, cls.__name__ + "Cell")(I, H, dtype=np.float64, seed=2, **options)
    layer = cls(I, H, dtype=np.float64, seed=9, **options)
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    x = np.random.default_rng(3).standard_normal((T, B, I))
    state = None
    for t in range(T):
        state = cell(x[t], state)
    _, final = layer(x)
    pairs = zip(state, final) if cell.kind.has_cell else [(state, final)]
    for a, b in pairs:
        assert_allclose(a, b[0], rtol=1e-12, atol=1e-12)
    assert ("peephole=True" in repr(cell)) == (form == "lstm_peephole")


@pytest.mark.parametrize("form", ["gru_reset_before", "lstm_peephole", "lstm_proj",
                                  "lstm_layer_norm"])
def test_stepper_streams_the_variants(form):
    cls, options, _, _ = FORMS[form]
    model = fastrnn.SequenceModel.build(cls.__name__.lower(), input_size=I, hidden_size=H,
                                        output_size=4, num_layers=2, seed=0, **options)
    x = np.random.default_rng(4).standard_normal((B, T, I)).astype(np.float32)
    stepper = model.stepper(batch_size=B)
    out = np.stack([stepper.step(x[:, t]).copy() for t in range(T)], axis=1)
    assert_allclose(out, model.forward(x), rtol=1e-5, atol=1e-6)


def test_stepper_refuses_a_reverse_layer():
    model = fastrnn.SequenceModel.build("gru", input_size=I, hidden_size=H, output_size=2,
                                        reverse=True, seed=0)
    with pytest.raises(ValueError, match="reverse=True model cannot stream"):
        model.stepper()


@pytest.mark.parametrize("form", ["gru_reset_before", "lstm_peephole", "gru_reverse",
                                  "lstm_proj", "lstm_layer_norm"])
def test_models_save_load_and_learn(form, tmp_path):
    cls, options, _, _ = FORMS[form]
    model = fastrnn.SequenceModel.build(cls.__name__.lower(), input_size=2, hidden_size=16,
                                        output_size=2, head="many_to_one", seed=0, **options)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 9, 2)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)        # the sign of a running sum
    history = model.fit(x, y, epochs=15, batch_size=16, progress=False, seed=0,
                        optimizer=fastrnn.optim.Adam(model.parameters(), lr=0.02))
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    fastrnn.save(model, tmp_path / "m.npz")
    loaded = fastrnn.load(tmp_path / "m.npz")
    assert repr(loaded.rnn) == repr(model.rnn)
    assert np.array_equal(loaded.forward(x), model.forward(x))


@pytest.mark.parametrize("obj", [fastrnn.GRU(I, H, reset_after=False),
                                 fastrnn.LSTM(I, H, peephole=True),
                                 fastrnn.RNN(I, H, reverse=True),
                                 fastrnn.GRUCell(I, H, reset_after=False),
                                 fastrnn.LSTMCell(I, H, peephole=True),
                                 fastrnn.LSTM(I, H, layer_norm=True),
                                 fastrnn.LSTMCell(I, H, layer_norm=True)],
                         ids=["gru_rb", "lstm_p", "rnn_rev", "grucell_rb", "lstmcell_p",
                              "lstm_ln", "lstmcell_ln"])
def test_to_torch_refuses_forms_torch_lacks(obj):
    """Refused before torch is imported: the same answer without torch."""
    with pytest.raises(TypeError, match="torch"):
        fastrnn.to_torch(obj)


# ---------------------------------------------------------------------------- ONNX

ONNX_FORMS = ["gru_reset_before", "lstm_peephole", "rnn_reverse", "gru_reset_before_reverse",
              "lstm_peephole_reverse"]


def _onnx_case(form, bidirectional):
    cls, options, _, _ = FORMS[form]
    layer = cls(I, H, num_layers=2, bidirectional=bidirectional, seed=7, **options)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return layer, x, _state(rng, layer, np.float32)


ONNX_CASES = _cases(ONNX_FORMS, [False, True], ["uni", "bi"])


@pytest.mark.parametrize("form,bidirectional", ONNX_CASES)
def test_onnx_runtime_matches(form, bidirectional):
    ort = pytest.importorskip("onnxruntime")
    layer, x, state0 = _onnx_case(form, bidirectional)
    lengths = np.array([7, 1, 4, 6, 7])
    graph = fastrnn.export_onnx(layer, lengths=True, initial_state=True)
    feeds = {"x": x, "lengths": lengths}
    if layer.kind.has_cell:
        feeds["h0"], feeds["c0"] = state0
    else:
        feeds["h0"] = state0
    session = ort.InferenceSession(graph.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    out = session.run(None, feeds)
    y, state = layer(x, state0, lengths=lengths)
    assert_allclose(out[0], y, **TOL[np.float32])
    for got, want in zip(out[1:], state if layer.kind.has_cell else [state]):
        assert_allclose(got, want, **TOL[np.float32])


@pytest.mark.parametrize("form,bidirectional", ONNX_CASES)
def test_onnx_reference_evaluator_matches(form, bidirectional):
    """ONNX's own reference implementation of the operators (it reads no
    sequence_lens: full-length sequences), float64 to 1e-10."""
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator
    cls, options, _, _ = FORMS[form]
    layer = cls(I, H, num_layers=2, bidirectional=bidirectional, dtype=np.float64, seed=7,
                **options)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, I))
    state0 = _state(rng, layer, np.float64)
    feeds = {"x": x}
    if layer.kind.has_cell:
        feeds["h0"], feeds["c0"] = state0
    else:
        feeds["h0"] = state0
    graph = fastrnn.export_onnx(layer, initial_state=True)
    out = ReferenceEvaluator(graph).run(None, feeds)
    y, state = layer(x, state0)
    assert_allclose(out[0], y, **TOL[np.float64])
    for got, want in zip(out[1:], state if layer.kind.has_cell else [state]):
        assert_allclose(got, want, **TOL[np.float64])


def test_onnx_nodes_say_the_form():
    pytest.importorskip("onnx")
    gru = fastrnn.export_onnx(fastrnn.GRU(I, H, reset_after=False, reverse=True))
    node = next(n for n in gru.graph.node if n.op_type == "GRU")
    attrs = {a.name: a for a in node.attribute}
    assert attrs["linear_before_reset"].i == 0 and attrs["direction"].s == b"reverse"
    lstm = fastrnn.export_onnx(fastrnn.LSTM(I, H, peephole=True))
    node = next(n for n in lstm.graph.node if n.op_type == "LSTM")
    assert len(node.input) == 8 and node.input[7]                 # P, the peepholes


@pytest.mark.parametrize("form", ["gru_reset_before", "lstm_peephole"])
def test_onnx_exports_the_cells(form):
    ort = pytest.importorskip("onnxruntime")
    cls, options, _, _ = FORMS[form]
    cell = getattr(fastrnn, cls.__name__ + "Cell")(I, H, seed=1, **options)
    rng = np.random.default_rng(2)
    x, h, c = (rng.standard_normal((B, n)).astype(np.float32) for n in (I, H, H))
    lstm = cell.kind.has_cell
    feeds = {"x": x, "h": h, **({"c": c} if lstm else {})}
    graph = fastrnn.export_onnx(cell)
    out = ort.InferenceSession(graph.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, feeds)
    new = cell(x, (h, c) if lstm else h)
    for got, want in zip(out, new if lstm else [new]):
        assert_allclose(got, want, **TOL[np.float32])


# ------------------------------------------------- PyTorch's unbatched input, empty batch

@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_is_one_sequence(mode):
    layer = getattr(fastrnn, mode)(I, H, num_layers=2, bidirectional=True, batch_first=True,
                                   dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, I))
    lstm = mode == "LSTM"
    h0 = rng.standard_normal((4, H))
    state0 = (h0, rng.standard_normal((4, H))) if lstm else h0
    y, state = layer(x, state0)
    layer.batch_first = False
    y_b, state_b = layer(x[:, None], tuple(s[:, None] for s in state0) if lstm else h0[:, None])
    assert y.shape == (T, 2 * H)
    assert_allclose(y, y_b[:, 0], rtol=1e-13, atol=1e-13)
    for a, b in zip(state if lstm else [state], state_b if lstm else [state_b]):
        assert a.shape == (4, H)
        assert_allclose(a, b[:, 0], rtol=1e-13, atol=1e-13)
    _, _, backward = layer.forward_train(x, state0)
    dx, dstate0 = backward(np.ones((T, 2 * H)))
    assert dx.shape == (T, I)
    assert (dstate0[0] if lstm else dstate0).shape == (4, H)
    with pytest.raises(ValueError, match="lengths applies to a batch"):
        layer(x, lengths=[T])
    with pytest.raises(ValueError, match="must be 2-D"):
        layer(x, (h0[:, None], h0[:, None]) if lstm else h0[:, None])
    with pytest.raises(ValueError, match="dy must have the shape of y"):
        layer.forward_train(x)[2](np.ones((T, H)))


@pytest.mark.parametrize("batch_first", [False, True], ids=["tbi", "bti"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_empty_batch_gives_empty_outputs(mode, batch_first):
    layer = getattr(fastrnn, mode)(I, H, num_layers=2, batch_first=batch_first, seed=0)
    x = np.zeros((0, T, I) if batch_first else (T, 0, I), np.float32)
    y, state = layer(x)
    assert y.shape == ((0, T, H) if batch_first else (T, 0, H))
    for s in (state if mode == "LSTM" else (state,)):
        assert s.shape == (2, 0, H)
    before = [p.grad.copy() for p in layer.parameters()]
    y, _, backward = layer.forward_train(x)
    dx, _ = backward(np.zeros_like(y))
    assert dx.shape == x.shape
    assert all(np.array_equal(a, p.grad) for a, p in zip(before, layer.parameters()))
    with pytest.raises(ValueError, match="at least one time step"):
        layer(np.zeros((0, 0, I) if batch_first else (0, 0, I), np.float32))


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_unbatched_and_empty_match_pytorch(mode):
    torch = pytest.importorskip("torch")
    layer = getattr(fastrnn, mode)(I, H, num_layers=2, bidirectional=True, dtype=np.float64,
                                   seed=0)
    tm = fastrnn.to_torch(layer)
    x = np.random.default_rng(0).standard_normal((T, I))
    y, state = layer(x)
    with torch.no_grad():
        ty, tstate = tm(torch.from_numpy(x))
        t_empty, _ = tm(torch.zeros((T, 0, I), dtype=torch.float64))
    assert_allclose(y, ty.numpy(), **TOL[np.float64])
    for a, b in zip(state if mode == "LSTM" else [state], tstate if mode == "LSTM" else [tstate]):
        assert_allclose(a, b.numpy(), **TOL[np.float64])
    assert layer(np.zeros((T, 0, I)))[0].shape == tuple(t_empty.shape)


# ------------------------------------------------------------- the kernels' own checks

def test_kernels_refuse_peepholes_where_they_do_not_belong():
    kind = fastrnn.LSTM(I, H).kind
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T * B, I)).astype(np.float32)
    W_ih = rng.standard_normal((4 * H, I)).astype(np.float32)
    W_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
    empty = np.empty(0, np.float32)
    nact, bounds = _engine.active_rows(None, T, B), np.array([0, B], np.intc)
    h, c = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
    Y, Gt = np.zeros((T, B, H), np.float32), np.zeros((T * B, 4 * H), np.float32)
    with pytest.raises(ValueError, match="peephole is given with an LSTM with peepholes"):
        _core.forward(kind.kernel_id, X, W_ih, W_hh, empty, empty, nact, bounds, h, Y, 0, Gt,
                      c=c, peephole=np.zeros(3 * H, np.float32))
    with pytest.raises(ValueError, match="peephole is given with an LSTM with peepholes"):
        _core.forward(_core.KIND_LSTM_P, X, W_ih, W_hh, empty, empty, nact, bounds, h, Y, 0,
                      Gt, c=c)
    with pytest.raises(ValueError, match="peephole must have shape"):
        _core.forward(_core.KIND_LSTM_P, X, W_ih, W_hh, empty, empty, nact, bounds, h, Y, 0,
                      Gt, c=c, peephole=np.zeros(2 * H, np.float32))


def test_kernels_refuse_panels_for_the_reset_before_gru():
    rng = np.random.default_rng(0)
    H16 = 16
    X = rng.standard_normal((T * B, I)).astype(np.float32)
    W_ih = rng.standard_normal((3 * H16, I)).astype(np.float32)
    W_hh = rng.standard_normal((3 * H16, H16)).astype(np.float32)
    empty = np.empty(0, np.float32)
    nact, bounds = _engine.active_rows(None, T, B), np.array([0, B], np.intc)
    h = np.zeros((B, H16), np.float32)
    Y, Gt = np.zeros((T, B, H16), np.float32), np.zeros((T * B, 3 * H16), np.float32)
    Gh = np.zeros((B, 3 * H16), np.float32)
    packed = _engine.panels(W_hh, True)
    with pytest.raises(ValueError, match="no panels"):
        _core.forward(_core.KIND_GRU_RB, X, W_ih, W_hh, empty, empty, nact, bounds, h, Y, 0,
                      Gt, Gh=Gh, W_hh_t=packed, layout=_core.LAYOUT_PANELS)
    assert not _engine.use_panels(W_hh, 100, 64, VARIANTS["GRU", "reset_before"])


# ------------------------------------------------------- the LSTM's projection (LSTMP)

# (num_layers, bidirectional, lengths)
PROJ_STACKS = [(1, False, None), (2, False, [7, 2, 5, 1, 7]), (2, True, [3, 7, 7, 1, 4]),
               (1, True, None)]
PROJ_IDS = ["L1", "L2-lengths", "L2-bi-lengths", "L1-bi"]


# PyTorch says that its oneDNN path has no projections and runs its own: the one compared
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("stack", PROJ_STACKS, ids=PROJ_IDS)
def test_projection_matches_pytorch(stack, dtype):
    """torch.nn.LSTM(..., proj_size=P) with the same weights: outputs, final states and
    the gradients of the input, the initial states and every parameter (packed sequences
    for lengths, as PyTorch's own variable-length path)."""
    torch = pytest.importorskip("torch")
    num_layers, bidirectional, lengths = stack
    P = 4
    layer = fastrnn.LSTM(I, H, num_layers=num_layers, bidirectional=bidirectional,
                         proj_size=P, dtype=dtype, seed=3)
    tm = fastrnn.to_torch(layer)
    assert tm.proj_size == P
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0, c0 = _state(rng, layer, dtype)
    dy = rng.standard_normal((T, B, layer.num_directions * P)).astype(dtype)
    dh_n, dc_n = rng.standard_normal(h0.shape).astype(dtype), \
        rng.standard_normal(c0.shape).astype(dtype)
    lengths = None if lengths is None else np.array(lengths)

    tx = torch.from_numpy(x).requires_grad_()
    th0, tc0 = (torch.from_numpy(a).requires_grad_() for a in (h0, c0))
    if lengths is None:
        ty, (th, tc) = tm(tx, (th0, tc0))
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(lengths),
                                                         enforce_sorted=False)
        out, (th, tc) = tm(packed, (th0, tc0))
        ty, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    (ty * torch.from_numpy(dy)).sum().add((th * torch.from_numpy(dh_n)).sum()) \
        .add((tc * torch.from_numpy(dc_n)).sum()).backward()

    layer.zero_grad()
    y, (h, c), backward = layer.forward_train(x, (h0, c0), lengths=lengths)
    dx, (dh0, dc0) = backward(dy, (dh_n, dc_n))
    tol = TOL[dtype]
    assert_allclose(y, ty.detach().numpy(), **tol)
    assert_allclose(h, th.detach().numpy(), **tol)
    assert_allclose(c, tc.detach().numpy(), **tol)
    assert_allclose(dx, tx.grad.numpy(), **tol)
    assert_allclose(dh0, th0.grad.numpy(), **tol)
    assert_allclose(dc0, tc0.grad.numpy(), **tol)
    for name, p in tm.named_parameters():
        assert_allclose(layer._params[name].grad, p.grad.numpy(), err_msg=name, **tol)


def test_projection_shapes_and_names():
    layer = fastrnn.LSTM(I, 8, num_layers=2, bidirectional=True, proj_size=3, seed=0)
    shapes = {name: p.shape for name, p in layer.named_parameters()}
    assert shapes["weight_hh_l0"] == (32, 3) and shapes["weight_hr_l0"] == (3, 8)
    assert shapes["weight_ih_l1"] == (32, 6)              # D * P inputs to layer 1
    assert list(shapes)[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                "weight_hr_l0"]          # PyTorch's order
    y, (h, c) = layer(np.zeros((T, B, I), np.float32))
    assert y.shape == (T, B, 6) and h.shape == (4, B, 3) and c.shape == (4, B, 8)
    assert layer.config()["proj_size"] == 3 and "proj_size" not in fastrnn.LSTM(I, 8).config()
    assert "proj_size=3" in repr(layer)


@pytest.mark.parametrize("value,error", [(8, ValueError), (-1, ValueError),
                                         (2.0, TypeError), (True, TypeError)])
def test_bad_projection_size(value, error):
    with pytest.raises(error, match="proj_size"):
        fastrnn.LSTM(I, 8, proj_size=value)


def test_projection_state_shapes_are_checked():
    layer = fastrnn.LSTM(I, 8, proj_size=3, seed=0)
    x = np.zeros((T, B, I), np.float32)
    with pytest.raises(ValueError, match=r"state0\[0\] \(h\)"):
        layer(x, (np.zeros((1, B, 8)), np.zeros((1, B, 8))))
    with pytest.raises(ValueError, match=r"state0\[1\] \(c\)"):
        layer(x, (np.zeros((1, B, 3)), np.zeros((1, B, 3))))


def test_projection_is_refused_by_onnx():
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="no projection"):
        fastrnn.export_onnx(fastrnn.LSTM(I, 8, proj_size=3))


def test_projection_from_a_state_dict():
    """A torch state_dict of an LSTMP, as arrays (no torch needed)."""
    layer = fastrnn.LSTM(I, 8, num_layers=2, proj_size=3, seed=0)
    back = fastrnn.from_torch(layer.state_dict())
    assert back.proj_size == 3 and back.hidden_size == 8
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    assert np.array_equal(back(x)[0], layer(x)[0])


@pytest.mark.parametrize("batch", [1, 24], ids=["one_row", "panels"])
def test_projection_on_every_product_path(batch):
    """float32 with H and P multiples of 16: the panel product (several rows, steps
    projecting their own input) and BLAS (one row), against the reference."""
    layer = fastrnn.LSTM(16, 32, num_layers=2, proj_size=16, seed=6)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((12, batch, 16)).astype(np.float32)
    lengths = rng.integers(1, 13, batch)
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    y_r, h_r, c_r, cache = ref.stack_forward("LSTM", x.astype(np.float64), params,
                                             num_layers=2, lengths=lengths)
    dy = rng.standard_normal(y_r.shape)
    dx_r, _, _, grads_r = ref.stack_backward(dy, None, None, cache)
    y, _, backward = layer.forward_train(x, lengths=lengths)
    layer.zero_grad()
    dx, _ = backward(dy.astype(np.float32))
    assert_allclose(y, y_r, **TOL[np.float32])
    assert_allclose(dx, dx_r, **TOL[np.float32])
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, grads_r[name], err_msg=name, rtol=1e-4, atol=1e-4)
