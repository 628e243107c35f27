"""Bad input: every public entry point refuses it with a ValueError or TypeError whose
message names the argument, before any kernel runs."""

import numpy as np
import pytest

import fastrnn

T, B, I, H = 4, 3, 2, 3
MODES = ["RNN", "LSTM", "GRU"]
ENTRIES = ["call", "forward_train"]
BAD_KINDS = ["complex", "object", "string", "datetime"]


def bad_array(kind, shape):
    """An array of ``shape`` holding something other than real numbers."""
    if kind == "complex":
        return np.zeros(shape, np.complex128)
    if kind == "object":
        return np.zeros(shape).astype(object)
    if kind == "string":
        return np.full(shape, "1.0")
    return np.zeros(shape, "datetime64[s]")


def make(mode, **kwargs):
    return getattr(fastrnn, mode)(I, H, dtype=np.float64, seed=0, **kwargs)


def make_cell(mode, **kwargs):
    return getattr(fastrnn, mode + "Cell")(I, H, dtype=np.float64, seed=0, **kwargs)


def forward(layer, entry, x, state=None, lengths=None):
    if entry == "call":
        return layer(x, state, lengths=lengths)
    return layer.forward_train(x, state, lengths=lengths)


def good_state(mode, LD=1, batch=B):
    h = np.zeros((LD, batch, H))
    return (h, h.copy()) if mode == "LSTM" else h


def _unchanged(module, before):
    for name, p in module.named_parameters():
        np.testing.assert_array_equal(p.data, before[name])
        assert not np.any(p.grad)


# ------------------------------------------------------------------------------------ x


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(I,), (), (1, T, B, I)], ids=["1d", "0d", "4d"])
def test_layer_x_wrong_rank(mode, entry, shape):
    """(T, B, I) or one unbatched sequence (T, I) (tests/test_variants.py), as torch.nn."""
    layer = make(mode)
    before = layer.state_dict()
    with pytest.raises(ValueError, match=r"\bx must be 3-D or 2-D"):
        forward(layer, entry, np.zeros(shape))
    _unchanged(layer, before)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_layer_x_wrong_last_dimension(mode, entry, batch_first):
    layer = make(mode, batch_first=batch_first)
    with pytest.raises(ValueError, match=r"x\.shape\[-1\] must equal input_size=2, got 5"):
        forward(layer, entry, np.zeros((T, B, 5)))


@pytest.mark.parametrize("shape", [(0, B, I), (0, I)], ids=["no_steps", "unbatched_no_steps"])
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_layer_x_empty(mode, entry, shape):
    """No time steps is refused; an empty batch gives empty outputs (tests/test_variants.py),
    as torch.nn's layers do."""
    with pytest.raises(ValueError, match=r"\bx must have at least one"):
        forward(make(mode), entry, np.zeros(shape))


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_layer_x_bad_dtype(mode, entry, kind):
    with pytest.raises(TypeError, match=r"\bx must hold real numbers"):
        forward(make(mode), entry, bad_array(kind, (T, B, I)))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_layer_x_none(mode, entry):
    with pytest.raises(TypeError, match=r"\bx must be an array, got None"):
        forward(make(mode), entry, None)


@pytest.mark.parametrize("mode", MODES)
def test_layer_x_ragged_nested_list(mode):
    """A ragged nested list is malformed input like any other: the error must name x."""
    ragged = [[[0.0, 0.0]] * B] * (T - 1) + [[[0.0, 0.0]] * (B - 1)]
    layer = make(mode)
    for call in (layer, layer.forward_train):
        with pytest.raises((ValueError, TypeError), match=r"\bx\b"):
            call(ragged)


# ---------------------------------------------------------------------------- state0


def _wrong_state_shapes(LD):
    return {"layers": (LD + 1, B, H), "batch": (LD, B + 1, H), "hidden": (LD, B, H + 1),
            "batch_first": (B, LD, H)}


@pytest.mark.parametrize("wrong", ["layers", "batch", "hidden", "batch_first", "rank"])
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_layer_state_wrong_shape(mode, entry, wrong):
    layer = make(mode, num_layers=2)
    x = np.zeros((T, B, I))
    if wrong == "rank":
        bad, message = np.zeros((B, H)), r"(state0|h0).* must be 3-D"
    else:
        bad = np.zeros(_wrong_state_shapes(2)[wrong])
        message = r"(state0|h0).* must have shape \(2, 3, 3\), got " + str(bad.shape).replace(
            "(", r"\(").replace(")", r"\)")
    good = np.zeros((2, B, H))
    states = [(bad, good), (good, bad)] if mode == "LSTM" else [bad]
    for state in states:
        with pytest.raises(ValueError, match=message):
            forward(layer, entry, x, state)


@pytest.mark.parametrize("mode", ["RNN", "GRU"])
def test_rnn_call_state_error_names_h0(mode):
    """``rnn(x, h0)``: the initial state argument of RNN/GRU ``__call__`` is called h0, so
    an error about it must say h0 (it says state0, a name that call does not have)."""
    layer = make(mode)
    with pytest.raises(ValueError, match=r"\bh0\b"):
        layer(np.zeros((T, B, I)), np.zeros((1, B, H + 1)))
    with pytest.raises(ValueError, match=r"\bh0\b"):
        layer(np.zeros((T, B, I)), h0=np.zeros((B, H)))


@pytest.mark.parametrize("entry", ENTRIES)
def test_lstm_state_must_be_a_pair(entry):
    layer = make("LSTM")
    x, h = np.zeros((T, B, I)), np.zeros((1, B, H))
    for bad in (h, (h,), (h, h, h), {"h": h, "c": h}):
        with pytest.raises(TypeError, match=r"(state0|h0) must be a tuple \(h, c\)"):
            forward(layer, entry, x, bad)
    with pytest.raises(TypeError, match=r"state0\[1\] \(c\) must be an array, got None"):
        forward(layer, entry, x, (h, None))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", ["RNN", "GRU"])
def test_rnn_state_must_be_one_array(mode, entry):
    h = np.zeros((1, B, H))
    for bad in ((h,), (h, h), [h]):
        with pytest.raises(TypeError, match=r"(state0|h0) must be one array"):
            forward(make(mode), entry, np.zeros((T, B, I)), bad)


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_layer_state_bad_dtype(mode, kind):
    bad, good = bad_array(kind, (1, B, H)), np.zeros((1, B, H))
    state = (good, bad) if mode == "LSTM" else bad
    with pytest.raises(TypeError, match=r"(state0|h0).* must hold real numbers"):
        make(mode)(np.zeros((T, B, I)), state)


# --------------------------------------------------------------------------- lengths

BAD_LENGTH_VALUES = {"zero": [4, 0, 2], "negative": [4, -1, 2], "too_long": [5, 1, 2],
                     "huge": [2 ** 40, 1, 1]}
BAD_LENGTH_SHAPES = {"too_few": [4, 2], "too_many": [4, 2, 1, 1], "scalar": 3,
                     "2d": [[4, 2, 1]], "column": [[4], [2], [1]], "empty": np.zeros(0, int)}
BAD_LENGTH_TYPES = {"fractional": [4.0, 1.5, 2.0], "nan": [4.0, np.nan, 2.0],
                    "inf": [4.0, np.inf, 2.0], "bool": [True, True, True],
                    "string": ["4", "1", "2"], "complex": [4 + 0j, 1 + 0j, 2 + 0j],
                    "object": np.array([4, 1, 2], object), "empty_list": []}


@pytest.mark.parametrize("case", list(BAD_LENGTH_VALUES))
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_lengths_out_of_range(mode, entry, case):
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        forward(make(mode), entry, np.zeros((T, B, I)), lengths=BAD_LENGTH_VALUES[case])


@pytest.mark.parametrize("case", list(BAD_LENGTH_SHAPES))
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_lengths_wrong_shape(mode, entry, case):
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\)"):
        forward(make(mode), entry, np.zeros((T, B, I)), lengths=BAD_LENGTH_SHAPES[case])


@pytest.mark.parametrize("case", list(BAD_LENGTH_TYPES))
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_lengths_not_integers(mode, entry, case):
    with pytest.raises(TypeError, match=r"lengths must hold integers"):
        forward(make(mode), entry, np.zeros((T, B, I)), lengths=BAD_LENGTH_TYPES[case])


def test_lengths_checked_against_batch_first_layout():
    layer = make("GRU", batch_first=True)
    x = np.zeros((B, T, I))
    layer(x, lengths=[4, 1, 2])  # (B, T, I): B = 3 rows, up to T = 4 steps
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\)"):
        layer(x, lengths=[4, 1, 2, 2])
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        layer(x, lengths=[5, 1, 2])


# -------------------------------------------------------------------- backward inputs


def _backward(mode, **kwargs):
    layer = make(mode, bidirectional=True, **kwargs)
    x = np.zeros((B, T, I) if layer.batch_first else (T, B, I))
    return layer, layer.forward_train(x, lengths=[4, 1, 2])[2]


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_dy_wrong_shape(mode, batch_first):
    layer, backward = _backward(mode, batch_first=batch_first)
    good = (B, T, 2 * H) if batch_first else (T, B, 2 * H)
    wrong = [good[:2] + (H,),                  # one direction's width
             (good[1], good[0], good[2]),      # the other layout (time-major vs batch-first)
             (good[0] + 1,) + good[1:]]        # one row too many
    for shape in wrong:
        with pytest.raises(ValueError, match=r"dy must have the shape of y"):
            backward(np.zeros(shape))
    with pytest.raises(ValueError, match=r"\bdy must be 3-D"):
        backward(np.zeros(good[1:]))
    assert not any(np.any(p.grad) for p in layer.parameters())


@pytest.mark.parametrize("mode", MODES)
def test_dy_bad_dtype_and_none(mode):
    _, backward = _backward(mode)
    for kind in BAD_KINDS:
        with pytest.raises(TypeError, match=r"\bdy must hold real numbers"):
            backward(bad_array(kind, (T, B, 2 * H)))
    with pytest.raises(TypeError, match=r"\bdy must be an array, got None"):
        backward(None)


@pytest.mark.parametrize("mode", MODES)
def test_dstate_wrong_shape_and_type(mode):
    _, backward = _backward(mode)
    dy = np.zeros((T, B, 2 * H))
    good = np.zeros((2, B, H))
    for shape in [(1, B, H), (2, B + 1, H), (2, B, H + 1)]:
        bad = np.zeros(shape)
        with pytest.raises(ValueError, match=r"dstate.* must have shape \(2, 3, 3\)"):
            backward(dy, (bad, good) if mode == "LSTM" else bad)
    with pytest.raises(TypeError, match=r"dstate.* must hold real numbers"):
        bad = good.astype(complex)
        backward(dy, (good, bad) if mode == "LSTM" else bad)
    if mode == "LSTM":
        with pytest.raises(TypeError, match=r"dstate must be a tuple \(h, c\)"):
            backward(dy, good)
    else:
        with pytest.raises(TypeError, match=r"dstate must be one array"):
            backward(dy, (good, good))


# ----------------------------------------------------------------------------- cells


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_cell_bad_x(mode, entry):
    cell = make_cell(mode)
    call = cell if entry == "call" else cell.forward_train
    for shape in [(), (1, B, I)]:
        with pytest.raises(ValueError, match=r"\bx must be 1-D or 2-D"):
            call(np.zeros(shape))
    for shape in [(B, I + 1), (I + 1,)]:
        with pytest.raises(ValueError, match=r"x\.shape\[-1\] must equal input_size=2"):
            call(np.zeros(shape))
    with pytest.raises(TypeError, match=r"\bx must be an array, got None"):
        call(None)
    for kind in BAD_KINDS:
        with pytest.raises(TypeError, match=r"\bx must hold real numbers"):
            call(bad_array(kind, (B, I)))


@pytest.mark.parametrize("mode", MODES)
def test_cell_empty_batch(mode):
    """Zero batch rows: refused (as the layers refuse them) with an error naming x."""
    cell = make_cell(mode)
    for call in (cell, cell.forward_train):
        with pytest.raises(ValueError, match=r"\bx\b"):
            call(np.zeros((0, I)))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
def test_cell_bad_state(mode, entry):
    cell = make_cell(mode)
    call = cell if entry == "call" else cell.forward_train
    x = np.zeros((B, I))
    good = np.zeros((B, H))
    for shape in [(B + 1, H), (B, H + 1), (H,), (1, B, H)]:
        bad = np.zeros(shape)
        with pytest.raises(ValueError, match=r"\bstate\b"):
            call(x, (good, bad) if mode == "LSTM" else bad)
    with pytest.raises(ValueError, match=r"state.* must be 1-D"):  # unbatched x
        call(np.zeros(I), (np.zeros((B, H)),) * 2 if mode == "LSTM" else np.zeros((B, H)))
    with pytest.raises(TypeError, match=r"state.* must hold real numbers"):
        call(x, (good, good.astype(complex)) if mode == "LSTM" else good.astype(complex))
    if mode == "LSTM":
        with pytest.raises(TypeError, match=r"state must be a tuple \(h, c\)"):
            call(x, good)
    else:
        with pytest.raises(TypeError, match=r"state must be one array"):
            call(x, (good,))


@pytest.mark.parametrize("mode", MODES)
def test_cell_bad_dstate(mode):
    cell = make_cell(mode)
    _, backward = cell.forward_train(np.zeros((B, I)))
    good = np.zeros((B, H))
    bad = np.zeros((B, H + 1))
    with pytest.raises(ValueError, match=r"dstate.* must have shape \(3, 3\)"):
        backward((good, bad) if mode == "LSTM" else bad)
    with pytest.raises(TypeError, match=r"\bdstate\b"):
        backward(good if mode == "LSTM" else (good, good))
    with pytest.raises(TypeError, match=r"dstate.* must hold real numbers"):
        backward((good, good.astype(complex)) if mode == "LSTM" else good.astype(complex))
    assert not any(np.any(p.grad) for p in cell.parameters())


# ------------------------------------------------------------------------ constructors

BAD_CONSTRUCTOR_ARGS = [
    ("input_size", 0, ValueError), ("input_size", -3, ValueError),
    ("input_size", 2.0, TypeError), ("hidden_size", 0, ValueError),
    ("hidden_size", 2.5, TypeError), ("hidden_size", "3", TypeError),
    ("hidden_size", True, TypeError), ("hidden_size", None, TypeError),
    ("dtype", np.int32, TypeError), ("dtype", np.float16, TypeError),
    ("dtype", np.complex128, TypeError), ("dtype", "not a dtype", TypeError),
    ("seed", "x", TypeError), ("seed", 1.5, TypeError), ("seed", -1, ValueError),
]
LAYER_ONLY_ARGS = [
    ("num_layers", -1, ValueError), ("num_layers", 0, ValueError),
    ("num_layers", 1.0, TypeError), ("dropout", 1.5, ValueError),
    ("dropout", float("nan"), ValueError), ("dropout", -0.1, ValueError),
    ("dropout", float("nan"), ValueError), ("dropout", float("inf"), ValueError),
    ("dropout", "0.5", TypeError), ("dropout", None, TypeError),
]


def _kwargs(name, value):
    kwargs = dict(input_size=I, hidden_size=H)
    kwargs[name] = value
    return kwargs


@pytest.mark.parametrize("name,value,error", BAD_CONSTRUCTOR_ARGS + LAYER_ONLY_ARGS,
                         ids=lambda v: repr(v) if not isinstance(v, type) else v.__name__)
@pytest.mark.parametrize("mode", MODES)
def test_layer_constructor_refuses(mode, name, value, error):
    with pytest.raises(error, match=rf"\b{name}\b"):
        getattr(fastrnn, mode)(**_kwargs(name, value))


@pytest.mark.parametrize("name,value,error", BAD_CONSTRUCTOR_ARGS,
                         ids=lambda v: repr(v) if not isinstance(v, type) else v.__name__)
@pytest.mark.parametrize("mode", MODES)
def test_cell_constructor_refuses(mode, name, value, error):
    with pytest.raises(error, match=rf"\b{name}\b"):
        getattr(fastrnn, mode + "Cell")(**_kwargs(name, value))


@pytest.mark.parametrize("value", ["sigmoid", "TANH", None, ""])
@pytest.mark.parametrize("cls", [fastrnn.RNN, fastrnn.RNNCell])
def test_nonlinearity_refused(cls, value):
    with pytest.raises(ValueError, match=r"nonlinearity must be 'tanh' or 'relu'"):
        cls(I, H, nonlinearity=value)


def test_constructor_accepts_numpy_scalars_and_dtype_names():
    layer = fastrnn.LSTM(np.int64(I), np.int32(H), num_layers=np.int8(2),
                         dropout=np.float64(0.25), dtype="float64", seed=np.uint32(3))
    assert (layer.input_size, layer.hidden_size, layer.num_layers) == (I, H, 2)
    assert layer.dtype == np.float64 and layer.dropout == 0.25
    cell = fastrnn.GRUCell(np.int64(I), np.int64(H), dtype=np.dtype(np.float32))
    assert cell.dtype == np.float32
