"""Python threads sharing fastrnn objects.

What is shared and what is not (README, "Robustness"):

* a model's or layer's weights are read-only during inference, so any number of threads may
  call ``layer(x)``, ``model.predict`` / ``forward`` / ``evaluate`` on one object at once:
  every call allocates its own workspace and the kernels run without the GIL;
* a :class:`~fastrnn.Stepper` holds the streaming state: one per thread (many may stream
  from one model);
* training writes the weights, their ``.grad`` and the optimizer's state: one thread
  trains a given model, and nobody infers on that model meanwhile; other threads may infer
  on (or train) other models;
* ``fastrnn.set_num_threads`` is process-wide; ``with fastrnn.threads(k):`` limits the
  calling thread only (tests/test_thread_budget.py).
"""

import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import optim

N_THREADS = 4
REPEATS = 30


def run_threads(target, n=N_THREADS):
    """Start ``n`` threads running ``target(i)`` at the same moment; re-raise the first
    error of any of them."""
    barrier = threading.Barrier(n)
    errors = []

    def work(i):
        try:
            barrier.wait()
            target(i)
        except BaseException as err:      # reported in the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_threads_sharing_a_model_equal_serial_inference(cell):
    """Each thread predicts its own inputs (different batch sizes and lengths, some large
    enough to split across OpenMP threads inside the kernel) with one shared model."""
    model = fastrnn.SequenceModel.build(cell, input_size=5, hidden_size=24, output_size=3,
                                        num_layers=2, bidirectional=True, head="many_to_one",
                                        seed=0)
    rng = np.random.default_rng(1)
    inputs = []
    for i in range(N_THREADS):
        B, T = (3, 7) if i % 2 else (64, 20)
        inputs.append((rng.standard_normal((B, T, 5)).astype(np.float32),
                       rng.integers(1, T + 1, B)))
    expected = [model.forward(x, lengths) for x, lengths in inputs]
    results = [[] for _ in range(N_THREADS)]

    def work(i):
        for _ in range(REPEATS):
            results[i].append(model.forward(*inputs[i]))

    run_threads(work)
    for exp, got in zip(expected, results):
        assert len(got) == REPEATS
        for out in got:
            np.testing.assert_array_equal(out, exp)


def test_threads_share_a_layer_and_a_cell():
    layer = fastrnn.GRU(6, 16, num_layers=2, batch_first=True, dtype=np.float64, seed=0)
    cell = fastrnn.LSTMCell(6, 16, dtype=np.float64, seed=0)
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((8 * (i + 1), 12, 6)) for i in range(N_THREADS)]
    expected = [(layer(x), [cell(x[:, t]) for t in range(3)]) for x in xs]
    results = [[] for _ in range(N_THREADS)]

    def work(i):
        for _ in range(REPEATS):
            results[i].append((layer(xs[i]), [cell(xs[i][:, t]) for t in range(3)]))

    run_threads(work)
    for (y_e, cells_e), got in zip(expected, results):
        for (y, h), cells in got:
            np.testing.assert_array_equal(y, y_e[0])
            np.testing.assert_array_equal(h, y_e[1])
            for (h1, c1), (h2, c2) in zip(cells, cells_e):
                np.testing.assert_array_equal(h1, h2)
                np.testing.assert_array_equal(c1, c2)


def test_one_stepper_per_thread_on_a_shared_model():
    model = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=16, output_size=4,
                                        num_layers=2, seed=0)
    rng = np.random.default_rng(3)
    streams = [rng.standard_normal((200, 2, 3)).astype(np.float32) for _ in range(N_THREADS)]
    expected = [model.forward(np.swapaxes(s, 0, 1)) for s in streams]
    results = [None] * N_THREADS

    def work(i):
        stepper = model.stepper(2)
        results[i] = np.stack([stepper.step(x).copy() for x in streams[i]], axis=1)

    run_threads(work)
    for exp, got in zip(expected, results):
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-6)
    # each stepper equals the same stepper run alone, bit for bit
    for i, stream in enumerate(streams):
        alone = model.stepper(2)
        np.testing.assert_array_equal(
            np.stack([alone.step(x).copy() for x in stream], axis=1), results[i])


def test_training_one_model_while_others_infer_on_another():
    """One thread trains model A while the others run inference on model B: A ends with
    the weights of the same training run alone, B's outputs never change."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 15, 4)).astype(np.float32)
    y = rng.integers(0, 3, (64, 15))

    def trained():
        m = fastrnn.SequenceModel.build("gru", input_size=4, hidden_size=32, output_size=3,
                                        num_layers=2, dropout=0.2, seed=5)
        h = m.fit(x, y, epochs=3, batch_size=16, progress=False, seed=6,
                  optimizer=optim.Adam(m.parameters(), lr=1e-2))
        return m, h

    alone, h_alone = trained()
    infer = fastrnn.SequenceModel.build("lstm", input_size=4, hidden_size=32, output_size=3,
                                        num_layers=2, bidirectional=True, seed=7)
    expected = infer.predict_proba(x)
    out = {}
    stop = threading.Event()

    def work(i):
        if i == 0:
            try:
                out["model"], out["history"] = trained()
            finally:
                stop.set()
            return
        count = 0
        while not stop.is_set() or count < 3:
            np.testing.assert_array_equal(infer.predict_proba(x), expected)
            count += 1
        out[i] = count

    run_threads(work)
    assert out["history"].history == h_alone.history
    np.testing.assert_equal(out["model"].state_dict(), alone.state_dict())
    assert all(out[i] >= 3 for i in range(1, N_THREADS))


def test_models_trained_in_parallel_threads_equal_serial_training():
    rng = np.random.default_rng(8)
    data = [(rng.standard_normal((32, 10, 3)), rng.standard_normal((32, 10, 2)))
            for _ in range(2)]

    def train(i):
        m = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=16, output_size=2,
                                        loss="mse", dtype=np.float64, seed=i)
        m.fit(*data[i], epochs=2, batch_size=8, progress=False, seed=i,
              optimizer=optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
        return m.state_dict()

    serial = [train(i) for i in range(2)]
    parallel = [None, None]

    def work(i):
        parallel[i] = train(i)

    run_threads(work, n=2)
    for a, b in zip(serial, parallel):
        np.testing.assert_equal(a, b)
