"""The ``fastrnn`` command's argument parser: its subcommands, their options and the
argument types that check them (a mistake is one line, exit status 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from .._version import __version__
from ..data.tasks import TEST_FRACTION, TEXT_TEST_FRACTION
from .common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, bench_harness

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
EXIT_STATUS = (f"Exit status: 0 on success; {EXIT_USAGE} for a mistake of the user (an "
               f"unknown option or task, a missing or malformed file, a model file of "
               f"another kind, an impossible size), said in one line on stderr; "
               f"{EXIT_FAILURE} for anything else, a bug (one line; --traceback shows it "
               f"all); {EXIT_INTERRUPTED} when interrupted (Ctrl-C).")
CSV_TABLE = ("A .csv table has a header row naming its columns and one row per time step: "
             "the column 'sequence' names the sequence a row belongs to (its rows "
             "together, in order; without it the table is one sequence), 'y' holds one "
             "target per sequence (on each of its rows or on its first only) or 'y_step' "
             "one per step, every other column is a feature (a number); sequences may "
             "differ in length.")
HARNESS_MISSING = ("It needs a source checkout of fastrnn: the benchmark harness is "
                   "bench/harness.py there, and not part of the installed package.")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: message``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argument type: an integer >= ``low``."""
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


def float_in(low: float, high: float = math.inf,
             low_open: bool = False) -> Callable[[str], float]:
    """An argument type: a finite number in [low, high] (``low_open``: in (low, high])."""
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


positive = int_at_least(1)
positive_float = float_in(0.0, low_open=True)
nonnegative_float = float_in(0.0)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``fastrnn`` command and its subcommands (``args.command``)."""
    harness = bench_harness()
    parser = _Parser(prog="fastrnn", description="Recurrent networks (RNN, LSTM, GRU) on the "
                     "CPU: train, evaluate and use models from the command line.",
                     epilog="Start with `fastrnn demo`; `fastrnn COMMAND --help` for each "
                            f"command. {EXIT_STATUS}")
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
    p.add_argument("--text-epochs", type=positive, default=12, metavar="N",
                   help="epochs of the character model (default: %(default)s)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--quick", action="store_true",
                   help="tiny models, one epoch each: a smoke test of the demo")

    # -- train
    p = sub.add_parser("train", help="train a model on a bundled task or your own data",
                       description="Train a model on a bundled task -- digits (8x8 images "
                       "read row by row, many-to-one), text (a character model of Genesis, "
                       "one-to-many), adding (the adding problem, many-to-one regression), "
                       "sine (next-step forecasting, many-to-many) -- or on --data FILE: an "
                       ".npz with arrays x (N, T, I) or integer tokens (N, T), y and "
                       "optionally lengths (N,), a .csv table of the same (below), or a "
                       ".txt for a character model. The task "
                       "is what you ask for, never guessed from the numbers: --classify "
                       "(the default for an .npz, as SequenceModel.build's cross-entropy) "
                       "reads y as class labels, integers or whole-number floats (0.0, "
                       "1.0, ...), (N,) one class per sequence or (N, T) one per step; "
                       "--regress (mean squared error) reads y as values, (N,) or (N, C) "
                       "per sequence, (N, T) or (N, T, C) per step. The bundled tasks "
                       "set their own (digits and text classify, adding and sine "
                       "regress). x and y must be finite within each length. "
                       f"{TEST_FRACTION:.0%} of the sequences (the last "
                       f"{TEXT_TEST_FRACTION:.0%} of a text) are held out for testing. "
                       f"{CSV_TABLE}", epilog=EXIT_STATUS)
    p.add_argument("task", nargs="?", metavar="TASK",
                   help="digits, text, adding or sine (or give --data)")
    p.add_argument("--data", metavar="FILE", help="your own data: .npz, .csv or .txt")
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
    p.add_argument("--dropout", type=float_in(0.0, 0.99), default=0.0,
                   help="dropout between stacked layers (needs --layers >= 2)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: the task's, tuned for Adam; 0.1 for sgd)")
    p.add_argument("--momentum", type=float_in(0.0, 1.0), default=None,
                   help="momentum of sgd (default 0.9) and rmsprop (default 0)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.0)
    p.add_argument("--epochs", type=positive, default=None, help="passes over the training "
                   "data (default: digits 20, text 10, adding 15, sine 30, --data 10)")
    p.add_argument("--batch-size", type=positive, default=None,
                   help="sequences per step (default: 32; 64 for text)")
    p.add_argument("--clip", type=nonnegative_float, default=5.0,
                   help="clip the gradient norm to this (0: no clipping; default: "
                        "%(default)s)")
    p.add_argument("--seed", type=int_at_least(0), default=0,
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
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing but errors (and a note if training stops early, on "
                        "stderr)")

    # -- evaluate
    p = sub.add_parser("evaluate", help="loss and accuracy of a saved model",
                       description="Loss and metric of a saved model on the test split of "
                       "the task it was trained on, or on --data FILE (all of it).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--data", metavar="FILE", help=".npz (x, y[, lengths]) or .txt")
    p.add_argument("--batch-size", type=positive, default=256)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")

    # -- predict
    p = sub.add_parser("predict", help="a saved model's outputs for sequences in a file",
                       description="Run a saved model on the sequences in INPUT: a .npy "
                       "array x, an .npz with x (or its only array) and optionally "
                       "lengths, or a .csv table (its 'y' or 'y_step' column, if any, is "
                       "not read). Classifiers give class indices (or --proba), "
                       "regressions their values, encoder-decoders decoded tokens. Text on "
                       "stdout, one sequence per line, or --out FILE: .npy, .npz, .txt, or "
                       ".csv, a table with a header: sequence (the input table's names, "
                       "else 0, 1, ...), step (per-step outputs, the valid steps only), "
                       "then prediction (or prediction_0, prediction_1, ... for several "
                       f"values; proba_0, ... with --proba). {CSV_TABLE}",
                       epilog=EXIT_STATUS)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--out", metavar="FILE")
    p.add_argument("--proba", action="store_true", help="class probabilities")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="with --out, print nothing but errors")
    p.add_argument("--max-length", type=positive, default=None,
                   help="tokens to decode (encoder-decoder; default: the source length)")
    p.add_argument("--batch-size", type=positive, default=256)

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
    p.add_argument("--seed", type=int_at_least(0), default=None)

    # -- bench
    description = ("Time fastrnn's layers against the NumPy reference and PyTorch CPU (if "
                   "installed): inference and training steps, each contender and workload "
                   "in a process of its own; prints a markdown table of median times and "
                   "ratios.")
    if harness is None:
        description += f" {HARNESS_MISSING}"
    p = sub.add_parser("bench", help="time the layers against NumPy and PyTorch",
                       description=description)
    if harness is not None:
        harness.add_arguments(p)
    else:                   # any option: the command says it cannot run
        p.set_defaults(harness_missing=True)

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

    # -- info
    p = sub.add_parser("info", help="version, build, BLAS and threads, CPU features")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    return parser
