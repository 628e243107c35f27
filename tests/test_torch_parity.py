"""PyTorch parity: with the same weights, fastrnn's layers and cells give PyTorch's outputs,
final states and every gradient (float64 to 1e-10, float32 to rtol 1e-4 / atol 1e-5).

Every test takes the ``torch`` fixture (see conftest.py): skipped without PyTorch, failed
when FASTRNN_REQUIRE_TORCH=1.
"""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from _tools import PARITY_TOL as TOL

T, B, I, H = 5, 4, 3, 4
LENGTHS = [3, 5, 1, 4]  # unsorted, min 1, max T


# (module name, nonlinearity)
LAYERS = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")]
LAYER_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
CELLS = [("RNNCell", "tanh"), ("RNNCell", "relu"), ("LSTMCell", "tanh"), ("GRUCell", "tanh")]
CELL_IDS = ["rnncell_tanh", "rnncell_relu", "lstmcell", "grucell"]


def _tensor(torch, a, grad=False):
    return torch.tensor(a, requires_grad=grad)


def _close(actual, expected, dtype, what):
    assert actual.dtype == np.dtype(dtype), what
    assert_allclose(actual, expected, err_msg=what, **TOL[dtype])


# ------------------------------------------------------------------------------- layers


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("given_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("mode,nonlinearity", LAYERS, ids=LAYER_IDS)
def test_layer_parity(torch, make_pair, mode, nonlinearity, num_layers, bidirectional, bias,
                      batch_first, lengths, given_state, dtype):
    lstm = mode == "LSTM"
    D = 2 if bidirectional else 1
    fm, tm = make_pair(mode, I, H, dtype=dtype, nonlinearity=nonlinearity, seed=3,
                       num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                       batch_first=batch_first)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0, c0 = (rng.standard_normal((num_layers * D, B, H)).astype(dtype) for _ in range(2))
    Ry = rng.standard_normal((B, T, D * H) if batch_first else (T, B, D * H)).astype(dtype)
    Rh, Rc = (rng.standard_normal((num_layers * D, B, H)).astype(dtype) for _ in range(2))

    # PyTorch
    xt = _tensor(torch, x, grad=True)
    h0t, c0t = _tensor(torch, h0, grad=True), _tensor(torch, c0, grad=True)
    state_t = ((h0t, c0t) if lstm else h0t) if given_state else None
    if lengths is None:
        yt, sn = tm(xt, state_t)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        yp, sn = tm(packed, state_t)
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, batch_first=batch_first,
                                                       total_length=T)
    hnt, cnt = sn if lstm else (sn, None)
    loss = (yt * _tensor(torch, Ry)).sum() + (hnt * _tensor(torch, Rh)).sum()
    if lstm:
        loss = loss + (cnt * _tensor(torch, Rc)).sum()
    loss.backward()

    # fastrnn
    state = ((h0, c0) if lstm else h0) if given_state else None
    y, sf, backward = fm.forward_train(x, state, lengths=lengths)
    dx, ds = backward(Ry, (Rh, Rc) if lstm else Rh)
    hn, cn = sf if lstm else (sf, None)
    dh0, dc0 = ds if lstm else (ds, None)

    _close(y, yt.detach().numpy(), dtype, "y")
    _close(hn, hnt.detach().numpy(), dtype, "h_n")
    _close(dx, xt.grad.numpy(), dtype, "dx")
    if lstm:
        _close(cn, cnt.detach().numpy(), dtype, "c_n")
    if given_state:
        _close(dh0, h0t.grad.numpy(), dtype, "dh0")
        if lstm:
            _close(dc0, c0t.grad.numpy(), dtype, "dc0")
    fparams = dict(fm.named_parameters())
    tnames = [name for name, _ in tm.named_parameters()]
    assert list(fparams) == tnames
    for name, p in tm.named_parameters():
        _close(fparams[name].grad, p.grad.numpy(), dtype, f"grad of {name}")

    # inference gives the training forward's results
    yi, si = fm(x, state, lengths=lengths)
    _close(yi, y, dtype, "y of __call__")
    _close(si[0] if lstm else si, hn, dtype, "h_n of __call__")


# -------------------------------------------------------------------------------- cells


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("given_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name,nonlinearity", CELLS, ids=CELL_IDS)
def test_cell_parity(torch, make_pair, name, nonlinearity, batched, bias, given_state,
                     dtype):
    lstm = name == "LSTMCell"
    fm, tm = make_pair(name, I, H, dtype=dtype, nonlinearity=nonlinearity, seed=5, bias=bias)
    rng = np.random.default_rng(11)
    lead = (B,) if batched else ()
    x = rng.standard_normal(lead + (I,)).astype(dtype)
    h, c, Rh, Rc = (rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(4))

    xt = _tensor(torch, x, grad=True)
    ht, ct = _tensor(torch, h, grad=True), _tensor(torch, c, grad=True)
    state_t = ((ht, ct) if lstm else ht) if given_state else None
    out_t = tm(xt, state_t)
    h1t, c1t = out_t if lstm else (out_t, None)
    loss = (h1t * _tensor(torch, Rh)).sum()
    if lstm:
        loss = loss + (c1t * _tensor(torch, Rc)).sum()
    loss.backward()

    state = ((h, c) if lstm else h) if given_state else None
    called = fm(x, state)
    new_state, backward = fm.forward_train(x, state)
    dx, ds = backward((Rh, Rc) if lstm else Rh)
    h1, c1 = new_state if lstm else (new_state, None)
    hc, cc = called if lstm else (called, None)
    dh, dc = ds if lstm else (ds, None)

    _close(h1, h1t.detach().numpy(), dtype, "h'")
    _close(hc, h1t.detach().numpy(), dtype, "h' of __call__")
    _close(dx, xt.grad.numpy(), dtype, "dx")
    if lstm:
        _close(c1, c1t.detach().numpy(), dtype, "c'")
        _close(cc, c1t.detach().numpy(), dtype, "c' of __call__")
    if given_state:
        _close(dh, ht.grad.numpy(), dtype, "dh")
        if lstm:
            _close(dc, ct.grad.numpy(), dtype, "dc")
    fparams = dict(fm.named_parameters())
    assert list(fparams) == [n for n, _ in tm.named_parameters()]
    for pname, p in tm.named_parameters():
        _close(fparams[pname].grad, p.grad.numpy(), dtype, f"grad of {pname}")


# ----------------------------------------------------------------- init and state_dict

ALL_MODULES = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]


def _build(name, dtype=np.float32, seed=None, hidden=H, **kwargs):
    if not name.endswith("Cell"):
        kwargs.setdefault("num_layers", 2)
        kwargs.setdefault("bidirectional", True)
    return getattr(fastrnn, name)(I, hidden, dtype=dtype, seed=seed, **kwargs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", ALL_MODULES)
def test_default_init_is_reproducible(name, dtype):
    a, b = _build(name, dtype, seed=1234), _build(name, dtype, seed=1234)
    other = _build(name, dtype, seed=1235)
    for (na, pa), (nb, pb), (_, po) in zip(a.named_parameters(), b.named_parameters(),
                                           other.named_parameters()):
        assert na == nb
        assert pa.data.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(pa.data, pb.data)
        assert not np.array_equal(pa.data, po.data)
    # unseeded modules differ
    c, d = _build(name, dtype), _build(name, dtype)
    assert any(not np.array_equal(pc.data, pd.data)
               for pc, pd in zip(c.parameters(), d.parameters()))


@pytest.mark.parametrize("name", ALL_MODULES)
def test_default_init_is_uniform_in_bound(name):
    hidden = 32
    k = 1 / math.sqrt(hidden)
    m = _build(name, np.float64, seed=0, hidden=hidden)
    values = np.sort(np.concatenate([p.data.ravel() for p in m.parameters()]))
    n = values.size
    assert np.all(np.abs(values) <= k)
    # Kolmogorov-Smirnov distance to uniform(-k, k), below its 0.1% critical value
    cdf = (values + k) / (2 * k)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.95 / math.sqrt(n)
    for p in m.parameters():  # each parameter spans the interval, not a narrower one
        assert np.abs(p.data).max() > 0.5 * k


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", ALL_MODULES)
def test_state_dict_round_trips_with_torch(torch, name, bias, dtype):
    kwargs = {} if name.endswith("Cell") else dict(num_layers=2, bidirectional=True)
    fm = _build(name, dtype, seed=42, bias=bias, **kwargs)
    tm = getattr(torch.nn, name)(I, H, bias=bias, **kwargs)
    tm = tm.to(torch.float64 if dtype == np.float64 else torch.float32)
    sd = fm.state_dict()
    tsd = tm.state_dict()
    assert list(sd) == list(tsd)
    for key in sd:
        assert sd[key].shape == tuple(tsd[key].shape), key
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    back = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    for key in sd:
        np.testing.assert_array_equal(back[key], sd[key])
    # and the other way: torch's weights into a fresh fastrnn module
    torch.manual_seed(0)
    tm2 = getattr(torch.nn, name)(I, H, bias=bias, **kwargs)
    tm2 = tm2.to(torch.float64 if dtype == np.float64 else torch.float32)
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm2.state_dict().items()})
    for key, value in tm2.state_dict().items():
        np.testing.assert_array_equal(fm.state_dict()[key], value.numpy())

    # the loaded module computes what torch computes
    x = np.random.default_rng(0).standard_normal((T, B, I) if not name.endswith("Cell")
                                                 else (B, I)).astype(dtype)
    with torch.no_grad():
        out_t = tm2(torch.from_numpy(x))
    out_f = fm(x)
    first_t = out_t[0] if isinstance(out_t, tuple) else out_t
    first_f = out_f[0] if isinstance(out_f, tuple) else out_f
    _close(first_f, first_t.numpy(), dtype, "output with torch's weights")
