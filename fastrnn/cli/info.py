"""``fastrnn info`` (version, build, BLAS and threads, CPU) and ``fastrnn bench`` (the
benchmark harness of a source checkout)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from typing import NoReturn

import numpy as np
import scipy

from .. import _core
from .._runtime import available_cores, blas_info
from .._version import __version__
from .common import HARNESS, UsageError, bench_harness

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the fastrnn folder


def cpu_info() -> dict:
    """The CPU: model, cores, the vector features that matter, the cell-math clone used."""
    model: str | None = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if model is None and line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif not flags and line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "neon",
              "asimd"]
    # _cellmath.h's float exp/tanh are compiled for avx512f, avx2 and a baseline; the
    # loader picks the first the CPU supports
    clone = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "baseline"
    return {"model": model or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "usable_cores": available_cores(),
            "features": [f for f in wanted if f in flags], "cell_math": clone}


def _compiler(path: str) -> str | None:
    """The compiler named in the extension's .comment section, if it can be read."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    m = re.search(rb"GCC: \([^)]*\) [0-9][0-9.]*", blob) or re.search(rb"clang version [0-9.]+",
                                                                          blob)
    return m.group(0).decode(errors="replace") if m else None


def info() -> dict:
    """What ``fastrnn info`` shows: versions, build, BLAS and threads, CPU."""
    ext = _core.__file__
    return {"fastrnn": __version__, "package": PACKAGE,
            "extension": ext, "compiler": _compiler(ext),
            "python": f"{platform.python_version()} ({platform.python_implementation()})",
            "numpy": np.__version__, "scipy": scipy.__version__,
            "platform": platform.platform(), "blas": blas_info(), "cpu": cpu_info()}


def cmd_info(args: argparse.Namespace) -> int:
    i = info()
    if args.json:
        print(json.dumps(i, indent=2))
        return 0
    b, c = i["blas"], i["cpu"]
    before = b.get("blas_threads_before")
    threads = b.get("blas_threads")
    blas_threads = "unknown (not scipy's OpenBLAS: it keeps its own threading)" \
        if threads is None else f"{threads}" + (f" (was {before}; fastrnn runs its own "
                                                "threads around it)" if before is not None
                                                and before != threads else "")
    lines = [
        f"fastrnn {i['fastrnn']}",
        f"  package      {i['package']}",
        f"  extension    {i['extension']}",
        f"  built with   Cython, OpenMP; {i['compiler'] or 'compiler unknown'}",
        f"  python       {i['python']}; numpy {i['numpy']}; scipy {i['scipy']}",
        f"  platform     {i['platform']}",
        "BLAS (scipy.linalg.cython_blas)",
        f"  library      {b.get('library') or 'not found among the loaded libraries'}",
        f"  config       {b.get('config') or 'unknown'}",
        f"  threads      {blas_threads}",
        "kernels",
        f"  threads      {b['kernel_threads']} (OpenMP; fastrnn.set_num_threads to change)",
        f"  cell math    {c['cell_math']} clone of the vectorised float exp/tanh",
        "CPU",
        f"  model        {c['model']}",
        f"  cores        {c['cores']} ({c['usable_cores']} usable by this process)",
        f"  features     {' '.join(c['features']) or 'none of ' + 'sse4_2 avx avx2 avx512f'}",
    ]
    print("\n".join(lines))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    harness = bench_harness()
    if harness is None:
        raise UsageError(f"the benchmark harness is not part of the installed package: it is "
                         f"bench/harness.py of a source checkout of fastrnn (looked for "
                         f"{HARNESS}); run `python bench/bench_layers.py` there")

    def error(message: str) -> NoReturn:
        raise UsageError(message)

    return int(harness.run(args, error, ["fastrnn"] + args.argv))
