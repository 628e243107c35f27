"""Data-parallel training (fastrnn.distributed) over ranks in threads of one process: a
2-rank (3-rank) fit is the 1-process fit of the same global batches, to the rounding of
the gradient's sum in another order, and every rank ends with the same model, bit for
bit.  tests/test_mpi.py runs the same over MPI, under mpiexec."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastrnn
import fastrnn.distributed
from fastrnn import optim
from fastrnn.distributed import ThreadGroup, data_parallel

#: how far a data-parallel fit's weights may lie from the 1-process fit's after the 15
#: to 45 Adam steps of these tests (measured: 6e-7 in float32, 2.3e-15 in float64)
TOLERANCE = {np.float64: 1e-13, np.float32: 5e-6}


def sequences(n=65, T=8, F=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, F))
    return x, rng.integers(1, T + 1, n), rng.integers(0, 4, n), rng.integers(0, 4, (n, T))


def lstm_many_to_one(seed, dtype):
    return fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=12, output_size=4,
                                       head="many_to_one", num_layers=2, dtype=dtype,
                                       seed=seed)


def gru_many_to_many(seed, dtype):
    return fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=10, output_size=4,
                                       head="many_to_many", dtype=dtype, seed=seed)


def sequential(seed, dtype):
    return fastrnn.Sequential([fastrnn.LSTM(3, 8, batch_first=True, dtype=dtype, seed=seed),
                               fastrnn.TimePooling("mean"),
                               fastrnn.Linear(8, 4, dtype=dtype, seed=seed + 1)],
                              loss="cross_entropy")


CASES = {
    # N=65, batch 16: the last global batch has one row, so rank 1's part is empty
    "many_to_one": (lstm_many_to_one, lambda d: (d[0], d[2], d[1]), {"clip_norm": 0.5}),
    "tbptt": (gru_many_to_many, lambda d: (d[0], d[3], d[1]), {"tbptt": 3}),
    "sequential": (sequential, lambda d: (d[0], d[2], d[1]), {}),
}


def fit(model, data, comm=None, **kwargs):
    x, y, lengths = data
    v = sequences(n=21, seed=9)
    kwargs = {"epochs": 3, "batch_size": 16, "seed": 0, "progress": False,
              "optimizer": optim.Adam(model.parameters(), lr=1e-2),
              "validation_data": (v[0].astype(x.dtype), y[:21], v[1]), **kwargs}
    if comm is None:
        return model.fit(x, y, lengths, **kwargs)
    with data_parallel(model, comm):
        return model.fit(x, y, lengths, **kwargs)


def run_ranks(size, build, data, **kwargs):
    """Each rank builds its model with a seed of its own, fits it data-parallel on one
    thread; returns the ranks' (state_dict, history)."""

    def rank_main(comm):
        with fastrnn.threads(1):
            model = build(comm.rank + 100)          # rank 0's weights reach every rank
            history = fit(model, data, comm, **kwargs)
        return model.state_dict(), history

    return ThreadGroup(size).run(rank_main)


def assert_same_on_every_rank(results):
    (s0, h0), rest = results[0], results[1:]
    for s, h in rest:
        for k in s0:
            np.testing.assert_array_equal(s[k], s0[k], err_msg=k)
        assert h.history == h0.history and h.stop_reason == h0.stop_reason


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("size", [2, 3])
def test_ranks_equal_one_process_on_the_same_global_batches(case, dtype, size):
    build, columns, kwargs = CASES[case]
    d = sequences()
    data = (d[0].astype(dtype),) + columns(d)[1:]
    one = build(100, dtype)
    history = fit(one, data, **kwargs)
    results = run_ranks(size, lambda seed: build(seed, dtype), data, **kwargs)
    assert_same_on_every_rank(results)
    state, h = results[0]
    tol = TOLERANCE[dtype]
    moved = 0.0
    for k, v in one.state_dict().items():
        np.testing.assert_allclose(state[k], v, rtol=tol, atol=tol, err_msg=k)
        moved = max(moved, float(np.abs(v - build(100, dtype).state_dict()[k]).max()))
    assert moved > 1e-3                         # the weights did train
    assert h.epochs == history.epochs == 3
    for name, values in history.history.items():      # loss, accuracy, val_loss, ...
        np.testing.assert_allclose(h[name], values, rtol=1e3 * tol, err_msg=name)


def test_a_seed_of_none_is_drawn_on_rank_0():
    d = sequences()
    results = run_ranks(2, lambda seed: lstm_many_to_one(seed, np.float64),
                        (d[0], d[2], d[1]), seed=None)
    assert_same_on_every_rank(results)


def test_early_stopping_stops_every_rank_on_the_same_epoch():
    d = sequences()

    def rank_main(comm):
        model = lstm_many_to_one(comm.rank, np.float64)
        stop = fastrnn.EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0)
        history = fit(model, (d[0], d[2], d[1]), comm, epochs=6, callbacks=[stop])
        return model.state_dict(), history

    results = ThreadGroup(2).run(rank_main)
    assert_same_on_every_rank(results)
    assert results[0][1].epochs == 2           # no epoch improves by 10: stops after two


def test_a_non_finite_loss_on_one_rank_stops_every_rank():
    x, lengths, _, _ = sequences(n=32)
    y = np.zeros((32, 8, 1))
    y[30] = 1e200                               # in rank 1's part of the second batch
    build = lambda seed: fastrnn.SequenceModel.build(  # noqa: E731
        "rnn", input_size=3, hidden_size=4, output_size=1, loss="mse", dtype=np.float64,
        seed=seed)

    def rank_main(comm):
        model = build(comm.rank)
        with np.errstate(over="ignore"):        # (y - out)**2 is inf: what the test wants
            history = fit(model, (x, y, lengths), comm, validation_data=None, shuffle=False)
        return model.state_dict(), history

    with pytest.warns(RuntimeWarning, match="non-finite"):     # (warnings are per process)
        results = ThreadGroup(2).run(rank_main)
    assert_same_on_every_rank(results)
    one = build(0)
    with pytest.warns(RuntimeWarning, match="non-finite"), np.errstate(over="ignore"):
        history = fit(one, (x, y, lengths), validation_data=None, shuffle=False)
    assert results[0][1].stop_reason == history.stop_reason
    assert history.stop_reason.startswith("stopped at epoch 1: non-finite loss")
    for k, v in one.state_dict().items():      # the weights after the first (finite) step
        np.testing.assert_allclose(results[0][0][k], v, rtol=1e-12, atol=1e-12)


def test_seq2seq():
    rng = np.random.default_rng(3)
    src, tgt = rng.integers(1, 9, (40, 6)), rng.integers(1, 9, (40, 5))
    build = lambda seed: fastrnn.Seq2Seq.build(src_vocab=9, tgt_vocab=9,  # noqa: E731
                                               hidden_size=8, dtype=np.float64, seed=seed)
    one = build(0)
    one.fit(src, tgt, epochs=2, batch_size=8, seed=1, progress=False)

    def rank_main(comm):
        model = build(comm.rank)
        with data_parallel(model, comm):
            history = model.fit(src, tgt, epochs=2, batch_size=8, seed=1, progress=False)
        return model.state_dict(), history

    results = ThreadGroup(2).run(rank_main)
    assert_same_on_every_rank(results)
    for k, v in one.state_dict().items():
        np.testing.assert_allclose(results[0][0][k], v, rtol=1e-12, atol=1e-12)


def test_outside_the_block_fit_is_the_plain_fit():
    d = sequences()
    model = lstm_many_to_one(0, np.float64)
    comm = ThreadGroup(1).comms[0]
    with data_parallel(model, comm) as same:
        assert same is model and model._data_parallel is not None
    assert model._data_parallel is None and "_data_parallel" not in vars(model)
    a = fit(model, (d[0], d[2], d[1]))
    b = fit(lstm_many_to_one(0, np.float64), (d[0], d[2], d[1]))
    assert a.history == b.history


def test_thread_group():
    def work(comm):
        buf = np.arange(4.0) * (comm.rank + 1)
        comm.allreduce_(buf)
        mine = np.full(2, float(comm.rank))
        comm.bcast_(mine, root=1)
        return buf, mine, comm.bcast({"rank": comm.rank}, root=2)

    for buf, mine, obj in ThreadGroup(3).run(work):
        np.testing.assert_array_equal(buf, np.arange(4.0) * 6)
        np.testing.assert_array_equal(mine, [1.0, 1.0])
        assert obj == {"rank": 2}

    def fails(comm):
        if comm.rank == 1:
            raise KeyError("rank 1")
        comm.allreduce_(np.zeros(1))          # rank 0 waits for rank 1, which is gone

    group = ThreadGroup(2)
    with pytest.raises(KeyError, match="rank 1"):
        group.run(fails)
    assert group.run(lambda comm: comm.rank) == [0, 1]      # usable again

    def mismatched(comm):
        comm.allreduce_(np.zeros(comm.rank + 1))

    with pytest.raises(ValueError, match="the ranks' buffers differ"):
        ThreadGroup(2).run(mismatched)


def test_bad_arguments():
    model = lstm_many_to_one(0, np.float64)
    comm = ThreadGroup(1).comms[0]
    with pytest.raises(TypeError, match="model must be a fastrnn model with fit"):
        with data_parallel(fastrnn.LSTM(3, 4), comm):
            pass
    with pytest.raises(TypeError, match="comm must have rank, size, allreduce_"):
        with data_parallel(model, object()):
            pass
    with data_parallel(model, comm):
        with pytest.raises(ValueError, match="already inside a data_parallel block"):
            with data_parallel(model, comm):
                pass
    with pytest.raises(TypeError, match="size must be an int"):
        ThreadGroup(2.0)
    with pytest.raises(ValueError, match="size must be >= 1"):
        ThreadGroup(0)


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or not shutil.which("mpiexec"),
                    reason="needs mpi4py and mpiexec")
def test_the_mpi_example_on_two_ranks(tmp_path):
    """examples/mpi_train.py (shown on the docs page) under ``mpiexec -n 2``."""
    script = Path(__file__).resolve().parents[1] / "examples" / "mpi_train.py"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(fastrnn.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    env.pop("OMP_NUM_THREADS", None)
    env.pop("FASTRNN_NUM_THREADS", None)
    proc = subprocess.run(["mpiexec", "-n", "2", sys.executable, str(script), "--epochs", "2",
                           "--hidden", "16", "--out", str(tmp_path / "m.npz")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # two ranks on this machine share its cores; both end with rank 0's model
    cores = len(os.sched_getaffinity(0))
    assert f"2 ranks x {max(1, cores // 2)} kernel thread(s)" in proc.stdout
    assert "the same weights on every rank: True" in proc.stdout
    assert fastrnn.load(tmp_path / "m.npz").predict(np.zeros((1, 8, 8))).shape == (1,)
