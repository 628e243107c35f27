"""Pickles of models, the way engines (Dask, Ray, multiprocessing) move them between
processes: about the size of the weights (a Parameter's pickle leaves out its gradient),
and the unpickled model predicts and trains as the original."""

import copy
import pickle

import numpy as np
import pytest

import fastrnn
from fastrnn import optim


def build(kind="lstm"):
    return fastrnn.SequenceModel.build(kind, input_size=8, hidden_size=64, output_size=5,
                                       num_layers=2, seed=0)


def weight_bytes(model) -> int:
    return sum(p.data.nbytes for p in model.parameters())


def data():
    rng = np.random.default_rng(1)
    return (rng.standard_normal((32, 12, 8)).astype(np.float32),
            rng.integers(0, 5, (32, 12)))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_a_fresh_model_pickles_to_about_the_size_of_its_weights(kind, tmp_path):
    model = build(kind)
    path = tmp_path / "model.npz"
    fastrnn.save(model, path)
    for protocol in (4, 5):
        size = len(pickle.dumps(model, protocol=protocol))
        assert size < 1.3 * weight_bytes(model), (size, weight_bytes(model))
        assert size < 1.3 * path.stat().st_size


def test_protocol_5_ships_every_parameter_out_of_band():
    model = build()
    buffers = []
    header = pickle.dumps(model, protocol=5, buffer_callback=buffers.append)
    sizes = sorted(b.raw().nbytes for b in buffers)
    # each parameter's array, and the dropout generator's 16-byte seed pool
    assert sizes == sorted([p.data.nbytes for p in model.parameters()] + [16])
    assert len(header) < 8192                   # the rest: the classes and settings
    again = pickle.loads(header, buffers=buffers)
    np.testing.assert_equal(again.state_dict(), model.state_dict())


def test_a_pickle_leaves_out_the_gradients_and_copies_keep_them():
    model = build()
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=16, progress=False, seed=0)
    model.zero_grad()
    for p in model.parameters():
        p.grad[...] = 1.5                       # stand-ins for a backward's sums
    size = len(pickle.dumps(model))
    assert size < 1.3 * weight_bytes(model)
    again = pickle.loads(pickle.dumps(model))
    for (name, p), (_, q) in zip(model.named_parameters(), again.named_parameters()):
        assert q.grad.shape == p.data.shape and q.grad.dtype == p.data.dtype, name
        assert not q.grad.any(), name
        assert q.grad.flags.c_contiguous and q.data.flags.c_contiguous
    for clone in (copy.deepcopy(model), copy.copy(model.rnn)):
        for p in clone.parameters():
            assert (p.grad == 1.5).all()
    deep = copy.deepcopy(model)
    assert all(p.data is not q.data and p.grad is not q.grad
               for p, q in zip(deep.parameters(), model.parameters()))


def test_an_unpickled_model_predicts_identically_and_trains_alike():
    x, y = data()
    model = build()
    again = pickle.loads(pickle.dumps(model, protocol=5))
    np.testing.assert_array_equal(again.predict_proba(x), model.predict_proba(x))
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    histories = []
    for m in (model, again):
        histories.append(m.fit(x, y, epochs=2, batch_size=16, progress=False, seed=3,
                               optimizer=optim.Adam(m.parameters(), lr=1e-2)).history)
    assert histories[0] == histories[1]
    np.testing.assert_equal(again.state_dict(), model.state_dict())
    assert histories[1]["loss"][-1] < histories[1]["loss"][0]


def test_a_parameter_refuses_a_state_without_its_array():
    p = fastrnn.Parameter(np.zeros(3, np.float32))
    for state in ({"data": [1.0, 2.0]}, {}, None, (None, {"_grad": np.zeros(3)})):
        with pytest.raises(TypeError, match="pickled state holds its data array"):
            p.__setstate__(state)


def test_a_parameter_pickled_as_its_slots_loads_without_its_grad():
    """The state of the pickles written before Parameter had __getstate__."""
    p = fastrnn.Parameter.__new__(fastrnn.Parameter)
    p.__setstate__((None, {"_data": np.arange(3.0), "_grad": np.ones(3)}))
    np.testing.assert_array_equal(p.data, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(p.grad, np.zeros(3))
