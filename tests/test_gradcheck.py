"""Finite-difference checks of the public layers' and cells' backward passes (float64).

The loss is linear in the outputs, ``L = sum(y * Ry) + sum(h_n * Rh) (+ sum(c_n * Rc))``,
so its gradient w.r.t. the outputs is (Ry, Rh, Rc); every input, initial state and
parameter is perturbed in place by +-EPS and the central difference compared with what
``backward`` returns or accumulates into ``.grad``.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from _tools import FD_TOL, central_differences

T, B, I, H = 4, 3, 2, 3
LENGTHS = np.array([2, 4, 1])  # unsorted, min 1, max T

MODES = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh"),
         ("GRU", "reset_before"), ("LSTM", "peephole"), ("LSTM", "proj"),
         ("LSTM", "layer_norm")]
MODE_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before", "lstm_peephole",
            "lstm_proj", "lstm_layer_norm"]
# the options of the variants, by the second item of a mode
VARIANT_OPTIONS = {"reset_before": {"reset_after": False}, "peephole": {"peephole": True},
                   "proj": {"proj_size": 2}, "layer_norm": {"layer_norm": True}}
# (num_layers, bidirectional, lengths, bias, reverse)
LAYOUTS = [(1, False, None, True, False), (1, True, LENGTHS, True, False),
           (2, False, LENGTHS, True, False), (2, True, LENGTHS, True, False),
           (2, True, None, False, False), (2, False, LENGTHS, True, True)]
LAYOUT_IDS = ["L1-uni", "L1-bi-lengths", "L2-uni-lengths", "L2-bi-lengths", "L2-bi-nobias",
              "L2-reverse-lengths"]


def check(analytic, loss, a, what):
    assert_allclose(analytic, central_differences(loss, a), **FD_TOL, err_msg=what)


def make_layer(mode, nonlinearity, num_layers, bidirectional, bias, seed=0, dropout=0.0,
               reverse=False):
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                  dtype=np.float64, seed=seed, dropout=dropout, reverse=reverse,
                  **VARIANT_OPTIONS.get(nonlinearity, {}))
    if mode == "RNN":
        kwargs["nonlinearity"] = nonlinearity
    return getattr(fastrnn, mode)(I, H, **kwargs)


def relu_margin(layer, x, h0, lengths):
    """The smallest |pre-activation| over every active step of a relu RNN layer: finite
    differences are valid only if no perturbation crosses the kink at 0."""
    p = dict(layer.named_parameters())
    D = layer.num_directions
    active = np.ones((T, B), bool) if lengths is None else np.arange(T)[:, None] < lengths
    inputs, pre_all = x, []
    for k in range(layer.num_layers):
        outputs = []
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            W_ih, W_hh = p["weight_ih" + sfx].data, p["weight_hh" + sfx].data
            bias = (p["bias_ih" + sfx].data + p["bias_hh" + sfx].data) if layer.bias else 0
            h = h0[k * D + d].copy()
            out = np.zeros((T, B, H))
            for t in (range(T - 1, -1, -1) if d else range(T)):
                pre = inputs[t] @ W_ih.T + h @ W_hh.T + bias
                pre_all.append(np.abs(pre[active[t]]))
                new = np.maximum(pre, 0)
                h = np.where(active[t][:, None], new, h)
                out[t] = np.where(active[t][:, None], new, 0)
            outputs.append(out)
        inputs = np.concatenate(outputs, axis=2)
    return np.concatenate([a.ravel() for a in pre_all]).min()


def random_data(rng, layer):
    LD, P = layer.num_layers * layer.num_directions, layer.state_size
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((LD, B, P)), rng.standard_normal((LD, B, H))
    Ry = rng.standard_normal((T, B, layer.num_directions * P))
    Rh, Rc = rng.standard_normal((LD, B, P)), rng.standard_normal((LD, B, H))
    return x, h0, c0, Ry, Rh, Rc


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_layer_gradients(mode, nonlinearity, layout):
    num_layers, bidirectional, lengths, bias, reverse = layout
    if nonlinearity == "layer_norm" and not bias:
        pytest.skip("the layer-normalised LSTM's biases are its normalisations'")
    lstm = mode == "LSTM"
    layer = make_layer(mode, nonlinearity, num_layers, bidirectional, bias, seed=1,
                       reverse=reverse)
    rng = np.random.default_rng(2)
    x, h0, c0, Ry, Rh, Rc = random_data(rng, layer)
    if nonlinearity == "relu":
        assert relu_margin(layer, x, h0, lengths) > 1e-4

    def loss():
        if lstm:
            y, (h_n, c_n) = layer(x, (h0, c0), lengths=lengths)
            return np.sum(y * Ry) + np.sum(h_n * Rh) + np.sum(c_n * Rc)
        y, h_n = layer(x, h0, lengths=lengths)
        return np.sum(y * Ry) + np.sum(h_n * Rh)

    layer.zero_grad()
    _, _, backward = layer.forward_train(x, (h0, c0) if lstm else h0, lengths=lengths)
    dx, ds = backward(Ry, (Rh, Rc) if lstm else Rh)
    check(dx, loss, x, "dx")
    check(ds[0] if lstm else ds, loss, h0, "dh0")
    if lstm:
        check(ds[1], loss, c0, "dc0")
    names = [name for name, _ in layer.named_parameters()]
    per_cell = (8 if nonlinearity == "layer_norm"     # 2 weights, 3 gains, 3 biases
                else (4 if bias else 2) + (nonlinearity in ("peephole", "proj")))
    assert len(names) == num_layers * layer.num_directions * per_cell
    for name, p in layer.named_parameters():
        check(p.grad, loss, p.data, f"grad of {name}")


CELL_MODES = [(m, i) for m, i in zip(MODES, MODE_IDS) if m[1] != "proj"]   # as torch's cells


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode,nonlinearity", [m for m, _ in CELL_MODES],
                         ids=[i for _, i in CELL_MODES])
def test_cell_gradients(mode, nonlinearity, bias):
    if nonlinearity == "layer_norm" and not bias:
        pytest.skip("the layer-normalised LSTM's biases are its normalisations'")
    lstm = mode == "LSTM"
    kwargs = dict(bias=bias, dtype=np.float64, seed=3, **VARIANT_OPTIONS.get(nonlinearity, {}))
    if mode == "RNN":
        kwargs["nonlinearity"] = nonlinearity
    cell = getattr(fastrnn, mode + "Cell")(I, H, **kwargs)
    rng = np.random.default_rng(4)
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    Rh, Rc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    if nonlinearity == "relu":
        p = dict(cell.named_parameters())
        pre = x @ p["weight_ih"].data.T + h @ p["weight_hh"].data.T
        if bias:
            pre += p["bias_ih"].data + p["bias_hh"].data
        assert np.abs(pre).min() > 1e-4

    def loss():
        if lstm:
            h1, c1 = cell(x, (h, c))
            return np.sum(h1 * Rh) + np.sum(c1 * Rc)
        return np.sum(cell(x, h) * Rh)

    _, backward = cell.forward_train(x, (h, c) if lstm else h)
    dx, ds = backward((Rh, Rc) if lstm else Rh)
    check(dx, loss, x, "dx")
    check(ds[0] if lstm else ds, loss, h, "dh")
    if lstm:
        check(ds[1], loss, c, "dc")
    for name, p in cell.named_parameters():
        check(p.grad, loss, p.data, f"grad of {name}")


# ------------------------------------------------------------------------------ dropout


def _dropout_layer(mode, seed=0, p=0.5):
    return make_layer(mode, "tanh", 2, True, True, seed=seed, dropout=p)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_dropout_applies_in_training_only(mode):
    layer = _dropout_layer(mode)
    plain = make_layer(mode, "tanh", 2, True, True, seed=99)
    plain.load_state_dict(layer.state_dict())
    x = np.random.default_rng(5).standard_normal((T, B, I))
    y_inf = layer(x)[0]
    y_train = layer.forward_train(x)[0]
    assert not np.allclose(y_train, y_inf)
    # inference never drops: repeated calls agree, and equal the dropout-free layer
    np.testing.assert_array_equal(layer(x)[0], y_inf)
    np.testing.assert_array_equal(plain(x)[0], y_inf)
    np.testing.assert_array_equal(plain.forward_train(x)[0], y_inf)
    # training draws a new mask per call
    assert not np.array_equal(layer.forward_train(x)[0], y_train)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_dropout_is_reproducible_with_seed(mode):
    a, b = _dropout_layer(mode, seed=7), _dropout_layer(mode, seed=7)
    x = np.random.default_rng(6).standard_normal((T, B, I))
    for _ in range(3):
        np.testing.assert_array_equal(a.forward_train(x)[0], b.forward_train(x)[0])
    c = _dropout_layer(mode, seed=8)
    c.load_state_dict(a.state_dict())
    assert not np.array_equal(a.forward_train(x)[0], c.forward_train(x)[0])


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_dropout_gradients_with_a_fixed_mask(mode):
    lstm = mode == "LSTM"
    layer = _dropout_layer(mode, seed=9)
    rng = np.random.default_rng(10)
    x, h0, c0, Ry, Rh, Rc = random_data(rng, layer)
    lengths = LENGTHS
    state = (h0, c0) if lstm else h0

    def forward_train():
        layer._dropout_rng = np.random.default_rng(1234)  # the same mask every call
        return layer.forward_train(x, state, lengths=lengths)

    def loss():
        y, s, _ = forward_train()
        if lstm:
            return np.sum(y * Ry) + np.sum(s[0] * Rh) + np.sum(s[1] * Rc)
        return np.sum(y * Ry) + np.sum(s * Rh)

    y, _, backward = forward_train()
    assert not np.allclose(y, layer(x, state, lengths=lengths)[0])  # the mask is active
    layer.zero_grad()
    dx, ds = backward(Ry, (Rh, Rc) if lstm else Rh)
    check(dx, loss, x, "dx")
    check(ds[0] if lstm else ds, loss, h0, "dh0")
    if lstm:
        check(ds[1], loss, c0, "dc0")
    for name, p in layer.named_parameters():
        check(p.grad, loss, p.data, f"grad of {name}")
