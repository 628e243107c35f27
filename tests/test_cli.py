"""The ``fastrnn`` command, run as a user runs it: ``python -m fastrnn ...`` in a subprocess,
with tiny sizes.  Every subcommand, and every kind of user mistake (one line on stderr,
exit status 2, no traceback)."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn import cli, plot
from fastrnn.cli import common, train
from fastrnn.data.files import read_csv
from fastrnn.data.tasks import Data
from numpy.testing import assert_array_equal

# the benchmark harness belongs to a source checkout (bench/harness.py), not to a wheel
needs_harness = pytest.mark.skipif(not os.path.isfile(common.HARNESS),
                                   reason="no bench/harness.py beside this fastrnn "
                                          "(an installed wheel)")

PACKAGE_PARENT = Path(fastrnn.__file__).resolve().parent.parent
HAVE_MATPLOTLIB = plot.available()

TINY = ["--epochs", "1", "--hidden", "8", "--no-progress"]


def run(*args, cwd, pythonpath=(), timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), str(PACKAGE_PARENT),
                                         env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "fastrnn", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def user_error(proc, *words):
    """Exit status 2, nothing but one line on stderr, naming what was wrong."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "error:" in lines[0] and "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def digits_model(work):
    path = work / "digits.npz"
    out = ok(run("train", "digits", *TINY, "--out", path, "--plot", work / "digits.png",
                 cwd=work))
    assert out.strip().splitlines()[-1].startswith("done: digits")
    assert "test loss (cross-entropy)" in out and "accuracy" in out
    assert path.exists()
    return path


@pytest.fixture(scope="module")
def text_model(work):
    path = work / "text.npz"
    out = ok(run("train", "text", *TINY, "--max-chars", "4000", "--seq-len", "16",
                 "--out", path, cwd=work))
    assert "done: text" in out and "OneToMany" in out
    return path


# -- the commands ---------------------------------------------------------------------------

def test_help_version_and_no_command(work):
    assert ok(run("--version", cwd=work)).strip() == f"fastrnn {fastrnn.__version__}"
    out = ok(run("--help", cwd=work))
    for command in ("demo", "train", "evaluate", "predict", "sample", "bench", "info"):
        assert command in out
    assert "--data" in ok(run("train", "--help", cwd=work))


def test_no_command_is_a_usage_error(work):
    proc = run(cwd=work)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr.startswith("usage: fastrnn") and "Traceback" not in proc.stderr
    for command in ("demo", "train", "evaluate", "predict", "sample", "bench", "info"):
        assert command in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == \
        "fastrnn: error: a command is required (see fastrnn --help)"


def test_train_digits_saves_the_model_and_plots(digits_model, work):
    model, _, extra = fastrnn.load_checkpoint(digits_model)
    assert extra["task"] == "digits" and extra["vocab"] is None
    assert len(extra["history"]["loss"]) == 1
    if HAVE_MATPLOTLIB:
        assert (work / "digits.png").stat().st_size > 1000


def test_train_adding_and_sine(work):
    out = ok(run("train", "adding", *TINY, "--steps", "6", "--samples", "64",
                 "--cell", "gru", "--optimizer", "sgd", "--layers", "2", "--dropout", "0.1",
                 cwd=work))
    last = out.strip().splitlines()[-1]
    assert last.startswith("done: adding") and "MSE" in last and "not saved" in last
    out = ok(run("train", "sine", *TINY, "--steps", "12", "--samples", "40",
                 "--optimizer", "rmsprop", "--plot", work / "sine.png", cwd=work))
    assert "repeating the last value scores" in out
    if HAVE_MATPLOTLIB:
        assert (work / "sine.png").exists() and (work / "sine-forecast.png").exists()


def test_train_without_matplotlib_still_runs(work, tmp_path):
    fake = tmp_path / "no_mpl"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib')\n")
    out = ok(run("train", "sine", *TINY, "--steps", "8", "--samples", "20",
                 "--plot", tmp_path / "s.png", cwd=work, pythonpath=[fake]))
    notes = [line for line in out.splitlines() if "matplotlib is not installed" in line]
    assert len(notes) == 1 and "fastrnn[plot]" in notes[0]
    assert not (tmp_path / "s.png").exists()
    assert out.strip().splitlines()[-1].startswith("done: sine")


def test_train_evaluate_predict_own_npz(work, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5, 3)).astype(np.float32)
    lengths = rng.integers(1, 6, 30)
    y = (x[np.arange(30), lengths - 1, 0] > 0).astype(np.int64)
    data = tmp_path / "mine.npz"
    np.savez(data, x=x, y=y, lengths=lengths)
    model = tmp_path / "mine_model.npz"
    out = ok(run("train", "--data", data, *TINY, "--bidirectional", "--optimizer", "adagrad",
                 "--out", model, cwd=work))
    assert "done: mine.npz" in out and "bidirectional" in out
    out = ok(run("evaluate", model, cwd=work))
    assert "test split of" in out and "accuracy" in out
    metrics = json.loads(ok(run("evaluate", model, "--data", data, "--json", cwd=work)))
    assert set(metrics) == {"loss", "accuracy"}
    # predictions: one class per sequence on stdout; probabilities to a file
    lines = ok(run("predict", model, data, cwd=work)).split()
    assert len(lines) == 30 and set(lines) <= {"0", "1"}
    ok(run("predict", model, data, "--proba", "--out", tmp_path / "p.npy", cwd=work))
    p = np.load(tmp_path / "p.npy")
    assert p.shape == (30, 2) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_train_sample_evaluate_own_text(work, tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("the cat sat on the mat. " * 40)
    model = tmp_path / "poem.npz"
    out = ok(run("train", "--data", text, *TINY, "--seq-len", "12", "--out", model,
                 cwd=work))
    assert "done: poem.txt" in out
    assert "test split of" in ok(run("evaluate", model, cwd=work))
    assert "poem.txt" in ok(run("evaluate", model, "--data", text, cwd=work))
    out = ok(run("sample", model, "--prime", "the ", "--length", "30", "--seed", "1",
                 cwd=work))
    assert out.startswith("the ") and len(out) == len("the ") + 30 + 1     # + newline


def test_evaluate_on_the_test_split(digits_model, work):
    out = ok(run("evaluate", digits_model, cwd=work))
    assert "test split of digits (359 sequences)" in out
    metrics = json.loads(ok(run("evaluate", digits_model, "--json", cwd=work)))
    assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0


def test_predict_digits(digits_model, work, tmp_path):
    images, labels = fastrnn.data.load_digits()
    np.save(tmp_path / "five.npy", images[:5])
    lines = ok(run("predict", digits_model, tmp_path / "five.npy", cwd=work)).split("\n")
    assert [int(v) for v in lines if v] == list(fastrnn.load(digits_model).predict(images[:5]))
    out = ok(run("predict", digits_model, tmp_path / "five.npy", "--out", tmp_path / "g.txt",
                 cwd=work))
    assert "written to" in out and len((tmp_path / "g.txt").read_text().split()) == 5


def test_predict_encoder_decoder(work, tmp_path):
    m = fastrnn.Seq2Seq.build("gru", src_vocab=6, tgt_vocab=6, hidden_size=8, seed=0)
    fastrnn.save(m, tmp_path / "s2s.npz")
    src = np.array([[1, 2, 3], [4, 5, 1]])
    np.save(tmp_path / "src.npy", src)
    out = ok(run("predict", tmp_path / "s2s.npz", tmp_path / "src.npy", "--max-length", "4",
                 cwd=work))
    rows = [list(map(int, line.split())) for line in out.strip().splitlines()]
    assert rows == m.predict(src, max_length=4).tolist()


def test_sample(text_model, work):
    a = ok(run("sample", text_model, "--prime", "In the", "--length", "40", "--seed", "3",
               "--temperature", "0.9", "--top-k", "5", cwd=work))
    b = ok(run("sample", text_model, "--prime", "In the", "--length", "40", "--seed", "3",
               "--temperature", "0.9", "--top-k", "5", cwd=work))
    assert a == b and a.startswith("In the") and len(a) == len("In the") + 40 + 1
    assert ok(run("sample", text_model, "--length", "20", cwd=work))    # default prime


@needs_harness
def test_bench_quick(work, tmp_path):
    out = ok(run("bench", "--quick", "--only", "W1", "--contenders", "fastrnn",
                 "--json", tmp_path / "b.json", cwd=work))
    assert "| W1 |" in out
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["command"][:2] == ["fastrnn", "bench"]
    assert data["results"][0]["modes"]["infer"]["median_ms"] > 0


def test_bench_without_its_harness_says_so(monkeypatch, tmp_path, capsys):
    """An installed wheel has no bench/harness.py (it belongs to the source tree): the
    command says so in one line, whatever the options."""
    monkeypatch.setattr(common, "HARNESS", str(tmp_path / "bench" / "harness.py"))
    for argv in (["bench"], ["bench", "--quick", "--only", "W1"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "fastrnn bench: error:" in err[0], err
        assert "source checkout" in err[0] and "bench/harness.py" in err[0]
    assert cli.main(["info", "--quick"]) == 2           # other commands still refuse it
    assert "unrecognized arguments: --quick" in capsys.readouterr().err


def test_info(work):
    out = ok(run("info", cwd=work))
    for word in (f"fastrnn {fastrnn.__version__}", "BLAS", "threads", "kernels", "CPU",
                 "features"):
        assert word in out
    info = json.loads(ok(run("info", "--json", cwd=work)))
    assert info["blas"]["kernel_threads"] >= 1
    assert {"fastrnn", "extension", "blas", "cpu", "numpy", "scipy"} <= set(info)


def test_demo_quick(work, tmp_path):
    out_dir = tmp_path / "demo"
    out = ok(run("demo", "--quick", "--out-dir", out_dir, cwd=work))
    for phrase in ("[1/2]", "test accuracy", "guess", "truth", "[2/2]", "held-out text",
                   "a passage it wrote", "done in"):
        assert phrase in out, phrase
    assert (out_dir / "digits.npz").exists() and (out_dir / "genesis.npz").exists()
    assert fastrnn.load_checkpoint(out_dir / "genesis.npz")[2]["vocab"]
    if HAVE_MATPLOTLIB:
        assert (out_dir / "digits_training.png").exists()
    # budgets in epochs, not seconds: a second run prints the same losses and passage,
    # and draws the same plots (only the times and the folder differ)
    again_dir = tmp_path / "again"
    again = ok(run("demo", "--quick", "--out-dir", again_dir, cwd=work))

    def steady(text, folder):
        text = text.replace(str(folder), "DIR")
        return re.sub(r"\d+(\.\d+)? s\b", "T s", text)

    assert steady(again, again_dir) == steady(out, out_dir)
    assert "a passage it wrote" in steady(out, out_dir)
    for name in ("digits_training.png", "text_training.png") if HAVE_MATPLOTLIB else ():
        assert (again_dir / name).read_bytes() == (out_dir / name).read_bytes(), name
    # what the demo saved works with the other commands
    assert "test split of digits" in ok(run("evaluate", out_dir / "digits.npz", cwd=work))
    assert ok(run("sample", out_dir / "genesis.npz", "--prime", "And", "--length", "10",
                  cwd=work)).startswith("And")


# -- user mistakes: one line, exit 2 ----------------------------------------------------------

@pytest.fixture(scope="module")
def bad_files(work):
    (work / "garbage.npz").write_bytes(b"this is not a zip file")
    np.savez(work / "only_x.npz", x=np.zeros((4, 3, 2)))
    np.savez(work / "strings.npz", x=np.array([["a", "b"]]), y=np.array([0]))
    np.savez(work / "ragged.npz", x=np.zeros((4, 3, 2)), y=np.zeros(5, dtype=np.int64))
    np.save(work / "wrong_width.npy", np.zeros((2, 8, 3), np.float32))
    with zipfile.ZipFile(work / "not_npy_inside.npz", "w") as z:
        z.writestr("x.npy", b"not an array")
    (work / "a_folder.npy").mkdir()
    (work / "no_target.csv").write_text("sequence,a\n0,1.0\n")
    return work


@pytest.mark.parametrize("args, words", [
    (["train", "nosuchtask"], ["unknown task 'nosuchtask'", "digits"]),
    (["train"], ["give a task"]),
    (["nosuchcommand"], ["invalid choice"]),
    (["train", "--data", "missing.npz"], ["missing.npz", "no such file"]),
    (["train", "--data", "garbage.npz"], ["garbage.npz", "not an .npz file"]),
    (["train", "--data", "only_x.npz"], ["no array y"]),
    (["train", "--data", "strings.npz"], ["must hold numbers"]),
    (["train", "--data", "ragged.npz"], ["one entry per sequence"]),
    (["train", "--data", "table.xlsx"], [".npz", ".csv", ".txt"]),
    (["train", "--data", "no_target.csv"], ["no_target.csv", "no target column", "y_step"]),
    (["train", "digits", "--hidden", "0"], ["--hidden", ">= 1"]),
    (["train", "digits", "--layers", "-2"], ["--layers"]),
    (["train", "digits", "--batch-size", "x"], ["--batch-size"]),
    (["train", "digits", "--lr", "nan"], ["--lr"]),
    (["train", "digits", "--hidden", "1000000"], ["too large"]),
    (["train", "adding", "--steps", "1"], ["--steps >= 2"]),
    (["train", "text", "--seq-len", "1000000"], ["too few"]),
    (["train", "sine", "--bidirectional"], ["--bidirectional"]),
    (["train", "digits", "--out", "no/such/dir/m.npz"], ["does not exist"]),
    (["evaluate", "missing.npz"], ["no such file"]),
    (["evaluate", "garbage.npz"], ["not a fastrnn model file"]),
    (["evaluate", "only_x.npz"], ["not a fastrnn model file"]),
    (["sample", "garbage.npz"], ["not a fastrnn model file"]),
    (["sample", "text.npz", "--length", "0"], ["--length"]),
    (["sample", "text.npz", "--temperature", "-1"], ["--temperature"]),
    pytest.param(["bench", "--only", "W99"], ["unknown workload"], marks=needs_harness),
])
def test_user_mistakes(args, words, bad_files, text_model):
    user_error(run(*args, cwd=bad_files), *words)


def test_model_of_another_kind(digits_model, text_model, bad_files):
    user_error(run("sample", digits_model, cwd=bad_files), "not a character model")
    user_error(run("sample", text_model, "--prime", "{~}", cwd=bad_files), "does not know")
    user_error(run("predict", digits_model, "wrong_width.npy", cwd=bad_files),
               "does not fit the model", "input_size=8")
    user_error(run("predict", bad_files / "only_x.npz", "wrong_width.npy", cwd=bad_files),
               "not a fastrnn model file")
    user_error(run("evaluate", digits_model, "--data", "only_x.npz", cwd=bad_files),
               "no array y")
    m = fastrnn.Seq2Seq.build("gru", src_vocab=4, tgt_vocab=4, hidden_size=4, seed=0)
    fastrnn.save(m, bad_files / "s2s.npz")
    user_error(run("evaluate", "s2s.npz", cwd=bad_files), "encoder-decoder")
    user_error(run("sample", "s2s.npz", cwd=bad_files), "not a character model")


# -- data that cannot be trusted: nan and inf --------------------------------------------------

def sequences(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4, 2)).astype(np.float32)


def test_nonfinite_data_is_refused_naming_file_and_sample(digits_model, work, tmp_path):
    images = fastrnn.data.load_digits()[0][:6].copy()
    images[4, 2, 5] = np.nan
    np.save(tmp_path / "nan_images.npy", images)
    line = user_error(run("predict", digits_model, tmp_path / "nan_images.npy", cwd=work),
                      "nan_images.npy", "x holds", "nan or inf", "sample 4")
    # nothing written either
    user_error(run("predict", digits_model, tmp_path / "nan_images.npy", "--out",
                   tmp_path / "p.npy", cwd=work), "sample 4")
    assert not (tmp_path / "p.npy").exists(), line

    x = sequences()
    y = (x[:, -1, 0] > 0).astype(np.int64)
    bad_x = x.copy()
    bad_x[7, 1, 1] = np.inf
    np.savez(tmp_path / "bad_x.npz", x=bad_x, y=y)
    proc = run("train", "--data", tmp_path / "bad_x.npz", *TINY, cwd=work)
    user_error(proc, "bad_x.npz", "x holds", "sample 7")
    assert "training on" not in proc.stdout
    user_error(run("evaluate", digits_model, "--data", tmp_path / "bad_x.npz", cwd=work),
               "bad_x.npz", "sample 7")

    values = x.sum(axis=(1, 2)).astype(np.float64)
    values[12] = np.nan
    np.savez(tmp_path / "bad_y.npz", x=x, y=values)
    user_error(run("train", "--data", tmp_path / "bad_y.npz", "--regress", *TINY, cwd=work),
               "bad_y.npz", "y holds", "sample 12")


def test_padding_past_lengths_may_hold_nan(work, tmp_path):
    """As in the Python API: only the steps within each sequence's length must be finite."""
    x = sequences(24)
    lengths = np.full(24, 4)
    lengths[::2] = 2
    x[::2, 2:] = np.nan                             # padding
    y = np.where(np.arange(4)[None, :] < lengths[:, None], 1.0, np.nan)   # per step
    np.savez(tmp_path / "padded.npz", x=x, y=y, lengths=lengths)
    model = tmp_path / "padded_model.npz"
    out = ok(run("train", "--data", tmp_path / "padded.npz", "--regress", *TINY, "--out",
                 model, cwd=work))
    assert "ManyToMany, mse" in out and "stopped" not in out and "loss nan" not in out
    lines = ok(run("predict", model, tmp_path / "padded.npz", cwd=work)).splitlines()
    assert len(lines) == 24 and "nan" not in " ".join(lines)
    x[5, 3, 0] = np.nan                             # within the length of sequence 5
    np.savez(tmp_path / "padded_bad.npz", x=x, y=y, lengths=lengths)
    user_error(run("predict", model, tmp_path / "padded_bad.npz", cwd=work),
               "padded_bad.npz", "x holds 1 nan", "sample 5")
    user_error(run("train", "--data", tmp_path / "padded_bad.npz", "--regress", *TINY,
                   cwd=work), "padded_bad.npz", "sample 5")


# -- the task is asked for, not guessed from the dtype of y ------------------------------------

def test_whole_float_labels_train_a_classifier(work, tmp_path):
    x = sequences(30)
    labels = np.digitize(x[:, -1, 0], [-0.5, 0.5]).astype(np.float64)    # 0.0, 1.0, 2.0
    data = tmp_path / "float_labels.npz"
    np.savez(data, x=x, y=labels)
    model = tmp_path / "float_labels_model.npz"
    out = ok(run("train", "--data", data, *TINY, "--out", model, cwd=work))
    assert "cross_entropy" in out and "accuracy" in out and "mse" not in out
    m = fastrnn.load(model)
    assert m.loss.name == "cross_entropy" and m.head.out_features == 3
    assert "accuracy" in ok(run("evaluate", model, cwd=work))
    metrics = json.loads(ok(run("evaluate", model, "--data", data, "--json", cwd=work)))
    assert set(metrics) == {"loss", "accuracy"}
    # the same, asked for; and per-step labels with lengths, padding ignored
    assert "cross_entropy" in ok(run("train", "--data", data, "--classify", *TINY, cwd=work))
    steps = np.digitize(x[..., 0], [0.0]).astype(np.float32)
    lengths = np.full(30, 4)
    lengths[:10] = 2
    steps[:10, 2:] = 0.5                            # beyond the lengths: not labels
    np.savez(tmp_path / "float_steps.npz", x=x, y=steps, lengths=lengths)
    out = ok(run("train", "--data", tmp_path / "float_steps.npz", *TINY, cwd=work))
    assert "ManyToMany, cross_entropy" in out
    # a regression only when asked for
    out = ok(run("train", "--data", data, "--regress", *TINY, cwd=work))
    assert "mse" in out and "MSE" in out


def test_task_mistakes(work, tmp_path):
    x = sequences()
    values = x.sum(axis=(1, 2)).astype(np.float64)
    np.savez(tmp_path / "values.npz", x=x, y=values)
    user_error(run("train", "--data", tmp_path / "values.npz", *TINY, cwd=work),
               "values.npz", "--classify", "whole numbers", "sample 0", "--regress")
    user_error(run("train", "--data", tmp_path / "values.npz", "--classify", "--regress",
                   cwd=work), "not allowed with")
    user_error(run("train", "adding", "--classify", cwd=work), "--classify", "regression")
    user_error(run("train", "digits", "--regress", cwd=work), "--regress", "classification")
    (tmp_path / "t.txt").write_text("abc " * 100)
    user_error(run("train", "--data", tmp_path / "t.txt", "--regress", cwd=work),
               "--regress", "character")


# -- the model is never lost: output checked before training, save failures said -----------

@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_unwritable_out_is_refused_before_training(work, tmp_path):
    for option, path in (("--out", "/proc/model.npz"), ("--plot", "/proc/curves.png")):
        proc = run("train", "digits", *TINY, option, path, cwd=work)
        user_error(proc, option, path, "cannot write in the folder /proc")
        assert proc.stdout == "", proc.stdout           # refused before any training
    user_error(run("export", "digits.npz", "--onnx", "/proc/m.onnx", cwd=work),
               "--onnx /proc/m.onnx", "cannot write")


def test_out_that_is_a_directory_or_the_data(work, tmp_path):
    (tmp_path / "adir.npz").mkdir()
    proc = run("train", "digits", *TINY, "--out", tmp_path / "adir.npz", cwd=work)
    user_error(proc, "is a directory")
    assert proc.stdout == ""
    x = sequences()
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=(x[:, -1, 0] > 0).astype(np.int64))
    before = data.read_bytes()
    user_error(run("train", "--data", data, *TINY, "--out", data, cwd=work),
               "is the data file")
    assert data.read_bytes() == before


def test_infinite_loss_still_saves_the_model(work, tmp_path):
    """A finite data set whose squares overflow float32: an inf loss; the model is saved,
    the history and metrics hold null for it."""
    x = sequences()
    y = np.ones(20, np.float32)
    y[::3] = 1e30
    np.savez(tmp_path / "huge.npz", x=x, y=y)
    model = tmp_path / "huge_model.npz"
    out = ok(run("train", "--data", tmp_path / "huge.npz", "--regress", *TINY, "--out", model,
                 cwd=work))
    assert f"saved to {model}" in out
    extra = fastrnn.load_checkpoint(model)[2]
    assert extra["test_metrics"] == {"loss": None}
    assert json.loads(ok(run("evaluate", model, "--json", cwd=work))) == {"loss": None}


def test_history_with_inf_is_saved_as_null(tmp_path):
    model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=3, output_size=1,
                                        head="many_to_one", loss="mse", seed=0)
    history = fastrnn.History()
    history.append({"loss": 0.5, "val_loss": float("inf")})
    history.append({"loss": np.float32(0.25), "val_loss": float("nan")})
    d = Data("adding", "many_to_one", "mse", 1, (None, None, None), (None, None, None),
             input_size=2, params={"steps": 4, "samples": 8})
    train._save(str(tmp_path / "m.npz"), model, None, d, history, {"loss": np.float64("inf")})
    extra = fastrnn.load_checkpoint(tmp_path / "m.npz")[2]
    assert extra["history"] == {"loss": [0.5, 0.25], "val_loss": [None, None]}
    assert extra["test_metrics"] == {"loss": None}


def test_a_failed_save_says_the_model_is_lost(monkeypatch, tmp_path, capsys):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train, "save", full_disk)
    status = cli.main(["train", "adding", "--steps", "3", "--samples", "16", *TINY,
                       "--out", str(tmp_path / "m.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(err) == 1, err
    assert "training finished, but the model could not be saved" in err[0]
    assert "No space left on device" in err[0] and "m.npz" in err[0]


# -- no tracebacks --------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["predict", "digits.npz", "not_npy_inside.npz"], ["array 'x' cannot be read"]),
    (["train", "--data", "not_npy_inside.npz"], ["array 'x' cannot be read"]),
    (["predict", "digits.npz", "."], ["is a directory, not an input file"]),
    (["predict", "digits.npz", "wrong_width.npy", "--out", "p.xyz"], [".npy, .npz"]),
    (["predict", "digits.npz", "wrong_width.npy", "--out", "a_folder.npy"],
     ["a_folder.npy is a directory"]),
])
def test_more_user_mistakes(args, words, bad_files, digits_model):
    assert digits_model == bad_files / "digits.npz"
    user_error(run(*args, cwd=bad_files), *words)


def test_an_unforeseen_error_is_one_line(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something inside broke")

    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fastrnn info: internal error: RuntimeError: something inside broke "
                   "(run again with --traceback and report it)"]
    with pytest.raises(RuntimeError):
        cli.main(["--traceback", "info"])


def test_a_sequential_or_layer_file_is_refused_in_one_line(work):
    path = work / "sequential.npz"
    fastrnn.save(fastrnn.Sequential([fastrnn.TimePooling(), fastrnn.Linear(2, 1)]), path)
    data = work / "seq_x.npy"
    np.save(data, np.zeros((2, 3, 2), np.float32))
    user_error(run("predict", path, data, cwd=work), "Sequential", "fastrnn.load")
    user_error(run("evaluate", path, cwd=work), "Sequential")
    fastrnn.LSTM(2, 3, seed=0).save(work / "layer.npz")         # a layer on its own
    user_error(run("predict", work / "layer.npz", data, cwd=work), "fastrnn.LSTM",
               "fastrnn.load")


# -- CSV tables in and out, --quiet, the exit statuses ------------------------------------


def _table(path, rows, header="sequence,a,b,y"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def _classified_table(path, n=40, seed=0):
    """Sequences of 3 to 8 steps of two features, labelled by the sign of their mean."""
    rng = np.random.default_rng(seed)
    rows, xs, ys = [], [], []
    for i in range(n):
        x = rng.standard_normal((int(rng.integers(3, 9)), 2)) + (1 if i % 2 else -1)
        xs.append(x)
        ys.append(i % 2)
        rows += [[f"s{i}", *map(repr, step.tolist()), i % 2 if t == 0 else ""]
                 for t, step in enumerate(x)]
    return _table(path, rows), xs, np.array(ys)


def test_a_csv_table_reads_as_padded_sequences_with_lengths(tmp_path):
    path, xs, ys = _classified_table(tmp_path / "t.csv", n=5)
    arrays = read_csv(str(path))
    x, lengths = fastrnn.data.pad_sequences(xs)
    assert_array_equal(arrays["x"], x)
    assert_array_equal(arrays["lengths"], lengths)
    assert_array_equal(arrays["y"], ys)
    assert list(arrays["sequence"]) == [f"s{i}" for i in range(5)]
    steps = read_csv(str(_table(tmp_path / "s.csv", [[1.5, 0], [2.5, 1], [3.5, 1]],
                                "a,y_step")))          # no sequence column: one sequence
    assert_array_equal(steps["x"], [[[1.5], [2.5], [3.5]]])
    assert_array_equal(steps["y"], [[0, 1, 1]]) and "lengths" not in steps


@pytest.mark.parametrize("text, words", [
    ("", ["is empty", "header row"]),
    ("sequence,a,a,y\n", ["name each column once"]),
    ("sequence,a,y,y_step\n0,1,1,1\n", ["not both"]),
    ("sequence,y\n0,1\n", ["no feature columns"]),
    ("sequence,a,y\n", ["a header and no rows"]),
    ("sequence,a,y\n0,1.0\n", ["line 2", "2 fields"]),
    ("sequence,a,y\n0,abc,1\n", ["line 2", "column 'a' holds 'abc'"]),
    ("sequence,a,y\n0,1,1\n1,1,0\n0,1,1\n", ["line 4", "sequence '0' continues"]),
    ("sequence,a,y\n0,1,1\n0,1,2\n", ["sequence '0' has y [1.0, 2.0]", "y_step"]),
    ("sequence,a,y\n0,1,\n0,1,1\n", ["on its first row only"]),
    ("sequence,a,y_step\n0,1,1\n0,1,\n", ["y_step needs a value on every row"]),
])
def test_csv_mistakes_are_one_line(tmp_path, capsys, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert cli.main(["train", "--data", str(path), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv" in err[0], err
    for w in words:
        assert w in err[0], (w, err[0])


def test_train_and_predict_with_csv_tables_and_quiet(tmp_path, capsys):
    path, xs, ys = _classified_table(tmp_path / "train.csv")
    model_path = tmp_path / "m.npz"
    assert cli.main(["train", "--data", str(path), *TINY, "--out", str(model_path),
                     "--quiet"]) == 0
    assert capsys.readouterr().out == ""               # --quiet: nothing but errors
    model = fastrnn.load(model_path)
    x, lengths = fastrnn.data.pad_sequences(xs)
    out = tmp_path / "p.csv"
    for proba in (False, True):
        argv = ["predict", str(model_path), str(path), "--out", str(out), "-q"]
        assert cli.main(argv + (["--proba"] if proba else [])) == 0
        assert capsys.readouterr().out == ""
        lines = out.read_text().splitlines()
        want = model.predict_proba(x, lengths) if proba else model.predict(x, lengths)
        if proba:
            assert lines[0] == "sequence,proba_0,proba_1"
            got = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
            np.testing.assert_array_equal(got.astype(want.dtype), want)   # exact text
        else:
            assert lines[0] == "sequence,prediction"
            assert lines[1:] == [f"s{i},{c}" for i, c in enumerate(want)]
    # an .npy input has no names: the sequences are numbered; without --quiet it says so
    np.save(tmp_path / "x.npy", x[:3].astype(np.float32))
    assert cli.main(["predict", str(model_path), str(tmp_path / "x.npy"), "--out",
                     str(out)]) == 0
    assert "3 predictions" in capsys.readouterr().out
    assert out.read_text().splitlines()[1:] == [f"{i},{c}" for i, c in
                                                enumerate(model.predict(x[:3]))]


def test_per_step_predictions_as_csv_rows_of_valid_steps(tmp_path, capsys):
    rows = [[k, v, int(v > 0)] for k, n in ((0, 3), (1, 5), (2, 2))
            for v in np.linspace(-1, 1, n)]
    path = _table(tmp_path / "steps.csv", rows, "sequence,a,y_step")
    model_path = tmp_path / "m.npz"
    assert cli.main(["train", "--data", str(path), *TINY, "--out", str(model_path),
                     "-q"]) == 0
    out = tmp_path / "p.csv"
    assert cli.main(["predict", str(model_path), str(path), "--out", str(out), "-q"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "sequence,step,prediction" and len(lines) == 1 + 3 + 5 + 2
    assert [line.split(",")[:2] for line in lines[1:5]] == [["0", "0"], ["0", "1"],
                                                            ["0", "2"], ["1", "0"]]
    assert capsys.readouterr().out == ""


def test_exit_statuses_are_documented_and_given(monkeypatch, capsys):
    assert cli.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for said in ("Exit status: 0 on success", "2 for a mistake of the user",
                 "1 for anything else, a bug", "130 when interrupted"):
        assert said in text, (said, text)
    for command in ("train", "predict"):
        assert cli.main([command, "--help"]) == 0
        assert "Exit status: 0 on success" in " ".join(capsys.readouterr().out.split())

    def interrupted(args):
        raise KeyboardInterrupt

    def broken(args):
        raise RuntimeError("a bug")

    for fn, status in ((interrupted, common.EXIT_INTERRUPTED), (broken, common.EXIT_FAILURE)):
        monkeypatch.setitem(cli.COMMANDS, "info", fn)
        assert cli.main(["info"]) == status
    assert (common.EXIT_USAGE, common.EXIT_FAILURE, common.EXIT_INTERRUPTED) == (2, 1, 130)
    assert cli.main(["train", "nosuchtask"]) == 2
