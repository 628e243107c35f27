"""fastrnn.dask.predict on a real local cluster of two worker processes: the answer is the
model's on the whole array, the model travels to each worker once, and a worker's
kernels take the one thread Dask gives it."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import fastrnn.dask  # noqa: E402

N, T, F = 160, 9, 3


@pytest.fixture(scope="module")
def client():
    environ = dict(os.environ)      # the nanny sets MALLOC_TRIM_THRESHOLD_ in this process
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c
    os.environ.clear()
    os.environ.update(environ)


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, F))
    lengths = rng.integers(1, T + 1, N)
    return x, lengths


def classifier(head="many_to_one", dtype=np.float64):
    # float64: a chunk's answer does not depend on the chunk's size (BLAS rounding)
    return fastrnn.SequenceModel.build("lstm", input_size=F, hidden_size=16, output_size=4,
                                       head=head, num_layers=2, dtype=dtype, seed=0)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "forward"])
@pytest.mark.parametrize("head", ["many_to_one", "many_to_many"])
def test_equals_the_model_on_the_whole_array(client, method, head):
    model = classifier(head)
    x, lengths = data()
    dx = da.from_array(x, chunks=(40, T, F))
    for given in (None, lengths, da.from_array(lengths, chunks=25)):   # chunks unaligned
        y = fastrnn.dask.predict(model, dx, given, method=method)
        expected = getattr(model, method)(x, None if given is None else lengths)
        assert y.chunks[0] == dx.chunks[0]
        assert y.shape == expected.shape and y.dtype == expected.dtype
        got = y.compute()
        if method == "predict":
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


def test_chunks_along_time_and_features_are_merged(client):
    model = classifier()
    x, lengths = data(1)
    dx = da.from_array(x, chunks=(30, 4, 2))
    y = fastrnn.dask.predict(model, dx, lengths, method="predict_proba", batch_size=7)
    np.testing.assert_allclose(y.compute(), model.predict_proba(x, lengths), rtol=1e-12)


def test_sequential_and_tokens(client):
    model = fastrnn.Sequential([fastrnn.Embedding(11, 5, seed=0), fastrnn.GRU(5, 8, seed=1),
                                fastrnn.TimePooling("mean"), fastrnn.Linear(8, 3, seed=2)],
                               loss="cross_entropy")
    tokens = np.random.default_rng(2).integers(0, 11, (N, T))
    y = fastrnn.dask.predict(model, da.from_array(tokens, chunks=50), method="forward")
    np.testing.assert_allclose(y.compute(), model.forward(tokens), rtol=1e-5, atol=1e-6)


def test_the_model_goes_to_each_worker_once(client):
    model = classifier()
    model.head.readout.bias.data += 1.0         # weights (so a key) no other test has
    x, lengths = data()
    y = fastrnn.dask.predict(model, da.from_array(x, chunks=(10, T, F)), lengths)
    graph = dict(y.__dask_graph__())
    keys = [k for k in graph if str(k).startswith("SequenceModel-")]
    assert len(keys) == 1                              # one key, not one per chunk
    key = keys[0]
    np.testing.assert_array_equal(y.compute(), model.predict(x, lengths))

    def arrivals(dask_worker):
        """How often the model's key came into this worker's memory (run or fetched)."""
        return sum(1 for e in dask_worker.state.log
                   if e[0] == key and e[1:3] in (("executing", "memory"), ("flight", "memory")))

    counts = client.run(arrivals)
    assert sorted(counts.values()) == [1, 1], counts   # 16 chunks, one copy per worker


def test_a_worker_runs_its_kernels_on_the_thread_dask_gives_it(client):
    settings = client.run(fastrnn.process_settings)
    for s in settings.values():
        # the nanny starts workers with OMP_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_
        assert s["kernel_threads"] == {"at_import": 1, "source": "OMP_NUM_THREADS",
                                       "now": 1}
        assert s["malloc"]["tuned"] is False
    assert set(client.run(fastrnn.get_num_threads).values()) == {1}


def test_bad_input():
    model = classifier()
    x, lengths = data()
    dx = da.from_array(x, chunks=(40, T, F))
    with pytest.raises(TypeError, match="x must be a dask.array"):
        fastrnn.dask.predict(model, x)
    with pytest.raises(ValueError, match="method must be one of"):
        fastrnn.dask.predict(model, dx, method="transform")
    with pytest.raises(TypeError, match="model has no method 'predict_proba'"):
        fastrnn.dask.predict(object(), dx, method="predict_proba")
    with pytest.raises(ValueError, match=r"x must have shape \(N, T, F\)"):
        fastrnn.dask.predict(model, dx[0, 0])
    with pytest.raises(ValueError, match=r"lengths must have shape \(N,\) = \(160,\)"):
        fastrnn.dask.predict(model, dx, lengths[:-1])
    with pytest.raises(ValueError, match=r"lengths must have shape"):
        fastrnn.dask.predict(model, dx, da.from_array(lengths[:-1], chunks=40))
    with pytest.raises(TypeError, match="lengths must hold integers"):
        fastrnn.dask.predict(model, dx, lengths.astype(float))
    unknown = dx[da.from_array(lengths, chunks=40) > 3]           # chunk sizes unknown
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fastrnn.dask.predict(model, unknown)


def test_importing_fastrnn_does_not_import_dask():
    code = ("import sys, fastrnn; "
            "print(*(name in sys.modules for name in ('dask', 'optuna', 'mpi4py')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "False"]
