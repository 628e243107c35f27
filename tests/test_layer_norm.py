"""The layer-normalised LSTM (Ba, Kiros & Hinton 2016): ``LSTM(..., layer_norm=True)`` and
``LSTMCell(..., layer_norm=True)``.

Against the NumPy reference (float64 to 1e-10) with gains and biases away from their
initial values, on every product path of the kernels; against a PyTorch transcription of
the paper's equations (``torch.nn.functional.layer_norm`` in a Python loop over the
steps, differentiated by autograd) with the same weights; finite differences; the
refusals.  The shared cases (stacks, directions, lengths, the cell, the stepper, save and
load, fit, to_torch) run in tests/test_variants.py and tests/test_gradcheck.py.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastrnn
from fastrnn import reference as ref
from fastrnn.reference.layer_norm import EPS, NORMS
from _tools import FD_TOL, PARITY_TOL, central_differences

I = 3


def _layer(H=6, dtype=np.float64, seed=0, **options):
    """A layer with its gains and biases drawn away from 1 and 0."""
    layer = fastrnn.LSTM(I, H, layer_norm=True, dtype=dtype, seed=seed, **options)
    rng = np.random.default_rng(seed + 100)
    for name, p in layer.named_parameters():
        if name.startswith("ln_"):
            low, high = (0.5, 1.5) if "weight" in name else (-0.5, 0.5)
            p.data[...] = rng.uniform(low, high, p.data.shape)
    return layer


def _states(rng, layer, B, dtype):
    LD, H = layer.num_layers * layer.num_directions, layer.hidden_size
    return tuple(rng.standard_normal((LD, B, H)).astype(dtype) for _ in range(2))


def _run(layer, x, state0, lengths, dy, dstate):
    """Outputs, final states and every gradient of one forward_train/backward."""
    layer.zero_grad()
    y, state, backward = layer.forward_train(x, state0, lengths=lengths)
    dx, dstate0 = backward(dy, dstate)
    return y, state, dx, dstate0, {n: p.grad.copy() for n, p in layer.named_parameters()}


def _tol(dtype, desired):
    """PARITY_TOL, with float32's absolute part scaled by the largest value: a layer
    normalisation divides by the spread of a few values (see test_variants._grad_tol)."""
    tol = PARITY_TOL[dtype]
    if dtype == np.float32:
        return dict(rtol=tol["rtol"], atol=tol["atol"] * max(1.0, float(np.abs(desired).max())))
    return tol


# (T, B, H, num_layers, bidirectional, lengths or None, threads): H = 32 and B = 16 take the
# panel product in float32 and two row ranges on two threads
CASES = [(7, 5, 6, 1, False, None, 1), (7, 5, 6, 2, True, [3, 7, 7, 1, 4], 1),
         (20, 16, 32, 2, False, "ragged", 2), (20, 16, 32, 1, True, None, 2)]
CASE_IDS = ["L1", "L2-bi-lengths", "L2-panels-threads-lengths", "L1-bi-panels-threads"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_the_reference(case, dtype):
    T, B, H, L, bi, lengths, threads = case
    rng = np.random.default_rng(1)
    if lengths == "ragged":
        lengths = rng.integers(1, T + 1, B)
    lengths = None if lengths is None else np.asarray(lengths)
    layer = _layer(H, dtype, num_layers=L, bidirectional=bi)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0, c0 = _states(rng, layer, B, dtype)
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    y_r, h_r, c_r, cache = ref.stack_forward("LSTM", x.astype(np.float64), params,
                                             num_layers=L, bidirectional=bi, h0=h0, c0=c0,
                                             lengths=lengths)
    dy, dh_n, dc_n = (rng.standard_normal(a.shape) for a in (y_r, h_r, c_r))
    dx_r, dh0_r, dc0_r, grads_r = ref.stack_backward(dy, dh_n, dc_n, cache)
    with fastrnn.threads(threads):
        y, (h, c), dx, (dh0, dc0), grads = _run(
            layer, x, (h0, c0), lengths, dy.astype(dtype),
            (dh_n.astype(dtype), dc_n.astype(dtype)))
        y_infer, (h_infer, c_infer) = layer(x, (h0, c0), lengths=lengths)
    for got, want in ((y, y_r), (h, h_r), (c, c_r), (y_infer, y_r), (h_infer, h_r),
                      (c_infer, c_r), (dx, dx_r), (dh0, dh0_r), (dc0, dc0_r)):
        assert_allclose(got, want, **_tol(dtype, want))
    assert sorted(grads) == sorted(grads_r)
    for name, g in grads.items():
        assert_allclose(g, grads_r[name], err_msg=name, **_tol(dtype, grads_r[name]))


def test_threads_do_not_change_the_numbers():
    """The gradients' sums run in the order of the rows, however the rows are split."""
    T, B, H = 20, 16, 32
    rng = np.random.default_rng(2)
    layer = _layer(H, np.float32, num_layers=2)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    runs = []
    for k in (1, 2):
        with fastrnn.threads(k):
            runs.append(_run(layer, x, None, lengths, dy, None))
    for a, b in zip(runs[0][:4], runs[1][:4]):
        for u, v in zip(*(t if isinstance(t, tuple) else (t,) for t in (a, b))):
            assert_array_equal(u, v)
    for name in runs[0][4]:
        assert_array_equal(runs[0][4][name], runs[1][4][name], err_msg=name)


def _torch_ln_lstm(torch, params, x, h0, c0, lengths, num_layers, bidirectional):
    """The paper's equations in PyTorch, one step at a time: G = LN(W_ih x) + LN(W_hh h),
    h = o * tanh(LN(c)) (torch.nn.functional.layer_norm, eps 1e-5), rows past their
    length keep their state and output 0, the reverse direction read from each row's
    last step; autograd differentiates it."""
    F = torch.nn.functional
    T, B = x.shape[:2]
    D = 2 if bidirectional else 1
    active = torch.ones(T, B, 1, dtype=x.dtype) if lengths is None else (
        torch.arange(T)[:, None, None] < torch.as_tensor(lengths)[None, :, None]).to(x.dtype)
    inp, h_n, c_n = x, [], []
    for k in range(num_layers):
        outs = []
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d else "")
            p = {name: params[name + s] for name in ("weight_ih", "weight_hh", *NORMS)}
            H = p["weight_hh"].shape[1]
            h, c = h0[k * D + d], c0[k * D + d]
            ys = [None] * T
            for t in (range(T - 1, -1, -1) if d else range(T)):
                G = (F.layer_norm(inp[t] @ p["weight_ih"].T, (4 * H,),
                                  p["ln_ih_weight"].reshape(-1), p["ln_ih_bias"].reshape(-1),
                                  EPS)
                     + F.layer_norm(h @ p["weight_hh"].T, (4 * H,),
                                    p["ln_hh_weight"].reshape(-1),
                                    p["ln_hh_bias"].reshape(-1), EPS))
                i, f, g, o = G.chunk(4, dim=1)
                c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h_t = torch.sigmoid(o) * torch.tanh(F.layer_norm(
                    c_t, (H,), p["ln_cell_weight"].reshape(-1), p["ln_cell_bias"].reshape(-1),
                    EPS))
                m = active[t]
                h, c = m * h_t + (1 - m) * h, m * c_t + (1 - m) * c
                ys[t] = m * h_t
            outs.append(torch.stack(ys))
            h_n.append(h)
            c_n.append(c)
        inp = torch.cat(outs, dim=2)
    return inp, torch.stack(h_n), torch.stack(c_n)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("num_layers,bidirectional,lengths",
                         [(1, False, None), (2, True, [5, 2, 4]), (2, False, [1, 5, 3])],
                         ids=["L1", "L2-bi-lengths", "L2-lengths"])
def test_matches_pytorch(num_layers, bidirectional, lengths, dtype, torch):
    T, B, H = 5, 3, 8
    rng = np.random.default_rng(3)
    layer = _layer(H, dtype, seed=4, num_layers=num_layers, bidirectional=bidirectional,
                   batch_first=True)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = _states(rng, layer, B, dtype)
    dy = rng.standard_normal((B, T, layer.num_directions * H)).astype(dtype)
    dh_n, dc_n = _states(rng, layer, B, dtype)
    y, (h, c), dx, (dh0, dc0), grads = _run(layer, x, (h0, c0), lengths, dy, (dh_n, dc_n))

    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in layer.state_dict().items()}
    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    yt, ht, ct = _torch_ln_lstm(torch, tensors, xt.transpose(0, 1), h0t, c0t, lengths,
                                num_layers, bidirectional)
    yt = yt.transpose(0, 1)
    loss = ((yt * torch.tensor(dy)).sum() + (ht * torch.tensor(dh_n)).sum()
            + (ct * torch.tensor(dc_n)).sum())
    loss.backward()
    tol = PARITY_TOL[dtype]
    for got, want in ((y, yt), (h, ht), (c, ct)):
        assert_allclose(got, want.detach().numpy(), **tol)
    for got, want in ((dx, xt.grad), (dh0, h0t.grad), (dc0, c0t.grad)):
        assert_allclose(got, want.numpy(), **_tol(dtype, want.numpy()))
    for name, g in grads.items():
        want = tensors[name].grad.numpy()
        assert_allclose(g, want, err_msg=name, **_tol(dtype, want))


def test_finite_differences_with_drawn_gains():
    """tests/test_gradcheck.py runs the layer at its initial gains (1) and biases (0);
    here they are drawn, so that every gradient of the normalisations counts."""
    T, B, H = 4, 3, 3
    layer = _layer(H, seed=7, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(8)
    lengths = np.array([2, 4, 1])
    x = rng.standard_normal((T, B, I))
    h0, c0 = _states(rng, layer, B, np.float64)
    Ry = rng.standard_normal((T, B, 2 * H))
    Rh, Rc = _states(rng, layer, B, np.float64)

    def loss():
        y, (h_n, c_n) = layer(x, (h0, c0), lengths=lengths)
        return np.sum(y * Ry) + np.sum(h_n * Rh) + np.sum(c_n * Rc)

    _, _, dx, (dh0, dc0), grads = _run(layer, x, (h0, c0), lengths, Ry, (Rh, Rc))
    for analytic, a, what in ((dx, x, "dx"), (dh0, h0, "dh0"), (dc0, c0, "dc0")):
        assert_allclose(analytic, central_differences(loss, a), **FD_TOL, err_msg=what)
    for name, p in layer.named_parameters():
        assert_allclose(grads[name], central_differences(loss, p.data), **FD_TOL,
                        err_msg=name)


def test_parameters_and_their_initial_values():
    layer = fastrnn.LSTM(I, 4, layer_norm=True, num_layers=2, seed=0)
    shapes = {name: p.data.shape for name, p in layer.named_parameters()}
    assert list(shapes)[:8] == ["weight_ih_l0", "weight_hh_l0", "ln_ih_weight_l0",
                                "ln_ih_bias_l0", "ln_hh_weight_l0", "ln_hh_bias_l0",
                                "ln_cell_weight_l0", "ln_cell_bias_l0"]
    assert shapes["ln_ih_weight_l1"] == (4, 4) and shapes["ln_cell_bias_l1"] == (1, 4)
    for name, p in layer.named_parameters():
        if name.startswith("ln_"):
            assert np.all(p.data == (1.0 if "weight" in name else 0.0)), name
    # the weights are drawn as a plain LSTM's, from the same seed
    plain = fastrnn.LSTM(I, 4, num_layers=2, seed=0)
    assert np.array_equal(layer.weight_ih_l0.data, plain.weight_ih_l0.data)
    assert layer.layer_norm and not plain.layer_norm
    assert layer.config()["layer_norm"] is True and "layer_norm" not in plain.config()
    assert "layer_norm=True" in repr(fastrnn.LSTMCell(I, 4, layer_norm=True))


@pytest.mark.parametrize("make,error,message", [
    (lambda: fastrnn.LSTM(I, 4, layer_norm=True, bias=False), ValueError, "bias=False"),
    (lambda: fastrnn.LSTM(I, 4, layer_norm=True, proj_size=2), ValueError, "proj_size"),
    (lambda: fastrnn.LSTM(I, 4, layer_norm=True, peephole=True), ValueError, "not both"),
    (lambda: fastrnn.LSTM(I, 4, layer_norm=True, recurrent_dropout=0.2), ValueError,
     "recurrent_dropout is not computed"),
    (lambda: fastrnn.LSTM(I, 4, layer_norm=True, zoneout=0.1), ValueError,
     "zoneout is not computed"),
    (lambda: fastrnn.LSTM(I, 4, layer_norm="yes"), TypeError, "layer_norm"),
    (lambda: fastrnn.LSTMCell(I, 4, layer_norm=True, bias=False), ValueError, "bias=False"),
    (lambda: fastrnn.GRU(I, 4, layer_norm=True), TypeError, "layer_norm"),
])
def test_refusals(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_rates_set_later_are_refused_too():
    layer = fastrnn.LSTM(I, 4, layer_norm=True)
    with pytest.raises(ValueError, match="zoneout_cell is not computed"):
        layer.zoneout_cell = 0.3
    layer.input_dropout = 0.25              # on x, outside the kernels: computed
    layer.forward_train(np.ones((3, 2, I), np.float32))


def test_onnx_export_refuses_it(tmp_path):
    pytest.importorskip("onnx")           # the export imports onnx before it looks
    with pytest.raises(ValueError, match="ONNX has no operator"):
        fastrnn.export_onnx(fastrnn.LSTM(I, 4, layer_norm=True), tmp_path / "m.onnx")


def test_kernels_refuse_wrong_arrays():
    from fastrnn import _core
    T, B, H = 2, 1, 3
    z = np.zeros
    args = [z((T * B, I)), z((4 * H, I)), z((4 * H, H)), tuple(z(4 * H) for _ in range(5)),
            np.full(T, B, np.intc), np.array([0, B], np.intc), z((B, H)), z((B, H)),
            z((T, B, H)), 0, z((T * B, 4 * H)), z((B, 4 * H))]
    with pytest.raises(ValueError, match="6 vectors"):
        _core.ln_forward(*args)
    args[3] = tuple(z(4 * H) for _ in range(6))
    with pytest.raises(ValueError, match=r"norms\[4\]"):
        _core.ln_forward(*args)
    args[3] = tuple(z(4 * H if k < 4 else H) for k in range(6))
    _core.ln_forward(*args)
    with pytest.raises(ValueError, match="training takes"):
        _core.ln_forward(*args, Hp=z((T, B, H)))
    with pytest.raises(ValueError, match="one-row|plain LSTM"):
        _core.ln_forward(*args, layout=_core.LAYOUT_LSTM_ROW)
