"""``fastrnn train``, ``evaluate``, ``predict`` and ``sample``: train a model on a task and
use a saved one."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import time
from collections.abc import Iterator

import numpy as np

from .. import optim, plot
from ..data import CharVocab
from ..data.files import (CSV_SEQUENCE, check_lengths, class_labels, describe, read_arrays,
                          refuse_nonfinite)
from ..data.tasks import TASK_DEFAULTS, TASK_KINDS, TASKS, Data, file_data, npz_data, task_data
from ..io import save
from ..models import Seq2Seq, SequenceModel
from .common import (EpochPrinter, UsageError, check_out, format_metrics, json_safe,
                     load_model, model_extra, model_kind, one_line, plot_note, printer,
                     same_file)


def _train_data(args: argparse.Namespace) -> Data:
    """The data that ``fastrnn train`` was asked for: a bundled task or --data FILE."""
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
        return task_data(args.task, params)
    path = args.data
    if path.lower().endswith(".txt"):
        if kind == "regress":
            raise UsageError(f"--regress does not apply to a text (--data {path}): a "
                             f"character model classifies each next character")
        return task_data("txt", {"path": os.path.abspath(path), "seq_len": args.seq_len,
                                  "max_chars": args.max_chars})
    if path.lower().endswith((".npz", ".csv")):
        return npz_data(path, kind=kind or "classify")
    raise UsageError(f"--data {path}: expected an .npz (arrays x, y[, lengths]), a .csv "
                     f"table or a .txt")


def _make_optimizer(name: str, params, lr: float, momentum: float | None,
                    weight_decay: float) -> optim.Optimizer:
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
                 dropout: float = 0.0, seed: int = 0) -> SequenceModel:
    kw: dict[str, int] = {}
    if d.vocab_size is not None:         # tokens, read through an embedding this wide
        width = min(32, max(8, d.vocab_size))
        kw = {"vocab_size": d.vocab_size, "embedding_dim": width}
    else:
        width = d.input_size or 0
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


def _save(path: str, model, optimizer, d: Data, history, metrics: dict) -> None:
    """Save a trained model; a failure says that the training is lost (UsageError)."""
    try:
        save(model, path, optimizer,
             extra=model_extra(d.task, d.params, d.vocab, history, metrics))
    except (OSError, ValueError, TypeError) as err:
        raise UsageError(f"--out {path}: training finished, but the model could not be "
                         f"saved ({one_line(err)}); it is lost") from None


def cmd_train(args: argparse.Namespace) -> int:
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
        check_out(args.out, ".npz", "a model file name must end in .npz")
        if args.data is not None and same_file(args.out, args.data):
            raise UsageError(f"--out {args.out} is the data file: the model would "
                             f"overwrite it")
    if args.plot:
        check_out(args.plot, option="--plot")

    model = _build_model(d, cell, hidden, args.layers, args.bidirectional, args.dropout,
                         args.seed)
    optimizer = _make_optimizer(args.optimizer, model.parameters(), lr, args.momentum,
                                args.weight_decay)
    x, y, lengths = d.train
    name = d.task if d.task in TASKS else os.path.basename(d.params.get("path", d.task))
    say = printer(args.quiet)
    say(f"training on {name}: {len(x)} sequences of {x.shape[1]} steps "
          f"({len(d.test[0])} held out); {model_kind(model)}, "
          f"{model.count_params()} parameters; "
          f"{args.optimizer} lr {lr:g}, batch {batch}", flush=True)
    progress = not (args.no_progress or args.quiet) and sys.stderr.isatty()
    start = time.perf_counter()
    history = model.fit(x, y, lengths, epochs=epochs, batch_size=batch, optimizer=optimizer,
                        validation_data=d.test, clip_norm=args.clip or None,
                        callbacks=[] if args.quiet else [EpochPrinter(epochs)],
                        progress=progress,
                        seed=args.seed)
    seconds = time.perf_counter() - start
    metrics = model.evaluate(*d.test)
    if history.stop_reason != "completed":
        print(f"note: {history.stop_reason}", flush=True,     # on stderr when quiet
              file=sys.stderr if args.quiet else sys.stdout)
    if args.out:
        _save(args.out, model, optimizer, d, history, metrics)
    if args.plot:
        try:
            path = plot.training_curves(history, args.plot,
                                        title=f"{name}: {model_kind(model)}")
            say(f"plot: {path}")
            if d.task == "sine":
                stem, ext = os.path.splitext(args.plot)
                xt, yt = d.test[0][:3], d.test[1][:3]
                path = plot.forecast(xt, yt, model.predict(xt), f"{stem}-forecast{ext}",
                                     title="sine: one-step forecasts of test sequences")
                say(f"plot: {path}")
        except plot.PlotUnavailable as err:
            plot_note(err)
    base = f"; {d.baseline[0]} scores {d.baseline[1]:.4f}" if d.baseline else ""
    saved = f"saved to {args.out}" if args.out else "not saved (give --out MODEL)"
    say(f"done: {name}, {model_kind(model)}, {history.epochs} epochs in {seconds:.1f} s; "
          f"test {format_metrics(metrics, d.loss)}{base}; {saved}", flush=True)
    return 0


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
    return task_data(task, params)


@contextlib.contextmanager
def _fits(data_path: str, model_path: str) -> Iterator[None]:
    """Turn the model's refusal of some data into a one-line UsageError naming both."""
    try:
        yield
    except (ValueError, TypeError) as err:
        raise UsageError(f"{data_path} does not fit the model {model_path}: {err}") from None


# ---------------------------------------------------------------------------------------
# using saved models
# ---------------------------------------------------------------------------------------

def cmd_evaluate(args: argparse.Namespace) -> int:

    model, extra = load_model(args.model)
    if args.data is not None:
        if isinstance(model, Seq2Seq):
            arrays = read_arrays(args.data, names=("src", "tgt", "src_lengths", "tgt_lengths"))
            if "src" not in arrays or "tgt" not in arrays:
                raise UsageError(f"{args.data}: an encoder-decoder is evaluated on arrays "
                                 f"src and tgt (and optionally src_lengths, tgt_lengths)")
            with _fits(args.data, args.model):
                metrics = model.evaluate(arrays["src"], arrays["tgt"],
                                         arrays.get("src_lengths"), arrays.get("tgt_lengths"),
                                         batch_size=args.batch_size)
            where = args.data
        else:
            seq_len = (extra.get("task_params") or {}).get("seq_len", 64)
            x, y, lengths = file_data(args.data, extra.get("vocab"), seq_len)
            if model.loss.name == "mse" and y.dtype.kind == "f" and y.ndim == 2 \
                    and model.head.per_step and y.shape == x.shape[:2]:
                y = y[..., None]
            if model.loss.name == "cross_entropy" and y.dtype.kind == "f":
                # whole-number floats are class labels, as in `fastrnn train --classify`
                valid = np.ones(y.shape, bool)
                if lengths is not None and y.ndim == 2 and y.shape == x.shape[:2]:
                    valid = np.arange(y.shape[1])[None, :] < lengths[:, None]
                y = class_labels(y, valid, args.data)
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
        print(json.dumps(json_safe(metrics), allow_nan=False))
    else:
        print(f"{args.model} on {where}: {format_metrics(metrics, model.loss.name)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.out:
        if not args.out.lower().endswith((".npy", ".npz", ".txt", ".csv")):
            raise UsageError(f"--out {args.out}: use a .npy, .npz, .txt or .csv name")
        check_out(args.out)
        for given in (args.input, args.model):
            if same_file(args.out, given):
                raise UsageError(f"--out {args.out} is {given}: the predictions would "
                                 f"overwrite it")
    model, _ = load_model(args.model)
    arrays = read_arrays(args.input, "input")
    if "x" in arrays:
        x = arrays["x"]
    elif len(arrays) == 1:
        x = next(iter(arrays.values()))
    else:
        raise UsageError(f"{args.input} holds {sorted(arrays)}; name the sequences x")
    if x.dtype.kind not in "fiub":
        raise UsageError(f"{args.input}: the sequences must be numbers, got {describe(x)}")
    lengths = arrays.get("lengths")
    names = arrays.get(CSV_SEQUENCE)                    # a CSV table's sequence names
    per_step = False
    if isinstance(model, Seq2Seq):
        if args.proba:
            raise UsageError("--proba does not apply to an encoder-decoder")
        if x.ndim != 2 or x.dtype.kind not in "iu":
            raise UsageError(f"{args.input}: an encoder-decoder reads integer tokens (N, S), "
                             f"got {describe(x)}")
        lengths = check_lengths(lengths, x.shape[0], x.shape[1], args.input)
        with _fits(args.input, args.model):
            out = model.predict(x, lengths, max_length=args.max_length or x.shape[1])
        lengths = None
    else:
        if model.embedding is None and x.ndim == 2 and model.rnn.input_size == 1:
            x = x[..., None]
        if model.embedding is not None and x.ndim == 3 and x.shape[2] == 1 and \
                x.dtype.kind == "f" and np.all(x == np.round(x)):
            x = x[..., 0].astype(np.int64)              # a CSV column of whole numbers
        if x.ndim < 2:
            raise UsageError(f"{args.input}: expected sequences (N, T, features) or tokens "
                             f"(N, T), got {describe(x)}")
        lengths = check_lengths(lengths, x.shape[0], x.shape[1], args.input)
        refuse_nonfinite(x, "x", args.input, lengths)
        with _fits(args.input, args.model):
            out = model.predict_proba(x, lengths, args.batch_size) if args.proba else \
                model.predict(x, lengths, args.batch_size)
        per_step = model.head.per_step
    if args.out:
        low = args.out.lower()
        if low.endswith(".npy"):
            np.save(args.out, out)
        elif low.endswith(".npz") and lengths is not None:
            np.savez(args.out, predictions=out, lengths=lengths)
        elif low.endswith(".npz"):
            np.savez(args.out, predictions=out)
        elif low.endswith(".csv"):
            with open(args.out, "w", newline="") as f:
                _write_csv(out, lengths if per_step else None,
                           per_step or isinstance(model, Seq2Seq), names,
                           "proba" if args.proba else "prediction", f)
        else:
            with open(args.out, "w") as f:
                _print_predictions(out, lengths if per_step else None, f)
        printer(args.quiet)(f"{len(out)} predictions {out.shape} written to {args.out}")
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


def _write_csv(a: np.ndarray, lengths, per_step: bool, names, label: str, out) -> None:
    """A CSV table of predictions with a header: ``sequence`` (the input table's names,
    else the index), ``step`` for per-step outputs (only the valid steps, given lengths),
    then ``label`` (one value) or ``label_0``, ``label_1``, ... (one per class or output);
    numbers written as their shortest exact text."""
    width = a.shape[-1] if a.ndim == (3 if per_step else 2) else 1
    values = [label] if width == 1 else [f"{label}_{j}" for j in range(width)]
    writer = csv.writer(out)
    writer.writerow(["sequence"] + (["step"] if per_step else []) + values)
    for i, row in enumerate(a):
        name = names[i] if names is not None else i
        if not per_step:
            writer.writerow([name, *map(str, np.atleast_1d(row))])
            continue
        for t in range(int(lengths[i]) if lengths is not None else row.shape[0]):
            writer.writerow([name, t, *map(str, np.atleast_1d(row[t]))])


def cmd_sample(args: argparse.Namespace) -> int:
    model, extra = load_model(args.model)
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
