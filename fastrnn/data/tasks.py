"""The tasks of the ``fastrnn`` command, as data ready for a model.

The bundled tasks -- digits (8x8 images read row by row, many-to-one), text (a character
model of Genesis, one-to-many), adding (the adding problem, many-to-one regression), sine
(next-step forecasting, many-to-many) -- and a user's own data (an ``.npz`` of arrays or a
``.txt`` for a character model), each with its train/test split, which depends only on the
task's parameters (saved with a model, so that ``fastrnn evaluate`` rebuilds the same
split).  Mistakes raise :class:`fastrnn.data.files.DataError` with a one-line message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from . import (CharVocab, adding_problem, char_windows, load_digits, load_text, sine_waves,
               train_test_split)
from .files import DataError, arrays_xy, class_labels, read_arrays, read_text

TASKS = ("digits", "text", "adding", "sine")
TEST_FRACTION = 0.2         # held-out share of the digits, synthetic and .npz data
TEXT_TEST_FRACTION = 0.1    # held-out tail of a text
DATA_SEED = 0               # data sets and splits do not depend on --seed: every model of a
                            # task is evaluated on the same test split

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

Split = tuple[np.ndarray, np.ndarray, np.ndarray | None]   # x, y, lengths


@dataclass
class Data:
    """A data set ready for a model: what the model must look like, and the splits."""

    task: str                     # digits | text | adding | sine | npz | txt
    head: str                     # many_to_one | many_to_many | one_to_many
    loss: str                     # cross_entropy | mse
    output_size: int
    train: Split
    test: Split
    input_size: int | None = None
    vocab: str | None = None      # the characters of a character model
    vocab_size: int | None = None   # token inputs
    params: dict = field(default_factory=dict)    # what rebuilds the split (saved)
    baseline: tuple[str, float] | None = None   # (what, value): a trivial predictor's test
                                                # loss or accuracy

    @property
    def forecasting(self) -> bool:
        """Whether each step's target is the next input (then reading backwards cheats)."""
        return self.task in ("text", "txt", "sine")


def npz_data(path: str, test_fraction: float = TEST_FRACTION,
             kind: str = "classify") -> Data:
    """A user's .npz (or .csv table, read into the same arrays) as a classification
    (``kind`` "classify": y class labels, integers or whole-number floats) or a regression
    ("regress": y values)."""
    x, y, lengths = arrays_xy(read_arrays(path, names=("x", "y", "lengths")), path)
    N, T = x.shape[:2]
    tokens = x.ndim == 2
    vocab_size = None
    if tokens:
        if x.dtype.kind not in "iu" or x.min() < 0:
            raise DataError(f"{path}: 2-D integer x must be tokens >= 0")
        vocab_size = int(x.max()) + 1
    if kind == "classify":
        if y.ndim == 1:
            head = "many_to_one"
        elif y.shape[:2] == (N, T) and y.ndim == 2:
            head = "many_to_many"
        else:
            raise DataError(f"{path}: class labels y must be (N,) one per sequence or "
                            f"(N, T) = ({N}, {T}) one per step, got shape {y.shape} (give "
                            f"--regress to fit values)")
        valid = np.ones(y.shape, bool) if head == "many_to_one" or lengths is None else \
            np.arange(T)[None, :] < lengths[:, None]
        y = class_labels(y, valid, path)
        labels = y[valid]
        if labels.size and labels.min() < 0:
            raise DataError(f"{path}: class labels y must be >= 0")
        loss, out = "cross_entropy", int(labels.max()) + 1 if labels.size else 1
    else:
        if y.dtype.kind != "f":
            y = y.astype(np.float64)
        if y.ndim == 3 or (y.ndim == 2 and y.shape == (N, T)):
            head = "many_to_many"
            if y.ndim == 2:
                y = y[..., None]
            if y.shape[:2] != (N, T):
                raise DataError(f"{path}: per-step targets y must be (N, T, C) with "
                                f"(N, T) = ({N}, {T}), got shape {y.shape}")
        elif y.ndim in (1, 2):
            head = "many_to_one"
            if y.ndim == 1:
                y = y[:, None]
        else:
            raise DataError(f"{path}: y has too many dimensions: {y.shape}")
        loss, out = "mse", int(y.shape[-1])
    if N < 2:
        raise DataError(f"{path}: needs at least 2 sequences (one to train on, one to "
                        f"test), got {N}")
    cols = [x, y] + ([lengths] if lengths is not None else [])
    parts = train_test_split(*cols, test_fraction=test_fraction, seed=DATA_SEED)
    tr = (parts[0], parts[2], parts[4] if lengths is not None else None)
    te = (parts[1], parts[3], parts[5] if lengths is not None else None)
    return Data("npz", head, loss, out, tr, te,
                input_size=None if tokens else int(x.shape[2]), vocab_size=vocab_size,
                params={"path": os.path.abspath(path), "test_fraction": test_fraction,
                        "kind": kind})


def text_windows(tokens: np.ndarray, seq_len: int,
                 what: str) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``seq_len`` tokens and their next tokens, as
    :func:`fastrnn.data.char_windows`; ``what`` names the text when it is too short."""
    if len(tokens) < seq_len + 1:
        raise DataError(f"{what} has {len(tokens)} characters, too few for windows of "
                        f"--seq-len {seq_len} (needs at least {seq_len + 1})")
    return char_windows(tokens, seq_len)


def refuse_unknown_characters(text: str, vocab: str, source: str) -> None:
    """Refuse a text with characters that a character model's ``vocab`` lacks."""
    unknown = sorted(set(text) - set(vocab))
    if unknown:
        raise DataError(f"{source} has characters the model does not know: "
                        f"{''.join(unknown[:10])!r}")


def text_data(task: str, text: str, source: str, seq_len: int, max_chars: int | None,
              params: dict, vocab: str | None = None) -> Data:
    """A character model's windows of a text: its first 90% to train on, its tail to test
    on; with ``vocab`` (a trained model's characters) the text must use only those."""
    if max_chars is not None:
        text = text[:max_chars]
    if not text:
        raise DataError(f"{source} is empty")
    v = CharVocab(vocab if vocab is not None else text)
    if vocab is not None:
        refuse_unknown_characters(text, vocab, source)
    tokens = v.encode(text)
    cut = int(len(tokens) * (1 - TEXT_TEST_FRACTION))
    x_tr, y_tr = text_windows(tokens[:cut], seq_len, f"the training part of {source}")
    x_te, y_te = text_windows(tokens[cut:], seq_len, f"the held-out tail of {source}")
    return Data(task, "one_to_many", "cross_entropy", v.size, (x_tr, y_tr, None),
                (x_te, y_te, None), vocab="".join(v.chars), vocab_size=v.size,
                params={**params, "seq_len": seq_len, "max_chars": max_chars})


def task_data(task: str, params: dict) -> Data:
    """The data of a task from its parameters (those saved with a model)."""
    if task == "digits":
        images, labels = load_digits()
        xtr, xte, ytr, yte = train_test_split(images, labels, test_fraction=TEST_FRACTION,
                                              seed=DATA_SEED)
        return Data("digits", "many_to_one", "cross_entropy", 10, (xtr, ytr, None),
                    (xte, yte, None), input_size=8, params={},
                    baseline=("guessing the most common class",
                              float(np.bincount(yte).max() / len(yte))))
    if task == "text":
        return text_data("text", load_text(), "the bundled text", params["seq_len"],
                         params.get("max_chars"), {}, params.get("vocab"))
    if task == "txt":
        return text_data("txt", read_text(params["path"]), params["path"], params["seq_len"],
                         params.get("max_chars"), {"path": params["path"]},
                         params.get("vocab"))
    if task == "npz":
        return npz_data(params["path"], params.get("test_fraction", TEST_FRACTION),
                        params.get("kind", "classify"))
    steps, samples = params["steps"], params["samples"]
    if samples < 2:
        raise DataError(f"--samples must be >= 2 (one to train on, one to test), got "
                        f"{samples}")
    if task == "adding":
        if steps < 2:
            raise DataError(f"the adding problem needs --steps >= 2, got {steps}")
        x, y = adding_problem(samples, steps, seed=DATA_SEED)
        xtr, xte, ytr, yte = train_test_split(x, y, test_fraction=TEST_FRACTION,
                                              seed=DATA_SEED)
        return Data("adding", "many_to_one", "mse", 1, (xtr, ytr, None), (xte, yte, None),
                    input_size=2, params={"steps": steps, "samples": samples},
                    baseline=("predicting 1 (the mean)", float(np.mean((yte - 1.0) ** 2))))
    if task == "sine":
        x, y = sine_waves(samples, steps, components=2, seed=DATA_SEED)
        xtr, xte, ytr, yte = train_test_split(x, y, test_fraction=TEST_FRACTION,
                                              seed=DATA_SEED)
        return Data("sine", "many_to_many", "mse", 1, (xtr, ytr, None), (xte, yte, None),
                    input_size=1, params={"steps": steps, "samples": samples},
                    baseline=("repeating the last value", float(np.mean((xte - yte) ** 2))))
    raise DataError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}, or give "
                    f"--data FILE")


def file_data(path: str, vocab: str | None,
              seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Everything in a user's file, as (x, y, lengths) for evaluating a model: a .txt as
    windows of ``seq_len`` characters of a character model's ``vocab`` (None: the model is
    not one), a .npz or .npy as its arrays x, y and optionally lengths."""
    if path.lower().endswith(".txt"):
        if vocab is None:
            raise DataError(f"--data {path} is text, but the model is not a character "
                            f"model")
        text = read_text(path)
        refuse_unknown_characters(text, vocab, path)
        x, y = text_windows(CharVocab(vocab).encode(text), seq_len, path)
        return x, y, None
    if not path.lower().endswith((".npz", ".npy", ".csv")):
        raise DataError(f"--data {path}: expected an .npz (arrays x, y[, lengths]), a "
                        f".csv table or a .txt")
    return arrays_xy(read_arrays(path, names=("x", "y", "lengths")), path)
