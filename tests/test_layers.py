"""Behaviour of the public layers and cells: shapes, batch_first, lengths, input layouts,
inputs left untouched, the Parameter / state_dict API, streaming with cells."""

import threading

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from fastrnn import Parameter

T, B, I, H = 5, 4, 3, 4
LENGTHS = np.array([3, 5, 1, 4])  # unsorted, min 1, max T
MODES = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")]
MODE_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
CLOSE = dict(rtol=1e-12, atol=1e-12)  # same arithmetic, perhaps different alignment


def make(mode, nonlinearity="tanh", dtype=np.float64, seed=0, **kwargs):
    if mode == "RNN":
        kwargs["nonlinearity"] = nonlinearity
    return getattr(fastrnn, mode)(I, H, dtype=dtype, seed=seed, **kwargs)


def make_cell(mode, nonlinearity="tanh", dtype=np.float64, seed=0, **kwargs):
    if mode == "RNN":
        kwargs["nonlinearity"] = nonlinearity
    return getattr(fastrnn, mode + "Cell")(I, H, dtype=dtype, seed=seed, **kwargs)


def random_inputs(layer, seed=1, dtype=np.float64):
    """x, state0, dy, dstate for ``layer`` (time-major or batch-first as the layer is)."""
    rng = np.random.default_rng(seed)
    LD, DH = layer.num_layers * layer.num_directions, layer.num_directions * H
    x = rng.standard_normal((B, T, I) if layer.batch_first else (T, B, I)).astype(dtype)
    dy = rng.standard_normal((B, T, DH) if layer.batch_first else (T, B, DH)).astype(dtype)
    h0, c0, dh, dc = (rng.standard_normal((LD, B, H)).astype(dtype) for _ in range(4))
    if layer.mode == "LSTM":
        return x, (h0, c0), dy, (dh, dc)
    return x, h0, dy, dh


def parts(state):
    """A state as a tuple of arrays: (h,) or (h, c)."""
    return tuple(state) if isinstance(state, tuple) else (state,)


def _map(f, value):
    """Apply ``f`` to an array, or to each array of a state tuple; None stays None."""
    if value is None:
        return None
    return tuple(f(a) for a in value) if isinstance(value, tuple) else f(value)


def run(layer, x, state=None, lengths=None, dy=None, dstate=None):
    """Every result of a training step, by name (gradients from zero)."""
    layer.zero_grad()
    y, s, backward = layer.forward_train(x, state, lengths=lengths)
    out = {"y": y}
    out.update({f"state{i}": a for i, a in enumerate(parts(s))})
    if dy is not None:
        dx, ds = backward(dy, dstate)
        out["dx"] = dx
        out.update({f"dstate{i}": a for i, a in enumerate(parts(ds))})
        out.update({f"grad:{n}": p.grad.copy() for n, p in layer.named_parameters()})
    return out


def assert_results_close(a, b, **tol):
    assert a.keys() == b.keys()
    for key in a:
        assert_allclose(a[key], b[key], err_msg=key, **(tol or CLOSE))


# ------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("given_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_layer_shapes(mode, num_layers, bidirectional, batch_first, lengths, given_state,
                      dtype):
    layer = make(mode, dtype=dtype, num_layers=num_layers, bidirectional=bidirectional,
                 batch_first=batch_first)
    D = 2 if bidirectional else 1
    x, state, dy, dstate = random_inputs(layer, dtype=dtype)
    state = state if given_state else None
    y_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    state_shape = (num_layers * D, B, H)
    n_state = 2 if mode == "LSTM" else 1

    y, s = layer(x, state, lengths=lengths)
    assert y.shape == y_shape and y.dtype == dtype
    assert isinstance(s, tuple) == (mode == "LSTM")
    assert len(parts(s)) == n_state
    assert all(a.shape == state_shape and a.dtype == dtype for a in parts(s))

    out = run(layer, x, state, lengths, dy, dstate if given_state else None)
    assert out["y"].shape == y_shape
    assert out["dx"].shape == x.shape and out["dx"].dtype == dtype
    for i in range(n_state):
        assert out[f"state{i}"].shape == state_shape
        assert out[f"dstate{i}"].shape == state_shape
        assert out[f"dstate{i}"].dtype == dtype
    for name, p in layer.named_parameters():
        assert p.grad.shape == p.data.shape and p.grad.dtype == p.data.dtype == dtype, name


@pytest.mark.parametrize("given_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_cell_shapes(mode, dtype, batched, given_state):
    cell = make_cell(mode, dtype=dtype)
    lead = (B,) if batched else ()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(lead + (I,)).astype(dtype)
    h = rng.standard_normal(lead + (H,)).astype(dtype)
    state = ((h, h) if mode == "LSTM" else h) if given_state else None
    new = cell(x, state)
    assert all(a.shape == lead + (H,) and a.dtype == dtype for a in parts(new))
    trained, backward = cell.forward_train(x, state)
    for a, b in zip(parts(trained), parts(new)):
        assert_allclose(a, b, **CLOSE)
    dx, ds = backward()
    assert dx.shape == x.shape and dx.dtype == dtype
    assert all(a.shape == lead + (H,) and a.dtype == dtype for a in parts(ds))
    assert len(parts(new)) == len(parts(ds)) == (2 if mode == "LSTM" else 1)


# ---------------------------------------------------------------- layouts and semantics


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_batch_first_equals_time_major(mode, nonlinearity, lengths):
    tm = make(mode, nonlinearity, num_layers=2, bidirectional=True)
    bf = make(mode, nonlinearity, num_layers=2, bidirectional=True, batch_first=True, seed=9)
    bf.load_state_dict(tm.state_dict())
    x, state, dy, dstate = random_inputs(tm)
    a = run(tm, x, state, lengths, dy, dstate)
    b = run(bf, x.transpose(1, 0, 2), state, lengths, dy.transpose(1, 0, 2), dstate)
    for key in ("y", "dx"):
        b[key] = b[key].transpose(1, 0, 2)
    assert_results_close(a, b)


@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_padded_steps_output_zero(mode, nonlinearity, batch_first):
    layer = make(mode, nonlinearity, num_layers=2, bidirectional=True,
                 batch_first=batch_first)
    x, state, _, _ = random_inputs(layer)
    for y in (layer(x, state, lengths=LENGTHS)[0],
              layer.forward_train(x, state, lengths=LENGTHS)[0]):
        yt = y.transpose(1, 0, 2) if batch_first else y
        for b, n in enumerate(LENGTHS):
            assert np.all(yt[n:, b] == 0)
            if nonlinearity == "tanh":  # relu outputs may be 0 at valid steps too
                assert np.all(yt[:n, b] != 0)


@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_lengths_equal_separate_truncated_sequences(mode, nonlinearity):
    """Each sequence run alone, truncated to its length, gives the same outputs, final
    state, input and state gradients; the parameter gradients add up."""
    layer = make(mode, nonlinearity, num_layers=2, bidirectional=True)
    x, state, dy, dstate = random_inputs(layer)
    full = run(layer, x, state, LENGTHS, dy, dstate)
    grad_sum = {k: 0 for k in full if k.startswith("grad:")}
    for b, n in enumerate(LENGTHS):
        row = slice(b, b + 1)
        s_b = tuple(a[:, row] for a in parts(state))
        ds_b = tuple(a[:, row] for a in parts(dstate))
        if mode != "LSTM":
            s_b, ds_b = s_b[0], ds_b[0]
        alone = run(layer, x[:n, row], s_b, None, dy[:n, row], ds_b)
        assert_allclose(full["y"][:n, row], alone["y"], **CLOSE)
        assert_allclose(full["dx"][:n, row], alone["dx"], **CLOSE)
        assert np.all(full["dx"][n:, b] == 0)
        for key in alone:
            if key.startswith(("state", "dstate")):
                assert_allclose(full[key][:, row], alone[key], err_msg=key, **CLOSE)
            elif key.startswith("grad:"):
                grad_sum[key] = grad_sum[key] + alone[key]
    for key, value in grad_sum.items():
        assert_allclose(full[key], value, err_msg=key, **CLOSE)


@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_reverse_direction_starts_at_last_valid_step(mode, nonlinearity):
    layer = make(mode, nonlinearity, bidirectional=True)
    x, state, _, _ = random_inputs(layer)
    y, _ = layer(x, state, lengths=LENGTHS)
    cell = make_cell(mode, nonlinearity)
    cell.load_state_dict({n.replace("_l0_reverse", ""): a for n, a in layer.state_dict().items()
                          if n.endswith("_reverse")})
    for b, n in enumerate(LENGTHS):
        s = tuple(a[1, b:b + 1] for a in parts(state))
        first = parts(cell(x[n - 1, b:b + 1], s if mode == "LSTM" else s[0]))[0]
        assert_allclose(y[n - 1, b:b + 1, H:], first, **CLOSE)


@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_full_lengths_equal_no_lengths(mode, nonlinearity):
    layer = make(mode, nonlinearity, num_layers=2, bidirectional=True)
    x, state, dy, dstate = random_inputs(layer)
    base = run(layer, x, state, None, dy, dstate)
    for lengths in ([T] * B, np.full(B, T, np.int32), np.full(B, float(T)), (T,) * B):
        assert_results_close(base, run(layer, x, state, lengths, dy, dstate))


@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_equivalent_lengths_forms(mode, nonlinearity):
    layer = make(mode, nonlinearity, bidirectional=True)
    x, state, dy, dstate = random_inputs(layer)
    base = run(layer, x, state, LENGTHS, dy, dstate)
    for lengths in (LENGTHS.tolist(), LENGTHS.astype(np.uint8), LENGTHS.astype(np.float32)):
        assert_results_close(base, run(layer, x, state, lengths, dy, dstate))


@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_backward_ignores_dy_at_padded_steps(mode, nonlinearity, batch_first):
    layer = make(mode, nonlinearity, num_layers=2, bidirectional=True,
                 batch_first=batch_first)
    x, state, dy, dstate = random_inputs(layer)
    padded = np.arange(T)[:, None] >= LENGTHS[None, :]  # (T, B)
    if batch_first:
        padded = padded.T
    clean, noisy = dy.copy(), dy.copy()
    clean[padded] = 0
    noisy[padded] = np.nan
    assert_results_close(run(layer, x, state, LENGTHS, clean, dstate),
                         run(layer, x, state, LENGTHS, noisy, dstate))


def _strided(a):
    """``a``'s values in a non-contiguous view (every other element of a larger array)."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous and not view.flags.f_contiguous
    return view


LAYOUT_CHANGES = {
    "strided": _strided,
    "fortran": np.asfortranarray,
    "float32": lambda a: a.astype(np.float32),
    "transposed_view": lambda a: np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1),
}


@pytest.mark.parametrize("change", list(LAYOUT_CHANGES))
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_input_layouts_give_the_same_results(mode, nonlinearity, lengths, change):
    layer = make(mode, nonlinearity, num_layers=2, bidirectional=True)
    inputs = random_inputs(layer)
    if change == "float32":  # values a float32 array can hold, so the cast is exact
        inputs = [_map(lambda a: a.astype(np.float32).astype(np.float64), v) for v in inputs]
    moved = [_map(LAYOUT_CHANGES[change], v) for v in inputs]
    x, state, dy, dstate = inputs
    mx, ms, mdy, mds = moved
    assert_results_close(run(layer, x, state, lengths, dy, dstate),
                         run(layer, mx, ms, lengths, mdy, mds))


@pytest.mark.parametrize("value", [0.0, -0.0, 0.5], ids=["zero", "minus_zero", "half"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_backward_takes_dy_broadcast_from_one_value(mode, lengths, batch_first, value):
    """A dy broadcast from one value (all strides 0, no memory; ``zero_gradient(y)`` for
    zeros, what a many-to-one head hands back) gives the results of that value written
    out, to the bit: the layer makes the kernels' zeros itself and copies any other."""
    layer = make(mode, num_layers=2, bidirectional=True, batch_first=batch_first)
    x, state, dy, dstate = random_inputs(layer)
    want = run(layer, x, state, lengths, np.full(dy.shape, value), dstate)
    given = [np.broadcast_to(np.float64(value), dy.shape)]
    if value == 0 and not np.signbit(value):
        given.append(fastrnn.layers.zero_gradient(dy))
    for broadcast in given:
        assert not any(broadcast.strides)
        got = run(layer, x, state, lengths, broadcast, dstate)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _frozen_copy(a):
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("lengths", [None, LENGTHS, np.sort(LENGTHS)[::-1].copy()],
                         ids=["full", "unsorted", "sorted"])
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_inputs_are_never_modified(mode, nonlinearity, lengths, batch_first):
    """No input changes (compared with copies), and read-only inputs are accepted."""
    layer = make(mode, nonlinearity, num_layers=2, bidirectional=True,
                 batch_first=batch_first, dropout=0.3)
    x, state, dy, dstate = random_inputs(layer)
    given = dict(x=x, state=state, dy=dy, dstate=dstate, lengths=lengths)
    for inputs in (given, {k: _map(_frozen_copy, v) for k, v in given.items()}):
        saved = {k: _map(np.copy, v) for k, v in inputs.items()}
        layer(inputs["x"], inputs["state"], lengths=inputs["lengths"])
        _, _, backward = layer.forward_train(inputs["x"], inputs["state"],
                                             lengths=inputs["lengths"])
        backward(inputs["dy"], inputs["dstate"])
        for key, value in inputs.items():
            if value is not None:
                for a, b in zip(parts(value), parts(saved[key])):
                    np.testing.assert_array_equal(a, b, err_msg=key)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_cell_inputs_are_never_modified(mode):
    cell = make_cell(mode)
    rng = np.random.default_rng(0)
    x, h, c, dh, dc = (_frozen_copy(rng.standard_normal((B, n))) for n in (I, H, H, H, H))
    copies = [a.copy() for a in (x, h, c, dh, dc)]
    state, dstate = ((h, c), (dh, dc)) if mode == "LSTM" else (h, dh)
    cell(x, state)
    _, backward = cell.forward_train(x, state)
    backward(dstate)
    for a, b in zip((x, h, c, dh, dc), copies):
        np.testing.assert_array_equal(a, b)


CELL_MODES = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")]


@pytest.mark.parametrize("mode,nonlinearity", CELL_MODES, ids=["rnn_tanh", "rnn_relu",
                                                                "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_cell_fast_path_equals_the_converting_path(mode, nonlinearity, dtype, bias):
    """Plain arrays take the compiled fast path of a cell call; the same numbers as lists,
    another dtype or a strided view are converted first.  Both give identical results,
    the state given is never written, and the new state is new memory."""
    cell = make_cell(mode, nonlinearity, dtype=dtype, bias=bias)
    rng = np.random.default_rng(5)
    for batched in (True, False):
        shape = (B,) if batched else ()
        # float32 numbers, so that a cast between the two dtypes is exact
        x = rng.standard_normal(shape + (I,)).astype(np.float32).astype(dtype)
        h, c = (rng.standard_normal(shape + (H,)).astype(dtype) for _ in range(2))
        state = (h, c) if mode == "LSTM" else h
        kept = [a.copy() for a in parts(state)]
        fast = parts(cell(x, state))
        other = np.float32 if dtype == np.float64 else np.float64

        def strided(a):
            wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
            wide[..., ::2] = a
            return wide[..., ::2]

        slow_inputs = [(x.tolist(), state),                                   # a list
                       (strided(x), _map(strided, state))]                    # strided
        if dtype == np.float64:
            slow_inputs.append((x.astype(other), state))                      # cast exactly
        for xs, ss in slow_inputs:
            slow = parts(cell(xs, ss))
            for a, b in zip(fast, slow):
                np.testing.assert_array_equal(a, b)
        for a, b in zip(parts(state), kept):
            np.testing.assert_array_equal(a, b)
        for a in fast:
            assert a.shape == shape + (H,) and a.dtype == dtype and a.flags.owndata
            assert not any(np.shares_memory(a, s) for s in parts(state))
        zeros = (np.zeros(shape + (H,), dtype),) * (2 if mode == "LSTM" else 1)
        np.testing.assert_array_equal(parts(cell(x))[0],
                                      parts(cell(x, zeros if mode == "LSTM" else zeros[0]))[0])


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_cell_fast_path_leaves_bad_input_to_the_checks(mode):
    """Inputs the fast path does not take still get the converting path's errors."""
    cell = make_cell(mode)
    x = np.zeros((B, I))
    with pytest.raises(ValueError, match="input_size"):
        cell(np.zeros((B, I + 1)), None)
    bad_h = np.zeros((B, H + 1))
    with pytest.raises(ValueError, match="shape"):
        cell(x, (bad_h, bad_h) if mode == "LSTM" else bad_h)
    with pytest.raises(TypeError):
        cell(x, np.zeros((B, H)) if mode == "LSTM" else (np.zeros((B, H)),) * 2)
    with pytest.raises(ValueError):
        cell(np.zeros((0, I)))


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_outputs_are_independent_arrays(mode):
    """Results own their memory: writing into them changes neither the layer nor a
    pending backward."""
    layer = make(mode, num_layers=2, bidirectional=True)
    x, state, dy, dstate = random_inputs(layer)
    ref = run(layer, x, state, LENGTHS, dy, dstate)
    layer.zero_grad()
    y, s, backward = layer.forward_train(x, state, lengths=LENGTHS)
    y[...] = 7.0
    for a in parts(s):
        a[...] = 7.0
    dx, ds = backward(dy, dstate)
    assert_allclose(dx, ref["dx"], **CLOSE)
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, ref[f"grad:{name}"], **CLOSE)


# ------------------------------------------------------------------ stacking, directions


@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_bidirectional_halves(mode, nonlinearity):
    """Forward half = a unidirectional layer; reverse half = a unidirectional layer with
    the reverse weights on the time-flipped input; h_n rows are [forward, reverse]."""
    bi = make(mode, nonlinearity, bidirectional=True)
    fwd, rev = make(mode, nonlinearity, seed=5), make(mode, nonlinearity, seed=6)
    sd = bi.state_dict()
    fwd.load_state_dict({k: v for k, v in sd.items() if not k.endswith("_reverse")})
    rev.load_state_dict({k[:-len("_reverse")]: v for k, v in sd.items()
                         if k.endswith("_reverse")})
    x, state, _, _ = random_inputs(bi)
    y, s = bi(x, state)
    yf, sf = fwd(x, tuple(a[:1] for a in state) if mode == "LSTM" else state[:1])
    yr, sr = rev(x[::-1], tuple(a[1:] for a in state) if mode == "LSTM" else state[1:])
    assert_allclose(y[..., :H], yf, **CLOSE)
    assert_allclose(y[..., H:], yr[::-1], **CLOSE)
    for a, af, ar in zip(parts(s), parts(sf), parts(sr)):
        assert_allclose(a[0], af[0], **CLOSE)
        assert_allclose(a[1], ar[0], **CLOSE)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_two_layers_equal_two_chained_layers(mode, nonlinearity, lengths):
    deep = make(mode, nonlinearity, num_layers=2, bidirectional=True)
    first = make(mode, nonlinearity, bidirectional=True, seed=3)
    second = getattr(fastrnn, mode)(2 * H, H, bidirectional=True, dtype=np.float64,
                                    **({"nonlinearity": nonlinearity} if mode == "RNN" else {}))
    sd = deep.state_dict()
    first.load_state_dict({k: v for k, v in sd.items() if "_l0" in k})
    second.load_state_dict({k.replace("_l1", "_l0"): v for k, v in sd.items() if "_l1" in k})
    x, state, _, _ = random_inputs(deep)
    lower = tuple(a[:2] for a in parts(state))
    upper = tuple(a[2:] for a in parts(state))
    if mode != "LSTM":
        lower, upper = lower[0], upper[0]
    y, s = deep(x, state, lengths=lengths)
    y1, s1 = first(x, lower, lengths=lengths)
    y2, s2 = second(y1, upper, lengths=lengths)
    assert_allclose(y, y2, **CLOSE)
    for a, a1, a2 in zip(parts(s), parts(s1), parts(s2)):
        assert_allclose(a[:2], a1, **CLOSE)
        assert_allclose(a[2:], a2, **CLOSE)


@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_float32_layer_follows_float64(mode, nonlinearity):
    l64 = make(mode, nonlinearity, num_layers=2, bidirectional=True)
    l32 = make(mode, nonlinearity, dtype=np.float32, num_layers=2, bidirectional=True)
    l32.load_state_dict(l64.state_dict())  # float64 arrays cast into float32
    x, state, dy, dstate = random_inputs(l64)
    a = run(l64, x, state, LENGTHS, dy, dstate)
    b = run(l32, x, state, LENGTHS, dy, dstate)  # float64 inputs cast to float32
    for key in a:
        assert b[key].dtype == np.float32, key
        assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_inference_in_threads_matches_serial():
    layer = make("LSTM", num_layers=2, bidirectional=True)
    inputs = [random_inputs(layer, seed=s)[:2] for s in range(4)]
    expected = [layer(x, s, lengths=LENGTHS) for x, s in inputs]
    results = [[] for _ in inputs]

    def work(i):
        for _ in range(20):
            results[i].append(layer(*inputs[i], lengths=LENGTHS))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for exp, got in zip(expected, results):
        assert len(got) == 20
        for y, (h, c) in got:
            np.testing.assert_array_equal(y, exp[0])
            np.testing.assert_array_equal(h, exp[1][0])
            np.testing.assert_array_equal(c, exp[1][1])


# ---------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_cell_steps_equal_the_sequence_layer(mode, nonlinearity):
    """Streaming: the cell applied step by step gives the layer's outputs and final state;
    chaining the cells' backward passes gives the layer's gradients."""
    lstm = mode == "LSTM"
    layer = make(mode, nonlinearity)
    cell = make_cell(mode, nonlinearity, seed=8)
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in layer.state_dict().items()})
    x, state, dy, dstate = random_inputs(layer)
    full = run(layer, x, state, None, dy, dstate)

    s = tuple(a[0] for a in parts(state))
    s = s if lstm else s[0]
    cell.zero_grad()
    backwards = []
    for t in range(T):
        assert_allclose(parts(cell(x[t], s))[0], full["y"][t], **CLOSE)
        s, backward = cell.forward_train(x[t], s)
        assert_allclose(parts(s)[0], full["y"][t], **CLOSE)
        backwards.append(backward)
    for i, a in enumerate(parts(s)):
        assert_allclose(a, full[f"state{i}"][0], **CLOSE)

    ds = [a[0].copy() for a in parts(dstate)]
    dx = np.zeros_like(x)
    for t in range(T - 1, -1, -1):
        ds[0] = ds[0] + dy[t]
        dx[t], d_prev = backwards[t](tuple(ds) if lstm else ds[0])
        ds = list(parts(d_prev))
    assert_allclose(dx, full["dx"], **CLOSE)
    for i, a in enumerate(ds):
        assert_allclose(a, full[f"dstate{i}"][0], **CLOSE)
    for name, p in cell.named_parameters():
        assert_allclose(p.grad, full[f"grad:{name}_l0"], err_msg=name, **CLOSE)


@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_unbatched_cell_equals_a_batch_of_one(mode, nonlinearity):
    cell = make_cell(mode, nonlinearity)
    rng = np.random.default_rng(0)
    x, h, c = rng.standard_normal(I), rng.standard_normal(H), rng.standard_normal(H)
    one = cell(x, (h, c) if mode == "LSTM" else h)
    batch = cell(x[None], (h[None], c[None]) if mode == "LSTM" else h[None])
    for a, b in zip(parts(one), parts(batch)):
        assert a.shape == (H,)
        assert_allclose(a, b[0], **CLOSE)


# ----------------------------------------------------------- Parameter / Module protocol


def test_parameter_names_follow_pytorch():
    layer = make("LSTM", num_layers=2, bidirectional=True)
    expected = [f"{w}_l{k}{s}" for k in range(2) for s in ("", "_reverse")
                for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert [n for n, _ in layer.named_parameters()] == expected
    assert list(layer.state_dict()) == expected
    assert len(layer.parameters()) == len(expected)
    shapes = {n: p.shape for n, p in layer.named_parameters()}
    assert shapes["weight_ih_l0"] == (4 * H, I)
    assert shapes["weight_ih_l1_reverse"] == (4 * H, 2 * H)
    assert shapes["weight_hh_l1"] == (4 * H, H) and shapes["bias_hh_l0"] == (4 * H,)
    nobias = make("GRU", bias=False)
    assert [n for n, _ in nobias.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    cell = make_cell("GRU")
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih",
                                                       "bias_hh"]
    for p in layer.parameters():
        assert isinstance(p, Parameter)
        assert p.data.flags.c_contiguous and p.grad.flags.c_contiguous
        assert p.grad.shape == p.data.shape and p.grad.dtype == p.data.dtype
        assert not np.any(p.grad)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_grad_accumulates_and_zero_grad_is_in_place(mode):
    layer = make(mode, num_layers=2, bidirectional=True)
    x, state, dy, dstate = random_inputs(layer)
    once = run(layer, x, state, LENGTHS, dy, dstate)
    grads = {n: p.grad for n, p in layer.named_parameters()}
    _, _, backward = layer.forward_train(x, state, lengths=LENGTHS)
    backward(dy, dstate)
    for name, p in layer.named_parameters():
        assert p.grad is grads[name]
        assert_allclose(p.grad, 2 * once[f"grad:{name}"], **CLOSE)
    layer.zero_grad()
    for name, p in layer.named_parameters():
        assert p.grad is grads[name]
        assert not np.any(p.grad)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_cell_grad_accumulates_and_zero_grad_is_in_place(mode):
    cell = make_cell(mode)
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((B, I)), rng.standard_normal((B, H))
    state = (h, h) if mode == "LSTM" else h
    grads = {n: p.grad for n, p in cell.named_parameters()}
    _, backward = cell.forward_train(x, state)
    backward()  # dstate None: zeros, so nothing changes
    assert not any(np.any(p.grad) for p in cell.parameters())
    dstate = np.ones((B, H))
    _, backward = cell.forward_train(x, state)
    backward((dstate, dstate) if mode == "LSTM" else dstate)
    first = {n: p.grad.copy() for n, p in cell.named_parameters()}
    assert all(np.any(g) for g in first.values())
    _, backward = cell.forward_train(x, state)
    backward((dstate, dstate) if mode == "LSTM" else dstate)
    for name, p in cell.named_parameters():
        assert p.grad is grads[name]
        assert_allclose(p.grad, 2 * first[name], **CLOSE)
    cell.zero_grad()
    for name, p in cell.named_parameters():
        assert p.grad is grads[name] and not np.any(p.grad)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_backward_twice_raises(mode):
    layer = make(mode)
    x, state, dy, dstate = random_inputs(layer)
    _, _, backward = layer.forward_train(x, state)
    backward(dy, dstate)
    grads = [p.grad.copy() for p in layer.parameters()]
    with pytest.raises(RuntimeError, match="already"):
        backward(dy, dstate)
    for g, p in zip(grads, layer.parameters()):
        np.testing.assert_array_equal(p.grad, g)
    cell = make_cell(mode)
    _, cell_backward = cell.forward_train(x[0])
    cell_backward()
    with pytest.raises(RuntimeError, match="already"):
        cell_backward()


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_a_refused_backward_can_be_retried(mode):
    layer = make(mode, bidirectional=True)
    x, state, dy, dstate = random_inputs(layer)
    ref = run(layer, x, state, LENGTHS, dy, dstate)
    layer.zero_grad()
    _, _, backward = layer.forward_train(x, state, lengths=LENGTHS)
    with pytest.raises(ValueError, match="dy"):
        backward(dy[:, :-1])
    assert not any(np.any(p.grad) for p in layer.parameters())
    dx, _ = backward(dy, dstate)
    assert_allclose(dx, ref["dx"], **CLOSE)


def _bad_state_dicts(layer):
    sd = layer.state_dict()
    first = next(iter(sd))
    renamed = dict(sd)
    renamed["weight_ih_l9"] = renamed.pop(first)
    missing = dict(sd)
    del missing[first]
    extra = dict(sd, extra_weight=np.zeros(3))
    shape = dict(sd, **{first: np.zeros(sd[first].shape[::-1])})
    flat = dict(sd, **{first: sd[first].ravel()})
    # the last parameter wrong: the earlier ones must not be written either
    last = list(sd)[-1]
    complex_ = dict(sd, **{k: v + 0.5 for k, v in sd.items()})
    complex_[last] = sd[last].astype(np.complex128)
    strings = dict(sd, **{k: v + 0.5 for k, v in sd.items()})
    strings[last] = np.full(sd[last].shape, "a")
    objects = dict(sd, **{k: v + 0.5 for k, v in sd.items()})
    objects[last] = sd[last].astype(object)
    return {"renamed": (renamed, ValueError), "missing": (missing, ValueError),
            "extra": (extra, ValueError), "shape": (shape, ValueError),
            "flat": (flat, ValueError), "complex": (complex_, TypeError),
            "strings": (strings, TypeError), "objects": (objects, TypeError),
            "not_a_mapping": (list(sd.items()), TypeError)}


@pytest.mark.parametrize("case", ["renamed", "missing", "extra", "shape", "flat", "complex",
                                  "strings", "objects", "not_a_mapping"])
@pytest.mark.parametrize("kind", ["layer", "cell"])
def test_load_state_dict_refuses_and_changes_nothing(kind, case):
    module = (make("LSTM", num_layers=2, bidirectional=True) if kind == "layer"
              else make_cell("GRU"))
    bad, error = _bad_state_dicts(module)[case]
    before = module.state_dict()
    data_ids = [id(p.data) for p in module.parameters()]
    with pytest.raises(error):
        module.load_state_dict(bad)
    after = module.state_dict()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    assert [id(p.data) for p in module.parameters()] == data_ids


def test_load_state_dict_casts_in_place():
    layer = make("GRU", dtype=np.float32)
    data = {n: p.data for n, p in layer.named_parameters()}
    new = {n: np.full(a.shape, 0.25, np.float64) for n, a in data.items()}
    new["bias_hh_l0"] = np.arange(3 * H)  # integers are castable too
    layer.load_state_dict(new)
    for name, p in layer.named_parameters():
        assert p.data is data[name] and p.data.dtype == np.float32
        np.testing.assert_array_equal(p.data, new[name].astype(np.float32))


def test_state_dict_returns_copies():
    layer = make("LSTM")
    sd = layer.state_dict()
    for name, p in layer.named_parameters():
        assert not np.shares_memory(sd[name], p.data)
        sd[name][...] = 99.0
        assert not np.any(p.data == 99.0)
    again = layer.state_dict()
    assert all(not np.shares_memory(again[n], sd[n]) for n in sd)


def test_repr():
    cases = [
        (make("RNN", "relu", num_layers=2, bidirectional=True, batch_first=True),
         ["RNN(", "3, 4", "num_layers=2", "bidirectional=True", "batch_first=True", "relu"]),
        (make("LSTM", bias=False, dtype=np.float32), ["LSTM(", "bias=False", "float32"]),
        (make("GRU", num_layers=2, dropout=0.25), ["GRU(", "dropout=0.25", "float64"]),
        (make_cell("RNN", "relu"), ["RNNCell(", "3, 4", "relu"]),
        (make_cell("LSTM"), ["LSTMCell("]),
        (make_cell("GRU", bias=False), ["GRUCell(", "bias=False"]),
        (Parameter(np.zeros((2, 3))), ["Parameter(", "(2, 3)", "float64"]),
    ]
    for obj, pieces in cases:
        text = repr(obj)
        for piece in pieces:
            assert piece in text, (text, piece)


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="dropout"):
        make("GRU", dropout=0.5)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_padding_values_never_reach_outputs_or_gradients(mode, batch_first):
    """Whatever sits in the padded steps (nan, inf, huge) changes nothing."""
    layer = getattr(fastrnn, mode)(3, 4, num_layers=2, bidirectional=True,
                                   batch_first=batch_first, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    T, B = 6, 3
    lengths = np.array([6, 2, 4])
    x = rng.standard_normal((T, B, 3))
    dy = rng.standard_normal((T, B, 8))
    results = []
    for fill in (0.0, np.nan, np.inf, 1e30):
        xf = x.copy()
        for b, n in enumerate(lengths):
            xf[n:, b] = fill
        xin = xf.transpose(1, 0, 2) if batch_first else xf
        dyin = dy.transpose(1, 0, 2) if batch_first else dy
        layer.zero_grad()
        y, state, backward = layer.forward_train(xin, lengths=lengths)
        dx, _ = backward(dyin)
        results.append((y, [p.grad.copy() for p in layer.parameters()], dx))
    y0, g0, dx0 = results[0]
    for y, g, dx in results[1:]:
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(dx, dx0)
        for a, b in zip(g, g0):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_backward_without_input_grad_gives_the_same_parameter_gradients(mode):
    """input_grad=False skips dx (None) and changes no other gradient, bit for bit."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 4))
    dy = rng.standard_normal((5, 3, 12))
    grads = []
    for input_grad in (True, False):
        layer = getattr(fastrnn, mode)(4, 6, num_layers=2, bidirectional=True,
                                       dtype=np.float64, seed=2)
        y, state, backward = layer.forward_train(x, lengths=[5, 2, 4])
        dx, dstate0 = backward(dy, input_grad=input_grad)
        assert (dx is None) == (not input_grad)
        grads.append([p.grad.copy() for p in layer.parameters()]
                     + list(dstate0 if isinstance(dstate0, tuple) else (dstate0,)))
    for a, b in zip(*grads):
        assert np.array_equal(a, b)
