"""The recurrent layers under ``fastrnn.autocast("bfloat16")``: bf16 products with float32
sums, float32 elsewhere.

Proved against a NumPy reference of the same computation (each product's operands rounded
to bf16, the rest float32), against fastrnn's float32 on the same weights (bf16's error),
against PyTorch's autocast, gradients against float32 gradients, every ISA path of the
kernels by lowering their cap; float32 outside autocast and float64 inside it unchanged;
what is not covered refused."""

import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import _blas, _core, _engine
from fastrnn.precision import compute_dtype

from test_b16 import DETECTED, LEVELS, round_b16

needs_bf16 = pytest.mark.skipif(DETECTED < LEVELS.index("avx512_bf16"),
                                reason="the bf16 paths are tested where the CPU has them")


@pytest.fixture(autouse=True)
def _no_cap():
    yield
    _core.set_isa_cap(None)


def sigmoid(a):
    return (1 / (1 + np.exp(-a.astype(np.float64)))).astype(np.float32)


def bdot(a, W):
    """a @ W.T with both operands rounded to bf16, the sum exact, the result float32."""
    return (round_b16(a).astype(np.float64) @ round_b16(W).astype(np.float64).T
            ).astype(np.float32)


def reference(mode, x, layer):
    """The bf16 computation in NumPy: float32 states and gates, bf16 products."""
    p = {n: q.data for n, q in layer.named_parameters()}
    W_ih, W_hh, b_ih, b_hh = (p[f"{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih",
                                                      "bias_hh"))
    T, B, _ = x.shape
    H = W_hh.shape[1]
    h = np.zeros((B, H), np.float32)
    c = np.zeros((B, H), np.float32)
    gx = bdot(x.reshape(T * B, -1), W_ih).reshape(T, B, -1) + b_ih
    ys = []
    for t in range(T):
        gh = bdot(h, W_hh) + b_hh
        if mode == "LSTM":
            g = gx[t] + gh
            i, f, o = (sigmoid(g[:, k * H:(k + 1) * H]) for k in (0, 1, 3))
            c = f * c + i * np.tanh(g[:, 2 * H:3 * H])
            h = o * np.tanh(c)
        elif mode == "GRU":
            r = sigmoid(gx[t][:, :H] + gh[:, :H])
            z = sigmoid(gx[t][:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gx[t][:, 2 * H:] + r * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
        else:
            h = np.tanh(gx[t] + gh)
        ys.append(h)
    return np.stack(ys)


def data(T, B, I, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(np.float32)


MODES = ["LSTM", "GRU", "RNN"]


@needs_bf16
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("T, B, I, H", [(6, 3, 5, 17), (4, 33, 40, 32), (3, 1, 64, 16)])
def test_forward_equals_numpy_reference_of_bf16(mode, T, B, I, H):
    layer = getattr(fastrnn, mode)(I, H, seed=1)
    x = data(T, B, I)
    with fastrnn.autocast("bfloat16"):
        y, _ = layer(x)
    ref = reference(mode, x, layer)
    y32, _ = layer(x)
    # a float32 sum's rounding can move an operand across a bf16 rounding boundary: the
    # reference differs from the kernels by a few float32 ulps, not by bf16's error
    assert np.abs(y - ref).max() < 5e-5
    assert np.abs(y32 - ref).max() > 20 * np.abs(y - ref).max()     # bf16 is what shows


@needs_bf16
@pytest.mark.parametrize("level", ["baseline", "avx512_bf16", "amx"])
@pytest.mark.parametrize("mode", MODES)
def test_every_isa_path_through_the_layers(level, mode):
    if LEVELS.index(level) > DETECTED:
        pytest.skip(f"this CPU has no {level}")
    layer = getattr(fastrnn, mode)(40, 50, seed=2)     # 4H, 3H, H not multiples of 16
    x = data(5, 37, 40)
    _core.set_isa_cap(level)
    assert _core.isa() == level
    with fastrnn.autocast("bfloat16"):
        y, state, backward = layer.forward_train(x)
        dx, _ = backward(np.ones_like(y))
    assert np.abs(y - reference(mode, x, layer)).max() < 5e-5
    _core.set_isa_cap(None)
    layer.zero_grad()
    with fastrnn.autocast("bfloat16"):
        y2, _, backward2 = layer.forward_train(x)
        dx2, _ = backward2(np.ones_like(y))
    np.testing.assert_allclose(y, y2, atol=5e-5)
    np.testing.assert_allclose(dx, dx2, atol=1e-4 * np.abs(dx2).max())


@needs_bf16
@pytest.mark.parametrize("mode, T, B, I, H", [("LSTM", 50, 128, 512, 512),   # W4i
                                              ("GRU", 50, 256, 64, 128),     # W7
                                              ("RNN", 50, 64, 128, 256)])
def test_against_float32_on_benchmark_shapes(mode, T, B, I, H):
    layer = getattr(fastrnn, mode)(I, H, seed=0)
    x = data(T, B, I)
    y32, s32 = layer(x)
    with fastrnn.autocast("bfloat16"):
        y16, s16 = layer(x)
    diff = np.abs(y16 - y32)
    print(f"\n[bf16] {mode} T{T} B{B} I{I} H{H}: outputs max abs {diff.max():.2e}, "
          f"mean abs {diff.mean():.2e}")
    assert diff.max() < 0.02 and diff.mean() < 2e-3
    assert diff.max() > 1e-5            # the products did run in bf16
    np.testing.assert_array_equal(layer(x)[0], y32)         # float32 again afterwards


@needs_bf16
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bidirectional, lengths", [
    (False, None), (True, [7, 3, 5, 1]),
    # 40 rows: a GRU's steps project their own inputs in the loop (B16_STEP_INPUT_MIN_ROWS)
    (True, [7, 1] + [1 + (3 * b) % 7 for b in range(38)])])
def test_gradients_against_float32(mode, bidirectional, lengths):
    layer = getattr(fastrnn, mode)(24, 32, num_layers=2, bidirectional=bidirectional, seed=3)
    B = 4 if lengths is None else len(lengths)
    x = data(7, B, 24)
    dy = data(7, B, 64 if bidirectional else 32, seed=1)
    grads = {}
    for precision in ("float32", "bfloat16"):
        layer.zero_grad()
        with fastrnn.autocast(precision):
            y, _, backward = layer.forward_train(x, lengths=lengths)
            dx, _ = backward(dy)
        grads[precision] = [dx] + [p.grad.copy() for p in layer.parameters()]
    worst = 0.0
    for a, b in zip(grads["float32"], grads["bfloat16"]):
        rel = np.linalg.norm(a - b) / np.linalg.norm(a)
        worst = max(worst, rel)
        assert 1e-5 < rel < 2e-2
    print(f"\n[bf16] {mode} gradients: worst relative error {worst:.2e}")


@needs_bf16
def test_backward_runs_in_the_precision_of_its_forward():
    layer = fastrnn.GRU(8, 16, seed=0)
    x, dy = data(5, 3, 8), data(5, 3, 16, seed=1)
    runs = []
    for forward_bf16, backward_bf16 in ((True, True), (True, False)):
        layer.zero_grad()
        with fastrnn.autocast(enabled=forward_bf16):
            _, _, backward = layer.forward_train(x)
        with fastrnn.autocast(enabled=backward_bf16):
            backward(dy)
        runs.append(layer.weight_hh_l0.grad.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_autocast_is_thread_local_nested_and_checked():
    assert compute_dtype() is None
    seen = []
    with fastrnn.autocast("bf16"):
        assert compute_dtype() == "bfloat16"
        worker = threading.Thread(target=lambda: seen.append(compute_dtype()))
        worker.start()
        worker.join()
        with fastrnn.autocast("float32"):
            assert compute_dtype() is None
        with fastrnn.autocast("float32", enabled=False):
            assert compute_dtype() == "bfloat16"
        assert compute_dtype() == "bfloat16"
    assert seen == [None] and compute_dtype() is None
    with pytest.raises(ValueError, match="dtype must be one of"):
        with fastrnn.autocast("float16"):
            pass
    with pytest.raises(TypeError, match="enabled must be a bool"):
        with fastrnn.autocast("bf16", enabled=1):
            pass


def test_float64_stays_float64_and_float32_unchanged_outside():
    layer = fastrnn.LSTM(6, 16, dtype=np.float64, seed=0)
    x = data(4, 3, 6).astype(np.float64)
    y64, _ = layer(x)
    with fastrnn.autocast("bfloat16"):
        y, _ = layer(x)
        y_train, _, _ = layer.forward_train(x)
    np.testing.assert_array_equal(y, y64)
    np.testing.assert_array_equal(y_train, y64)


@pytest.mark.parametrize("make, what", [
    (lambda: fastrnn.GRU(8, 16, reset_after=False), "r before the product"),
    (lambda: fastrnn.LSTM(8, 16, layer_norm=True), "layer-normalised LSTM"),
    (lambda: fastrnn.LSTM(8, 16, proj_size=4), "projection"),
])
def test_what_is_not_covered_is_refused(make, what):
    layer = make()
    with fastrnn.autocast("bfloat16"), pytest.raises(ValueError, match=what):
        layer(data(3, 2, 8))


def test_one_step_calls_are_refused():
    cell = fastrnn.LSTMCell(8, 16, seed=0)
    x = data(1, 2, 8)[0]
    with fastrnn.autocast("bfloat16"):
        with pytest.raises(ValueError, match="not one-step calls"):
            cell(x)
        model = fastrnn.SequenceModel.build("gru", input_size=8, hidden_size=16,
                                            output_size=2, head="many_to_many", seed=0)
        stepper = model.stepper(batch_size=2)
        with pytest.raises(ValueError, match="not one-step calls"):
            stepper.step(x)
    cell(x)                                             # float32 outside


@needs_bf16
def test_a_cells_forward_train_is_covered():
    cell = fastrnn.GRUCell(8, 16, seed=0)
    x = data(1, 5, 8)[0]
    h32 = cell(x)
    with fastrnn.autocast("bfloat16"):
        h16, backward = cell.forward_train(x)
    assert 1e-6 < np.abs(h16 - h32).max() < 1e-2


@needs_bf16
def test_precision_argument_of_fit_predict_evaluate():
    x = data(6, 40, 4).transpose(1, 0, 2).copy()
    y = (x[:, :, 0].sum(1) > 0).astype(np.int64)
    model = fastrnn.SequenceModel.build("lstm", input_size=4, hidden_size=16, output_size=2,
                                        head="many_to_one", seed=0)
    out32 = model.forward(x)
    out16 = model.forward(x, precision="bfloat16")
    assert 1e-6 < np.abs(out16 - out32).max() < 0.05
    assert model.evaluate(x, y, precision="bf16")["loss"] > 0
    np.testing.assert_array_equal(model.predict(x, precision="bfloat16"), out16.argmax(1))
    history = model.fit(x, y, epochs=1, progress=False, seed=0, precision="bfloat16")
    assert np.isfinite(history["loss"][0])
    assert compute_dtype() is None
    with pytest.raises(ValueError, match="precision must be one of"):
        model.predict(x, precision="int8")


@needs_bf16
@pytest.mark.parametrize("mode", MODES)
def test_torch_autocast_parity(mode):
    torch = pytest.importorskip("torch")
    T, B, I, H = 20, 16, 64, 64
    ours = getattr(fastrnn, mode)(I, H, seed=4)
    theirs = fastrnn.to_torch(ours)
    x = data(T, B, I)
    with fastrnn.autocast("bfloat16"):
        y, _ = ours(x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        yt = theirs(torch.from_numpy(x))[0].float().numpy()
    y32, _ = ours(x)
    diff = np.abs(y - yt).max()
    print(f"\n[bf16] {mode} against torch.autocast: max abs {diff:.2e} (float32 against "
          f"either: {np.abs(y32 - yt).max():.2e})")
    # rounding points differ (torch rounds its bf16 outputs too): within bf16's error,
    # and nearer torch's bf16 than float32 is
    assert diff < 0.03
    assert diff < np.abs(y32 - yt).max()


@needs_bf16
def test_kernel_refuses_bad_bf16_arguments():
    layer = fastrnn.LSTM(8, 16, seed=0)
    W_ih, W_hh = layer.weight_ih_l0.data, layer.weight_hh_l0.data
    b = layer.bias_ih_l0.data
    T, B = 3, 2
    X = data(T, B, 8).reshape(T * B, 8)
    nact = np.full(T, B, np.intc)
    bounds = np.array([0, B], np.intc)
    h, c = np.zeros((B, 16), np.float32), np.zeros((B, 16), np.float32)
    Y = np.empty((T, B, 16), np.float32)
    Gt = np.empty((T * B, 64), np.float32)
    Whb = np.zeros(_blas.b16_packed_size(16, 64), np.uint16)
    Wib = np.zeros(_blas.b16_packed_size(8, 64), np.uint16)
    hb, Xb = np.zeros((B, 32), np.uint16), np.zeros((T * B, 32), np.uint16)
    with pytest.raises(ValueError, match="given together"):
        _core.forward(_core.KIND_LSTM, X, W_ih, W_hh, b, b, nact, bounds, h, Y, 0, Gt, c=c,
                      W_hh_b=Whb)
    with pytest.raises(ValueError, match="W_hh_b must have shape"):
        _core.forward(_core.KIND_LSTM, X, W_ih, W_hh, b, b, nact, bounds, h, Y, 0, Gt, c=c,
                      W_hh_b=Whb[:-1], W_ih_b=Wib, Xb=Xb, hb=hb)
    with pytest.raises(ValueError, match="hb must have shape"):
        _core.forward(_core.KIND_LSTM, X, W_ih, W_hh, b, b, nact, bounds, h, Y, 0, Gt, c=c,
                      W_hh_b=Whb, W_ih_b=Wib, Xb=Xb, hb=hb[:1])


@needs_bf16
def test_bf16_panels_follow_the_weights():
    """The bf16 panels are kept with their weight array and packed again after any change
    (an optimizer step in place)."""
    layer = fastrnn.LSTM(8, 16, seed=5)
    x = data(4, 3, 8)
    W = layer.weight_hh_l0.data
    first = _engine.b16_panels(W, True)
    assert _engine.b16_panels(W, True) is first
    with fastrnn.autocast("bfloat16"):
        y0, _ = layer(x)
        W[2, 3] += 0.5
        y1, _ = layer(x)
    again = _engine.b16_panels(W, True)
    assert again is not first
    expect = np.empty_like(again)
    _blas.b16_pack(W.T, expect)
    np.testing.assert_array_equal(again, expect)
    fresh = fastrnn.LSTM(8, 16, seed=5)
    fresh.load_state_dict(layer.state_dict())
    with fastrnn.autocast("bfloat16"):
        np.testing.assert_array_equal(fresh(x)[0], y1)
    assert not np.array_equal(y0, y1)


@needs_bf16
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lengths", [None, "varied"])
def test_the_same_bits_whatever_the_threads(mode, lengths):
    """The time loop on one or two parts of the batch, and the products before and after
    it (conversions, packing, bf16 products) in one part or split across the threads:
    the same sums (the parts start at multiples of 16 rows, so each row's products take
    the same path, AMX tiles or the rows after them)."""
    if _blas.process_num_threads() < 2:
        pytest.skip("one thread")
    B = 70
    layer = getattr(fastrnn, mode)(40, 72, seed=6)
    x, dy = data(12, B, 40), data(12, B, 72, seed=1)      # LSTM, GRU: the loop splits
    lens = None if lengths is None else np.random.default_rng(2).integers(1, 13, B)
    old = _blas.parallel_min_flops()
    threads = fastrnn.get_num_threads()
    runs = []
    try:
        for n, threshold in ((1, 1e30), (2, 1), (2, 1e30)):
            fastrnn.set_num_threads(n)
            _blas.parallel_min_flops(threshold)
            layer.zero_grad()
            with fastrnn.autocast("bfloat16"):
                y, _, backward = layer.forward_train(x, lengths=lens)
                dx, _ = backward(dy)
            runs.append([y, dx] + [p.grad.copy() for p in layer.parameters()])
    finally:
        _blas.parallel_min_flops(old)
        fastrnn.set_num_threads(threads)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@needs_bf16
@pytest.mark.parametrize("make", [lambda: fastrnn.FastRNN(12, 32, seed=7),
                                  lambda: fastrnn.FastGRNN(12, 32, seed=7),
                                  lambda: fastrnn.LSTM(12, 32, peephole=True, seed=7)])
def test_the_other_kinds_against_float32(make):
    """FastRNN (one fused product a step), FastGRNN (its biases in the step) and the LSTM
    with peepholes under bf16: within bf16's error of float32, forward and gradients."""
    layer = make()
    x, lengths = data(9, 6, 12), [9, 4, 7, 1, 9, 3]
    runs = []
    for precision in ("float32", "bfloat16"):
        layer.zero_grad()
        with fastrnn.autocast(precision):
            y, _, backward = layer.forward_train(x, lengths=lengths)
            dx, _ = backward(np.ones_like(y))
            y_infer, _ = layer(x, lengths=lengths)
        runs.append([y, y_infer, dx] + [p.grad.copy() for p in layer.parameters()])
    np.testing.assert_allclose(runs[1][1], runs[1][0], atol=1e-5)   # inference as training
    for a, b in zip(*runs):
        if np.linalg.norm(a) > 0:
            assert np.linalg.norm(a - b) / np.linalg.norm(a) < 2e-2
    assert np.abs(runs[0][0] - runs[1][0]).max() > 1e-6


@needs_bf16
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("options", [dict(recurrent_dropout=0.3), dict(zoneout=0.2)])
def test_regularisers_in_the_loop_under_bf16(mode, options):
    """Recurrent dropout (the product reads h * mask, backward through the mask) and
    zoneout under bf16: within bf16's error of float32 with the same masks."""
    x = data(8, 5, 12)
    runs = []
    for precision in ("float32", "bfloat16"):
        layer = getattr(fastrnn, mode)(12, 32, seed=8, **options)   # the same masks
        with fastrnn.autocast(precision):
            y, _, backward = layer.forward_train(x)
            dx, _ = backward(np.ones_like(y))
        runs.append([y, dx] + [p.grad.copy() for p in layer.parameters()])
    for a, b in zip(*runs):
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < 2e-2
    assert np.abs(runs[0][1] - runs[1][1]).max() > 1e-7
