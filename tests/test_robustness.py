"""Inputs and situations that once gave a wrong answer without an error, a hang or lost
work: byte order, stale packed weights, nan, flags given as strings, dropout 1, tiny
temperatures, replaced parameters, fork, sizes past the kernels' indices, Ctrl-C in an
optimizer step, thread counts past the cores."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastrnn
from fastrnn import _core, _engine, _runtime, _step, reference
from fastrnn.optim import SGD, Adam

CELLS = ("RNNCell", "LSTMCell", "GRUCell")


# ------------------------------------------------------------------ byte order (cells)

@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cells_read_big_endian_inputs_and_states(name, dtype):
    cell = getattr(fastrnn, name)(3, 5, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(dtype)
    h = rng.standard_normal((4, 5)).astype(dtype)
    state = (h, 2 * h) if name == "LSTMCell" else h
    swapped = x.astype(x.dtype.newbyteorder(">"))
    swapped_state = (tuple(s.astype(s.dtype.newbyteorder(">")) for s in state)
                     if name == "LSTMCell" else state.astype(state.dtype.newbyteorder(">")))
    want = cell(x, state)
    for args in ((swapped, state), (x, swapped_state), (swapped, swapped_state),
                 (swapped[0], None if name != "GRUCell" else swapped_state[0])):
        got = cell(*args)
        ref = cell(x[0], None if name != "GRUCell" else h[0]) if args[0].ndim == 1 else want
        assert_array_equal(np.asarray(got), np.asarray(ref))


def test_step_refuses_swapped_arrays():
    W = np.zeros((5, 3), np.float32)
    x = np.zeros((2, 3), ">f4")
    h = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match="native byte order"):
        _step.step(0, False, x, W, np.zeros((5, 5), np.float32), np.empty(0, np.float32),
                   np.empty(0, np.float32), h, np.empty(0, np.float32),
                   np.empty((2, 5), np.float32), np.empty(0, np.float32))


# ------------------------------------------------------------------ packed weights

def test_packed_weights_follow_a_swap_made_while_packing(monkeypatch):
    """The one-row LSTM loop packs W_hh once and keeps the packing while W_hh's bytes are
    unchanged; new weights written while it packs (a load_state_dict in another thread)
    must be picked up by the next call, not hidden under a copy of the new bytes."""
    lstm = fastrnn.LSTM(16, 16, seed=0)
    new = fastrnn.LSTM(16, 16, seed=1).state_dict()
    x = np.random.default_rng(0).standard_normal((12, 1, 16)).astype(np.float32)
    assert _engine.packed_lstm_weights(lstm.state_dict()["weight_hh_l0"], 12, 1) is not None
    _engine._PACKED.clear()
    pack = _core.lstm_pack

    def pack_then_swap(W_hh, out):
        pack(W_hh, out)
        lstm.load_state_dict(new)                     # finishes while the call packs
        monkeypatch.setattr(_core, "lstm_pack", pack)

    monkeypatch.setattr(_core, "lstm_pack", pack_then_swap)
    lstm(x)                                           # the call that raced the swap
    y, _ = lstm(x)
    fresh = fastrnn.LSTM(16, 16, seed=1)
    assert_allclose(y, fresh(x)[0], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ nan

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_keeps_nan_as_pytorch_and_the_reference(dtype):
    rnn = fastrnn.RNN(3, 4, nonlinearity="relu", dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(dtype)
    x[2, 1, 0] = np.nan
    y, h = rnn(x)
    weights = [rnn.state_dict()[k].astype(np.float64)
               for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    ref_y, _, _ = reference.rnn_forward(x.astype(np.float64), np.zeros((2, 4)), *weights,
                                        nonlinearity="relu")
    assert np.isnan(y[2:, 1]).all() and np.isfinite(y[:, 0]).all()
    assert_allclose(y, ref_y, rtol=1e-5, atol=1e-6, equal_nan=True)
    cell = fastrnn.RNNCell(3, 4, nonlinearity="relu", dtype=dtype, seed=0)
    assert np.isnan(cell(x[2])[1]).all()


def _model(**kw):
    return fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=4, output_size=3,
                                       head="many_to_one", seed=0, **kw)


def test_models_refuse_non_finite_data_naming_the_sample():
    model = _model()
    x = np.zeros((6, 5, 2), np.float32)
    y = np.arange(6) % 3
    x[4, 3, 1] = np.inf
    for call in (lambda: model.predict(x), lambda: model.predict_proba(x),
                 lambda: model.forward(x), lambda: model.evaluate(x, y),
                 lambda: model.fit(x, y, epochs=1, progress=False),
                 lambda: model.fit(np.zeros_like(x), y, epochs=1, progress=False,
                                   validation_data=(x, y))):
        with pytest.raises(ValueError, match=r"x\[4, 3, 1\] = inf in sample 4"):
            call()


def test_padding_past_lengths_may_hold_nan():
    model = _model()
    x = np.random.default_rng(0).standard_normal((3, 5, 2)).astype(np.float32)
    lengths = np.array([5, 2, 3])
    padded = x.copy()
    padded[1, 2:] = np.nan
    padded[2, 3:] = np.inf
    assert_array_equal(model.predict(padded, lengths), model.predict(x, lengths))
    with pytest.raises(ValueError, match="in sample 1"):
        model.predict(padded, [5, 3, 3])


def test_regression_targets_and_primes_must_be_finite():
    model = fastrnn.SequenceModel.build("rnn", input_size=2, hidden_size=4, output_size=2,
                                        head="many_to_many", loss="mse", seed=0)
    x = np.zeros((3, 4, 2), np.float32)
    y = np.zeros((3, 4, 2), np.float32)
    y[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"y holds 1 nan or inf value: .*sample 2"):
        model.fit(x, y, epochs=1, progress=False)
    prime = np.zeros((3, 2), np.float32)
    prime[1, 1] = np.nan
    with pytest.raises(ValueError, match="prime holds 1 nan or inf value"):
        model.generate(prime, 2)


def test_layers_and_cells_propagate_nan():
    lstm = fastrnn.LSTM(2, 3, seed=0)
    x = np.zeros((4, 2, 2), np.float32)
    x[1, 0, 0] = np.nan
    y, (h, c) = lstm(x)
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:, 1]).all()
    assert np.isnan(fastrnn.LSTMCell(2, 3, seed=0)(x[1])[0][0]).all()


# ------------------------------------------------------------------ arguments

@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("arg", ["bias", "batch_first", "bidirectional"])
def test_layer_flags_must_be_bools(name, arg):
    with pytest.raises(TypeError, match=f"{arg} must be a bool, got str"):
        getattr(fastrnn, name)(2, 3, **{arg: "False"})
    layer = getattr(fastrnn, name)(2, 3)
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        layer.batch_first = 0.0


@pytest.mark.parametrize("name", CELLS + ("Linear",))
def test_cell_and_linear_bias_must_be_a_bool(name):
    with pytest.raises(TypeError, match="bias must be a bool"):
        getattr(fastrnn, name)(2, 3, bias="False")


def test_rnn_takes_pytorchs_positional_order():
    rnn = fastrnn.RNN(2, 3, 1, "relu", False, True)
    assert (rnn.nonlinearity, rnn.bias, rnn.batch_first) == ("relu", False, True)
    with pytest.raises(TypeError):
        fastrnn.LSTM(2, 3, 1, True, False, 0.0, False, np.float64)    # dtype: keyword only


def test_rnn_positional_order_matches_torch(torch):
    args = (2, 3, 2, "relu", False, True, 0.5, True)
    t, f = torch.nn.RNN(*args), fastrnn.RNN(*args)
    for key in ("num_layers", "nonlinearity", "bias", "batch_first", "dropout",
                "bidirectional"):
        assert getattr(f, key) == getattr(t, key), key


# ------------------------------------------------------------------ dropout 1

def test_dropout_one_zeroes_the_inputs_of_later_layers():
    lstm = fastrnn.LSTM(3, 4, num_layers=2, dropout=1.0, seed=0)
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 5, 2, 3)).astype(np.float32)
    y1, _, backward = lstm.forward_train(x1)
    y2, _, _ = lstm.forward_train(x2)
    assert np.isfinite(y1).all()
    assert_array_equal(y1, y2)                    # the second layer sees zeros either way
    dx, _ = backward(np.ones_like(y1))
    assert_array_equal(dx, 0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\]"):
        lstm.dropout = 1.5


def test_from_torch_takes_dropout_one(torch):
    t = torch.nn.GRU(3, 4, num_layers=2, dropout=1.0)
    f = fastrnn.from_torch(t)
    assert f.dropout == 1.0
    y, _, _ = f.forward_train(np.ones((2, 1, 3), np.float32))
    assert np.isfinite(y).all()


# ------------------------------------------------------------------ tiny temperature

def test_a_tiny_temperature_samples_the_argmax():
    model = fastrnn.SequenceModel.build("lstm", vocab_size=7, hidden_size=8, output_size=7,
                                        head="many_to_many", seed=3)
    prime = np.array([1, 2, 3])
    greedy = model.generate(prime, 12, temperature=0)
    for t in (1e-308, 5e-324, 1e-30):
        assert_array_equal(model.generate(prime, 12, temperature=t, seed=0), greedy)
    with pytest.raises(TypeError, match="temperature must be a number"):
        model.generate(prime, 2, temperature="0.5")


# ------------------------------------------------------------------ replaced parameters

def test_an_assigned_parameter_is_used_everywhere(tmp_path):
    model = _model()
    new = fastrnn.Parameter(np.full((3, 4), 0.25, np.float32))
    model.head.readout.weight = new
    assert dict(model.named_parameters())["head.readout.weight"] is new
    assert model.state_dict()["head.readout.weight"][0, 0] == 0.25
    opt = SGD(model.parameters(), lr=0.1)
    assert any(p is new for p in opt.param_groups[0]["params"])
    fastrnn.save(model, tmp_path / "m.npz")
    assert_array_equal(fastrnn.load(tmp_path / "m.npz").state_dict()["head.readout.weight"],
                       new.data)
    lstm = fastrnn.LSTM(2, 3, seed=0)
    p = fastrnn.Parameter(np.zeros((12, 2), np.float32))
    lstm.weight_ih_l0 = p
    assert lstm.weight_ih_l0 is p and lstm._weights()[0][0][0] is p.data


def test_assigning_anything_else_to_a_parameter_raises():
    lstm = fastrnn.LSTM(2, 3, seed=0)
    with pytest.raises(TypeError, match="cannot assign ndarray to the parameter"):
        lstm.weight_ih_l0 = np.zeros((12, 2), np.float32)
    with pytest.raises(ValueError, match="must keep its shape"):
        lstm.weight_ih_l0 = fastrnn.Parameter(np.zeros((12, 3), np.float32))
    with pytest.raises(ValueError, match="must keep its shape.*float64"):
        lstm.weight_ih_l0 = fastrnn.Parameter(np.zeros((12, 2)))
    with pytest.raises(ValueError, match="data must have shape"):
        lstm.weight_hh_l0.data = np.zeros((3, 3), np.float32)
    with pytest.raises(TypeError, match="cannot assign int to the sub-module"):
        _model().head = 3


# ------------------------------------------------------------------ fork

_FORK_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys
    import numpy as np
    import fastrnn
    from fastrnn import _blas
    _blas.set_num_threads(2)                  # a team of two even on one core
    lstm = fastrnn.LSTM(64, 128, seed=0)
    x = np.ones((50, 64, 64), np.float32)
    want = lstm(x)[0]

    def run(_):
        return float(np.abs(lstm(x)[0] - want).max())

    pid = os.fork()
    if pid == 0:
        os._exit(0 if run(0) < 1e-5 and fastrnn.get_num_threads() == 1 else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert max(pool.map(run, range(4))) < 1e-5
    print("ok")
""")


def test_a_forked_child_runs_kernels_after_the_parent_did():
    out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------ sizes

def test_sizes_past_the_kernels_indices_are_refused_before_allocating():
    huge = np.broadcast_to(np.zeros((1, 1, 1), np.float32), (2**16, 2**15, 1))  # no memory
    with pytest.raises(ValueError, match=r"2\*\*31 - 1"):
        fastrnn.GRU(1, 2)(huge)
    with pytest.raises(ValueError, match=r"2\*\*31 - 1"):
        fastrnn.Linear(1, 2)(huge)
    with pytest.raises(ValueError, match=r"gate_width = 8589934592"):
        fastrnn.LSTM(1, 2**31)


# ------------------------------------------------------------------ Ctrl-C in a step

@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="no SIGINT")
def test_ctrl_c_in_an_optimizer_step_applies_the_whole_step(monkeypatch):
    params = [fastrnn.Parameter(np.zeros(3)) for _ in range(4)]
    for p in params:
        p.grad[:] = 1.0
    opt = Adam(params, lr=0.1)
    update = Adam._update
    calls = []

    def interrupted(self, p, state, group, work):
        if not calls:
            os.kill(os.getpid(), signal.SIGINT)       # Ctrl-C while the first is updated
        calls.append(p)
        update(self, p, state, group, work)

    monkeypatch.setattr(Adam, "_update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        opt.step()
    assert len(calls) == 4
    assert [opt.state[i]["step"] for i in range(4)] == [1, 1, 1, 1]
    assert all(np.array_equal(p.data, params[0].data) for p in params)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------------ threads

def test_threads_are_capped_at_the_cores():
    before = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(64)
        assert fastrnn.get_num_threads() == _runtime.available_cores()
    finally:
        fastrnn.set_num_threads(before)


# ------------------------------------------------------------------ inf in the logs

def test_an_inf_validation_loss_is_checkpointed(tmp_path):
    model = fastrnn.SequenceModel.build("rnn", input_size=1, hidden_size=3, output_size=1,
                                        head="many_to_one", loss="mse", dtype=np.float64,
                                        seed=0)
    x, y = np.zeros((4, 3, 1)), np.zeros((4, 1))
    far = np.full((4, 1), 1e200)                       # finite, but its square is not
    keep = fastrnn.ModelCheckpoint(tmp_path / "m.npz", save_best_only=True)
    with np.errstate(over="ignore"):
        h = model.fit(x, y, epochs=1, validation_data=(x, far), callbacks=[keep],
                      progress=False)
    assert h.history["val_loss"] == [np.inf]
    _, _, extra = fastrnn.load_checkpoint(tmp_path / "m.npz")
    assert extra["epoch"] == 0 and extra["logs"]["val_loss"] is None


def test_a_removed_weight_is_named_not_an_index_error():
    lstm = fastrnn.LSTM(3, 4, seed=0)
    del lstm._params["weight_hh_l0"]
    with pytest.raises(ValueError, match="LSTM has no parameter weight_hh_l0"):
        lstm(np.zeros((2, 1, 3), np.float32))
