"""Every script in examples/ runs (one per head), with small sizes given by its flags."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastrnn

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PACKAGE_PARENT = Path(fastrnn.__file__).resolve().parent.parent


def run_example(name, *args, cwd):
    script = EXAMPLES / name
    if not script.exists():
        pytest.skip(f"{script} not present")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_all_heads_have_an_example():
    names = {p.name for p in EXAMPLES.glob("*.py")}
    assert {"many_to_many_sine.py", "many_to_one_digits.py", "one_to_many_text.py",
            "encoder_decoder_copy.py"} <= names


def test_many_to_many_sine(tmp_path):
    out = run_example("many_to_many_sine.py", "--epochs", "1", "--hidden", "8",
                      "--samples", "40", "--steps", "10", "--plot", tmp_path / "f.png",
                      cwd=tmp_path)
    assert "test MSE" in out and "naive forecast" in out
    # streaming one step at a time gives the whole-sequence forecasts
    diff = float(out.split("whole-sequence forecasts ")[1].split()[0])
    assert diff < 1e-5


def test_many_to_one_digits(tmp_path):
    out = run_example("many_to_one_digits.py", "--epochs", "1", "--hidden", "8",
                      "--out", tmp_path / "d.npz", cwd=tmp_path)
    assert "test accuracy" in out and "identical outputs: True" in out
    assert (tmp_path / "d.npz").exists()


def test_one_to_many_text(tmp_path):
    out = run_example("one_to_many_text.py", "--epochs", "1", "--hidden", "16",
                      "--max-chars", "3000", "--seq-len", "16", "--length", "30",
                      "--prime", "And", "--out", tmp_path / "t.npz", cwd=tmp_path)
    assert "held-out loss" in out and "reloaded" in out
    assert "reloaded\n\nAnd" in out                 # the passage starts with the prime
    assert fastrnn.load_checkpoint(tmp_path / "t.npz")[2]["vocab"]


def test_encoder_decoder_copy(tmp_path):
    out = run_example("encoder_decoder_copy.py", "--epochs", "1", "--hidden", "8",
                      "--samples", "200", "--length", "4", "--vocab", "5", cwd=tmp_path)
    assert "greedy decoding" in out and out.count("->") == 4


def test_composed_attention(tmp_path):
    out = run_example("composed_attention.py", "--epochs", "1", "--hidden", "8",
                      "--samples", "100", "--out", tmp_path / "c.npz", cwd=tmp_path)
    assert "held-out accuracy after each epoch" in out and "identical outputs: True" in out
    assert "the attention's largest weight at step" in out
    out = run_example("composed_attention.py", "--epochs", "1", "--hidden", "8",
                      "--samples", "100", "--pooling", "mean", "--out", tmp_path / "m.npz",
                      cwd=tmp_path)
    assert "mean pooling" in out and "attention's" not in out


def test_streaming_early_classification(tmp_path):
    out = run_example("streaming_early_classification.py", "--epochs", "1", "--hidden", "8",
                      cwd=tmp_path)
    assert "the stepper gives the whole-image predictions: True" in out
    assert "after row 8: accuracy" in out and "rows read of 8 on average" in out
