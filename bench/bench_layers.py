"""Benchmark of the recurrent layers: fastrnn vs the NumPy reference vs PyTorch CPU.

Every (contender, workload) pair runs in its own Python process, so that one library's
BLAS / OpenMP thread pool never competes for the cores with another's. The parent
process only starts the workers, collects their JSON and prints a markdown table.

    python bench/bench_layers.py                       # everything, ~2-3 minutes on 2 cores
    python bench/bench_layers.py --only W1,W2 --contenders fastrnn,torch
    python bench/bench_layers.py --quick               # few repeats: a smoke test
    python bench/bench_layers.py --worker fastrnn W2   # one worker, JSON on stdout
    python bench/bench_layers.py --scaling             # time as H, T and B grow
    python bench/bench_layers.py --contenders precision   # bf16 and int8 engines, accuracy

The code lives in ``bench/harness.py`` beside this script (also run by ``fastrnn bench``
from a source checkout); this script runs it on the checkout it lives in and writes
``bench/results/latest.json`` by default (``bench/results/scaling.json`` with
``--scaling``, ``bench/results/precision.json`` with ``--contenders precision``).

Modes (all float32, time-major x of shape (T, B, I), the same weights for every contender):

* ``infer``: one forward call, no state kept for backward.
* ``train``: zero_grad, forward keeping what backward needs, backward with a fixed random
  dy (input gradient included). The NumPy reference has no gradient buffers: its backward
  returns fresh arrays, so zero_grad does not apply to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import harness  # bench/harness.py: this script's folder is first on sys.path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
SCALING_JSON = ROOT / "bench" / "results" / "scaling.json"
PRECISION_JSON = ROOT / "bench" / "results" / "precision.json"


def default_json(args) -> Path:
    """latest.json; scaling.json for ``--scaling``; precision.json when ``--contenders``
    names the precision group."""
    if "--scaling" in args:
        return SCALING_JSON
    for k, a in enumerate(args):
        value = a.split("=", 1)[1] if a.startswith("--contenders=") else (
            args[k + 1] if a == "--contenders" and k + 1 < len(args) else None)
        if value is not None and "precision" in value.split(","):
            return PRECISION_JSON
    return DEFAULT_JSON


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    default = default_json(args)
    return harness.main(argv, default_json=str(default), prog=Path(sys.argv[0]).name)


if __name__ == "__main__":
    if (ROOT / "fastrnn" / "__init__.py").exists():
        sys.path.insert(0, str(ROOT))    # benchmark this checkout (in-place build)
    sys.exit(main())
