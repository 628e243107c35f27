"""Property tests of the public API (hypothesis).

* random layers and inputs -- cell, sizes, steps, batch (each down to 1), lengths, dtype,
  direction, layers, batch_first, bias, memory layout of the input -- give what the
  pure-NumPy oracle ``fastrnn.reference`` gives, forward and backward;
* on small float64 cases every gradient equals central finite differences;
* malformed arguments to every entry point raise ValueError or TypeError, never anything
  else (and never crash the interpreter).

The number of cases follows the hypothesis profile (tests/conftest.py): a few thousand in
all by default, fifty times as many with ``HYPOTHESIS_PROFILE=long``.
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn import reference as ref  # noqa: E402
from _tools import central_differences  # noqa: E402
from conftest import examples  # noqa: E402

MODES = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")]
from _tools import PROPERTY_TOL as TOL  # noqa: E402


@st.composite
def cases(draw, max_size=4, max_steps=5, max_batch=4, dtypes=(np.float64, np.float32),
          modes=MODES):
    mode, nonlinearity = draw(st.sampled_from(modes))
    T = draw(st.integers(1, max_steps))
    B = draw(st.integers(1, max_batch))
    c = dict(mode=mode, nonlinearity=nonlinearity, T=T, B=B,
             I=draw(st.integers(1, max_size)), H=draw(st.integers(1, max_size)),
             num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
             batch_first=draw(st.booleans()), bias=draw(st.booleans()),
             dtype=draw(st.sampled_from(dtypes)),
             lengths=draw(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B)),
             layout=draw(st.sampled_from(["c", "fortran", "strided", "other_dtype", "list"])),
             given_state=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 32 - 1)))
    return c


def make_layer(c):
    kw = dict(num_layers=c["num_layers"], bidirectional=c["bidirectional"], bias=c["bias"],
              batch_first=c["batch_first"], dtype=c["dtype"], seed=c["seed"] % 1000)
    if c["mode"] == "RNN":
        kw["nonlinearity"] = c["nonlinearity"]
    return getattr(fastrnn, c["mode"])(c["I"], c["H"], **kw)


def arrange(a, layout, dtype):
    """``a`` in the memory layout a case asks for (same values)."""
    if layout == "fortran":
        return np.asfortranarray(a.astype(dtype))
    if layout == "strided":
        big = np.zeros((a.shape[0] * 2,) + a.shape[1:-1] + (a.shape[-1] + 1,), dtype)
        big[::2, ..., 1:] = a
        view = big[::2, ..., 1:]
        return view
    if layout == "other_dtype":
        return a.astype(np.float64 if np.dtype(dtype) == np.float32 else np.float32)
    if layout == "list":
        return a.tolist()
    return np.ascontiguousarray(a, dtype)


def draw_inputs(c):
    rng = np.random.default_rng(c["seed"])
    T, B, I, H = c["T"], c["B"], c["I"], c["H"]
    LD = c["num_layers"] * (2 if c["bidirectional"] else 1)
    x = rng.standard_normal((T, B, I))
    if c["layout"] == "other_dtype" or np.dtype(c["dtype"]) == np.float32:
        x = x.astype(np.float32).astype(np.float64)     # values both dtypes hold exactly
    h0 = rng.standard_normal((LD, B, H)) if c["given_state"] else None
    c0 = rng.standard_normal((LD, B, H)) if c["given_state"] and c["mode"] == "LSTM" else None
    if h0 is not None and np.dtype(c["dtype"]) == np.float32:
        h0 = h0.astype(np.float32).astype(np.float64)
        c0 = None if c0 is None else c0.astype(np.float32).astype(np.float64)
    dy = rng.standard_normal((T, B, (LD // c["num_layers"]) * H))
    dh = rng.standard_normal((LD, B, H))
    dc = rng.standard_normal((LD, B, H))
    return x, h0, c0, dy, dh, dc


def layer_call_args(c, x, h0, c0):
    xl = np.swapaxes(x, 0, 1) if c["batch_first"] else x
    xa = arrange(xl, c["layout"], c["dtype"])
    state = None
    if h0 is not None:
        state = (h0.astype(c["dtype"]), c0.astype(c["dtype"])) if c["mode"] == "LSTM" \
            else h0.astype(c["dtype"])
    return xa, state


def time_major(c, a):
    return np.swapaxes(a, 0, 1) if c["batch_first"] else a


@settings(max_examples=examples(400))
@given(cases())
def test_layer_equals_reference(c):
    layer = make_layer(c)
    x, h0, c0, dy, dh, dc = draw_inputs(c)
    lstm = c["mode"] == "LSTM"
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    y_r, h_r, c_r, cache = ref.stack_forward(
        c["mode"], x, params, num_layers=c["num_layers"], bidirectional=c["bidirectional"],
        h0=h0, c0=c0, lengths=c["lengths"], nonlinearity=c["nonlinearity"])
    dt = np.dtype(c["dtype"])
    if dt == np.float32:
        dy, dh, dc = (a.astype(np.float32).astype(np.float64) for a in (dy, dh, dc))
    dx_r, dh0_r, dc0_r, grads_r = ref.stack_backward(dy, dh, dc if lstm else None, cache)

    xa, state = layer_call_args(c, x, h0, c0)
    x_before = np.array(xa, copy=True)
    y, st_n = layer(xa, state, lengths=c["lengths"])
    y2, st2, backward = layer.forward_train(xa, state, lengths=c["lengths"])
    dx, dst = backward(time_major(c, dy).astype(dt), (dh.astype(dt), dc.astype(dt)) if lstm
                       else dh.astype(dt))
    np.testing.assert_array_equal(np.asarray(xa), x_before)           # input untouched
    tol = TOL[dt.type]
    assert y.dtype == dt and dx.dtype == dt
    assert_allclose(time_major(c, y), y_r, **tol)
    assert_allclose(time_major(c, y2), y_r, **tol)
    h_n, h2 = (st_n[0], st2[0]) if lstm else (st_n, st2)
    assert_allclose(h_n, h_r, **tol)
    assert_allclose(h2, h_r, **tol)
    if lstm:
        assert_allclose(st_n[1], c_r, **tol)
    assert_allclose(time_major(c, dx), dx_r, **tol)
    assert_allclose(dst[0] if lstm else dst, dh0_r, **tol)
    if lstm:
        assert_allclose(dst[1], dc0_r, **tol)
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, grads_r[name], err_msg=name, **tol)


@settings(max_examples=examples(300))
@given(mode=st.sampled_from(MODES), B=st.integers(1, 4), I=st.integers(1, 4),
       H=st.integers(1, 4), bias=st.booleans(), batched=st.booleans(),
       given_state=st.booleans(), dtype=st.sampled_from([np.float64, np.float32]),
       seed=st.integers(0, 999))
def test_cell_equals_reference(mode, B, I, H, bias, batched, given_state, dtype, seed):
    name, nonlinearity = mode
    kw = {"nonlinearity": nonlinearity} if name == "RNN" else {}
    cell = getattr(fastrnn, name + "Cell")(I, H, bias=bias, dtype=dtype, seed=seed, **kw)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, B, I)).astype(dtype).astype(np.float64)
    h0 = rng.standard_normal((1, B, H)).astype(dtype).astype(np.float64)
    c0 = rng.standard_normal((1, B, H)).astype(dtype).astype(np.float64)
    params = {k + "_l0": v.astype(np.float64) for k, v in cell.state_dict().items()}
    lstm = name == "LSTM"
    _, h_r, c_r, _ = ref.stack_forward(name, x, params, h0=h0 if given_state else None,
                                       c0=(c0 if given_state else None) if lstm else None,
                                       nonlinearity=nonlinearity)
    pick = (lambda a: a[0]) if batched else (lambda a: a[0, 0])
    xs = pick(x).astype(dtype)
    state = None
    if given_state:
        h_s = pick(h0).astype(dtype)
        state = (h_s, pick(c0).astype(dtype)) if lstm else h_s
    if not batched:
        h_r, c_r = h_r[:, :1], (None if c_r is None else c_r[:, :1])
    out = cell(xs, state)
    tol = TOL[np.dtype(dtype).type]
    assert_allclose(out[0] if lstm else out, pick(h_r), **tol)
    if lstm:
        assert_allclose(out[1], pick(c_r), **tol)


# ----------------------------------------------------------------- finite differences



@settings(max_examples=examples(60))
@given(cases(max_size=3, max_steps=4, max_batch=3, dtypes=(np.float64,),
             modes=[m for m in MODES if m[1] == "tanh"]))
def test_gradients_equal_finite_differences(c):
    c = {**c, "layout": "c"}
    layer = make_layer(c)
    x, h0, c0, _, _, _ = draw_inputs(c)
    lstm = c["mode"] == "LSTM"
    rng = np.random.default_rng(c["seed"] + 1)
    LD = c["num_layers"] * (2 if c["bidirectional"] else 1)
    h0 = rng.standard_normal((LD, c["B"], c["H"])) if h0 is None else h0
    c0 = rng.standard_normal((LD, c["B"], c["H"])) if lstm and c0 is None else c0
    xl = np.ascontiguousarray(time_major(c, x))
    y0, st0 = layer(xl, (h0, c0) if lstm else h0, lengths=c["lengths"])
    Ry = rng.standard_normal(y0.shape)
    Rh = rng.standard_normal(LD * c["B"] * c["H"]).reshape(h0.shape)
    Rc = rng.standard_normal(h0.shape)

    def loss():
        y, s = layer(xl, (h0, c0) if lstm else h0, lengths=c["lengths"])
        h, cc = s if lstm else (s, None)
        return float(np.sum(y * Ry) + np.sum(h * Rh) + (np.sum(cc * Rc) if lstm else 0.0))

    _, _, backward = layer.forward_train(xl, (h0, c0) if lstm else h0, lengths=c["lengths"])
    dx, dst = backward(Ry, (Rh, Rc) if lstm else Rh)
    tol = dict(rtol=1e-5, atol=1e-7)
    assert_allclose(dx, central_differences(loss, xl), **tol, err_msg="x")
    assert_allclose(dst[0] if lstm else dst, central_differences(loss, h0), **tol, err_msg="h0")
    if lstm:
        assert_allclose(dst[1], central_differences(loss, c0), **tol, err_msg="c0")
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, central_differences(loss, p.data), **tol, err_msg=name)


# ----------------------------------------------------------------- malformed arguments

def junk_arrays():
    dims = st.lists(st.integers(0, 3), min_size=0, max_size=4)
    kinds = st.sampled_from(["f8", "f4", "f2", "i8", "u1", "?", "c16", "O", "U3", "S2",
                             "M8[s]", "V4"])

    def build(shape_kind):
        shape, kind, seed = shape_kind
        rng = np.random.default_rng(seed)
        size = int(np.prod(shape)) if shape else 1
        if kind == "O":
            return np.array([object()] * size, dtype=object).reshape(shape)
        if kind in ("U3", "S2", "M8[s]", "V4"):
            return np.zeros(shape, dtype=kind)
        values = rng.standard_normal(size) * 10.0 ** rng.integers(-3, 40)
        special = rng.random(size)
        values[special < 0.1] = np.nan
        values[(special >= 0.1) & (special < 0.15)] = np.inf
        with np.errstate(all="ignore"):
            return values.astype(kind).reshape(shape)

    return st.tuples(dims, kinds, st.integers(0, 1000)).map(build)


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=True), st.text(max_size=3),
    st.binary(max_size=3), st.just({"a": 1}), st.just(object()), st.just([[1, 2], [3]]),
    st.lists(st.integers(-2, 6), max_size=5), st.tuples(st.none(), st.none()),
    st.lists(st.lists(st.floats(-2, 2), min_size=2, max_size=2), max_size=3),
    junk_arrays(), junk_arrays().map(lambda a: (a, a)))

OK_ERRORS = (ValueError, TypeError)


def refuses_or_runs(fn, *args, **kwargs):
    """``fn`` runs, or raises ValueError/TypeError; any other exception fails the test."""
    try:
        with np.errstate(all="ignore"):
            fn(*args, **kwargs)
    except OK_ERRORS:
        pass


LAYERS = {name: getattr(fastrnn, name)(3, 2, num_layers=2, bidirectional=True, seed=0,
                                       batch_first=name == "GRU")
          for name in ("RNN", "LSTM", "GRU")}
CELLS = {name: getattr(fastrnn, name + "Cell")(3, 2, seed=0) for name in ("RNN", "LSTM", "GRU")}
X_OK = np.zeros((4, 3, 3), np.float32)


@settings(max_examples=examples(500))
@given(name=st.sampled_from(sorted(LAYERS)), x=JUNK, state=JUNK, lengths=JUNK,
       which=st.sampled_from(["x", "state", "lengths", "all"]))
def test_layer_refuses_malformed_arguments(name, x, state, lengths, which):
    layer = LAYERS[name]
    args = {"x": (x, None, None), "state": (X_OK, state, None),
            "lengths": (X_OK, None, lengths), "all": (x, state, lengths)}[which]
    refuses_or_runs(layer, args[0], args[1], lengths=args[2])
    refuses_or_runs(layer.forward_train, args[0], args[1], lengths=args[2])


@settings(max_examples=examples(300))
@given(name=st.sampled_from(sorted(LAYERS)), dy=JUNK, dstate=JUNK,
       lengths=st.none() | st.just([1, 4, 2]))
def test_backward_refuses_malformed_gradients(name, dy, dstate, lengths):
    layer = LAYERS[name]
    _, _, backward = layer.forward_train(X_OK, lengths=None if layer.batch_first else lengths)
    refuses_or_runs(backward, dy, dstate)
    refuses_or_runs(backward, np.zeros((4, 3, 4), np.float32), dstate)


@settings(max_examples=examples(300))
@given(name=st.sampled_from(sorted(CELLS)), x=JUNK, state=JUNK, dstate=JUNK)
def test_cell_refuses_malformed_arguments(name, x, state, dstate):
    cell = CELLS[name]
    refuses_or_runs(cell, x, state)
    refuses_or_runs(cell, np.zeros((2, 3)), state)
    try:
        _, backward = cell.forward_train(np.zeros((2, 3)), None)
    except OK_ERRORS:
        return
    refuses_or_runs(backward, dstate)


CONSTRUCTOR_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 4), st.floats(),
                             st.text(max_size=3), st.just(np.float16), st.just("float64"),
                             st.just([1]), st.just(np.int64(2)))


@settings(max_examples=examples(300))
@given(cls=st.sampled_from(["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
                            "Linear", "Embedding"]),
       args=st.lists(CONSTRUCTOR_JUNK, min_size=2, max_size=2),
       kwarg=st.sampled_from(["num_layers", "bias", "dropout", "dtype", "seed",
                              "nonlinearity", "bidirectional", "padding_idx", None]),
       value=CONSTRUCTOR_JUNK)
def test_constructors_refuse_malformed_arguments(cls, args, kwarg, value):
    kwargs = {} if kwarg is None else {kwarg: value}
    try:
        with np.errstate(all="ignore"):
            getattr(fastrnn, cls)(*args, **kwargs)
    except OK_ERRORS:
        pass
    except Warning:
        pass


MODELS = {
    "m2m": fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4, output_size=2,
                                       seed=0),
    "m2o-bi": fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=4, output_size=2,
                                          head="many_to_one", bidirectional=True, seed=0),
    "tokens-mse": fastrnn.SequenceModel.build("rnn", vocab_size=5, hidden_size=4,
                                              output_size=2, loss="mse", seed=0),
}


@settings(max_examples=examples(400))
@given(name=st.sampled_from(sorted(MODELS)), x=JUNK, y=JUNK, lengths=JUNK,
       which=st.sampled_from(["predict", "fit", "evaluate", "step", "generate", "load_sd"]))
def test_models_refuse_malformed_arguments(name, x, y, lengths, which):
    model = MODELS[name]
    saved = model.state_dict()
    try:
        if which == "predict":
            refuses_or_runs(model.predict, x, lengths)
        elif which == "fit":
            refuses_or_runs(model.fit, x, y, lengths, epochs=1, progress=False,
                            optimizer=fastrnn.optim.SGD(model.parameters(), lr=0.0))
        elif which == "evaluate":
            refuses_or_runs(model.evaluate, x, y, lengths)
        elif which == "step":
            if model.head.per_step:
                stepper = model.stepper(2)
                refuses_or_runs(stepper.step, x)
                refuses_or_runs(stepper.reset, y)
        elif which == "generate":
            refuses_or_runs(model.generate, x, 2, seed=0)
        else:
            refuses_or_runs(model.load_state_dict, {"rnn.weight_ih_l0": x})
    finally:
        model.load_state_dict(saved)
