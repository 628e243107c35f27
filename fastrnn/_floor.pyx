# cython: language_level=3
"""The GEMM floor, a benchmark tool: the matrix products of a layer's forward (and
backward) pass alone, without the cell math between them.

``fastrnn._engine.gemm_floor`` builds its arguments and the benchmarks (``fastrnn.bench``,
the "GEMM floor" rows) time it: what a kernel of fastrnn/_core.pyx cannot go below with
these products.  Nothing on a training or inference path calls it.
"""

from cython cimport floating
from cython.parallel cimport prange

from fastrnn._blas cimport _check_shape, _team
from fastrnn._core cimport (_Grads, _TRANSPOSED, _active, _back_product, _check_bounds,
                            _check_nact, _grads_shape, _input_all, _optional_panels,
                            _panels_ptr, _param_grads, _step_input, _step_product,
                            _transposed_ptr)


# ---------------------------------------------------------------------------------------
# The GEMM floor: the matrix products of a layer's forward (and backward), alone
# ---------------------------------------------------------------------------------------

cdef void _floor_rows(const floating* W_hh, const floating* W_hh_t, const floating* Wp,
                      const floating* Wp_back, const floating* X, Py_ssize_t I,
                      const floating* Wip, Py_ssize_t gstep, const int* nact,
                      Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t GH, bint train,
                      Py_ssize_t lo, Py_ssize_t hi, floating* g, floating* hs) noexcept nogil:
    cdef Py_ssize_t s, t, n
    g += lo * GH
    hs += lo * H
    for s in range(T):
        t = s
        n = _active(nact[t], lo, hi)
        if Wip != NULL:
            _step_input(<int>n, <int>GH, <int>I, X + (t * B + lo) * I, Wip, NULL,
                        g + t * gstep)
        _step_product(<int>n, <int>GH, <int>H, hs, W_hh, W_hh_t, Wp, <floating>1,
                      g + t * gstep)
    if train:
        for s in range(T):
            t = T - 1 - s
            n = _active(nact[t], lo, hi)
            _back_product(<int>n, <int>GH, <int>H, g + t * B * GH, <int>GH, W_hh, Wp_back,
                          <floating>0, hs)


def gemm_floor(const floating[:, ::1] X, const floating[:, ::1] W_ih,
               const floating[:, ::1] W_hh, const floating[:, ::1] W_hh_t,
               const floating[:, ::1] W_hh_p,
               floating[:, ::1] Gt, floating[:, ::1] h, floating[:, ::1] Hp,
               floating[:, ::1] dX, floating[:, ::1] dW_ih, floating[:, ::1] dW_hh,
               const int[::1] nact, const int[::1] bounds, bint train,
               int layout=_TRANSPOSED, const floating[:, ::1] W_ih_p=None):
    """Run only the matrix products of one layer's forward (and, with ``train``, backward)
    pass, with the kernels' shapes, blocking, threads and product kernels (``W_hh_t`` with
    ``layout``, ``W_hh_p`` and ``W_ih_p`` as the kernels take them): the time a kernel
    cannot go below with these products.  The arrays are scratch (their values are
    irrelevant)."""
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], H = h.shape[1], I = X.shape[1]
    cdef Py_ssize_t GH = W_hh.shape[0], p, parts = bounds.shape[0] - 1
    _check_shape("X", tuple(X.shape)[:2], (T * B, I))
    _check_shape("W_ih", tuple(W_ih.shape)[:2], (GH, I))
    _check_shape("W_hh", tuple(W_hh.shape)[:2], (GH, H))
    _check_shape("Gt", tuple(Gt.shape)[:2], (T * B, GH))
    _check_shape("Hp", tuple(Hp.shape)[:2], (T * B, H))
    _check_shape("dX", tuple(dX.shape)[:2], (T * B, I))
    _check_shape("dW_ih", tuple(dW_ih.shape)[:2], (GH, I))
    _check_shape("dW_hh", tuple(dW_hh.shape)[:2], (GH, H))
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef const floating* whh_t = _transposed_ptr(W_hh_t, H, GH)
    cdef const floating* wp = _panels_ptr(whh_t, layout)
    cdef const floating* wp_back = _optional_panels("W_hh_p", W_hh_p, GH, H)
    cdef const floating* wip = _optional_panels("W_ih_p", W_ih_p, I, GH)
    # as the kernels: in inference with the projection in the loop, one step's rows of Gt
    cdef Py_ssize_t gstep = 0 if wip != NULL and not train else B * GH
    cdef const floating* x = &X[0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef floating* g = &Gt[0, 0]
    cdef floating* hs = &h[0, 0]
    cdef _Grads gd = _grads_shape(T * B, GH, I, H, False, GH, GH, 0, 0)
    with nogil:
        if wip == NULL:
            _input_all(<int>(T * B), <int>GH, <int>I, x, &W_ih[0, 0], NULL, NULL, 0, g)
        if parts == 1:
            _floor_rows(whh, whh_t, wp, wp_back, x, I, wip, gstep, na, T, B, H, GH, train, 0,
                        B, g, hs)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _floor_rows(whh, whh_t, wp, wp_back, x, I, wip, gstep, na, T, B, H, GH, train,
                            bd[p], bd[p + 1], g, hs)
        if train:
            _param_grads(&gd, g, <floating*>NULL, &X[0, 0], &W_ih[0, 0], &Hp[0, 0],
                         <floating*>NULL, &dX[0, 0], &dW_ih[0, 0], NULL, &dW_hh[0, 0], NULL)
