"""Tests of fit's Keras forms: validation_split, sample_weight and class_weight (the
weighted mean loss of Keras: sum(w * loss) / count; the gradients that reach the
parameters, by central differences in float64), the callbacks' batch and epoch hooks and
LearningRateScheduler over the schedules of fastrnn.optim."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from fastrnn import optim
from fastrnn.distributed import ThreadGroup, data_parallel
from fastrnn.losses import log_softmax
from _tools import FD_TOL, central_differences

TIGHT = dict(rtol=1e-12, atol=1e-12)
RNG = np.random.default_rng(0)


def classifier(**kw):
    return fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=3, output_size=3,
                                       head="many_to_one", dtype=np.float64, seed=1, **kw)


def tagger(loss="mse", output_size=2):
    return fastrnn.SequenceModel.build("lstm", input_size=2, hidden_size=3,
                                       output_size=output_size, head="many_to_many",
                                       loss=loss, dtype=np.float64, seed=2)


def data(N=10, T=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, T, 2)), rng.integers(0, 3, N)


def ce_of(logits, y, w):
    """Keras's weighted mean cross-entropy, directly."""
    picked = log_softmax(logits)[np.arange(len(y)), y]
    return -float((w * picked).sum()) / len(y)


# -- the weighted loss, and the gradient it gives ----------------------------------------

def one_sgd_step(model, *args, **kw):
    """The parameters' change of one full-batch SGD step of lr 1: minus the gradient."""
    before = [p.data.copy() for p in model.parameters()]
    model.fit(*args, epochs=1, batch_size=10**6, optimizer=optim.SGD(model.parameters(),
              lr=1.0), shuffle=False, progress=False, **kw)
    grads = [b - p.data for b, p in zip(before, model.parameters())]
    for b, p in zip(before, model.parameters()):
        p.data[...] = b
    return grads


def test_class_and_sample_weights_give_the_gradient_of_the_weighted_loss():
    x, y = data()
    model = classifier()
    sw = RNG.uniform(0, 2, len(y))
    cw = {0: 0.5, 2: 3.0}                           # class 1 left out: weighs 1
    w = sw * np.array([0.5, 1.0, 3.0])[y]
    grads = one_sgd_step(model, x, y, sample_weight=sw, class_weight=cw)
    for g, p in zip(grads, model.parameters()):
        fd = central_differences(lambda: ce_of(model.forward(x), y, w), p.data)
        assert_allclose(g, fd, **FD_TOL)


def test_per_step_weights_with_lengths_give_the_gradient_of_the_weighted_loss():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((6, 5, 2)), rng.standard_normal((6, 5, 2))
    lengths = np.array([5, 2, 4, 1, 3, 5])
    w = rng.uniform(0, 2, (6, 5))
    model = tagger()
    keep = np.arange(5)[None, :] < lengths[:, None]

    def loss():
        d2 = ((model.forward(x, lengths) - y) ** 2).sum(-1)
        return float((w * d2)[keep].sum()) / (keep.sum() * 2)

    grads = one_sgd_step(model, x, y, lengths, sample_weight=w)
    for g, p in zip(grads, model.parameters()):
        assert_allclose(g, central_differences(loss, p.data), **FD_TOL)
    # in windows (tbptt) the per-step weights follow their steps
    h = model.fit(x, y, lengths, sample_weight=w, tbptt=2, epochs=1, progress=False,
                  optimizer=optim.SGD(model.parameters(), lr=0.0))
    assert_allclose(h["loss"][0], loss(), **TIGHT)


def test_sequential_and_seq2seq_take_weights():
    x, y = data()
    seq = fastrnn.Sequential([fastrnn.GRU(2, 3, seed=0, dtype=np.float64),
                              fastrnn.TimePooling("mean"),
                              fastrnn.Linear(3, 3, seed=1, dtype=np.float64)],
                             loss="cross_entropy")
    sw = RNG.uniform(0, 2, len(y))
    grads = one_sgd_step(seq, x, y, sample_weight=sw, class_weight={1: 2.0})
    w = sw * np.array([1.0, 2.0, 1.0])[y]
    for g, p in zip(grads, seq.parameters()):
        fd = central_differences(lambda: ce_of(seq.forward(x), y, w), p.data)
        assert_allclose(g, fd, **FD_TOL)
    src, tgt = fastrnn.data.copy_task(8, 3, vocab=5, seed=0)
    s2s = fastrnn.Seq2Seq.build("gru", src_vocab=5, tgt_vocab=5, hidden_size=4,
                                dtype=np.float64, seed=0)
    tw = RNG.uniform(0, 2, tgt.shape)
    cw = {0: 0.0, 3: 2.0}
    full = tw * np.where(tgt == 3, 2.0, 1.0)
    # the evaluated loss is Keras's mean of the per-token weighted losses
    model_loss = s2s.evaluate(src, tgt, sample_weight=full)["loss"]
    plain = s2s.evaluate(src, tgt)["loss"]
    assert not np.isclose(model_loss, plain)
    h = s2s.fit(src, tgt, epochs=1, batch_size=100, progress=False, sample_weight=tw,
                class_weight=cw, optimizer=optim.SGD(s2s.parameters(), lr=0.0))
    assert_allclose(h["loss"][0], model_loss, **TIGHT)


def test_epoch_loss_is_weighted_sum_over_count_and_metrics_are_not_weighted():
    x, y = data(N=11)
    model = classifier()
    sw = RNG.uniform(0, 2, len(y))
    h = model.fit(x, y, epochs=1, batch_size=4, sample_weight=sw, progress=False,
                  optimizer=optim.SGD(model.parameters(), lr=0.0))
    logits = model.forward(x)
    assert_allclose(h["loss"][0], ce_of(logits, y, sw), **TIGHT)
    assert h["accuracy"][0] == np.mean(logits.argmax(-1) == y)
    assert_allclose(model.evaluate(x, y, sample_weight=sw)["loss"], h["loss"][0], **TIGHT)


def test_weights_scale_the_loss_keras_way_not_normalised_pytorch_way():
    """With every weight c, the weighted mean is c times the mean: SGD at lr takes the
    steps of SGD at c * lr without weights (PyTorch's sum-of-weights mean would not
    change)."""
    x, y = data()
    a, b = classifier(), classifier()
    a.fit(x, y, epochs=2, batch_size=4, sample_weight=np.full(len(y), 3.0), seed=0,
          optimizer=optim.SGD(a.parameters(), lr=0.1), progress=False)
    b.fit(x, y, epochs=2, batch_size=4, seed=0,
          optimizer=optim.SGD(b.parameters(), lr=0.3), progress=False)
    for p, q in zip(a.parameters(), b.parameters()):
        assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14)


def test_bce_class_weight_by_label():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 3, 2)), (rng.random((8, 1)) < 0.5).astype(float)
    model = fastrnn.SequenceModel.build("rnn", input_size=2, hidden_size=3, output_size=1,
                                        head="many_to_one", loss="bce_with_logits",
                                        dtype=np.float64, seed=0)
    z = model.forward(x)
    each = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))[:, 0]
    w = np.where(y[:, 0] > 0.5, 4.0, 1.0)
    h = model.fit(x, y, epochs=1, class_weight={1: 4.0}, progress=False,
                  optimizer=optim.SGD(model.parameters(), lr=0.0))
    assert_allclose(h["loss"][0], (w * each).mean(), **TIGHT)


def test_weights_and_split_under_data_parallel_are_those_of_one_process():
    """Each rank's gradient is the weighted mean over its entries; summed as sums over
    the ranks it is the global batch's weighted mean (float64: equal to rounding)."""
    x, y = data(N=23)
    kw = dict(epochs=2, batch_size=8, seed=0, progress=False, validation_split=0.25,
              sample_weight=np.random.default_rng(5).uniform(0, 2, 23),
              class_weight={1: 2.0})
    one = classifier()
    h1 = one.fit(x, y, optimizer=optim.Adam(one.parameters(), lr=1e-2), **kw)

    def rank_main(comm):
        with fastrnn.threads(1):
            model = classifier()
            with data_parallel(model, comm):
                h = model.fit(x, y, optimizer=optim.Adam(model.parameters(), lr=1e-2), **kw)
        return model.state_dict(), h

    for state, h in ThreadGroup(2).run(rank_main):
        for k, v in one.state_dict().items():
            assert_allclose(state[k], v, rtol=1e-12, atol=1e-13, err_msg=k)
        for name, values in h1.history.items():
            assert_allclose(h[name], values, rtol=1e-10, err_msg=name)


# -- validation_split ------------------------------------------------------------------

def test_validation_split_holds_out_the_last_samples_before_shuffling():
    x, y = data(N=10)
    model = classifier()
    sw = RNG.uniform(0.5, 2, 10)
    h = model.fit(x, y, epochs=1, validation_split=0.25, sample_weight=sw,
                  class_weight={0: 5.0}, progress=False, seed=3,
                  optimizer=optim.SGD(model.parameters(), lr=0.0))
    cut = 7                                          # floor(10 * 0.75), as Keras
    cw = np.where(y == 0, 5.0, 1.0)
    logits = model.forward(x)
    assert_allclose(h["loss"][0], ce_of(logits[:cut], y[:cut], (sw * cw)[:cut]), **TIGHT)
    # validation: the held-out samples' own weights, without class weights (Keras)
    assert_allclose(h["val_loss"][0], ce_of(logits[cut:], y[cut:], sw[cut:]), **TIGHT)
    assert h["val_accuracy"][0] == np.mean(logits[cut:].argmax(-1) == y[cut:])


def test_validation_data_takes_sample_weights():
    x, y = data()
    model = classifier()
    w = RNG.uniform(0, 2, 10)
    h = model.fit(x, y, epochs=1, validation_data=(x, y, None, w), progress=False,
                  optimizer=optim.SGD(model.parameters(), lr=0.0))
    assert_allclose(h["val_loss"][0], ce_of(model.forward(x), y, w), **TIGHT)


def test_validation_split_of_sequential_with_lengths():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((9, 4, 2)), rng.standard_normal((9, 4, 1))
    lengths = rng.integers(1, 5, 9)
    seq = fastrnn.Sequential([fastrnn.RNN(2, 3, seed=0), fastrnn.Linear(3, 1, seed=1)],
                             loss="mse")
    h = seq.fit(x, y, lengths, epochs=1, validation_split=1 / 3, progress=False,
                optimizer=optim.SGD(seq.parameters(), lr=0.0))
    assert_allclose(h["val_loss"][0], seq.evaluate(x[6:], y[6:], lengths[6:])["loss"],
                    rtol=1e-6)
    assert_allclose(h["loss"][0], seq.evaluate(x[:6], y[:6], lengths[:6])["loss"],
                    rtol=1e-6)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(validation_split=0.2, validation_data="set below"), ValueError,
     "validation_data or validation_split, not both"),
    (dict(validation_split=1.0), ValueError, r"validation_split must be in \[0, 1\)"),
    (dict(validation_split=-0.1), ValueError, r"validation_split must be in \[0, 1\)"),
    (dict(validation_split="0.2"), TypeError, "validation_split must be a float"),
    (dict(validation_split=0.95), ValueError, "leaves no training or no validation"),
    (dict(sample_weight=np.ones(9)), ValueError, r"sample_weight must have shape \(10,\)"),
    (dict(sample_weight=np.ones((10, 4))), ValueError,
     r"sample_weight must have shape \(10,\) \(one"),
    (dict(sample_weight=-np.ones(10)), ValueError, "finite weights >= 0"),
    (dict(sample_weight=np.full(10, np.nan)), ValueError, "finite weights >= 0"),
    (dict(sample_weight=np.array(["a"] * 10)), TypeError, "sample_weight must hold real"),
    (dict(class_weight=[1.0, 2.0]), TypeError, "class_weight must be a dict"),
    (dict(class_weight={-1: 1.0}), ValueError, r"keys must be class indices"),
    (dict(class_weight={True: 1.0}), ValueError, r"keys must be class indices"),
    (dict(class_weight={0: -1.0}), ValueError, r"class_weight\[0\] must be a finite"),
    (dict(class_weight={0: "a"}), ValueError, r"class_weight\[0\] must be a finite"),
    (dict(validation_data=(1, 2, 3, 4, 5)), TypeError,
     r"validation_data must be \(x, y\), \(x, y, lengths\) or \(x, y, lengths, "
     r"sample_weight\)"),
])
def test_bad_options_name_the_argument(kw, exc, msg):
    x, y = data()
    model = classifier()
    if kw.get("validation_data") == "set below":
        kw["validation_data"] = (x, y)
    before = model.state_dict()
    with pytest.raises(exc, match=msg):
        model.fit(x, y, epochs=1, progress=False, **kw)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k])


def test_weights_the_loss_cannot_take_are_refused():
    x = np.zeros((4, 3, 2))
    model = tagger()
    with pytest.raises(ValueError, match="class_weight needs a classification loss"):
        model.fit(x, np.zeros((4, 3, 2)), class_weight={0: 1.0}, progress=False)
    model = classifier()
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(4,\)"):
        model.fit(x, np.zeros(4, int), sample_weight=np.ones((4, 3)), progress=False)
    seq = fastrnn.Sequential([fastrnn.GRU(2, 2), fastrnn.Linear(2, 1)],
                             loss=lambda o, t: (0.0, o * 0))
    with pytest.raises(ValueError, match="need a built-in loss"):
        seq.fit(x, np.zeros((4, 3, 1)), sample_weight=np.ones(4), progress=False)
    with pytest.raises(ValueError, match="validation sample_weight must have shape"):
        classifier().fit(x, np.zeros(4, int), validation_data=(x, np.zeros(4, int), None,
                                                               np.ones(3)), progress=False)


# -- callbacks: the batch hooks and LearningRateScheduler --------------------------------

class Recorder(fastrnn.training.Callback):
    def on_train_begin(self, model, optimizer):
        self.events = []

    def on_epoch_begin(self, model, epoch):
        self.events.append(("epoch", epoch))

    def on_batch_begin(self, model, step):
        self.events.append(("begin", step))

    def on_batch_end(self, model, step, logs):
        self.events.append(("end", step, sorted(logs)))


def test_hooks_count_steps_over_the_whole_run():
    x, y = data(N=10)
    rec = Recorder()
    classifier().fit(x, y, epochs=3, batch_size=4, initial_epoch=1, callbacks=[rec],
                     progress=False)
    keys = ["accuracy", "loss"]
    assert rec.events == [("epoch", 1), ("begin", 3), ("end", 3, keys), ("begin", 4),
                          ("end", 4, keys), ("begin", 5), ("end", 5, keys),
                          ("epoch", 2), ("begin", 6), ("end", 6, keys), ("begin", 7),
                          ("end", 7, keys), ("begin", 8), ("end", 8, keys)]


def test_lr_scheduler_per_epoch_is_the_pytorch_loop():
    x, y = data()
    a, b = classifier(), classifier()
    opt_a = optim.Adam(a.parameters(), lr=0.05)
    cb = fastrnn.LearningRateScheduler(optim.CosineAnnealingLR(opt_a, T_max=3))
    a.fit(x, y, epochs=3, batch_size=4, optimizer=opt_a, callbacks=[cb], seed=0,
          progress=False)
    opt_b = optim.Adam(b.parameters(), lr=0.05)
    sched = optim.CosineAnnealingLR(opt_b, T_max=3)
    lrs = []
    for epoch in range(3):                           # fit one epoch at a time, by hand
        lrs.append(opt_b.param_groups[0]["lr"])
        b.fit(x, y, epochs=epoch + 1, initial_epoch=epoch, batch_size=4, optimizer=opt_b,
              seed=0, progress=False)
        sched.step()
    assert cb.lrs == lrs and lrs[0] > lrs[1] > lrs[2]
    for p, q in zip(a.parameters(), b.parameters()):
        assert np.array_equal(p.data, q.data)


def test_lr_scheduler_per_step_and_keras_function_agree():
    x, y = data()
    a, b = classifier(), classifier()
    opt_a = optim.SGD(a.parameters(), lr=0.2)
    step = fastrnn.LearningRateScheduler(optim.StepLR(opt_a, step_size=2, gamma=0.5),
                                         interval="step")
    a.fit(x, y, epochs=2, batch_size=4, optimizer=opt_a, callbacks=[step], seed=0,
          progress=False)
    assert step.lrs == [0.2, 0.2, 0.1, 0.1, 0.05, 0.05]     # 3 steps an epoch
    keras = fastrnn.LearningRateScheduler(lambda i, lr: 0.2 * 0.5 ** (i // 2),
                                          interval="step")
    b.fit(x, y, epochs=2, batch_size=4, optimizer=optim.SGD(b.parameters(), lr=0.2),
          callbacks=[keras], seed=0, progress=False)
    assert keras.lrs == step.lrs
    for p, q in zip(a.parameters(), b.parameters()):
        assert_allclose(p.data, q.data, rtol=1e-14, atol=1e-15)


def test_keras_function_per_epoch_sees_the_current_rate_of_each_group():
    x, y = data()
    model = classifier()
    opt = optim.SGD([{"params": model.rnn.parameters(), "lr": 0.1},
                     {"params": model.head.parameters(), "lr": 0.4}])
    seen = []

    def halve(epoch, lr):
        seen.append((epoch, lr))
        return lr if epoch == 0 else lr / 2

    model.fit(x, y, epochs=3, optimizer=opt, progress=False,
              callbacks=[fastrnn.LearningRateScheduler(halve)])
    assert seen == [(0, 0.1), (0, 0.4), (1, 0.1), (1, 0.4), (2, 0.05), (2, 0.2)]
    assert [g["lr"] for g in opt.param_groups] == [0.025, 0.1]


def test_lr_scheduler_bad_input():
    x, y = data()
    model = classifier()
    other = optim.SGD(classifier().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="another optimizer than the one fit trains with"):
        model.fit(x, y, progress=False,
                  callbacks=[fastrnn.LearningRateScheduler(optim.StepLR(other, 1))])
    with pytest.raises(ValueError, match="interval must be 'epoch' or 'step'"):
        fastrnn.LearningRateScheduler(lambda i, lr: lr, interval="batch")
    with pytest.raises(TypeError, match="schedule must be a fastrnn.optim schedule"):
        fastrnn.LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match=r"the rate schedule\(0, lr\) returned for "
                                         r"param_groups\[0\] must be >= 0"):
        model.fit(x, y, progress=False,
                  callbacks=[fastrnn.LearningRateScheduler(lambda i, lr: -1.0)])
    with pytest.raises(TypeError, match=r"schedule\(0, lr\) returned .* must be a float"):
        model.fit(x, y, progress=False,
                  callbacks=[fastrnn.LearningRateScheduler(lambda i, lr: None)])
