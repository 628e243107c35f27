"""The ``fastrnn`` command: train, evaluate and use recurrent models from the shell.

    fastrnn demo                               # a digit classifier, then a character model
    fastrnn train digits --cell gru --epochs 10 --out digits.npz --plot digits.png
    fastrnn evaluate digits.npz                # on the test split it was not trained on
    fastrnn predict digits.npz images.npy      # one class per image
    fastrnn train text --out genesis.npz && fastrnn sample genesis.npz --prime "And God"
    fastrnn bench --quick
    fastrnn info
    fastrnn export digits.npz --onnx digits.onnx      # for ONNX Runtime and other runtimes
    fastrnn import-torch weights.npz --head many_to_one --out model.npz   # a torch state_dict

A user's mistake (an unknown task, a missing or malformed file, a model file of another
kind, an impossible size, no command at all) ends with one line on stderr and exit status 2
(no command: the help on stderr); anything else that goes wrong, a bug, with one line and
exit status 1. ``--traceback`` shows the whole story instead.

JSON written by the command (the history and test metrics saved with a model,
``evaluate --json``) holds a non-finite number (an infinite or nan loss) as null.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import textwrap
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ._version import __version__
from .io import ArrayFileError, npz_names, open_regular_file, read_npy, read_npz

EXIT_USAGE = 2
EXIT_FAILURE = 1            # not the user's mistake: a bug, or a failure we did not foresee
TASKS = ("digits", "text", "adding", "sine")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SHADES = " .:-=+*#%@"
TEST_FRACTION = 0.2         # held-out share of the digits, synthetic and .npz data
TEXT_TEST_FRACTION = 0.1    # held-out tail of a text
DATA_SEED = 0               # data sets and splits do not depend on --seed: every model of a
                            # task is evaluated on the same test split


class UsageError(Exception):
    """A mistake of the user: reported as one line, exit status 2."""


# ---------------------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: message``) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def _float_in(low: float, high: float = math.inf, low_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) \
                or value > high:
            lo = "(" if low_open else "["
            raise argparse.ArgumentTypeError(
                f"must be in {lo}{low:g}, {high:g}{']' if high < math.inf else ')'}, "
                f"got {text}")
        return value
    parse.__name__ = "number"
    return parse


positive = _int_at_least(1)
positive_float = _float_in(0.0, low_open=True)
nonnegative_float = _float_in(0.0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastrnn", description="Recurrent networks (RNN, LSTM, GRU) on the "
                     "CPU: train, evaluate and use models from the command line.",
                     epilog="Start with `fastrnn demo`; `fastrnn COMMAND --help` for each "
                            "command.")
    parser.add_argument("--version", action="version", version=f"fastrnn {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, show the full traceback (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # -- demo
    p = sub.add_parser("demo", help="train a digit classifier and a character model, and "
                       "show what they do (about 30-60 s)",
                       description="The tour: trains an LSTM that reads 8x8 digit images "
                       "row by row, prints its test accuracy, saves it, draws a few test "
                       "images with its guesses and plots the training curves; then trains "
                       "a small character model on the Book of Genesis and prints a passage "
                       "it wrote.")
    p.add_argument("--out-dir", default="fastrnn-demo", metavar="DIR",
                   help="where the models and plots go (default: %(default)s)")
    p.add_argument("--epochs", type=positive, default=20,
                   help="epochs of the digit classifier (default: %(default)s)")
    p.add_argument("--text-seconds", type=positive_float, default=25.0, metavar="S",
                   help="training time of the character model (default: %(default)s)")
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--quick", action="store_true",
                   help="tiny models, one epoch and one second: a smoke test of the demo")
    p.set_defaults(func=cmd_demo)

    # -- train
    p = sub.add_parser("train", help="train a model on a bundled task or your own data",
                       description="Train a model on a bundled task -- digits (8x8 images "
                       "read row by row, many-to-one), text (a character model of Genesis, "
                       "one-to-many), adding (the adding problem, many-to-one regression), "
                       "sine (next-step forecasting, many-to-many) -- or on --data FILE: an "
                       ".npz with arrays x (N, T, I) or integer tokens (N, T), y and "
                       "optionally lengths (N,), or a .txt for a character model. The task "
                       "is what you ask for, never guessed from the numbers: --classify "
                       "(the default for an .npz, as SequenceModel.build's cross-entropy) "
                       "reads y as class labels, integers or whole-number floats (0.0, "
                       "1.0, ...), (N,) one class per sequence or (N, T) one per step; "
                       "--regress (mean squared error) reads y as values, (N,) or (N, C) "
                       "per sequence, (N, T) or (N, T, C) per step. The bundled tasks "
                       "set their own (digits and text classify, adding and sine "
                       "regress). x and y must be finite within each length. "
                       f"{TEST_FRACTION:.0%} of the sequences (the last "
                       f"{TEXT_TEST_FRACTION:.0%} of a text) are held out for testing.")
    p.add_argument("task", nargs="?", metavar="TASK",
                   help="digits, text, adding or sine (or give --data)")
    p.add_argument("--data", metavar="FILE", help="your own data: .npz or .txt")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--classify", dest="kind", action="store_const", const="classify",
                      help="y holds class labels, integers or whole-number floats; "
                           "cross-entropy (the default for --data .npz)")
    kind.add_argument("--regress", dest="kind", action="store_const", const="regress",
                      help="y holds values to fit; mean squared error")
    p.add_argument("--cell", choices=("rnn", "lstm", "gru"), default=None,
                   help="recurrent cell (default: lstm; gru for text and sine)")
    p.add_argument("--hidden", type=positive, default=None,
                   help="hidden units per layer and direction (default: 64; 128 for text, "
                        "32 for sine)")
    p.add_argument("--layers", type=positive, default=1, help="stacked recurrent layers")
    p.add_argument("--bidirectional", action="store_true",
                   help="read each sequence both ways (not for text or forecasting)")
    p.add_argument("--dropout", type=_float_in(0.0, 0.99), default=0.0,
                   help="dropout between stacked layers (needs --layers >= 2)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: the task's, tuned for Adam; 0.1 for sgd)")
    p.add_argument("--momentum", type=_float_in(0.0, 1.0), default=None,
                   help="momentum of sgd (default 0.9) and rmsprop (default 0)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.0)
    p.add_argument("--epochs", type=positive, default=None, help="passes over the training "
                   "data (default: digits 20, text 10, adding 15, sine 30, --data 10)")
    p.add_argument("--batch-size", type=positive, default=None,
                   help="sequences per step (default: 32; 64 for text)")
    p.add_argument("--clip", type=nonnegative_float, default=5.0,
                   help="clip the gradient norm to this (0: no clipping; default: "
                        "%(default)s)")
    p.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="seed of the initial weights and the shuffling")
    p.add_argument("--steps", type=positive, default=None,
                   help="sequence length of adding (default 30) and sine (default 50)")
    p.add_argument("--samples", type=positive, default=None,
                   help="sequences generated for adding (default 4000) and sine (default "
                        "800)")
    p.add_argument("--seq-len", type=positive, default=64,
                   help="characters per training window of a text (default: %(default)s)")
    p.add_argument("--max-chars", type=positive, default=None,
                   help="use only the first N characters of a text")
    p.add_argument("--out", metavar="MODEL", help="save the trained model here (.npz)")
    p.add_argument("--plot", metavar="PNG", help="draw the training curves here (needs "
                   "matplotlib); for sine also the forecasts, beside it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    # -- evaluate
    p = sub.add_parser("evaluate", help="loss and accuracy of a saved model",
                       description="Loss and metric of a saved model on the test split of "
                       "the task it was trained on, or on --data FILE (all of it).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--data", metavar="FILE", help=".npz (x, y[, lengths]) or .txt")
    p.add_argument("--batch-size", type=positive, default=256)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)

    # -- predict
    p = sub.add_parser("predict", help="a saved model's outputs for sequences in a file",
                       description="Run a saved model on the sequences in INPUT: a .npy "
                       "array x, or an .npz with x (or its only array) and optionally "
                       "lengths. Classifiers give class indices (or --proba), regressions "
                       "their values, encoder-decoders decoded tokens. Text on stdout, one "
                       "sequence per line, or --out FILE (.npy, .npz, .txt or .csv).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--out", metavar="FILE")
    p.add_argument("--proba", action="store_true", help="class probabilities")
    p.add_argument("--max-length", type=positive, default=None,
                   help="tokens to decode (encoder-decoder; default: the source length)")
    p.add_argument("--batch-size", type=positive, default=256)
    p.set_defaults(func=cmd_predict)

    # -- sample
    p = sub.add_parser("sample", help="generate text with a character model",
                       description="Generate text with a character model trained by "
                       "`fastrnn train text` (or --data FILE.txt), or saved by the demo.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--prime", default=None,
                   help="text to start from (default: a new line)")
    p.add_argument("--length", type=positive, default=400, help="characters to generate")
    p.add_argument("--temperature", type=nonnegative_float, default=0.8,
                   help="0: always the most likely character; higher: more surprising "
                        "(default: %(default)s)")
    p.add_argument("--top-k", type=positive, default=None,
                   help="draw only among the k most likely characters")
    p.add_argument("--seed", type=_int_at_least(0), default=None)
    p.set_defaults(func=cmd_sample)

    # -- bench
    from . import bench
    p = sub.add_parser("bench", help="time the layers against NumPy and PyTorch",
                       description="Time fastrnn's layers against the NumPy reference and "
                       "PyTorch CPU (if installed): inference and training steps, each "
                       "contender and workload in a process of its own; prints a markdown "
                       "table of median times and ratios.")
    bench.add_arguments(p)
    p.set_defaults(func=cmd_bench)

    # -- export
    p = sub.add_parser("export", help="export a saved model to ONNX",
                       description="Write a saved model (or a fastrnn layer saved in a "
                       "model file) as an ONNX graph with the RNN/LSTM/GRU operators, "
                       "checked by onnx.checker; needs the onnx package (pip install "
                       "'fastrnn[onnx]'). The graph takes x (batch, T, features) or "
                       "int64 tokens (batch, T), and with --lengths an int64 lengths "
                       "(batch,); it outputs the model's raw outputs (logits or values).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="where to write it")
    p.add_argument("--lengths", action="store_true",
                   help="add an input 'lengths' for variable-length sequences")
    p.add_argument("--float32", action="store_true",
                   help="compute in float32 (ONNX Runtime runs the recurrent operators in "
                        "float32 only)")
    p.set_defaults(func=cmd_export)

    # -- import-torch
    p = sub.add_parser("import-torch", help="a fastrnn model from a PyTorch state_dict",
                       description="Build a fastrnn model from a PyTorch model's state_dict "
                       "saved as .npz (numpy.savez(path, **{k: v.numpy() for k, v in "
                       "model.state_dict().items()}); no torch needed) or as .pt (needs "
                       "torch). The model must be one recurrent layer (nn.RNN, LSTM or "
                       "GRU, keys like rnn.weight_ih_l0), a Linear readout (fc.weight, "
                       "fc.bias) and optionally an Embedding before it; the architecture is "
                       "read from the names and shapes.")
    p.add_argument("state_dict", metavar="STATE_DICT")
    p.add_argument("--out", required=True, metavar="MODEL", help="the fastrnn model (.npz)")
    p.add_argument("--head", choices=("many_to_many", "many_to_one", "one_to_many"),
                   default="many_to_many",
                   help="where the readout reads: every step, or each sequence's last "
                        "state (default: %(default)s)")
    p.add_argument("--loss", choices=("cross_entropy", "mse", "bce_with_logits"),
                   default="cross_entropy", help="the loss, for further training and "
                   "evaluation (default: %(default)s)")
    p.add_argument("--nonlinearity", choices=("tanh", "relu"), default=None,
                   help="an nn.RNN's nonlinearity, which the weights do not record "
                        "(default: tanh)")
    p.set_defaults(func=cmd_import_torch)

    # -- info
    p = sub.add_parser("info", help="version, build, BLAS and threads, CPU features")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(func=cmd_info)
    return parser


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------

@dataclass
class Data:
    """A data set ready for a model: what the model must look like, and the splits."""

    task: str                     # digits | text | adding | sine | npz | txt
    head: str                     # many_to_one | many_to_many | one_to_many
    loss: str                     # cross_entropy | mse
    output_size: int
    train: tuple                  # (x, y, lengths)
    test: tuple
    input_size: int | None = None
    vocab: str | None = None      # the characters of a character model
    vocab_size: int | None = None   # token inputs
    params: dict = field(default_factory=dict)    # what rebuilds the split (saved)
    baseline: tuple | None = None   # (what, value) of a trivial predictor on the test split

    @property
    def forecasting(self) -> bool:
        """Whether each step's target is the next input (then reading backwards cheats)."""
        return self.task in ("text", "txt", "sine")


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} array of shape {a.shape}"


def _read_npz(path: str, what: str = "data", names: tuple[str, ...] | None = None) -> dict:
    """The arrays of a .npy or .npz file (only those of ``names`` that an .npz holds, when
    given; never unpickling; memory bounded by the file's size), or a one-line
    UsageError."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not {'an' if what[0] in 'aeiou' else 'a'} "
                         f"{what} file")
    npy = path.lower().endswith(".npy")
    try:
        with open_regular_file(path) as f:
            magic = f.read(6)
        if not npy and not zipfile.is_zipfile(path):
            if magic == b"\x93NUMPY":
                npy = True
            else:
                raise UsageError(f"{path} is not an .npz file (not a zip archive of .npy "
                                 f"arrays)")
        if npy:
            if magic != b"\x93NUMPY":
                raise UsageError(f"{path} is not a .npy file (no NumPy header)")
            return {"x": read_npy(path)}
        return read_npz(path, names)
    except UsageError:
        raise
    except ValueError as err:                  # ArrayFileError among them
        if "pickle" in str(err) or "Python objects" in str(err):
            raise UsageError(f"{path} holds Python objects (pickled data), which fastrnn "
                             f"does not read; save plain numeric arrays") from None
        raise UsageError(f"{path} cannot be read as {'a .npy' if npy else 'an .npz'} file: "
                         f"{err}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise UsageError(f"{path} cannot be read as {'a .npy' if npy else 'an .npz'} file: "
                         f"{err}") from None


def _read_text(path: str) -> str:
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    try:
        with open_regular_file(path) as f:
            return f.read().decode("utf-8")
    except ArrayFileError as err:
        raise UsageError(str(err)) from None
    except UnicodeDecodeError as err:
        raise UsageError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") \
            from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a text file") from None


def _nonfinite(a: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray | None:
    """Where ``a`` (sample-first) holds a nan or an inf, as a boolean array of its shape, or
    None if nowhere; with ``lengths``, steps t >= lengths[n] of axis 1 do not count
    (padding may hold anything: the layers never read it).  Integers are always finite."""
    if a.dtype.kind not in "fc" or a.size == 0:
        return None
    bad = ~np.isfinite(a)
    if lengths is not None and a.ndim >= 2:
        valid = np.arange(a.shape[1])[None, :] < lengths[:, None]
        bad &= valid.reshape(valid.shape + (1,) * (a.ndim - 2))
    return bad if bad.any() else None


def _refuse_nonfinite(a: np.ndarray, name: str, where: str,
                      lengths: np.ndarray | None = None) -> None:
    """A UsageError naming the file, the array and the first bad sample if ``a`` holds a
    nan or an inf (past ``lengths``, padding, it may).

    The command's own check, made before any training so that the message names the
    file; the same rule as fastrnn._validate.all_finite, which the model applies again."""
    bad = _nonfinite(a, lengths)
    if bad is not None:
        count = int(np.count_nonzero(bad))
        first = int(np.argwhere(bad)[0][0])
        raise UsageError(f"{where}: {name} holds {count} nan or inf value"
                         f"{'s' if count > 1 else ''}, the first in sample {first}; fastrnn "
                         f"needs finite numbers (drop or fill those samples; padding past "
                         f"lengths may hold anything)")


def _class_labels(y: np.ndarray, valid: np.ndarray, where: str) -> np.ndarray:
    """Class labels as int64: integers as they are, floats if they are whole numbers.

    ``valid`` (y's shape) marks the entries that count, those within each sequence's
    length; the others become 0."""
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    v = y[valid]
    bad = np.flatnonzero(~np.isfinite(v) | (v != np.round(v)))
    if bad.size:
        sample = int(np.nonzero(valid)[0][bad[0]])
        raise UsageError(f"{where}: --classify needs y to be class labels, whole numbers; "
                         f"sample {sample} has {v[bad[0]]:g} (give --regress to fit values)")
    if v.size and (v.min() < 0 or v.max() > 2 ** 31):
        raise UsageError(f"{where}: class labels y must lie in [0, 2**31], got values in "
                         f"[{v.min():g}, {v.max():g}]")
    out = np.zeros(y.shape, np.int64)
    out[valid] = v.astype(np.int64)
    return out


def _check_lengths(lengths, n: int, t: int, path: str):
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu" or lengths.shape != (n,):
        raise UsageError(f"{path}: lengths must be {n} integers, one per sequence, got "
                         f"{_describe(lengths)}")
    if n and (lengths.min() < 1 or lengths.max() > t):
        raise UsageError(f"{path}: lengths must lie in [1, {t}] (the number of steps), got "
                         f"values in [{lengths.min()}, {lengths.max()}]")
    return lengths.astype(np.int64)


def _arrays_xy(arrays: dict, path: str):
    """x, y, lengths of a user's .npz, checked; x as floats (N, T, I) or tokens (N, T)."""
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        held = sorted(npz_names(path)) if zipfile.is_zipfile(path) else sorted(arrays)
        raise UsageError(f"{path} has no array {' or '.join(missing)} (it holds "
                         f"{held or 'no arrays'}; expected x, y and optionally lengths)")
    x, y = arrays["x"], arrays["y"]
    for name, a in (("x", x), ("y", y)):
        if a.dtype.kind not in "fiub":
            raise UsageError(f"{path}: {name} must hold numbers, got {_describe(a)}")
    if x.ndim == 2 and x.dtype.kind == "f":
        x = x[..., None]
    if x.ndim not in (2, 3) or x.shape[0] == 0 or x.shape[1] == 0 or \
            (x.ndim == 3 and x.shape[2] == 0):
        raise UsageError(f"{path}: x must be sequences (N, T, features) or tokens (N, T), "
                         f"got {_describe(arrays['x'])}")
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise UsageError(f"{path}: y must have one entry per sequence ({x.shape[0]}), got "
                         f"{_describe(y)}")
    lengths = _check_lengths(arrays.get("lengths"), x.shape[0], x.shape[1], path)
    _refuse_nonfinite(x, "x", path, lengths)
    per_step = y.ndim >= 2 and y.shape[:2] == x.shape[:2]
    _refuse_nonfinite(y, "y", path, lengths if per_step else None)
    return x, y, lengths


def _npz_data(path: str, test_fraction: float = TEST_FRACTION,
              kind: str = "classify") -> Data:
    """A user's .npz as a classification (``kind`` "classify": y class labels, integers or
    whole-number floats) or a regression ("regress": y values)."""
    from .data import train_test_split

    x, y, lengths = _arrays_xy(_read_npz(path, names=("x", "y", "lengths")), path)
    N, T = x.shape[:2]
    tokens = x.ndim == 2
    vocab_size = None
    if tokens:
        if x.dtype.kind not in "iu" or x.min() < 0:
            raise UsageError(f"{path}: 2-D integer x must be tokens >= 0")
        vocab_size = int(x.max()) + 1
    if kind == "classify":
        if y.ndim == 1:
            head = "many_to_one"
        elif y.shape[:2] == (N, T) and y.ndim == 2:
            head = "many_to_many"
        else:
            raise UsageError(f"{path}: class labels y must be (N,) one per sequence or "
                             f"(N, T) = ({N}, {T}) one per step, got shape {y.shape} (give "
                             f"--regress to fit values)")
        valid = np.ones(y.shape, bool) if head == "many_to_one" or lengths is None else \
            np.arange(T)[None, :] < lengths[:, None]
        y = _class_labels(y, valid, path)
        labels = y[valid]
        if labels.size and labels.min() < 0:
            raise UsageError(f"{path}: class labels y must be >= 0")
        loss, out = "cross_entropy", int(labels.max()) + 1 if labels.size else 1
    else:
        if y.dtype.kind != "f":
            y = y.astype(np.float64)
        if y.ndim == 3 or (y.ndim == 2 and y.shape == (N, T)):
            head = "many_to_many"
            if y.ndim == 2:
                y = y[..., None]
            if y.shape[:2] != (N, T):
                raise UsageError(f"{path}: per-step targets y must be (N, T, C) with "
                                 f"(N, T) = ({N}, {T}), got shape {y.shape}")
        elif y.ndim in (1, 2):
            head = "many_to_one"
            if y.ndim == 1:
                y = y[:, None]
        else:
            raise UsageError(f"{path}: y has too many dimensions: {y.shape}")
        loss, out = "mse", int(y.shape[-1])
    if N < 2:
        raise UsageError(f"{path}: needs at least 2 sequences (one to train on, one to "
                         f"test), got {N}")
    cols = [x, y] + ([lengths] if lengths is not None else [])
    parts = train_test_split(*cols, test_fraction=test_fraction, seed=DATA_SEED)
    tr = (parts[0], parts[2], parts[4] if lengths is not None else None)
    te = (parts[1], parts[3], parts[5] if lengths is not None else None)
    return Data("npz", head, loss, out, tr, te,
                input_size=None if tokens else int(x.shape[2]), vocab_size=vocab_size,
                params={"path": os.path.abspath(path), "test_fraction": test_fraction,
                        "kind": kind})


def _text_windows(tokens, seq_len: int, what: str):
    from .data import char_windows

    if len(tokens) < seq_len + 1:
        raise UsageError(f"{what} has {len(tokens)} characters, too few for windows of "
                         f"--seq-len {seq_len} (needs at least {seq_len + 1})")
    return char_windows(tokens, seq_len)


def _text_data(task: str, text: str, source: str, seq_len: int, max_chars: int | None,
               params: dict, vocab: str | None = None) -> Data:
    from .data import CharVocab

    if max_chars is not None:
        text = text[:max_chars]
    if not text:
        raise UsageError(f"{source} is empty")
    v = CharVocab(vocab if vocab is not None else text)
    if vocab is not None:
        unknown = sorted(set(text) - set(vocab))
        if unknown:
            raise UsageError(f"{source} has characters the model does not know: "
                             f"{''.join(unknown[:10])!r}")
    tokens = v.encode(text)
    cut = int(len(tokens) * (1 - TEXT_TEST_FRACTION))
    x_tr, y_tr = _text_windows(tokens[:cut], seq_len, f"the training part of {source}")
    x_te, y_te = _text_windows(tokens[cut:], seq_len, f"the held-out tail of {source}")
    return Data(task, "one_to_many", "cross_entropy", v.size, (x_tr, y_tr, None),
                (x_te, y_te, None), vocab="".join(v.chars), vocab_size=v.size,
                params={**params, "seq_len": seq_len, "max_chars": max_chars})


def _task_data(task: str, params: dict) -> Data:
    """The data of a bundled task from its parameters (those saved with a model)."""
    from . import data

    if task == "digits":
        images, labels = data.load_digits()
        xtr, xte, ytr, yte = data.train_test_split(images, labels,
                                                   test_fraction=TEST_FRACTION, seed=DATA_SEED)
        return Data("digits", "many_to_one", "cross_entropy", 10, (xtr, ytr, None),
                    (xte, yte, None), input_size=8, params={},
                    baseline=("guessing the most common class",
                              float(np.bincount(yte).max() / len(yte))))
    if task == "text":
        return _text_data("text", data.load_text(), "the bundled text", params["seq_len"],
                          params.get("max_chars"), {}, params.get("vocab"))
    if task == "txt":
        return _text_data("txt", _read_text(params["path"]), params["path"], params["seq_len"],
                          params.get("max_chars"), {"path": params["path"]},
                          params.get("vocab"))
    if task == "npz":
        return _npz_data(params["path"], params.get("test_fraction", TEST_FRACTION),
                         params.get("kind", "classify"))
    steps, samples = params["steps"], params["samples"]
    if samples < 2:
        raise UsageError(f"--samples must be >= 2 (one to train on, one to test), got "
                         f"{samples}")
    if task == "adding":
        if steps < 2:
            raise UsageError(f"the adding problem needs --steps >= 2, got {steps}")
        x, y = data.adding_problem(samples, steps, seed=DATA_SEED)
        xtr, xte, ytr, yte = data.train_test_split(x, y, test_fraction=TEST_FRACTION,
                                                   seed=DATA_SEED)
        return Data("adding", "many_to_one", "mse", 1, (xtr, ytr, None), (xte, yte, None),
                    input_size=2, params={"steps": steps, "samples": samples},
                    baseline=("predicting 1 (the mean)", float(np.mean((yte - 1.0) ** 2))))
    if task == "sine":
        x, y = data.sine_waves(samples, steps, components=2, seed=DATA_SEED)
        xtr, xte, ytr, yte = data.train_test_split(x, y, test_fraction=TEST_FRACTION,
                                                   seed=DATA_SEED)
        return Data("sine", "many_to_many", "mse", 1, (xtr, ytr, None), (xte, yte, None),
                    input_size=1, params={"steps": steps, "samples": samples},
                    baseline=("repeating the last value", float(np.mean((xte - yte) ** 2))))
    raise UsageError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}, or give "
                     f"--data FILE")


TASK_DEFAULTS = {   # cell, hidden, epochs, batch size, Adam's learning rate
    "digits": ("lstm", 64, 20, 32, 1e-2),
    "text": ("gru", 128, 10, 64, 3e-3),
    "txt": ("gru", 128, 10, 64, 3e-3),
    "adding": ("lstm", 64, 15, 32, 1e-2),
    "sine": ("gru", 32, 30, 32, 1e-2),
    "npz": ("lstm", 64, 10, 32, 1e-2),
}


TASK_KINDS = {"digits": "classify", "text": "classify", "adding": "regress",
              "sine": "regress"}


def _train_data(args) -> Data:
    kind = getattr(args, "kind", None)
    if args.data is not None and args.task is not None:
        raise UsageError(f"give a task or --data, not both (got {args.task!r} and "
                         f"--data {args.data})")
    if args.data is None:
        if args.task is None:
            raise UsageError(f"give a task ({', '.join(TASKS)}) or --data FILE")
        if args.task not in TASKS:
            raise UsageError(f"unknown task {args.task!r}; choose one of "
                             f"{', '.join(TASKS)}, or give --data FILE")
        own = TASK_KINDS[args.task]
        if kind not in (None, own):
            raise UsageError(f"--{kind} does not apply to the task {args.task}: it is a "
                             f"{'classification' if own == 'classify' else 'regression'}")
        if args.task in ("adding", "sine"):
            params = {"steps": args.steps or (30 if args.task == "adding" else 50),
                      "samples": args.samples or (4000 if args.task == "adding" else 800)}
        else:
            params = {"seq_len": args.seq_len, "max_chars": args.max_chars}
        return _task_data(args.task, params)
    path = args.data
    if path.lower().endswith(".txt"):
        if kind == "regress":
            raise UsageError(f"--regress does not apply to a text (--data {path}): a "
                             f"character model classifies each next character")
        return _task_data("txt", {"path": os.path.abspath(path), "seq_len": args.seq_len,
                                  "max_chars": args.max_chars})
    if path.lower().endswith(".npz"):
        return _npz_data(path, kind=kind or "classify")
    raise UsageError(f"--data {path}: expected an .npz (arrays x, y[, lengths]) or a .txt")


# ---------------------------------------------------------------------------------------
# models and training
# ---------------------------------------------------------------------------------------

def _make_optimizer(name: str, params, lr: float, momentum: float | None,
                    weight_decay: float):
    from . import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9 if momentum is None else momentum,
                         weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay or 1e-2)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, momentum=momentum or 0.0,
                             weight_decay=weight_decay)
    return optim.Adagrad(params, lr=lr, weight_decay=weight_decay)


MAX_PARAMETERS = 200_000_000     # 800 MB of float32 weights, before any gradient or state


def _build_model(d: Data, cell: str, hidden: int, layers: int = 1, bidirectional=False,
                 dropout: float = 0.0, seed: int = 0):
    from .model import SequenceModel

    kw = {}
    width = d.input_size
    if d.vocab_size is not None:
        width = min(32, max(8, d.vocab_size))
        kw = {"vocab_size": d.vocab_size, "embedding_dim": width}
    G, D = {"rnn": 1, "lstm": 4, "gru": 3}[cell], 2 if bidirectional else 1
    count = sum(D * G * hidden * ((width if k == 0 else D * hidden) + hidden + 2)
                for k in range(layers)) + D * hidden * d.output_size
    if count > MAX_PARAMETERS:
        raise UsageError(f"a model of {count:.3g} parameters (--hidden {hidden}, --layers "
                         f"{layers}) is too large; the limit is {MAX_PARAMETERS:.0e}")
    return SequenceModel.build(cell, input_size=d.input_size, hidden_size=hidden,
                               output_size=d.output_size, head=d.head, num_layers=layers,
                               bidirectional=bidirectional, dropout=dropout, loss=d.loss,
                               seed=seed, **kw)


def _model_kind(model) -> str:
    from .model import Seq2Seq

    if isinstance(model, Seq2Seq):
        return "encoder-decoder"
    r = model.rnn
    shape = f"{type(r).__name__} {r.num_layers}x{r.hidden_size}" + \
        (" bidirectional" if r.bidirectional else "")
    return f"{shape}, {type(model.head).__name__}, {model.loss.name}"


def _format_logs(logs: dict) -> str:
    parts = []
    for k, v in logs.items():
        parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


def _fmt_metrics(metrics: dict, loss_name: str) -> str:
    out = []
    for k, v in metrics.items():
        label = f"loss ({'MSE' if loss_name == 'mse' else 'cross-entropy'})" \
            if k == "loss" else k
        out.append(f"{label} {v:.4f}")
    return ", ".join(out)


def _epoch_printer(epochs: int, every: int = 1):
    """A callback printing the logs of every ``every``-th epoch (and of the first and
    last)."""
    from .model import Callback

    class EpochPrinter(Callback):
        def on_train_begin(self, model, optimizer):
            self.start = time.perf_counter()

        def on_epoch_end(self, model, epoch, logs):
            if epoch and (epoch + 1) % every and epoch + 1 != epochs:
                return False
            print(f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}  {_format_logs(logs)}  "
                  f"({time.perf_counter() - self.start:.1f} s)", flush=True)
            return False

    return EpochPrinter()


def _json_safe(value):
    """``value`` for JSON with a non-finite number (an infinite or nan loss) as None
    (null), so that writing it with ``allow_nan=False`` cannot fail."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _extra(task: str, params: dict, vocab: str | None, history, metrics: dict) -> dict:
    """What a model file carries besides the model: how to rebuild its data (and test
    split), its vocabulary (character models), its training curves and test metrics
    (a non-finite number in those as null)."""
    return {"created_by": "fastrnn train", "task": task, "task_params": params,
            "vocab": vocab, "history": _json_safe(history.history),
            "test_metrics": _json_safe(metrics)}


def _check_out(path: str, suffix: str | None = None, why: str = "",
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


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _save(path: str, model, optimizer, d: Data, history, metrics: dict) -> None:
    """Save a trained model; a failure says that the training is lost (UsageError)."""
    from .io import save

    try:
        save(path, model, optimizer,
             extra=_extra(d.task, d.params, d.vocab, history, metrics))
    except (OSError, ValueError, TypeError) as err:
        raise UsageError(f"--out {path}: training finished, but the model could not be "
                         f"saved ({_one_line(err)}); it is lost") from None


def _plot_note(err: Exception) -> None:
    print(f"note: {err}", flush=True)


def cmd_train(args) -> int:
    d = _train_data(args)
    key = d.task if d.task in TASK_DEFAULTS else "npz"
    cell0, hidden0, epochs0, batch0, lr0 = TASK_DEFAULTS[key]
    cell, hidden = args.cell or cell0, args.hidden or hidden0
    epochs, batch = args.epochs or epochs0, args.batch_size or batch0
    lr = args.lr or {"sgd": 0.1, "adagrad": 0.05}.get(args.optimizer, lr0)
    if args.bidirectional and d.forecasting:
        raise UsageError("--bidirectional does not apply to this task: a model that "
                         "predicts the next step must not read the sequence backwards")
    if args.dropout and args.layers < 2:
        raise UsageError("--dropout applies between stacked layers: it needs --layers >= 2")
    if args.out:
        _check_out(args.out, ".npz", "a model file name must end in .npz")
        if args.data is not None and _same_file(args.out, args.data):
            raise UsageError(f"--out {args.out} is the data file: the model would "
                             f"overwrite it")
    if args.plot:
        _check_out(args.plot, option="--plot")

    model = _build_model(d, cell, hidden, args.layers, args.bidirectional, args.dropout,
                         args.seed)
    optimizer = _make_optimizer(args.optimizer, model.parameters(), lr, args.momentum,
                                args.weight_decay)
    x, y, lengths = d.train
    name = d.task if d.task in TASKS else os.path.basename(d.params.get("path", d.task))
    print(f"training on {name}: {len(x)} sequences of {x.shape[1]} steps "
          f"({len(d.test[0])} held out); {_model_kind(model)}, "
          f"{sum(p.data.size for p in model.parameters())} parameters; "
          f"{args.optimizer} lr {lr:g}, batch {batch}", flush=True)
    progress = not args.no_progress and sys.stderr.isatty()
    start = time.perf_counter()
    history = model.fit(x, y, lengths, epochs=epochs, batch_size=batch, optimizer=optimizer,
                        validation_data=d.test, clip_norm=args.clip or None,
                        callbacks=[_epoch_printer(epochs)], progress=progress,
                        seed=args.seed)
    seconds = time.perf_counter() - start
    metrics = model.evaluate(*d.test)
    if history.stop_reason != "completed":
        print(f"note: {history.stop_reason}", flush=True)
    if args.out:
        _save(args.out, model, optimizer, d, history, metrics)
    if args.plot:
        from . import plot
        try:
            path = plot.training_curves(history, args.plot,
                                        title=f"{name}: {_model_kind(model)}")
            print(f"plot: {path}")
            if d.task == "sine":
                stem, ext = os.path.splitext(args.plot)
                xt, yt = d.test[0][:3], d.test[1][:3]
                path = plot.forecast(xt, yt, model.predict(xt), f"{stem}-forecast{ext}",
                                     title="sine: one-step forecasts of test sequences")
                print(f"plot: {path}")
        except plot.PlotUnavailable as err:
            _plot_note(err)
    base = f"; {d.baseline[0]} scores {d.baseline[1]:.4f}" if d.baseline else ""
    saved = f"saved to {args.out}" if args.out else "not saved (give --out MODEL)"
    print(f"done: {name}, {_model_kind(model)}, {history.epochs} epochs in {seconds:.1f} s; "
          f"test {_fmt_metrics(metrics, d.loss)}{base}; {saved}", flush=True)
    return 0


# ---------------------------------------------------------------------------------------
# using saved models
# ---------------------------------------------------------------------------------------

def _load(path: str):
    """``(model, extra)`` of a model file, or a one-line UsageError."""
    from .io import load_checkpoint

    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a model file")
    model, _, extra = load_checkpoint(path)
    return model, extra if isinstance(extra, dict) else {}


def _saved_task_data(path: str, extra: dict, model) -> Data:
    task = extra.get("task")
    if extra.get("created_by") != "fastrnn train" or task is None:
        raise UsageError(f"{path} does not say which data it was trained on (it was not "
                         f"saved by `fastrnn train`); give --data FILE")
    params = dict(extra.get("task_params") or {})
    if task in ("text", "txt"):
        params["vocab"] = extra.get("vocab")
    if task == "npz":     # read y as the model was trained: its loss says how
        params["kind"] = "classify" if model.loss.name == "cross_entropy" else "regress"
    if task in ("npz", "txt") and not os.path.exists(params.get("path", "")):
        raise UsageError(f"{path} was trained on {params.get('path')}, which is gone; give "
                         f"--data FILE")
    return _task_data(task, params)


def _given_data(path: str, extra: dict) -> tuple:
    """Everything in a user's file, as (x, y, lengths) for evaluate."""
    if path.lower().endswith(".txt"):
        vocab = extra.get("vocab")
        if vocab is None:
            raise UsageError(f"--data {path} is text, but the model is not a character "
                             f"model")
        from .data import CharVocab
        text = _read_text(path)
        unknown = sorted(set(text) - set(vocab))
        if unknown:
            raise UsageError(f"{path} has characters the model does not know: "
                             f"{''.join(unknown[:10])!r}")
        seq_len = (extra.get("task_params") or {}).get("seq_len", 64)
        x, y = _text_windows(CharVocab(vocab).encode(text), seq_len, path)
        return x, y, None
    if not path.lower().endswith((".npz", ".npy")):
        raise UsageError(f"--data {path}: expected an .npz (arrays x, y[, lengths]) or a "
                         f".txt")
    x, y, lengths = _arrays_xy(_read_npz(path, names=("x", "y", "lengths")), path)
    return x, y, lengths


@contextlib.contextmanager
def _fits(data_path: str, model_path: str):
    """Turn the model's refusal of some data into a one-line UsageError naming both."""
    try:
        yield
    except (ValueError, TypeError) as err:
        raise UsageError(f"{data_path} does not fit the model {model_path}: {err}") from None


def cmd_evaluate(args) -> int:
    import json

    from .model import Seq2Seq

    model, extra = _load(args.model)
    if args.data is not None:
        if isinstance(model, Seq2Seq):
            arrays = _read_npz(args.data, names=("src", "tgt", "src_lengths", "tgt_lengths"))
            if "src" not in arrays or "tgt" not in arrays:
                raise UsageError(f"{args.data}: an encoder-decoder is evaluated on arrays "
                                 f"src and tgt (and optionally src_lengths, tgt_lengths)")
            with _fits(args.data, args.model):
                metrics = model.evaluate(arrays["src"], arrays["tgt"],
                                         arrays.get("src_lengths"), arrays.get("tgt_lengths"),
                                         batch_size=args.batch_size)
            where = args.data
        else:
            x, y, lengths = _given_data(args.data, extra)
            if model.loss.name == "mse" and y.dtype.kind == "f" and y.ndim == 2 \
                    and model.head.per_step and y.shape == x.shape[:2]:
                y = y[..., None]
            if model.loss.name == "cross_entropy" and y.dtype.kind == "f":
                # whole-number floats are class labels, as in `fastrnn train --classify`
                valid = np.ones(y.shape, bool)
                if lengths is not None and y.ndim == 2 and y.shape == x.shape[:2]:
                    valid = np.arange(y.shape[1])[None, :] < lengths[:, None]
                y = _class_labels(y, valid, args.data)
            with _fits(args.data, args.model):
                metrics = model.evaluate(x, y, lengths, batch_size=args.batch_size)
            where = f"{args.data} ({len(x)} sequences)"
    else:
        if isinstance(model, Seq2Seq):
            raise UsageError(f"{args.model} is an encoder-decoder; give --data FILE with "
                             f"arrays src and tgt")
        d = _saved_task_data(args.model, extra, model)
        x, y, lengths = d.test
        metrics = model.evaluate(x, y, lengths, batch_size=args.batch_size)
        where = f"the test split of {d.task if d.task in TASKS else d.params['path']} " \
                f"({len(x)} sequences)"
    if args.json:
        print(json.dumps(_json_safe(metrics), allow_nan=False))
    else:
        print(f"{args.model} on {where}: {_fmt_metrics(metrics, model.loss.name)}")
    return 0


def cmd_predict(args) -> int:
    from .model import Seq2Seq

    if args.out:
        if not args.out.lower().endswith((".npy", ".npz", ".txt", ".csv")):
            raise UsageError(f"--out {args.out}: use a .npy, .npz, .txt or .csv name")
        _check_out(args.out)
        for given in (args.input, args.model):
            if _same_file(args.out, given):
                raise UsageError(f"--out {args.out} is {given}: the predictions would "
                                 f"overwrite it")
    model, _ = _load(args.model)
    arrays = _read_npz(args.input, "input")
    if "x" in arrays:
        x = arrays["x"]
    elif len(arrays) == 1:
        x = next(iter(arrays.values()))
    else:
        raise UsageError(f"{args.input} holds {sorted(arrays)}; name the sequences x")
    if x.dtype.kind not in "fiub":
        raise UsageError(f"{args.input}: the sequences must be numbers, got {_describe(x)}")
    lengths = arrays.get("lengths")
    per_step = False
    if isinstance(model, Seq2Seq):
        if args.proba:
            raise UsageError("--proba does not apply to an encoder-decoder")
        if x.ndim != 2 or x.dtype.kind not in "iu":
            raise UsageError(f"{args.input}: an encoder-decoder reads integer tokens (N, S), "
                             f"got {_describe(x)}")
        lengths = _check_lengths(lengths, x.shape[0], x.shape[1], args.input)
        with _fits(args.input, args.model):
            out = model.predict(x, lengths, max_length=args.max_length or x.shape[1])
        lengths = None
    else:
        if model.embedding is None and x.ndim == 2 and model.rnn.input_size == 1:
            x = x[..., None]
        if x.ndim < 2:
            raise UsageError(f"{args.input}: expected sequences (N, T, features) or tokens "
                             f"(N, T), got {_describe(x)}")
        lengths = _check_lengths(lengths, x.shape[0], x.shape[1], args.input)
        _refuse_nonfinite(x, "x", args.input, lengths)
        with _fits(args.input, args.model):
            out = model.predict_proba(x, lengths, args.batch_size) if args.proba else \
                model.predict(x, lengths, args.batch_size)
        per_step = model.head.per_step
    if args.out:
        low = args.out.lower()
        if low.endswith(".npy"):
            np.save(args.out, out)
        elif low.endswith(".npz"):
            extra = {"lengths": lengths} if lengths is not None else {}
            np.savez(args.out, predictions=out, **extra)
        else:
            with open(args.out, "w") as f:
                _print_predictions(out, lengths if per_step else None, f)
        print(f"{len(out)} predictions {out.shape} written to {args.out}")
    else:
        _print_predictions(out, lengths if per_step else None, sys.stdout)
    return 0


def _print_predictions(a: np.ndarray, lengths, out) -> None:
    """One sequence per line (only its valid steps, given lengths): integers as such,
    floats with 6 significant digits; (N, T, C) with C > 1 gets a comment line first."""
    fmt = (lambda v: str(int(v))) if a.dtype.kind in "iub" else (lambda v: f"{v:.6g}")
    width = a.shape[2] if a.ndim == 3 else 1
    if width > 1:
        print(f"# shape {a.shape}: one sequence per line, its steps in turn, each step's "
              f"{width} values together", file=out)
    rows = a[:, None] if a.ndim == 1 else a.reshape(a.shape[0], -1)
    for i, row in enumerate(rows):
        if lengths is not None:
            row = row[:int(lengths[i]) * width]
        print(" ".join(fmt(v) for v in row), file=out)


def cmd_sample(args) -> int:
    from .data import CharVocab
    from .model import SequenceModel

    model, extra = _load(args.model)
    vocab = extra.get("vocab")
    if not isinstance(model, SequenceModel) or not isinstance(vocab, str) or \
            model.embedding is None or not model.head.per_step:
        raise UsageError(f"{args.model} is not a character model (it carries no "
                         f"vocabulary); train one with `fastrnn train text --out MODEL`")
    if len(vocab) != model.embedding.num_embeddings:
        raise UsageError(f"{args.model}: its vocabulary ({len(vocab)} characters) does not "
                         f"match its embedding ({model.embedding.num_embeddings} tokens)")
    v = CharVocab(vocab)
    prime = args.prime if args.prime is not None else ("\n" if "\n" in vocab else vocab[0])
    if not prime:
        raise UsageError("--prime must not be empty")
    unknown = sorted(set(prime) - set(vocab))
    if unknown:
        raise UsageError(f"--prime has characters the model does not know: "
                         f"{''.join(unknown)!r} (it knows {vocab!r})")
    tokens = model.generate(v.encode(prime), args.length, temperature=args.temperature,
                            top_k=args.top_k, seed=args.seed)
    text = prime + v.decode(tokens)
    print(text.lstrip("\n") if args.prime is None else text)
    return 0


def cmd_export(args) -> int:
    from .model import SequenceModel
    from .onnx_export import export_onnx

    _check_out(args.onnx, ".onnx", "an ONNX file name must end in .onnx", "--onnx")
    model, _ = _load(args.model)
    if not isinstance(model, SequenceModel):
        raise UsageError(f"{args.model} is a {type(model).__name__}; only sequence models "
                         f"are exported (an encoder-decoder loops over generated tokens)")
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UsageError("ONNX export needs the onnx package: pip install "
                         "'fastrnn[onnx]'") from None
    export_onnx(model, args.onnx, lengths=args.lengths,
                dtype=np.float32 if args.float32 else None)
    inputs = "x" + (", lengths" if args.lengths else "")
    print(f"wrote {args.onnx}: inputs {inputs}, output out ({_model_kind(model)}, "
          f"opset 17, {'float32' if args.float32 else model.dtype.name})")
    return 0


def cmd_import_torch(args) -> int:
    from .io import save
    from .model import SequenceModel
    from .torch_bridge import from_state_dict

    _check_out(args.out, ".npz", "a model file name must end in .npz")
    if not os.path.exists(args.state_dict):
        raise UsageError(f"{args.state_dict}: no such file")
    if os.path.isdir(args.state_dict):
        raise UsageError(f"{args.state_dict} is a directory, not a state_dict file")
    model = from_state_dict(args.state_dict, head=args.head, loss=args.loss,
                            nonlinearity=args.nonlinearity)
    if not isinstance(model, SequenceModel):
        raise UsageError(f"{args.state_dict} holds a {type(model).__name__} alone, not a "
                         f"model with a readout; use fastrnn.from_torch in Python for a "
                         f"single layer")
    save(args.out, model, extra={"created_by": "fastrnn import-torch",
                                 "source": os.path.abspath(args.state_dict)})
    n = sum(p.data.size for p in model.parameters())
    print(f"wrote {args.out}: {_model_kind(model)}, {n} parameters from {args.state_dict}")
    return 0


def cmd_bench(args) -> int:
    from . import bench

    def error(message):
        raise UsageError(message)

    return bench.run(args, error, ["fastrnn"] + args.argv)


# ---------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------

def _cpu() -> dict:
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if model is None and line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif not flags and line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import platform
    from ._runtime import available_cores
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
    import re
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    m = re.search(rb"GCC: \([^)]*\) [0-9][0-9.]*", blob) or re.search(rb"clang version [0-9.]+",
                                                                          blob)
    return m.group(0).decode(errors="replace") if m else None


def info() -> dict:
    import platform

    import scipy

    from . import _core, blas_info
    ext = _core.__file__
    return {"fastrnn": __version__, "package": os.path.dirname(os.path.abspath(__file__)),
            "extension": ext, "compiler": _compiler(ext),
            "python": f"{platform.python_version()} ({platform.python_implementation()})",
            "numpy": np.__version__, "scipy": scipy.__version__,
            "platform": platform.platform(), "blas": blas_info(), "cpu": _cpu()}


def cmd_info(args) -> int:
    import json

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


# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------

def _draw(image: np.ndarray) -> list:
    top = len(SHADES) - 1
    return ["".join(SHADES[min(int(v * len(SHADES)), top)] * 2 for v in row) for row in image]


def _show_digits(images, truth, guesses, confidence) -> None:
    cells = [_draw(img) for img in images]
    width = len(cells[0][0])
    frame = "  ".join("+" + "-" * width + "+" for _ in cells)
    print(frame)
    for r in range(len(cells[0])):
        print("  ".join("|" + c[r] + "|" for c in cells))
    print(frame)
    print("  ".join(f"guess {g} {p:>4.0%}".center(width + 2)
                    for g, p in zip(guesses, confidence)))
    print("  ".join(f"truth {t} {'ok' if t == g else 'WRONG'}".center(width + 2)
                    for t, g in zip(truth, guesses)))


def _demo_digits(args, out_dir: str) -> dict:
    from . import load, plot
    from .data import load_digits, train_test_split
    from .io import save
    from .model import Callback, SequenceModel
    from .optim import Adam, CosineAnnealingLR

    images, labels = load_digits()
    xtr, xte, ytr, yte = train_test_split(images, labels, test_fraction=TEST_FRACTION,
                                          seed=DATA_SEED)
    hidden, epochs = (16, 1) if args.quick else (64, args.epochs)
    model = SequenceModel.build("lstm", input_size=8, hidden_size=hidden, output_size=10,
                                head="many_to_one", seed=args.seed)
    print(f"\n[1/2] Handwritten digits, each 8x8 image read one row of 8 pixels per time "
          f"step\n      by an LSTM with {hidden} hidden units (many-to-one: the class is "
          f"read after the last row).\n      {len(xtr)} training images, {len(xte)} test "
          f"images; Adam, lr 0.01 on a cosine schedule, batch 32, {epochs} epochs.",
          flush=True)
    optimizer = Adam(model.parameters(), lr=1e-2)
    schedule = CosineAnnealingLR(optimizer, T_max=epochs)

    class StepSchedule(Callback):
        def on_epoch_end(self, model, epoch, logs):
            schedule.step()
            return False

    start = time.perf_counter()
    history = model.fit(xtr, ytr, epochs=epochs, batch_size=32, optimizer=optimizer,
                        validation_data=(xte, yte), clip_norm=5.0, seed=args.seed,
                        progress=False, callbacks=[StepSchedule(),
                                                   _epoch_printer(epochs, max(1, epochs // 5))])
    seconds = time.perf_counter() - start
    metrics = model.evaluate(xte, yte)
    right = int(round(metrics["accuracy"] * len(yte)))
    print(f"test accuracy {metrics['accuracy']:.1%} ({right} of {len(yte)} test images), "
          f"trained in {seconds:.1f} s", flush=True)

    path = os.path.join(out_dir, "digits.npz")
    save(path, model, optimizer, extra=_extra("digits", {}, None, history, metrics))
    reloaded = load(path)
    same = np.array_equal(reloaded.forward(xte), model.forward(xte))
    print(f"saved the model to {path} ({os.path.getsize(path) // 1024} kB); reloaded, it "
          f"gives {'identical' if same else 'DIFFERENT'} outputs", flush=True)

    # a few test images, with one mistake among them if there is one
    guesses = reloaded.predict(xte)
    proba = reloaded.predict_proba(xte).max(axis=1)
    picks = list(range(3))
    wrong = np.flatnonzero(guesses != yte)
    picks.append(int(wrong[0]) if wrong.size else 3)
    print("\nsome test images and the model's guesses:")
    _show_digits(xte[picks], yte[picks], guesses[picks], proba[picks])

    try:
        p = plot.training_curves(history, os.path.join(out_dir, "digits_training.png"),
                                  title=f"digits: LSTM {hidden}, many-to-one")
        print(f"training curves: {p}", flush=True)
    except plot.PlotUnavailable as err:
        _plot_note(err)
    return metrics


def _demo_text(args, out_dir: str) -> None:
    from . import plot
    from .data import CharVocab, char_windows, load_text
    from .io import save
    from .model import History, SequenceModel
    from .optim import Adam

    text = load_text()
    v = CharVocab(text)
    tokens = v.encode(text)
    cut = int(len(tokens) * (1 - TEXT_TEST_FRACTION))
    seq_len, batch = 64, 64
    hidden, budget, length = (32, 1.0, 120) if args.quick else (128, args.text_seconds, 500)
    x, y = char_windows(tokens[:cut], seq_len, seq_len // 2)
    xv, yv = char_windows(tokens[cut:], seq_len)
    model = SequenceModel.build("gru", vocab_size=v.size, embedding_dim=32,
                                hidden_size=hidden, output_size=v.size, head="one_to_many",
                                seed=args.seed)
    print(f"\n[2/2] A character model of the Book of Genesis (King James Version, "
          f"{len(text) // 1000} kB, {v.size} distinct characters):\n      a GRU with "
          f"{hidden} hidden units reads {seq_len} characters and predicts each next one "
          f"(one-to-many);\n      trained for {budget:g} s on windows of the first 90%, "
          f"tested on the last 10%.", flush=True)
    optimizer = Adam(model.parameters(), lr=4e-3)
    rng = np.random.default_rng(args.seed)
    order, pos = rng.permutation(len(x)), 0
    chunk = batch * 8
    history = History()
    report_every = max(budget / 5, 0.5)
    start = last = time.perf_counter()
    seen = total = right = count = 0.0
    while True:
        if pos + chunk > len(order):
            order, pos = rng.permutation(len(x)), 0
        idx = order[pos:pos + chunk]
        pos += chunk
        h = model.fit(x[idx], y[idx], epochs=1, batch_size=batch, optimizer=optimizer,
                      clip_norm=5.0, shuffle=False, progress=False)
        seen += len(idx)
        total += h["loss"][0] * len(idx)
        right += h["accuracy"][0] * len(idx)
        count += len(idx)
        now = time.perf_counter()
        done = now - start >= budget
        if now - last >= report_every or done:
            val = model.evaluate(xv, yv)
            history.append({"loss": total / count, "val_loss": val["loss"],
                            "accuracy": right / count, "val_accuracy": val["accuracy"]})
            print(f"{now - start:5.1f} s  {int(seen):>6} windows  train loss "
                  f"{total / count:.3f}  held-out loss {val['loss']:.3f}  accuracy "
                  f"{val['accuracy']:.1%}", flush=True)
            total = right = count = 0.0
            last = now
        if done:
            break
    metrics = val
    print(f"held-out text: {metrics['loss']:.3f} nats per character (perplexity "
          f"{math.exp(metrics['loss']):.1f} of {v.size}), next character right "
          f"{metrics['accuracy']:.1%} of the time", flush=True)
    path = os.path.join(out_dir, "genesis.npz")
    save(path, model, optimizer, extra=_extra("text", {"seq_len": seq_len, "max_chars": None},
                                              "".join(v.chars), history, metrics))
    print(f"saved the model with its vocabulary to {path}", flush=True)
    try:
        p = plot.training_curves(history, os.path.join(out_dir, "text_training.png"),
                                 title=f"Genesis: GRU {hidden}, one-to-many",
                                 xlabel=f"report (every {report_every:.1f} s)")
        print(f"training curves: {p}", flush=True)
    except plot.PlotUnavailable as err:
        _plot_note(err)
    prime = "And God said"
    passage = prime + v.decode(model.generate(v.encode(prime), length, temperature=0.7,
                                              seed=args.seed))
    print(f"\na passage it wrote (prime {prime!r}, temperature 0.7):\n")
    for line in passage.splitlines():
        print(textwrap.fill(line, width=88, initial_indent="    ", subsequent_indent="    ")
              if line.strip() else "")


def cmd_demo(args) -> int:
    from . import blas_info

    out_dir = args.out_dir
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out-dir {out_dir}: {err.strerror}") from None
    b = blas_info()
    cpu = _cpu()
    print(f"fastrnn {__version__} demo on {cpu['model']}, {cpu['usable_cores']} cores "
          f"({b['kernel_threads']} kernel threads)", flush=True)
    start = time.perf_counter()
    metrics = _demo_digits(args, out_dir)
    _demo_text(args, out_dir)
    print(f"\ndone in {time.perf_counter() - start:.0f} s: digits test accuracy "
          f"{metrics['accuracy']:.1%}; the models and plots are in {out_dir}{os.sep}\n"
          f"try next:\n"
          f"  fastrnn sample {os.path.join(out_dir, 'genesis.npz')} --prime \"And Jacob\"\n"
          f"  fastrnn evaluate {os.path.join(out_dir, 'digits.npz')}\n"
          f"  fastrnn train sine --plot sine.png\n"
          f"  fastrnn train --help")
    return 0


# ---------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------

def main(argv=None) -> int:
    """Run the ``fastrnn`` command with ``argv`` (default ``sys.argv[1:]``); returns the
    exit status."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:     # --help, --version, or a mistake already reported
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USAGE
    args.argv = argv
    if args.command is None:     # argparse's convention: usage on stderr, status 2
        parser.print_help(sys.stderr)
        print(f"{parser.prog}: error: a command is required (see {parser.prog} --help)",
              file=sys.stderr)
        return EXIT_USAGE
    from .io import ModelFileError

    prog = f"fastrnn {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `fastrnn sample m.npz | head`): not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except (UsageError, ModelFileError, ValueError, TypeError, OSError, MemoryError) as err:
        if args.traceback:
            raise
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:        # not foreseen: a bug; one line, --traceback for more
        if args.traceback:
            raise
        print(f"{prog}: internal error: {type(err).__name__}: {_one_line(err)} (run again "
              f"with --traceback and report it)", file=sys.stderr)
        return EXIT_FAILURE


def _one_line(err: BaseException) -> str:
    if isinstance(err, MemoryError):
        return "not enough memory for the sizes asked for"
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    text = " ".join(str(err).split())
    return text or type(err).__name__
