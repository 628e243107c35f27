"""SequenceModel as a preset of Sequential: the files and numbers of fastrnn 0.1.0.

tests/data/presets/ holds checkpoints written by fastrnn 0.1.0, before SequenceModel was
built on Sequential, and the numbers that code gave for them (tests/data/make_presets.py):
they must still load, and today's code must give the same weights from the same seeds,
the same outputs, gradients, streamed outputs and generated tokens, and the same training
from the checkpoint.  The preset is also checked against the same layers assembled by
hand in a Sequential (test_sequential.py has the generic container's own tests).
"""

import copy
import json
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastrnn
from fastrnn.training import loss_sums

DATA = os.path.join(os.path.dirname(__file__), "data", "presets")
CASES = sorted(f[:-len(".expected.npz")] for f in os.listdir(DATA)
               if f.endswith(".expected.npz"))
FIT = dict(epochs=3, initial_epoch=1, batch_size=4, seed=3, progress=False)


def close(actual, expected):
    """Equal up to the rounding a different BLAS kernel could bring (this code gave them
    bit for bit when the files were written)."""
    actual = np.asarray(actual)
    tol = 1e-12 if actual.dtype == np.float64 else 2e-6
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert_allclose(actual, expected, rtol=tol, atol=tol)


def fixture(name):
    expected = np.load(os.path.join(DATA, f"{name}.expected.npz"), allow_pickle=False)
    case = json.loads(expected["case"].tobytes())
    return case, expected


def columns(expected):
    lengths = expected["lengths"] if "lengths" in expected.files else None
    return expected["x"], expected["y"], lengths


def test_cases_are_there():
    assert len(CASES) == 6


@pytest.mark.parametrize("name", CASES)
def test_same_seed_same_weights(name):
    case, expected = fixture(name)
    model = fastrnn.SequenceModel.build(**case["build"])
    init = {k[len("init/"):]: expected[k] for k in expected.files if k.startswith("init/")}
    state = model.state_dict()
    assert list(state) == list(init)                        # names and their order
    for k, v in init.items():
        assert_array_equal(state[k], v)


@pytest.mark.parametrize("name", CASES)
def test_old_file_loads_and_predicts_the_same(name):
    case, expected = fixture(name)
    model, opt, extra = fastrnn.load_checkpoint(os.path.join(DATA, f"{name}.npz"))
    assert type(model) is fastrnn.SequenceModel and extra["case"] == name
    assert type(opt).__name__ == "Adam"
    x, y, lengths = columns(expected)
    close(model.forward(x, lengths), expected["forward"])
    assert_array_equal(model.predict(x, lengths), expected["predict"])
    if "proba" in expected.files:
        close(model.predict_proba(x, lengths), expected["proba"])
    if "stream" in expected.files:
        close(model.stepper(x.shape[0]).run(x).swapaxes(0, 1), expected["stream"])
    if "generate" in expected.files:
        assert_array_equal(model.generate(x[:2, :3], 5, temperature=0.7, seed=4),
                           expected["generate"])
    # the file's architecture is written again as it was read
    again = fastrnn.SequenceModel.from_config(model.config())
    assert again.config() == model.config()


@pytest.mark.parametrize("name", CASES)
def test_same_gradients(name):
    case, expected = fixture(name)
    model = fastrnn.load(os.path.join(DATA, f"{name}.npz"))
    x, y, lengths = columns(expected)
    out, _, backward = model.forward_train(x, lengths)
    N, T = x.shape[:2]
    mask = None
    if model.head.per_step and lengths is not None:
        mask = np.arange(T)[None, :] < lengths[:, None]
    _, grad, _, _ = loss_sums(model.loss, out, y, mask)
    backward(grad)
    for k, p in model.named_parameters():
        close(p.grad, expected[f"grad/{k}"])


@pytest.mark.parametrize("name", CASES)
def test_same_training_from_the_checkpoint(name):
    case, expected = fixture(name)
    model, opt, _ = fastrnn.load_checkpoint(os.path.join(DATA, f"{name}.npz"))
    x, y, lengths = columns(expected)
    history = model.fit(x, y, lengths, optimizer=opt, tbptt=case.get("tbptt"), **FIT)
    logs = {k[len("history/"):]: expected[k] for k in expected.files
            if k.startswith("history/")}
    assert sorted(history.history) == sorted(logs)
    for k, v in logs.items():
        assert_allclose(history[k], v, rtol=1e-5 if k.endswith("loss") else 0)
    for k, v in model.state_dict().items():
        assert_allclose(v, expected[f"fit/{k}"], rtol=1e-5, atol=1e-6)


# -- the preset and the container --------------------------------------------------------

def parts_as_sequential(model):
    """A Sequential of copies of ``model``'s parts, by the same names."""
    parts = {"rnn": copy.deepcopy(model.rnn), "head": copy.deepcopy(model.head)}
    if model.embedding is not None:
        parts = {"embedding": copy.deepcopy(model.embedding), **parts}
    return fastrnn.Sequential(parts, loss=model.loss)


@pytest.mark.parametrize("name", CASES)
def test_the_preset_is_the_sequential_of_its_parts(name):
    """The same parts assembled by hand in a Sequential: the same parameter names, the
    same outputs, gradients and training, bit for bit (the same code runs)."""
    case, expected = fixture(name)
    model = fastrnn.load(os.path.join(DATA, f"{name}.npz"))
    chain = parts_as_sequential(model)
    assert list(chain.state_dict()) == list(model.state_dict())
    x, y, lengths = columns(expected)
    assert_array_equal(chain.forward(x, lengths), model.forward(x, lengths))
    assert_array_equal(chain(x, lengths), model.forward(x, lengths))
    out, _, backward = model.forward_train(x, lengths)
    out2, backward2 = chain.forward_train(x, lengths)
    assert_array_equal(out, out2)
    dout = np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype)
    backward(dout)
    backward2(dout, input_grad=False)
    for (k, p), (k2, p2) in zip(model.named_parameters(), chain.named_parameters()):
        assert k == k2
        assert_array_equal(p.grad, p2.grad)
    if case.get("tbptt"):
        return                                  # the container has no truncated BPTT
    fit = dict(epochs=2, batch_size=4, seed=1, progress=False)
    h1, h2 = model.fit(x, y, lengths, **fit), chain.fit(x, y, lengths, **fit)
    assert h1.history == h2.history
    for a, b in zip(model.parameters(), chain.parameters()):
        assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("head", ["many_to_many", "many_to_one"])
def test_the_preset_is_the_generic_chain(head, dtype):
    """A token LSTM preset and the chain of generic layers with the same weights:
    Embedding -> LSTM -> Linear (many-to-many) or Embedding -> LSTM -> TimePooling("last")
    -> Linear (many-to-one, whose head reads h_n: the output at the last valid step)."""
    model = fastrnn.SequenceModel.build("lstm", vocab_size=9, embedding_dim=4, hidden_size=5,
                                        output_size=3, head=head, dtype=dtype, seed=0)
    pool = [fastrnn.TimePooling("last")] if head == "many_to_one" else []
    chain = fastrnn.Sequential([fastrnn.Embedding(9, 4, dtype=dtype),
                                fastrnn.LSTM(4, 5, dtype=dtype)]
                               + pool + [fastrnn.Linear(5, 3, dtype=dtype)], loss="cross_entropy")
    dense = str(len(chain) - 1)
    chain.load_state_dict({k.replace("embedding.", "0.").replace("rnn.", "1.")
                           .replace("head.readout.", dense + "."): v
                           for k, v in model.state_dict().items()})
    rng = np.random.default_rng(1)
    x, lengths = rng.integers(0, 9, (12, 6)), rng.integers(1, 7, 12)
    y = rng.integers(0, 3, (12, 6) if head == "many_to_many" else 12)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    assert_allclose(chain.forward(x, lengths), model.forward(x, lengths), **tol)
    fit = dict(epochs=2, batch_size=4, seed=1, progress=False)
    h1, h2 = model.fit(x, y, lengths, **fit), chain.fit(x, y, lengths, **fit)
    assert_allclose(h1["loss"], h2["loss"], **tol)
    for a, b in zip(model.parameters(), chain.parameters()):
        assert_allclose(a.data, b.data, **tol)


def test_a_sequential_of_named_layers_round_trips(tmp_path):
    model = fastrnn.SequenceModel.build("gru", vocab_size=6, hidden_size=4, output_size=2,
                                        head="many_to_one", seed=0)
    chain = parts_as_sequential(model)
    assert chain.config()["names"] == ["embedding", "rnn", "head"]
    assert chain["rnn"] is chain[1]
    fastrnn.save(chain, tmp_path / "chain.npz")
    loaded = fastrnn.load(tmp_path / "chain.npz")
    assert type(loaded) is fastrnn.Sequential and loaded.config() == chain.config()
    tokens = np.random.default_rng(0).integers(0, 6, (3, 5))
    assert_array_equal(loaded.predict(tokens), model.predict(tokens))


def test_parts_replaced_by_assignment_are_used():
    model = fastrnn.SequenceModel.build("lstm", input_size=2, hidden_size=3, output_size=2,
                                        head="many_to_one", seed=0)
    x = np.ones((1, 4, 2), np.float32)
    head = fastrnn.heads.ManyToOne(3, 2, seed=5)
    model.head = head
    assert model.head is head and model[1] is head
    assert_array_equal(model.forward(x), head(None, model.rnn(x.swapaxes(0, 1))[1]))


@pytest.mark.parametrize("make, error, word", [
    (lambda m: fastrnn.Sequential([m]), TypeError, "whole model"),
    (lambda m: fastrnn.Sequential([m.head]), ValueError, "right after a recurrent"),
    (lambda m: fastrnn.Sequential([fastrnn.ReLU(), m.head]), ValueError, "right after"),
    (lambda m: fastrnn.Residual(m.head), ValueError, "head"),
    (lambda m: fastrnn.Sequential({"a.b": fastrnn.ReLU()}), ValueError, "name"),
    (lambda m: fastrnn.SequenceModel(m.rnn, m.head, embedding=fastrnn.Linear(2, 2)),
     TypeError, "embedding"),
])
def test_bad_compositions(make, error, word):
    model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=3, output_size=2,
                                        seed=0)
    with pytest.raises(error, match=word):
        make(model)
