"""Write the tables of a benchmark run into README.md and docs/benchmark.rst.

Usage: ``python scripts/bench_tables.py [latest.json [scaling.json [precision.json]]]
[--second-cpu precision.json]`` (defaults: the three files under bench/results).  The
tables go between the marker comments ``bench-table`` / ``scaling-table`` /
``precision-table`` ``start`` and ``end`` in both files, so that the documents show exactly
what the last run measured (the precision run, ``--contenders precision``: its timing,
accuracy and precision tables).  ``--second-cpu`` names a precision run on a CPU of another
kind (bf16 and int8 take other kernels where a CPU lacks AMX), whose tables go between the
``precision-table-second-cpu`` markers.  Run ``docs/plot_benchmark.py`` on the same files
for the plots.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402  (bench/harness.py: the benchmark's workloads and tables)

FIELDS = {f.name for f in dataclasses.fields(harness.Workload)}


def load(path: Path):
    run = json.loads(path.read_text())
    workloads = []
    for w in run["workloads"]:
        kw = {k: v for k, v in w.items() if k in FIELDS}
        for key in ("modes", "lengths"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        workloads.append(harness.Workload(**kw))
    return run, workloads, list(run["contenders"])


def header(run: dict) -> str:
    m, v = run["machine"], run["machine"]["versions"]
    libs = ", ".join(
        f"{k} {v[k]}" for k in ("numpy", "scipy", "torch", "onnxruntime", "openvino") if v.get(k)
    )
    rounds = run["settings"].get("rounds", 1)
    text = (
        f"Measured {run['created'][:10]} on {m['cpu']} ({m['cores']} cores"
        + (f"; {', '.join(m['isa'])}" if m.get("isa") else "")
        + "), "
        f"Python {m['python']}, {libs}; each cell the median of {rounds} "
        f"process{'es' if rounds > 1 else ''}"
        + (" (--quick: a few calls each, indicative only)" if run["settings"].get("quick") else "")
        + ":"
    )
    return textwrap.fill(text, width=90)


def rst_table(markdown: str) -> str:
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]
    rows = [r for r in rows if not all(set(c) <= {"-"} for c in r)]
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in rows:
        out.append(f"   * - {row[0]}")
        out += [f"     - {c}" for c in row[1:]]
    return "\n".join(out)


def replace(text: str, name: str, body: str, rst: bool) -> str:
    start, end = (
        (f".. {name}:start", f".. {name}:end")
        if rst
        else (f"<!-- {name}:start -->", f"<!-- {name}:end -->")
    )
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"markers {start!r} ... {end!r} not found")
    return pattern.sub(lambda _: f"{start}\n\n{body}\n\n{end}", text)


def rst_blocks(text: str) -> str:
    """Markdown tables (blocks of ``|`` lines) as list-tables, other paragraphs as they are."""
    return "\n\n".join(
        rst_table(block) if block.startswith("|") else block for block in text.split("\n\n")
    )


def precision_block(path: Path) -> tuple[str, str]:
    """The timing, accuracy and precision tables of a precision run, as markdown and rst."""
    run, workloads, contenders = load(path)
    tables = (
        harness.markdown_table(workloads, contenders, run["results"])
        + "\n\n"
        + harness.precision_tables(workloads, contenders, run["results"])
    )
    return header(run) + "\n\n" + tables, header(run) + "\n\n" + rst_blocks(tables)


def main(
    latest: Path, scaling: Path, precision: Path | None = None, second: Path | None = None
) -> None:
    """The workload table of ``latest``, the scaling tables of ``scaling``, the precision
    tables of ``precision`` and of ``second`` (a precision run on another kind of CPU), of
    those files that exist (each is a run of its own: without it its tables stay as they
    are, with the date and machine of the run that made them)."""
    readme = ROOT / "README.md"
    doc = ROOT / "docs" / "benchmark.rst"
    text, rst = readme.read_text(), doc.read_text()
    written = []
    if latest.exists():
        run, workloads, contenders = load(latest)
        table = harness.markdown_table(workloads, contenders, run["results"])
        text = replace(text, "bench-table", header(run) + "\n\n" + table, False)
        rst = replace(rst, "bench-table", header(run) + "\n\n" + rst_table(table), True)
        written.append(latest.name)
    if scaling.exists():
        srun, sworkloads, scontenders = load(scaling)
        stables = harness.scaling_tables(sworkloads, scontenders, srun["results"])
        text = replace(text, "scaling-table", header(srun) + "\n\n" + stables, False)
        rst = replace(rst, "scaling-table", header(srun) + "\n\n" + rst_blocks(stables), True)
        written.append(scaling.name)
    for name, path in (("precision-table", precision), ("precision-table-second-cpu", second)):
        if path is not None and path.exists():
            markdown, restructured = precision_block(path)
            text = replace(text, name, markdown, False)
            rst = replace(rst, name, restructured, True)
            written.append(path.name)
    if second is not None and not second.exists():
        raise SystemExit(f"{second} does not exist")
    if not written:
        raise SystemExit(f"none of {latest}, {scaling}, {precision} exists")
    readme.write_text(text)
    doc.write_text(rst)
    print(f"tables of {' and '.join(written)} written to {readme.name} and {doc.name}")


if __name__ == "__main__":
    argv = sys.argv[1:]
    second_cpu = None
    if "--second-cpu" in argv:
        k = argv.index("--second-cpu")
        if k + 1 >= len(argv):
            raise SystemExit("--second-cpu needs the path of a precision run")
        second_cpu = Path(argv[k + 1])
        del argv[k : k + 2]
    args = [Path(a) for a in argv]
    results = ROOT / "bench" / "results"
    main(
        args[0] if args else results / "latest.json",
        args[1] if len(args) > 1 else results / "scaling.json",
        args[2] if len(args) > 2 else results / "precision.json",
        second_cpu,
    )
