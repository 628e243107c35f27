"""The installed fastrnn on a CPU without AVX: the same numbers as on this machine's CPU.

A wheel must run on any x86-64 CPU: its kernels carry AVX-512, AVX2 and baseline code
(GCC's target_clones) and pick one when they load, and no flag of the build may assume more.
This runs the forward and backward pass of each recurrent kind (two layers, both
directions, variable lengths, float32 and float64), the bf16 mixed-precision pass
(``fastrnn.autocast``) and the int8 quantized forward pass (``fastrnn.quantize``) twice:
natively, and under QEMU's user-mode emulation of a Nehalem CPU (x86-64-v2: SSE4.2, no
AVX), then checks that the emulated run had no AVX and took the baseline paths (the
instruction-set level of the int8 and bf16 products too), and that both runs agree: to
rounding in float, to a few quantization steps in bf16 and int8 (where a value's rounding
to 8 bits may fall the other way after a last-bit difference in the gate math).

    python scripts/check_baseline_cpu.py      # with the interpreter that has fastrnn

Needs ``qemu-x86_64`` (Debian's qemu-user) on the path, or given with ``--qemu``.  Run it
outside the source tree to check an installed wheel.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CPU = "Nehalem"
KINDS = ("RNN", "LSTM", "GRU", "FastGRNN")
# float64 agrees to rounding; float32 runs other polynomials and summation orders; bf16 and
# int8 run other products (AMX against portable code) whose inputs are rounded to 8 bits
RTOL = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 3e-2, "int8": 3e-2}
LOW_KINDS = ("RNN", "LSTM", "GRU")


def _run(out: str) -> None:
    """Compute every case and write the results (and what the CPU had) to ``out``."""
    import fastrnn
    from numpy._core._multiarray_umath import __cpu_features__

    rng = np.random.default_rng(0)
    results = {}
    for kind in KINDS:
        for dtype in ("float32", "float64"):
            layer = getattr(fastrnn, kind)(
                5, 32, num_layers=2, bidirectional=True, dtype=dtype, seed=1
            )
            x = rng.standard_normal((7, 4, 5)).astype(dtype)
            y, _, backward = layer.forward_train(x, lengths=np.array([7, 3, 5, 1]))
            dx, _ = backward(rng.standard_normal(y.shape).astype(dtype))
            grads = [p.grad.ravel() for p in layer.parameters()]
            results[f"{kind}-{dtype}"] = np.concatenate([y.ravel(), dx.ravel(), *grads])
    lengths = np.array([7, 3, 5, 1])
    for kind in LOW_KINDS:
        layer = getattr(fastrnn, kind)(5, 32, num_layers=2, bidirectional=True, seed=2)
        x = rng.standard_normal((7, 4, 5)).astype(np.float32)
        with fastrnn.autocast("bfloat16"):
            y, _, backward = layer.forward_train(x, lengths=lengths)
        dx, _ = backward(rng.standard_normal(y.shape).astype(np.float32))
        grads = [p.grad.ravel() for p in layer.parameters()]
        results[f"{kind}-bfloat16"] = np.concatenate([y.ravel(), dx.ravel(), *grads])
        yq, _ = fastrnn.quantize(layer)(x, lengths=lengths)
        results[f"{kind}-int8"] = yq.ravel()
    results["isa"] = np.array(fastrnn._runtime.get_isa())
    results["avx"] = np.array(__cpu_features__["AVX"])
    results["panel_products"] = np.array(fastrnn.blas_info()["panel_products"])
    results["module"] = np.array(fastrnn.__file__)
    np.savez(out, **results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qemu", default=shutil.which("qemu-x86_64"), help="the emulator")
    parser.add_argument("--child", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run(args.child)
        return 0
    qemu = args.qemu
    if qemu is None:
        print("check_baseline_cpu.py: qemu-x86_64 is not on the path", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        native, emulated = Path(tmp, "native.npz"), Path(tmp, "emulated.npz")
        script = str(Path(__file__).resolve())
        subprocess.run([sys.executable, script, "--child", str(native)], check=True)
        subprocess.run(
            [qemu, "-cpu", CPU, sys.executable, script, "--child", str(emulated)], check=True
        )
        a, b = np.load(native), np.load(emulated)
        if bool(b["avx"]) or bool(b["panel_products"]) or str(b["isa"]) != "baseline":
            print(
                f"check_baseline_cpu.py: the emulated {CPU} had AVX (instruction-set "
                f"level {b['isa']})",
                file=sys.stderr,
            )
            return 1
        worst = {}
        for case in a.files:
            if "-" not in case:
                continue
            scale = max(float(np.max(np.abs(a[case]))), 1.0)
            worst[case] = float(np.max(np.abs(a[case] - b[case]))) / scale
        print(
            f"{a['module']}: native (AVX {bool(a['avx'])}, {a['isa']}) and {CPU} (no AVX, "
            f"{b['isa']}) runs"
        )
        failed = False
        for case, error in worst.items():
            ok = error <= RTOL[case.split("-")[1]]
            failed |= not ok
            print(f"  {case:16s} largest difference {error:.1e}{'' if ok else '  TOO LARGE'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
