"""Numerical safety: very long sequences, saturating inputs and exploding relu RNNs give
finite results, or inf/nan that ``fit`` reports in ``History.stop_reason`` -- never a
crash; gradient clipping bounds every update."""

import math

import numpy as np
import pytest

import fastrnn
from fastrnn import optim

MODES = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")]
IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def make(mode, nonlinearity, I, H, dtype=np.float32, seed=0, **kw):
    if mode == "RNN":
        kw["nonlinearity"] = nonlinearity
    return getattr(fastrnn, mode)(I, H, dtype=dtype, seed=seed, **kw)


def finite(*arrays):
    return all(np.all(np.isfinite(a)) for a in arrays)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=IDS)
def test_ten_thousand_steps(mode, nonlinearity, dtype):
    T = 10_000
    layer = make(mode, nonlinearity, 4, 8, dtype, num_layers=2, bidirectional=True)
    if nonlinearity == "relu":                       # keep a relu RNN contractive
        for name, p in layer.named_parameters():
            if "weight_hh" in name:
                p.data *= 0.5
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, 2, 4)).astype(dtype)
    lengths = np.array([T, T // 3])
    y, state, backward = layer.forward_train(x, lengths=lengths)
    dx, dstate = backward(rng.standard_normal(y.shape).astype(dtype))
    h = state[0] if mode == "LSTM" else state
    assert finite(y, h, dx, *(p.grad for p in layer.parameters()))
    if nonlinearity == "tanh":
        assert np.abs(y).max() <= 1
    assert np.all(y[T // 3:, 1] == 0)                  # padded steps stay zero
    # the inference path agrees with the training path over the whole length
    np.testing.assert_array_equal(layer(x, lengths=lengths)[0], y)


@pytest.mark.parametrize("scale", [1e2, 1e4, 1e30, float(np.finfo(np.float32).max)],
                         ids=["1e2", "1e4", "1e30", "f32max"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_saturating_inputs(mode, scale):
    """Gates pushed far into saturation: outputs stay in [-1, 1], states and gradients
    finite, and float32 (vectorised exp/tanh) agrees with float64."""
    rng = np.random.default_rng(1)
    l64 = make(mode, "tanh", 5, 6, np.float64, num_layers=2)
    l32 = make(mode, "tanh", 5, 6, np.float32, num_layers=2)
    l32.load_state_dict(l64.state_dict())
    signs = rng.choice([-1.0, 1.0], (30, 3, 5))
    x64 = (signs * scale).astype(np.float32).astype(np.float64)
    with np.errstate(over="ignore"):
        x32 = x64.astype(np.float32)
    y64, s64, back64 = l64.forward_train(x64)
    y32, s32, back32 = l32.forward_train(x32)
    dy = rng.standard_normal(y64.shape)
    dx64, _ = back64(dy)
    dx32, _ = back32(dy.astype(np.float32))
    for y in (y32, y64):
        assert finite(y) and np.abs(y).max() <= 1
    if mode == "LSTM":
        assert finite(s32[1], s64[1]) and np.abs(s64[1]).max() <= 30
    assert finite(*(p.grad for p in l32.parameters()), *(p.grad for p in l64.parameters()))
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    # the input gradient is W_ih^T times gate gradients: finite wherever the weights are
    assert finite(dx64)
    assert np.all(np.isfinite(dx32) | (np.abs(dx64) > 1e37))


def test_saturating_cells_and_stepper():
    big = np.full((2, 3), 1e30, np.float32)
    for cell in (fastrnn.RNNCell(3, 4, seed=0), fastrnn.LSTMCell(3, 4, seed=0),
                 fastrnn.GRUCell(3, 4, seed=0)):
        out = cell(big)
        out = out if isinstance(out, tuple) else (out,)
        assert finite(*out) and np.abs(out[0]).max() <= 1
    model = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4, output_size=2,
                                        seed=0)
    stepper = model.stepper(2)
    for t in range(1000):
        out = stepper.step(big * (-1) ** t)
    assert finite(out, *stepper.state)


def exploding_rnn(scale=3.0, seed=0):
    model = fastrnn.SequenceModel.build("rnn", input_size=3, hidden_size=8, output_size=3,
                                        nonlinearity="relu", seed=seed)
    for name, p in model.rnn.named_parameters():
        if "weight_hh" in name:
            p.data[...] = scale * np.eye(8, dtype=np.float32) + np.abs(p.data)
    return model


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_exploding_relu_rnn_inference_overflows_without_crashing():
    model = exploding_rnn()
    x = np.abs(np.random.default_rng(2).standard_normal((2, 500, 3))).astype(np.float32)
    out = model.forward(x)                              # overflows to inf / nan
    assert not finite(out)
    stepper = model.stepper(2)
    for t in range(500):
        stepper.step(x[:, t])
    assert not finite(stepper.state)
    y, h = model.rnn(np.swapaxes(x, 0, 1))
    assert np.isinf(h).any() or np.isnan(h).any()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_fit_reports_an_exploding_relu_rnn():
    model = exploding_rnn()
    before = model.state_dict()
    x = np.abs(np.random.default_rng(3).standard_normal((8, 300, 3))).astype(np.float32)
    y = np.zeros((8, 300), np.int64)
    h = model.fit(x, y, epochs=3, batch_size=4, progress=False, seed=0)
    assert h.epochs == 0 and h.history == {}
    assert h.stop_reason.startswith("stopped at epoch 1: non-finite loss")
    np.testing.assert_equal(model.state_dict(), before)      # nothing applied
    # the same with clipping: the forward pass overflows, clipping cannot help; still a
    # report, not a crash
    h = model.fit(x, y, epochs=1, batch_size=4, progress=False, clip_norm=1.0)
    assert "non-finite" in h.stop_reason
    np.testing.assert_equal(model.state_dict(), before)


class StepRecorder(optim.SGD):
    """SGD that records the norm of every update it makes."""

    def step(self):
        before = [p.data.copy() for p in self.param_groups[0]["params"]]
        super().step()
        after = [p.data for p in self.param_groups[0]["params"]]
        self.norms = getattr(self, "norms", [])
        self.norms.append(math.sqrt(sum(float(np.sum((a.astype(np.float64) - b) ** 2))
                                        for a, b in zip(after, before))))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_gradient_clipping_bounds_every_update():
    """A relu RNN on the edge of blowing up: unclipped SGD diverges (and says so); with
    clip_norm every update has norm <= lr * clip_norm and training stays finite."""
    rng = np.random.default_rng(4)
    x = np.abs(rng.standard_normal((16, 40, 3))).astype(np.float32)
    y = rng.integers(0, 3, (16, 40))
    lr, clip = 0.5, 0.1

    free = exploding_rnn(scale=1.05, seed=1)
    opt = StepRecorder(free.parameters(), lr=lr)
    h_free = free.fit(x, y, epochs=20, batch_size=4, progress=False, optimizer=opt, seed=0)
    assert "non-finite" in h_free.stop_reason or max(opt.norms) > lr * clip * 10

    clipped = exploding_rnn(scale=1.05, seed=1)
    opt = StepRecorder(clipped.parameters(), lr=lr)
    h = clipped.fit(x, y, epochs=20, batch_size=4, progress=False, optimizer=opt, seed=0,
                    clip_norm=clip)
    assert h.stop_reason == "completed" and h.epochs == 20
    assert len(opt.norms) == 20 * 4
    assert max(opt.norms) <= lr * clip * (1 + 1e-5)
    assert all(finite(p.data) for p in clipped.parameters())
    assert all(math.isfinite(v) for v in h["loss"])


def test_clip_grad_norm_and_value_on_exploding_gradients():
    model = exploding_rnn(scale=1.0)
    x = np.abs(np.random.default_rng(5).standard_normal((4, 20, 3))).astype(np.float32)
    out, _, backward = model.forward_train(x)
    backward(np.ones_like(out))
    params = model.parameters()
    grads = [p.grad.astype(np.float64) for p in params]
    total = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    assert math.isfinite(total) and total > 100
    returned = optim.clip_grad_norm(params, 1.0)
    assert returned == pytest.approx(total, rel=1e-5)
    after = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in params))
    assert after == pytest.approx(1.0, rel=1e-5)
    for g, p in zip(grads, params):                   # the direction is kept
        np.testing.assert_allclose(p.grad, g / total, rtol=1e-4, atol=1e-9)
    optim.clip_grad_value(params, 1e-3)
    assert max(float(np.abs(p.grad).max()) for p in params) <= np.float32(1e-3)
