"""The same seed gives bit-identical results on one machine: initial weights, shuffles,
dropout masks, sampling and whole training histories.  Different seeds give different
ones (the seeds are used, not ignored)."""

import numpy as np
import pytest

import fastrnn
from fastrnn import optim


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


BUILDERS = {
    "layers": lambda s: [fastrnn.RNN(3, 4, num_layers=2, nonlinearity="relu", seed=s),
                         fastrnn.LSTM(3, 4, bidirectional=True, seed=s),
                         fastrnn.GRU(3, 4, dtype=np.float64, seed=s)],
    "cells": lambda s: [fastrnn.RNNCell(3, 4, seed=s), fastrnn.LSTMCell(3, 4, seed=s),
                        fastrnn.GRUCell(3, 4, seed=s)],
    "dense": lambda s: [fastrnn.Linear(3, 4, seed=s), fastrnn.Embedding(5, 3, seed=s)],
    "models": lambda s: [fastrnn.SequenceModel.build("lstm", vocab_size=7, hidden_size=5,
                                                     output_size=7, num_layers=2, seed=s),
                         fastrnn.Seq2Seq.build("gru", src_vocab=5, tgt_vocab=6,
                                               hidden_size=4, seed=s)],
}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_initial_weights(kind):
    for a, b, c in zip(BUILDERS[kind](11), BUILDERS[kind](11), BUILDERS[kind](12)):
        assert same(a.state_dict(), b.state_dict())
        assert not same(a.state_dict(), c.state_dict())


def record_batches(model, x, y, **kwargs):
    """The rows of every mini-batch fit draws (via the sample index stored in x)."""
    seen = []
    original = model._train_batch

    def spy(batch, *args, **kw):
        seen.append(batch[0][:, 0, 0].astype(int).tolist())
        return original(batch, *args, **kw)

    model._train_batch = spy
    model.fit(x, y, progress=False, **kwargs)
    return seen


def test_shuffles():
    x = np.zeros((20, 3, 2))
    x[:, 0, 0] = np.arange(20)
    y = np.zeros((20, 3), np.int64)

    def model():
        return fastrnn.SequenceModel.build("rnn", input_size=2, hidden_size=3, output_size=2,
                                           seed=0, dtype=np.float64)

    kw = dict(epochs=3, batch_size=6, optimizer=None)
    a = record_batches(model(), x, y, seed=5, **kw)
    b = record_batches(model(), x, y, seed=5, **kw)
    c = record_batches(model(), x, y, seed=6, **kw)
    assert a == b and a != c
    assert len(a) == 12 and all(sorted(sum(a[e * 4:(e + 1) * 4], [])) == list(range(20))
                                for e in range(3))
    assert a[:4] != a[4:8]                       # each epoch has its own order


def test_dropout_masks():
    x = np.random.default_rng(0).standard_normal((6, 4, 3))

    def runs(seed):
        layer = fastrnn.LSTM(3, 8, num_layers=3, dropout=0.5, dtype=np.float64, seed=seed)
        out = []
        for _ in range(3):
            y, _, backward = layer.forward_train(x)
            backward(np.ones_like(y))
            out.append((y, [p.grad.copy() for p in layer.parameters()]))
        return out

    a, b, c = runs(3), runs(3), runs(4)
    for (ya, ga), (yb, gb) in zip(a, b):
        np.testing.assert_array_equal(ya, yb)
        for u, v in zip(ga, gb):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0][0], a[1][0])     # a new mask every call
    assert not np.array_equal(a[0][0], c[0][0])
    # inference applies no dropout: the same every time
    layer = fastrnn.LSTM(3, 8, num_layers=3, dropout=0.5, dtype=np.float64, seed=3)
    np.testing.assert_array_equal(layer(x)[0], layer(x)[0])


CONFIGS = {
    "lstm-dropout-shuffle": dict(build=dict(cell="lstm", num_layers=2, dropout=0.3),
                                 fit=dict(seed=1)),
    "gru-bi-m2o-lengths": dict(build=dict(cell="gru", bidirectional=True, head="many_to_one"),
                               fit=dict(seed=2), lengths=True),
    "rnn-relu-tbptt-clip": dict(build=dict(cell="rnn", nonlinearity="relu"),
                                fit=dict(seed=3, tbptt=4, clip_norm=0.5)),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_training_histories(name):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 10, 3)).astype(np.float32)
    m2o = cfg["build"].get("head") == "many_to_one"
    y = rng.integers(0, 3, 40 if m2o else (40, 10))
    lengths = rng.integers(1, 11, 40) if cfg.get("lengths") else None

    def train(seed_offset=0):
        build = dict(cfg["build"])
        cell = build.pop("cell")
        m = fastrnn.SequenceModel.build(cell, input_size=3, hidden_size=12, output_size=3,
                                        seed=7 + seed_offset, **build)
        fit = dict(cfg["fit"])
        fit["seed"] += seed_offset
        h = m.fit(x, y, lengths, epochs=3, batch_size=8, progress=False,
                  validation_data=(x[:10], y[:10]) if lengths is None else None,
                  optimizer=optim.AdamW(m.parameters(), lr=1e-2), **fit)
        return h, m.state_dict()

    (h1, w1), (h2, w2), (h3, w3) = train(), train(), train(1)
    assert h1.history == h2.history and h1.stop_reason == h2.stop_reason
    assert same(w1, w2)
    assert h1.history != h3.history and not same(w1, w3)


def test_seq2seq_training_and_generation():
    from fastrnn.data import copy_task
    src, tgt = copy_task(64, 5, vocab=8, seed=0)

    def train():
        m = fastrnn.Seq2Seq.build("lstm", src_vocab=8, tgt_vocab=8, hidden_size=16, seed=1)
        h = m.fit(src, tgt, epochs=2, batch_size=16, progress=False, seed=2)
        return h.history, m.state_dict(), m.predict(src[:4], max_length=5)

    a, b = train(), train()
    assert a[0] == b[0] and same(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    lm = fastrnn.SequenceModel.build("gru", vocab_size=9, hidden_size=8, output_size=9, seed=0)
    g1 = lm.generate([1, 2, 3], 30, temperature=1.0, top_k=5, seed=4)
    g2 = lm.generate([1, 2, 3], 30, temperature=1.0, top_k=5, seed=4)
    g3 = lm.generate([1, 2, 3], 30, temperature=1.0, top_k=5, seed=5)
    np.testing.assert_array_equal(g1, g2)
    assert not np.array_equal(g1, g3)


def test_repeated_inference_is_bit_identical():
    """The same call twice, in one process, gives the same bits (no hidden state, no
    run-to-run variation in the kernels' reductions)."""
    layer = fastrnn.LSTM(16, 64, num_layers=2, bidirectional=True, seed=0)
    x = np.random.default_rng(1).standard_normal((30, 48, 16)).astype(np.float32)
    lengths = np.random.default_rng(2).integers(1, 31, 48)
    first = layer(x, lengths=lengths)
    for _ in range(3):
        again = layer(x, lengths=lengths)
        np.testing.assert_array_equal(again[0], first[0])
        np.testing.assert_array_equal(again[1][0], first[1][0])
