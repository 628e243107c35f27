"""The compiled kernels of fastrnn._core: the BLAS wrapper (fastrnn._blas) against NumPy,
every kernel and the layers against the pure-NumPy reference (float64 to 1e-10), and the
kernels' own argument checks (a ValueError, never a crash)."""

import contextlib

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from fastrnn import _blas, _core, _engine, _tuning
from fastrnn import reference as ref
from fastrnn._kinds import KINDS, VARIANTS
from _tools import PARITY_TOL as TOL
from _tools import PRODUCT_TOL as GEMM_TOL

# the kinds by the names of these tests: the variants are the GRU with r before the
# product (GRU_RB) and the LSTM with peepholes (LSTM_P)
TEST_KINDS = {**KINDS, "GRU_RB": VARIANTS["GRU", "reset_before"],
              "LSTM_P": VARIANTS["LSTM", "peephole"]}
GATES = {name: kind.gates for name, kind in TEST_KINDS.items()}
MODES = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")]
MODE_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
VARIANT_MODES = [("GRU_RB", "tanh"), ("LSTM_P", "tanh")]
VARIANT_IDS = ["gru_reset_before", "lstm_peephole"]
DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]


# ------------------------------------------------------------------------ blas_gemm hook



def _embedded(rng, shape, dtype, layout):
    """A (rows, cols) matrix: its own array, or a strided view into a larger parent (rows
    two apart, columns offset), returned with the parent."""
    if layout == "contiguous":
        a = rng.standard_normal(shape).astype(dtype)
        return a, a
    rows, cols = shape
    parent = rng.standard_normal((2 * rows + 1, cols + 3)).astype(dtype)
    view = parent[1::2, 2:2 + cols]
    assert view.shape == shape and not view.flags.c_contiguous
    return view, parent


@pytest.mark.parametrize("layout", ["contiguous", "row_views"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-2.5, 0.0), (1.0, 1.0), (0.5, -3.0)])
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_blas_gemm_matches_numpy(dtype, trans_a, trans_b, alpha, beta, layout):
    rng = np.random.default_rng(0)
    m, n, k = 5, 4, 3
    A, _ = _embedded(rng, (k, m) if trans_a else (m, k), dtype, layout)
    Bm, _ = _embedded(rng, (n, k) if trans_b else (k, n), dtype, layout)
    C, C_parent = _embedded(rng, (m, n), dtype, layout)
    A_copy, B_copy, C0, parent0 = A.copy(), Bm.copy(), C.copy(), C_parent.copy()
    opA = A.astype(np.float64).T if trans_a else A.astype(np.float64)
    opB = Bm.astype(np.float64).T if trans_b else Bm.astype(np.float64)
    expected = alpha * opA @ opB + beta * C0.astype(np.float64)

    _blas.blas_gemm(A, Bm, C, trans_a, trans_b, alpha, beta)

    assert_allclose(C, expected, **GEMM_TOL[dtype])
    np.testing.assert_array_equal(A, A_copy)
    np.testing.assert_array_equal(Bm, B_copy)
    if layout == "row_views":  # nothing written outside the view
        outside = np.ones(C_parent.shape, bool)
        outside[1::2, 2:2 + n] = False
        np.testing.assert_array_equal(C_parent[outside], parent0[outside])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_blas_gemm_fortran_order(dtype):
    """A Fortran-ordered matrix is the C-ordered transpose of its transpose: passed as
    such with the flag flipped it gives op(A) @ op(B); passed as is it is refused."""
    rng = np.random.default_rng(1)
    A = np.asfortranarray(rng.standard_normal((4, 3)).astype(dtype))
    Bm = np.asfortranarray(rng.standard_normal((3, 2)).astype(dtype))
    C = np.zeros((4, 2), dtype)
    _blas.blas_gemm(A.T, Bm.T, C, trans_a=True, trans_b=True)
    assert_allclose(C, A.astype(np.float64) @ Bm.astype(np.float64), **GEMM_TOL[dtype])
    C_copy = C.copy()
    with pytest.raises(ValueError, match="contiguous"):
        _blas.blas_gemm(A, np.ascontiguousarray(Bm), C)
    with pytest.raises(ValueError, match="contiguous"):
        _blas.blas_gemm(np.ascontiguousarray(A), Bm, C)
    with pytest.raises(ValueError, match="contiguous"):
        _blas.blas_gemm(np.ascontiguousarray(A), np.ascontiguousarray(Bm), np.asfortranarray(C))
    np.testing.assert_array_equal(C, C_copy)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (32, 32), (33, 65), (256, 64), (7, 100)])
def test_transpose_is_exact(dtype, shape):
    """The tiled transpose copies every element, for shapes on and off the tile size."""
    A = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    out = np.full(shape[::-1], np.nan, dtype)
    _blas.transpose(A, out)
    np.testing.assert_array_equal(out, A.T)


def test_transpose_checks_its_output():
    A = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"out must have shape \(5, 3\)"):
        _blas.transpose(A, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError):
        _blas.transpose(A.T, np.zeros((3, 5), np.float32))      # not C-contiguous


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("T,B", [(100, 1), (4, 1), (5, 3)])
def test_recurrent_t_choice_keeps_results(dtype, T, B):
    """Whether the time loop reads W_hh or its transposed copy (a speed choice, see
    ``_engine.recurrent_t``), a layer gives the same outputs to rounding."""
    layer = fastrnn.LSTM(6, 64, dtype=dtype, seed=3)
    x = np.random.default_rng(3).standard_normal((T, B, 6)).astype(dtype)
    Wt = _engine.recurrent_t(layer._params["weight_hh_l0"].data, T, B)
    assert Wt.size in (0, layer._params["weight_hh_l0"].data.size)
    if Wt.size:
        np.testing.assert_array_equal(Wt, layer._params["weight_hh_l0"].data.T)
    y0 = layer(x)[0]
    old = _tuning.TRANSPOSE_B1_STEPS
    try:
        _tuning.TRANSPOSE_B1_STEPS = 1 if old > 1 else 10**9        # the other choice
        y1 = layer(x)[0]
    finally:
        _tuning.TRANSPOSE_B1_STEPS = old
    assert_allclose(y1, y0, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_blas_gemm_degenerate_sizes(dtype):
    C = np.ones((3, 2), dtype)
    _blas.blas_gemm(np.zeros((3, 0), dtype), np.zeros((0, 2), dtype), C, beta=0.5)
    assert_allclose(C, 0.5)  # k = 0: C := beta * C
    _blas.blas_gemm(np.zeros((0, 4), dtype), np.zeros((4, 2), dtype), np.zeros((0, 2), dtype))


def test_blas_gemm_rejects_bad_arguments():
    A, Bm, C = np.ones((3, 2)), np.ones((2, 4)), np.zeros((3, 4))
    with pytest.raises(ValueError, match="rows"):
        _blas.blas_gemm(A, Bm, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="op\\(B\\)"):
        _blas.blas_gemm(A, np.ones((3, 4)), C)
    with pytest.raises(ValueError, match="op\\(B\\)"):
        _blas.blas_gemm(A, Bm, C, trans_b=True)
    with pytest.raises((ValueError, TypeError)):
        _blas.blas_gemm(A.astype(np.float32), Bm, C)
    with pytest.raises((ValueError, TypeError)):
        _blas.blas_gemm(np.ones((3, 2, 1)), Bm, C)
    np.testing.assert_array_equal(C, 0)


@pytest.mark.parametrize("view", ["reversed_rows", "broadcast_rows"])
def test_blas_gemm_unusual_row_strides(view):
    """Any view the hook accepts (its memoryviews take any row stride) must either give
    op(A) @ op(B) or be refused; a negative or zero row stride is not a valid BLAS
    leading dimension, so passing it through silently leaves C unchanged."""
    rng = np.random.default_rng(2)
    if view == "reversed_rows":
        A = rng.standard_normal((4, 3))[::-1]
    else:
        A = np.broadcast_to(rng.standard_normal(3), (4, 3))
    Bm = rng.standard_normal((3, 2))
    C = np.zeros((4, 2))
    try:
        _blas.blas_gemm(A, Bm, C)
    except ValueError:
        return
    assert_allclose(C, A @ Bm, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------- kernels vs the reference

T, B, I, H = 5, 4, 3, 4
SORTED_LENGTHS = {"full": None, "lengths": np.array([5, 4, 2, 1]),
                  "ties": np.array([3, 3, 1, 1])}


def _weights(rng, mode, bias, dtype, input_size=I):
    G = GATES[mode]
    W_ih = rng.uniform(-0.7, 0.7, (G * H, input_size)).astype(dtype)
    W_hh = rng.uniform(-0.7, 0.7, (G * H, H)).astype(dtype)
    if bias:
        b_ih, b_hh = (rng.uniform(-0.7, 0.7, G * H).astype(dtype) for _ in range(2))
    else:
        b_ih = b_hh = None
    return W_ih, W_hh, b_ih, b_hh


def _reference_forward(mode, nonlinearity, x, h0, c0, weights, lengths, reverse,
                       peephole=None):
    if mode in ("LSTM", "LSTM_P"):
        return ref.lstm_forward(x, h0, c0, *weights, lengths=lengths, reverse=reverse,
                                peephole=peephole)
    if mode in ("GRU", "GRU_RB"):
        y, h, cache = ref.gru_forward(x, h0, *weights, lengths=lengths, reverse=reverse,
                                      reset_after=mode == "GRU")
    else:
        y, h, cache = ref.rnn_forward(x, h0, *weights, nonlinearity=nonlinearity,
                                      lengths=lengths, reverse=reverse)
    return y, h, None, cache


def _reference_backward(mode, dy, dh, dc, cache):
    if mode in ("LSTM", "LSTM_P"):
        return ref.lstm_backward(dy, dh, dc, cache)
    backward = ref.gru_backward if mode in ("GRU", "GRU_RB") else ref.rnn_backward
    dx, dh0, grads = backward(dy, dh, cache)
    return dx, dh0, None, grads


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("lengths_id", list(SORTED_LENGTHS))
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("mode,nonlinearity", MODES + VARIANT_MODES, ids=MODE_IDS + VARIANT_IDS)
def test_kernel_matches_reference(mode, nonlinearity, reverse, lengths_id, bias, dtype):
    """One layer, one direction through run_forward / run_backward (the kernels' thin
    dispatch), writing columns H..2H of a wider output, with gradients accumulated onto
    arrays that already hold values."""
    kind = TEST_KINDS[mode]
    lstm, relu = kind.has_cell, nonlinearity == "relu"
    lengths = SORTED_LENGTHS[lengths_id]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0, c0, dh_n, dc_n = (rng.standard_normal((B, H)).astype(dtype) for _ in range(4))
    weights = _weights(rng, mode, bias, dtype)
    kweights = tuple(np.empty(0, dtype) if w is None else w for w in weights)
    col, width = H, 3 * H
    dY = rng.standard_normal((T, B, width)).astype(dtype)
    peephole = rng.uniform(-0.7, 0.7, (3, H)).astype(dtype) if kind.peephole else None
    if peephole is not None:
        kweights += (peephole.reshape(-1),)
    X = x.reshape(T * B, I)
    nact = _engine.active_rows(lengths, T, B)

    y_r, h_r, c_r, cache_r = _reference_forward(mode, nonlinearity, x, h0, c0, weights,
                                                lengths, reverse, peephole)
    dx_r, dh0_r, dc0_r, grads_r = _reference_backward(mode, dY[:, :, col:col + H], dh_n,
                                                      dc_n, cache_r)

    # inference
    h, c = h0.copy(), c0.copy() if lstm else None
    Y = np.full((T, B, width), np.nan, dtype)
    assert _engine.run_forward(kind, relu, X, kweights, nact, reverse, h, c, Y, col,
                               False) is None
    assert_allclose(Y[:, :, col:col + H], y_r, **TOL[dtype])
    assert np.isnan(Y[:, :, :col]).all() and np.isnan(Y[:, :, col + H:]).all()
    assert_allclose(h, h_r, **TOL[dtype])
    if lstm:
        assert_allclose(c, c_r, **TOL[dtype])

    # training
    h, c = h0.copy(), c0.copy() if lstm else None
    Y = np.full((T, B, width), np.nan, dtype)
    cache = _engine.run_forward(kind, relu, X, kweights, nact, reverse, h, c, Y, col, True)
    assert_allclose(Y[:, :, col:col + H], y_r, **TOL[dtype])
    assert_allclose(h, h_r, **TOL[dtype])
    if lstm:
        assert_allclose(c, c_r, **TOL[dtype])

    dh, dc = dh_n.copy(), dc_n.copy() if lstm else None
    dX0 = rng.standard_normal((T * B, I)).astype(dtype)
    dX = dX0.copy()
    grads0 = tuple(rng.standard_normal(w.shape).astype(dtype) for w in kweights)
    grads = tuple(g.copy() for g in grads0)
    _engine.run_backward(kind, relu, X, kweights, nact, reverse, cache, dY, col, dh, dc, dX,
                         True, grads)
    assert_allclose(dX, dX0 + dx_r.reshape(T * B, I), **TOL[dtype])
    assert_allclose(dh, dh0_r, **TOL[dtype])
    if lstm:
        assert_allclose(dc, dc0_r, **TOL[dtype])
    for name, g0, g in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh", "peephole"),
                           grads0, grads):
        if g.size:
            assert_allclose(g, g0 + grads_r[name].reshape(g.shape), err_msg=name,
                            **TOL[dtype])
        else:
            assert name not in grads_r

    # overwriting dX (accumulate_dx=False) on a fresh training pass
    h, c = h0.copy(), c0.copy() if lstm else None
    cache = _engine.run_forward(kind, relu, X, kweights, nact, reverse, h, c, Y, col, True)
    dh, dc = dh_n.copy(), dc_n.copy() if lstm else None
    dX = np.full((T * B, I), np.nan, dtype)
    zeros = tuple(np.zeros_like(w) for w in kweights)
    _engine.run_backward(kind, relu, X, kweights, nact, reverse, cache, dY, col, dh, dc, dX,
                         False, zeros)
    assert_allclose(dX, dx_r.reshape(T * B, I), **TOL[dtype])
    assert_allclose(zeros[0], grads_r["weight_ih"], **TOL[dtype])

    # no input gradient (dX None): the same state and weight gradients, bit for bit
    h, c = h0.copy(), c0.copy() if lstm else None
    cache = _engine.run_forward(kind, relu, X, kweights, nact, reverse, h, c, Y, col, True)
    dh_none, dc_none = dh_n.copy(), dc_n.copy() if lstm else None
    without = tuple(np.zeros_like(w) for w in kweights)
    _engine.run_backward(kind, relu, X, kweights, nact, reverse, cache, dY, col, dh_none,
                         dc_none, None, False, without)
    assert np.array_equal(dh_none, dh)
    if lstm:
        assert np.array_equal(dc_none, dc)
    for g_with, g_without in zip(zeros, without):
        assert np.array_equal(g_with, g_without)


# (num_layers, bidirectional, lengths)
STACKS = [(1, False, None), (1, True, [2, 5, 1, 3]), (2, False, [2, 5, 1, 3]),
          (2, True, [2, 5, 1, 3]), (2, True, None)]
STACK_IDS = ["L1-uni", "L1-bi-lengths", "L2-uni-lengths", "L2-bi-lengths", "L2-bi"]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_layer_matches_reference_stack(mode, nonlinearity, stack, bias):
    num_layers, bidirectional, lengths = stack
    lstm = mode == "LSTM"
    D = 2 if bidirectional else 1
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                  dtype=np.float64, seed=4)
    if mode == "RNN":
        kwargs["nonlinearity"] = nonlinearity
    layer = getattr(fastrnn, mode)(I, H, **kwargs)
    params = layer.state_dict()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, I))
    h0, c0, dh_n, dc_n = (rng.standard_normal((num_layers * D, B, H)) for _ in range(4))
    dy = rng.standard_normal((T, B, D * H))

    y_r, h_r, c_r, cache = ref.stack_forward(mode, x, params, num_layers=num_layers,
                                             bidirectional=bidirectional, h0=h0,
                                             c0=c0 if lstm else None, lengths=lengths,
                                             nonlinearity=nonlinearity)
    dx_r, dh0_r, dc0_r, grads_r = ref.stack_backward(dy, dh_n, dc_n if lstm else None, cache)

    y, state, backward = layer.forward_train(x, (h0, c0) if lstm else h0, lengths=lengths)
    dx, dstate = backward(dy, (dh_n, dc_n) if lstm else dh_n)
    tol = TOL[np.float64]
    assert_allclose(y, y_r, **tol)
    assert_allclose(dx, dx_r, **tol)
    if lstm:
        assert_allclose(state[0], h_r, **tol)
        assert_allclose(state[1], c_r, **tol)
        assert_allclose(dstate[0], dh0_r, **tol)
        assert_allclose(dstate[1], dc0_r, **tol)
    else:
        assert_allclose(state, h_r, **tol)
        assert_allclose(dstate, dh0_r, **tol)
    assert sorted(grads_r) == sorted(name for name, _ in layer.named_parameters())
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, grads_r[name], err_msg=name, **tol)
    y_call = layer(x, (h0, c0) if lstm else h0, lengths=lengths)[0]
    assert_allclose(y_call, y_r, **tol)


# ------------------------------------------------------------------- kernel arg checks

KT, KB, KI, KH = 3, 2, 2, 3


def _kernel_args(kernel):
    """Valid arguments of ``_core.forward`` or ``_core.backward`` for one kind, by name,
    as a dict (a training call); ``kernel`` is e.g. ``"lstm_backward"``."""
    mode, direction = kernel.split("_")
    kind = KINDS[mode.upper()]
    GH = kind.gates * KH
    z = np.zeros
    args = dict(X=z((KT * KB, KI)), W_ih=z((GH, KI)), W_hh=z((GH, KH)))
    if direction == "forward":
        args.update(b_ih=z(GH), b_hh=z(GH))
    args.update(nact=np.full(KT, KB, np.intc), bounds=np.array([0, KB], np.intc))
    if direction == "forward":
        args.update(h=z((KB, KH)), Y=z((KT, KB, KH)), col=0, Gt=z((KT * KB, GH)),
                    Hp=z((KT, KB, KH)), W_hh_t=np.ascontiguousarray(args["W_hh"].T))
    else:
        args.update(Gt=z((KT * KB, GH)), Hp=z((KT, KB, KH)), dY=z((KT, KB, KH)), col=0,
                    dh=z((KB, KH)), dW_ih=z((GH, KI)), dW_hh=z((GH, KH)), db_ih=z(GH),
                    db_hh=z(GH), dX=z((KT * KB, KI)), accumulate_dx=False,
                    W_hh_p=z((0, 0)))          # no panels: BLAS
    if kind.has_cell:
        args["c" if direction == "forward" else "dc"] = z((KB, KH))
        args["Cp"] = z((KT, KB, KH))
    if kind.product_apart:
        args.update(Gh=z((KB, GH)), Hn=z((KT, KB, KH)))
    return args


def _call(kernel, args):
    mode, direction = kernel.split("_")
    return getattr(_core, direction)(KINDS[mode.upper()].kernel_id, **args)


KERNELS = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward",
           "gru_backward"]


def _shrunk_cases():
    """(kernel, argument, axis): every array argument one shorter along its first and its
    last axis."""
    for kernel in KERNELS:
        for name, value in _kernel_args(kernel).items():
            if isinstance(value, np.ndarray) and value.size:
                yield kernel, name, 0
                if value.ndim > 1:
                    yield kernel, name, value.ndim - 1


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_valid_arguments_run(kernel):
    """All zeros in (weights, inputs, states, dY): every state, output and gradient the
    kernel writes is zero, and everything it touches stays finite."""
    args = _kernel_args(kernel)
    _call(kernel, args)
    floats = {k: a for k, a in args.items() if isinstance(a, np.ndarray) and a.dtype.kind == "f"}
    assert all(np.isfinite(a).all() for a in floats.values())
    written = {"Y", "h", "c", "dX", "dW_ih", "dW_hh", "db_ih", "db_hh", "dh", "dc"} & set(floats)
    assert written and all(not floats[k].any() for k in written), written


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k.endswith("backward")])
def test_backward_without_dY_is_backward_with_zeros(kernel):
    """dY=None (outputs nobody reads) gives what a zero dY gives, bit for bit."""
    rng = np.random.default_rng(4)
    results = []
    for dY in (None, "zeros"):
        args = {k: (rng.standard_normal(a.shape) if k not in ("nact", "bounds", "W_hh_p")
                    and isinstance(a, np.ndarray) else a)
                for k, a in _kernel_args(kernel).items()}
        args["dY"] = np.zeros_like(args["dY"]) if dY == "zeros" else None
        _call(kernel, args)
        results.append(args)
        rng = np.random.default_rng(4)
    for name in ("dh", "dc", "dX", "dW_ih", "dW_hh", "db_ih", "db_hh", "Gt"):
        if name in results[0]:
            assert np.array_equal(results[0][name], results[1][name]), name


@pytest.mark.parametrize("kernel,name,axis", list(_shrunk_cases()))
def test_kernel_rejects_a_wrong_shape(kernel, name, axis):
    args = _kernel_args(kernel)
    a = args[name]
    index = [slice(None)] * a.ndim
    index[axis] = slice(0, a.shape[axis] - 1)
    args[name] = np.ascontiguousarray(a[tuple(index)])
    with pytest.raises(ValueError):
        _call(kernel, args)


@pytest.mark.parametrize("bad", [-1, KB + 1, 1 << 30])
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_rejects_nact_out_of_range(kernel, bad):
    args = _kernel_args(kernel)
    args["nact"] = np.array([KB, bad, 0], np.intc)
    with pytest.raises(ValueError, match="nact"):
        _call(kernel, args)


@pytest.mark.parametrize("col", [-1, 1, KH])
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_rejects_columns_outside_the_output(kernel, col):
    args = _kernel_args(kernel)
    args["col"] = col
    with pytest.raises(ValueError):
        _call(kernel, args)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_rejects_one_bias_only(kernel):
    args = _kernel_args(kernel)
    key = "b_hh" if kernel.endswith("forward") else "db_hh"
    args[key] = np.zeros(0)
    with pytest.raises(ValueError, match="bias"):
        _call(kernel, args)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_rejects_no_time_steps(kernel):
    args = _kernel_args(kernel)
    for name, value in args.items():
        if isinstance(value, np.ndarray) and name in ("nact", "Y", "dY", "Hp", "Cp", "Hn"):
            args[name] = np.zeros((0,) + value.shape[1:], value.dtype)
        elif isinstance(value, np.ndarray) and name in ("X", "Gt", "dX"):
            args[name] = np.zeros((0, value.shape[1]))
    with pytest.raises(ValueError):
        _call(kernel, args)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_rejects_wrong_layout_rank_and_dtype(kernel):
    for change in ("fortran", "rank", "dtype"):
        args = _kernel_args(kernel)
        if change == "fortran":
            args["W_hh"] = np.asfortranarray(args["W_hh"])
        elif change == "rank":
            args["X"] = args["X"][:, :, None]
        else:
            args["X"] = args["X"].astype(np.float32)
        with pytest.raises((ValueError, TypeError)):
            _call(kernel, args)


@pytest.mark.parametrize("kernel", ["lstm_forward", "gru_forward"])
def test_kernel_rejects_half_a_training_cache(kernel):
    args = _kernel_args(kernel)
    second = "Cp" if kernel.startswith("lstm") else "Hn"
    args[second] = np.zeros((0, KB, KH))
    with pytest.raises(ValueError, match="both"):
        _call(kernel, args)


# (T, B, input_size, hidden_size, lengths): single steps, single rows, size-1 features, and
# sizes past BLAS's small-matrix paths
SIZES = [(1, 1, 1, 1, None), (1, 3, 2, 3, [1, 1, 1]), (6, 1, 3, 2, [4]),
         (3, 2, 1, 1, [1, 3]), (7, 9, 17, 33, [7, 1, 3, 7, 2, 5, 6, 4, 7])]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s[:4])))
@pytest.mark.parametrize("mode,nonlinearity", MODES, ids=MODE_IDS)
def test_layer_matches_reference_at_edge_sizes(mode, nonlinearity, size):
    steps, batch, input_size, hidden, lengths = size
    lstm = mode == "LSTM"
    kwargs = dict(num_layers=2, bidirectional=True, dtype=np.float64, seed=6)
    if mode == "RNN":
        kwargs["nonlinearity"] = nonlinearity
    layer = getattr(fastrnn, mode)(input_size, hidden, **kwargs)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((steps, batch, input_size))
    h0, c0, dh_n, dc_n = (rng.standard_normal((4, batch, hidden)) for _ in range(4))
    dy = rng.standard_normal((steps, batch, 2 * hidden))
    y_r, h_r, c_r, cache = ref.stack_forward(mode, x, layer.state_dict(), num_layers=2,
                                             bidirectional=True, h0=h0,
                                             c0=c0 if lstm else None, lengths=lengths,
                                             nonlinearity=nonlinearity)
    dx_r, dh0_r, dc0_r, grads_r = ref.stack_backward(dy, dh_n, dc_n if lstm else None, cache)
    y, state, backward = layer.forward_train(x, (h0, c0) if lstm else h0, lengths=lengths)
    dx, dstate = backward(dy, (dh_n, dc_n) if lstm else dh_n)
    tol = TOL[np.float64]
    assert_allclose(y, y_r, **tol)
    assert_allclose(dx, dx_r, **tol)
    for got, want in zip((state, dstate) if not lstm else (*state, *dstate),
                         (h_r, dh0_r) if not lstm else (h_r, c_r, dh0_r, dc0_r)):
        assert_allclose(got, want, **tol)
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, grads_r[name], err_msg=name, **tol)


# ------------------------------------------------------------ the batch split across threads

@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("lengths", [None, [9, 3, 7, 1, 9, 2, 5, 8, 4, 6, 9, 2]])
def test_parallel_time_loop_equals_serial(mode, lengths, monkeypatch):
    """Splitting the batch across threads (and the large products across row blocks)
    changes no result beyond rounding."""
    monkeypatch.setattr(_tuning, "MIN_LOOP_FLOPS", 0)
    T, B, I, H = 9, 12, 5, 7
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, 2 * H))
    results = []
    flops = _blas.parallel_min_flops()
    try:
        for threads, min_flops in ((1, flops), (3, 0)):
            _blas.set_num_threads(threads)   # uncapped: may exceed the cores
            _blas.parallel_min_flops(min_flops)
            layer = getattr(fastrnn, mode)(I, H, num_layers=2, bidirectional=True,
                                           dtype=np.float64, seed=0)
            y, state, backward = layer.forward_train(x, lengths=lengths)
            dx, _ = backward(dy)
            results.append((y, dx, [p.grad.copy() for p in layer.parameters()]))
    finally:
        _engine.set_num_threads(fastrnn._runtime.available_cores())
        _blas.parallel_min_flops(flops)
    (y1, dx1, g1), (y2, dx2, g2) = results
    assert_allclose(y2, y1, rtol=1e-12, atol=1e-14)
    assert_allclose(dx2, dx1, rtol=1e-12, atol=1e-14)
    for a, b in zip(g2, g1):
        assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_row_bounds_balance_active_steps():
    nact = _engine.active_rows(np.array([10, 10, 9, 8, 2, 1, 1, 1]), 10, 8)
    bounds = _engine.row_bounds(nact, 8, 64, 4)
    assert bounds[0] == 0 and bounds[-1] == 8 and np.all(np.diff(bounds) >= 0)
    if len(bounds) == 3:   # two threads available: the long rows do not all go to one part
        assert bounds[1] <= 3


@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("batch", [8, 13, 16, 30, 64])
def test_row_bounds_of_full_rows_split_evenly(batch, threads):
    """Without lengths every row has the same work: the cuts are the rows nearest to
    batch * p / parts (ties to the lower row), the ones the balance over active steps finds."""
    before = fastrnn.get_num_threads()
    try:
        _blas.set_num_threads(threads)   # may be more than the cores (uncapped)
        full = _engine.active_rows(None, 50, batch)
        bounds = _engine.row_bounds(full, batch, 128, 4)
        # the same rows with lengths all 50: the general balance over active steps
        nearly = full.copy()
        nearly[-1] -= 1          # one row a step shorter: takes the balancing path
        general = _engine.row_bounds(nearly, batch, 128, 4)
    finally:
        fastrnn.set_num_threads(before)
    parts = min(threads, batch // _tuning.MIN_ROWS)
    assert len(bounds) == parts + 1 and bounds[0] == 0 and bounds[-1] == batch
    for p in range(1, parts):
        exact = batch * p / parts
        assert abs(bounds[p] - exact) <= 0.5
        if exact - int(exact) == 0.5:
            assert bounds[p] == int(exact)
    assert np.abs(bounds - general).max() <= 1


# ------------------------------------------------------ the one-row LSTM loop (packed W_hh)


@pytest.mark.parametrize("H", [16, 48, 64])
def test_lstm_pack_layout(H):
    """Panel b, row k, column 16*q + u holds W_hh[q*H + 16*b + u, k]."""
    W = np.random.default_rng(4).standard_normal((4 * H, H)).astype(np.float32)
    out = np.full((H, 4 * H), np.nan, np.float32)
    _core.lstm_pack(W, out)
    panels = out.reshape(H // 16, H, 4, 16)                # [b, k, q, u]
    expected = W.reshape(4, H // 16, 16, H).transpose(1, 3, 0, 2)
    np.testing.assert_array_equal(panels, expected)
    with pytest.raises(ValueError, match="multiple of 16"):
        _core.lstm_pack(np.zeros((4 * 20, 20), np.float32), np.zeros((20, 80), np.float32))
    with pytest.raises(ValueError, match="out"):
        _core.lstm_pack(W, np.zeros((4 * H, H), np.float32))


def _one_row_lstm(packed, T=40, I=5, H=64, reverse=False, length=None,
                  train=True):
    rng = np.random.default_rng(6)
    W_ih, W_hh = (rng.uniform(-0.3, 0.3, (4 * H, n)).astype(np.float32) for n in (I, H))
    b_ih, b_hh = (rng.uniform(-0.3, 0.3, 4 * H).astype(np.float32) for _ in range(2))
    X = rng.standard_normal((T, I)).astype(np.float32)
    nact = (np.arange(T) < (T if length is None else length)).astype(np.intc)
    h = rng.standard_normal((1, H)).astype(np.float32)
    c = rng.standard_normal((1, H)).astype(np.float32)
    Y = np.full((T, 1, H), np.nan, np.float32)
    Gt = np.empty((T, 4 * H), np.float32)
    n = T if train else 0
    Hp, Cp = np.empty((n, 1, H), np.float32), np.empty((n, 1, H), np.float32)
    if packed:
        Wt = np.empty((H, 4 * H), np.float32)
        _core.lstm_pack(W_hh, Wt)
    else:
        Wt = np.empty((0, 0), np.float32)
    _core.forward(_core.KIND_LSTM, X, W_ih, W_hh, b_ih, b_hh, nact, np.array([0, 1], np.intc),
                  h, Y, 0, Gt, c=c, Hp=Hp, Cp=Cp, reverse=reverse, W_hh_t=Wt,
                  layout=_core.LAYOUT_LSTM_ROW if packed else _core.LAYOUT_TRANSPOSED)
    return dict(Y=Y, h=h, c=c, Gt=Gt, Hp=Hp, Cp=Cp)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("length", [None, 23], ids=["full", "length23"])
@pytest.mark.parametrize("H", [16, 64, 128])
def test_packed_one_row_lstm_matches_the_blas_loop(reverse, length, H):
    """The fused one-row loop gives what the BLAS loop gives (float32 rounding), training
    cache included, padded steps zero."""
    plain = _one_row_lstm(False, H=H, reverse=reverse, length=length)
    one = _one_row_lstm(True, H=H, reverse=reverse, length=length)
    for key in plain:
        assert_allclose(one[key], plain[key], rtol=1e-5, atol=2e-6, err_msg=key)
    if length is not None:
        pad = slice(length, None)
        assert not np.any(one["Y"][pad])


def test_packed_one_row_lstm_checks_its_arguments():
    with pytest.raises(ValueError, match="float32 only"):
        H = 16
        z = np.zeros
        _core.forward(_core.KIND_LSTM, z((3, 2)), z((4 * H, 2)), z((4 * H, H)), z(0), z(0),
                      np.ones(3, np.intc), np.array([0, 1], np.intc), z((1, H)), z((3, 1, H)),
                      0, z((3, 4 * H)), c=z((1, H)), W_hh_t=z((H, 4 * H)),
                      layout=_core.LAYOUT_LSTM_ROW)
    f = np.float32
    H = 16
    with pytest.raises(ValueError, match="one batch row"):
        _core.forward(_core.KIND_LSTM, np.zeros((6, 2), f), np.zeros((4 * H, 2), f),
                      np.zeros((4 * H, H), f), np.zeros(0, f), np.zeros(0, f),
                      np.full(3, 2, np.intc), np.array([0, 2], np.intc), np.zeros((2, H), f),
                      np.zeros((3, 2, H), f), 0, np.zeros((6, 4 * H), f),
                      c=np.zeros((2, H), f), W_hh_t=np.zeros((H, 4 * H), f),
                      layout=_core.LAYOUT_LSTM_ROW)


@pytest.mark.parametrize("H", [32, 24])
def test_one_row_layer_uses_packed_loop_and_matches_float64(H):
    """A float32 LSTM layer over one row (the packed loop when H % 16 == 0) follows the
    float64 layer, forward and gradients, bidirectional with a length."""
    layer64 = fastrnn.LSTM(5, H, bidirectional=True, dtype=np.float64, seed=7)
    layer32 = fastrnn.LSTM(5, H, bidirectional=True, dtype=np.float32, seed=7)
    layer32.load_state_dict({k: v.astype(np.float32) for k, v in layer64.state_dict().items()})
    x = np.random.default_rng(7).standard_normal((30, 1, 5))
    dy = np.random.default_rng(8).standard_normal((30, 1, 2 * H))
    out = {}
    for name, layer in (("f64", layer64), ("f32", layer32)):
        y, _, backward = layer.forward_train(x.astype(layer.dtype), lengths=[21])
        dx, _ = backward(dy.astype(layer.dtype))
        out[name] = (y, dx, [p.grad.copy() for p in layer.parameters()])
    assert_allclose(out["f32"][0], out["f64"][0], rtol=1e-4, atol=1e-5)
    assert_allclose(out["f32"][1], out["f64"][1], rtol=1e-4, atol=1e-5)
    for g32, g64 in zip(out["f32"][2], out["f64"][2]):
        assert_allclose(g32, g64, rtol=1e-3, atol=1e-4)
    assert (_engine.packed_lstm_weights(layer32._params["weight_hh_l0"].data, 30, 1)
            is None) == (H % 16 != 0)


def test_packed_weights_follow_every_change_of_w_hh():
    """The packed W_hh is reused while W_hh's bytes are unchanged, repacked after any
    change (in place, as an optimizer step makes), and dropped with the array."""
    import gc

    layer = fastrnn.LSTM(4, 32, dtype=np.float32, seed=9)
    W = layer._params["weight_hh_l0"].data
    x = np.random.default_rng(9).standard_normal((20, 1, 4)).astype(np.float32)
    first = _engine.packed_lstm_weights(W, 20, 1)
    assert _engine.packed_lstm_weights(W, 20, 1) is first            # cached
    y0 = layer(x)[0]
    W[3, 5] += 0.25                                                    # in place
    again = _engine.packed_lstm_weights(W, 20, 1)
    assert again is not first
    expected = np.empty_like(again)
    _core.lstm_pack(W, expected)
    np.testing.assert_array_equal(again, expected)
    fresh = fastrnn.LSTM(4, 32, dtype=np.float32, seed=9)
    fresh.load_state_dict(layer.state_dict())
    y1 = layer(x)[0]
    assert not np.array_equal(y1, y0)
    np.testing.assert_array_equal(y1, fresh(x)[0])
    other = W.copy()
    _engine.packed_lstm_weights(other, 20, 1)
    key = (id(other), "lstm_row")
    assert key in _engine._PACKED
    del other
    gc.collect()
    assert key not in _engine._PACKED


def test_panels_are_kept_for_inference_and_follow_every_change():
    """The panel product's packed weights are kept with the weight array at inference,
    packed again after any change of its bytes, and packed afresh (not kept) in
    training, whose steps change them."""
    layer = fastrnn.LSTM(8, 64, dtype=np.float32, seed=2)
    W = layer._params["weight_hh_l0"].data
    x = np.random.default_rng(2).standard_normal((12, 8, 8)).astype(np.float32)
    first = _engine.panels(W, True)
    assert _engine.panels(W, True) is first
    unkept = _engine.panels(W, True, keep=False)
    assert unkept is not first
    np.testing.assert_array_equal(unkept, first)
    y0 = layer(x)[0]
    W[3, 5] += 0.25                                                    # in place
    again = _engine.panels(W, True)
    assert again is not first
    np.testing.assert_array_equal(again, _engine.panels(W.copy(), True, keep=False))
    fresh = fastrnn.LSTM(8, 64, dtype=np.float32, seed=2)
    fresh.load_state_dict(layer.state_dict())
    y1 = layer(x)[0]
    assert not np.array_equal(y1, y0)
    np.testing.assert_array_equal(y1, fresh(x)[0])
    trained = fastrnn.LSTM(8, 64, dtype=np.float32, seed=3)
    ids = {id(p.data) for p in trained.parameters()}
    y, _, backward = trained.forward_train(x)
    backward(np.ones_like(y))
    assert not [key for key in _engine._PACKED if key[0] in ids]


def _lstm_pass(X, weights, nact, reverse, h0, c0, dY, width, col):
    """An LSTM's inference and training pass through run_forward / run_backward, its
    output in columns col..col+H of a (T, B, width) Y: (Y's columns, h, c, the inference
    Y's columns, dX, dh, dc, the weight gradients)."""
    kind = TEST_KINDS["LSTM"]
    T, B, H = dY.shape
    out = []
    for train in (False, True):
        h, c = h0.copy(), c0.copy()
        Y = np.full((T, B, width), np.nan, X.dtype)
        cache = _engine.run_forward(kind, False, X, weights, nact, reverse, h, c, Y, col,
                                    train)
        out.append((Y[:, :, col:col + H].copy(), h, c))
    wide = np.zeros((T, B, width), X.dtype)
    wide[:, :, col:col + H] = dY
    dh, dc = np.ones_like(h0), np.ones_like(c0)
    dX = np.zeros_like(X)
    grads = tuple(np.zeros_like(w) for w in weights)
    _engine.run_backward(kind, False, X, weights, nact, reverse, cache, wide, col, dh, dc,
                         dX, True, grads)
    return out + [dX, dh, dc, grads]


@pytest.mark.parametrize("mode", ["float", "shared", "bf16"])
@pytest.mark.parametrize("lengths", [None, "all"], ids=["full", "all_T"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_lstm_keeping_h_in_y_is_bit_for_bit_the_copying_loop(mode, lengths, reverse,
                                                             monkeypatch):
    """An LSTM whose Y is as wide as h and whose rows are all active at every step keeps
    h in Y (each step reads the last step's Y); into wider Y the loop copies h at every
    step.  Both give the same bits, in the float loops (each thread its rows, or the
    threads sharing each step's product) and the bf16 one, and match the reference."""
    T_, B_, I_, H_ = 6, 32, 5, 32
    monkeypatch.setattr(_tuning, "MIN_LOOP_FLOPS", 0)       # two parts of rows
    rng = np.random.default_rng(11)
    x = rng.standard_normal((T_, B_, I_)).astype(np.float32)
    X = x.reshape(T_ * B_, I_)
    W_ih = rng.uniform(-0.5, 0.5, (4 * H_, I_)).astype(np.float32)
    W_hh = rng.uniform(-0.5, 0.5, (4 * H_, H_)).astype(np.float32)
    b_ih, b_hh = (rng.uniform(-0.5, 0.5, 4 * H_).astype(np.float32) for _ in range(2))
    weights = (W_ih, W_hh, b_ih, b_hh)
    h0, c0 = (rng.standard_normal((B_, H_)).astype(np.float32) for _ in range(2))
    dY = rng.standard_normal((T_, B_, H_)).astype(np.float32)
    lens = None if lengths is None else np.full(B_, T_)
    nact = _engine.active_rows(lens, T_, B_)
    before = _blas.shared_product_bytes()
    try:
        _blas.shared_product_bytes(0 if mode == "shared" else 1 << 60)
        with fastrnn.threads(2), (fastrnn.autocast("bfloat16") if mode == "bf16"
                                  else contextlib.nullcontext()):
            narrow = _lstm_pass(X, weights, nact, reverse, h0, c0, dY, H_, 0)
            wide = _lstm_pass(X, weights, nact, reverse, h0, c0, dY, 3 * H_, H_)
    finally:
        _blas.shared_product_bytes(before)
    for a, b in zip(narrow, wide):
        for u, v in zip(a, b) if isinstance(a, tuple) else [(a, b)]:
            np.testing.assert_array_equal(u, v)
    if mode != "bf16":
        y_r, h_r, c_r, _ = ref.lstm_forward(x, h0, c0, *weights, lengths=lens,
                                            reverse=reverse)
        for y, h, c in narrow[:2]:
            assert_allclose(y, y_r, **TOL[np.float32])
            assert_allclose(h, h_r, **TOL[np.float32])
            assert_allclose(c, c_r, **TOL[np.float32])


def test_same_bytes():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert _core.same_bytes(a, a.copy())
    b = a.copy()
    b[1, 2] = np.nextafter(b[1, 2], np.float32(10))
    assert not _core.same_bytes(a, b)
    assert not _core.same_bytes(a, a[:1].copy())
    assert _core.same_bytes(np.zeros(0), np.zeros(0))


@pytest.mark.parametrize("threads", [1, 2])
def test_same_bytes_in_parts(threads):
    """From 1 MiB on the compare runs in one part a thread: a change anywhere, in the
    first or last byte of a part too, is found."""
    a = np.random.default_rng(0).integers(0, 256, (3 << 20) + 5, dtype=np.uint8)
    with fastrnn.threads(threads):
        assert _core.same_bytes(a, a.copy())
        for i in (0, a.size // 2 - 1, a.size // 2, a.size // 2 + 1, a.size - 1):
            b = a.copy()
            b[i] ^= 1
            assert not _core.same_bytes(a, b), i
