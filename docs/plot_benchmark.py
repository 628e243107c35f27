"""Draw docs/_static/benchmark.png from a benchmark run (bench/results/latest.json), and
docs/_static/scaling.png from a scaling sweep (bench/results/scaling.json).

Usage: ``python docs/plot_benchmark.py [results.json ...]``; needs matplotlib.  A file
written by ``--scaling`` gives the scaling plot, any other the workload plot.
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


def plot_scaling(run: dict) -> Path:
    """Time per training step against each swept size, log-log, a line per contender."""
    sizes = {w["id"]: w for w in run["workloads"]}
    times: dict[str, dict[str, float]] = {}
    for r in run["results"]:
        m = r.get("modes", {}).get("train")
        if m is not None:
            times.setdefault(r["contender"], {})[r["workload"]] = m["median_ms"]
    axes_ids = {axis: [i for i in sizes if i.startswith(f"S{axis}")] for axis in "HTB"}
    axes_ids = {a: ids for a, ids in axes_ids.items() if ids}
    fig, axs = plt.subplots(1, len(axes_ids), figsize=(4 * len(axes_ids), 3.6), squeeze=False)
    for ax, (axis, ids) in zip(axs[0], axes_ids.items()):
        ids = sorted(ids, key=lambda i: sizes[i][axis])
        for contender, by_id in times.items():
            pts = [(sizes[i][axis], by_id[i]) for i in ids if i in by_id]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=contender)
        base = sizes[ids[0]]
        fixed = ", ".join(f"{k}={base[k]}" for k in "TBIH" if k != axis)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel("ms per training step")
        ax.set_title(f"LSTM, {fixed}", fontsize=9)
        ax.grid(True, which="major", linewidth=0.3)
    axs[0][0].legend(fontsize=8)
    fig.tight_layout()
    out = ROOT / "docs" / "_static" / "scaling.png"
    fig.savefig(out, dpi=100)
    return out


def main(path: Path) -> None:
    run = json.loads(path.read_text())
    if run.get("settings", {}).get("scaling"):
        print(plot_scaling(run))
        return
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
    for arg in sys.argv[1:] or [str(ROOT / "bench" / "results" / "latest.json")]:
        main(Path(arg))
