"""int8 dynamic quantization (fastrnn.quantize, fastrnn/_lowp.pyx, fastrnn/_q8.h).

The int8 product against exact NumPy integer sums on every instruction-set path this CPU
has (the cap lowered to run the lower ones), the paths against each other bit for bit;
the time loop against the NumPy reference of quantized inference
(fastrnn.reference.quantized) a step at a time; quantized layers, cells, models and the
Stepper against the float32 model within the quantization error; the API's refusals.
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastrnn
from fastrnn import _lowp, _runtime
from fastrnn.quantization import named_recurrent
from fastrnn.reference import quantized as ref

LEVELS = _runtime.ISA_LEVELS
HERE = LEVELS.index(_lowp.detected_isa())
# every level this CPU runs (each path is taken by a test; the AVX-512 level without
# VNNI runs the portable product with the AVX-512 quantization)
RUNNABLE = [level for level in LEVELS if LEVELS.index(level) <= HERE]


@pytest.fixture
def isa_cap():
    """Set the cap with the returned function; the cap is removed afterwards."""
    yield _runtime.set_isa
    _runtime.set_isa("amx")


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.int32)


# ------------------------------------------------------------------ the int8 product

def test_every_level_is_named_and_the_cap_lowers_it(isa_cap):
    assert LEVELS == ("baseline", "avx512", "avx512_vnni", "avx512_bf16", "amx")
    for level in RUNNABLE:
        isa_cap(level)
        assert _lowp.isa() == level == _runtime.get_isa()
    isa_cap("baseline")
    assert _lowp.product_path() == "baseline"
    with pytest.raises(ValueError, match="level must be one of"):
        isa_cap("sse9")
    with pytest.raises(ValueError, match="level must be one of"):
        _lowp.set_isa_cap("avx")


def test_pack_puts_each_weight_where_the_layout_says():
    rng = np.random.default_rng(0)
    n, K = 37, 70
    W = rng.integers(-127, 128, (n, K)).astype(np.int8)
    packed, colsum = _lowp.pack(W)
    Kp = _lowp.kpad(K)
    assert Kp == 128 and packed.shape == (48 * Kp,) and colsum.shape == (48,)
    k, c = np.meshgrid(np.arange(Kp), np.arange(48), indexing="ij")
    index = (c // 16) * 16 * Kp + (k // 4) * 64 + (c % 16) * 4 + k % 4
    B = np.zeros((Kp, 48), np.int8)
    B[:K, :n] = W.T
    assert np.array_equal(packed[index], B)
    assert np.array_equal(colsum[:n], W.astype(np.int64).sum(axis=1))
    assert not colsum[n:].any()


@pytest.mark.parametrize("level", RUNNABLE)
def test_quantized_rows_are_the_references(level, isa_cap):
    isa_cap(level)
    rng = np.random.default_rng(1)
    for K in (1, 3, 16, 17, 64, 65, 200):
        A = (rng.standard_normal((7, K)) * rng.uniform(0.01, 100, (7, 1))).astype(np.float32)
        A[2] = 0                                             # a row of zeros: scale 0
        A[3, 0] = -A[3].__abs__().max() * 2                  # the extreme is negative
        Q, s = _lowp.quantize_rows(A)
        q_ref, s_ref = ref.quantize_rows(A)
        assert np.array_equal(s, s_ref)
        assert s[2] == 0
        assert Q.shape == (7, _lowp.kpad(K)) and Q.dtype == np.uint8
        assert np.array_equal(Q[:, :K].astype(np.int64) - 128, q_ref)
        assert (Q[:, K:] == 128).all()
        assert Q[3, 0] == 1                                  # -127 + 128
        assert Q.min() >= 1                                  # in [-127, 127] + 128


SIZES = [(1, 1, 1), (1, 5, 3), (2, 16, 64), (17, 33, 70), (16, 16, 128), (33, 48, 65),
         (40, 100, 130), (64, 96, 256), (47, 17, 4)]


@pytest.mark.parametrize("m, n, K", SIZES)
def test_int32_sums_are_exact_and_every_path_gives_the_same_bits(m, n, K, isa_cap):
    rng = np.random.default_rng(m * 1000 + n * 10 + K)
    W = rng.integers(-127, 128, (n, K)).astype(np.int8)
    A = rng.standard_normal((m, K)).astype(np.float32)
    Q, s = _lowp.quantize_rows(A)
    packed, colsum = _lowp.pack(W)
    sw = rng.uniform(0.001, 0.1, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    exact = (Q[:, :K].astype(np.int64) - 128) @ W.T.astype(np.int64)
    acc = rng.standard_normal((m, n)).astype(np.float32)
    results = {}
    for level in RUNNABLE:
        isa_cap(level)
        sums = _lowp.product(Q, s, packed, colsum, sw, sums=True)
        assert sums.dtype == np.int32 and np.array_equal(sums, exact), level
        plain = _lowp.product(Q, s, packed, colsum, sw)
        with_bias = _lowp.product(Q, s, packed, colsum, sw, bias=bias)
        added = acc.copy()
        _lowp.product(Q, s, packed, colsum, sw, out=added, accumulate=True)
        results[level] = (plain, with_bias, added)
        # against NumPy: one rounding of a fused multiply-add apart at most
        scale = s[:, None] * sw[None, :]
        for got, base in ((plain, 0), (with_bias, bias), (added, acc)):
            np.testing.assert_allclose(got, exact.astype(np.float32) * scale + base,
                                       rtol=1e-6, atol=1e-6)
    # the plain C product (what a platform without x86 intrinsics runs)
    assert np.array_equal(_lowp.product(Q, s, packed, colsum, sw, sums=True, portable=True),
                          exact)
    results["portable"] = (_lowp.product(Q, s, packed, colsum, sw, portable=True),
                           _lowp.product(Q, s, packed, colsum, sw, bias=bias, portable=True),
                           acc.copy())
    _lowp.product(Q, s, packed, colsum, sw, out=results["portable"][2], accumulate=True,
                  portable=True)
    first = results[RUNNABLE[0]]
    for level, got in results.items():
        for a, b in zip(got, first):
            assert np.array_equal(_bits(a), _bits(b)), level


@pytest.mark.parametrize("level", RUNNABLE)
def test_the_extremes_of_the_sums_do_not_overflow(level, isa_cap):
    isa_cap(level)
    K = 8192                    # |sum| up to 255 * 127 * K before the shift: no wrap
    W = np.full((20, K), -127, np.int8)
    W[1] = 127
    Q = np.full((18, K), 255, np.uint8)
    Q[1] = 1
    packed, colsum = _lowp.pack(W)
    sums = _lowp.product(Q, np.ones(18, np.float32), packed, colsum, np.ones(20, np.float32),
                         sums=True)
    exact = (Q.astype(np.int64) - 128) @ W.T.astype(np.int64)
    assert np.array_equal(sums, exact)
    assert sums[0, 0] == -127 * 127 * K


def test_a_row_of_zeros_gives_the_base():
    W = np.ones((5, 9), np.int8)
    packed, colsum = _lowp.pack(W)
    Q, s = _lowp.quantize_rows(np.zeros((3, 9), np.float32))
    bias = np.arange(5, dtype=np.float32)
    out = _lowp.product(Q, s, packed, colsum, np.ones(5, np.float32), bias=bias)
    assert np.array_equal(out, np.broadcast_to(bias, (3, 5)))


def test_the_product_checks_its_arguments():
    packed, colsum = _lowp.pack(np.ones((5, 9), np.int8))
    Q, s = _lowp.quantize_rows(np.ones((3, 9), np.float32))
    sw = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="multiple of 64"):
        _lowp.product(Q[:, :9].copy(), s, packed, colsum, sw)
    with pytest.raises(ValueError, match="do not fit"):
        _lowp.product(Q, s, packed, colsum, np.ones(17, np.float32))
    with pytest.raises(ValueError, match="s must have 3"):
        _lowp.product(Q, s[:2].copy(), packed, colsum, sw)
    with pytest.raises(ValueError, match="give out"):
        _lowp.product(Q, s, packed, colsum, sw, accumulate=True)
    with pytest.raises(ValueError, match="W.shape"):
        _lowp.pack(np.ones((2, _lowp.MAX_K + 1), np.int8))
    with pytest.raises(ValueError, match="at least one row"):
        _lowp.pack(np.ones((0, 3), np.int8))


# ------------------------------------------------------------------------ the time loop

MODES = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {})]
_CLASSES = {"RNN": fastrnn.RNN, "LSTM": fastrnn.LSTM, "GRU": fastrnn.GRU}


def _layer(mode, I, H, **kw):
    return _CLASSES[mode](I, H, seed=3, **kw)


def _q_weights(layer, suffix=""):
    p = dict(layer.named_parameters())
    q_ih, s_ih = ref.quantize_weight(p["weight_ih_l0" + suffix].data)
    q_hh, s_hh = ref.quantize_weight(p["weight_hh_l0" + suffix].data)
    b_ih = p["bias_ih_l0" + suffix].data if layer.bias else None
    b_hh = p["bias_hh_l0" + suffix].data if layer.bias else None
    return q_ih, s_ih, q_hh, s_hh, b_ih, b_hh


@pytest.mark.parametrize("mode, kw", MODES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B", [6, 40])
def test_each_step_is_the_references_from_the_same_state(mode, kw, reverse, bias, B):
    """Each step of the kernels against the reference step from the kernels' own state
    before it: the step's own quantization, products and gate math (a step at a time,
    since an ulp apart a value may round to the next int8 step later on).  B = 40: the
    input projection step by step (_tuning.Q8_STEP_INPUT_MIN_ROWS)."""
    rng = np.random.default_rng(4)
    T, I, H = 7, 11, 20
    layer = _layer(mode, I, H, reverse=reverse, bias=bias, **kw)
    q = fastrnn.quantize(layer)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((1, B, H)).astype(np.float32) * 0.5
    lengths = np.array([7, 3, 7, 1, 5, 6] if B == 6 else rng.integers(1, T + 1, B))
    lstm = mode == "LSTM"
    state0 = (h0, h0 * 2) if lstm else h0
    y, state = q(x, state0, lengths=lengths)
    q_ih, s_ih, q_hh, s_hh, b_ih, b_hh = _q_weights(q)
    # the dequantized weights the copy holds are the reference's quantization's
    assert np.array_equal(q.weight_ih_l0.data, q_ih.astype(np.float32) * s_ih[:, None])
    GH = q_ih.shape[0]
    base = ref.input_bias(mode, b_ih, b_hh, GH)
    b_hn = b_hh[2 * H:] if mode == "GRU" and bias else None
    xp = ref.int8_product(x.reshape(T * B, I), q_ih, s_ih, base).reshape(T, B, GH)
    c = h0[0] * 2 if lstm else None
    relu = kw.get("nonlinearity") == "relu"
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        active = lengths > t
        before = t + 1 if reverse else t - 1
        if 0 <= before < T:
            h_prev = np.where((lengths > before)[:, None], y[before], h0[0])
        else:
            h_prev = h0[0]
        h_t, c_t = ref.step(mode, xp[t], h_prev, c, q_hh, s_hh, b_hn,
                            "relu" if relu else "tanh")
        np.testing.assert_allclose(y[t][active], h_t[active], rtol=1e-5, atol=2e-6)
        assert not y[t][~active].any()
        if lstm:
            c = np.where(active[:, None], c_t, c)
    h_n = state[0] if lstm else state
    last = (np.zeros(B, int) if reverse else lengths - 1)
    assert np.array_equal(h_n[0], y[last, np.arange(B)])
    if lstm:
        np.testing.assert_allclose(state[1][0], c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode, kw", MODES)
def test_the_loop_is_the_reference_over_a_few_steps(mode, kw):
    rng = np.random.default_rng(5)
    T, B, I, H = 3, 4, 9, 33
    layer = _layer(mode, I, H, **kw)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y, _ = fastrnn.quantize(layer)(x)
    h0 = np.zeros((B, H), np.float32)
    y_ref, _, _ = ref.layer_forward(mode, x, h0, h0 if mode == "LSTM" else None,
                                    *_q_weights(layer), nonlinearity=kw.get("nonlinearity",
                                                                            "tanh"))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode, kw", MODES)
def test_every_path_runs_the_loop_to_the_same_bits(mode, kw, isa_cap):
    rng = np.random.default_rng(6)
    layer = _layer(mode, 40, 48, num_layers=2, bidirectional=True, **kw)
    q = fastrnn.quantize(layer)
    x = rng.standard_normal((9, 37, 40)).astype(np.float32)
    lengths = rng.integers(1, 10, 37)
    outs = []
    for level in RUNNABLE:
        isa_cap(level)
        y, state = q(x, lengths=lengths)
        outs.append((y, state[0] if mode == "LSTM" else state))
    for y, h in outs[1:]:
        assert np.array_equal(_bits(y), _bits(outs[0][0]))
        assert np.array_equal(_bits(h), _bits(outs[0][1]))


@pytest.mark.parametrize("mode, kw", MODES)
def test_threads_do_not_change_a_bit(mode, kw):
    rng = np.random.default_rng(7)
    q = fastrnn.quantize(_layer(mode, 64, 128, **kw))
    x = rng.standard_normal((20, 64, 64)).astype(np.float32)
    lengths = rng.integers(1, 21, 64)
    with fastrnn.threads(1):
        one = q(x, lengths=lengths)[0]
    with fastrnn.threads(2):
        two = q(x, lengths=lengths)[0]
    assert np.array_equal(_bits(one), _bits(two))


# (shape, max abs, mean abs) of the difference to float32 on the same weights, measured
# here with the default init and standard normal inputs: a bound with room to spare
ERRORS = [("LSTM", (100, 1, 32, 64), 0.02, 0.002),      # the benchmarks' W1
          ("LSTM", (20, 16, 512, 512), 0.03, 0.003),    # W4i's sizes, fewer steps
          ("GRU", (50, 32, 64, 128), 0.03, 0.003)]      # W7's, fewer rows


@pytest.mark.parametrize("mode, shape, max_abs, mean_abs", ERRORS)
def test_the_error_against_float32_is_the_quantizations(mode, shape, max_abs, mean_abs):
    T, B, I, H = shape
    layer = _layer(mode, I, H)
    x = np.random.default_rng(8).standard_normal((T, B, I)).astype(np.float32)
    diff = np.abs(fastrnn.quantize(layer)(x)[0] - layer(x)[0])
    assert diff.max() < max_abs and diff.mean() < mean_abs, (diff.max(), diff.mean())
    assert diff.max() > 0                       # int8 indeed ran


# -------------------------------------------------------------------------- the API

def test_quantize_copies_and_dequantize_gives_back_the_float_weights():
    layer = fastrnn.GRU(5, 8, num_layers=2, seed=0)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    q = fastrnn.quantize(layer)
    assert layer.quantized is None and q.quantized == "int8"
    for k, v in layer.state_dict().items():
        assert np.array_equal(v, before[k])
    d = fastrnn.dequantize(q)
    assert d.quantized is None and q.quantized == "int8"
    for name, p in d.named_parameters():
        if name.startswith("weight"):
            q8, s = ref.quantize_weight(before[name])
            assert np.array_equal(p.data, q8.astype(np.float32) * s[:, None])
        else:
            assert np.array_equal(p.data, before[name])       # biases stay float32
        assert p.data.flags.writeable
    # the float copy trains again, and runs the float kernels
    x = np.ones((4, 3, 5), np.float32)
    y, _, backward = d.forward_train(x)
    backward(np.ones_like(y))
    np.testing.assert_allclose(d(x)[0], q(x)[0], atol=0.02)


@pytest.mark.parametrize("export", ["export_onnx", "to_torch"])
@pytest.mark.parametrize("make", [
    lambda: fastrnn.GRU(3, 4, seed=0), lambda: fastrnn.LSTMCell(3, 4, seed=0),
    lambda: fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4,
                                        output_size=2, seed=0)], ids=["layer", "cell", "model"])
def test_exports_refuse_a_quantized_model(export, make):
    """An export writes float weights: a quantized model is refused, naming dequantize(),
    before the export's own library is needed; its dequantized copy is what exports."""
    with pytest.raises(TypeError, match=rf"{export}: .* quantized \(int8\).*dequantize"):
        getattr(fastrnn, export)(fastrnn.quantize(make()))


def test_quantized_modules_are_inference_only():
    lstm = fastrnn.quantize(fastrnn.LSTM(3, 4, seed=0))
    x = np.ones((2, 1, 3), np.float32)
    with pytest.raises(TypeError, match=r"dequantize\(\) it to train"):
        lstm.forward_train(x)
    with pytest.raises(TypeError, match="inference only"):
        lstm.forward_states(x)
    with pytest.raises(ValueError, match="read-only"):
        lstm.weight_hh_l0.data[0, 0] = 1.0
    # loading float weights into a quantized copy is refused before anything is written
    model = fastrnn.Sequential([fastrnn.Linear(3, 3, seed=1), fastrnn.LSTM(3, 4, seed=2)])
    qmodel = fastrnn.quantize(model)
    before = {k: v.copy() for k, v in qmodel.state_dict().items()}
    state = {k: v + 1 for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match=r"read-only .*dequantize\(\)"):
        qmodel.load_state_dict(state)
    for name, value in qmodel.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    cell = fastrnn.quantize(fastrnn.GRUCell(3, 4, seed=0))
    with pytest.raises(TypeError, match="inference only"):
        cell.forward_train(np.ones((1, 3), np.float32))
    model = fastrnn.quantize(fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4,
                                                         output_size=2, head="many_to_one",
                                                         seed=0))
    with pytest.raises(TypeError, match="dequantize"):
        model.fit(np.ones((4, 5, 3), np.float32), np.zeros(4, int), epochs=1, progress=False)


@pytest.mark.parametrize("make, option", [
    (lambda: fastrnn.LSTM(3, 8, proj_size=4), "proj_size"),
    (lambda: fastrnn.LSTM(3, 8, peephole=True), "peephole"),
    (lambda: fastrnn.LSTM(3, 8, layer_norm=True), "layer_norm"),
    (lambda: fastrnn.GRU(3, 8, reset_after=False), "reset_after=False"),
    (lambda: fastrnn.GRU(3, 8, zoneout=0.1), "zoneout"),
    (lambda: fastrnn.LSTMCell(3, 8, peephole=True), "peephole"),
    (lambda: fastrnn.GRUCell(3, 8, reset_after=False), "reset_after=False"),
    (lambda: fastrnn.FastGRNN(3, 8), "FastGRNN"),
    (lambda: fastrnn.FastRNN(3, 8), "FastRNN"),
    (lambda: fastrnn.LSTM(3, 8, dtype=np.float64), "float64"),
    (lambda: fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4, output_size=2,
                                         peephole=True), "peephole"),
])
def test_what_int8_does_not_run_is_refused_by_name(make, option):
    with pytest.raises(ValueError, match=option):
        fastrnn.quantize(make())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="dtype must be one of"):
        fastrnn.quantize(fastrnn.LSTM(3, 4), dtype="int4")
    with pytest.raises(TypeError, match="fastrnn module"):
        fastrnn.quantize(np.ones(3))
    with pytest.raises(TypeError, match="fastrnn module"):
        fastrnn.dequantize("lstm")
    with pytest.raises(ValueError, match="no recurrent layer"):
        fastrnn.quantize(fastrnn.Linear(3, 4))
    q = fastrnn.quantize(fastrnn.RNN(3, 4))
    with pytest.raises(ValueError, match="quantized already"):
        fastrnn.quantize(q)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_a_quantized_cell_steps_as_the_quantized_layer(mode):
    rng = np.random.default_rng(9)
    cell_cls = {"RNN": fastrnn.RNNCell, "LSTM": fastrnn.LSTMCell, "GRU": fastrnn.GRUCell}
    cell = cell_cls[mode](6, 10, seed=1)
    layer = _CLASSES[mode](6, 10, seed=1)               # the same parameters
    qc, ql = fastrnn.quantize(cell), fastrnn.quantize(layer)
    x = rng.standard_normal((5, 3, 6)).astype(np.float32)
    y, _ = ql(x)
    state = None
    for t in range(5):
        state = qc(x[t], state)
        h = state[0] if mode == "LSTM" else state
        assert np.array_equal(_bits(h), _bits(y[t]))
    h1 = qc(x[0, 0])                                    # unbatched
    assert h1[0].shape == (10,) if mode == "LSTM" else h1.shape == (10,)
    np.testing.assert_allclose(cell(x[0])[0] if mode == "LSTM" else cell(x[0]),
                               qc(x[0])[0] if mode == "LSTM" else qc(x[0]), atol=0.02)


def test_a_quantized_model_predicts_and_streams_as_its_sequence_call():
    rng = np.random.default_rng(10)
    model = fastrnn.SequenceModel.build("lstm", input_size=4, hidden_size=24, output_size=3,
                                        num_layers=2, head="many_to_many", seed=0)
    q = fastrnn.quantize(model)
    assert q.rnn.quantized == "int8" and q.head.readout.weight.data.flags.writeable
    x = rng.standard_normal((5, 8, 4)).astype(np.float32)
    out = q.forward(x)
    np.testing.assert_allclose(out, model.forward(x), atol=0.05)
    streamed = q.stepper(batch_size=5).run(x)
    assert np.array_equal(_bits(streamed), _bits(out))
    assert q.predict(x).shape == model.predict(x).shape


def test_a_sequential_quantizes_every_recurrent_layer_inside():
    net = fastrnn.Sequential([fastrnn.GRU(4, 16, batch_first=True, seed=0),
                              fastrnn.Residual(fastrnn.LSTM(16, 16, batch_first=True, seed=1)),
                              fastrnn.TimePooling("last"), fastrnn.Linear(16, 2, seed=2)])
    q = fastrnn.quantize(net)
    recurrent = [m for m in (q.layers[0], q.layers[1].layer)]
    assert all(m.quantized == "int8" for m in recurrent)
    x = np.random.default_rng(11).standard_normal((3, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(q(x), net(x), atol=0.05)
    assert fastrnn.dequantize(q).layers[0].quantized is None


# ------------------------------------------------------------------- FASTRNN_ISA

def _run(code, **env):
    import os
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_fastrnn_isa_caps_the_level_at_import():
    out = _run("import json, fastrnn; print(json.dumps(fastrnn.process_settings()['isa']))",
               FASTRNN_ISA="baseline")
    assert out.returncode == 0, out.stderr
    assert '"now": "baseline"' in out.stdout and "FASTRNN_ISA=baseline" in out.stdout
    # the cap reaches every module with such paths: the bf16 products' too
    out = _run("import fastrnn; from fastrnn import _blas, _core, _lowp; "
               "print(_lowp.isa(), _core.isa(), _blas.isa())", FASTRNN_ISA="avx512")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["avx512"] * 3 or _lowp.detected_isa() == "baseline"
    out = _run("import fastrnn; print(fastrnn._runtime.get_isa())", FASTRNN_ISA="sse9")
    assert out.returncode == 0 and "ignores FASTRNN_ISA='sse9'" in out.stderr
    assert out.stdout.strip() == _lowp.detected_isa()


# ----------------------------------------------------------------------- save, load

def _saved(obj, tmp_path, name):
    path = tmp_path / name
    fastrnn.save(obj, path)
    return path


@pytest.mark.parametrize("make", [
    lambda: fastrnn.LSTM(64, 128, num_layers=2, bidirectional=True, seed=0),
    lambda: fastrnn.GRUCell(5, 7, seed=0),
    lambda: fastrnn.RNN(6, 9, nonlinearity="relu", bias=False, seed=0),
    lambda: fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=32, output_size=2,
                                        seed=0),
    lambda: fastrnn.Sequential([fastrnn.GRU(4, 16, batch_first=True, seed=0),
                                fastrnn.Residual(fastrnn.LSTM(16, 16, batch_first=True,
                                                              seed=1)),
                                fastrnn.TimePooling("last"), fastrnn.Linear(16, 2, seed=2)]),
])
def test_the_quantized_form_saves_and_loads_to_the_same_bits(make, tmp_path):
    q = fastrnn.quantize(make())
    loaded = fastrnn.load(_saved(q, tmp_path, "q.npz"))
    before = [m for _, m in named_recurrent(q)]
    after = [m for _, m in named_recurrent(loaded)]
    assert [m.quantized for m in after] == [m.quantized for m in before] == ["int8"] * len(after)
    for a, b in zip(before, after):
        for (qa, sa), (qb, sb) in zip(a._q8_arrays.values(), b._q8_arrays.values()):
            assert qb.dtype == np.int8 and np.array_equal(qa, qb) and np.array_equal(sa, sb)
    for (na, pa), (nb, pb) in zip(q.named_parameters(), loaded.named_parameters()):
        assert na == nb and np.array_equal(pa.data, pb.data)


def test_a_quantized_file_is_about_a_quarter_of_the_float_one(tmp_path):
    lstm = fastrnn.LSTM(256, 256, num_layers=2, seed=0)
    q = fastrnn.quantize(lstm)
    f, qf = _saved(lstm, tmp_path, "f.npz"), _saved(q, tmp_path, "q.npz")
    ratio = qf.stat().st_size / f.stat().st_size
    assert 0.24 < ratio < 0.28, ratio
    x = np.random.default_rng(12).standard_normal((5, 3, 256)).astype(np.float32)
    assert np.array_equal(_bits(fastrnn.load(qf)(x)[0]), _bits(q(x)[0]))
    assert fastrnn.load(f).quantized is None                  # the float file as before


def test_a_quantized_file_is_checked_as_any_other(tmp_path):
    import io
    import json
    import zipfile

    from fastrnn.io import ModelFileError
    path = _saved(fastrnn.quantize(fastrnn.GRU(3, 5, seed=0)), tmp_path, "q.npz")

    def rewrite(change, name):
        out = tmp_path / name
        with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w") as zout:
            for item in zin.infolist():
                data = zin.read(item)
                if item.filename == "__header__.npy":
                    header = np.lib.format.read_array(io.BytesIO(data))
                    h = json.loads(header.tobytes().decode())
                    change(h)
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, np.frombuffer(json.dumps(h).encode(),
                                                                 np.uint8))
                    data = buf.getvalue()
                zout.writestr(item, data)
        return out

    def int4(h):
        h["model"]["quantized"] = "int4"

    def float_weights(h):
        h["arrays"]["param/weight_hh_l0"]["dtype"] = "<f4"

    def no_scales(h):
        del h["model"]["quantized"]

    with pytest.raises(ModelFileError, match="quantized must be one of"):
        fastrnn.load(rewrite(int4, "a.npz"))
    with pytest.raises(ModelFileError, match="int8"):
        fastrnn.load(rewrite(float_weights, "b.npz"))
    with pytest.raises(ModelFileError, match="unexpected"):
        fastrnn.load(rewrite(no_scales, "c.npz"))


# --------------------------------------------------- the bundled tasks, trained in fp32

@pytest.mark.learning
def test_the_digit_classifier_keeps_its_accuracy_in_int8():
    """The demo's digit classifier (LSTM 64, 20 epochs, Adam 0.01 on a cosine schedule),
    trained in float32: int8 within half a point of its test accuracy."""
    from fastrnn.callbacks import LearningRateScheduler
    from fastrnn.data import load_digits, train_test_split
    from fastrnn.optim import Adam, CosineAnnealingLR
    images, labels = load_digits()
    xtr, xte, ytr, yte = train_test_split(images, labels, test_fraction=0.2, seed=0)
    model = fastrnn.SequenceModel.build("lstm", input_size=8, hidden_size=64, output_size=10,
                                        head="many_to_one", seed=0)
    opt = Adam(model.parameters(), lr=1e-2)
    model.fit(xtr, ytr, epochs=20, batch_size=32, optimizer=opt, clip_norm=5.0, seed=0,
              callbacks=[LearningRateScheduler(CosineAnnealingLR(opt, T_max=20))],
              progress=False)
    acc = model.evaluate(xte, yte)["accuracy"]
    acc_q = fastrnn.quantize(model).evaluate(xte, yte)["accuracy"]
    assert acc > 0.95
    assert abs(acc - acc_q) <= 0.005, (acc, acc_q)


@pytest.mark.learning
def test_the_character_model_keeps_its_accuracy_in_int8():
    """A character model of the bundled text as the demo trains it (GRU 128 over an
    embedding, one-to-many), two epochs: int8 within half a point of next-character
    accuracy on the held-out tenth."""
    from fastrnn.data import CharVocab, char_windows, load_text
    from fastrnn.optim import Adam
    text = load_text()
    vocab = CharVocab(text)
    tokens = vocab.encode(text)
    cut = int(len(tokens) * 0.9)
    x, y = char_windows(tokens[:cut], 64)
    xv, yv = char_windows(tokens[cut:], 64)
    model = fastrnn.SequenceModel.build("gru", vocab_size=vocab.size, embedding_dim=32,
                                        hidden_size=128, output_size=vocab.size,
                                        head="one_to_many", seed=0)
    model.fit(x, y, epochs=2, batch_size=64, optimizer=Adam(model.parameters(), lr=4e-3),
              clip_norm=5.0, seed=0, progress=False)
    acc = model.evaluate(xv, yv)["accuracy"]
    acc_q = fastrnn.quantize(model).evaluate(xv, yv)["accuracy"]
    assert acc > 0.4
    assert abs(acc - acc_q) <= 0.005, (acc, acc_q)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_int8_is_as_close_to_float32_as_torchs_dynamic_quantization(mode):
    """PyTorch's quantize_dynamic (other scales: per tensor) on the same weights: compared
    by how far each is from its own float32 model, not bit for bit."""
    torch = pytest.importorskip("torch")
    quantize_dynamic = torch.ao.quantization.quantize_dynamic
    layer = _layer(mode, 32, 64)
    holder = torch.nn.Sequential(getattr(torch.nn, mode)(32, 64))
    with torch.no_grad():
        for name, p in holder[0].named_parameters():
            p.copy_(torch.from_numpy(layer._params[name].data))
    with warnings.catch_warnings():          # its deprecation notice
        warnings.simplefilter("ignore")
        tq = quantize_dynamic(holder, {torch.nn.LSTM, torch.nn.GRU}, dtype=torch.qint8)
    x = np.random.default_rng(13).standard_normal((30, 8, 32)).astype(np.float32)
    with torch.inference_mode():
        t32 = holder[0](torch.from_numpy(x))[0].numpy()
        t8 = tq[0](torch.from_numpy(x))[0].numpy()
    ours = np.abs(fastrnn.quantize(layer)(x)[0] - layer(x)[0]).mean()
    theirs = np.abs(t8 - t32).mean()
    np.testing.assert_allclose(t32, layer(x)[0], atol=1e-5)      # the same float model
    assert 0 < ours <= theirs, (ours, theirs)


def test_a_quantized_model_pickles_without_its_packed_weights():
    import pickle
    model = fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=64, output_size=2,
                                        seed=0)
    q = fastrnn.quantize(model)
    blob = pickle.dumps(q)
    assert len(blob) < 1.5 * len(pickle.dumps(model))     # float weights + int8 + scales
    back = pickle.loads(blob)
    assert back.rnn.__dict__["_q8"] is None and back.rnn.quantized == "int8"
    x = np.random.default_rng(14).standard_normal((4, 6, 3)).astype(np.float32)
    assert np.array_equal(_bits(back.forward(x)), _bits(q.forward(x)))   # packed again
    assert not back.rnn.weight_ih_l0.data.flags.writeable
