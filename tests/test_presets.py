"""SequenceModel as a preset of Sequential: the files and numbers of fastrnn 0.1.0.

tests/data/presets/ holds checkpoints written by fastrnn 0.1.0, before SequenceModel was
built on Sequential, and the numbers that code gave for them (tests/data/make_presets.py):
they must still load, and today's code must give the same weights from the same seeds,
the same outputs, gradients, streamed outputs and generated tokens, and the same training
from the checkpoint.  The preset is also checked against the same layers assembled by
hand in a Sequential (test_sequential.py has the generic container's own tests).
"""

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
        close(model.stepper(x.shape[0]).run(x.swapaxes(0, 1)), expected["stream"])
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
