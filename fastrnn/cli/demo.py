"""``fastrnn demo``: the tour -- a digit classifier and a character model, trained, saved,
shown at work and plotted."""

from __future__ import annotations

import argparse
import math
import os
import textwrap
import time

import numpy as np

from .. import plot
from .._runtime import blas_info
from .._version import __version__
from ..data import CharVocab, char_windows, load_digits, load_text, train_test_split
from ..data.tasks import DATA_SEED, TEST_FRACTION, TEXT_TEST_FRACTION
from ..callbacks import LearningRateScheduler
from ..io import load, save
from ..models import SequenceModel
from ..optim import Adam, CosineAnnealingLR
from .common import EpochPrinter, UsageError, model_extra, plot_note
from .info import cpu_info

SHADES = " .:-=+*#%@"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


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


def _demo_digits(args: argparse.Namespace, out_dir: str) -> dict:
    images, labels = load_digits()
    xtr, xte, ytr, yte = train_test_split(images, labels, test_fraction=TEST_FRACTION,
                                          seed=DATA_SEED)
    hidden, epochs = (16, 1) if args.quick else (64, args.epochs)
    model = SequenceModel.build("lstm", input_size=8, hidden_size=hidden, output_size=10,
                                head="many_to_one", seed=args.seed)
    print(f"\n[1/2] Handwritten digits, each 8x8 image read one row of 8 pixels per time "
          f"step\n      by an LSTM with {hidden} hidden units (many-to-one: the class is "
          f"read after the last row).\n      {len(xtr)} training images, {len(xte)} test "
          f"images; Adam, lr 0.01 on a cosine schedule, batch 32, {_count(epochs, 'epoch')}.",
          flush=True)
    optimizer = Adam(model.parameters(), lr=1e-2)
    schedule = LearningRateScheduler(CosineAnnealingLR(optimizer, T_max=epochs))
    start = time.perf_counter()
    history = model.fit(xtr, ytr, epochs=epochs, batch_size=32, optimizer=optimizer,
                        validation_data=(xte, yte), clip_norm=5.0, seed=args.seed,
                        progress=False,
                        callbacks=[schedule, EpochPrinter(epochs, max(1, epochs // 5))])
    seconds = time.perf_counter() - start
    metrics = model.evaluate(xte, yte)
    right = int(round(metrics["accuracy"] * len(yte)))
    print(f"test accuracy {metrics['accuracy']:.1%} ({right} of {len(yte)} test images), "
          f"trained in {seconds:.1f} s", flush=True)

    path = os.path.join(out_dir, "digits.npz")
    save(model, path, optimizer, extra=model_extra("digits", {}, None, history, metrics))
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
        plot_note(err)
    return metrics


def _demo_text(args: argparse.Namespace, out_dir: str) -> None:
    text = load_text()
    v = CharVocab(text)
    tokens = v.encode(text)
    cut = int(len(tokens) * (1 - TEXT_TEST_FRACTION))
    seq_len, batch = 64, 64
    hidden, epochs, length = (32, 1, 120) if args.quick else (128, args.text_epochs, 500)
    x, y = char_windows(tokens[:cut], seq_len)
    xv, yv = char_windows(tokens[cut:], seq_len)
    model = SequenceModel.build("gru", vocab_size=v.size, embedding_dim=32,
                                hidden_size=hidden, output_size=v.size, head="one_to_many",
                                seed=args.seed)
    steps = epochs * math.ceil(len(x) / batch)
    print(f"\n[2/2] A character model of the Book of Genesis (King James Version, "
          f"{len(text) // 1000} kB, {v.size} distinct characters):\n      a GRU with "
          f"{hidden} hidden units reads {seq_len} characters and predicts each next one "
          f"(one-to-many);\n      {len(x)} windows of the first 90% for training, the last "
          f"10% held out; Adam, lr 0.004 on a cosine\n      schedule stepped every batch of "
          f"{batch} windows, {_count(epochs, 'epoch')} ({steps} steps).", flush=True)
    optimizer = Adam(model.parameters(), lr=4e-3)
    schedule = LearningRateScheduler(CosineAnnealingLR(optimizer, T_max=steps),
                                     interval="step")
    history = model.fit(x, y, epochs=epochs, batch_size=batch, optimizer=optimizer,
                        validation_data=(xv, yv), clip_norm=5.0, seed=args.seed,
                        progress=False,
                        callbacks=[schedule, EpochPrinter(epochs, max(1, epochs // 5))])
    metrics = {"loss": history["val_loss"][-1], "accuracy": history["val_accuracy"][-1]}
    print(f"held-out text: {metrics['loss']:.3f} nats per character (perplexity "
          f"{math.exp(metrics['loss']):.1f} of {v.size}), next character right "
          f"{metrics['accuracy']:.1%} of the time", flush=True)
    path = os.path.join(out_dir, "genesis.npz")
    save(model, path, optimizer, extra=model_extra("text", {"seq_len": seq_len,
                                                           "max_chars": None},
                                                   "".join(v.chars), history, metrics))
    print(f"saved the model with its vocabulary to {path}", flush=True)
    try:
        p = plot.training_curves(history, os.path.join(out_dir, "text_training.png"),
                                 title=f"Genesis: GRU {hidden}, one-to-many",
                                 xlabel=f"epoch ({steps // epochs} steps of {batch} windows)")
        print(f"training curves: {p}", flush=True)
    except plot.PlotUnavailable as err:
        plot_note(err)
    prime = "And God said"
    passage = prime + v.decode(model.generate(v.encode(prime), length, temperature=0.7,
                                              seed=args.seed))
    print(f"\na passage it wrote (prime {prime!r}, temperature 0.7):\n")
    for line in passage.splitlines():
        print(textwrap.fill(line, width=88, initial_indent="    ", subsequent_indent="    ")
              if line.strip() else "")


def cmd_demo(args: argparse.Namespace) -> int:
    out_dir = args.out_dir
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out-dir {out_dir}: {err.strerror}") from None
    b = blas_info()
    cpu = cpu_info()
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
