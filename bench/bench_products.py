"""fastrnn's panel product against one-thread BLAS, on the products of the kernels.

    python bench/bench_products.py [--seconds 0.3]

Each row is one product ``C = op(A) @ B`` of float32 matrices, timed in this process on
one thread: fastrnn's panel product (``_blas.panel_gemm`` over B packed once, as the time
loops use it, 64-byte aligned: the packing is not timed) against ``_blas.blas_gemm``
(scipy's BLAS, which packs B on every call).  Per-step rows are the recurrent products of
a time loop for one thread's part of the batch (forward ``h @ W_hh.T``, backward
``dG @ W_hh``); the others are products before and after the loop.  GFLOP/s are 2*m*n*k
over the median time.  A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fastrnn import _blas, _engine  # noqa: E402

PRODUCTS = [
    # (what, m, k, n, A given transposed)
    ("per step, forward, H=128, 16 rows", 16, 128, 512, False),
    ("per step, forward, H=512, 16 rows", 16, 512, 2048, False),
    ("per step, forward, H=512, 64 rows", 64, 512, 2048, False),
    ("per step, backward, H=512, 64 rows", 64, 2048, 512, False),
    ("per step, forward, H=1024, 16 rows", 16, 1024, 4096, False),
    ("per step, backward, H=1024, 16 rows", 16, 4096, 1024, False),
    ("input projection, T*B=3200, I=16, RNN H=64", 3200, 16, 64, False),
    ("input projection, T*B=1600, I=32, LSTM H=128", 1600, 32, 512, False),
    ("input projection, T*B=6400, I=512, LSTM H=512", 6400, 512, 2048, False),
    ("dX = dG @ W_ih, LSTM H=512, I=512, T*B=6400", 6400, 2048, 512, False),
    ("dW_hh = dG.T @ Hp, RNN H=64, T*B=3200", 64, 3200, 64, True),
    ("dW_hh = dG.T @ Hp, LSTM H=128, T*B=1600", 512, 1600, 128, True),
    ("dW_ih = dG.T @ X, LSTM H=128, I=32, T*B=1600", 512, 1600, 32, True),
    ("dW_hh = dG.T @ Hp, GRU H=256, T*B=6400", 768, 6400, 256, True),
    ("dW_hh = dG.T @ Hp, LSTM H=512, T*B=6400, one thread's half", 1024, 6400, 512, True),
    ("dW_hh = dG.T @ Hp, LSTM H=1024, T*B=3200, one thread's half", 2048, 3200, 1024, True),
    ("dW_hh = dG.T @ Hp, LSTM H=1024, T*B=3200", 4096, 3200, 1024, True),
]


def median_time(fn, seconds: float) -> float:
    fn()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="time per product and contender (default 0.3)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    threads = _blas.get_num_threads()
    _blas.set_num_threads(1)
    print(f"# {platform.machine()}, Python {platform.python_version()}, numpy "
          f"{np.__version__}; one thread; AVX-512 panel kernel: "
          f"{_blas.panel_kernels_fast()}")
    print("| product | m | k | n | panel GFLOP/s | BLAS GFLOP/s | BLAS time / panel time |")
    print("|---|---|---|---|---|---|---|")
    try:
        for what, m, k, n, trans_a in PRODUCTS:
            A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
            B = rng.standard_normal((k, n)).astype(np.float32)
            # the kernels' packed copies and gates are 64-byte aligned (fastrnn._engine)
            packed = _engine.aligned_empty(B.shape, np.float32)
            _blas.panel_pack(B, packed, False)
            C = _engine.aligned_empty((m, n), np.float32)
            t_panel = median_time(partial(_blas.panel_gemm, A, packed, C, False, trans_a),
                                  args.seconds)
            t_blas = median_time(partial(_blas.blas_gemm, A, B, C, trans_a=trans_a),
                                 args.seconds)
            gflop = 2.0 * m * n * k / 1e9
            print(f"| {what} | {m} | {k} | {n} | {gflop / t_panel:.0f} | "
                  f"{gflop / t_blas:.0f} | {t_blas / t_panel:.2f} |", flush=True)
    finally:
        _blas.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
