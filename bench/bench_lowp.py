"""int8 inference of fastrnn (``fastrnn.quantize``): the int8 product's rate on each
instruction-set path, and quantized layers against float32 on the benchmark's shapes.

    python bench/bench_lowp.py                 # both parts, about 15 s on 2 cores
    python bench/bench_lowp.py --products      # the product only
    python bench/bench_lowp.py --layers --levels amx,avx512_vnni

Products: ``(m, n, K)`` as the layers run them (the input projection of all T*B rows,
one step's rows by W_hh), GOP/s = 2*m*n*K / time, on one thread, the activations already
quantized.  Layers: one inference call (best of a few), fastrnn float32 and int8 on the
same weights, with the largest and mean absolute difference of the outputs.  Times are the
minimum of repeated calls; on a shared machine they are noisy (the benchmark harness,
``bench/bench_layers.py``, measures the float contenders with noise checks).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastrnn
from fastrnn import _lowp, _runtime

#: (name, m, n, K): the products of W4i (LSTM T50 B128 I512 H512) and W7 (GRU T50 B256
#: I64 H128), and one row of W1 (LSTM B1 I32 H64)
PRODUCTS = [("W4i input", 6400, 2048, 512), ("W4i step", 128, 2048, 512),
            ("W7 input", 12800, 384, 64), ("W7 step", 256, 384, 128),
            ("W1 step", 1, 256, 64)]

#: (id, kind, T, B, I, H): the benchmark's inference workloads of that name
LAYERS = [("W1", "LSTM", 100, 1, 32, 64), ("W4i", "LSTM", 50, 128, 512, 512),
          ("W7", "GRU", 50, 256, 64, 128)]


def best_ms(fn, budget_s: float = 0.5, min_repeats: int = 3) -> float:
    fn()
    best, spent, n = float("inf"), 0.0, 0
    while n < min_repeats or spent < budget_s:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best * 1e3


def products(levels: list[str]) -> None:
    rng = np.random.default_rng(0)
    print("| product | m | n | K | " + " | ".join(f"{lv} GOP/s" for lv in levels) + " |")
    print("|---|---|---|---|" + "---|" * len(levels))
    with fastrnn.threads(1):
        for name, m, n, K in PRODUCTS:
            packed, colsum = _lowp.pack(rng.integers(-127, 128, (n, K)).astype(np.int8))
            Q, s = _lowp.quantize_rows(rng.standard_normal((m, K)).astype(np.float32))
            sw = rng.uniform(0.001, 0.01, n).astype(np.float32)
            out = np.zeros((m, n), np.float32)
            cells = []
            for level in levels:
                if level == "baseline" and m * n * K > 1e8:
                    cells.append("-")                # the portable C: seconds
                    continue
                _runtime.set_isa(level)
                def run(Q=Q, s=s, packed=packed, colsum=colsum, sw=sw, out=out):
                    _lowp.product(Q, s, packed, colsum, sw, out=out)

                ms = best_ms(run, budget_s=0.2 if level != "baseline" else 0.05,
                             min_repeats=1)
                cells.append(f"{2 * m * n * K / ms / 1e6:.0f}")
            _runtime.set_isa("amx")
            print(f"| {name} | {m} | {n} | {K} | " + " | ".join(cells) + " |")


def layers(levels: list[str]) -> None:
    rng = np.random.default_rng(0)
    print(f"\nthreads: {fastrnn.get_num_threads()}\n")
    print("| id | shape | float32 ms | " + " | ".join(f"int8 {lv} ms" for lv in levels)
          + " | speed-up | max abs diff | mean abs diff |")
    print("|---|---|---|" + "---|" * len(levels) + "---|---|---|")
    for wid, kind, T, B, I, H in LAYERS:
        layer = getattr(fastrnn, kind)(I, H, seed=0)
        q = fastrnn.quantize(layer)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        f32 = best_ms(lambda: layer(x))                 # noqa: B023 (called here)
        times = []
        for level in levels:
            _runtime.set_isa(level)
            times.append(best_ms(lambda: q(x)))         # noqa: B023
        _runtime.set_isa("amx")
        diff = np.abs(q(x)[0] - layer(x)[0])
        print(f"| {wid} | {kind} T{T} B{B} I{I} H{H} | {f32:.3f} | "
              + " | ".join(f"{t:.3f}" for t in times)
              + f" | {f32 / min(times):.2f}x | {diff.max():.4f} | {diff.mean():.5f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--products", action="store_true", help="the product only")
    p.add_argument("--layers", action="store_true", help="the layers only")
    p.add_argument("--levels", help="comma-separated instruction-set levels (default: "
                   "every one this CPU has with its own product path)")
    args = p.parse_args()
    here = _runtime.ISA_LEVELS.index(_lowp.detected_isa())
    levels = ([lv for lv in ("amx", "avx512_vnni", "baseline")
               if _runtime.ISA_LEVELS.index(lv) <= here]
              if args.levels is None else args.levels.split(","))
    for level in levels:
        if level not in _runtime.ISA_LEVELS:
            raise SystemExit(f"unknown level {level!r}; one of {_runtime.ISA_LEVELS}")
    print(f"fastrnn {fastrnn.__version__}, int8 at {_lowp.detected_isa()} (detected)\n")
    if not args.layers:
        products(levels)
    if not args.products:
        layers([lv for lv in levels if lv != "baseline"] or levels)


if __name__ == "__main__":
    main()
