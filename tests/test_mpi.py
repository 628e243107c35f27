"""Data-parallel training over MPI (fastrnn.mpi.MPIComm).  Run on several ranks with

    mpiexec -n 2 python -m pytest -q -p no:cacheprovider tests/test_mpi.py

(as .ci/run does); under a plain ``pytest`` the world is this one process.  Every rank
runs every test in the same order, and each test makes all its collective calls before
it asserts anything, so a failure on one rank does not leave the other waiting."""

import os

import numpy as np
import pytest

import fastrnn
from fastrnn import optim
from fastrnn.distributed import data_parallel

pytest.importorskip("mpi4py")
from mpi4py import MPI  # noqa: E402

from fastrnn.mpi import MPIComm  # noqa: E402

#: a data-parallel fit's weights against the 1-process fit's (tests/test_distributed.py
#: measures 6e-7 in float32, 2e-15 in float64 for fits of this size)
TOLERANCE = {np.float64: 1e-12, np.float32: 5e-6}


@pytest.fixture(scope="module")
def comm():
    return MPIComm()


def test_allreduce_and_bcast(comm):
    buf = np.arange(5, dtype=np.float32) * (comm.rank + 1)
    comm.allreduce_(buf)
    mine = np.full(3, float(comm.rank))
    comm.bcast_(mine, root=comm.size - 1)
    obj = comm.bcast({"from": comm.rank}, root=0)
    total = comm.size * (comm.size + 1) / 2
    np.testing.assert_array_equal(buf, np.arange(5, dtype=np.float32) * total)
    np.testing.assert_array_equal(mine, comm.size - 1)
    assert obj == {"from": 0}


def build(seed, dtype):
    return fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=16, output_size=4,
                                       head="many_to_one", num_layers=2, dtype=dtype,
                                       seed=seed)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ranks_equal_one_process(comm, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((101, 10, 3)).astype(dtype)     # the last batch: 5 rows
    y, lengths = rng.integers(0, 4, 101), rng.integers(1, 11, 101)
    kwargs = {"epochs": 3, "batch_size": 32, "seed": 0, "progress": False,
              "validation_data": (x[:20], y[:20], lengths[:20]), "clip_norm": 1.0}
    one = build(0, dtype)                            # 1 process, rank 0's weights
    history = one.fit(x, y, lengths, optimizer=optim.Adam(one.parameters(), lr=1e-2),
                      **kwargs)
    model = build(comm.rank, dtype)                  # rank 0's weights are taken
    with data_parallel(model, comm):
        dp = model.fit(x, y, lengths, optimizer=optim.Adam(model.parameters(), lr=1e-2),
                       **kwargs)
    states = comm.comm.allgather(model.state_dict())
    histories = comm.comm.allgather(dp.history)
    for s in states[1:]:                             # every rank: the same weights
        for k in s:
            np.testing.assert_array_equal(s[k], states[0][k], err_msg=k)
    assert all(h == histories[0] for h in histories)
    tol = TOLERANCE[dtype]
    for k, v in one.state_dict().items():
        np.testing.assert_allclose(states[0][k], v, rtol=tol, atol=tol, err_msg=k)
        assert not np.array_equal(v, build(0, dtype).state_dict()[k])     # it trained
    assert history.epochs == dp.epochs == 3


def test_ranks_on_one_machine_share_its_cores(comm):
    local = comm.comm.Split_type(MPI.COMM_TYPE_SHARED)
    ranks_here = local.Get_size()
    local.Free()
    cores = len(os.sched_getaffinity(0))
    if comm.num_threads is None:                     # the host set a budget: kept
        assert fastrnn.process_settings()["kernel_threads"]["source"] != "affinity mask"
    else:
        assert comm.num_threads == max(1, cores // ranks_here)
        assert fastrnn.get_num_threads() * ranks_here <= max(cores, ranks_here)
