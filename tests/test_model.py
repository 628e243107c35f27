"""Tests of fastrnn.models, fastrnn.training and fastrnn.streaming: the training loop
(History, seeds, progress, layouts, lengths, truncated BPTT, callbacks, non-finite
numbers), inference (predict, predict_proba, evaluate, generate), streaming (Stepper), the
encoder-decoder (Seq2Seq) and bad input."""

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastrnn
from fastrnn.losses import softmax
from fastrnn.training import Callback
from fastrnn.optim import SGD, Adam
from _tools import central_differences

I, H, C = 3, 5, 4


def build(cell="gru", head="many_to_one", loss="cross_entropy", dtype=np.float64, seed=0,
          output_size=C, **kwargs):
    if "vocab_size" not in kwargs:
        kwargs.setdefault("input_size", I)
    return fastrnn.SequenceModel.build(cell, hidden_size=H, output_size=output_size,
                                       head=head, loss=loss, dtype=dtype, seed=seed,
                                       **kwargs)


def classification(n=40, t=6, seed=0, per_step=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, t, I))
    y = rng.integers(0, C, (n, t) if per_step else n)
    return x, y


def weights(model):
    return [p.data.copy() for p in model.parameters()]


def assert_same_weights(a, b):
    wa = weights(a) if not isinstance(a, list) else a
    wb = weights(b) if not isinstance(b, list) else b
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        np.testing.assert_array_equal(u, v)


def differs(a, b):
    return any(not np.array_equal(u, v) for u, v in zip(weights(a), weights(b)))


class Recorder(Callback):
    """Keeps the weights and logs at the end of every epoch."""

    def __init__(self):
        self.states, self.logs, self.began, self.ended = [], [], 0, 0

    def on_train_begin(self, model, optimizer):
        self.began += 1
        self.initial = model.state_dict()

    def on_epoch_end(self, model, epoch, logs):
        self.states.append(model.state_dict())
        self.logs.append(dict(logs))

    def on_train_end(self, model):
        self.ended += 1


def fit(model, *args, **kwargs):
    kwargs.setdefault("progress", False)
    return model.fit(*args, **kwargs)


# ---------------------------------------------------------------------------- History


def test_fit_returns_history_per_epoch():
    model = build()
    x, y = classification()
    vx, vy = classification(n=15, seed=1)
    h = fit(model, x, y, epochs=3, batch_size=8, validation_data=(vx, vy), seed=0)
    assert isinstance(h, fastrnn.History)
    assert h.epochs == 3 and h.stop_reason == "completed"
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for key, values in h.history.items():
        assert len(values) == 3 and all(isinstance(v, float) and math.isfinite(v)
                                        for v in values), key
    assert all(0 <= a <= 1 for a in h["accuracy"] + h["val_accuracy"])
    assert h["loss"] is h.history["loss"]
    # the last validation figures are those of the final weights
    final = model.evaluate(vx, vy)
    assert_allclose(h["val_loss"][-1], final["loss"], rtol=1e-12)
    assert h["val_accuracy"][-1] == final["accuracy"]
    # without validation data: only the training figures
    h2 = fit(build(), x, y, epochs=2, batch_size=8, seed=0)
    assert set(h2.history) == {"loss", "accuracy"}
    assert h2["loss"] == h["loss"][:2]


def test_history_loss_is_the_mean_over_the_epoch():
    """With lr=0 the weights stay put, so an epoch's figures are evaluate's."""
    model = build(head="many_to_many")
    x, y = classification(per_step=True)
    lengths = np.random.default_rng(3).integers(1, 7, 40)
    h = fit(model, x, y, lengths, epochs=2, batch_size=7, optimizer=SGD(model.parameters(),
                                                                        lr=0.0), seed=0)
    ev = model.evaluate(x, y, lengths)
    assert_allclose(h["loss"], [ev["loss"]] * 2, rtol=1e-12)
    valid = np.arange(6)[None, :] < lengths[:, None]
    acc = (model.predict(x, lengths) == y)[valid].mean()
    assert_allclose(h["accuracy"], [acc] * 2, rtol=1e-14)


def test_history_of_regression_and_binary_models():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 4, I))
    reg = build(loss="mse", output_size=2)
    h = fit(reg, x, rng.standard_normal((20, 2)), epochs=2, batch_size=5,
            validation_data=(x[:6], rng.standard_normal((6, 2))))
    assert set(h.history) == {"loss", "val_loss"}
    binary = build(loss="bce_with_logits", output_size=3)
    h = fit(binary, x, rng.integers(0, 2, (20, 3)), epochs=2, batch_size=5)
    assert set(h.history) == {"loss", "accuracy"}


def test_fit_continues_from_the_current_weights():
    x, y = classification()
    a, b = build(), build()
    opt_a = Adam(a.parameters(), lr=1e-2)
    opt_b = Adam(b.parameters(), lr=1e-2)
    fit(a, x, y, epochs=2, batch_size=8, optimizer=opt_a, shuffle=False)
    fit(b, x, y, epochs=1, batch_size=8, optimizer=opt_b, shuffle=False)
    fit(b, x, y, epochs=1, batch_size=8, optimizer=opt_b, shuffle=False)
    assert_same_weights(a, b)


# ------------------------------------------------------------------------- seeds, order


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_seeded_fit_twice_is_bit_identical(cell):
    x, y = classification()
    kwargs = dict(epochs=2, batch_size=6, seed=11, validation_data=(x[:9], y[:9]))
    runs = []
    for _ in range(2):
        model = build(cell, num_layers=2, dropout=0.3, seed=4)
        runs.append((model, fit(model, x, y, **kwargs)))
    assert_same_weights(runs[0][0], runs[1][0])
    assert runs[0][1].history == runs[1][1].history
    other = build(cell, num_layers=2, dropout=0.3, seed=4)
    fit(other, x, y, **{**kwargs, "seed": 12})
    assert differs(other, runs[0][0])                  # another shuffle, other weights


def test_shuffle_false_ignores_the_seed_and_keeps_the_order():
    x, y = classification()
    a, b = build(), build()
    fit(a, x, y, epochs=2, batch_size=8, shuffle=False, seed=1)
    fit(b, x, y, epochs=2, batch_size=8, shuffle=False, seed=2)
    assert_same_weights(a, b)
    c = build()
    fit(c, x, y, epochs=2, batch_size=8, shuffle=True, seed=1)
    assert differs(a, c)


def test_progress_false_prints_nothing(capsys):
    x, y = classification()
    model = build()
    fit(model, x, y, epochs=2, batch_size=8, validation_data=(x, y), progress=False)
    model.evaluate(x, y)
    model.predict(x)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_progress_true_shows_a_bar_and_changes_nothing(capsys):
    x, y = classification()
    quiet, loud = build(), build()
    hq = fit(quiet, x, y, epochs=2, batch_size=8, seed=3, progress=False)
    hl = loud.fit(x, y, epochs=2, batch_size=8, seed=3, progress=True)
    assert hq.history == hl.history
    assert_same_weights(quiet, loud)
    out, err = capsys.readouterr()
    assert "epoch 2/2" in out + err


# ------------------------------------------------------------------------------ layout


def time_major_and_batch_first(head, cell="lstm", bidirectional=False):
    a = build(cell, head, bidirectional=bidirectional, seed=5)
    r = a.rnn
    rnn_bf = type(r)(r.input_size, r.hidden_size, bidirectional=bidirectional,
                     batch_first=True, dtype=r.dtype)
    rnn_bf.load_state_dict(r.state_dict())
    head_b = type(a.head)(**{k: v for k, v in a.head.config().items() if k != "type"},
                          dtype=r.dtype)
    head_b.load_state_dict(a.head.state_dict())
    b = fastrnn.SequenceModel(rnn_bf, head_b, "cross_entropy")
    assert not a.rnn.batch_first and b.rnn.batch_first
    return a, b


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("head", ["many_to_many", "many_to_one"])
def test_batch_first_and_time_major_give_the_same_results(head, bidirectional):
    a, b = time_major_and_batch_first(head, bidirectional=bidirectional)
    x, y = classification(per_step=head == "many_to_many")
    lengths = np.random.default_rng(1).integers(1, 7, len(x))
    for L in (None, lengths):
        assert_allclose(a.forward(x, L), b.forward(x, L), rtol=1e-13, atol=1e-14)
    ha = fit(a, x, y, lengths, epochs=2, batch_size=8, seed=2)
    hb = fit(b, x, y, lengths, epochs=2, batch_size=8, seed=2)
    assert_allclose(ha["loss"], hb["loss"], rtol=1e-12)
    for u, v in zip(weights(a), weights(b)):
        assert_allclose(u, v, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- lengths


def garbage_padding(x, y, lengths, rng, tokens=None):
    """Copies of x and y whose padded steps hold anything (nan and inf for real data)."""
    x2, y2 = x.copy(), y.copy()
    for b, L in enumerate(lengths):
        if tokens is not None:
            x2[b, L:] = rng.integers(0, tokens, x2.shape[1] - L)
        else:
            x2[b, L:] = rng.standard_normal(x2[b, L:].shape) * 1e6
            x2[b, L:L + 1] = np.nan
            x2[b, L + 1:L + 2] = np.inf
        if y2.ndim >= 2:
            if y2.dtype.kind == "f":
                y2[b, L:] = np.nan
            else:
                y2[b, L:] = -1
    return x2, y2


@pytest.mark.parametrize("case", ["m2m-ce", "m2o-ce", "m2m-mse", "tokens", "tbptt"])
def test_padding_changes_nothing(case):
    """Padded steps of x and y (nan and inf included) change no output, loss, gradient."""
    rng = np.random.default_rng(0)
    n, t = 12, 7
    lengths = rng.integers(1, t + 1, n)
    lengths[0] = t
    kwargs, tokens = {}, None
    if case == "tokens":
        def make():
            return build("lstm", "many_to_many", vocab_size=6, embedding_dim=3)
        x, y, tokens = rng.integers(0, 6, (n, t)), rng.integers(0, C, (n, t)), 6
    elif case == "m2m-mse":
        def make():
            return build("lstm", "many_to_many", loss="mse", output_size=2)
        x, y = rng.standard_normal((n, t, I)), rng.standard_normal((n, t, 2))
    else:
        def make():
            return build("lstm", "many_to_one" if case == "m2o-ce" else "many_to_many")
        x, y = classification(n, t, per_step=case != "m2o-ce")
    if case == "tbptt":
        kwargs["tbptt"] = 3
    x2, y2 = garbage_padding(x, y, lengths, rng, tokens)
    model, twin = make(), make()

    ev, ev2 = model.evaluate(x, y, lengths), model.evaluate(x2, y2, lengths)
    assert ev == ev2 and all(math.isfinite(v) for v in ev.values())
    np.testing.assert_array_equal(model.forward(x, lengths), model.forward(x2, lengths))
    h = fit(model, x, y, lengths, epochs=1, batch_size=5, optimizer=SGD(
        model.parameters(), lr=0.5, momentum=0.9), shuffle=False, **kwargs)
    h2 = fit(twin, x2, y2, lengths, epochs=1, batch_size=5, optimizer=SGD(
        twin.parameters(), lr=0.5, momentum=0.9), shuffle=False, **kwargs)
    assert h.stop_reason == h2.stop_reason == "completed"
    assert h.history == h2.history
    assert_same_weights(model, twin)                    # so the gradients were equal


def test_lengths_of_a_full_batch_equal_no_lengths():
    model = build(head="many_to_many")
    x, y = classification(per_step=True)
    full = np.full(len(x), x.shape[1])
    np.testing.assert_array_equal(model.forward(x), model.forward(x, full))
    assert model.evaluate(x, y) == model.evaluate(x, y, full)


# ---------------------------------------------------------------------- truncated BPTT


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_tbptt_at_least_T_equals_full_bptt(loss, with_lengths):
    rng = np.random.default_rng(1)
    n, t = 14, 9
    x = rng.standard_normal((n, t, I))
    y = (rng.integers(0, C, (n, t)) if loss == "cross_entropy"
         else rng.standard_normal((n, t, C)))
    lengths = rng.integers(1, t + 1, n) if with_lengths else None
    runs = []
    for tbptt in (None, t, 4 * t):
        model = build("lstm", "many_to_many", loss=loss)
        h = fit(model, x, y, lengths, epochs=1, batch_size=4, shuffle=False, tbptt=tbptt,
                optimizer=Adam(model.parameters(), lr=1e-2))
        runs.append((model, h))
    for model, h in runs[1:]:
        assert_same_weights(runs[0][0], model)
        assert h.history == runs[0][1].history


def test_tbptt_windows_carry_the_state():
    """Two windows of 3 steps: an update on the first window, then one on the second
    started from the first window's final state (computed before the update)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 6, I))
    y = rng.integers(0, C, (5, 6))
    model, ref = build("lstm", "many_to_many"), build("lstm", "many_to_many")
    opt = SGD(model.parameters(), lr=0.3)
    h = fit(model, x, y, epochs=1, batch_size=5, tbptt=3, optimizer=opt)
    ref_opt = SGD(ref.parameters(), lr=0.3)
    state = None
    total = 0.0
    for s in (0, 3):
        ref_opt.zero_grad()
        out, state, backward = ref.forward_train(x[:, s:s + 3], None, state)
        loss, grad = ref.loss(out, y[:, s:s + 3])
        backward(grad)
        ref_opt.step()
        total += loss
    for u, v in zip(weights(model), weights(ref)):
        assert_allclose(u, v, rtol=1e-13, atol=1e-15)
    assert_allclose(h["loss"][0], total / 2, rtol=1e-13)


def test_tbptt_steps_once_per_window_and_learns():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 12, I))
    y = (x[..., 0] > 0).astype(np.int64)        # the sign of the current input
    model = build("gru", "many_to_many", output_size=2)
    opt = Adam(model.parameters(), lr=3e-2)
    h = fit(model, x, y, epochs=8, batch_size=8, tbptt=5, optimizer=opt, seed=0)
    # 2 batches x 3 windows (5 + 5 + 2 steps) per epoch
    assert opt.state_dict()["state"][0]["step"] == 8 * 2 * 3
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    # lengths that end before a window: that window is skipped for the whole batch
    opt2 = Adam(model.parameters(), lr=1e-3)
    fit(model, x, y, np.full(16, 5), epochs=1, batch_size=16, tbptt=5, optimizer=opt2)
    assert opt2.state_dict()["state"][0]["step"] == 1


def test_tbptt_validation():
    x, y = classification()
    model = build()
    with pytest.raises(ValueError, match="tbptt needs a per-step head"):
        fit(model, x, y, tbptt=3)
    m2m = build(head="many_to_many")
    xs, ys = classification(per_step=True)
    with pytest.raises(ValueError, match="tbptt must be >= 1, got 0"):
        fit(m2m, xs, ys, tbptt=0)
    with pytest.raises(TypeError, match="tbptt must be an int"):
        fit(m2m, xs, ys, tbptt=2.5)


# --------------------------------------------------------------------------- callbacks


def test_early_stopping_stops_and_restores_the_best_weights():
    x, y = classification()
    model = build()
    rec = Recorder()
    # a min_delta no epoch can beat: epoch 1 stays the best
    es = fastrnn.EarlyStopping(monitor="val_loss", patience=2, min_delta=1e9)
    h = fit(model, x, y, epochs=10, batch_size=8, validation_data=(x[:10], y[:10]),
            callbacks=[rec, es], seed=0)
    assert h.epochs == 3 and len(h["loss"]) == 3
    assert h.stop_reason == "stopped early after epoch 3"
    assert es.stopped_epoch == 2
    assert rec.ended == 1
    np.testing.assert_equal(model.state_dict(), rec.states[0])
    assert differs(model, build())                     # not the initial weights either


def test_early_stopping_follows_the_monitored_value():
    """A real run: the restored weights are those of the best epoch, wherever it falls."""
    x, y = classification(n=30, seed=4)
    vx, vy = classification(n=30, seed=5)              # unrelated labels: val_loss rises
    model = build()
    rec = Recorder()
    es = fastrnn.EarlyStopping(patience=3)
    h = fit(model, x, y, epochs=40, batch_size=5, validation_data=(vx, vy),
            optimizer=Adam(model.parameters(), lr=3e-2), callbacks=[rec, es], seed=0)
    best = int(np.argmin(h["val_loss"]))
    assert h.epochs == best + 1 + 3 < 40
    assert "stopped early" in h.stop_reason
    np.testing.assert_equal(model.state_dict(), rec.states[best])
    # mode="max" on accuracy, without restoring: the last weights stay
    model2, rec2 = build(), Recorder()
    es2 = fastrnn.EarlyStopping(monitor="val_accuracy", mode="max", patience=2,
                                restore_best_weights=False)
    h2 = fit(model2, x, y, epochs=40, batch_size=5, validation_data=(vx, vy),
             optimizer=Adam(model2.parameters(), lr=3e-2), callbacks=[rec2, es2], seed=0)
    np.testing.assert_equal(model2.state_dict(), rec2.states[-1])
    acc = h2["val_accuracy"]
    best2 = int(np.argmax(acc))
    assert h2.epochs == best2 + 1 + 2 and max(acc[best2 + 1:]) <= acc[best2]


def test_early_stopping_validation():
    x, y = classification()
    with pytest.raises(ValueError, match="EarlyStopping monitors 'val_loss', which is not"):
        fit(build(), x, y, epochs=2, callbacks=[fastrnn.EarlyStopping()])
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        fastrnn.EarlyStopping(mode="best")
    with pytest.raises(ValueError, match="patience must be >= 1"):
        fastrnn.EarlyStopping(patience=0)


def test_model_checkpoint_writes_a_loadable_file(tmp_path):
    x, y = classification()
    path = tmp_path / "ck.npz"
    model = build("lstm")
    opt = Adam(model.parameters(), lr=1e-2)
    fit(model, x, y, epochs=2, batch_size=8, optimizer=opt, validation_data=(x, y),
        callbacks=[fastrnn.ModelCheckpoint(path)])
    loaded = fastrnn.load(path)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    m2, opt2, extra = fastrnn.load_checkpoint(path)
    assert extra["epoch"] == 1 and set(extra["logs"]) == {"loss", "accuracy", "val_loss",
                                                          "val_accuracy"}
    assert type(opt2) is Adam and opt2.param_groups[0]["lr"] == 1e-2
    sd, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd2["state"][0]["step"] == sd["state"][0]["step"]
    np.testing.assert_array_equal(sd2["state"][3]["exp_avg"], sd["state"][3]["exp_avg"])


def test_model_checkpoint_save_best_only(tmp_path):
    x, y = classification(n=30, seed=4)
    vx, vy = classification(n=30, seed=5)
    path = tmp_path / "best.npz"
    model, rec = build(), Recorder()
    h = fit(model, x, y, epochs=8, batch_size=5, validation_data=(vx, vy),
            optimizer=Adam(model.parameters(), lr=3e-2), seed=0,
            callbacks=[rec, fastrnn.ModelCheckpoint(path, save_best_only=True,
                                                     save_optimizer=False)])
    best = int(np.argmin(h["val_loss"]))
    loaded, opt, extra = fastrnn.load_checkpoint(path)
    assert opt is None and extra["epoch"] == best
    np.testing.assert_equal(loaded.state_dict(), rec.states[best])


# ----------------------------------------------------------------------- non-finite


def test_nan_in_one_batch_stops_with_the_last_good_weights(monkeypatch):
    """The guard inside training (a nan that appears mid-training: here from data let
    through past the up-front check of fit)."""
    for module in (fastrnn.models, fastrnn.sequential):     # the checks of y and of x
        monkeypatch.setattr(module, "all_finite", lambda *args: None)
    x, y = classification(n=32)
    x[17, 2, 1] = np.nan                                # batch 2 of 4 (batch_size 8)
    model, rec = build(), Recorder()
    with pytest.warns(RuntimeWarning, match="stopped at epoch 1: non-finite loss"):
        h = fit(model, x, y, epochs=3, batch_size=8, shuffle=False, clip_norm=1.0,
                callbacks=[rec])
    assert h.epochs == 0 and h.history == {} and rec.states == []
    assert h.stop_reason.startswith("stopped at epoch 1: non-finite loss")
    assert "weights are those of the last finite loss" in h.stop_reason
    assert rec.ended == 1
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())
    # batch 1's loss (finite) was computed by the weights after batch 0's step
    ref = build()
    fit(ref, x[:8], y[:8], epochs=1, batch_size=8, shuffle=False, clip_norm=1.0)
    assert_same_weights(model, ref)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_stops_with_finite_weights_of_an_earlier_epoch():
    """A relu RNN with a huge learning rate: its loss overflows after a few steps."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 20, 3)), rng.integers(0, 3, (16, 20))
    model = fastrnn.SequenceModel.build("rnn", input_size=3, hidden_size=8, output_size=3,
                                        nonlinearity="relu", seed=0)
    rec = Recorder()
    h = fit(model, x, y, epochs=30, batch_size=16, callbacks=[rec],
            optimizer=SGD(model.parameters(), lr=30.0))
    E = h.epochs
    assert 1 <= E < 30 and len(h["loss"]) == E
    assert h.stop_reason.startswith(f"stopped at epoch {E + 1}: non-finite")
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())
    # one step per epoch: epoch E's loss was not finite, epoch E-1's was (at the weights
    # that epoch E-2 ended with)
    states = [rec.initial] + rec.states
    np.testing.assert_equal(model.state_dict(), states[E - 1])
    assert math.isfinite(model.evaluate(x, y)["loss"])


# ------------------------------------------------------------------------- inference


def test_predict_proba_and_evaluate_many_to_one():
    model = build("lstm", dtype=np.float32)
    x, y = classification(n=23)
    proba = model.predict_proba(x)
    pred = model.predict(x)
    assert proba.shape == (23, C) and proba.dtype == np.float32
    assert pred.shape == (23,) and pred.dtype.kind == "i"
    assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    ev = model.evaluate(x, y)
    assert set(ev) == {"loss", "accuracy"}
    assert ev["accuracy"] == pytest.approx(np.mean(pred == y))
    assert ev["loss"] == pytest.approx(-np.mean(np.log(proba[np.arange(23), y])), rel=1e-5)
    # mini-batches do not change the answers
    assert_allclose(model.predict_proba(x, batch_size=4), proba, rtol=1e-6)
    np.testing.assert_array_equal(model.forward(x, batch_size=1), model.forward(x))
    assert model.evaluate(x, y, batch_size=5) == pytest.approx(ev)


def test_predict_proba_and_evaluate_many_to_many_with_lengths():
    model = build("gru", "many_to_many")
    x, y = classification(n=11, t=5, per_step=True)
    lengths = np.array([5, 1, 3, 2, 5, 4, 4, 1, 2, 3, 5])
    proba = model.predict_proba(x, lengths)
    pred = model.predict(x, lengths)
    assert proba.shape == (11, 5, C) and pred.shape == (11, 5)
    assert_allclose(proba.sum(axis=-1), 1, rtol=1e-13)
    np.testing.assert_array_equal(pred, proba.argmax(axis=-1))
    valid = np.arange(5)[None, :] < lengths[:, None]
    ev = model.evaluate(x, y, lengths)
    logp = np.log(np.take_along_axis(proba, y[..., None], -1)[..., 0])
    assert_allclose(ev["loss"], -logp[valid].mean(), rtol=1e-12)
    assert_allclose(ev["accuracy"], (pred == y)[valid].mean(), rtol=1e-15)
    # without lengths every step counts
    ev_all = model.evaluate(x, y)
    assert ev_all["accuracy"] == pytest.approx((model.predict(x) == y).mean())


def test_predict_of_regression_and_binary_models():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 4, I))
    reg = build(loss="mse", output_size=2)
    np.testing.assert_array_equal(reg.predict(x), reg.forward(x))
    assert reg.predict(x).shape == (9, 2)
    target = rng.standard_normal((9, 2))
    assert_allclose(reg.evaluate(x, target)["loss"], np.mean((reg.predict(x) - target) ** 2),
                    rtol=1e-12)
    with pytest.raises(ValueError, match="predict_proba needs a classification loss"):
        reg.predict_proba(x)
    binary = build(loss="bce_with_logits", output_size=3)
    logits = binary.forward(x)
    np.testing.assert_array_equal(binary.predict(x), (logits > 0).astype(np.int64))
    assert_allclose(binary.predict_proba(x), 1 / (1 + np.exp(-logits)), rtol=1e-13)
    # a single regression target per sample may be given without its last axis
    reg1 = build(loss="mse", output_size=1)
    h = fit(reg1, x, rng.standard_normal(9), epochs=1, batch_size=3)
    assert math.isfinite(h["loss"][0])


# --------------------------------------------------------------------------- generate


def token_model(head="one_to_many", cell="lstm", vocab=7, seed=0, dtype=np.float64):
    return fastrnn.SequenceModel.build(cell, vocab_size=vocab, embedding_dim=4,
                                       hidden_size=6, output_size=vocab, head=head,
                                       num_layers=2, dtype=dtype, seed=seed)


def test_generate_tokens_shapes_and_seeds():
    model = token_model()
    before = model.state_dict()
    prime = np.array([1, 2, 3])
    g = model.generate(prime, 12, seed=0)
    assert g.shape == (12,) and g.dtype.kind == "i" and g.min() >= 0 and g.max() < 7
    np.testing.assert_array_equal(model.generate(prime, 12, seed=0), g)
    assert not np.array_equal(model.generate(prime, 12, seed=1), g)
    batch = model.generate(np.array([[1, 2, 3], [4, 5, 6]]), 5, temperature=0.8, top_k=3,
                           seed=2)
    assert batch.shape == (2, 5)
    np.testing.assert_array_equal(
        batch, model.generate(np.array([[1, 2, 3], [4, 5, 6]]), 5, temperature=0.8,
                              top_k=3, seed=2))
    np.testing.assert_equal(model.state_dict(), before)     # generation trains nothing


def test_generate_greedy_follows_the_model():
    model = token_model(head="many_to_many", cell="gru")
    prime = np.array([[3, 1, 4, 1], [5, 0, 2, 6]])
    g = model.generate(prime, 6, temperature=0)
    np.testing.assert_array_equal(model.generate(prime, 6, top_k=1, seed=5), g)
    # re-reading prime + generated tokens, the model's argmax is each next token
    seq = np.concatenate([prime, g[:, :-1]], axis=1)
    logits = model.forward(seq)
    np.testing.assert_array_equal(logits[:, 3:].argmax(-1), g)


def test_generate_samples_from_the_softmax():
    """The first sampled token follows softmax(logits / temperature) of the primed model."""
    model = token_model(vocab=4, seed=3)
    prime = np.array([2, 1])
    p = softmax(model.forward(prime[None])[0, -1] / 2.0)
    batch = np.tile(prime, (4000, 1))
    first = model.generate(batch, 1, temperature=2.0, seed=0)[:, 0]
    freq = np.bincount(first, minlength=4) / 4000
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / 4000) + 1e-9)


def test_generate_real_valued():
    model = build("lstm", "many_to_many", loss="mse", output_size=I, num_layers=2)
    rng = np.random.default_rng(0)
    prime = rng.standard_normal((4, I))
    g = model.generate(prime, 5)
    assert g.shape == (5, I) and g.dtype == np.float64
    seq = np.concatenate([prime, g[:-1]])[None]
    assert_allclose(model.forward(seq)[0, 3:], g, rtol=1e-12, atol=1e-14)
    gb = model.generate(np.stack([prime, prime[::-1]]), 5)
    assert gb.shape == (2, 5, I)
    assert_allclose(gb[0], g, rtol=1e-12, atol=1e-14)


def test_generate_validation():
    model = token_model()
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.generate([1], 3, temperature=-1)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.generate([1], 3, temperature=float("nan"))
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        model.generate([1], 3, top_k=0)
    with pytest.raises(ValueError, match="length must be >= 1"):
        model.generate([1], 0)
    with pytest.raises(ValueError, match="prime must hold at least one sequence of at least "
                                         "one step"):
        model.generate(np.zeros(0, np.int64), 3)
    with pytest.raises(TypeError, match="prime must hold integer tokens"):
        model.generate([1.5, 2.0], 3)
    with pytest.raises(ValueError, match=r"prime tokens must lie in \[0, 7\)"):
        model.generate([1, 7], 3)
    with pytest.raises(ValueError, match="generate needs a per-step head"):
        build().generate(np.zeros((2, I)), 3)
    with pytest.raises(ValueError, match="output_size must equal input_size"):
        build(head="many_to_many", loss="mse", output_size=1).generate(np.zeros((2, I)), 3)


# ---------------------------------------------------------------------------- Stepper


STEPPER_CASES = [("lstm", "tanh", 1, False), ("gru", "tanh", 2, False),
                 ("rnn", "tanh", 2, False), ("rnn", "relu", 1, False),
                 ("lstm", "tanh", 2, True), ("gru", "tanh", 1, True),
                 ("fastgrnn", "tanh", 2, False), ("fastrnn", "tanh", 1, True)]
STEPPER_IDS = ["lstm", "gru-L2", "rnn-L2", "rnn-relu", "lstm-L2-tokens", "gru-tokens",
               "fastgrnn-L2", "fastrnn-tokens"]


def stepper_model(cell, nonlinearity, num_layers, tokens, dtype=np.float64, seed=0,
                  head="many_to_many", **kwargs):
    kwargs.update(dict(vocab_size=9, embedding_dim=I) if tokens else dict(input_size=I))
    return fastrnn.SequenceModel.build(cell, hidden_size=H, output_size=C,
                                       head=head, num_layers=num_layers,
                                       nonlinearity=nonlinearity, dtype=dtype, seed=seed,
                                       **kwargs)


def stepper_inputs(tokens, n, t, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 9, (n, t)) if tokens else rng.standard_normal((n, t, I)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,nonlinearity,num_layers,tokens", STEPPER_CASES, ids=STEPPER_IDS)
def test_stepper_equals_the_whole_sequence(cell, nonlinearity, num_layers, tokens, dtype):
    model = stepper_model(cell, nonlinearity, num_layers, tokens, dtype)
    x = stepper_inputs(tokens, 3, 8, dtype=dtype)
    whole = model.forward(x)
    stepper = model.stepper(3)
    steps = np.stack([stepper.step(x[:, t]).copy() for t in range(8)], axis=1)
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    assert steps.dtype == dtype
    assert_allclose(steps, whole, **tol)
    # the state is the whole sequence's final state
    _, state = model.rnn(model.embedding(x.T) if tokens else np.swapaxes(x, 0, 1))
    for got, want in zip(stepper.state if cell == "lstm" else (stepper.state,),
                         state if cell == "lstm" else (state,)):
        assert_allclose(got, want, **tol)
    # run() over a batch-first chunk continues from there, as a time-major one does
    more = stepper_inputs(tokens, 3, 4, seed=1, dtype=dtype)
    after = model.forward(np.concatenate([x, more], axis=1))[:, 8:]
    chunk = stepper.run(more[:, :2])
    assert chunk.shape == (3, 2, C)
    assert_allclose(chunk, after[:, :2], **tol)
    chunk = stepper.run(np.swapaxes(more[:, 2:], 0, 1), batch_first=False)
    assert chunk.shape == (2, 3, C)
    assert_allclose(np.swapaxes(chunk, 0, 1), after[:, 2:], **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,nonlinearity,num_layers,tokens", STEPPER_CASES, ids=STEPPER_IDS)
def test_many_to_one_stepper_classifies_after_every_step(cell, nonlinearity, num_layers,
                                                         tokens, dtype):
    """Early classification of a stream: after step t the stepper gives what the model
    gives for the first t+1 steps (and, with lengths, for lengths t+1)."""
    model = stepper_model(cell, nonlinearity, num_layers, tokens, dtype,
                          head="many_to_one")
    x = stepper_inputs(tokens, 3, 7, dtype=dtype)
    stepper = model.stepper(3)
    early = np.stack([stepper.step(x[:, t]).copy() for t in range(7)], axis=1)
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for t in range(7):
        assert_allclose(early[:, t], model.forward(x[:, :t + 1]), **tol)
        assert_allclose(early[:, t], model.forward(x, np.full(3, t + 1)), **tol)
    assert_allclose(model.stepper(3).run(x), early, **tol)
    assert_array_equal(model.loss.predict(early[:, -1]), model.predict(x))


def test_many_to_one_stepper_of_a_projected_lstm_with_zoneout():
    model = fastrnn.SequenceModel.build("lstm", input_size=I, hidden_size=H, output_size=C,
                                        head="many_to_one", num_layers=2, proj_size=2,
                                        zoneout=0.2, dtype=np.float64, seed=0)
    x = stepper_inputs(False, 2, 5)
    early = model.stepper(2).run(x)
    for t in range(5):
        assert_allclose(early[:, t], model.forward(x[:, :t + 1]), rtol=1e-12, atol=1e-13)


def test_stepper_run_layouts_and_their_deprecation():
    model = stepper_model("gru", "tanh", 1, False)
    x = stepper_inputs(False, 3, 4)
    want = model.forward(x)
    assert_allclose(model.stepper(3).run(x), want, rtol=1e-12)           # batch-first
    with pytest.warns(DeprecationWarning, match=r"read time-major \(T, B, \.\.\.\), as "
                      r"before: pass batch_first=False") as record:
        old = model.stepper(3).run(np.swapaxes(x, 0, 1))                 # 0.x's layout
    assert record[0].filename == __file__
    assert_allclose(np.swapaxes(old, 0, 1), want, rtol=1e-12)
    square = stepper_inputs(False, 3, 3)
    with pytest.warns(DeprecationWarning, match="read batch-first: pass batch_first=True"):
        got = model.stepper(3).run(square)
    assert_allclose(got, model.forward(square), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.stepper(3).run(square, batch_first=True)
        model.stepper(1).run(x[:1])                     # (1, 4, I): batch-first, no doubt
    stepper = model.stepper(3)
    with pytest.raises(ValueError, match=r"xs must be \(batch_size, T, \.\.\.\) with "
                                         r"batch_size=3"):
        stepper.run(x[:2], batch_first=True)
    with pytest.raises(ValueError, match=r"xs must be \(T, batch_size, \.\.\.\)"):
        stepper.run(x, batch_first=False)
    with pytest.raises(ValueError, match="T >= 1"):
        stepper.run(x[:, :0])
    with pytest.raises(ValueError, match="xs must be a chunk of steps"):
        stepper.run(x[0, 0])
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        stepper.run(x, batch_first="yes")


@pytest.mark.parametrize("cell,nonlinearity,num_layers,tokens", STEPPER_CASES[:3] +
                         STEPPER_CASES[4:5], ids=STEPPER_IDS[:3] + STEPPER_IDS[4:5])
def test_stepper_reset_of_selected_rows(cell, nonlinearity, num_layers, tokens):
    model = stepper_model(cell, nonlinearity, num_layers, tokens)
    a = stepper_inputs(tokens, 3, 5, seed=2)
    b = stepper_inputs(tokens, 3, 4, seed=3)
    for rows in ([0, 2], np.array([True, False, True]), np.array([-1, 0])):
        stepper = model.stepper(3)
        for t in range(5):
            stepper.step(a[:, t])
        stepper.reset(rows)
        got = np.stack([stepper.step(b[:, t]).copy() for t in range(4)], axis=1)
        fresh = model.stepper(3)
        want_fresh = np.stack([fresh.step(b[:, t]).copy() for t in range(4)], axis=1)
        assert_allclose(got[[0, 2]], want_fresh[[0, 2]], rtol=1e-12, atol=1e-13)
        # the row that was not reset carries on with its sequence
        cont = model.forward(np.concatenate([a, b], axis=1))[:, 5:]
        assert_allclose(got[1], cont[1], rtol=1e-12, atol=1e-13)
    stepper.reset()
    again = np.stack([stepper.step(b[:, t]).copy() for t in range(4)], axis=1)
    assert_allclose(again, want_fresh, rtol=1e-14, atol=0)


@pytest.mark.parametrize("tokens", [False, True], ids=["real", "tokens"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_stepper_reuses_its_buffers(cell, tokens):
    model = stepper_model(cell, "tanh", 2, tokens, dtype=np.float32)
    stepper = model.stepper(4)
    x = stepper_inputs(tokens, 4, 2, dtype=np.float32)
    x0, x1 = np.ascontiguousarray(x[:, 0]), np.ascontiguousarray(x[:, 1])
    out = stepper.step(x0)
    first = out.copy()
    assert stepper.step(x1) is out                     # the same array each call
    assert not np.array_equal(out, first)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(1000):
            stepper.step(x0 if i % 2 else x1)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start < 10_000, f"{peak - start} bytes allocated over 1000 steps"
    assert current - start < 2_000


def test_stepper_refuses_what_cannot_stream():
    bi = build("lstm", "many_to_many", bidirectional=True)
    with pytest.raises(ValueError, match="a bidirectional model cannot stream"):
        bi.stepper()
    assert build().stepper().batch_size == 1        # a many-to-one model streams too
    with pytest.raises(TypeError, match="model must be a SequenceModel"):
        fastrnn.Stepper(fastrnn.LSTM(2, 3))
    model = build("gru", "many_to_many")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.stepper(0)
    stepper = model.stepper(2)
    with pytest.raises(ValueError, match=r"x_t must have shape \(2, 3\), got \(3, 3\)"):
        stepper.step(np.zeros((3, I)))
    with pytest.raises(TypeError, match="x_t must hold real numbers"):
        stepper.step(np.zeros((2, I), complex))
    with pytest.raises(ValueError, match=r"rows must be indices in \[0, 2\)"):
        stepper.reset([2])
    with pytest.raises(ValueError, match=r"rows mask must have shape \(2,\)"):
        stepper.reset(np.array([True, False, True]))
    assert not np.any(stepper.state)
    tok = stepper_model("lstm", "tanh", 1, True).stepper(2)
    with pytest.raises(ValueError, match="x_t must be 2 integer tokens"):
        tok.step(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 9\)"):
        tok.step(np.array([1, 9]))
    # a float32 model accepts float64 steps (copied into its own buffer)
    m32 = stepper_model("gru", "tanh", 1, False, dtype=np.float32)
    s = m32.stepper(1)
    assert s.step(np.zeros((1, I))).dtype == np.float32


# ---------------------------------------------------------------------------- Seq2Seq


class GradCapture(SGD):
    """An optimizer that records the gradients it is given and changes nothing."""

    def step(self, closure=None):
        self.grads = [p.grad.copy() for g in self.param_groups for p in g["params"]]


def tiny_seq2seq(cell, seed=0):
    return fastrnn.Seq2Seq.build(cell, src_vocab=4, tgt_vocab=5, hidden_size=3,
                                 embedding_dim=2, num_layers=2 if cell == "gru" else 1,
                                 bos_token=0, dtype=np.float64, seed=seed)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_seq2seq_gradients_by_finite_differences(cell, with_lengths):
    model = tiny_seq2seq(cell, seed=1)
    rng = np.random.default_rng(2)
    src, tgt = rng.integers(0, 4, (3, 4)), rng.integers(1, 5, (3, 3))
    sl, tl = (np.array([4, 2, 1]), np.array([3, 1, 2])) if with_lengths else (None, None)
    opt = GradCapture(model.parameters(), lr=1.0)
    before = model.state_dict()
    h = fit(model, src, tgt, sl, tl, epochs=1, batch_size=3, optimizer=opt, shuffle=False)
    np.testing.assert_equal(model.state_dict(), before)
    assert_allclose(h["loss"][0], model.evaluate(src, tgt, sl, tl)["loss"], rtol=1e-13)

    def loss():
        return model.evaluate(src, tgt, sl, tl)["loss"]

    for (name, p), analytic in zip(model.named_parameters(), opt.grads):
        assert_allclose(analytic, central_differences(loss, p.data), rtol=1e-6, atol=1e-9,
                        err_msg=name)
    if with_lengths:                  # source padding and unused embedding rows: no gradient
        assert not np.any(opt.grads[0][[t for t in range(4) if t not in
                                        set(src[0]) | set(src[1, :2]) | {src[2, 0]}]])


def test_seq2seq_teacher_forcing_and_greedy_decoding_by_hand():
    model = tiny_seq2seq("lstm", seed=3)
    rng = np.random.default_rng(4)
    src, tgt = rng.integers(0, 4, (2, 5)), rng.integers(1, 5, (2, 3))
    enc, dec = model.encoder, model.decoder
    _, state = enc(model.src_embedding(src))
    dec_in = np.concatenate([np.zeros((2, 1), np.int64), tgt[:, :-1]], axis=1)
    y, _ = dec(model.tgt_embedding(dec_in), state)
    logits = model.head.readout(y)
    logp = np.log(softmax(logits))
    expected = -np.mean(np.take_along_axis(logp, tgt[..., None], -1))
    assert_allclose(model.evaluate(src, tgt)["loss"], expected, rtol=1e-12)
    # greedy: feed back the argmax, starting from bos
    tok, st, out = np.zeros((2, 1), np.int64), state, []
    for _ in range(4):
        y, st = dec(model.tgt_embedding(tok), st)
        tok = model.head.readout(y).argmax(-1)
        out.append(tok[:, 0])
    np.testing.assert_array_equal(model.predict(src, max_length=4), np.stack(out, 1))


def test_seq2seq_predict_shapes_lengths_and_eos():
    model = fastrnn.Seq2Seq.build("gru", src_vocab=6, tgt_vocab=6, hidden_size=8, seed=5)
    rng = np.random.default_rng(6)
    src = rng.integers(1, 6, (40, 5))
    g = model.predict(src, max_length=7)
    assert g.shape == (40, 7) and g.dtype == np.int64
    # padded source tokens change nothing
    lengths = rng.integers(1, 6, 40)
    src2 = src.copy()
    for b, L in enumerate(lengths):
        src2[b, L:] = rng.integers(0, 6, 5 - L)
    np.testing.assert_array_equal(model.predict(src, lengths), model.predict(src2, lengths))
    # eos: each row is the greedy sequence up to its first eos, then eos
    values, counts = np.unique(g[:, :4], return_counts=True)
    eos = int(values[np.argmax(counts)])
    ge = model.predict(src, max_length=7, eos_token=eos)
    hits = 0
    for row, row_eos in zip(g, ge):
        where = np.flatnonzero(row == eos)
        k = where[0] if where.size else 7
        hits += where.size > 0
        np.testing.assert_array_equal(row_eos[:k + 1], row[:k + 1])
        assert np.all(row_eos[k:] == eos)
    assert hits > 0
    # every row ends at once: the rest is eos
    first = int(g[0, 0])
    same = src[g[:, 0] == first]
    out = model.predict(same, max_length=5, eos_token=first)
    assert np.all(out == first)


def test_seq2seq_fit_learns_and_records_history():
    model = fastrnn.Seq2Seq.build("gru", src_vocab=5, tgt_vocab=5, hidden_size=16, seed=0)
    src = np.random.default_rng(0).integers(1, 5, (64, 3))
    h = model.fit(src, src, epochs=5, batch_size=16, validation_data=(src[:8], src[:8]),
                  optimizer=Adam(model.parameters(), lr=2e-2), progress=False, seed=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert h["loss"][-1] < h["loss"][0]


def test_seq2seq_bad_input_names_the_argument():
    model = fastrnn.Seq2Seq.build("gru", src_vocab=4, tgt_vocab=5, hidden_size=3, seed=0)
    src, tgt = np.ones((3, 4), np.int64), np.ones((3, 2), np.int64)
    cases = [
        (lambda: model.fit(src.astype(float), tgt), TypeError, "src must be 2-D integer"),
        (lambda: model.fit(src[0], tgt), TypeError, "src must be 2-D integer"),
        (lambda: model.fit(src, tgt + 4), ValueError, r"tgt tokens must lie in \[0, 5\)"),
        (lambda: model.fit(src + 3, tgt), ValueError, r"src tokens must lie in \[0, 4\)"),
        (lambda: model.fit(src, tgt[:2]), ValueError, "src and tgt must have the same number"),
        (lambda: model.fit(src, tgt, [1, 2]), ValueError, r"src_lengths must have shape \(3,\)"),
        (lambda: model.fit(src, tgt, None, [1, 2, 3]), ValueError,
         r"tgt_lengths must lie in \[1, 2\]"),
        (lambda: model.fit(src, tgt, [0, 1, 1]), ValueError, r"src_lengths must lie in"),
        (lambda: model.predict(src, max_length=0), ValueError, "max_length must be >= 1"),
        (lambda: model.predict(src, [5, 1, 1]), ValueError, r"src_lengths must lie in"),
        (lambda: model.evaluate(src, tgt.astype(np.float32)), TypeError, "tgt must be 2-D"),
        (lambda: model.fit(src[:0], tgt[:0]), ValueError, "src must hold at least one sequence"),
        (lambda: model.fit(src, tgt[:, :0]), ValueError, "tgt must hold at least one sequence"),
        (lambda: model.predict(src[:, :0]), ValueError, "src must hold at least one sequence"),
    ]
    before = model.state_dict()
    for call, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            call()
    np.testing.assert_equal(model.state_dict(), before)
    with pytest.raises(ValueError, match="bos_token must be a target token"):
        fastrnn.Seq2Seq.build("gru", src_vocab=4, tgt_vocab=5, hidden_size=3, bos_token=5)
    with pytest.raises(ValueError, match="cell must be 'rnn', 'lstm' or 'gru'"):
        fastrnn.Seq2Seq.build("tcn", src_vocab=4, tgt_vocab=5, hidden_size=3)


# -------------------------------------------------------------------------- bad input


def bad_fit_cases():
    x, y = classification(n=6, t=4)
    xs, ys = classification(n=6, t=4, per_step=True)
    return [
        ("x 2-D", "m2o", lambda m: m.fit(x[0], y), ValueError, r"x must be 3-D, got 2-D"),
        ("x features", "m2o", lambda m: m.fit(x[..., :2], y), ValueError,
         r"x.shape\[-1\] must equal input_size=3, got 2"),
        ("x complex", "m2o", lambda m: m.fit(x.astype(complex), y), TypeError,
         "x must hold real numbers"),
        ("x strings", "m2o", lambda m: m.fit(x.astype(str), y), TypeError,
         "x must hold real numbers"),
        ("y float", "m2o", lambda m: m.fit(x, y.astype(float)), TypeError,
         "y must hold integer class labels"),
        ("y shape", "m2o", lambda m: m.fit(x, y[:5]), ValueError,
         r"y must have shape \(6,\), got \(5,\)"),
        ("y per-step shape", "m2m", lambda m: m.fit(xs, ys[:, :3]), ValueError,
         r"y must have shape \(6, 4\), got \(6, 3\)"),
        ("y out of range", "m2o", lambda m: m.fit(x, y + C), ValueError,
         r"targets must lie in \[0, 4\)"),
        ("lengths shape", "m2o", lambda m: m.fit(x, y, [4] * 5), ValueError,
         r"lengths must have shape \(6,\)"),
        ("lengths range", "m2o", lambda m: m.fit(x, y, [5] * 6), ValueError,
         r"lengths must lie in \[1, 4\]"),
        ("lengths zero", "m2o", lambda m: m.fit(x, y, [0] * 6), ValueError,
         r"lengths must lie in \[1, 4\]"),
        ("lengths float", "m2o", lambda m: m.fit(x, y, [1.5] * 6), TypeError,
         "lengths must hold integers"),
        ("epochs", "m2o", lambda m: m.fit(x, y, epochs=0), ValueError, "epochs must be >= 1"),
        ("batch_size", "m2o", lambda m: m.fit(x, y, batch_size=0), ValueError,
         "batch_size must be >= 1"),
        ("clip_norm", "m2o", lambda m: m.fit(x, y, clip_norm=-1.0), ValueError,
         "clip_norm must be a positive number"),
        ("clip_norm nan", "m2o", lambda m: m.fit(x, y, clip_norm=float("nan")), ValueError,
         "clip_norm must be a positive number"),
        ("optimizer", "m2o", lambda m: m.fit(x, y, optimizer="adam"), TypeError,
         "optimizer must be a fastrnn.optim.Optimizer"),
        ("seed", "m2o", lambda m: m.fit(x, y, seed=-1), ValueError, "seed must be"),
        ("validation_data", "m2o", lambda m: m.fit(x, y, validation_data=x), TypeError,
         r"validation_data must be \(x, y\)"),
        ("validation x", "m2o", lambda m: m.fit(x, y, validation_data=(x[..., :1], y)),
         ValueError, r"validation x.shape\[-1\] must equal input_size"),
        ("validation y", "m2o", lambda m: m.fit(x, y, validation_data=(x, y[:2])),
         ValueError, r"validation y must have shape \(6,\)"),
        ("validation lengths", "m2o",
         lambda m: m.fit(x, y, validation_data=(x, y, [9] * 6)), ValueError,
         r"lengths must lie in \[1, 4\]"),
        ("predict x", "m2o", lambda m: m.predict(x[..., :2]), ValueError,
         r"x.shape\[-1\] must equal input_size=3"),
        ("predict lengths", "m2o", lambda m: m.predict(x, [1, 2]), ValueError,
         r"lengths must have shape \(6,\)"),
        ("predict_proba x", "m2o", lambda m: m.predict_proba(x[:, :, None]), ValueError,
         "x must be 3-D"),
        ("evaluate y", "m2o", lambda m: m.evaluate(x, y[:, None]), ValueError,
         r"y must have shape \(6,\)"),
        ("evaluate batch_size", "m2o", lambda m: m.evaluate(x, y, batch_size=0), ValueError,
         "batch_size must be >= 1"),
        ("mse y shape", "reg", lambda m: m.fit(x, np.zeros((6, 3))), ValueError,
         r"y must have shape \(6, 2\), got \(6, 3\)"),
        ("mse y complex", "reg", lambda m: m.fit(x, np.zeros((6, 2), complex)), TypeError,
         "y must hold real numbers"),
        ("tokens float", "tok", lambda m: m.fit(x[..., 0], y), TypeError,
         "x must hold integer tokens"),
        ("tokens 3-D", "tok", lambda m: m.fit(np.zeros((6, 4, 1), np.int64), y), ValueError,
         r"x must be 2-D tokens \(N, T\)"),
        ("tokens range", "tok", lambda m: m.predict(np.full((6, 4), 7)), ValueError,
         r"x tokens must lie in \[0, 7\)"),
        ("tokens negative", "tok", lambda m: m.fit(np.full((6, 4), -1), y), ValueError,
         r"x tokens must lie in \[0, 7\)"),
        ("no samples", "m2o", lambda m: m.fit(x[:0], y[:0]), ValueError,
         r"x must hold at least one sequence of at least one step, got shape \(0, 4, 3\)"),
        ("no steps", "m2m", lambda m: m.fit(xs[:, :0], ys[:, :0]), ValueError,
         r"x must hold at least one sequence of at least one step, got shape \(6, 0, 3\)"),
        ("predict no samples", "m2o", lambda m: m.predict(x[:0]), ValueError,
         "x must hold at least one sequence"),
        ("evaluate no samples", "m2o", lambda m: m.evaluate(x[:0], y[:0]), ValueError,
         "x must hold at least one sequence"),
        ("validation no samples", "m2o", lambda m: m.fit(x, y, validation_data=(x[:0], y[:0])),
         ValueError, "validation x must hold at least one sequence"),
        ("tokens no samples", "tok", lambda m: m.predict(np.zeros((0, 4), np.int64)),
         ValueError, "x must hold at least one sequence"),
    ]


BAD_FIT = bad_fit_cases()


@pytest.mark.parametrize("case", BAD_FIT, ids=[c[0] for c in BAD_FIT])
def test_bad_input_names_the_argument(case):
    _, kind, call, exc, msg = case
    model = {"m2o": lambda: build(),
             "m2m": lambda: build(head="many_to_many"),
             "reg": lambda: build(loss="mse", output_size=2),
             "tok": lambda: build(vocab_size=7, embedding_dim=3)}[kind]()
    before = model.state_dict()
    with pytest.raises(exc, match=msg):
        call(model)
    np.testing.assert_equal(model.state_dict(), before)     # nothing was trained


def test_build_validation():
    with pytest.raises(ValueError, match="cell must be 'rnn', 'lstm' or 'gru'"):
        fastrnn.SequenceModel.build("tcn", input_size=2, hidden_size=3, output_size=2)
    with pytest.raises(ValueError, match="head must be one of"):
        fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=3, output_size=2,
                                    head="many_to_few")
    with pytest.raises(ValueError, match="input_size is required without vocab_size"):
        fastrnn.SequenceModel.build("gru", hidden_size=3, output_size=2)
    with pytest.raises(ValueError, match="loss must be one of"):
        fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=3, output_size=2,
                                    loss="l1")
    with pytest.raises(TypeError, match="rnn must be a fastrnn RNN, LSTM, GRU"):
        fastrnn.SequenceModel(fastrnn.LSTMCell(2, 3), fastrnn.ManyToMany(3, 2))
