# cython: language_level=3
"""What fastrnn/_core.pyx shares with the GEMM floor (fastrnn/_floor.pyx): the pieces of the
kernels' products, the layout of the forward operands and the argument checks.

The inline functions are defined here (both modules compile them in); the others are
defined in _core.pyx and called through its C API.
"""

from cython cimport floating

from fastrnn._blas cimport fr_panel_gemm_f, gemm, gemm_rows, pgemm
from fastrnn._cellmath cimport _fill_bias


cdef struct _Grads:
    int TB, GH, In, H        # In: the input size (I is a C macro)
    bint accumulate_dx
    int n1, ld1, n2, ld2     # gate rows of dW_hh from dG (row stride ld1), then from dG2


cdef inline _Grads _grads_shape(Py_ssize_t TB, Py_ssize_t GH, Py_ssize_t I, Py_ssize_t H,
                                bint accumulate_dx, Py_ssize_t n1, Py_ssize_t ld1,
                                Py_ssize_t n2, Py_ssize_t ld2):
    cdef _Grads d
    d.TB, d.GH, d.In, d.H = <int>TB, <int>GH, <int>I, <int>H
    d.accumulate_dx = accumulate_dx
    d.n1, d.ld1, d.n2, d.ld2 = <int>n1, <int>ld1, <int>n2, <int>ld2
    return d


cdef void _param_grads(const _Grads* d, const floating* dG, const floating* dG2,
                       const floating* X, const floating* W_ih, const floating* Hp,
                       const floating* Hp2, floating* dX, floating* dW_ih, floating* db_ih,
                       floating* dW_hh, floating* db_hh) noexcept nogil


# Argument checks (defined in _core.pyx)

cdef int _check_nact(const int[::1] nact, Py_ssize_t B) except -1
cdef int _check_bounds(const int[::1] bounds, Py_ssize_t B) except -1
cdef const floating* _transposed_ptr(const floating[:, ::1] W_hh_t, Py_ssize_t H,
                                     Py_ssize_t GH) except? NULL
cdef const floating* _panels_ptr(const floating* W_hh_t, int layout) except? NULL
cdef const floating* _optional_panels(str name, const floating[:, ::1] P, Py_ssize_t rows,
                                      Py_ssize_t cols) except? NULL


# How the forward kernels read their W_hh_t argument
cdef enum:
    _TRANSPOSED = 0     # W_hh.T as a plain (H, G*H) array, or empty: BLAS reads W_hh
    _LSTM_ROW = 1       # lstm_pack's layout, for the fused one-row LSTM loop
    _PANELS = 2         # panel_pack of W_hh.T, for fastrnn's own per-step product


cdef inline void _step_product(int n, int GH, int H, const floating* h, const floating* W_hh,
                               const floating* W_hh_t, const floating* panels, floating beta,
                               floating* out) noexcept nogil:
    """out[:n] := h[:n] @ W_hh.T + beta * out[:n] (beta 0 or 1): with W_hh.T packed in
    panels when given (float only), else the transposed copy W_hh_t (H, GH) when given (a
    plain product, in blocks of rows), else from W_hh (GH, H)."""
    if floating is float:
        if panels != NULL:
            fr_panel_gemm_f(h, H, 0, n, H, panels, GH, out, GH, beta != 0, NULL)
            return
    if W_hh_t != NULL:
        gemm_rows(False, n, GH, H, h, H, W_hh_t, GH, beta, out, GH)
    else:
        gemm(False, True, n, GH, H, <floating>1, h, H, W_hh, H, beta, out, GH)


cdef inline void _part_product(int n, int cols, int H, const floating* h,
                               const floating* W, const floating* W_t, int ldt,
                               floating* out, int ldo) noexcept nogil:
    """out[:n, :cols] += h[:n] @ W.T for ``cols`` rows of W (cols, H), from its transposed
    copy W_t (H, cols; row stride ldt) when given: the products of part of the gates (the
    GRU with r before the product)."""
    if W_t != NULL:
        gemm_rows(False, n, cols, H, h, H, W_t, ldt, <floating>1, out, ldo)
    else:
        gemm(False, True, n, cols, H, <floating>1, h, H, W, H, <floating>1, out, ldo)


cdef inline void _back_product(int n, int GH, int H, const floating* dG, int ldg,
                               const floating* W_hh, const floating* panels, floating beta,
                               floating* dh) noexcept nogil:
    """dh[:n] := dG[:n, :GH] @ W_hh + beta * dh[:n] (beta 0 or 1), with W_hh packed in
    panels when given (float only)."""
    if floating is float:
        if panels != NULL:
            fr_panel_gemm_f(dG, ldg, 0, n, GH, panels, H, dh, H, beta != 0, NULL)
            return
    gemm_rows(False, n, H, GH, dG, ldg, W_hh, H, beta, dh, H)


cdef inline void _step_input(int n, int GH, int I, const floating* x, const floating* Wip,
                             const floating* bias, floating* gt) noexcept nogil:
    """gt[:n] := bias + x[:n] @ W_ih.T (bias: :func:`_step_bias`, or NULL), with W_ih.T
    packed in panels: the input projection of one step, when the time loop computes it
    step by step (float only).  The product's sums start from the bias."""
    if floating is float:
        fr_panel_gemm_f(x, I, 0, n, I, Wip, GH, gt, GH, 0, bias)


cdef inline void _input_all(int TB, int GH, int I, const floating* X, const floating* W_ih,
                            const floating* b_ih, const floating* b_hh, int n_hh,
                            floating* Gt) noexcept nogil:
    """Gt := X @ W_ih.T + b_ih + b_hh (b_hh on the first n_hh columns only): the input
    projection of all T*B rows at once, before the time loop."""
    if b_ih != NULL:
        _fill_bias(Gt, TB, GH, b_ih, b_hh, n_hh)
    pgemm(False, True, TB, GH, I, <floating>1, X, I, W_ih, I,
          <floating>(1 if b_ih != NULL else 0), Gt, GH)


cdef inline Py_ssize_t _active(int nact_t, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """How many of the rows lo..hi-1 are active, given nact_t active rows in all."""
    if nact_t <= lo:
        return 0
    return (nact_t if nact_t < hi else hi) - lo
