"""Tests of the FastRNN and FastGRNN references (fastrnn.reference).

Three independent checks of each: central differences of every gradient (float64), a
step-by-step NumPy transcription of the paper's equations (one row, one step, one
matrix-vector product at a time), and a PyTorch transcription of EdgeML's cells
(``FastRNNCell``, ``FastGRNNCell`` of pytorch/edgeml_pytorch/graph/rnn.py, their parameter
layout, their low-rank factors) differentiated by autograd.
"""


import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from _tools import FD_TOL, PARITY_TOL, central_differences, load_reference

ref = load_reference()

T, B, I, H = 4, 3, 2, 3
LENGTHS = np.array([4, 1, 2])  # a full row, a one-step row, a partial row
KINDS = ["fastrnn", "fastgrnn"]
SCALARS = {"fastrnn": ("alpha", "beta"), "fastgrnn": ("zeta", "nu")}
BIASES = {"fastrnn": ("bias_update",), "fastgrnn": ("bias_gate", "bias_update")}
DEFAULTS = {"fastrnn": (None, "tanh"), "fastgrnn": ("sigmoid", "tanh")}  # EdgeML's
NONLINEARITIES = ["sigmoid", "tanh", "relu", "quantTanh", "quantSigm", "quantSigm4"]


# ----------------------------------------------------------------------------- helpers


def make_inputs(rng, kind, bias=True, dtype=np.float64, scalar_shape=(1,), scale=0.8):
    """x, h0 and one cell's parameters, keyed by the names of their gradients."""
    a = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((B, H)),
         "weight_ih": rng.uniform(-scale, scale, (H, I)),
         "weight_hh": rng.uniform(-scale, scale, (H, H))}
    if bias:
        a.update({name: rng.uniform(-scale, scale, H) for name in BIASES[kind]})
    a.update({name: rng.uniform(-2, 2, scalar_shape) for name in SCALARS[kind]})
    return {k: np.asarray(v, dtype=dtype) for k, v in a.items()}


def run(kind, a, lengths=None, reverse=False, gate=None, update="tanh"):
    """The reference forward of ``kind``: ((y, h_n), cache)."""
    kw = dict(update_nonlinearity=update, lengths=lengths, reverse=reverse)
    if kind == "fastrnn":
        y, h_n, cache = ref.fastrnn_forward(a["x"], a["h0"], a["weight_ih"], a["weight_hh"],
                                            a.get("bias_update"), a["alpha"], a["beta"], **kw)
    else:
        y, h_n, cache = ref.fastgrnn_forward(
            a["x"], a["h0"], a["weight_ih"], a["weight_hh"], a.get("bias_gate"),
            a.get("bias_update"), a["zeta"], a["nu"], gate_nonlinearity=gate or "sigmoid",
            **kw)
    return (y, h_n), cache


def grads_of(kind, R, cache):
    """The reference backward: gradients keyed like the inputs of make_inputs."""
    backward = ref.fastrnn_backward if kind == "fastrnn" else ref.fastgrnn_backward
    dx, dh0, grads = backward(R[0], R[1], cache)
    return {"x": dx, "h0": dh0, **grads}


def linear_loss(outputs, R):
    """sum(y * Ry) + sum(h_n * Rh): its gradient w.r.t. (y, h_n) is (Ry, Rh)."""
    return sum(float(np.sum(o * r)) for o, r in zip(outputs, R))


def random_like(rng, outputs):
    return tuple(rng.standard_normal(o.shape) for o in outputs)


def check_gradients(kind, a, lengths, reverse, gate=None, update="tanh", seed=0):
    rng = np.random.default_rng(seed)
    outputs, cache = run(kind, a, lengths, reverse, gate, update)
    R = random_like(rng, outputs)
    analytic = grads_of(kind, R, cache)
    assert set(analytic) == set(a)

    def loss():
        return linear_loss(run(kind, a, lengths, reverse, gate, update)[0], R)

    for name in a:
        assert analytic[name].shape == a[name].shape, name
        assert_allclose(analytic[name], central_differences(loss, a[name]), **FD_TOL,
                        err_msg=name)
    return cache


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_central_differences(kind, lengths, reverse, bias):
    """Every gradient (x, h0, W, U, the biases, the two scalars before the sigmoid)."""
    a = make_inputs(np.random.default_rng(1), kind, bias=bias)
    check_gradients(kind, a, lengths, reverse, *DEFAULTS[kind])


def _pairs():
    """(kind, gate, update): every nonlinearity in each place at least once."""
    out = [("fastrnn", None, u) for u in NONLINEARITIES]
    out += [("fastgrnn", g, u) for g, u in zip(NONLINEARITIES, NONLINEARITIES[1:] + ["sigmoid"])]
    return out


@pytest.mark.parametrize("kind,gate,update", _pairs(),
                         ids=[f"{k}-{g}-{u}" for k, g, u in _pairs()])
def test_gradients_of_each_nonlinearity(kind, gate, update):
    """Weights large enough that the piecewise-linear ones reach both their flat and their
    sloped parts (checked), with lengths and in reverse."""
    a = make_inputs(np.random.default_rng(2), kind, scale=1.5)
    a["x"] *= 2
    cache = check_gradients(kind, a, LENGTHS, True, gate, update)
    A = cache["A"][cache["active"]]  # (active rows, NG*H)
    for name, block in zip((update,) if kind == "fastrnn" else (gate, update),
                           np.split(A, A.shape[-1] // H, axis=-1)):
        if name in ("relu", "quantTanh", "quantSigm", "quantSigm4"):
            flat = np.isin(block, [-1, 1] if name == "quantTanh" else [0, 1])
            assert flat.any() and not flat.all(), name


def test_scalar_gradients_keep_their_shape():
    """A scalar given as a 0-d array, (1,) or (1, 1) (EdgeML's) gets its gradient so."""
    rng = np.random.default_rng(3)
    for kind in KINDS:
        for shape in [(), (1,), (1, 1)]:
            a = make_inputs(rng, kind, scalar_shape=shape)
            check_gradients(kind, a, LENGTHS, False, *DEFAULTS[kind])


# ----------------------------------------------------------------------------- the paper


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


# the nonlinearities as EdgeML's gen_nonlinearity writes them
PAPER_ACT = {"sigmoid": _sigmoid, "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
             "quantTanh": lambda v: np.maximum(np.minimum(v, 1), -1),
             "quantSigm": lambda v: np.maximum(np.minimum((v + 1) / 2, 1), 0),
             "quantSigm4": lambda v: np.maximum(np.minimum((v + 2) / 4, 1), 0)}


def paper_forward(kind, a, lengths, reverse, gate, update):
    """The paper's equations (2) and (6), one row and one step at a time: W x_t and
    U h_{t-1} as matrix-vector products, the sequence of row b its first lengths[b] steps
    (read backwards in reverse), y 0 past them."""
    x, W, U = a["x"], a["weight_ih"], a["weight_hh"]
    y, h_n = np.zeros((T, B, H)), np.zeros((B, H))
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        h = a["h0"][b].copy()
        for t in (reversed(range(n)) if reverse else range(n)):
            if kind == "fastrnn":
                alpha, beta = _sigmoid(a["alpha"].item()), _sigmoid(a["beta"].item())
                h_tilde = PAPER_ACT[update](W @ x[t, b] + U @ h + a.get("bias_update", 0))
                h = alpha * h_tilde + beta * h
            else:
                zeta, nu = _sigmoid(a["zeta"].item()), _sigmoid(a["nu"].item())
                z = PAPER_ACT[gate](W @ x[t, b] + U @ h + a.get("bias_gate", 0))
                h_tilde = PAPER_ACT[update](W @ x[t, b] + U @ h + a.get("bias_update", 0))
                h = (zeta * (1 - z) + nu) * h_tilde + z * h
            y[t, b] = h
        h_n[b] = h
    return y, h_n


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("kind,gate,update", _pairs(),
                         ids=[f"{k}-{g}-{u}" for k, g, u in _pairs()])
def test_forward_is_the_papers_equations(kind, gate, update, lengths, reverse):
    a = make_inputs(np.random.default_rng(4), kind, scale=1.5)
    (y, h_n), _ = run(kind, a, lengths, reverse, gate, update)
    y_p, h_p = paper_forward(kind, a, lengths, reverse, gate, update)
    assert_allclose(y, y_p, **PARITY_TOL[np.float64])
    assert_allclose(h_n, h_p, **PARITY_TOL[np.float64])


# ----------------------------------------------------------------------------- EdgeML


def edgeml_gen_nonlinearity(torch, A, nonlinearity):
    """EdgeML's gen_nonlinearity (rnn.py), relu as torch.relu(A) (EdgeML passes a second
    argument there, which torch.relu refuses)."""
    one = torch.ones_like(A)
    if nonlinearity == "quantTanh":
        return torch.max(torch.min(A, one), -1.0 * one)
    if nonlinearity == "quantSigm":
        return torch.max(torch.min((A + 1.0) / 2.0, one), torch.zeros_like(A))
    if nonlinearity == "quantSigm4":
        return torch.max(torch.min((A + 2.0) / 4.0, one), torch.zeros_like(A))
    return {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[nonlinearity](A)


def edgeml_cell(torch, kind, p, input, state, gate, update):
    """FastRNNCell.forward / FastGRNNCell.forward of EdgeML, with its parameter names and
    layout (since 2020; edgeml-pytorch 0.3.0's FastGRNNCell stored the transposes, as
    fastrnn does): W (I, H) or W1 (I, r_w), W2 (r_w, H); U (H, H) or U1 (H, r_u),
    U2 (r_u, H); bias_gate, bias_update (1, H); alpha, beta, zeta, nu (1, 1)."""
    wComp = (torch.matmul(input, p["W"]) if "W" in p
             else torch.matmul(torch.matmul(input, p["W1"]), p["W2"]))
    uComp = (torch.matmul(state, p["U"]) if "U" in p
             else torch.matmul(torch.matmul(state, p["U1"]), p["U2"]))
    pre_comp = wComp + uComp
    if kind == "fastrnn":
        c = edgeml_gen_nonlinearity(torch, pre_comp + p["bias_update"], update)
        return torch.sigmoid(p["beta"]) * state + torch.sigmoid(p["alpha"]) * c
    z = edgeml_gen_nonlinearity(torch, pre_comp + p["bias_gate"], gate)
    c = edgeml_gen_nonlinearity(torch, pre_comp + p["bias_update"], update)
    return z * state + (torch.sigmoid(p["zeta"]) * (1.0 - z) + torch.sigmoid(p["nu"])) * c


def edgeml_params(rng, kind, dtype, init, w_rank=None, u_rank=None):
    """EdgeML's parameters: its initial values (0.1 * randn weights, biases 1, alpha -3,
    beta 3, zeta 1, nu -4) or random ones everywhere."""
    def weight(shape):
        return (0.1 if init == "edgeml" else 0.7) * rng.standard_normal(shape)

    p = {}
    if w_rank is None:
        p["W"] = weight((I, H))
    else:
        p["W1"], p["W2"] = weight((I, w_rank)), weight((w_rank, H))
    if u_rank is None:
        p["U"] = weight((H, H))
    else:
        p["U1"], p["U2"] = weight((H, u_rank)), weight((u_rank, H))
    starts = {"bias_gate": 1.0, "bias_update": 1.0, "alpha": -3.0, "beta": 3.0, "zeta": 1.0,
              "nu": -4.0}
    for name in BIASES[kind]:
        p[name] = np.ones((1, H)) if init == "edgeml" else rng.uniform(-1, 1, (1, H))
    for name in SCALARS[kind]:
        p[name] = np.full((1, 1), starts[name]) if init == "edgeml" else rng.uniform(-2, 2, (1, 1))
    return {k: v.astype(dtype) for k, v in p.items()}


def edgeml_run(torch, kind, p, x, h0, lengths, reverse, gate, update, R):
    """EdgeML's cell unrolled over each row's own steps, as pack_padded_sequence does;
    returns (y, h_n) and the autograd gradients of sum(y * Ry) + sum(h_n * Rh)."""
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    tx, th0 = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    ys, hs = [[None] * B for _ in range(T)], []
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        h = th0[b:b + 1]
        for t in (reversed(range(n)) if reverse else range(n)):
            h = edgeml_cell(torch, kind, tp, tx[t, b:b + 1], h, gate, update)
            ys[t][b] = h[0]
        hs.append(h[0])
    zero = torch.zeros(H, dtype=tx.dtype)
    y = torch.stack([torch.stack([v if v is not None else zero for v in row]) for row in ys])
    h_n = torch.stack(hs)
    loss = (y * torch.from_numpy(R[0])).sum() + (h_n * torch.from_numpy(R[1])).sum()
    loss.backward()
    grads = {"x": tx.grad.numpy(), "h0": th0.grad.numpy(),
             **{k: v.grad.numpy() for k, v in tp.items()}}
    return (y.detach().numpy(), h_n.detach().numpy()), grads


def reference_from_edgeml(kind, p, x, h0):
    """The reference's arrays from EdgeML's: W = W.T (or W2.T @ W1.T), biases (H,)."""
    a = {"x": x, "h0": h0}
    a["weight_ih"] = (p["W"].T if "W" in p
                      else ref.low_rank_weight(p["W1"].T, p["W2"].T))
    a["weight_hh"] = (p["U"].T if "U" in p
                      else ref.low_rank_weight(p["U1"].T, p["U2"].T))
    a.update({name: p[name].reshape(H) for name in BIASES[kind]})
    a.update({name: p[name] for name in SCALARS[kind]})  # (1, 1), as EdgeML's
    return a


def edgeml_grads_from_reference(kind, p, g):
    """The reference's gradients in EdgeML's names and layout, factors through
    low_rank_backward."""
    out = {"x": g["x"], "h0": g["h0"]}
    if "W" in p:
        out["W"] = g["weight_ih"].T
    else:
        dW1, dW2 = ref.low_rank_backward(g["weight_ih"], p["W1"].T, p["W2"].T)
        out["W1"], out["W2"] = dW1.T, dW2.T
    if "U" in p:
        out["U"] = g["weight_hh"].T
    else:
        dU1, dU2 = ref.low_rank_backward(g["weight_hh"], p["U1"].T, p["U2"].T)
        out["U1"], out["U2"] = dU1.T, dU2.T
    out.update({name: g[name].reshape(1, H) for name in BIASES[kind]})
    out.update({name: g[name] for name in SCALARS[kind]})
    return out


CASES = [  # (init, lengths, reverse, w_rank, u_rank)
    ("edgeml", None, False, None, None),
    ("random", LENGTHS, False, None, None),
    ("random", LENGTHS, True, None, None),
    ("edgeml", LENGTHS, True, 1, 2),
    ("random", None, False, 2, 1),
    ("random", LENGTHS, True, 1, 2),
]
CASE_IDS = ["edgeml-init", "lengths", "lengths-rev", "edgeml-init-lowrank-rev", "lowrank",
            "lowrank-lengths-rev"]


def both_runs(torch, kind, p, x, h0, lengths, reverse, gate, update, R):
    """EdgeML's cell under autograd and the reference on the same parameters and loss:
    (outputs, grads) of the reference, then of EdgeML's cell."""
    t_outputs, t_grads = edgeml_run(torch, kind, p, x, h0, lengths, reverse, gate, update, R)
    outputs, cache = run(kind, reference_from_edgeml(kind, p, x, h0), lengths, reverse, gate,
                         update)
    grads = edgeml_grads_from_reference(kind, p, grads_of(kind, R, cache))
    return outputs, grads, t_outputs, t_grads


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_edgeml_cell_parity_float64(torch, kind, case):
    """Outputs and every gradient against EdgeML's cell under autograd, 1e-10."""
    init, lengths, reverse, w_rank, u_rank = case
    rng = np.random.default_rng(5)
    p = edgeml_params(rng, kind, np.float64, init, w_rank, u_rank)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    R = (rng.standard_normal((T, B, H)), rng.standard_normal((B, H)))
    gate, update = DEFAULTS[kind]
    outputs, grads, t_outputs, t_grads = both_runs(torch, kind, p, x, h0, lengths, reverse,
                                                   gate, update, R)
    for o, t_o in zip(outputs, t_outputs):
        assert_allclose(o, t_o, **PARITY_TOL[np.float64])
    assert set(grads) == set(t_grads)
    for name in grads:
        assert grads[name].shape == t_grads[name].shape, name
        assert_allclose(grads[name], t_grads[name], **PARITY_TOL[np.float64], err_msg=name)


@pytest.mark.parametrize("kind,gate,update", _pairs(),
                         ids=[f"{k}-{g}-{u}" for k, g, u in _pairs()])
def test_edgeml_cell_parity_nonlinearities(torch, kind, gate, update):
    rng = np.random.default_rng(6)
    p = edgeml_params(rng, kind, np.float64, "random")
    x, h0 = 2 * rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    R = (rng.standard_normal((T, B, H)), rng.standard_normal((B, H)))
    outputs, grads, t_outputs, t_grads = both_runs(torch, kind, p, x, h0, LENGTHS, True,
                                                   gate, update, R)
    for o, t_o in zip(outputs, t_outputs):
        assert_allclose(o, t_o, **PARITY_TOL[np.float64])
    for name in grads:
        assert_allclose(grads[name], t_grads[name], **PARITY_TOL[np.float64], err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_edgeml_cell_parity_float32(torch, kind):
    rng = np.random.default_rng(7)
    p = edgeml_params(rng, kind, np.float32, "random", 2, 2)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    R = tuple(rng.standard_normal(s).astype(np.float32) for s in [(T, B, H), (B, H)])
    gate, update = DEFAULTS[kind]
    outputs, grads, t_outputs, t_grads = both_runs(torch, kind, p, x, h0, LENGTHS, True,
                                                   gate, update, R)
    for o, t_o in zip(outputs, t_outputs):
        assert o.dtype == np.float32
        assert_allclose(o, t_o, **PARITY_TOL[np.float32])
    for name in grads:
        assert grads[name].dtype == np.float32, name
        assert_allclose(grads[name], t_grads[name], **PARITY_TOL[np.float32], err_msg=name)


# ----------------------------------------------------------------------------- low rank


def test_low_rank_weight_and_backward():
    rng = np.random.default_rng(8)
    W1, W2 = rng.standard_normal((2, 5)), rng.standard_normal((4, 2))
    W = ref.low_rank_weight(W1, W2)
    x = rng.standard_normal((3, 5))
    assert W.shape == (4, 5) and np.linalg.matrix_rank(W) == 2
    assert_allclose(x @ W.T, (x @ W1.T) @ W2.T, rtol=1e-12, atol=1e-12)  # W1 acts first
    R = rng.standard_normal((4, 5))
    dW1, dW2 = ref.low_rank_backward(R, W1, W2)
    assert dW1.shape == W1.shape and dW2.shape == W2.shape
    for factor, analytic in ((W1, dW1), (W2, dW2)):
        numeric = central_differences(lambda: np.sum(R * ref.low_rank_weight(W1, W2)), factor)
        assert_allclose(analytic, numeric, **FD_TOL)
    with pytest.raises(ValueError, match="share r"):
        ref.low_rank_weight(W1, W2.T)
    with pytest.raises(ValueError, match="dW"):
        ref.low_rank_backward(R.T, W1, W2)


@pytest.mark.parametrize("kind", KINDS)
def test_low_rank_cell_gradients_central_differences(kind):
    """The factors' gradients through a whole recurrence: the reference's dW, dU mapped by
    low_rank_backward, against central differences in W1, W2, U1, U2."""
    rng = np.random.default_rng(9)
    a = make_inputs(rng, kind)
    f = {"W1": rng.uniform(-1, 1, (2, I)), "W2": rng.uniform(-1, 1, (H, 2)),
         "U1": rng.uniform(-1, 1, (1, H)), "U2": rng.uniform(-1, 1, (H, 1))}

    def forward():
        full = {**a, "weight_ih": ref.low_rank_weight(f["W1"], f["W2"]),
                "weight_hh": ref.low_rank_weight(f["U1"], f["U2"])}
        return run(kind, full, LENGTHS, True, *DEFAULTS[kind])

    outputs, cache = forward()
    R = random_like(rng, outputs)
    g = grads_of(kind, R, cache)
    analytic = dict(zip(("W1", "W2"), ref.low_rank_backward(g["weight_ih"], f["W1"], f["W2"])))
    analytic.update(zip(("U1", "U2"), ref.low_rank_backward(g["weight_hh"], f["U1"], f["U2"])))
    for name, factor in f.items():
        numeric = central_differences(lambda: linear_loss(forward()[0], R), factor)
        assert_allclose(analytic[name], numeric, **FD_TOL, err_msg=name)


# ----------------------------------------------------------------------------- semantics


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_equal_truncated_sequences(kind, reverse):
    """Each row of a padded batch gives what its own truncated sequence gives alone; dy at
    padded steps is ignored; dx there is 0."""
    rng = np.random.default_rng(10)
    a = make_inputs(rng, kind)
    (y, h_n), cache = run(kind, a, LENGTHS, reverse, *DEFAULTS[kind])
    R = random_like(rng, (y, h_n))
    g = grads_of(kind, R, cache)
    R_padded_zero = (np.where(cache["active"][:, :, None], R[0], 0), R[1])
    g_zero = grads_of(kind, R_padded_zero, cache)
    for name in g:
        assert_array_equal(g[name], g_zero[name], err_msg=name)
    params = {k: v for k, v in a.items() if k not in ("x", "h0")}
    summed = {k: np.zeros_like(a[k]) for k in params}
    for b, n in enumerate(LENGTHS):
        row = {**a, "x": a["x"][:n, b:b + 1], "h0": a["h0"][b:b + 1]}
        (y_b, h_b), cache_b = run(kind, row, None, reverse, *DEFAULTS[kind])
        g_b = grads_of(kind, (R[0][:n, b:b + 1], R[1][b:b + 1]), cache_b)
        assert_allclose(y[:n, b:b + 1], y_b, rtol=1e-12, atol=1e-14)
        assert np.all(y[n:, b] == 0)
        assert_allclose(h_n[b:b + 1], h_b, rtol=1e-12, atol=1e-14)
        assert_allclose(g["x"][:n, b:b + 1], g_b["x"], rtol=1e-12, atol=1e-14)
        assert np.all(g["x"][n:, b] == 0)
        assert_allclose(g["h0"][b:b + 1], g_b["h0"], rtol=1e-12, atol=1e-14)
        for k in params:
            summed[k] += g_b[k]
    for k in params:  # the parameters' gradients are the sums over the rows
        assert_allclose(g[k], summed[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("kind", KINDS)
def test_reverse_is_forward_on_flipped_input(kind):
    a = make_inputs(np.random.default_rng(11), kind)
    (y, h_n), _ = run(kind, a, None, True, *DEFAULTS[kind])
    (y_f, h_f), _ = run(kind, {**a, "x": a["x"][::-1]}, None, False, *DEFAULTS[kind])
    assert_allclose(y, y_f[::-1], rtol=1e-12, atol=1e-14)
    assert_allclose(h_n, h_f, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_and_inputs_untouched(kind):
    rng = np.random.default_rng(12)
    a32 = make_inputs(rng, kind, dtype=np.float32)
    before = {k: v.copy() for k, v in a32.items()}
    outputs, cache = run(kind, a32, LENGTHS, True, *DEFAULTS[kind])
    R = tuple(r.astype(np.float32) for r in random_like(rng, outputs))
    R_before = tuple(r.copy() for r in R)
    g = grads_of(kind, R, cache)
    for k, v in a32.items():
        assert_array_equal(v, before[k], err_msg=k)
    for r, r0 in zip(R, R_before):
        assert_array_equal(r, r0)
    assert all(o.dtype == np.float32 for o in outputs)
    assert all(v.dtype == np.float32 for v in g.values())

    a64 = {k: v.astype(np.float64) for k, v in a32.items()}
    outputs64, cache64 = run(kind, a64, LENGTHS, True, *DEFAULTS[kind])
    g64 = grads_of(kind, tuple(r.astype(np.float64) for r in R), cache64)
    for o, o64 in zip(outputs, outputs64):
        assert_allclose(o, o64, **PARITY_TOL[np.float32])
    for k in g:
        assert_allclose(g[k], g64[k], **PARITY_TOL[np.float32], err_msg=k)


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_do_not_alias_the_cache(kind):
    a = make_inputs(np.random.default_rng(13), kind)
    (y, h_n), cache = run(kind, a, LENGTHS, False, *DEFAULTS[kind])
    R = (np.ones_like(y), np.ones_like(h_n))
    expected = grads_of(kind, R, cache)
    y[...] = 7.0
    h_n[...] = 7.0
    got = grads_of(kind, R, cache)
    for k in expected:
        assert_array_equal(got[k], expected[k], err_msg=k)


def test_bad_arguments():
    rng = np.random.default_rng(14)
    a = make_inputs(rng, "fastgrnn")
    r = make_inputs(rng, "fastrnn")
    with pytest.raises(ValueError, match="gate_nonlinearity"):
        run("fastgrnn", a, gate="hardtanh")
    with pytest.raises(ValueError, match="update_nonlinearity"):
        run("fastrnn", r, update="softsign")
    with pytest.raises(ValueError, match="zeta must hold one value"):
        run("fastgrnn", {**a, "zeta": np.zeros(2)})
    with pytest.raises(ValueError, match="beta must hold one value"):
        run("fastrnn", {**r, "beta": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="W must have shape"):
        run("fastgrnn", {**a, "weight_ih": a["weight_ih"].T})
    with pytest.raises(ValueError, match="U must have shape"):
        run("fastrnn", {**r, "weight_hh": r["weight_hh"][:, :2]})
    with pytest.raises(ValueError, match="b_z"):
        run("fastgrnn", {**a, "bias_gate": np.zeros(H + 1)})
    with pytest.raises(ValueError, match="h0"):
        run("fastrnn", {**r, "h0": r["h0"][:, :2]})
    for lengths in ([0, 1, 2], [1, 2, T + 1], [1, 2], [1.0, 2.0, 3.0]):
        with pytest.raises(ValueError, match="lengths"):
            run("fastgrnn", a, lengths=np.array(lengths))
