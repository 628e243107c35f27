"""ONNX export: onnx.checker passes and ONNX Runtime reproduces fastrnn's outputs.

onnx and onnxruntime are optional: these tests are skipped without them, unless the
environment variable ``FASTRNN_REQUIRE_ONNX=1`` is set (as in CI), in which case a missing
package makes each of them fail.
"""

import os

import numpy as np
import pytest

import fastrnn
from fastrnn.cli import main
from _tools import PARITY_TOL

REQUIRE_ONNX = os.environ.get("FASTRNN_REQUIRE_ONNX", "") == "1"
ATOL, RTOL = PARITY_TOL[np.float32]["atol"], PARITY_TOL[np.float32]["rtol"]
DEVIATIONS = []                  # the largest |ONNX Runtime - fastrnn| of each comparison


@pytest.fixture(scope="session")
def ort():
    """onnxruntime (with onnx importable), single-threaded."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        if REQUIRE_ONNX:
            pytest.fail(f"FASTRNN_REQUIRE_ONNX=1 but onnx/onnxruntime cannot be imported: "
                        f"{exc}", pytrace=False)
        pytest.skip(f"onnx/onnxruntime not installed: {exc}")
    return onnxruntime


def _session(ort, model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _compare(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        DEVIATIONS.append(float(np.abs(g - e).max()))
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


LAYERS = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", None), ("GRU", None)]


@pytest.mark.parametrize("name,nl", LAYERS, ids=["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("layers,bi", [(1, False), (1, True), (2, False), (2, True)],
                         ids=["1", "1bi", "2", "2bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_layer(ort, name, nl, layers, bi, with_lengths):
    kw = {"nonlinearity": nl} if nl else {}
    bf = layers == 2 and not bi          # batch_first in some configurations
    layer = getattr(fastrnn, name)(5, 7, num_layers=layers, bidirectional=bi,
                                   batch_first=bf, seed=3, **kw)
    model = fastrnn.export_onnx(layer, lengths=with_lengths, initial_state=True)
    sess = _session(ort, model)
    rng = np.random.default_rng(4)
    T, B, D = 6, 4, 2 if bi else 1
    x = rng.standard_normal((B, T, 5) if bf else (T, B, 5)).astype(np.float32)
    if nl == "relu":
        x *= 0.5
    h0 = rng.standard_normal((layers * D, B, 7)).astype(np.float32)
    c0 = rng.standard_normal((layers * D, B, 7)).astype(np.float32)
    lengths = np.array([6, 3, 1, 5]) if with_lengths else None
    feeds = {"x": x, "h0": h0}
    if with_lengths:
        feeds["lengths"] = lengths
    if name == "LSTM":
        feeds["c0"] = c0
        y, (h, c) = layer(x, (h0, c0), lengths=lengths)
        expected = [y, h, c]
    else:
        y, h = layer(x, h0, lengths=lengths)
        expected = [y, h]
    _compare(sess.run(None, feeds), expected)
    if with_lengths:      # padded steps are zeros in both
        ys = sess.run(["y"], feeds)[0]
        padded = ys[2, 1:] if bf else ys[1:, 2]     # sequence 2 has one step
        assert padded.size and not padded.any()


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_layer_without_state_input_and_bias(ort, name):
    layer = getattr(fastrnn, name)(3, 4, bias=False, num_layers=2, seed=0)
    sess = _session(ort, fastrnn.export_onnx(layer))
    assert [i.name for i in sess.get_inputs()] == ["x"]
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    y, state = layer(x)
    _compare(sess.run(None, {"x": x}),
             [y, *state] if name == "LSTM" else [y, state])


def test_relu_and_tanh_differ(ort):
    """The RNN's nonlinearity reaches the graph (a tanh graph would not match relu)."""
    rnn = fastrnn.RNN(3, 4, nonlinearity="relu", seed=0)
    x = np.full((4, 2, 3), 3.0, np.float32)
    y = _session(ort, fastrnn.export_onnx(rnn)).run(["y"], {"x": x})[0]
    assert y.max() > 1.0
    _compare([y], [rnn(x)[0]])


HEADS = [("lstm", "many_to_one", True, None), ("gru", "many_to_one", False, 11),
         ("rnn", "many_to_many", False, None), ("gru", "many_to_many", True, 11),
         ("lstm", "one_to_many", False, 11), ("rnn", "many_to_one", True, 11)]


@pytest.mark.parametrize("cell,head,bi,vocab", HEADS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_sequence_model(ort, tmp_path, cell, head, bi, vocab, with_lengths):
    m = fastrnn.SequenceModel.build(cell, input_size=None if vocab else 5, vocab_size=vocab,
                                    embedding_dim=4 if vocab else None, hidden_size=6,
                                    output_size=3, head=head, num_layers=2,
                                    bidirectional=bi, seed=0)
    path = tmp_path / "model.onnx"
    fastrnn.export_onnx(m, path, lengths=with_lengths)
    import onnx
    onnx.checker.check_model(str(path), full_check=True)
    sess = _session(ort, onnx.load(str(path)))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, (4, 7)) if vocab else \
        rng.standard_normal((4, 7, 5)).astype(np.float32)
    feeds = {"x": x}
    lengths = None
    if with_lengths:
        lengths = np.array([7, 2, 1, 5])
        feeds["lengths"] = lengths
    _compare(sess.run(None, feeds), [m.forward(x, lengths)])


@pytest.mark.parametrize("cell", [fastrnn.RNNCell(3, 4, seed=0),
                                  fastrnn.RNNCell(3, 4, nonlinearity="relu", seed=0),
                                  fastrnn.LSTMCell(3, 4, seed=0),
                                  fastrnn.GRUCell(3, 4, bias=False, seed=0)],
                         ids=["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cell(ort, cell):
    sess = _session(ort, fastrnn.export_onnx(cell))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    h = rng.standard_normal((2, 4)).astype(np.float32)
    if isinstance(cell, fastrnn.LSTMCell):
        c = rng.standard_normal((2, 4)).astype(np.float32)
        _compare(sess.run(None, {"x": x, "h": h, "c": c}), list(cell(x, (h, c))))
    else:
        _compare(sess.run(None, {"x": x, "h": h}), [cell(x, h)])


def test_linear_and_embedding(ort):
    lin = fastrnn.Linear(4, 3, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    _compare(_session(ort, fastrnn.export_onnx(lin)).run(None, {"x": x}), [lin(x)])
    emb = fastrnn.Embedding(9, 3, padding_idx=0, seed=0)
    t = np.array([[0, 3, 8], [1, 1, 2]])
    _compare(_session(ort, fastrnn.export_onnx(emb)).run(None, {"tokens": t}), [emb(t)])


def test_float64_model_exported_as_float32(ort):
    m = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4, output_size=2,
                                    num_layers=2, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    assert fastrnn.export_onnx(m).graph.input[0].type.tensor_type.elem_type == 11  # double
    sess = _session(ort, fastrnn.export_onnx(m, dtype=np.float32))
    _compare(sess.run(None, {"x": x.astype(np.float32)}),
             [m.forward(x).astype(np.float32)])


def test_cli_export(ort, tmp_path, capsys):
    m = fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=4, output_size=2,
                                    head="many_to_one", bidirectional=True, seed=0)
    src, out = tmp_path / "m.npz", tmp_path / "m.onnx"
    fastrnn.save(m, src)
    assert main(["export", str(src), "--onnx", str(out), "--lengths"]) == 0
    assert "wrote" in capsys.readouterr().out
    x = np.random.default_rng(0).standard_normal((3, 5, 3)).astype(np.float32)
    lengths = np.array([5, 1, 3])
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    _compare(sess.run(None, {"x": x, "lengths": lengths}), [m.forward(x, lengths)])


def test_cli_export_refuses(ort, tmp_path, capsys):
    s2s = tmp_path / "s2s.npz"
    fastrnn.save(fastrnn.Seq2Seq.build("gru", src_vocab=5, tgt_vocab=5, hidden_size=4,
                                       seed=0), s2s)
    for argv, needle in [
        (["export", str(s2s), "--onnx", str(tmp_path / "a.onnx")], "Seq2Seq"),
        (["export", str(tmp_path / "missing.npz"), "--onnx", str(tmp_path / "a.onnx")],
         "no such file"),
        (["export", str(s2s), "--onnx", str(tmp_path / "a.txt")], "must end in .onnx"),
        (["export", str(s2s), "--onnx", str(tmp_path / "nodir" / "a.onnx")], "does not exist"),
        (["export", str(s2s)], "--onnx"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "a.onnx").exists()


def test_refusals(ort):
    with pytest.raises(TypeError, match="Seq2Seq"):
        fastrnn.export_onnx(fastrnn.Seq2Seq.build("gru", src_vocab=5, tgt_vocab=5,
                                                  hidden_size=4, seed=0))
    with pytest.raises(TypeError, match="cannot export a builtins.dict"):
        fastrnn.export_onnx({})
    with pytest.raises(TypeError, match="cannot export .*ManyToOne"):
        fastrnn.export_onnx(fastrnn.ManyToOne(3, 2))
    with pytest.raises(ValueError, match="initial_state=True applies to a recurrent layer"):
        fastrnn.export_onnx(fastrnn.Linear(3, 2), initial_state=True)
    with pytest.raises(ValueError, match="lengths=True"):
        fastrnn.export_onnx(fastrnn.GRUCell(3, 2), lengths=True)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fastrnn.export_onnx(fastrnn.GRU(3, 2), dtype=np.float16)


def test_largest_deviation_is_float32_rounding():
    """Runs last in this file: every array compared above stayed within a few float32
    roundings of fastrnn's (about 3e-7 here; the tolerance of each comparison is 1e-5 +
    1e-4 * |value|); pytest -s prints the figure."""
    if not DEVIATIONS:
        pytest.skip("no comparison ran before this test (run the whole file)")
    print(f"\nONNX Runtime vs fastrnn: {len(DEVIATIONS)} arrays compared, largest "
          f"|difference| {max(DEVIATIONS):.3g}")
    assert max(DEVIATIONS) < 1e-5
