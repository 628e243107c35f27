"""fastrnn's own product (``_panel.h``): the packed layout, the product against NumPy for
every block shape, tail and blocking, its argument checks, and whole layers (forward and
gradients) with and without it."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from fastrnn import _blas, _core, _engine, _tuning

F32 = dict(rtol=2e-5, atol=2e-5)


def _set_panels(on):
    """Switch the panel product on or off; returns the previous setting."""
    before = _blas.panel_products()
    _blas.panel_products(on)
    return before


@pytest.fixture
def panels_on():
    """Use the panel product wherever it applies, even on a CPU where BLAS would be chosen
    (the code is the same; only its speed differs)."""
    before = _set_panels(True)
    yield
    _blas.panel_products(before)


def _packed(B, transpose):
    """B (K, n) packed, from B itself or (``transpose``) from its transpose."""
    out = np.empty(B.shape, np.float32)
    _blas.panel_pack(np.ascontiguousarray(B.T) if transpose else B, out, transpose)
    return out


@pytest.mark.parametrize("transpose", [False, True], ids=["plain", "transposed"])
@pytest.mark.parametrize("K,n", [(1, 16), (3, 48), (5, 64), (7, 80), (4, 208)])
def test_pack_layout(K, n, transpose):
    """Panel P holds columns 64P..64P+w-1; its element (k, c) is at 64*P*K + k*w + c."""
    B = np.arange(K * n, dtype=np.float32).reshape(K, n)
    flat = _packed(B, transpose).ravel()
    for P in range((n + 63) // 64):
        w = min(64, n - 64 * P)
        panel = flat[64 * P * K: 64 * P * K + K * w].reshape(K, w)
        np.testing.assert_array_equal(panel, B[:, 64 * P: 64 * P + w])


def test_one_panel_is_the_matrix_itself():
    """Up to 64 columns, B's packed copy is B (one panel, rows in order): the products
    read such a B (and W_hh for the backward products) without copying it."""
    B = np.arange(5 * 48, dtype=np.float32).reshape(5, 48)
    np.testing.assert_array_equal(_packed(B, False), B)
    W_hh = np.zeros((4 * 64, 64), np.float32)
    assert _engine.panels(W_hh, False) is W_hh
    assert _engine.panels(np.zeros((4 * 80, 80), np.float32), False).shape == (320, 80)


@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "accumulate"])
@pytest.mark.parametrize("n", [16, 32, 48, 64, 112, 208])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17])
def test_product_matches_numpy(m, n, accumulate):
    """Every block kernel (4, 6 or 8 rows by 1-4 vectors) and every tail of rows."""
    rng = np.random.default_rng(m * 1000 + n)
    K = 37
    A = rng.standard_normal((m, K)).astype(np.float32)
    B = rng.standard_normal((K, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    C = C0.copy()
    _blas.panel_gemm(A, _packed(B, False), C, accumulate)
    expected = A.astype(np.float64) @ B + (C0 if accumulate else 0)
    assert_allclose(C, expected, **F32)


@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "accumulate"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "A.T"])
@pytest.mark.parametrize("m,K,n", [(300, 70, 48), (9, 600, 64), (270, 513, 80)])
def test_product_blocks_long_k_and_many_rows(m, K, n, trans_a, accumulate):
    """Chunks of k (partial sums through C), blocks of rows, and A given transposed."""
    rng = np.random.default_rng(m + K + n)
    A = rng.standard_normal((m, K)).astype(np.float32)
    B = rng.standard_normal((K, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    C = C0.copy()
    _blas.panel_gemm(np.ascontiguousarray(A.T) if trans_a else A, _packed(B, False), C,
                     accumulate, trans_a)
    expected = A.astype(np.float64) @ B + (C0 if accumulate else 0)
    assert_allclose(C, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("K", [37, 600])
@pytest.mark.parametrize("n", [16, 48, 64, 112, 208])
@pytest.mark.parametrize("m", [1, 3, 4, 9, 17])
def test_product_from_a_bias(m, n, K):
    """C = bias + A @ B: the sums start from the bias, so the result is the same, bit for
    bit, as accumulating onto C filled with the bias (over chunks of k too); with
    ``accumulate`` the bias is ignored."""
    rng = np.random.default_rng(m * 100 + n + K)
    A = rng.standard_normal((m, K)).astype(np.float32)
    B = rng.standard_normal((K, n)).astype(np.float32)
    Bp = _packed(B, False)
    bias = rng.standard_normal(n).astype(np.float32)
    C = rng.standard_normal((m, n)).astype(np.float32)
    _blas.panel_gemm(A, Bp, C, bias=bias)
    filled = np.repeat(bias[None, :], m, axis=0)
    _blas.panel_gemm(A, Bp, filled, True)
    np.testing.assert_array_equal(C, filled)
    assert_allclose(C, bias + A.astype(np.float64) @ B, rtol=1e-4, atol=1e-4)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    C = C0.copy()
    _blas.panel_gemm(A, Bp, C, True, bias=bias)
    expected = C0.copy()
    _blas.panel_gemm(A, Bp, expected, True)
    np.testing.assert_array_equal(C, expected)


def test_product_is_one_sum_per_element():
    """Row blocks and tails give each row the same bits (a row's result does not depend on
    how many rows share its call), as the kernels' thread splits require."""
    rng = np.random.default_rng(1)
    A = rng.standard_normal((11, 50)).astype(np.float32)
    Bp = _packed(rng.standard_normal((50, 80)).astype(np.float32), False)
    whole = np.empty((11, 80), np.float32)
    _blas.panel_gemm(A, Bp, whole)
    for r in range(11):
        one = np.empty((1, 80), np.float32)
        _blas.panel_gemm(A[r:r + 1], Bp, one)
        np.testing.assert_array_equal(one[0], whole[r])


def test_pack_and_product_check_their_arguments():
    f = np.float32
    with pytest.raises(ValueError, match="multiple of 16"):
        _blas.panel_pack(np.zeros((4, 20), f), np.zeros((4, 20), f), False)
    with pytest.raises(ValueError, match="out"):
        _blas.panel_pack(np.zeros((4, 32), f), np.zeros((32, 4), f), False)
    with pytest.raises(ValueError, match="multiple of 16"):
        _blas.panel_pack(np.zeros((4, 32), f), np.zeros((32, 4), f), True)   # n = 4
    with pytest.raises(ValueError, match="Bp"):
        _blas.panel_gemm(np.zeros((2, 5), f), np.zeros((4, 16), f), np.zeros((2, 16), f))
    with pytest.raises(ValueError, match="C"):
        _blas.panel_gemm(np.zeros((2, 4), f), np.zeros((4, 16), f), np.zeros((3, 16), f))
    with pytest.raises(ValueError, match="at least one row"):
        _blas.panel_gemm(np.zeros((0, 4), f), np.zeros((4, 16), f), np.zeros((0, 16), f))
    with pytest.raises(ValueError):
        _blas.panel_gemm(np.zeros((2, 4)), np.zeros((4, 16), f), np.zeros((2, 16), f))
    with pytest.raises(ValueError, match="bias"):
        _blas.panel_gemm(np.zeros((2, 4), f), np.zeros((4, 16), f), np.zeros((2, 16), f),
                         bias=np.zeros(15, f))
    with pytest.raises(ValueError, match="Bp"):          # A.T is (4, 2): K = 2
        _blas.panel_gemm(np.zeros((2, 4), f), np.zeros((4, 16), f), np.zeros((4, 16), f),
                         trans_a=True)


def test_kernels_check_panel_arguments():
    """A bad layout, float64 panels, missing panels or wrongly shaped backward panels get
    a ValueError before any work."""
    f, d = np.float32, np.float64
    T, B, H = 3, 2, 16
    nact, bounds = np.full(T, B, np.intc), np.array([0, B], np.intc)

    def forward(dtype, Wt, layout):
        z = lambda *s: np.zeros(s, dtype)   # noqa: E731
        _core.forward(_core.KIND_RNN, z(T * B, 2), z(H, 2), z(H, H), z(H), z(H), nact, bounds,
                      z(B, H), z(T, B, H), 0, z(T * B, H), Hp=z(T, B, H), W_hh_t=Wt,
                      layout=layout)

    with pytest.raises(ValueError, match="layout"):
        forward(f, np.zeros((H, H), f), 7)
    with pytest.raises(ValueError, match="float32 only"):
        forward(d, np.zeros((H, H), d), _core.LAYOUT_PANELS)
    with pytest.raises(ValueError, match="empty"):
        forward(f, np.zeros((0, 0), f), _core.LAYOUT_PANELS)
    forward(f, np.zeros((H, H), f), _core.LAYOUT_PANELS)

    def backward(dtype, Wp):
        z = lambda *s: np.zeros(s, dtype)   # noqa: E731
        _core.backward(_core.KIND_LSTM, z(T * B, 2), z(4 * H, 2), z(4 * H, H), nact, bounds,
                       z(T * B, 4 * H), z(T, B, H), z(T, B, H), 0, z(B, H), z(4 * H, 2),
                       z(4 * H, H), z(4 * H), z(4 * H), dc=z(B, H), Cp=z(T, B, H),
                       dX=z(T * B, 2), W_hh_p=Wp)

    def forward_in_loop(dtype, W_ih_p, gt_rows, train):
        z = lambda *s: np.zeros(s, dtype)   # noqa: E731
        n = T if train else 0
        _core.forward(_core.KIND_LSTM, z(T * B, 2), z(4 * H, 2), z(4 * H, H), z(4 * H),
                      z(4 * H), nact, bounds, z(B, H), z(T, B, H), 0, z(gt_rows, 4 * H),
                      c=z(B, H), Hp=z(n, B, H), Cp=z(n, B, H), W_hh_t=z(H, 4 * H),
                      layout=_core.LAYOUT_PANELS if dtype == f else _core.LAYOUT_TRANSPOSED,
                      W_ih_p=W_ih_p)

    forward_in_loop(f, np.zeros((2, 4 * H), f), B, False)      # one step's gates
    forward_in_loop(f, np.zeros((2, 4 * H), f), T * B, True)
    with pytest.raises(ValueError, match="W_ih_p"):
        forward_in_loop(f, np.zeros((4 * H, 2), f), T * B, False)
    with pytest.raises(ValueError, match="float32 only"):
        forward_in_loop(d, np.zeros((2, 4 * H), d), T * B, False)
    with pytest.raises(ValueError, match="T\\*B"):             # training keeps every step
        forward_in_loop(f, np.zeros((2, 4 * H), f), B, True)
    with pytest.raises(ValueError, match="T\\*B"):             # no W_ih_p: all steps first
        forward_in_loop(f, np.zeros((0, 0), f), B, False)

    with pytest.raises(ValueError, match="no W_ih_p"):       # the one-row loop: no panels
        z = lambda *s: np.zeros(s, f)   # noqa: E731
        _core.forward(_core.KIND_LSTM, z(T, 2), z(4 * H, 2), z(4 * H, H), z(4 * H), z(4 * H),
                      np.ones(T, np.intc), np.array([0, 1], np.intc), z(1, H), z(T, 1, H), 0,
                      z(T, 4 * H), c=z(1, H), W_hh_t=z(H, 4 * H),
                      layout=_core.LAYOUT_LSTM_ROW, W_ih_p=z(2, 4 * H))

    with pytest.raises(ValueError, match="W_hh_p"):
        backward(f, np.zeros((H, 4 * H), f))                 # (4H, H) expected
    with pytest.raises(ValueError, match="float32 only"):
        backward(d, np.zeros((4 * H, H), d))
    backward(f, np.zeros((4 * H, H), f))


def test_operand_choice():
    """Panels for float32 loops over several rows with H a multiple of 16 and a few steps;
    never for one row, float64, other H or a single step."""
    W = np.zeros((64, 16), np.float32)
    on = _blas.panel_products()
    assert _engine.use_panels(W, 10, 4) == on
    assert not _engine.use_panels(W, 10, 1)
    assert not _engine.use_panels(W.astype(np.float64), 10, 4)
    assert not _engine.use_panels(np.zeros((60, 15), np.float32), 10, 4)
    assert not _engine.use_panels(W, 1, 4)
    assert on == _blas.panel_kernels_fast()        # the default
    before = _set_panels(not on)
    try:
        assert _engine.use_panels(W, 10, 4) == (not on)
        assert fastrnn.blas_info()["panel_products"] == (not on)
    finally:
        _blas.panel_products(before)


def _train(layer, x, lengths, dy):
    y, _, backward = layer.forward_train(x, lengths=lengths)
    dx, _ = backward(dy)
    grads = {name: p.grad.copy() for name, p in layer.named_parameters()}
    layer.zero_grad()
    return y, dx, grads


@pytest.mark.parametrize("in_loop", [True, False], ids=["step_projection", "projection_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("lengths", [None, [9, 4, 7, 1, 9, 2, 3, 8, 5, 6] * 2],
                         ids=["full", "lengths"])
@pytest.mark.parametrize("H", [16, 48, 80])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_layer_with_panels_matches_blas_and_float64(mode, H, lengths, bidirectional, in_loop,
                                                    monkeypatch):
    """Forward (training and inference), input gradient and weight gradients of a float32
    layer: the same with the panel product (per step, and before and after the loops; the
    input projected step by step in the loop or all at once first) as with BLAS (to
    float32 rounding), and both close to float64."""
    monkeypatch.setattr(_tuning, "STEP_PROJECTION", in_loop)
    B, T, I = 20, 9, 16
    rng = np.random.default_rng(H)
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, (2 if bidirectional else 1) * H))
    layer = getattr(fastrnn, mode)(I, H, num_layers=2, bidirectional=bidirectional,
                                   dtype=np.float32, seed=H)
    wide = getattr(fastrnn, mode)(I, H, num_layers=2, bidirectional=bidirectional,
                                  dtype=np.float64, seed=H)
    wide.load_state_dict({k: v.astype(np.float64) for k, v in layer.state_dict().items()})
    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)

    before = _set_panels(True)
    try:
        assert _engine.use_panels(layer._params["weight_hh_l0"].data, T, B)
        with_panels = _train(layer, x32, lengths, dy32)
        inferred = layer(x32, lengths=lengths)[0]
        _blas.panel_products(False)
        with_blas = _train(layer, x32, lengths, dy32)
    finally:
        _blas.panel_products(before)
    exact = _train(wide, x, lengths, dy)

    assert_allclose(inferred, with_panels[0], **F32)
    for a, b, c in zip(with_panels[:2], with_blas[:2], exact[:2]):
        assert_allclose(a, b, **F32)
        assert_allclose(a, c, rtol=1e-4, atol=1e-4)
    for name in exact[2]:
        assert_allclose(with_panels[2][name], with_blas[2][name], rtol=1e-4, atol=1e-4,
                        err_msg=name)
        assert_allclose(with_panels[2][name], exact[2][name], rtol=1e-3, atol=1e-3,
                        err_msg=name)


def test_panels_in_threads_give_the_single_thread_result(panels_on):
    """The batch split across threads runs the product on each part's rows: the same bits
    as one thread."""
    layer = fastrnn.LSTM(8, 64, dtype=np.float32, seed=2)
    x = np.random.default_rng(2).standard_normal((40, 32, 8)).astype(np.float32)
    before = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(1)
        one = layer(x)[0]
        fastrnn.set_num_threads(2)
        two = layer(x)[0]
    finally:
        fastrnn.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_gemm_floor_runs_with_panels(panels_on):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    W_ih = rng.standard_normal((64, 3)).astype(np.float32)
    W_hh = rng.standard_normal((64, 16)).astype(np.float32)
    for train in (False, True):
        _engine.gemm_floor("LSTM", x, W_ih, W_hh, train=train)()


@pytest.mark.parametrize("mode, H", [("LSTM", 80), ("GRU", 112)])
def test_weight_gradients_of_many_gate_rows_split_across_threads(mode, H, panels_on):
    """dW = dG.T @ X with more than 256 gate rows (A read transposed), its rows split
    across two threads: the same as BLAS to float32 rounding."""
    rng = np.random.default_rng(H)
    T, B, I = 12, 24, 40
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    layer = getattr(fastrnn, mode)(I, H, dtype=np.float32, seed=H)
    threads, flops = fastrnn.get_num_threads(), _blas.parallel_min_flops()
    try:
        fastrnn.set_num_threads(2)
        _blas.parallel_min_flops(0)
        with_panels = _train(layer, x, None, dy)
        _blas.panel_products(False)
        with_blas = _train(layer, x, None, dy)
    finally:
        _blas.panel_products(True)
        _blas.parallel_min_flops(flops)
        fastrnn.set_num_threads(threads)
    for name in with_blas[2]:
        assert_allclose(with_panels[2][name], with_blas[2][name], rtol=1e-4, atol=1e-4,
                        err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_gradients_side_by_side_equal_one_after_another(mode, bias, dtype):
    """The products after a backward loop give the same gradients whether they run side by
    side (one per thread) or one after another (each split across the threads); the
    second direction adds its dX into the first's."""
    rng = np.random.default_rng(7)
    T, B, I, H = 11, 12, 24, 48
    x = rng.standard_normal((T, B, I)).astype(dtype)
    dy = rng.standard_normal((T, B, 2 * H)).astype(dtype)
    layer = getattr(fastrnn, mode)(I, H, bias=bias, bidirectional=True, dtype=dtype, seed=3)
    threads, limit = fastrnn.get_num_threads(), _blas.grads_side_by_side_flops()
    try:
        fastrnn.set_num_threads(2)
        _blas.grads_side_by_side_flops(1e12)
        side = _train(layer, x, [11, 9, 9, 8, 7, 7, 5, 4, 3, 3, 2, 1], dy)
        _blas.grads_side_by_side_flops(0)
        after = _train(layer, x, [11, 9, 9, 8, 7, 7, 5, 4, 3, 3, 2, 1], dy)
    finally:
        _blas.grads_side_by_side_flops(limit)
        fastrnn.set_num_threads(threads)
    np.testing.assert_array_equal(side[1], after[1])
    assert side[2].keys() == after[2].keys()
    for name in side[2]:
        assert np.any(side[2][name] != 0), name
        if dtype == np.float32 and _blas.panel_products():
            np.testing.assert_array_equal(side[2][name], after[2][name], err_msg=name)
        else:
            assert_allclose(side[2][name], after[2][name], rtol=1e-12, atol=1e-12,
                            err_msg=name)


def test_side_by_side_limit_checks_its_value():
    with pytest.raises(ValueError, match="value"):
        _blas.grads_side_by_side_flops(-1)
