"""Throughput of inference from 1 and 2 Python threads sharing one model.

    python bench/bench_threads.py [--seconds 2] [--workloads small,medium,stream]

Each Python thread calls ``model.forward`` (or streams with its own ``Stepper``) on the one
shared model for a fixed time; the table gives calls per second in all and the ratio of
2 threads to 1.  The kernels release the GIL for the whole time loop, so the ratio
approaches 2 when a call's time is mostly kernel time and there are two idle cores; small
calls are bound by the Python around the kernels, which holds the GIL.  fastrnn's own
OpenMP threads are set to 1 for the runs (``fastrnn.set_num_threads(1)``) so that the
Python threads are the only parallelism.  A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fastrnn  # noqa: E402

WORKLOADS = {
    # name: (cell, batch, steps, input, hidden, description)
    "small": ("lstm", 1, 50, 16, 32, "LSTM B=1 T=50 I=16 H=32, predict"),
    "medium": ("gru", 32, 50, 32, 128, "GRU B=32 T=50 I=32 H=128, predict"),
    "large": ("lstm", 64, 100, 64, 256, "LSTM B=64 T=100 I=64 H=256, predict"),
    "stream": ("lstm", 8, 1, 16, 64, "LSTM B=8 H=64, Stepper.step (one per thread)"),
}


def make_call(name):
    cell, B, T, I, H, _ = WORKLOADS[name]
    model = fastrnn.SequenceModel.build(cell, input_size=I, hidden_size=H, output_size=10,
                                        seed=0)
    rng = np.random.default_rng(0)
    if name == "stream":
        xt = rng.standard_normal((B, I)).astype(np.float32)

        def per_thread():
            stepper = model.stepper(B)
            return lambda: stepper.step(xt)
        return per_thread
    x = rng.standard_normal((B, T, I)).astype(np.float32)

    def per_thread():
        return lambda: model.forward(x)
    return per_thread


def throughput(per_thread, threads: int, seconds: float) -> float:
    counts = [0] * threads
    start_line = threading.Barrier(threads + 1)
    stop = threading.Event()

    def work(i):
        call = per_thread()
        call()                                    # warm up outside the timed window
        start_line.wait()
        n = 0
        while not stop.is_set():
            call()
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    start_line.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="timed window per run")
    ap.add_argument("--workloads", default="small,medium,large,stream")
    args = ap.parse_args(argv)
    fastrnn.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}, "
          f"fastrnn {fastrnn.__version__}; fastrnn.set_num_threads(1)")
    print("| workload | 1 thread calls/s | 2 threads calls/s | 2 threads / 1 thread |")
    print("|---|---|---|---|")
    for name in args.workloads.split(","):
        per_thread = make_call(name)
        one = throughput(per_thread, 1, args.seconds)
        two = throughput(per_thread, 2, args.seconds)
        print(f"| {WORKLOADS[name][-1]} | {one:.0f} | {two:.0f} | {two / one:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
