"""Tests of fastrnn.reference: finite-difference gradients, lengths semantics, PyTorch parity."""


import numpy as np
import pytest

from _tools import central_differences, load_reference

ref = load_reference()

T, B, I, H = 4, 3, 2, 3
LENGTHS = np.array([4, 1, 2])  # a full row, a one-step row, a partial row
CELLS = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")]
CELL_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


# ----------------------------------------------------------------------------- helpers


def make_params(rng, mode, input_size, hidden, num_layers=1, bidirectional=False,
                bias=True, dtype=np.float64):
    """Random parameters under PyTorch's names, weight_ih_l{k}{suffix} etc."""
    G, D = ref.NUM_GATES[mode], 2 if bidirectional else 1
    params = {}
    for k in range(num_layers):
        width = input_size if k == 0 else D * hidden
        for suffix in ["", "_reverse"][:D]:
            shapes = [(G * hidden, width), (G * hidden, hidden)]
            shapes += [(G * hidden,), (G * hidden,)] if bias else []
            for name, shape in zip(NAMES, shapes):
                params[f"{name}_l{k}{suffix}"] = rng.uniform(-0.8, 0.8, shape).astype(dtype)
    return params


def make_cell_inputs(rng, mode, bias=True, dtype=np.float64):
    """x, h0 (c0) and one layer's weights, keyed by the names of their gradients."""
    arrays = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((B, H))}
    if mode == "LSTM":
        arrays["c0"] = rng.standard_normal((B, H))
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    weights = make_params(rng, mode, I, H, bias=bias, dtype=dtype)
    arrays.update({k.removesuffix("_l0"): v for k, v in weights.items()})
    return arrays


def cell_forward(mode, nonlinearity, a, lengths, reverse):
    """Run one cell function; returns the outputs tuple (y, h_n[, c_n]) and the cache."""
    w = (a["weight_ih"], a["weight_hh"], a.get("bias_ih"), a.get("bias_hh"))
    kw = dict(lengths=lengths, reverse=reverse)
    if mode == "LSTM":
        y, h_n, c_n, cache = ref.lstm_forward(a["x"], a["h0"], a["c0"], *w, **kw)
        return (y, h_n, c_n), cache
    if mode == "GRU":
        y, h_n, cache = ref.gru_forward(a["x"], a["h0"], *w, **kw)
    else:
        y, h_n, cache = ref.rnn_forward(a["x"], a["h0"], *w, nonlinearity=nonlinearity, **kw)
    return (y, h_n), cache


def cell_backward(mode, d_outputs, cache):
    """Gradients keyed like the inputs of make_cell_inputs."""
    if mode == "LSTM":
        dx, dh0, dc0, grads = ref.lstm_backward(*d_outputs, cache)
        return {"x": dx, "h0": dh0, "c0": dc0, **grads}
    backward = ref.gru_backward if mode == "GRU" else ref.rnn_backward
    dx, dh0, grads = backward(*d_outputs, cache)
    return {"x": dx, "h0": dh0, **grads}


def linear_loss(outputs, weights):
    """sum(y*Ry) + sum(h_n*Rh) (+ sum(c_n*Rc)): its gradient w.r.t. each output is R."""
    return sum(float(np.sum(o * w)) for o, w in zip(outputs, weights))


def check_gradients(loss, arrays, analytic):
    assert set(analytic) == set(arrays)
    for name in arrays:
        numeric = central_differences(lambda: loss(arrays), arrays[name])
        np.testing.assert_allclose(analytic[name], numeric,
                                   rtol=1e-5, atol=1e-7, err_msg=name)


def random_like(rng, outputs):
    return tuple(rng.standard_normal(o.shape) for o in outputs)


# ----------------------------------------------------------------------------- one cell


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=CELL_IDS)
def test_cell_gradients(mode, nonlinearity, lengths, reverse, bias):
    rng = np.random.default_rng(1)
    arrays = make_cell_inputs(rng, mode, bias=bias)
    outputs, cache = cell_forward(mode, nonlinearity, arrays, lengths, reverse)
    R = random_like(rng, outputs)
    analytic = cell_backward(mode, R, cache)

    def loss(a):
        return linear_loss(cell_forward(mode, nonlinearity, a, lengths, reverse)[0], R)

    check_gradients(loss, arrays, analytic)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=CELL_IDS)
def test_lengths_equal_truncated_sequences(mode, nonlinearity, reverse):
    """Each row of a padded batch gives what its own truncated sequence gives alone."""
    rng = np.random.default_rng(2)
    a = make_cell_inputs(rng, mode)
    (y, *states), cache = cell_forward(mode, nonlinearity, a, LENGTHS, reverse)
    R = random_like(rng, (y, *states))
    grads = cell_backward(mode, R, cache)
    for b, n in enumerate(LENGTHS):
        row = {k: (v[:n, b:b + 1] if k == "x" else v[b:b + 1]) if k in ("x", "h0", "c0") else v
               for k, v in a.items()}
        (y_b, *states_b), cache_b = cell_forward(mode, nonlinearity, row, None, reverse)
        R_b = (R[0][:n, b:b + 1],) + tuple(r[b:b + 1] for r in R[1:])
        grads_b = cell_backward(mode, R_b, cache_b)
        np.testing.assert_allclose(y[:n, b:b + 1], y_b, rtol=1e-12, atol=1e-14)
        assert np.all(y[n:, b] == 0)
        for s, s_b in zip(states, states_b):
            np.testing.assert_allclose(s[b:b + 1], s_b, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(grads["x"][:n, b:b + 1], grads_b["x"], rtol=1e-12, atol=1e-14)
        assert np.all(grads["x"][n:, b] == 0)
        for k in ("h0", "c0"):
            if k in grads:
                np.testing.assert_allclose(grads[k][b:b + 1], grads_b[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=CELL_IDS)
def test_reverse_is_forward_on_flipped_input(mode, nonlinearity):
    a = make_cell_inputs(np.random.default_rng(3), mode)
    (y, *states), _ = cell_forward(mode, nonlinearity, a, None, True)
    (y_f, *states_f), _ = cell_forward(mode, nonlinearity, {**a, "x": a["x"][::-1]}, None, False)
    np.testing.assert_allclose(y, y_f[::-1], rtol=1e-12, atol=1e-14)
    for s, s_f in zip(states, states_f):
        np.testing.assert_allclose(s, s_f, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=CELL_IDS)
def test_float32_and_inputs_untouched(mode, nonlinearity):
    rng = np.random.default_rng(4)
    a32 = make_cell_inputs(rng, mode, dtype=np.float32)
    before = {k: v.copy() for k, v in a32.items()}
    outputs, cache = cell_forward(mode, nonlinearity, a32, LENGTHS, True)
    R = tuple(r.astype(np.float32) for r in random_like(rng, outputs))
    R_before = tuple(r.copy() for r in R)
    grads = cell_backward(mode, R, cache)
    for k, v in a32.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    for r, r0 in zip(R, R_before):
        np.testing.assert_array_equal(r, r0)
    assert all(o.dtype == np.float32 for o in outputs)
    assert all(g.dtype == np.float32 for g in grads.values())

    a64 = {k: v.astype(np.float64) for k, v in a32.items()}
    outputs64, cache64 = cell_forward(mode, nonlinearity, a64, LENGTHS, True)
    grads64 = cell_backward(mode, tuple(r.astype(np.float64) for r in R), cache64)
    for o, o64 in zip(outputs, outputs64):
        np.testing.assert_allclose(o, o64, rtol=1e-4, atol=1e-5)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads64[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_outputs_do_not_alias_the_cache():
    """Writing into returned arrays must not change what backward computes."""
    a = make_cell_inputs(np.random.default_rng(5), "RNN")
    (y, h_n), cache = cell_forward("RNN", "tanh", a, None, False)
    R = (np.ones_like(y), np.ones_like(h_n))
    expected = cell_backward("RNN", R, cache)
    y[...] = 7.0
    h_n[...] = 7.0
    got = cell_backward("RNN", R, cache)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


@pytest.mark.parametrize("lengths", [[0, 1, 2], [1, 2, T + 1], [1, 2], [1.0, 2.0, 3.0]])
def test_bad_lengths(lengths):
    a = make_cell_inputs(np.random.default_rng(6), "GRU")
    with pytest.raises(ValueError, match="lengths"):
        cell_forward("GRU", "tanh", a, np.array(lengths), False)


def test_bad_nonlinearity_and_shapes():
    a = make_cell_inputs(np.random.default_rng(7), "RNN")
    with pytest.raises(ValueError, match="nonlinearity"):
        cell_forward("RNN", "sigmoid", a, None, False)
    with pytest.raises(ValueError, match="h0"):
        cell_forward("RNN", "tanh", {**a, "h0": a["h0"][:, :2]}, None, False)
    with pytest.raises(ValueError, match="W_ih"):
        cell_forward("RNN", "tanh", {**a, "weight_ih": a["weight_ih"].T}, None, False)


# ----------------------------------------------------------------------------- stacks


def stack_run(mode, nonlinearity, a, lengths, num_layers=2, bidirectional=True):
    params = {k: v for k, v in a.items() if k not in ("x", "h0", "c0")}
    y, h_n, c_n, cache = ref.stack_forward(mode, a["x"], params, num_layers=num_layers,
                                           bidirectional=bidirectional, h0=a["h0"],
                                           c0=a.get("c0"), lengths=lengths,
                                           nonlinearity=nonlinearity)
    return tuple(o for o in (y, h_n, c_n) if o is not None), cache


def stack_grads(d_outputs, cache):
    dy, dh_n, *dc_n = d_outputs
    dx, dh0, dc0, grads = ref.stack_backward(dy, dh_n, dc_n[0] if dc_n else None, cache)
    out = {"x": dx, "h0": dh0, **grads}
    if dc0 is not None:
        out["c0"] = dc0
    return out


def make_stack_inputs(rng, mode, num_layers=2, bidirectional=True, bias=True,
                      input_size=I, hidden=H, steps=T, batch=B, dtype=np.float64):
    D = 2 if bidirectional else 1
    a = {"x": rng.standard_normal((steps, batch, input_size)).astype(dtype),
         "h0": rng.standard_normal((num_layers * D, batch, hidden)).astype(dtype)}
    if mode == "LSTM":
        a["c0"] = rng.standard_normal((num_layers * D, batch, hidden)).astype(dtype)
    a.update(make_params(rng, mode, input_size, hidden, num_layers, bidirectional, bias, dtype))
    return a


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=CELL_IDS)
def test_stack_gradients(mode, nonlinearity, bias):
    rng = np.random.default_rng(8)
    a = make_stack_inputs(rng, mode, bias=bias)
    outputs, cache = stack_run(mode, nonlinearity, a, LENGTHS)
    assert outputs[0].shape == (T, B, 2 * H)
    R = random_like(rng, outputs)
    analytic = stack_grads(R, cache)

    def loss(arrays):
        return linear_loss(stack_run(mode, nonlinearity, arrays, LENGTHS)[0], R)

    check_gradients(loss, a, analytic)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_stack_default_states_are_zeros(mode):
    rng = np.random.default_rng(9)
    a = make_stack_inputs(rng, mode)
    a["h0"] = np.zeros_like(a["h0"])
    if "c0" in a:
        a["c0"] = np.zeros_like(a["c0"])
    outputs, cache = stack_run(mode, "tanh", a, LENGTHS)
    params = {k: v for k, v in a.items() if k not in ("x", "h0", "c0")}
    y, h_n, c_n, cache0 = ref.stack_forward(mode, a["x"], params, 2, True, lengths=LENGTHS)
    np.testing.assert_array_equal(y, outputs[0])
    np.testing.assert_array_equal(h_n, outputs[1])
    dy = rng.standard_normal(y.shape)
    dx, dh0, dc0, _ = ref.stack_backward(dy, None, None, cache0)
    zeros = tuple(np.zeros_like(o) for o in outputs[1:])
    np.testing.assert_array_equal(dx, stack_grads((dy, *zeros), cache)["x"])
    assert (dc0 is None) == (mode != "LSTM")


# ----------------------------------------------------------------------------- PyTorch


def torch_run(mode, nonlinearity, a, lengths, num_layers, bidirectional, bias, R):
    """Forward and backward through torch.nn.{RNN,LSTM,GRU} with the same weights."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    dtype = torch.float64 if a["x"].dtype == np.float64 else torch.float32
    steps, _, input_size = a["x"].shape
    hidden = a["h0"].shape[-1]
    kw = {"nonlinearity": nonlinearity} if mode == "RNN" else {}
    module = getattr(torch.nn, mode)(input_size, hidden, num_layers=num_layers, bias=bias,
                                     bidirectional=bidirectional, dtype=dtype, **kw)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(a[name]))
    x = torch.tensor(a["x"], requires_grad=True)
    h0 = torch.tensor(a["h0"], requires_grad=True)
    c0 = torch.tensor(a["c0"], requires_grad=True) if mode == "LSTM" else None
    inp = x if lengths is None else pack_padded_sequence(
        x, torch.as_tensor(lengths, dtype=torch.int64), enforce_sorted=False)
    y, state = module(inp, (h0, c0) if mode == "LSTM" else h0)
    if lengths is not None:
        y, _ = pad_packed_sequence(y, total_length=steps)
    outputs = (y,) + (tuple(state) if mode == "LSTM" else (state,))
    loss = sum((o * torch.from_numpy(r)).sum() for o, r in zip(outputs, R))
    loss.backward()
    grads = {"x": x.grad, "h0": h0.grad, **{n: p.grad for n, p in module.named_parameters()}}
    if c0 is not None:
        grads["c0"] = c0.grad
    return ([o.detach().numpy() for o in outputs],
            {k: v.numpy() for k, v in grads.items()})


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("lengths", [None, [5, 2, 1, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=CELL_IDS)
def test_torch_parity_float64(mode, nonlinearity, bidirectional, lengths, bias):
    pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    a = make_stack_inputs(rng, mode, bidirectional=bidirectional, bias=bias,
                          input_size=3, hidden=4, steps=5, batch=4)
    lengths = None if lengths is None else np.array(lengths)
    outputs, cache = stack_run(mode, nonlinearity, a, lengths, 2, bidirectional)
    R = random_like(rng, outputs)
    grads = stack_grads(R, cache)
    t_outputs, t_grads = torch_run(mode, nonlinearity, a, lengths, 2, bidirectional, bias, R)
    for o, t_o in zip(outputs, t_outputs):
        np.testing.assert_allclose(o, t_o, rtol=1e-10, atol=1e-10)
    assert set(grads) == set(t_grads)
    for k in grads:
        np.testing.assert_allclose(grads[k], t_grads[k], rtol=1e-10, atol=1e-10, err_msg=k)


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=CELL_IDS)
def test_torch_parity_float32(mode, nonlinearity):
    pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    a = make_stack_inputs(rng, mode, input_size=3, hidden=4, steps=5, batch=4,
                          dtype=np.float32)
    lengths = np.array([5, 2, 1, 4])
    outputs, cache = stack_run(mode, nonlinearity, a, lengths)
    R = tuple(r.astype(np.float32) for r in random_like(rng, outputs))
    grads = stack_grads(R, cache)
    t_outputs, t_grads = torch_run(mode, nonlinearity, a, lengths, 2, True, True, R)
    for o, t_o in zip(outputs, t_outputs):
        assert o.dtype == np.float32
        np.testing.assert_allclose(o, t_o, rtol=1e-4, atol=1e-5)
    for k in grads:
        assert grads[k].dtype == np.float32, k
        np.testing.assert_allclose(grads[k], t_grads[k], rtol=1e-4, atol=1e-5, err_msg=k)
