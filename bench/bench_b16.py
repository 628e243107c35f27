"""fastrnn's bf16 products (fastrnn/_b16.h) against its float32 panel product, and the
layers under ``fastrnn.autocast("bfloat16")`` against float32.

    python bench/bench_b16.py [--seconds 0.3] [--layers]

Each product row is one ``C = A @ B`` on one thread, B packed once (not timed), A
converted to bf16 once (not timed): the float32 panel product (``_blas.panel_gemm``),
then the bf16 product on every path this CPU has (``_blas.b16_gemm`` with the ISA cap at
"amx", "avx512_bf16", "baseline"; the portable path only for the smaller products).
GFLOP/s are 2*m*n*k over the median time.  With ``--layers``: the inference and training
step of the W4/W4i (LSTM T=50 B=128 I=512 H=512) and W7 (GRU T=50 B=256 I=64 H=128)
layers on the kernels' threads, float32 and bf16.  A benchmark, not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fastrnn  # noqa: E402
from fastrnn import _blas, _runtime  # noqa: E402
from bench_products import median_time  # noqa: E402  (beside this script)

PRODUCTS = [
    # (what, m, k, n)
    ("per step, forward, H=128, 128 rows", 128, 128, 384),
    ("per step, forward, H=512, 64 rows", 64, 512, 2048),
    ("per step fused [x|h], I=H=512, 64 rows", 64, 1024, 2048),
    ("per step, backward, H=512, 64 rows", 64, 2048, 512),
    ("input projection, T*B=6400, I=512, LSTM H=512", 6400, 512, 2048),
    ("dW_hh = dG.T @ Hp, LSTM H=512, T*B=6400, one thread's half", 1024, 6400, 512),
]
PORTABLE_MAX_FLOP = 2e8         # the portable path is slow: the smaller products only

LAYERS = [("W4/W4i", "LSTM", 50, 128, 512, 512), ("W7", "GRU", 50, 256, 64, 128)]


def products(seconds: float) -> None:
    rng = np.random.default_rng(0)
    here = _runtime.ISA_LEVELS.index(_blas.isa_detected())
    levels = [lv for lv in ("amx", "avx512_bf16", "baseline")
              if _runtime.ISA_LEVELS.index(lv) <= here]
    print("| product | m | k | n | float32 panel GFLOP/s | "
          + " | ".join(f"bf16 {lv} GFLOP/s" for lv in levels) + " |")
    print("|---|---|---|---|---|" + "---|" * len(levels))
    for what, m, k, n in PRODUCTS:
        A = rng.standard_normal((m, k)).astype(np.float32)
        B = rng.standard_normal((k, n)).astype(np.float32)
        packed = np.empty_like(B)
        _blas.panel_pack(B, packed, False)
        C = np.empty((m, n), np.float32)
        gflop = 2.0 * m * n * k / 1e9
        row = [gflop / median_time(partial(_blas.panel_gemm, A, packed, C), seconds)]
        Ab = np.empty((m, _blas.b16_kp(k)), np.uint16)
        _blas.b16_convert(A, Ab)
        Bp = np.empty(_blas.b16_packed_size(k, n), np.uint16)
        _blas.b16_pack(B, Bp)
        for level in levels:
            if level == "baseline" and gflop * 1e9 > PORTABLE_MAX_FLOP:
                row.append(float("nan"))
                continue
            _blas.set_isa_cap(level)
            try:
                row.append(gflop / median_time(partial(_blas.b16_gemm, Ab, k, Bp, C),
                                               seconds))
            finally:
                _blas.set_isa_cap(None)
        cells = " | ".join("-" if np.isnan(v) else f"{v:.0f}" for v in row)
        print(f"| {what} | {m} | {k} | {n} | {cells} |", flush=True)


def train_step(layer, x, dy) -> None:
    layer.zero_grad()
    _, _, backward = layer.forward_train(x)
    backward(dy)


def layers(seconds: float) -> None:
    print("\n| layer | float32 infer ms | bf16 infer ms | float32 train ms | bf16 train ms |")
    print("|---|---|---|---|---|")
    for name, cell, T, B, I, H in LAYERS:
        layer = getattr(fastrnn, cell)(I, H, seed=0)
        x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
        dy = np.ones((T, B, H), np.float32)

        row = []
        for fn in (partial(layer, x), partial(train_step, layer, x, dy)):
            for precision in ("float32", "bfloat16"):
                with fastrnn.autocast(precision):
                    row.append(1e3 * median_time(fn, seconds))
        print(f"| {name} {cell} T={T} B={B} I={I} H={H} | "
              + " | ".join(f"{v:.1f}" for v in (row[0], row[1], row[2], row[3])) + " |",
              flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="time per product and contender (default 0.3)")
    parser.add_argument("--layers", action="store_true",
                        help="also the W4/W4i and W7 layers, float32 and bf16")
    args = parser.parse_args(argv)
    threads = _blas.get_num_threads()
    print(f"# {platform.machine()}, Python {platform.python_version()}, numpy "
          f"{np.__version__}; products on one thread; the CPU allows "
          f"{_blas.isa_detected()}")
    _blas.set_num_threads(1)
    try:
        products(args.seconds)
    finally:
        _blas.set_num_threads(threads)
    if args.layers:
        layers(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
