"""Smoke test of bench/bench_layers.py: it runs, and writes the measured fields.
No assertion on the timings themselves.

The harness, bench/harness.py, belongs to the source tree, not to the installed package:
the tests that call it load it from its file (the ``harness`` fixture), without putting
bench/ on everyone's sys.path."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "bench_layers.py"
HARNESS = ROOT / "bench" / "harness.py"


@pytest.fixture(scope="module")
def harness():
    """bench/harness.py of this checkout, as a module."""
    if not HARNESS.exists():
        pytest.skip("bench/harness.py not present")
    spec = importlib.util.spec_from_file_location("bench_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.skipif(not SCRIPT.exists(), reason="bench/bench_layers.py not present")
def test_bench_quick_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "W1",
         "--contenders", "fastrnn,reference", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| W1 |" in proc.stdout                      # the markdown table was printed

    data = json.loads(out.read_text())
    assert data["settings"]["quick"] is True
    assert {"cpu", "cores", "versions"} <= set(data["machine"])
    assert [w["id"] for w in data["workloads"]] == ["W1"]
    results = {r["contender"]: r for r in data["results"]}
    assert set(results) == {"fastrnn", "reference"}
    for contender, r in results.items():
        assert "error" not in r, r
        assert r["workload"] == "W1"
        m = r["modes"]["infer"]
        for key in ("median_ms", "min_ms", "max_ms"):
            assert isinstance(m[key], float) and m[key] > 0, (contender, key, m)
        assert m["min_ms"] <= m["median_ms"] <= m["max_ms"]
        assert m["repeats"] >= 1 and m["warmup"] >= 1
        assert "others" in m and "steal" in m            # noise of the machine while timing
    # both contenders computed the same outputs (mean |y|), up to float32 rounding
    a, b = (results[c]["modes"]["infer"]["check"] for c in ("fastrnn", "reference"))
    assert a == pytest.approx(b, rel=1e-4)


@pytest.mark.skipif(not SCRIPT.exists(), reason="bench/bench_layers.py not present")
def test_bench_scaling_quick_smoke(tmp_path):
    """The scaling sweep: its workloads, one table per swept size, the JSON."""
    out = tmp_path / "scaling.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--scaling", "--quick", "--only", "SH32,ST10,SB1",
         "--contenders", "fastrnn,reference", "--json", str(out)],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for axis in ("H", "T", "B"):
        assert f", {axis} varied:" in proc.stdout
    assert "| 32 |" in proc.stdout and "| 10 |" in proc.stdout and "| 1 |" in proc.stdout
    data = json.loads(out.read_text())
    assert data["settings"]["scaling"] is True
    sizes = {w["id"]: (w["T"], w["B"], w["I"], w["H"]) for w in data["workloads"]}
    assert sizes == {"SH32": (50, 32, 64, 32), "ST10": (10, 32, 64, 128),
                     "SB1": (50, 1, 64, 128)}
    checks = {}
    for r in data["results"]:
        assert "error" not in r, r
        m = r["modes"]["train"]
        assert m["median_ms"] > 0
        checks.setdefault(r["workload"], {})[r["contender"]] = m["check"]
    for wid, c in checks.items():                 # the same input gradients
        assert c["fastrnn"] == pytest.approx(c["reference"], rel=1e-3), wid


def test_scaling_workloads_vary_one_size_each(harness):
    for w in harness.SCALING:
        axis = w.id[1]
        size = dict(T=w.T, B=w.B, I=w.I, H=w.H)
        others = {k: v for k, v in size.items() if k != axis}
        assert others == {k: v for k, v in harness.SCALING_BASE.items() if k != axis}
        assert size[axis] == int(w.id[2:]) and size[axis] in harness.SCALING_AXES[axis]
    assert len({w.id for w in harness.SCALING}) == len(harness.SCALING)
    assert not set(harness.WORKLOADS) & set(harness.SCALING)


def test_rounds_combine_to_the_median_of_medians(harness):
    def result(median, lo, hi, floor=None):
        m = dict(median_ms=median, min_ms=lo, max_ms=hi, repeats=10, warmup=3, others=0.01,
                 steal=0.0, check=1.5)
        if floor is not None:
            m["floor"] = dict(median_ms=floor, min_ms=floor, max_ms=floor, repeats=5,
                              warmup=1, others=0.0, steal=0.0)
        return dict(contender="fastrnn", workload="W1", info={}, modes={"infer": m})

    rounds = [result(3.0, 2.5, 9.0, 1.0), result(1.0, 0.9, 1.2, 3.0), result(2.0, 1.8, 2.4, 2.0)]
    out = harness.combine_rounds(rounds)
    m = out["modes"]["infer"]
    assert out["rounds"] == 3
    assert m["median_ms"] == 2.0 and m["min_ms"] == 0.9 and m["max_ms"] == 9.0
    assert m["round_medians_ms"] == [3.0, 1.0, 2.0] and m["repeats"] == 30
    assert m["floor"]["median_ms"] == 2.0 and m["check"] == 1.5
    assert harness.combine_rounds(rounds[:1]) is rounds[0]
    failed = dict(contender="fastrnn", workload="W1", error="exit code 1: boom")
    assert harness.combine_rounds(rounds[:2] + [failed]) is failed


@pytest.mark.skipif(not SCRIPT.exists(), reason="bench/bench_layers.py not present")
def test_bench_rounds_option(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--rounds", "2", "--only", "W6",
         "--contenders", "fastrnn", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["settings"]["rounds"] == 2
    (r,) = data["results"]
    assert r["rounds"] == 2 and len(r["modes"]["infer"]["round_medians_ms"]) == 2
    bad = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "0"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "--rounds must be at least 1" in bad.stderr


PRODUCTS = ROOT / "bench" / "bench_products.py"


@pytest.mark.skipif(not PRODUCTS.exists(), reason="bench/bench_products.py not present")
def test_bench_products_smoke():
    """One table row per product, each with two positive rates and their ratio; the
    kernel threads are restored."""
    proc = subprocess.run([sys.executable, str(PRODUCTS), "--seconds", "0.01"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| product")]
    assert len(rows) >= 8
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        panel, blas, ratio = (float(c) for c in cells[-3:])
        assert panel > 0 and blas > 0 and ratio > 0, row


@pytest.mark.skipif(not HARNESS.exists(), reason="bench/harness.py not present")
def test_workers_get_the_environment_without_fastrnns_openmp_settings():
    """Importing fastrnn sets OMP_WAIT_POLICY and GOMP_SPINCOUNT for its own OpenMP
    threads unless they were set; a benchmark started from a process that imported
    fastrnn hands its workers the environment without them (PyTorch reads them too), and
    keeps what the user set."""
    code = (f"import os, sys, fastrnn; sys.path.insert(0, {str(HARNESS.parent)!r}); "
            "import harness; env = harness.worker_env(); "
            "print(sorted(fastrnn._ENV_SET), os.environ['GOMP_SPINCOUNT'], "
            "'OMP_WAIT_POLICY' in env, env.get('GOMP_SPINCOUNT'))")
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=base, check=True).stdout.split()
    assert out == ["['GOMP_SPINCOUNT',", "'OMP_WAIT_POLICY']", "10000", "False", "None"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(base, GOMP_SPINCOUNT="77"), check=True).stdout.split()
    # the user chose how threads wait: fastrnn sets neither variable
    assert out == ["[]", "77", "False", "77"]


@pytest.mark.skipif(not SCRIPT.exists(), reason="bench/bench_layers.py not present")
def test_bench_composed_row_smoke(tmp_path):
    """W11, a whole training step of a Sequential, runs for fastrnn (and PyTorch when
    installed), and both compute the same first loss from the same weights and data; the
    NumPy reference has no such model (n/a)."""
    contenders = ["fastrnn"] + (["torch-1t"] if importlib.util.find_spec("torch") else [])
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "W11", "--contenders",
         ",".join(contenders + ["reference"]), "--json", str(out)],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| W11 |" in proc.stdout and "WARNING: W11 train:" not in proc.stdout  # agree
    results = {r["contender"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == set(contenders)
    checks = [r["modes"]["train"]["check"] for r in results.values()]
    assert checks[0] > 0 and checks == pytest.approx([checks[0]] * len(checks), rel=1e-4)


@pytest.mark.skipif(not SCRIPT.exists(), reason="bench/bench_layers.py not present")
def test_bench_projection_row_smoke(tmp_path):
    """W12, a training step of an LSTM with proj_size, runs for fastrnn, the NumPy
    reference (and PyTorch when installed), and all compute the same input gradient."""
    contenders = ["fastrnn", "reference"] + (
        ["torch-1t"] if importlib.util.find_spec("torch") else [])
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "W12", "--contenders",
         ",".join(contenders), "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| W12 |" in proc.stdout and "WARNING: W12 train:" not in proc.stdout
    results = {r["contender"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == set(contenders)
    checks = [r["modes"]["train"]["check"] for r in results.values()]
    assert checks[0] > 0 and checks == pytest.approx([checks[0]] * len(checks), rel=1e-4)
