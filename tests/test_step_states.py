"""Per-step states on request (``forward_states``): every layer's cell state after each
step and the gate activations at each step, against the NumPy reference's caches
(float64 to 1e-10) and against a cell stepped by hand."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from fastrnn import reference as ref
from _tools import PARITY_TOL as TOL

T, B, I, H = 6, 5, 3, 4
LENGTHS = np.array([2, 6, 1, 4, 6])
# (options, bidirectional, lengths, batch_first)
CASES = [({}, False, None, False), ({}, True, LENGTHS, False), ({}, False, LENGTHS, True),
         ({"reverse": True}, False, LENGTHS, False), ({"proj_size": 2}, True, LENGTHS, True),
         ({"peephole": True}, False, LENGTHS, False)]
IDS = ["uni", "bi-lengths", "lengths-bf", "reverse-lengths", "proj-bi-lengths-bf",
       "peephole-lengths"]


def _time_major(a, batch_first):
    """(L, B, T, F) as (L, T, B, F)."""
    return a.swapaxes(1, 2) if batch_first else a


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("options,bidirectional,lengths,batch_first", CASES, ids=IDS)
def test_lstm_states_match_the_reference(options, bidirectional, lengths, batch_first,
                                         dtype):
    layer = fastrnn.LSTM(I, H, num_layers=2, bidirectional=bidirectional,
                         batch_first=batch_first, dtype=dtype, seed=1, **options)
    x = np.random.default_rng(2).standard_normal((T, B, I)).astype(dtype)
    out = layer.forward_states(x.swapaxes(0, 1) if batch_first else x, lengths=lengths)
    y, state = layer(x.swapaxes(0, 1) if batch_first else x, lengths=lengths)
    assert np.array_equal(out.y, y)
    assert np.array_equal(out.state[0], state[0]) and np.array_equal(out.state[1], state[1])
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    _, _, _, cache = ref.stack_forward("LSTM", x.astype(np.float64), params, num_layers=2,
                                       bidirectional=bidirectional, lengths=lengths,
                                       reverse=options.get("reverse", False))
    D = layer.num_directions
    valid = (np.ones((T, B), bool) if lengths is None
             else np.arange(T)[:, None] < lengths[None, :])[:, :, None]
    c, gates = _time_major(out.c, batch_first), _time_major(out.gates, batch_first)
    assert c.shape == (2, T, B, D * H) and gates.shape == (2, T, B, D * 4 * H)
    for k in range(2):
        for d in range(D):
            r = cache["caches"][k * D + d]
            assert_allclose(c[k][:, :, d * H:(d + 1) * H], r["C"] * valid, **TOL[dtype])
            assert_allclose(gates[k][:, :, d * 4 * H:(d + 1) * 4 * H], r["A"] * valid,
                            **TOL[dtype])
    # the last layer's final cell states are its states after each sequence's last step
    last = (lengths - 1) if lengths is not None else np.full(B, T - 1)
    if not options.get("reverse"):
        assert np.array_equal(c[-1][last, np.arange(B), :H], out.state[1][(2 - 1) * D])


def test_states_are_those_of_a_stepped_cell():
    layer = fastrnn.LSTM(I, H, dtype=np.float64, seed=3)
    cell = fastrnn.LSTMCell(I, H, dtype=np.float64, seed=4)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = np.random.default_rng(5).standard_normal((T, B, I))
    out = layer.forward_states(x)
    state = None
    for t in range(T):
        state = cell(x[t], state)
        assert_allclose(out.c[0, t], state[1], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("options", [{}, {"reset_after": False}], ids=["gru", "gru_rb"])
def test_gru_gates_match_the_reference(options):
    layer = fastrnn.GRU(I, H, bidirectional=True, dtype=np.float64, seed=6, **options)
    x = np.random.default_rng(7).standard_normal((T, B, I))
    out = layer.forward_states(x, lengths=LENGTHS)
    assert out.c is None
    _, _, _, cache = ref.stack_forward("GRU", x, layer.state_dict(), bidirectional=True,
                                       lengths=LENGTHS, **options)
    valid = (np.arange(T)[:, None] < LENGTHS[None, :])[:, :, None]
    for d in range(2):
        assert_allclose(out.gates[0][:, :, d * 3 * H:(d + 1) * 3 * H],
                        cache["caches"][d]["A"] * valid, **TOL[np.float64])


def test_states_of_a_fastgrnn_are_its_gates():
    layer = fastrnn.FastGRNN(I, H, num_layers=2, seed=0)
    out = layer.forward_states(np.ones((T, B, I), np.float32), lengths=LENGTHS)
    assert out.c is None and out.gates.shape == (2, T, B, H)
    assert np.all((out.gates > 0) & (out.gates < 1) | (out.gates == 0))   # z in (0, 1)


def test_states_need_no_dropout_and_a_batch():
    layer = fastrnn.LSTM(I, H, num_layers=2, dropout=0.5, seed=0)
    x = np.ones((T, B, I), np.float32)
    assert np.array_equal(layer.forward_states(x).y, layer(x)[0])     # no dropout
    with pytest.raises(ValueError, match="x must be 3-D"):
        layer.forward_states(np.ones((T, I), np.float32))
    with pytest.raises(ValueError, match="at least one time step and one batch row"):
        layer.forward_states(np.ones((T, 0, I), np.float32))
