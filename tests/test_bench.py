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

import numpy as np
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


# ------------------------------------------------------------ the precision contenders

REQUIRE = {"torch": os.environ.get("FASTRNN_REQUIRE_TORCH", "") == "1",
           "onnxruntime": os.environ.get("FASTRNN_REQUIRE_ONNX", "") == "1"}


def test_w4_is_the_training_row_and_w4i_the_inference_row(harness):
    w4, w4i = harness.WORKLOAD_BY_ID["W4"], harness.WORKLOAD_BY_ID["W4i"]
    assert w4.modes == ("train",) and w4i.modes == ("infer",)
    assert (w4.cell, w4.T, w4.B, w4.I, w4.H) == (w4i.cell, w4i.T, w4i.B, w4i.I, w4i.H) \
        == ("LSTM", 50, 128, 512, 512)
    ids = [w.id for w in harness.WORKLOADS]
    assert ids.index("W4i") == ids.index("W4") + 1 and len(set(ids)) == len(ids)


def test_contender_groups(harness, monkeypatch):
    """--contenders takes names and groups; a group's contenders that cannot be imported
    are left out (and listed), a name given as itself is kept; the plain run's set is
    unchanged; an unknown name is a usage error."""
    errors = []

    def error(message):
        errors.append(message)
        raise SystemExit(2)

    monkeypatch.setattr(harness, "importable", lambda c: True)
    assert harness.CONTENDER_GROUPS["default"] == ("fastrnn", "reference", "torch",
                                                   "torch-1t", "onnxruntime")
    assert harness.resolve_contenders(None, False, error) == (
        list(harness.CONTENDER_GROUPS["default"]), [])
    assert harness.resolve_contenders(None, True, error)[0] == list(harness.SCALING_CONTENDERS)
    chosen, left = harness.resolve_contenders("torch,precision,fastrnn", False, error)
    assert chosen == ["torch"] + list(harness.PRECISION_CONTENDERS) and left == []
    assert {"torch-bf16", "torch-autocast", "torch-int8", "onnxruntime-int8", "openvino",
            "openvino-f32", "fastrnn-int8", "fastrnn-bf16"} <= set(chosen)
    assert set(harness.resolve_contenders("all", False, error)[0]) == set(harness.CONTENDERS)

    monkeypatch.setattr(harness, "importable", lambda c: not c.startswith("openvino"))
    chosen, left = harness.resolve_contenders("precision", False, error)
    assert left == ["openvino", "openvino-f32"] and "openvino" not in chosen
    chosen, left = harness.resolve_contenders("precision,openvino", False, error)
    assert chosen[-1] == "openvino" and left == ["openvino-f32"]
    with pytest.raises(SystemExit):
        harness.resolve_contenders("fastrnn,torch-fp8", False, error)
    assert "torch-fp8" in errors[-1] and "precision" in errors[-1]


def test_accuracy_is_over_the_valid_steps(harness):
    """max and mean |a - b|; with lengths, over the steps t < lengths[b] only, and the
    padded steps' largest difference apart (the table marks a contender whose outputs
    are not 0 there)."""
    rng = np.random.default_rng(1)
    b = rng.standard_normal((4, 3, 2))
    a = b.copy()
    a[0, 0, 0] += 0.5
    a[1, 2, 1] -= 0.25
    acc = harness.accuracy(a, b)
    assert acc["max_abs"] == pytest.approx(0.5) and acc["mean_abs"] == pytest.approx(0.75 / 24)
    lengths = np.array([4, 2, 1])
    a[3, 1, 0] += 7.0                                  # a padded step of row 1
    acc = harness.accuracy(a, b, lengths)
    assert acc["max_abs"] == pytest.approx(0.5)        # row 2's t=1 is padded too
    assert acc["mean_abs"] == pytest.approx(0.5 / 14)  # 7 valid (t, b) pairs of 2 values
    assert acc["padded_max_abs"] == pytest.approx(7.0)
    assert "padded steps not 0" in harness.fmt_accuracy(acc)
    assert harness.accuracy(a[:, :2], b)["error"].startswith("shape")


def _result(contender, wid, modes=None, unavailable=None):
    r = dict(contender=contender, workload=wid, info={}, modes=modes or {})
    if unavailable:
        r["unavailable"] = unavailable
    return r


def _measure(ms, precision="fp32", accuracy=None):
    m = dict(median_ms=ms, min_ms=ms, max_ms=ms, repeats=5, warmup=1, others=0.0,
             steal=0.0, check=1.0, precision=precision)
    if accuracy is not None:
        m["accuracy"] = accuracy
    return m


def test_tables_show_why_a_contender_did_not_run(harness):
    w7 = harness.WORKLOAD_BY_ID["W7"]
    contenders = ["fastrnn", "onnxruntime-int8", "torch-int8", "openvino"]
    results = [
        _result("fastrnn", "W7", {"infer": _measure(10.0)}),
        _result("onnxruntime-int8", "W7", unavailable={"infer": "no GRU rule"}),
        _result("torch-int8", "W7", {"infer": _measure(20.0, "int8", dict(
            max_abs=0.03, mean_abs=0.004))}),
    ]
    table = harness.markdown_table([w7], contenders, results)
    row = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    cell = dict(zip(header, row))
    assert cell["onnxruntime-int8 ms"] == "no GRU rule" and cell["openvino ms"] == "n/a"
    assert cell["torch-int8 ms"] == "20" and cell["torch-int8/fastrnn"] == "2.00"
    more = harness.precision_tables([w7], contenders, results)
    assert "| W7 |" in more and "0.03 / 0.004" in more and "no GRU rule" in more
    assert "| fp32 | no GRU rule | int8 | n/a |" in more       # the precision table's row
    # a run without a contender below float32 prints no accuracy table
    assert harness.precision_tables([w7], ["fastrnn", "torch"], results) == ""


def test_a_lower_precision_contenders_failure_is_reported(harness, monkeypatch):
    """A contender below float32 that raises while it sets up or on its first call is an
    outcome of the run ("fails (...)"; "refused (...)" for a ValueError, TypeError or
    NotImplementedError; the message kept); a float32 contender's exception stays an
    error."""
    def boom():
        raise RuntimeError("The number of rows in the packB should be equal to K")

    monkeypatch.setattr(harness, "setup_layer", lambda c, w: (boom, None, {}, None))
    r = harness.run_worker("torch-int8", "W1", quick=True)
    assert r["modes"] == {} and r["unavailable"] == {"infer": "fails (RuntimeError)"}
    assert "packB" in r["failures"]["infer"]
    with pytest.raises(RuntimeError):
        harness.run_worker("torch", "W1", quick=True)

    def refuse(c, w):                       # e.g. fastrnn.quantize refusing the layer
        raise ValueError("proj_size cannot be quantized")

    monkeypatch.setattr(harness, "setup_layer", refuse)
    r = harness.run_worker("fastrnn-int8", "W2", quick=True)     # inference only
    assert r["unavailable"] == {"infer": "refused (ValueError)"} and r["modes"] == {}
    assert "proj_size" in r["failures"]["infer"]
    r = harness.run_worker("fastrnn-bf16", "W2", quick=True)
    assert r["unavailable"] == {m: "refused (ValueError)" for m in ("train", "infer")}
    with pytest.raises(ValueError):
        harness.run_worker("fastrnn", "W2", quick=True)


def _expected(harness, contenders):
    """The contenders of a group that this machine can run; a library that CI requires
    (FASTRNN_REQUIRE_TORCH / _ONNX) but that is missing fails the test."""
    out = []
    for c in contenders:
        if harness.importable(c):
            out.append(c)
            continue
        for lib, required in REQUIRE.items():
            if required and lib in harness.REQUIRES.get(c, ()):
                pytest.fail(f"{lib} is required here but {c} cannot import it")
    return out


def _run_bench(tmp_path, *options):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", *options, "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    return proc.stdout, data, {(r["contender"], r["workload"]): r for r in data["results"]}


@pytest.mark.skipif(not SCRIPT.exists(), reason="bench/bench_layers.py not present")
def test_bench_precision_contenders_smoke(harness, tmp_path):
    """The precision group on an LSTM inference row: every contender that can be imported
    runs, or says why not; each records the precision it used, and its output's distance
    from fastrnn float32 (bf16 and int8 well above float32 rounding, the f32 engines at
    it)."""
    expected = _expected(harness, harness.PRECISION_CONTENDERS)
    stdout, data, results = _run_bench(tmp_path, "--only", "W1", "--contenders", "precision")
    assert set(data["contenders"]) == set(expected)
    assert set(data["left_out"]) == set(harness.PRECISION_CONTENDERS) - set(expected)
    assert "| W1 |" in stdout and "Accuracy against fastrnn float32" in stdout
    assert "Precision used" in stdout and "WARNING: W1 infer: torch-bf16" not in stdout

    def measured(c):
        r = results[(c, "W1")]
        assert "error" not in r, r
        return r["modes"]["infer"]

    for c in ("fastrnn-int8", "fastrnn-bf16"):         # before and after the API lands
        r = results[(c, "W1")]
        if r.get("unavailable"):
            assert r["unavailable"] == {"infer": harness.NOT_AVAILABLE}
        else:
            m = measured(c)
            assert m["median_ms"] > 0 and m["accuracy"]["max_abs"] < 0.2
    low = {"torch-bf16": "bf16", "torch-autocast": "bf16", "torch-int8": "int8",
           "onnxruntime-int8": "int8"}
    for c, precision in low.items():
        if c in expected:
            m = measured(c)
            assert m["precision"] == precision and m["median_ms"] > 0, (c, m)
            assert 1e-5 < m["accuracy"]["max_abs"] < 0.2, (c, m["accuracy"])
            assert m["accuracy"]["mean_abs"] <= m["accuracy"]["max_abs"]
    if "torch-int8" in expected:
        assert "torch.ao.nn.quantized.dynamic" in results[("torch-int8", "W1")]["info"][
            "precision_detail"]
    if "onnxruntime-int8" in expected:
        assert "DynamicQuantizeLSTM" in results[("onnxruntime-int8", "W1")]["info"][
            "quantized_graph_ops"]
    if "openvino" in expected:
        f32, default = measured("openvino-f32"), measured("openvino")
        info = results[("openvino", "W1")]["info"]
        assert f32["precision"] == "f32" and f32["accuracy"]["max_abs"] < 1e-5
        assert info["inference_precision"] in ("bf16", "f16", "f32") and info["threads"] >= 1
        assert default["precision"] in info["precision_detail"]
        if info["inference_precision"] != "f32":     # below f32: further from fastrnn
            assert default["accuracy"]["max_abs"] > 10 * f32["accuracy"]["max_abs"]


@pytest.mark.skipif(not SCRIPT.exists(), reason="bench/bench_layers.py not present")
def test_bench_int8_rules_found_from_the_quantized_model(harness, tmp_path):
    """Where an engine has no int8 rule for a cell the table says so, found from the
    quantized graph or module, not a float time labelled int8: ONNX Runtime quantizes the
    LSTM only, PyTorch's quantize_dynamic has no nn.RNN module; under autocast PyTorch's
    GRU multiplies in bfloat16 (its output stays float32); the training step's accuracy
    is that of the input gradient."""
    contenders = ["fastrnn", "torch-int8", "onnxruntime-int8", "torch-autocast"]
    expected = _expected(harness, contenders)
    if expected == ["fastrnn"]:
        pytest.skip("neither torch nor onnxruntime is installed")
    stdout, data, results = _run_bench(tmp_path, "--only", "W5,W7", "--contenders",
                                       ",".join(expected))
    rows = [line for line in stdout.splitlines() if line.startswith("| W")]
    if "onnxruntime-int8" in expected:
        assert results[("onnxruntime-int8", "W5")]["unavailable"] == {"infer": "no RNN rule"}
        assert results[("onnxruntime-int8", "W7")]["unavailable"] == {"infer": "no GRU rule"}
        assert "GRU" in results[("onnxruntime-int8", "W7")]["info"]["quantized_graph_ops"]
        assert any(line.startswith("| W7 |") and "no GRU rule" in line for line in rows)
    if "torch-int8" in expected:
        assert results[("torch-int8", "W5")]["unavailable"] == {"infer": "no RNN rule"}
        m = results[("torch-int8", "W7")]["modes"]["infer"]
        assert m["precision"] == "int8" and 1e-5 < m["accuracy"]["max_abs"] < 0.5
    if "torch-autocast" in expected:
        r7, r5 = results[("torch-autocast", "W7")], results[("torch-autocast", "W5")]
        assert "bf16" in r7["modes"]["infer"]["precision"]
        assert r7["modes"]["infer"]["accuracy"]["max_abs"] > 1e-5
        train = r5["modes"]["train"]
        assert train["accuracy"]["output"] == "dx" and 1e-5 < train["accuracy"]["max_abs"] < 1
