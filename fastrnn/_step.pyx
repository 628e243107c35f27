# cython: language_level=3
"""The one-step entry of fastrnn: one time step of a cell, for the cells and streaming.

``step`` runs a step in place on arrays it is given; ``cell_call`` is a cell's whole call
(new state arrays) on inputs that need no conversion.  The cell math is the kernels'
(fastrnn/_cellmath.pxd), the products go through fastrnn/_blas.pxd.
"""

cimport numpy as cnp
from cython cimport floating
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from fastrnn._blas cimport _check_index, gemm
from fastrnn._cellmath cimport (CELL_GRU, CELL_LSTM, FR_KINDS, _bias_columns, _cell_step,
                                _fill_bias)

cnp.import_array()


# ---------------------------------------------------------------------------------------
# One time step with little call overhead, for streaming (cells, Stepper)
#
# A def function taking typed memoryviews pays for acquiring a buffer per argument, which
# for one small step costs more than the step.  This entry takes ndarrays, checks dtype,
# contiguity and shapes by hand (a few C comparisons each) and runs the same cell math.
# ---------------------------------------------------------------------------------------

cdef int _check_array(object a, str name, int typenum, Py_ssize_t d0, Py_ssize_t d1) except -1:
    """``a`` is a C-contiguous ndarray of ``typenum`` with shape (d0, d1), or (d0,) when
    d1 < 0; d0 < 0 allows an empty array (an absent bias or state)."""
    cdef cnp.ndarray arr
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"{name} must be a numpy array")
    arr = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(arr)
            or not cnp.PyArray_ISNOTSWAPPED(arr) or not cnp.PyArray_ISALIGNED(arr)):
        raise ValueError(f"{name} must be C-contiguous and aligned, in native byte order, "
                         f"with the dtype of x")
    if d0 < 0 and cnp.PyArray_SIZE(arr) == 0:
        return 0
    if d1 < 0:
        if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIM(arr, 0) != (d0 if d0 >= 0 else -d0):
            raise ValueError(f"{name} has the wrong shape")
    elif (cnp.PyArray_NDIM(arr) != 2 or cnp.PyArray_DIM(arr, 0) != (d0 if d0 >= 0 else -d0)
          or cnp.PyArray_DIM(arr, 1) != d1):
        raise ValueError(f"{name} has the wrong shape")
    return 0


cdef int _check_mode(int mode) except -1:
    """The kinds of one step here: RNN, LSTM, GRU (FastRNN and FastGRNN step through the
    sequence kernels, one step at a time)."""
    if mode < 0 or mode > CELL_GRU:
        raise ValueError(f"mode must be one of 0..{CELL_GRU} (RNN, LSTM, GRU), got {mode}")
    return 0


cdef void _step_impl(int mode, bint relu, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                     const floating* x, const floating* W_ih, const floating* W_hh,
                     const floating* b_ih, const floating* b_hh, floating* h, floating* c,
                     floating* g, floating* gh) noexcept nogil:
    cdef Py_ssize_t GH = FR_KINDS[mode].gates * H, n_hh = _bias_columns(mode, H)
    cdef bint apart = FR_KINDS[mode].product_apart
    # Gt = x @ W_ih.T + b_ih + b_hh   (GRU: b_hn stays inside r*(...))
    if b_ih != NULL:
        _fill_bias(g, B, GH, b_ih, b_hh, n_hh)
    gemm(False, True, <int>B, <int>GH, <int>I, <floating>1, x, <int>I, W_ih, <int>I,
         <floating>(1 if b_ih != NULL else 0), g, <int>GH)
    # Gt += h @ W_hh.T   (GRU: gh = h @ W_hh.T)
    gemm(False, True, <int>B, <int>GH, <int>H, <floating>1, h, <int>H, W_hh, <int>H,
         <floating>(0 if apart else 1), gh if apart else g, <int>GH)
    _cell_step(mode, relu, g, gh, b_hh + n_hh if b_hh != NULL and n_hh < GH else NULL,
               <floating*>NULL, 0, 0, h, c, <floating*>NULL, B, H)


cdef int _run_step(int mode, bint relu, int typenum, Py_ssize_t B, Py_ssize_t I,
                   Py_ssize_t H, object W_ih, object W_hh, object b_ih, object b_hh,
                   void* px, void* ph, void* pc, void* pg, void* pgh) except -1:
    """Check the weights of one step (dtype ``typenum``, PyTorch's shapes, both biases or
    neither) and run :func:`_step_impl` in that dtype, without the GIL."""
    cdef Py_ssize_t GH = FR_KINDS[mode].gates * H
    _check_index("B", B)
    _check_index("the gate width G*H", GH)
    _check_index("the input size", I)
    _check_array(W_ih, "W_ih", typenum, GH, I)
    _check_array(W_hh, "W_hh", typenum, GH, H)
    _check_array(b_ih, "b_ih", typenum, -GH, -1)
    _check_array(b_hh, "b_hh", typenum, -GH, -1)
    if (cnp.PyArray_SIZE(<cnp.ndarray>b_ih) == 0) != (cnp.PyArray_SIZE(<cnp.ndarray>b_hh) == 0):
        raise ValueError("both biases must be given, or neither")
    cdef void* pb_ih = NULL if cnp.PyArray_SIZE(<cnp.ndarray>b_ih) == 0 else \
        cnp.PyArray_DATA(<cnp.ndarray>b_ih)
    cdef void* pb_hh = NULL if pb_ih == NULL else cnp.PyArray_DATA(<cnp.ndarray>b_hh)
    cdef void* pwi = cnp.PyArray_DATA(<cnp.ndarray>W_ih)
    cdef void* pwh = cnp.PyArray_DATA(<cnp.ndarray>W_hh)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _step_impl[float](mode, relu, B, I, H, <float*>px, <float*>pwi, <float*>pwh,
                              <float*>pb_ih, <float*>pb_hh, <float*>ph, <float*>pc,
                              <float*>pg, <float*>pgh)
        else:
            _step_impl[double](mode, relu, B, I, H, <double*>px, <double*>pwi, <double*>pwh,
                               <double*>pb_ih, <double*>pb_hh, <double*>ph, <double*>pc,
                               <double*>pg, <double*>pgh)
    return 0


def step(int mode, bint relu, object x, object W_ih, object W_hh, object b_ih, object b_hh,
         object h, object c, object gates, object gh):
    """One time step of a cell on every row, in place: ``h`` (and ``c``) (B, H) go from
    the previous state to the new one.  ``mode``: the kind's kernel number (0 RNN, 1 LSTM,
    2 GRU; the ``kernel_id`` of fastrnn/_kinds.py); ``gates`` (B, G*H) and, for a GRU,
    ``gh`` (B, 3H) are workspace; empty biases mean none; ``c`` is used by the LSTM only
    (empty otherwise)."""
    cdef cnp.ndarray xa
    cdef int typenum
    cdef Py_ssize_t B, I, H, GH
    _check_mode(mode)
    if not isinstance(x, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>x) != 2:
        raise ValueError("x must be a 2-D ndarray")
    xa = <cnp.ndarray>x
    typenum = cnp.PyArray_TYPE(xa)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise ValueError("x must be float32 or float64")
    B, I = cnp.PyArray_DIM(xa, 0), cnp.PyArray_DIM(xa, 1)
    if not isinstance(h, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>h) != 2:
        raise ValueError("h must be a 2-D ndarray")
    H = cnp.PyArray_DIM(<cnp.ndarray>h, 1)
    GH = FR_KINDS[mode].gates * H
    if B < 1 or I < 1 or H < 1:
        raise ValueError("sizes must be positive")
    _check_array(x, "x", typenum, B, I)
    _check_array(h, "h", typenum, B, H)
    _check_array(gates, "gates", typenum, B, GH)
    if mode == CELL_LSTM:
        _check_array(c, "c", typenum, B, H)
    if FR_KINDS[mode].product_apart:
        _check_array(gh, "gh", typenum, B, GH)
    _run_step(mode, relu, typenum, B, I, H, W_ih, W_hh, b_ih, b_hh,
              cnp.PyArray_DATA(xa), cnp.PyArray_DATA(<cnp.ndarray>h),
              cnp.PyArray_DATA(<cnp.ndarray>c) if mode == CELL_LSTM else NULL,
              cnp.PyArray_DATA(<cnp.ndarray>gates),
              cnp.PyArray_DATA(<cnp.ndarray>gh) if FR_KINDS[mode].product_apart else NULL)


cdef inline bint _plain(object a, int typenum, int ndim) noexcept:
    """``a`` is exactly an ndarray of ``typenum`` in native byte order, aligned,
    C-contiguous, of rank ``ndim`` (the type number alone ignores the byte order)."""
    return (type(a) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>a) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray>a) == ndim
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a)
            and cnp.PyArray_ISALIGNED(<cnp.ndarray>a))


cdef inline bint _state_ok(object a, int typenum, int ndim, cnp.npy_intp* dims) noexcept:
    if not _plain(a, typenum, ndim):
        return False
    if cnp.PyArray_DIM(<cnp.ndarray>a, 0) != dims[0]:
        return False
    return ndim == 1 or cnp.PyArray_DIM(<cnp.ndarray>a, 1) == dims[1]


def cell_call(int mode, bint relu, object x, object state, object W_ih, object W_hh,
              object b_ih, object b_hh):
    """A cell's call, whole: the new state from ``x`` (B, I) or (I,) and ``state`` (h, or
    (h, c) for the LSTM, shaped like x's rows; None for zeros), in new arrays.

    The fast path of ``cell(x, state)``: it takes only inputs that need no conversion
    (ndarrays of the weights' dtype, C-contiguous, of the right shapes) and returns None
    for anything else, which the caller then converts and checks.  ``mode`` 0 RNN, 1
    LSTM, 2 GRU; the weights as :func:`step` takes them.
    """
    cdef int typenum, nd
    cdef Py_ssize_t B, I, H, GH
    cdef cnp.npy_intp dims[2]
    cdef object h0 = None, c0 = None
    cdef cnp.ndarray h_new, c_new = None
    cdef void* work
    cdef size_t item, nbytes
    _check_mode(mode)
    if not isinstance(W_ih, cnp.ndarray) or not isinstance(W_hh, cnp.ndarray):
        raise TypeError("W_ih and W_hh must be numpy arrays")
    typenum = cnp.PyArray_TYPE(<cnp.ndarray>W_ih)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise ValueError("the weights must be float32 or float64")
    if type(x) is not cnp.ndarray:
        return None
    nd = cnp.PyArray_NDIM(<cnp.ndarray>x)
    if (nd != 1 and nd != 2) or not _plain(x, typenum, nd):
        return None
    B = 1 if nd == 1 else cnp.PyArray_DIM(<cnp.ndarray>x, 0)
    I = cnp.PyArray_DIM(<cnp.ndarray>x, nd - 1)
    if cnp.PyArray_NDIM(<cnp.ndarray>W_hh) != 2:
        raise ValueError("W_hh has the wrong shape")
    H = cnp.PyArray_DIM(<cnp.ndarray>W_hh, 1)
    GH = FR_KINDS[mode].gates * H
    if B < 1 or H < 1 or I != (cnp.PyArray_DIM(<cnp.ndarray>W_ih, 1)
                               if cnp.PyArray_NDIM(<cnp.ndarray>W_ih) == 2 else -1):
        return None
    if nd == 1:
        dims[0] = H
    else:
        dims[0], dims[1] = B, H
    if state is not None:
        if mode == CELL_LSTM:
            if type(state) is not tuple or len(<tuple>state) != 2:
                return None
            h0, c0 = <tuple>state
            if not _state_ok(c0, typenum, nd, dims):
                return None
        else:
            h0 = state
        if not _state_ok(h0, typenum, nd, dims):
            return None
    item = sizeof(float) if typenum == cnp.NPY_FLOAT32 else sizeof(double)
    nbytes = B * H * item
    h_new = cnp.PyArray_EMPTY(nd, dims, typenum, 0)
    if h0 is None:
        memset(cnp.PyArray_DATA(h_new), 0, nbytes)
    else:
        memcpy(cnp.PyArray_DATA(h_new), cnp.PyArray_DATA(<cnp.ndarray>h0), nbytes)
    if mode == CELL_LSTM:
        c_new = cnp.PyArray_EMPTY(nd, dims, typenum, 0)
        if c0 is None:
            memset(cnp.PyArray_DATA(c_new), 0, nbytes)
        else:
            memcpy(cnp.PyArray_DATA(c_new), cnp.PyArray_DATA(<cnp.ndarray>c0), nbytes)
    work = malloc(B * (2 * GH if FR_KINDS[mode].product_apart else GH) * item)
    if work == NULL:
        raise MemoryError()
    try:
        _run_step(mode, relu, typenum, B, I, H, W_ih, W_hh, b_ih, b_hh,
                  cnp.PyArray_DATA(<cnp.ndarray>x), cnp.PyArray_DATA(h_new),
                  NULL if c_new is None else cnp.PyArray_DATA(c_new),
                  work, <char*>work + B * GH * item)
    finally:
        free(work)
    return h_new if c_new is None else (h_new, c_new)
