"""Interrupted training loses nothing.

An exception or KeyboardInterrupt raised from a callback, in the middle of an epoch, or in
the middle of writing a checkpoint leaves the last checkpoint loadable; resuming from it
with ``fit(..., seed=<the same>, initial_epoch=<the checkpoint's epoch + 1>)`` ends with
exactly the weights (and the per-epoch history) of the run that was never interrupted.
"""

import os

import numpy as np
import pytest

import fastrnn
from fastrnn import ModelCheckpoint, load_checkpoint, optim
from fastrnn.training import Callback

EPOCHS = 5
SEED = 3


def data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((30, 8, 3)).astype(np.float32),
            rng.integers(0, 4, (30, 8)))


def new_model():
    return fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=10, output_size=4,
                                       num_layers=2, seed=1)


FIT = dict(batch_size=7, progress=False, clip_norm=1.0, seed=SEED)


class Logs(Callback):
    def __init__(self):
        self.logs = {}

    def on_epoch_end(self, model, epoch, logs):
        self.logs[epoch] = logs


def uninterrupted():
    x, y = data()
    model = new_model()
    rec = Logs()
    model.fit(x, y, epochs=EPOCHS, optimizer=optim.Adam(model.parameters(), lr=1e-2),
              callbacks=[rec], **FIT)
    return model, rec.logs


def resume(path, logs):
    """Load the last checkpoint and train to the end, as a user would."""
    x, y = data()
    model, opt, extra = load_checkpoint(path)
    rec = Logs()
    h = model.fit(x, y, epochs=EPOCHS, optimizer=opt, initial_epoch=extra["epoch"] + 1,
                  callbacks=[rec], **FIT)
    assert h.epochs == EPOCHS - extra["epoch"] - 1
    logs.update(rec.logs)
    return model, extra


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


class Interrupt(Callback):
    def __init__(self, epoch, error):
        self.epoch, self.error, self.ended = epoch, error, False

    def on_epoch_end(self, model, epoch, logs):
        if epoch == self.epoch:
            raise self.error

    def on_train_end(self, model):
        self.ended = True


@pytest.mark.parametrize("error", [RuntimeError("callback failed"), KeyboardInterrupt()],
                         ids=["exception", "keyboard_interrupt"])
def test_interrupt_from_a_callback(tmp_path, error):
    straight, straight_logs = uninterrupted()
    x, y = data()
    model = new_model()
    path = tmp_path / "ck.npz"
    stop = Interrupt(2, error)
    rec = Logs()
    # the checkpoint callback runs after the interrupting one: epoch 2 is never saved
    with pytest.raises(type(error)):
        model.fit(x, y, epochs=EPOCHS, optimizer=optim.Adam(model.parameters(), lr=1e-2),
                  callbacks=[rec, stop, ModelCheckpoint(path)], **FIT)
    assert stop.ended                                  # on_train_end ran all the same
    resumed, extra = resume(path, rec.logs)
    assert extra["epoch"] == 1
    assert_same_weights(resumed, straight)
    assert rec.logs == straight_logs


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()],
                         ids=["exception", "keyboard_interrupt"])
def test_interrupt_in_the_middle_of_an_epoch(tmp_path, error):
    straight, straight_logs = uninterrupted()
    x, y = data()
    model = new_model()
    path = tmp_path / "ck.npz"
    batches = 0
    train_batch = model._train_batch

    def failing(*args, **kwargs):
        nonlocal batches
        batches += 1
        if batches == 3 * 5 + 2:                  # the 2nd batch of epoch 3 (5 a epoch)
            raise error
        return train_batch(*args, **kwargs)

    model._train_batch = failing
    rec = Logs()
    with pytest.raises(type(error)):
        model.fit(x, y, epochs=EPOCHS, optimizer=optim.Adam(model.parameters(), lr=1e-2),
                  callbacks=[rec, ModelCheckpoint(path)], **FIT)
    # the weights in memory are half-way through epoch 3; the file holds epoch 2's end
    resumed, extra = resume(path, rec.logs)
    assert extra["epoch"] == 2
    assert_same_weights(resumed, straight)
    assert rec.logs == straight_logs


def test_interrupt_while_writing_a_checkpoint(tmp_path, monkeypatch):
    """KeyboardInterrupt inside the third checkpoint write: the second stays whole and
    loadable, no temporary file is left, and resuming from it is exact."""
    straight, straight_logs = uninterrupted()
    x, y = data()
    model = new_model()
    path = tmp_path / "ck.npz"
    writes = 0
    savez = np.savez

    def interrupted_savez(f, *args, **kwargs):
        nonlocal writes
        writes += 1
        if writes == 3:
            f.write(b"PK\x03\x04 half a file")
            raise KeyboardInterrupt
        return savez(f, *args, **kwargs)

    monkeypatch.setattr(np, "savez", interrupted_savez)
    rec = Logs()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=EPOCHS, optimizer=optim.Adam(model.parameters(), lr=1e-2),
                  callbacks=[rec, ModelCheckpoint(path)], **FIT)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ck.npz"]
    del rec.logs[2]                                   # epoch 2 ended, but was not saved
    resumed, extra = resume(path, rec.logs)
    assert extra["epoch"] == 1
    assert_same_weights(resumed, straight)
    assert rec.logs == straight_logs


def test_resuming_needs_initial_epoch_when_shuffling(tmp_path):
    """Why ``initial_epoch``: fit(seed=s) draws epoch e's order as the e-th permutation of
    a generator seeded by s, so a resumed call must skip the orders already used."""
    straight, _ = uninterrupted()
    x, y = data()
    model = new_model()
    path = tmp_path / "ck.npz"
    model.fit(x, y, epochs=2, optimizer=optim.Adam(model.parameters(), lr=1e-2),
              callbacks=[ModelCheckpoint(path)], **FIT)
    naive, opt, _ = load_checkpoint(path)
    naive.fit(x, y, epochs=EPOCHS - 2, optimizer=opt, **FIT)       # restarts the orders
    assert any(not np.array_equal(a, b) for a, b in
               zip(naive.state_dict().values(), straight.state_dict().values()))
    exact, _ = resume(path, {})
    assert_same_weights(exact, straight)


def test_seq2seq_resumes_exactly(tmp_path):
    from fastrnn.data import copy_task
    src, tgt = copy_task(40, 5, vocab=7, seed=0)

    def build():
        return fastrnn.Seq2Seq.build("gru", src_vocab=7, tgt_vocab=7, hidden_size=8, seed=2)

    kw = dict(batch_size=8, progress=False, seed=4)
    straight = build()
    straight.fit(src, tgt, epochs=4, optimizer=optim.RMSprop(straight.parameters(), lr=1e-2),
                 **kw)
    model = build()
    path = tmp_path / "s2s.npz"
    with pytest.raises(KeyboardInterrupt):
        model.fit(src, tgt, epochs=4, optimizer=optim.RMSprop(model.parameters(), lr=1e-2),
                  callbacks=[ModelCheckpoint(path), Interrupt(1, KeyboardInterrupt())], **kw)
    resumed, opt, extra = load_checkpoint(path)
    assert extra["epoch"] == 1
    resumed.fit(src, tgt, epochs=4, optimizer=opt, initial_epoch=2, **kw)
    assert_same_weights(resumed, straight)


def test_initial_epoch_checks():
    x, y = data()
    model = new_model()
    before = model.state_dict()
    h = model.fit(x, y, epochs=3, initial_epoch=3, progress=False)
    assert h.epochs == 0 and h.history == {}
    np.testing.assert_equal(model.state_dict(), before)
    for bad, err in ((4, ValueError), (-1, ValueError), (1.0, TypeError), (True, TypeError),
                     ("1", TypeError)):
        with pytest.raises(err, match="initial_epoch"):
            model.fit(x, y, epochs=3, initial_epoch=bad, progress=False)
