"""What the commands share: the user's-mistake error and exit codes, checks of output paths,
reading a model file, the lines printed about models and training, and the benchmark
harness of a source checkout."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from ..io import load_checkpoint
from ..models import Seq2Seq, SequenceModel
from ..training import Callback

EXIT_USAGE = 2
EXIT_FAILURE = 1            # not the user's mistake: a bug, or a failure we did not foresee
EXIT_INTERRUPTED = 130      # Ctrl-C, as a shell reports a SIGINT

# The benchmark harness is not part of the installed package: it is bench/harness.py of a
# source checkout, beside the fastrnn folder (an in-place build or an editable install).
HARNESS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "bench", "harness.py")
HARNESS_MODULE = "fastrnn_bench_harness"


class UsageError(Exception):
    """A mistake of the user: reported as one line, exit status 2."""


def one_line(err: BaseException) -> str:
    """An error as the one line the command prints after ``error:``."""
    if isinstance(err, MemoryError):
        return "not enough memory for the sizes asked for"
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    text = " ".join(str(err).split())
    return text or type(err).__name__


def bench_harness() -> ModuleType | None:
    """The benchmark harness (``bench/harness.py`` of the source checkout this fastrnn is
    imported from), loaded from its file; None when there is none, as in an installed
    wheel."""
    if not os.path.isfile(HARNESS):
        return None
    loaded = sys.modules.get(HARNESS_MODULE)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(HARNESS_MODULE, HARNESS)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[HARNESS_MODULE] = module      # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[HARNESS_MODULE]
        raise
    return module


def check_out(path: str, suffix: str | None = None, why: str = "",
              option: str = "--out") -> None:
    """Refuse an output path before any work is done: a wrong suffix, a missing folder, a
    directory, a folder (or an existing file) we cannot write in.  A file is made and
    removed in the folder to be sure: saves write a temporary file there and rename it."""
    where = f"{option} {path}"
    if suffix is not None and not path.lower().endswith(suffix):
        raise UsageError(f"{where}: {why}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{where}: the folder {directory} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{where} is a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastrnn-probe-", suffix=".tmp", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"{where}: cannot write in the folder {directory} "
                         f"({err.strerror or err})") from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"{where}: the file exists and is not writable")


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def load_model(path: str) -> tuple[Any, dict]:
    """``(model, extra)`` of a model file, or a one-line UsageError."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a model file")
    model, _, extra = load_checkpoint(path)
    if not isinstance(model, (SequenceModel, Seq2Seq)):
        raise UsageError(f"{path} holds a fastrnn.{type(model).__name__}: the command line "
                         f"reads the models it trains (SequenceModel, Seq2Seq); use it from "
                         f"Python (fastrnn.load)")
    return model, extra if isinstance(extra, dict) else {}


def model_kind(model: Any) -> str:
    """What a model is, in a few words: its layers, head and loss."""
    if isinstance(model, Seq2Seq):
        return "encoder-decoder"
    r = model.rnn
    shape = f"{type(r).__name__} {r.num_layers}x{r.hidden_size}" + \
        (" bidirectional" if r.bidirectional else "")
    return f"{shape}, {type(model.head).__name__}, {model.loss.name}"


def format_logs(logs: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logs.items())


def format_metrics(metrics: dict, loss_name: str) -> str:
    out = []
    for k, v in metrics.items():
        label = f"loss ({'MSE' if loss_name == 'mse' else 'cross-entropy'})" \
            if k == "loss" else k
        out.append(f"{label} {v:.4f}")
    return ", ".join(out)


class EpochPrinter(Callback):
    """Prints the logs of every ``every``-th epoch (and of the first and last)."""

    def __init__(self, epochs: int, every: int = 1):
        self.epochs, self.every = epochs, every
        self.start = time.perf_counter()

    def on_train_begin(self, model, optimizer):
        self.start = time.perf_counter()

    def on_epoch_end(self, model, epoch, logs):
        epochs = self.epochs
        if epoch and (epoch + 1) % self.every and epoch + 1 != epochs:
            return False
        print(f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}  {format_logs(logs)}  "
              f"({time.perf_counter() - self.start:.1f} s)", flush=True)
        return False


def json_safe(value: Any) -> Any:
    """``value`` for JSON with a non-finite number (an infinite or nan loss) as None
    (null), so that writing it with ``allow_nan=False`` cannot fail."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def model_extra(task: str, params: dict, vocab: str | None, history: Any,
                metrics: dict) -> dict:
    """What a model file carries besides the model: how to rebuild its data (and test
    split), its vocabulary (character models), its training curves and test metrics
    (a non-finite number in those as null)."""
    return {"created_by": "fastrnn train", "task": task, "task_params": params,
            "vocab": vocab, "history": json_safe(history.history),
            "test_metrics": json_safe(metrics)}


def printer(quiet: bool) -> Callable[..., None]:
    """``print``, or with ``--quiet`` a function that prints nothing."""
    return (lambda *args, **kwargs: None) if quiet else print


def plot_note(err: Exception) -> None:
    print(f"note: {err}", flush=True)
