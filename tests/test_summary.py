"""Tests of model.summary(): one row a part with its type, output shape (None for the
batch and time axes) and parameter count, and the total, for every kind of model."""

import re

import numpy as np
import pytest

import fastrnn


def summary_of(model):
    lines = []
    model.summary(print_fn=lines.append)
    assert len(lines) == 1
    return lines[0]


def rows(text):
    """(name, type, shape, count) of each row of the table."""
    out = []
    for line in text.splitlines():
        m = re.match(r"(\S+) \((\w+)\)\s+(\(.*?\))\s+([\d,]+)$", line)
        if m:
            out.append((m[1], m[2], m[3], int(m[4].replace(",", ""))))
    return out


def test_sequence_model_summary():
    model = fastrnn.SequenceModel.build("lstm", vocab_size=30, embedding_dim=8,
                                        hidden_size=16, output_size=5, head="many_to_one",
                                        num_layers=2, bidirectional=True, seed=0)
    text = summary_of(model)
    assert text.startswith("Model: SequenceModel\n")
    assert rows(text) == [
        ("embedding", "Embedding", "(None, None, 8)", model.embedding.count_params()),
        ("rnn", "LSTM", "(None, None, 32)", model.rnn.count_params()),
        ("head", "ManyToOne", "(None, 5)", 165)]
    total = model.count_params()
    assert total == 240 + model.rnn.count_params() + 165
    assert text.endswith(f"Total params: {total:,} ({total * 4 / 1024:.1f} KiB)")
    # what the shapes say is what the model gives, batch and time filled in
    assert model.forward(np.zeros((3, 7), np.int64)).shape == (3, 5)


def test_per_step_and_seq2seq_summaries():
    m = fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=4, output_size=2,
                                    head="many_to_many", loss="mse", dtype=np.float64)
    assert rows(summary_of(m)) == [("rnn", "GRU", "(None, None, 4)", 108),
                                   ("head", "ManyToMany", "(None, None, 2)", 10)]
    assert "Total params: 118 (944 B)" in summary_of(m)
    s2s = fastrnn.Seq2Seq.build("gru", src_vocab=6, tgt_vocab=7, hidden_size=5, seed=0)
    r = rows(summary_of(s2s))
    assert [x[0] for x in r] == ["src_embedding", "encoder", "tgt_embedding", "decoder",
                                 "head"]
    assert r[-1] == ("head", "ManyToMany", "(None, None, 7)", 42)
    assert sum(x[3] for x in r) == s2s.count_params()


@pytest.mark.parametrize("layers,first,shapes", [
    (lambda: [fastrnn.Embedding(20, 8), fastrnn.LSTM(8, 16), fastrnn.AttentionPooling(16, 8),
              fastrnn.Linear(16, 3)], "tokens",
     ["(None, None, 8)", "(None, None, 16)", "(None, 16)", "(None, 3)"]),
    (lambda: [fastrnn.Tanh(), fastrnn.Bidirectional(fastrnn.GRU(4, 6)),
              fastrnn.Residual(fastrnn.Linear(12, 12)), fastrnn.TimePooling("last"),
              fastrnn.Linear(12, 2)], 4,
     ["(None, None, 4)", "(None, None, 12)", "(None, None, 12)", "(None, 12)", "(None, 2)"]),
    (lambda: [fastrnn.Concatenate(fastrnn.Linear(3, 2), fastrnn.Tanh()), fastrnn.GRU(5, 2)],
     3, ["(None, None, 5)", "(None, None, 2)"]),
])
def test_sequential_summary_shapes_are_those_of_a_batch(layers, first, shapes):
    model = fastrnn.Sequential(layers())
    r = rows(summary_of(model))
    assert [x[2] for x in r] == shapes
    assert [x[3] for x in r] == [layer.count_params() for layer in model]
    assert [x[0] for x in r] == [str(i) for i in range(len(model))]
    x = np.zeros((3, 6), np.int64) if first == "tokens" else np.zeros((3, 6, first),
                                                                       np.float32)
    y = model(x)
    want = shapes[-1].strip("()").split(", ")
    assert y.ndim == len(want) and str(y.shape[-1]) == want[-1]


def test_sequential_of_named_layers_with_a_head():
    model = fastrnn.Sequential({"emb": fastrnn.Embedding(9, 4, seed=0),
                                "rnn": fastrnn.GRU(4, 6, seed=1),
                                "head": fastrnn.heads.ManyToOne(6, 3, seed=2),
                                "act": fastrnn.Tanh()})
    assert rows(summary_of(model)) == [("emb", "Embedding", "(None, None, 4)", 36),
                                       ("rnn", "GRU", "(None, None, 6)", 216),
                                       ("head", "ManyToOne", "(None, 3)", 21),
                                       ("act", "Tanh", "(None, 3)", 0)]
    assert model(np.zeros((2, 5), np.int64)).shape == (2, 3)


def test_sequential_without_time_or_width():
    dense = fastrnn.Sequential([fastrnn.Linear(4, 8), fastrnn.ReLU(), fastrnn.Linear(8, 2)])
    # no layer says whether there is a time axis: its place is left open
    assert [x[2] for x in rows(summary_of(dense))] == ["(None, ..., 8)"] * 2 + \
        ["(None, ..., 2)"]
    act = fastrnn.Sequential([fastrnn.ReLU(), fastrnn.Tanh()])
    text = summary_of(act)
    assert re.search(r"^0 \(ReLU\)\s+\?\s+0$", text, re.M)
    assert text.endswith("Total params: 0 (0 B)")


def test_summary_prints_by_default(capsys):
    fastrnn.SequenceModel.build("rnn", input_size=1, hidden_size=2, output_size=1).summary()
    assert capsys.readouterr().out.startswith("Model: SequenceModel\n")
