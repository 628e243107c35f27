"""Draw docs/_static/benchmark.png from a benchmark run (bench/results/latest.json).

Usage: ``python docs/plot_benchmark.py [results.json]``; needs matplotlib.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODES = {"infer": "infer", "train": "train"}


def main(path: Path) -> None:
    run = json.loads(path.read_text())
    times: dict[tuple[str, str], dict[str, float]] = {}
    for r in run["results"]:
        for mode, m in r.get("modes", {}).items():
            times.setdefault((r["workload"], mode), {})[r["contender"]] = m["median_ms"]
    keys = sorted(k for k in times if "fastrnn" in times[k])
    contenders = [
        c
        for c in ("reference", "torch", "torch-1t", "onnxruntime")
        if any(c in times[k] for k in keys)
    ]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(len(contenders), 1)
    for i, c in enumerate(contenders):
        ratios = [times[k].get(c, float("nan")) / times[k]["fastrnn"] for k in keys]
        ax.bar([j + i * width for j in range(len(keys))], ratios, width, label=c)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([j + width * (len(contenders) - 1) / 2 for j in range(len(keys))])
    ax.set_xticklabels([f"{w}\n{MODES.get(m, m)}" for w, m in keys], fontsize=8)
    ax.set_ylabel("time / fastrnn time (above 1: fastrnn faster)")
    ax.set_yscale("log")
    ax.set_title("fastrnn against its NumPy reference, PyTorch and ONNX Runtime (float32)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = ROOT / "docs" / "_static" / "benchmark.png"
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results" / "latest.json")
