"""Long runs keep the resident memory flat.

10,000 forward+backward calls and 100,000 streaming steps (``Stepper.step``), with the
resident set size (``/proc/self/statm``) read after a warm-up and at the end.  The bound is
generous (a leak of even 100 bytes a call would exceed it).  ``FASTRNN_LONG_MEMORY=1``
multiplies the counts by ten.
"""

import gc
import os

import numpy as np
import pytest

import fastrnn

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="reads /proc/self/statm (Linux)")

SCALE = 10 if os.environ.get("FASTRNN_LONG_MEMORY") == "1" else 1
CALLS = 10_000 * SCALE
STEPS = 100_000 * SCALE
BOUND = 4 << 20          # bytes of growth allowed after the warm-up


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def growth(fn, n, warmup):
    for i in range(warmup):
        fn(i)
    before = rss()
    for i in range(n):
        fn(i)
    return rss() - before


def test_forward_backward_calls_keep_memory_flat():
    rng = np.random.default_rng(0)
    layers = [fastrnn.LSTM(8, 16, num_layers=2, bidirectional=True, seed=0),
              fastrnn.GRU(8, 16, batch_first=True, seed=0),
              fastrnn.RNN(8, 16, nonlinearity="relu", dtype=np.float64, seed=0)]
    xs = [rng.standard_normal((4, 10, 8) if layer.batch_first else (10, 4, 8))
          .astype(layer.dtype) for layer in layers]
    lengths = np.array([10, 3, 7, 1])

    def call(i):
        k = i % len(layers)
        layer = layers[k]
        y, _, backward = layer.forward_train(xs[k], lengths=lengths if i % 2 else None)
        backward(np.ones_like(y))
        if i % 100 == 0:
            layer.zero_grad()

    grown = growth(call, CALLS, warmup=1000)
    print(f"{CALLS} forward+backward calls: RSS grew by {grown / 1024:.0f} kB")
    assert grown < BOUND


def test_training_steps_keep_memory_flat():
    """Whole training steps (embedding, layers, head, loss, clipping, optimizer)."""
    rng = np.random.default_rng(1)
    model = fastrnn.SequenceModel.build("gru", vocab_size=20, embedding_dim=8, hidden_size=16,
                                        output_size=20, seed=0)
    x, y = rng.integers(0, 20, (8, 12)), rng.integers(0, 20, (8, 12))
    opt = fastrnn.optim.Adam(model.parameters(), lr=1e-3)
    calls = CALLS // 10

    def call(i):
        model.fit(x, y, epochs=1, batch_size=8, progress=False, optimizer=opt, clip_norm=1.0)

    grown = growth(call, calls, warmup=100)
    print(f"{calls} training steps: RSS grew by {grown / 1024:.0f} kB")
    assert grown < BOUND


def test_streaming_steps_keep_memory_flat():
    model = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=16, output_size=2,
                                        num_layers=2, seed=0)
    stepper = model.stepper(4)
    xt = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    tokens = fastrnn.SequenceModel.build("gru", vocab_size=10, hidden_size=8, output_size=10,
                                         seed=0).stepper(2)
    tok = np.array([1, 2])

    def step(i):
        stepper.step(xt)
        if i % 10 == 0:
            tokens.step(tok)
        if i % 1000 == 0:
            stepper.reset([i % 4])

    grown = growth(step, STEPS, warmup=5000)
    print(f"{STEPS} streaming steps: RSS grew by {grown / 1024:.0f} kB")
    assert grown < BOUND
    assert np.all(np.isfinite(stepper.state[0]))


def _malloc_tuned_in_subprocess(env_value):
    import subprocess
    import sys

    # a host that tuned malloc itself is left alone; this one has not (a process-based
    # Dask cluster started by an earlier test sets MALLOC_TRIM_THRESHOLD_ in os.environ)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.pop("FASTRNN_MALLOC_TUNING", None)
    if env_value is not None:
        env["FASTRNN_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c",
                          "import fastrnn; print(fastrnn.blas_info()['malloc_tuned'])"],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    return out.stdout.strip()


def test_malloc_tuning_is_reported_and_can_be_turned_off():
    """On glibc, importing fastrnn raises malloc's thresholds (fastrnn._malloc);
    FASTRNN_MALLOC_TUNING=0 leaves them alone.  blas_info says which."""
    import ctypes

    glibc = hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    assert _malloc_tuned_in_subprocess("0") == "False"
    assert _malloc_tuned_in_subprocess(None) == str(glibc)
    assert isinstance(fastrnn.blas_info()["malloc_tuned"], bool)


def test_large_temporaries_are_reused_between_training_steps():
    """With malloc tuned, a training step's temporaries (blocks of 0.2-0.8 MB here) are
    served again from the heap: after the first steps a step touches no fresh pages.
    (Untuned, glibc trims them off the heap after each step: some 370 minor page faults
    a step for this layer, measured.)"""
    import resource

    from fastrnn import _malloc

    if not _malloc.TUNED:
        pytest.skip("malloc is not tuned in this process")
    T, B, I, H = 50, 32, 64, 32
    layer = fastrnn.LSTM(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    dy = np.ones((T, B, H), np.float32)

    def step():
        layer.zero_grad()
        _, _, backward = layer.forward_train(x)
        backward(dy)

    for _ in range(3):
        step()
    steps = 20
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    gate_pages = (T * B * 4 * H * 4) // os.sysconf("SC_PAGE_SIZE")     # the gates alone
    assert per_step < 0.05 * gate_pages, (per_step, gate_pages)
