"""Truncated BPTT in ``Sequential.fit``: windows of ``tbptt`` steps, one optimizer step a
window, the state of every recurrent layer of the chain carried across windows without a
gradient.  Checked against PyTorch (the same model, states detached between windows,
``torch.optim.SGD``), against full BPTT when a window holds the whole sequence, and the
chains it cannot carry refused."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastrnn

N, T, I, H1, H2, O = 4, 7, 3, 6, 5, 2


def chain(dtype=np.float64, seed=0):
    return fastrnn.Sequential([
        fastrnn.LSTM(I, H1, batch_first=True, seed=seed, dtype=dtype), fastrnn.Tanh(),
        fastrnn.GRU(H1, H2, batch_first=True, seed=seed + 1, dtype=dtype),
        fastrnn.Linear(H2, O, seed=seed + 2, dtype=dtype)], loss="mse", dtype=dtype)


def data(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, T, I)).astype(dtype),
            rng.standard_normal((N, T, O)).astype(dtype))


def fit(model, x, y, tbptt, lengths=None, lr=0.1, epochs=2):
    return model.fit(x, y, lengths, epochs=epochs, batch_size=N, shuffle=False,
                     tbptt=tbptt, optimizer=fastrnn.optim.SGD(model.parameters(), lr=lr),
                     progress=False)


@pytest.mark.parametrize("tbptt", [1, 3, 5])
def test_windows_match_torch_with_detached_states(torch, tbptt):
    """Each window: forward from the carried (detached) states, the mean squared error
    over the window's entries, backward, one SGD step; after two epochs the weights are
    PyTorch's (float64)."""
    nn = torch.nn
    model = chain()
    x, y = data()
    lstm, gru = nn.LSTM(I, H1, batch_first=True).double(), nn.GRU(H1, H2, batch_first=True)
    gru = gru.double()
    lin = nn.Linear(H2, O).double()
    with torch.no_grad():
        for module, ours in ((lstm, model[0]), (gru, model[2]), (lin, model[3])):
            for name, p in module.named_parameters():
                p.copy_(torch.from_numpy(ours.state_dict()[name]))
    params = [*lstm.parameters(), *gru.parameters(), *lin.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(2):
        s1 = s2 = None
        for s in range(0, T, tbptt):
            opt.zero_grad()
            h, s1 = lstm(tx[:, s:s + tbptt], s1)
            h, s2 = gru(torch.tanh(h), s2)
            loss = torch.nn.functional.mse_loss(lin(h), ty[:, s:s + tbptt])
            loss.backward()
            opt.step()
            s1 = tuple(v.detach() for v in s1)
            s2 = s2.detach()
    history = fit(model, x, y, tbptt)
    assert len(history.history["loss"]) == 2
    for module, ours in ((lstm, model[0]), (gru, model[2]), (lin, model[3])):
        for name, p in module.named_parameters():
            assert_allclose(ours.state_dict()[name], p.detach().numpy(), rtol=1e-10,
                            atol=1e-12, err_msg=name)


@pytest.mark.parametrize("lengths", [None, [7, 3, 5, 1]], ids=["full", "lengths"])
def test_a_window_of_the_whole_sequence_is_full_bptt(lengths):
    """With tbptt >= T there is one window: the same updates as without tbptt, bit for
    bit."""
    x, y = data(1)
    a, b = chain(seed=3), chain(seed=3)
    lengths = None if lengths is None else np.array(lengths)
    fit(a, x, y, None, lengths)
    fit(b, x, y, T, lengths)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert_array_equal(p.data, q.data, err_msg=name)


def test_windows_differ_from_full_bptt_and_carry_the_state():
    """Shorter windows change the updates (more steps); and the carried state matters:
    the first window's outputs with a zero state differ from the last window's."""
    x, y = data(2)
    a, b = chain(seed=4), chain(seed=4)
    fit(a, x, y, None, epochs=1)
    fit(b, x, y, 2, epochs=1)
    assert not np.allclose(a[0].weight_ih_l0.data, b[0].weight_ih_l0.data)


def test_lengths_in_windows_ignore_the_padded_steps():
    """Padded steps never reach a loss: garbage (large values) in the padded inputs and
    targets changes nothing."""
    x, y = data(3)
    lengths = np.array([7, 2, 4, 5])
    x2, y2 = x.copy(), y.copy()
    for b, n in enumerate(lengths):
        x2[b, n:] = 1e3
        y2[b, n:] = -1e3
    a, b = chain(seed=5), chain(seed=5)
    fit(a, x, y, 3, lengths)
    fit(b, x2, y2, 3, lengths)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert_allclose(p.data, q.data, rtol=0, atol=1e-14, err_msg=name)


def test_float32_windows_learn():
    """A float32 chain trained in windows learns a per-step task: the loss falls."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 20, 1)).astype(np.float32)
    y = np.cumsum(x, axis=1) / 4                    # a running sum: needs the carried state
    model = fastrnn.Sequential([fastrnn.LSTM(1, 16, batch_first=True, seed=0),
                                fastrnn.Linear(16, 1, seed=1)], loss="mse")
    h = model.fit(x, y, epochs=30, batch_size=16, tbptt=5, progress=False, seed=0,
                  optimizer=fastrnn.optim.Adam(model.parameters(), lr=1e-2))
    loss = h.history["loss"]
    assert loss[-1] < 0.2 * loss[0]


F = dict(dtype=np.float64)


@pytest.mark.parametrize("layers, match", [
    (lambda: [fastrnn.LSTM(I, H1, batch_first=True, **F), fastrnn.TimePooling("mean"),
              fastrnn.Linear(H1, O, **F)], "every step"),
    (lambda: [fastrnn.Linear(I, O, **F)], "has none"),
    (lambda: [fastrnn.LSTM(I, H1, batch_first=True, bidirectional=True, **F),
              fastrnn.Linear(2 * H1, O, **F)], "bidirectional"),
    (lambda: [fastrnn.GRU(I, H1, batch_first=True, reverse=True, **F),
              fastrnn.Linear(H1, O, **F)], "reverse"),
    (lambda: [fastrnn.Residual(fastrnn.Sequential([fastrnn.Linear(I, I, **F)], **F)),
              fastrnn.Sequential([fastrnn.LSTM(I, H1, batch_first=True, **F)], **F),
              fastrnn.Linear(H1, O, **F)], "Sequential holds one"),
], ids=["pooled", "no-recurrent", "bidirectional", "reverse", "nested"])
def test_chains_it_cannot_carry_are_refused(layers, match):
    model = fastrnn.Sequential(layers(), loss="mse", dtype=np.float64)
    x, y = data()
    if match == "every step":
        y = y[:, 0]
    with pytest.raises(ValueError, match=match):
        fit(model, x, y, 3)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (2.5, TypeError),
                                        ("3", TypeError)])
def test_bad_tbptt_is_refused(bad, error):
    x, y = data()
    with pytest.raises(error, match="tbptt"):
        fit(chain(), x, y, bad)
