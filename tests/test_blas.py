"""The settings of the compiled BLAS layer (fastrnn._blas) and where they come from
(fastrnn._tuning); the products themselves are tested against NumPy in test_core.py
(blas_gemm, transpose) and test_panel.py (panel_pack, panel_gemm)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastrnn import _blas, _tuning

GEMM_TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


@pytest.mark.parametrize("row_stride", [1, 3], ids=["packed", "strided"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-2.5, 0.5)])
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_blas_gemm_of_one_row_matches_numpy(dtype, trans_a, trans_b, alpha, beta, row_stride):
    """m = 1 takes gemm's matrix-vector path (gemv): op(A) a row, or a column of A read at
    its row stride when transposed."""
    rng = np.random.default_rng(1)
    k, n = 7, 5
    parent_a = rng.standard_normal((k * row_stride, k * row_stride)).astype(dtype)
    A = parent_a[::row_stride, :1] if trans_a else parent_a[:1, ::1][:, :k]
    Bm = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    C = rng.standard_normal((1, n)).astype(dtype)
    expected = (alpha * (A.T if trans_a else A).astype(np.float64)
                @ (Bm.T if trans_b else Bm).astype(np.float64) + beta * C.astype(np.float64))
    _blas.blas_gemm(A, Bm, C, trans_a, trans_b, alpha, beta)
    assert_allclose(C, expected, **GEMM_TOL[dtype])


def test_the_compiled_thresholds_are_the_tuned_ones():
    assert _blas.parallel_min_flops() == _tuning.PARALLEL_MIN_FLOPS
    assert _blas.small_product_size() == _tuning.SMALL_PRODUCT_SIZE
    assert _blas.grads_side_by_side_flops() == _tuning.GRADS_SIDE_BY_SIDE_FLOPS
    assert _blas.panel_limits() == (_tuning.PANEL_MIN_ROWS, _tuning.PANEL_TA_MAX_ROWS,
                                    _tuning.PANEL_MAX_BYTES)
    assert _blas.shared_product_bytes() == _tuning.SHARED_PRODUCT_BYTES


@pytest.mark.parametrize("setting", [_blas.parallel_min_flops, _blas.small_product_size,
                                     _blas.grads_side_by_side_flops,
                                     _blas.shared_product_bytes])
def test_a_size_setting_round_trips_and_refuses_a_negative(setting):
    before = setting()
    try:
        assert setting(12345) == 12345
        assert setting() == 12345
        with pytest.raises(ValueError, match=">= 0"):
            setting(-1)
        with pytest.raises(ValueError, match=">= 0"):
            setting(float("nan"))
        assert setting() == 12345
    finally:
        setting(before)


def test_panel_limits_set_one_at_a_time_and_refuse_bad_values():
    before = _blas.panel_limits()
    try:
        assert _blas.panel_limits(min_rows=32) == (32,) + before[1:]
        assert _blas.panel_limits(ta_max_rows=64)[1] == 64
        assert _blas.panel_limits(max_bytes=1024)[2] == 1024
        with pytest.raises(ValueError):
            _blas.panel_limits(min_rows=-1)
        with pytest.raises(ValueError):
            _blas.panel_limits(ta_max_rows=2**31)
        assert _blas.panel_limits() == (32, 64, 1024)
    finally:
        _blas.panel_limits(*before)
    assert _blas.panel_limits() == before


def test_apply_restores_the_tuned_values():
    before = _blas.parallel_min_flops()
    try:
        _blas.parallel_min_flops(0)
        _tuning.apply()
        assert _blas.parallel_min_flops() == _tuning.PARALLEL_MIN_FLOPS
    finally:
        _blas.parallel_min_flops(before)
