"""Property tests of Sequential and the blocks (hypothesis): random chains of random
sizes, with and without lengths.

* every gradient of a float64 chain equals central finite differences;
* float32 gives what float64 gives (same weights), forward and backward;
* malformed inputs raise ValueError or TypeError, nothing else.

The number of cases follows the hypothesis profile (tests/conftest.py).
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402

import fastrnn  # noqa: E402
from _tools import FD_TOL, PROPERTY_TOL, central_differences  # noqa: E402
from conftest import examples  # noqa: E402

# width-keeping layers of width F, and the layers that end a chain
KEEP = {
    "relu": lambda F, dt, s: fastrnn.ReLU(),
    "tanh": lambda F, dt, s: fastrnn.Tanh(),
    "sigmoid": lambda F, dt, s: fastrnn.Sigmoid(),
    "gelu": lambda F, dt, s: fastrnn.GELU(),
    "gelu_tanh": lambda F, dt, s: fastrnn.GELU("tanh"),
    "layer_norm": lambda F, dt, s: fastrnn.LayerNorm(F, dtype=dt),
    "linear": lambda F, dt, s: fastrnn.Linear(F, F, dtype=dt, seed=s),
    "residual": lambda F, dt, s: fastrnn.Residual(fastrnn.Linear(F, F, dtype=dt, seed=s)),
    "lstm": lambda F, dt, s: fastrnn.LSTM(F, F, dtype=dt, seed=s),
    "gru_bf": lambda F, dt, s: fastrnn.GRU(F, F, batch_first=True, dtype=dt, seed=s),
    "bi_sum": lambda F, dt, s: fastrnn.Bidirectional(
        fastrnn.RNN(F, F, dtype=dt, seed=s), "sum", seed=s + 1),
    "concat_half": lambda F, dt, s: fastrnn.Sequential([
        fastrnn.Concatenate(fastrnn.Linear(F, F, dtype=dt, seed=s), fastrnn.Tanh()),
        fastrnn.Linear(2 * F, F, dtype=dt, seed=s + 1)]),
}
END = {
    "none": lambda F, dt, s: None,
    "last": lambda F, dt, s: fastrnn.TimePooling("last"),
    "mean": lambda F, dt, s: fastrnn.TimePooling("mean"),
    "max": lambda F, dt, s: fastrnn.TimePooling("max"),
    "attention": lambda F, dt, s: fastrnn.AttentionPooling(F, 3, dtype=dt, seed=s),
}


@st.composite
def chains(draw):
    B, T, F = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    kinds = draw(st.lists(st.sampled_from(sorted(KEEP)), min_size=1, max_size=3))
    end = draw(st.sampled_from(sorted(END)))
    lengths = draw(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B))
    return dict(B=B, T=T, F=F, kinds=kinds, end=end, seed=draw(st.integers(0, 1000)),
                lengths=None if lengths is None else np.array(lengths))


def build(case, dtype):
    F, s = case["F"], case["seed"]
    layers = [KEEP[k](F, dtype, s + 10 * i) for i, k in enumerate(case["kinds"])]
    end = END[case["end"]](F, dtype, s + 99)
    return fastrnn.Sequential(layers + ([end] if end is not None else []), dtype=dtype)


def inputs(case):
    rng = np.random.default_rng(case["seed"])
    return rng.standard_normal((case["B"], case["T"], case["F"])), rng


@settings(max_examples=examples(40))
@given(chains())
def test_chain_gradients_equal_finite_differences(case):
    model = build(case, np.float64)
    x, rng = inputs(case)
    lengths = case["lengths"]
    y, backward = model.forward_train(x, lengths)
    R = rng.standard_normal(y.shape)
    dx = backward(R)

    def loss():
        return float((model(x, lengths) * R).sum())

    assert_allclose(dx, central_differences(loss, x), **FD_TOL, err_msg="dx")
    for name, p in model.named_parameters():
        assert_allclose(p.grad, central_differences(loss, p.data), **FD_TOL, err_msg=name)


@settings(max_examples=examples(40))
@given(chains())
def test_float32_gives_what_float64_gives(case):
    wide, narrow = build(case, np.float64), build(case, np.float32)
    narrow.load_state_dict(wide.state_dict())
    wide.load_state_dict(narrow.state_dict())          # both the float32-rounded weights
    x, rng = inputs(case)
    lengths = case["lengths"]
    x32 = x.astype(np.float32)
    y64, back64 = wide.forward_train(x32.astype(np.float64), lengths)
    y32, back32 = narrow.forward_train(x32, lengths)
    assert y32.dtype == np.float32
    assert_allclose(y32, y64, **PROPERTY_TOL[np.float32])
    R = rng.standard_normal(y64.shape)
    dx64, dx32 = back64(R), back32(R.astype(np.float32))
    assert dx32.dtype == np.float32
    assert_allclose(dx32, dx64, **PROPERTY_TOL[np.float32])
    for (name, p64), (_, p32) in zip(wide.named_parameters(), narrow.named_parameters()):
        assert_allclose(p32.grad, p64.grad, err_msg=name, **PROPERTY_TOL[np.float32])


@settings(max_examples=examples(150))
@given(st.sampled_from(["float", "int", "complex", "str", "object", "nan"]),
       st.lists(st.integers(0, 4), min_size=0, max_size=4),
       st.none() | st.lists(st.integers(-1, 5), min_size=0, max_size=4),
       st.sampled_from(["call", "train", "fit", "predict"]))
def test_malformed_input_raises_value_or_type_error(kind, shape, lengths, entry):
    model = fastrnn.Sequential([fastrnn.GRU(2, 3, batch_first=True, seed=0),
                                fastrnn.AttentionPooling(3, 2, seed=1),
                                fastrnn.Linear(3, 2, seed=2)], loss="cross_entropy")
    x = {"float": lambda: np.ones(shape), "int": lambda: np.ones(shape, int),
         "complex": lambda: np.ones(shape, complex), "str": lambda: np.full(shape, "a"),
         "object": lambda: np.empty(shape, object),
         "nan": lambda: np.full(shape, np.nan)}[kind]()
    n = shape[0] if shape else 0
    run = {"call": lambda: model(x, lengths),
           "train": lambda: model.forward_train(x, lengths),
           "fit": lambda: model.fit(x, np.zeros(n, int), lengths, epochs=1, progress=False),
           "predict": lambda: model.predict(x, lengths)}[entry]
    try:
        run()
    except (ValueError, TypeError):
        pass
