"""The FastRNN and FastGRNN layers (``fastrnn.FastRNN``, ``fastrnn.FastGRNN``): their
compiled kernels through the layer API against ``fastrnn.reference`` (outputs, final
states, dx, dh0 and every parameter's gradient; float64 to PARITY_TOL, float32 to its
tolerance), stacked per layer and direction here; central differences of a loss through
the layer API (float64); the parameters (names, shapes, EdgeML's initial values, seeds);
models (fit, save / load); the argument checks; and the refusals of to_torch and
export_onnx (PyTorch and ONNX have no such cell)."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastrnn
from _tools import FD_TOL, PARITY_TOL, central_differences
from fastrnn import _engine
from fastrnn import reference as ref

T, B, I, H = 5, 4, 3, 4
LENGTHS = np.array([3, 5, 1, 4])  # unsorted, min 1, max T
KINDS = ["FastGRNN", "FastRNN"]
SCALARS = {"FastGRNN": ("zeta", "nu"), "FastRNN": ("alpha", "beta")}
BIASES = {"FastGRNN": ("bias_gate", "bias_update"), "FastRNN": ("bias_update",)}
INITIAL = {"zeta": 1.0, "nu": -4.0, "alpha": -3.0, "beta": 3.0}  # EdgeML's, before sigmoid


def sfx(k, d):
    return f"_l{k}" + ("_reverse" if d else "")


def make(kind, input_size=I, hidden_size=H, dtype=np.float64, seed=0, **kwargs):
    return getattr(fastrnn, kind)(input_size, hidden_size, dtype=dtype, seed=seed, **kwargs)


def randomize(layer, rng):
    """Random parameters away from the initial ones (weights uniform(-0.6, 0.6), scalars
    uniform(-2, 2)), so that every term of the cell matters; returns them."""
    values = {}
    for name, p in layer.named_parameters():
        scale = 2.0 if name.startswith(("zeta", "nu", "alpha", "beta")) else 0.6
        values[name] = rng.uniform(-scale, scale, p.data.shape)
    layer.load_state_dict(values)
    return {name: p.data.copy() for name, p in layer.named_parameters()}


def expected_shapes(kind, input_size, hidden_size, num_layers=1, bidirectional=False,
                    bias=True, w_rank=None, u_rank=None):
    """name -> shape of the parameters the API describes."""
    D = 2 if bidirectional else 1
    out = {}
    for k in range(num_layers):
        n_in = input_size if k == 0 else D * hidden_size
        for d in range(D):
            s = sfx(k, d)
            if w_rank is None:
                out["weight_ih" + s] = (hidden_size, n_in)
            else:
                out["weight_ih1" + s] = (w_rank, n_in)
                out["weight_ih2" + s] = (hidden_size, w_rank)
            if u_rank is None:
                out["weight_hh" + s] = (hidden_size, hidden_size)
            else:
                out["weight_hh1" + s] = (u_rank, hidden_size)
                out["weight_hh2" + s] = (hidden_size, u_rank)
            if bias:
                out.update({b + s: (hidden_size,) for b in BIASES[kind]})
            out.update({c + s: (1,) for c in SCALARS[kind]})
    return out


# ----------------------------------------------------------------------------- the oracle


def _full(params, name, s):
    """The full W or U of one layer-direction, from its factors in low rank."""
    if name + s in params:
        return params[name + s]
    return ref.low_rank_weight(params[name + "1" + s], params[name + "2" + s])


def reference_stack(kind, params, x, h0, dy, dh_n, lengths, num_layers, D):
    """fastrnn.reference's FastRNN / FastGRNN stacked as the layers stack: layer k > 0
    reads both directions of layer k-1 concatenated, the reverse direction in columns
    H..2H. x, dy time-major. Returns y, h_n, dx, dh0 and the gradients by parameter name
    (the factors' through low_rank_backward)."""
    H_ = h0.shape[-1]
    h_n = np.zeros_like(h0)
    caches = []
    inputs = x
    for k in range(num_layers):
        outputs = []
        for d in range(D):
            s, j = sfx(k, d), k * D + d
            W, U = _full(params, "weight_ih", s), _full(params, "weight_hh", s)
            if kind == "FastGRNN":
                y, h_n[j], cache = ref.fastgrnn_forward(
                    inputs, h0[j], W, U, params.get("bias_gate" + s),
                    params.get("bias_update" + s), params["zeta" + s], params["nu" + s],
                    lengths=lengths, reverse=bool(d))
            else:
                y, h_n[j], cache = ref.fastrnn_forward(
                    inputs, h0[j], W, U, params.get("bias_update" + s), params["alpha" + s],
                    params["beta" + s], lengths=lengths, reverse=bool(d))
            outputs.append(y)
            caches.append(cache)
        inputs = np.concatenate(outputs, axis=2)
    y = inputs
    backward = ref.fastgrnn_backward if kind == "FastGRNN" else ref.fastrnn_backward
    dh0 = np.zeros_like(h0)
    grads = {}
    d_output = dy
    for k in reversed(range(num_layers)):
        d_input = 0
        for d in range(D):
            s, j = sfx(k, d), k * D + d
            dx, dh0[j], g = backward(d_output[:, :, d * H_:(d + 1) * H_], dh_n[j], caches[j])
            d_input = d_input + dx
            for name, value in g.items():
                if name in ("weight_ih", "weight_hh") and name + s not in params:
                    f1, f2 = params[name + "1" + s], params[name + "2" + s]
                    grads[name + "1" + s], grads[name + "2" + s] = ref.low_rank_backward(
                        value, f1, f2)
                else:
                    grads[name + s] = value
        d_output = d_input
    return y, h_n, d_output, dh0, grads


# ----------------------------------------------------------------------------- parity

# (kind, num_layers, bidirectional, lengths, batch_first, bias, w_rank, u_rank)
CASES = [
    ("FastGRNN", 1, False, None, False, True, None, None),
    ("FastGRNN", 1, True, LENGTHS, False, True, None, None),
    ("FastGRNN", 2, False, LENGTHS, True, True, None, None),
    ("FastGRNN", 2, True, LENGTHS, False, True, None, None),
    ("FastGRNN", 2, True, None, True, False, None, None),
    ("FastGRNN", 2, True, LENGTHS, False, True, 2, 3),
    ("FastGRNN", 1, False, LENGTHS, True, False, 1, None),
    ("FastGRNN", 1, True, None, False, True, None, 1),
    ("FastGRNN", 1, False, LENGTHS, False, True, 5, 6),     # ranks above the sizes
    ("FastRNN", 1, False, None, False, True, None, None),
    ("FastRNN", 1, True, LENGTHS, False, True, None, None),
    ("FastRNN", 2, True, LENGTHS, True, True, None, None),
    ("FastRNN", 2, False, None, False, False, None, None),
    ("FastRNN", 2, True, LENGTHS, False, False, 2, 2),
    ("FastRNN", 1, False, LENGTHS, True, True, None, 2),
]
CASE_IDS = [
    f"{k}-L{L}-{'bi' if bi else 'uni'}-{'len' if ln is not None else 'full'}"
    f"{'-bfirst' if bf else ''}{'' if bias else '-nobias'}"
    f"{'' if wr is None and ur is None else f'-rank{wr}x{ur}'}"
    for k, L, bi, ln, bf, bias, wr, ur in CASES]
DTYPES = [np.float64, np.float32]


def run_layer(layer, x, h0, dy, dh_n, lengths):
    """y, h_n, dx, dh0 and the .grad of every parameter (from zero) of one training step
    through the layer API, all time-major; the inference call's y, h_n too."""
    bf = layer.batch_first

    def caller(a):
        return np.ascontiguousarray(a.transpose(1, 0, 2)) if bf else a

    layer.zero_grad()
    y, h_n, backward = layer.forward_train(caller(x), h0, lengths=lengths)
    dx, dh0 = backward(caller(dy), dh_n)
    y_call, h_call = layer(caller(x), h0, lengths=lengths)
    grads = {name: p.grad.copy() for name, p in layer.named_parameters()}
    return dict(y=caller(y), h_n=h_n, dx=caller(dx), dh0=dh0, y_call=caller(y_call),
                h_call=h_call), grads


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_layer_matches_reference(case, dtype):
    kind, L, bidirectional, lengths, batch_first, bias, w_rank, u_rank = case
    D = 2 if bidirectional else 1
    layer = make(kind, dtype=dtype, num_layers=L, bidirectional=bidirectional,
                 batch_first=batch_first, bias=bias, w_rank=w_rank, u_rank=u_rank, seed=3)
    rng = np.random.default_rng(4)
    params = randomize(layer, rng)
    shapes = expected_shapes(kind, I, H, L, bidirectional, bias, w_rank, u_rank)
    assert {n: a.shape for n, a in params.items()} == shapes
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0, dh_n = (rng.standard_normal((L * D, B, H)).astype(dtype) for _ in range(2))
    dy = rng.standard_normal((T, B, D * H)).astype(dtype)  # also at padded steps: ignored

    y_r, h_r, dx_r, dh0_r, grads_r = reference_stack(kind, params, x, h0, dy, dh_n, lengths,
                                                      L, D)
    got, grads = run_layer(layer, x, h0, dy, dh_n, lengths)
    tol = PARITY_TOL[dtype]
    for key, want in dict(y=y_r, h_n=h_r, dx=dx_r, dh0=dh0_r, y_call=y_r,
                          h_call=h_r).items():
        assert got[key].shape == want.shape, key
        assert got[key].dtype == dtype, key
        assert_allclose(got[key], want, err_msg=key, **tol)
    assert sorted(grads) == sorted(grads_r)
    for name, g in grads.items():
        assert g.shape == params[name].shape and g.dtype == dtype, name
        assert_allclose(g, grads_r[name], err_msg=f"grad of {name}", **tol)
    if lengths is not None:                               # padded steps: y 0, dx 0
        padded = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(got["y"][padded] == 0) and np.all(got["dx"][padded] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_accumulate(kind):
    """backward adds into .grad: two steps without zero_grad give twice one step's."""
    layer = make(kind, num_layers=2, bidirectional=True, w_rank=2)
    rng = np.random.default_rng(5)
    randomize(layer, rng)
    x, dy = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, 2 * H))
    layer.zero_grad()
    layer.forward_train(x, lengths=LENGTHS)[2](dy)
    once = {n: p.grad.copy() for n, p in layer.named_parameters()}
    layer.forward_train(x, lengths=LENGTHS)[2](dy)
    for n, p in layer.named_parameters():
        assert_allclose(p.grad, 2 * once[n], rtol=1e-13, atol=1e-15, err_msg=n)
    layer.zero_grad()
    assert all(not p.grad.any() for _, p in layer.named_parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_lengths_equal_separate_truncated_sequences(kind):
    """Each row alone, truncated to its length, gives the same outputs, states, dx, dh0;
    the parameter gradients add up over the rows."""
    layer = make(kind, num_layers=2, bidirectional=True, u_rank=2)
    rng = np.random.default_rng(6)
    randomize(layer, rng)
    x = rng.standard_normal((T, B, I))
    h0, dh_n = rng.standard_normal((4, B, H)), rng.standard_normal((4, B, H))
    dy = rng.standard_normal((T, B, 2 * H))
    full, grads = run_layer(layer, x, h0, dy, dh_n, LENGTHS)
    summed = {n: 0 for n in grads}
    close = dict(rtol=1e-11, atol=1e-12)
    for b, n in enumerate(LENGTHS):
        row = slice(b, b + 1)
        alone, g = run_layer(layer, x[:n, row], h0[:, row], dy[:n, row], dh_n[:, row], None)
        assert_allclose(full["y"][:n, row], alone["y"], **close)
        assert np.all(full["y"][n:, b] == 0)
        assert_allclose(full["dx"][:n, row], alone["dx"], **close)
        assert_allclose(full["h_n"][:, row], alone["h_n"], **close)
        assert_allclose(full["dh0"][:, row], alone["dh0"], **close)
        for name in g:
            summed[name] = summed[name] + g[name]
    for name in grads:
        assert_allclose(grads[name], summed[name], err_msg=name, **close)


@pytest.mark.parametrize("kind", KINDS)
def test_inference_ignores_dropout(kind):
    """dropout applies between layers in forward_train only: the call is the same as
    without it."""
    rng = np.random.default_rng(7)
    a = make(kind, num_layers=2, dropout=0.5, seed=1)
    b = make(kind, num_layers=2, seed=2)
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((T, B, I))
    for u, v in zip(a(x, lengths=LENGTHS), b(x, lengths=LENGTHS)):
        assert_array_equal(u, v)


# ----------------------------------------------------------------- central differences

FT, FB, FI, FH = 4, 3, 2, 3
F_LENGTHS = np.array([2, 4, 1])
# (kind, num_layers, bidirectional, lengths, bias, w_rank, u_rank)
FD_CASES = [
    ("FastGRNN", 2, True, F_LENGTHS, True, None, None),
    ("FastGRNN", 1, False, None, True, 1, 2),
    ("FastGRNN", 1, True, F_LENGTHS, False, None, 1),
    ("FastRNN", 2, True, F_LENGTHS, True, None, None),
    ("FastRNN", 1, False, F_LENGTHS, True, 1, 2),
    ("FastRNN", 1, True, None, False, None, None),
]
FD_IDS = [f"{k}-L{L}-{'bi' if bi else 'uni'}-{'len' if ln is not None else 'full'}"
          f"{'' if bias else '-nobias'}{'' if wr is None and ur is None else '-lowrank'}"
          for k, L, bi, ln, bias, wr, ur in FD_CASES]


@pytest.mark.parametrize("case", FD_CASES, ids=FD_IDS)
def test_gradients_central_differences(case):
    """L = sum(y * Ry) + sum(h_n * Rh) through ``layer(x, h0, lengths)``, every entry of
    x, h0 and of every parameter (the scalars zeta, nu / alpha, beta included) perturbed
    in place, against backward's dx, dh0 and .grad."""
    kind, L, bidirectional, lengths, bias, w_rank, u_rank = case
    D = 2 if bidirectional else 1
    layer = make(kind, FI, FH, num_layers=L, bidirectional=bidirectional, bias=bias,
                 w_rank=w_rank, u_rank=u_rank, seed=8)
    rng = np.random.default_rng(9)
    randomize(layer, rng)
    x = rng.standard_normal((FT, FB, FI))
    h0 = rng.standard_normal((L * D, FB, FH))
    Ry, Rh = rng.standard_normal((FT, FB, D * FH)), rng.standard_normal((L * D, FB, FH))

    def loss():
        y, h_n = layer(x, h0, lengths=lengths)
        return float(np.sum(y * Ry) + np.sum(h_n * Rh))

    layer.zero_grad()
    _, _, backward = layer.forward_train(x, h0, lengths=lengths)
    dx, dh0 = backward(Ry, Rh)
    assert_allclose(dx, central_differences(loss, x), err_msg="dx", **FD_TOL)
    assert_allclose(dh0, central_differences(loss, h0), err_msg="dh0", **FD_TOL)
    names = set()
    for name, p in layer.named_parameters():
        names.add(name.split("_l")[0])
        assert_allclose(p.grad, central_differences(loss, p.data), err_msg=f"grad of {name}",
                        **FD_TOL)
    assert set(SCALARS[kind]) <= names


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("ranks", [(None, None), (3, None), (None, 5), (3, 5)],
                         ids=["full", "lowW", "lowU", "low"])
@pytest.mark.parametrize("kind", KINDS)
def test_parameter_names_and_shapes(kind, ranks, bias):
    w_rank, u_rank = ranks
    for L, bidirectional in [(1, False), (2, True)]:
        layer = make(kind, 6, 8, num_layers=L, bidirectional=bidirectional, bias=bias,
                     w_rank=w_rank, u_rank=u_rank, dtype=np.float32)
        got = {name: p.data.shape for name, p in layer.named_parameters()}
        assert got == expected_shapes(kind, 6, 8, L, bidirectional, bias, w_rank, u_rank)
        assert all(p.data.dtype == np.float32 for _, p in layer.named_parameters())
        assert {n: a.shape for n, a in layer.state_dict().items()} == got
        y, h_n = layer(np.zeros((3, 2, 6), np.float32))
        assert y.shape == (3, 2, (2 if bidirectional else 1) * 8) and y.dtype == np.float32
        assert h_n.shape == (L * (2 if bidirectional else 1), 2, 8)


@pytest.mark.parametrize("kind", KINDS)
def test_initial_values_are_edgemls(kind):
    """Weights (and low-rank factors) 0.1 * standard normal, biases 1, zeta 1, nu -4,
    alpha -3, beta 3 (before the sigmoid)."""
    for ranks in [(None, None), (16, 24)]:
        layer = make(kind, 48, 64, num_layers=2, bidirectional=True, w_rank=ranks[0],
                     u_rank=ranks[1], seed=0)
        for name, p in layer.named_parameters():
            base = name.split("_l")[0]
            if base.startswith("weight"):
                assert abs(p.data.mean()) < 0.015, name
                assert 0.09 < p.data.std() < 0.11, name
            elif base.startswith("bias"):
                assert_array_equal(p.data, np.ones(64), err_msg=name)
            else:
                assert_array_equal(p.data, [INITIAL[base]], err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_initial_scalars_are_arguments(kind):
    first, second = SCALARS[kind]
    layer = make(kind, bidirectional=True, num_layers=2,
                 **{f"{first}_init": 0.25, f"{second}_init": -1.5})
    values = dict(layer.named_parameters())
    for s in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        assert_array_equal(values[first + s].data, [0.25])
        assert_array_equal(values[second + s].data, [-1.5])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", KINDS)
def test_seeds(kind, dtype):
    """The same seed gives the same parameters, another seed other weights."""
    kw = dict(dtype=dtype, num_layers=2, bidirectional=True, w_rank=2)
    a, b, c = make(kind, seed=11, **kw), make(kind, seed=11, **kw), make(kind, seed=12, **kw)
    for (name, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(),
                                         c.named_parameters()):
        assert p.data.dtype == dtype
        assert_array_equal(p.data, q.data, err_msg=name)
        if name.startswith("weight"):
            assert not np.array_equal(p.data, r.data), name


# ----------------------------------------------------------------------------- models


def tiny_task(n=256, seed=0):
    """Sequences of 6 steps of 3 features; the class is the sign of the first feature's
    mean over the sequence (a task a recurrent layer can learn in a few epochs)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6, 3)).astype(np.float32)
    y = (x[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    return x, y


def fast_model(kind, bidirectional=False, seed=0, **kwargs):
    D = 2 if bidirectional else 1
    rnn = make(kind, 3, 16, dtype=np.float32, seed=seed, bidirectional=bidirectional,
               batch_first=True, **kwargs)
    head = fastrnn.ManyToOne(D * 16, 2, num_directions=D, seed=seed + 1)
    return fastrnn.SequenceModel(rnn, head, "cross_entropy")


@pytest.mark.parametrize("kind", KINDS)
def test_sequence_model_fits(kind):
    x, y = tiny_task()
    model = fast_model(kind, bidirectional=True, w_rank=2)
    history = model.fit(x, y, epochs=6, batch_size=32,
                        optimizer=fastrnn.optim.Adam(model.parameters(), lr=3e-2),
                        progress=False, seed=0)
    losses = history["loss"]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses
    pred = model.predict(x)
    assert pred.shape == (len(x),)
    assert np.mean(pred == y) > 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, tmp_path):
    x, y = tiny_task(64)
    model = fast_model(kind, bidirectional=True, w_rank=2, u_rank=3)
    model.fit(x, y, epochs=1, batch_size=16, progress=False, seed=0)   # not the initial values
    path = tmp_path / "model.npz"
    fastrnn.save(model, path)
    loaded = fastrnn.load(path)
    assert type(loaded.rnn) is type(model.rnn)
    want = dict(model.named_parameters())
    got = dict(loaded.named_parameters())
    assert sorted(got) == sorted(want)
    for name in want:
        assert_array_equal(got[name].data, want[name].data, err_msg=name)
    lengths = np.array([6, 2, 5, 1] * 16)
    assert_array_equal(loaded.forward(x, lengths), model.forward(x, lengths))
    assert_array_equal(loaded.predict(x), model.predict(x))


# ----------------------------------------------------------------------------- arguments


BAD_ARGUMENTS = [
    ("w_rank", 0), ("w_rank", -2), ("u_rank", 0), ("u_rank", -1),
    ("w_rank", 2.5), ("u_rank", True),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name,value", BAD_ARGUMENTS,
                         ids=[f"{n}={v!r}" for n, v in BAD_ARGUMENTS])
def test_bad_ranks(kind, name, value):
    errors = ValueError if isinstance(value, int) and not isinstance(value, bool) else (
        TypeError, ValueError)
    with pytest.raises(errors, match=name):
        make(kind, **{name: value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("kind", KINDS)
def test_scalar_initial_values_must_be_finite(kind, value):
    for scalar in SCALARS[kind]:
        with pytest.raises(ValueError, match=f"{scalar}_init"):
            make(kind, **{f"{scalar}_init": value})


@pytest.mark.parametrize("kind", KINDS)
def test_other_arguments_are_checked_as_the_other_layers(kind):
    with pytest.raises(ValueError, match="hidden_size"):
        make(kind, hidden_size=0)
    with pytest.raises(ValueError, match="num_layers"):
        make(kind, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        make(kind, num_layers=2, dropout=1.5)
    with pytest.raises(TypeError, match="bidirectional"):
        make(kind, bidirectional="yes")
    layer = make(kind)
    with pytest.raises(ValueError, match="input_size"):
        layer(np.zeros((T, B, I + 1)))
    with pytest.raises(ValueError, match="lengths"):
        layer(np.zeros((T, B, I)), lengths=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="h0"):
        layer(np.zeros((T, B, I)), np.zeros((1, B, H + 1)))


# ----------------------------------------------------------------------------- interop


@pytest.mark.parametrize("kind", KINDS)
def test_to_torch_refuses(kind):
    """No PyTorch module computes these cells: to_torch refuses the layer and a model
    holding it, naming the layer."""
    for obj in (make(kind, dtype=np.float32), fast_model(kind)):
        with pytest.raises((TypeError, ValueError), match=kind):
            fastrnn.to_torch(obj)


@pytest.mark.parametrize("kind", KINDS)
def test_export_onnx_refuses(kind, tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "model.onnx"
    for obj in (make(kind, dtype=np.float32), fast_model(kind)):
        with pytest.raises((TypeError, ValueError), match=kind):
            fastrnn.export_onnx(obj, path)
        assert not path.exists()


@pytest.mark.parametrize("cls", [fastrnn.FastGRNN, fastrnn.FastRNN], ids=lambda c: c.__name__)
@pytest.mark.parametrize("T,B,H", [(40, 8, 32), (40, 1, 64), (12, 64, 128)],
                         ids=["panels", "one-row", "wide"])
def test_float32_kernel_paths_follow_float64(cls, T, B, H):
    """At the sizes where the float32 kernels take their own paths (the panel product, the
    projection step by step, rows split across threads), float32 follows float64."""
    rng = np.random.default_rng(5)
    l64 = cls(16, H, bidirectional=True, dtype=np.float64, seed=3)
    l32 = cls(16, H, bidirectional=True, dtype=np.float32, seed=3)
    for p, q in zip(l64.parameters(), l32.parameters()):
        q.data[...] = p.data
    x = rng.standard_normal((T, B, 16))
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    y64, _, back64 = l64.forward_train(x, lengths=lengths)
    y32, _, back32 = l32.forward_train(x.astype(np.float32), lengths=lengths)
    dy = rng.standard_normal(y64.shape)
    dx64, _ = back64(dy)
    dx32, _ = back32(dy.astype(np.float32))
    assert_allclose(y32, y64, atol=1e-5)
    assert_allclose(l32(x.astype(np.float32), lengths=lengths)[0], y32, atol=1e-6)
    assert_allclose(dx32, dx64, atol=1e-5 * np.abs(dx64).max())
    for (name, p), q in zip(l64.named_parameters(), l32.parameters()):
        assert_allclose(q.grad, p.grad, atol=1e-5 * max(np.abs(p.grad).max(), 1e-3),
                        err_msg=name)


@pytest.mark.parametrize("cls", [fastrnn.FastGRNN, fastrnn.FastRNN], ids=lambda c: c.__name__)
def test_gradients_do_not_depend_on_the_thread_count(cls):
    """The scalars' and biases' gradients are summed per row, then over the rows in order:
    one thread and two give the same bits."""
    x = np.random.default_rng(6).standard_normal((30, 64, 8)).astype(np.float32)
    before = fastrnn.get_num_threads()
    grads = []
    try:
        fastrnn.set_num_threads(2)
        if len(_engine.row_bounds(np.full(30, 64, np.intc), 64, 128, 1)) != 3:
            pytest.skip("one core: the rows are never split")
        for n in (1, 2):
            fastrnn.set_num_threads(n)
            layer = cls(8, 128, seed=1)
            y, _, backward = layer.forward_train(x)
            backward(np.ones_like(y))
            grads.append([p.grad.copy() for p in layer.parameters()])
    finally:
        fastrnn.set_num_threads(before)
    for a, b in zip(*grads):
        assert np.array_equal(a, b)
