# cython: language_level=3
"""Compiled kernels of fastrnn: forward unrolling and BPTT of RNN, LSTM and GRU layers.

The kernels know nothing of classes: each takes arrays, writes into arrays it is given and
returns nothing.  Every kernel runs its whole time loop in one ``with nogil:`` block and
does all matrix products through :func:`gemm`, the one typed BLAS wrapper below.

Notation (shared with :mod:`fastrnn.reference`)
-----------------------------------------------
One call handles one layer in one direction, on a batch whose rows are sorted by length,
longest first.

* ``T, B, I, H``  time steps, batch rows, input size, hidden size; ``G`` gates per cell
  (1 RNN, 4 LSTM ``i f g o``, 3 GRU ``r z n``), so the gate width is ``G*H``.
* ``X``    (T*B, I)       inputs of all steps, row ``t*B + b``.
* ``nact`` (T,)           rows active at step t: rows ``b < nact[t]`` have ``t < lengths[b]``.
  Sorting by length makes the active rows a prefix, in both directions.
* ``h, c`` (B, H)         the running state: the initial state on entry, the final state on
  exit.  A row that has ended (forward) or not yet started (reverse) keeps its state.
* ``Y``    (T, B, ldy)    the outputs; this direction writes columns ``col .. col+H``;
  zeros at padded steps.
* ``Gt``   (T*B, G*H)     the gates: the input projection ``X @ W_ih.T + b`` on entry,
  the gate activations after the forward pass (the training cache), the gradients of the
  gate pre-activations ``dG`` after the backward pass.
* ``Hp, Cp`` (T, B, H)    training cache: ``h_prev``/``c_prev``, the state each step started
  from (all rows, so the weight-gradient GEMMs read only finite numbers).
* ``Hn``   (T, B, H)      GRU only: ``W_hn h_prev + b_hn`` on the forward pass, then
  ``dHn`` (its gradient) on the backward pass.

Forward (per step t, active rows):   backward (per step t, from T-1 down, active rows):
  1. Gt[t] += h @ W_hh.T               1. dh += dY[t]
  2. gate nonlinearities, in place     2. dG[t] from dh (and dc) and the cached gates
  3. state update (c, h)               3. dh = dG[t] @ W_hh   (+ the direct path of GRU)
  4. Y[t] = h                          after the loop, one GEMM each over all T*B rows:
                                         dX = dG @ W_ih, dW_ih += dG.T @ X,
                                         dW_hh += dG.T @ Hp, db += column sums of dG
Weight and bias gradients accumulate (``+=``) into the arrays given; ``dX`` is overwritten
or accumulated (``accumulate_dx``), so two directions can share one input gradient.
"""

cimport cython
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv

cdef extern from "_panel.h" nogil:
    int fr_panel_kernels_fast()
    void fr_panel_pack_f(const float* src, long n, long K, long sj, long sk, float* out)
    void fr_panel_gemm_f(const float* A, long lda, int ta, long m, long K, const float* Bp,
                         long n, float* C, long ldc, int accumulate, const float* bias)

cnp.import_array()


# ---------------------------------------------------------------------------------------
# BLAS: one wrapper owning the row-major <-> column-major mapping
# ---------------------------------------------------------------------------------------

# Threads.  fastrnn parallelises its own work with OpenMP and keeps scipy's BLAS on one
# thread (fastrnn._blas sets it): two thread pools on two cores steal each other's cores
# while they spin, and waking a BLAS pool for a small per-step product costs more than the
# product.  Large products split the rows of their result across the threads; the time
# loops split the batch (see row_bounds in fastrnn/_engine.py).
cdef int _max_threads = 1
cdef double _par_min_flops = 2e7

# libgomp keeps the threads of a parallel region in a pool for the next one, and a forked
# child inherits the pool's bookkeeping but not its threads: its first region of more than
# one thread waits for them forever.  So every region starts through _team, which notes
# that the pool exists, and after a fork the child runs its kernels on one thread.
cdef bint _teams_started = False
cdef bint _forked_serial = False


cdef inline int _team(int threads) noexcept nogil:
    """``threads``, for the num_threads of a parallel region: notes the pool."""
    global _teams_started
    if threads > 1:
        _teams_started = True
    return threads


def set_num_threads(int n):
    """Use at most ``n`` threads in the kernels (1 in a child forked after the parent
    ran a parallel region)."""
    global _max_threads
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _max_threads = 1 if _forked_serial else n


def get_num_threads():
    return _max_threads


def after_fork_in_child():
    """Called in a forked child: one thread from now on if the parent's pool existed.
    Returns whether the child was limited."""
    global _max_threads, _forked_serial
    if _teams_started:
        _forked_serial = True
        _max_threads = 1
    return bool(_forked_serial)


def forked_serial():
    """Whether this process is a child forked after its parent ran a parallel region."""
    return bool(_forked_serial)


cdef double _size_setting(value) except -1:
    """A size setting of the functions below: a float >= 0 (ValueError otherwise)."""
    cdef double v = float(value)
    if not v >= 0:
        raise ValueError(f"value must be >= 0, got {value}")
    return v


def parallel_min_flops(value=None):
    """Get (and optionally set) the size, in floating-point operations, from which a product
    is split across threads."""
    global _par_min_flops
    if value is not None:
        _par_min_flops = _size_setting(value)
    return _par_min_flops


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* A, int lda, const floating* B, int ldb,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C, every matrix row-major.

    op(A) is (m, k), op(B) is (k, n), C is (m, n); lda, ldb, ldc are row strides.  A
    row-major matrix is its transpose in column-major, so this computes C.T = op(B).T @
    op(A).T by calling BLAS with the operands swapped and the same transpose flags.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef char tv
    cdef int gm, gn, inca, one = 1
    if m <= 0 or n <= 0:
        return
    if m == 1 and k > 0:
        # one row: a matrix-vector product, which BLAS does without packing B.
        # c[j] = alpha * sum_i a[i] op(B)[i, j] + beta * c[j]; BLAS reads row-major B as
        # its column-major transpose, so op(B) = B needs gemv('N') and B.T gemv('T').
        inca = lda if trans_a else 1
        tv = b'T' if trans_b else b'N'
        gm = k if trans_b else n
        gn = n if trans_b else k
        if floating is float:
            sgemv(&tv, &gm, &gn, &alpha, <float*>B, &ldb, <float*>A, &inca, &beta, C, &one)
        else:
            dgemv(&tv, &gm, &gn, &alpha, <double*>B, &ldb, <double*>A, &inca, &beta, C, &one)
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)


cdef inline int _parts(int m, int n, int k) noexcept nogil:
    """How many threads share the m rows of a product."""
    cdef int parts = _max_threads
    if parts > m // 8:
        parts = m // 8
    if parts < 1 or 2.0 * m * n * k < _par_min_flops:
        return 1
    return parts


cdef inline void pgemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                       const floating* A, int lda, const floating* B, int ldb,
                       floating beta, floating* C, int ldc) noexcept nogil:
    """:func:`gemm` with the m rows of C split across threads when the product is large;
    in float, with fastrnn's panel product where it applies (see _panel_pgemm)."""
    _pgemm_parts(_parts(m, n, k), trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                 ldc)


cdef void _pgemm_parts(int parts, bint trans_a, bint trans_b, int m, int n, int k,
                       floating alpha, const floating* A, int lda, const floating* B, int ldb,
                       floating beta, floating* C, int ldc) noexcept nogil:
    """:func:`pgemm` with the rows of C split into ``parts`` (1: in the calling thread)."""
    cdef int p, r0, r1
    if floating is float:
        if _panel_pgemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                        parts) == 0:
            return
    if parts == 1:
        gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    for p in prange(parts, num_threads=_team(parts), schedule="static"):
        r0 = <int>((<long>m * p) // parts)
        r1 = <int>((<long>m * (p + 1)) // parts)
        # rows r0..r1 of op(A): rows of A, or columns of A when transposed
        gemm(trans_a, trans_b, r1 - r0, n, k, alpha,
             A + (r0 if trans_a else <long>r0 * lda), lda, B, ldb, beta,
             C + <long>r0 * ldc, ldc)


# fastrnn's own product (_panel.h) for the products before and after the time loops too:
# op(B) is packed once (a copy the size of B), then the row parts run the panel kernel.
# Measured against one-thread OpenBLAS here: level on large square-ish products, 1.1-2.8x
# on the narrow ones of small layers (n or k of 16-128), 1.05-1.4x on the weight gradients
# dG.T @ X of up to 2048 gate rows (LSTM H <= 512); with more (LSTM H=1024) BLAS is faster,
# so it keeps them.
cdef bint _panel_products = fr_panel_kernels_fast()
cdef int _panel_ta_max_rows = 2048
cdef int _panel_min_rows = 16
cdef double _panel_max_bytes = 64.0 * 1024 * 1024    # the packed copy of op(B), at most


cdef int _panel_pgemm(bint trans_a, bint trans_b, int m, int n, int k, float alpha,
                      const float* A, int lda, const float* B, int ldb, float beta,
                      float* C, int ldc, int parts) noexcept nogil:
    """C = op(A) @ op(B) (+ C) with the panel product, split as :func:`pgemm` splits;
    returns -1 (and does nothing) when it does not apply."""
    cdef float* Bp
    cdef int p, r0, r1
    if (not _panel_products or alpha != 1 or (beta != 0 and beta != 1) or n % 16 or k < 1
            or m < _panel_min_rows or (trans_a and m > _panel_ta_max_rows)
            or <double>k * n * sizeof(float) > _panel_max_bytes):
        return -1
    cdef bint packed_already = not trans_b and n <= 64 and ldb == n
    if packed_already:
        # one panel, rows in order: B is laid out as its own packed copy
        Bp = <float*>B
    else:
        Bp = <float*>malloc(<size_t>k * n * sizeof(float))
        if Bp == NULL:
            return -1
        # op(B)[kk, j] = B[j*ldb + kk] (trans_b) or B[kk*ldb + j]
        fr_panel_pack_f(B, n, k, ldb if trans_b else 1, 1 if trans_b else ldb, Bp)
    if parts == 1:
        fr_panel_gemm_f(A, lda, trans_a, m, k, Bp, n, C, ldc, beta != 0, NULL)
    else:
        for p in prange(parts, num_threads=_team(parts), schedule="static"):
            r0 = <int>((<long>m * p) // parts)
            r1 = <int>((<long>m * (p + 1)) // parts)
            fr_panel_gemm_f(A + (r0 if trans_a else <long>r0 * lda), lda, trans_a, r1 - r0,
                            k, Bp, n, C + <long>r0 * ldc, ldc, beta != 0, NULL)
    if not packed_already:
        free(Bp)
    return 0


# OpenBLAS multiplies small products (M*N*K below about 2**20 for float) with kernels that
# skip packing the operands; a larger product packs the whole weight matrix on every call,
# which for a per-step recurrent GEMM of a few rows costs more than the arithmetic.  So the
# per-step products run in blocks of rows that stay under that size (results are the same
# either way; only the speed depends on the BLAS).
cdef double _small_mnk = 1048575


def small_product_size(value=None):
    """Get (and optionally set) the largest M*N*K of one per-step BLAS call; 0 disables the
    blocking."""
    global _small_mnk
    if value is not None:
        _small_mnk = _size_setting(value)
    return _small_mnk


cdef inline void gemm_rows(bint trans_b, int m, int n, int k, const floating* A, int lda,
                           const floating* B, int ldb, floating beta, floating* C,
                           int ldc) noexcept nogil:
    """C[:m] := A[:m] @ op(B) + beta * C[:m], in blocks of rows small enough for the BLAS's
    unpacked small-matrix path (one call when not even four rows fit)."""
    cdef double per_row = <double>n * k
    cdef int blocks, rows, r
    if m <= 0:
        return
    if per_row * 4 > _small_mnk:
        gemm(False, trans_b, m, n, k, <floating>1, A, lda, B, ldb, beta, C, ldc)
        return
    blocks = <int>((m * per_row) // (_small_mnk + 1)) + 1        # ceil(m / rows that fit)
    rows = (m + blocks - 1) // blocks                             # even blocks
    r = 0
    while r < m:
        if rows > m - r:
            rows = m - r
        gemm(False, trans_b, rows, n, k, <floating>1, A + <long>r * lda, lda, B, ldb, beta,
             C + <long>r * ldc, ldc)
        r += rows


def transpose(const floating[:, ::1] A, floating[:, ::1] out):
    """``out[...] = A.T`` for a C-contiguous ``A`` (R, C) and ``out`` (C, R), in square
    tiles that stay in the L1 cache (several times faster than a strided NumPy copy)."""
    cdef Py_ssize_t R = A.shape[0], C = A.shape[1], i0, j0, i, j, i1, j1
    cdef Py_ssize_t tile = 32     # two 32x32 float tiles: 8 KiB
    if out.shape[0] != C or out.shape[1] != R:
        raise ValueError(f"out must have shape ({C}, {R}), got {tuple(out.shape)[:2]}")
    with nogil:
        i0 = 0
        while i0 < R:
            i1 = min(i0 + tile, R)
            j0 = 0
            while j0 < C:
                j1 = min(j0 + tile, C)
                for j in range(j0, j1):
                    for i in range(i0, i1):
                        out[j, i] = A[i, j]
                j0 += tile
            i0 += tile


cdef int _check_row_major(str name, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row_stride,
                          Py_ssize_t col_stride, Py_ssize_t itemsize) except -1:
    """BLAS reads a matrix as rows at a positive stride of at least its width."""
    if rows * cols == 0:
        return 0
    if col_stride != itemsize and cols > 1:
        raise ValueError(f"{name} must be contiguous along its last axis")
    if rows > 1 and (row_stride <= 0 or row_stride % itemsize or row_stride // itemsize < cols):
        raise ValueError(f"{name} must have rows at a positive stride of at least its width "
                         f"(no reversed or broadcast rows)")
    return 0


cdef Py_ssize_t _INDEX_MAX = 2147483647     # BLAS takes its sizes as C ints


cdef int _check_index(str what, Py_ssize_t value) except -1:
    """Refuse a size BLAS's int arguments (and the kernels' int row counts) cannot hold."""
    if value > _INDEX_MAX:
        raise ValueError(f"{what} is {value}; the kernels index at most 2**31 - 1 "
                         f"(split the batch or the sequence)")
    return 0


cdef inline int _leading_dim(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row_stride,
                             Py_ssize_t itemsize) noexcept:
    return <int>(row_stride // itemsize if rows > 1 else max(cols, 1))


def blas_gemm(const floating[:, :] A, const floating[:, :] B, floating[:, :] C,
              bint trans_a=False, bint trans_b=False, floating alpha=1, floating beta=0):
    """Test hook of :func:`gemm`: ``C := alpha * op(A) @ op(B) + beta * C`` in place.

    Each array must be C-contiguous in its last axis (any row stride).
    """
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1], i, j
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    if (A.shape[1] if trans_a else A.shape[0]) != m:
        raise ValueError(f"op(A) has {A.shape[1] if trans_a else A.shape[0]} rows, C has {m}")
    if ((B.shape[1] if trans_b else B.shape[0]) != k
            or (B.shape[0] if trans_b else B.shape[1]) != n):
        raise ValueError("op(B) must be (k, n) with k the columns of op(A) and n those of C")
    if m == 0 or n == 0:
        return
    for what, value in (("C.shape[0]", m), ("C.shape[1]", n), ("k", k),
                        ("A's row stride", A.strides[0] // sizeof(floating)),
                        ("B's row stride", B.strides[0] // sizeof(floating)),
                        ("C's row stride", C.strides[0] // sizeof(floating))):
        _check_index(what, value)
    _check_row_major("A", A.shape[0], A.shape[1], A.strides[0], A.strides[1], sizeof(floating))
    _check_row_major("B", B.shape[0], B.shape[1], B.strides[0], B.strides[1], sizeof(floating))
    _check_row_major("C", C.shape[0], C.shape[1], C.strides[0], C.strides[1], sizeof(floating))
    cdef int lda = _leading_dim(A.shape[0], A.shape[1], A.strides[0], sizeof(floating))
    cdef int ldb = _leading_dim(B.shape[0], B.shape[1], B.strides[0], sizeof(floating))
    cdef int ldc = _leading_dim(C.shape[0], C.shape[1], C.strides[0], sizeof(floating))
    if k == 0:
        for i in range(m):
            for j in range(n):
                C[i, j] = beta * C[i, j] if beta != 0 else 0
        return
    with nogil:
        gemm(trans_a, trans_b, <int>m, <int>n, <int>k, alpha, &A[0, 0], lda, &B[0, 0], ldb,
             beta, &C[0, 0], ldc)


# ---------------------------------------------------------------------------------------
# Cell math: the gate nonlinearities and state updates of one step, in C (_cellmath.h), so
# that every loop vectorises (float: its own exp/tanh, dispatched to AVX-512/AVX2/baseline
# at load time; double: the C library's exp/tanh)
# ---------------------------------------------------------------------------------------

cdef extern from "_cellmath.h" nogil:
    void fr_add_colsum_f(const float* A, long rows, long cols, long lda, float* out)
    void fr_add_colsum_d(const double* A, long rows, long cols, long lda, double* out)
    void fr_rnn_act_f(float* a, long n, int relu)
    void fr_rnn_act_d(double* a, long n, int relu)
    void fr_rnn_grad_f(float* a, const float* dh, long n, int relu)
    void fr_rnn_grad_d(double* a, const double* dh, long n, int relu)
    void fr_lstm_step_f(float* gates, float* h, float* c, long n, long H)
    void fr_lstm_step_d(double* gates, double* h, double* c, long n, long H)
    void fr_lstm_grad_f(float* gates, const float* cp, const float* dh, float* dc, long n,
                        long H)
    void fr_lstm_grad_d(double* gates, const double* cp, const double* dh, double* dc,
                        long n, long H)
    void fr_gru_step_f(float* gates, const float* gh, const float* b_hn, float* h,
                       float* hn, long n, long H)
    void fr_gru_step_d(double* gates, const double* gh, const double* b_hn, double* h,
                       double* hn, long n, long H)
    void fr_gru_grad_f(float* gates, float* hn, float* dgh, const float* hp, float* dh,
                       long n, long H)
    void fr_gru_grad_d(double* gates, double* hn, double* dgh, const double* hp,
                       double* dh, long n, long H)
    void fr_lstm_pack_f(const float* W_hh, long H, float* out)
    void fr_lstm_row_f(const float* W, long H, const int* nact, long T, int reverse,
                       float* g, long gstep, float* h, float* c, float* y, long ystep,
                       float* hp, float* cp, long pstep, float* work)


cdef inline void _rnn_act(floating* a, Py_ssize_t n, bint relu) noexcept nogil:
    if floating is float:
        fr_rnn_act_f(a, n, relu)
    else:
        fr_rnn_act_d(a, n, relu)


cdef inline void _rnn_grad(floating* a, const floating* dh, Py_ssize_t n,
                           bint relu) noexcept nogil:
    if floating is float:
        fr_rnn_grad_f(a, dh, n, relu)
    else:
        fr_rnn_grad_d(a, dh, n, relu)


cdef inline void _lstm_step(floating* gt, floating* h, floating* c, Py_ssize_t n,
                            Py_ssize_t H) noexcept nogil:
    """2.-3. Gate nonlinearities in place, then c = f*c + i*g, h = o*tanh(c), for n rows."""
    if floating is float:
        fr_lstm_step_f(gt, h, c, n, H)
    else:
        fr_lstm_step_d(gt, h, c, n, H)


cdef inline void _lstm_grad(floating* gt, const floating* cp, const floating* dh,
                            floating* dc, Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """2. From the cached gates and c_prev: dG in place of the gates, dc becomes dc_prev."""
    if floating is float:
        fr_lstm_grad_f(gt, cp, dh, dc, n, H)
    else:
        fr_lstm_grad_d(gt, cp, dh, dc, n, H)


cdef inline void _gru_step(floating* gt, const floating* gh, const floating* b_hn,
                           floating* h, floating* hn, Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """2.-3. With gh = h @ W_hh.T: gates r, z, n in place; h updated; hn cached if given."""
    if floating is float:
        fr_gru_step_f(gt, gh, b_hn, h, hn, n, H)
    else:
        fr_gru_step_d(gt, gh, b_hn, h, hn, n, H)


cdef inline void _gru_grad(floating* gt, floating* hn, floating* dgh, const floating* hp,
                           floating* dh, Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """2. dG (input side) in place of the gates, dHn in place of hn, dGh (hidden side),
    and dh = dh * z (the direct path; the GEMM adds the rest)."""
    if floating is float:
        fr_gru_grad_f(gt, hn, dgh, hp, dh, n, H)
    else:
        fr_gru_grad_d(gt, hn, dgh, hp, dh, n, H)


cdef inline void _copy_rows(const floating* src, Py_ssize_t lds, floating* dst,
                            Py_ssize_t ldd, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(rows):
        memcpy(dst + b * ldd, src + b * lds, cols * sizeof(floating))


cdef inline void _add_rows(const floating* src, Py_ssize_t lds, floating* dst,
                           Py_ssize_t ldd, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    cdef Py_ssize_t b, j
    cdef const floating* s
    cdef floating* d
    for b in range(rows):
        s = src + b * lds
        d = dst + b * ldd
        for j in range(cols):
            d[j] += s[j]


cdef inline void _zero_rows(floating* dst, Py_ssize_t ldd, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(rows):
        memset(dst + b * ldd, 0, cols * sizeof(floating))


cdef inline void _fill_bias(floating* Gt, Py_ssize_t rows, Py_ssize_t width,
                            const floating* b_ih, const floating* b_hh,
                            Py_ssize_t n_hh) noexcept nogil:
    """Gt[r, :] = b_ih + b_hh on the first n_hh columns, b_ih alone after them."""
    cdef Py_ssize_t r, j
    cdef floating* g
    for r in range(rows):
        g = Gt + r * width
        for j in range(n_hh):
            g[j] = b_ih[j] + b_hh[j]
        for j in range(n_hh, width):
            g[j] = b_ih[j]


cdef inline void _add_colsum(const floating* A, Py_ssize_t rows, Py_ssize_t cols,
                             Py_ssize_t lda, floating* out) noexcept nogil:
    """out += A.sum(axis=0) for A (rows, cols) with row stride lda."""
    if floating is float:
        fr_add_colsum_f(A, rows, cols, lda, out)
    else:
        fr_add_colsum_d(A, rows, cols, lda, out)


# After the backward loop, the gradients of the parameters and of the input are products
# over all T*B rows of dG:
#   task 0, 1:  dW_hh += dG.T @ Hp, db_hh += dG.sum(0), in two parts by gate rows (GRU:
#               the r, z rows from dG, the n rows from dHn)
#   task 2:     dX (+)= dG @ W_ih
#   task 3:     dW_ih += dG.T @ X, db_ih += dG.sum(0)
# When they are small, starting the threads for each one and splitting it costs more than
# running the four side by side, one per thread at a time (the halves of dW_hh, usually the
# largest, first); larger ones run one after another, each split across the threads
# (pgemm).  Every product computes the same sums either way.
# Measured here (2 threads): side by side, small training steps gain 3-10 % (RNN T=200 B=16
# H=64: 1.03x; LSTM B=4 H=128: 1.10x); from about 3e8 flops of these products on it is
# level or worse (GRU T=100 B=64 H=256: 0.95x).
cdef double _side_by_side_flops = 1.6e8


def grads_side_by_side_flops(value=None):
    """Get (and optionally set) the size (flops of the four products) below which the
    products after a backward loop run side by side, one per thread; 0: never."""
    global _side_by_side_flops
    if value is not None:
        _side_by_side_flops = _size_setting(value)
    return _side_by_side_flops


cdef struct _Grads:
    int TB, GH, In, H        # In: the input size (I is a C macro)
    bint accumulate_dx
    int n1, ld1, n2          # gate rows of dW_hh from dG (row stride ld1), then from dG2


cdef inline _Grads _grads_shape(Py_ssize_t TB, Py_ssize_t GH, Py_ssize_t I, Py_ssize_t H,
                                bint accumulate_dx, Py_ssize_t n1, Py_ssize_t ld1,
                                Py_ssize_t n2):
    cdef _Grads d
    d.TB, d.GH, d.In, d.H = <int>TB, <int>GH, <int>I, <int>H
    d.accumulate_dx = accumulate_dx
    d.n1, d.ld1, d.n2 = <int>n1, <int>ld1, <int>n2
    return d


cdef void _hidden_part(int parts, const _Grads* d, const floating* a, int lda, int rows,
                       const floating* Hp, floating* dW_hh, floating* db_hh) noexcept nogil:
    """dW_hh[:rows] += a.T @ Hp, db_hh[:rows] += a.sum(0), for ``rows`` gate columns of
    ``a`` (T*B rows, row stride lda); the product in ``parts`` (0: as pgemm splits it)."""
    if rows <= 0:
        return
    _pgemm_parts(parts if parts > 0 else _parts(rows, d.H, d.TB), True, False, rows, d.H,
                 d.TB, <floating>1, a, lda, Hp, d.H, <floating>1, dW_hh, d.H)
    if db_hh != NULL:
        _add_colsum(a, d.TB, rows, lda, db_hh)


cdef void _input_part(int parts, bint weights, const _Grads* d, const floating* dG,
                      const floating* X, const floating* W_ih, floating* dX,
                      floating* dW_ih, floating* db_ih) noexcept nogil:
    """dX (+)= dG @ W_ih, or with ``weights`` dW_ih += dG.T @ X and db_ih += dG.sum(0)."""
    if not weights:
        _pgemm_parts(parts if parts > 0 else _parts(d.TB, d.In, d.GH), False, False, d.TB,
                     d.In, d.GH, <floating>1, dG, d.GH, W_ih, d.In,
                     <floating>(1 if d.accumulate_dx else 0), dX, d.In)
        return
    _pgemm_parts(parts if parts > 0 else _parts(d.GH, d.In, d.TB), True, False, d.GH, d.In,
                 d.TB, <floating>1, dG, d.GH, X, d.In, <floating>1, dW_ih, d.In)
    if db_ih != NULL:
        _add_colsum(dG, d.TB, d.GH, d.GH, db_ih)


cdef void _param_grads(const _Grads* d, const floating* dG, const floating* dG2,
                       const floating* X, const floating* W_ih, const floating* Hp,
                       floating* dX, floating* dW_ih, floating* db_ih, floating* dW_hh,
                       floating* db_hh) noexcept nogil:
    """The four tasks above, side by side or one after another."""
    cdef double flops = 2.0 * d.TB * (2.0 * d.GH * d.In + (d.n1 + d.n2) * d.H)
    cdef int task, h0, n2 = d.n2          # 0 unless dG2 is given
    cdef floating* db2 = db_hh + d.n1 if db_hh != NULL else NULL
    if _max_threads < 2 or flops >= _side_by_side_flops:
        _input_part(0, False, d, dG, X, W_ih, dX, dW_ih, db_ih)
        _input_part(0, True, d, dG, X, W_ih, dX, dW_ih, db_ih)
        _hidden_part(0, d, dG, d.ld1, d.n1, Hp, dW_hh, db_hh)
        _hidden_part(0, d, dG2, n2, n2, Hp, dW_hh + d.n1 * d.H, db2)
        return
    # without dG2, the hidden product in two halves of its gate rows
    h0 = d.n1 // 2 if dG2 == NULL else d.n1
    for task in prange(4, num_threads=_team(2), schedule="dynamic", chunksize=1):
        if task == 0:
            _hidden_part(1, d, dG, d.ld1, h0, Hp, dW_hh, db_hh)
        elif task == 1:
            if dG2 == NULL:
                _hidden_part(1, d, dG + h0, d.ld1, d.n1 - h0, Hp, dW_hh + h0 * d.H,
                             db_hh + h0 if db_hh != NULL else NULL)
            else:
                _hidden_part(1, d, dG2, n2, n2, Hp, dW_hh + d.n1 * d.H, db2)
        else:
            _input_part(1, task == 3, d, dG, X, W_ih, dX, dW_ih, db_ih)


# ---------------------------------------------------------------------------------------
# Argument checks (run with the GIL, before any loop; the Python layer validates user input,
# these keep a wrong call from the package itself from touching memory out of bounds)
# ---------------------------------------------------------------------------------------

cdef int _check_nact(const int[::1] nact, Py_ssize_t B) except -1:
    cdef Py_ssize_t t
    for t in range(nact.shape[0]):
        if nact[t] < 0 or nact[t] > B:
            raise ValueError(f"nact[{t}]={nact[t]} is outside [0, {B}]")
    return 0


cdef int _check_shape(str name, tuple actual, tuple expected) except -1:
    if actual != expected:
        raise ValueError(f"{name} must have shape {expected}, got {actual}")
    return 0


cdef floating* _bias_ptr(floating[::1] b, Py_ssize_t n, str name) except? NULL:
    """Pointer to a bias vector, or NULL for an empty one (a layer without biases)."""
    if b.shape[0] == 0:
        return NULL
    _check_shape(name, (b.shape[0],), (n,))
    return &b[0]


cdef int _check_bias_pair(const void* a, const void* b) except -1:
    if (a == NULL) != (b == NULL):
        raise ValueError("both biases must be given, or neither")
    return 0


cdef int _check_common(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t GH,
                       tuple X, tuple W_ih, tuple W_hh, tuple Y, Py_ssize_t col) except -1:
    if T < 1 or B < 1 or H < 1 or I < 1:
        raise ValueError(f"sizes must be positive, got T={T} B={B} I={I} H={H}")
    _check_index("T*B", T * B)
    _check_index("the gate width G*H", GH)
    _check_index("the input size", I)
    _check_index("the output width", Y[2])
    _check_shape("X", X, (T * B, I))
    _check_shape("W_ih", W_ih, (GH, I))
    _check_shape("W_hh", W_hh, (GH, H))
    if Y[0] != T or Y[1] != B or col < 0 or col + H > Y[2]:
        raise ValueError(f"Y of shape {Y} cannot hold columns {col}..{col + H} of (T={T}, B={B})")
    return 0


cdef const floating* _transposed_ptr(const floating[:, ::1] W_hh_t, Py_ssize_t H,
                                     Py_ssize_t GH) except? NULL:
    """Pointer to the optional transposed recurrent weight (H, G*H), or NULL when empty."""
    if W_hh_t.shape[0] == 0:
        return NULL
    _check_shape("W_hh_t", tuple(W_hh_t.shape)[:2], (H, GH))
    return &W_hh_t[0, 0]


# How the forward kernels read their W_hh_t argument
cdef enum:
    _TRANSPOSED = 0     # W_hh.T as a plain (H, G*H) array, or empty: BLAS reads W_hh
    _LSTM_ROW = 1       # lstm_pack's layout, for the fused one-row LSTM loop
    _PANELS = 2         # panel_pack of W_hh.T, for fastrnn's own per-step product

LAYOUT_TRANSPOSED = _TRANSPOSED
LAYOUT_LSTM_ROW = _LSTM_ROW
LAYOUT_PANELS = _PANELS


cdef const floating* _panels_ptr(const floating* W_hh_t, int layout) except? NULL:
    """The panels among the forward operands (NULL unless ``layout`` is LAYOUT_PANELS)."""
    if layout == _TRANSPOSED:
        return NULL
    if layout != _PANELS:
        raise ValueError(f"layout must be LAYOUT_TRANSPOSED or LAYOUT_PANELS, got {layout}")
    if floating is float:
        if W_hh_t == NULL:
            raise ValueError("LAYOUT_PANELS needs W_hh_t packed by panel_pack, got an "
                             "empty array")
        return W_hh_t
    else:
        raise ValueError("panels are float32 only")


cdef const floating* _optional_panels(str name, const floating[:, ::1] P, Py_ssize_t rows,
                                      Py_ssize_t cols) except? NULL:
    """Pointer to optional panels of a (rows, cols) matrix packed by :func:`panel_pack`
    (float32), or NULL when None or empty: W_hh (G*H, H) for the backward products, W_ih.T
    (I, G*H) for the input projection step by step."""
    if P is None or P.shape[0] == 0:
        return NULL
    if floating is float:
        _check_shape(name, tuple(P.shape)[:2], (rows, cols))
        return &P[0, 0]
    else:
        raise ValueError("panels are float32 only")


cdef int _check_cache(str name, floating[:, :, ::1] C, Py_ssize_t T, Py_ssize_t B,
                      Py_ssize_t H) except -1:
    if C.shape[0] != 0:
        _check_shape(name, tuple(C.shape)[:3], (T, B, H))
    return 0


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


cdef floating* _step_bias(const floating* wip, const floating* b_ih, const floating* b_hh,
                          Py_ssize_t GH, Py_ssize_t n_hh) except? NULL:
    """The bias row each step's own input projection starts from: b_ih + b_hh on the
    first n_hh columns, b_ih after them.  malloc'ed, for the caller to free; NULL when the
    loop does not project its input step by step (no ``wip``) or there are no biases."""
    if wip == NULL or b_ih == NULL:
        return NULL
    cdef floating* out = <floating*>malloc(GH * sizeof(floating))
    if out == NULL:
        raise MemoryError()
    _fill_bias(out, 1, GH, b_ih, b_hh, n_hh)
    return out


cdef inline void _input_all(int TB, int GH, int I, const floating* X, const floating* W_ih,
                            const floating* b_ih, const floating* b_hh, int n_hh,
                            floating* Gt) noexcept nogil:
    """Gt := X @ W_ih.T + b_ih + b_hh (b_hh on the first n_hh columns only): the input
    projection of all T*B rows at once, before the time loop."""
    if b_ih != NULL:
        _fill_bias(Gt, TB, GH, b_ih, b_hh, n_hh)
    pgemm(False, True, TB, GH, I, <floating>1, X, I, W_ih, I,
          <floating>(1 if b_ih != NULL else 0), Gt, GH)


cdef Py_ssize_t _gates_step(Py_ssize_t gt_rows, bint in_loop, bint train, Py_ssize_t T,
                            Py_ssize_t B, Py_ssize_t GH) except -1:
    """The stride of Gt from one step to the next: Gt holds every step's gates (T*B rows),
    or in inference with the projection in the loop it may be B rows that every step
    reuses."""
    if in_loop and not train and gt_rows == B:
        return 0
    if gt_rows != T * B:
        raise ValueError(f"Gt must have T*B={T * B} rows"
                         + (f" (or B={B})" if in_loop and not train else "")
                         + f", got {gt_rows}")
    return B * GH


# ---------------------------------------------------------------------------------------
# Splitting the batch across threads
#
# Batch rows are independent sequences, so the time loop of a call can run on disjoint
# row ranges [bounds[p], bounds[p+1]) in parallel, each thread with its own one-thread
# BLAS calls and no synchronisation per step.  Every array of a step is laid out by row,
# so a part only offsets its pointers by its first row; the time stride stays B rows.
# The large GEMMs before and after the loop run once, over all rows, multi-threaded.
# ---------------------------------------------------------------------------------------

cdef int _check_bounds(const int[::1] bounds, Py_ssize_t B) except -1:
    cdef Py_ssize_t p, parts = bounds.shape[0] - 1
    if parts < 1 or bounds[0] != 0 or bounds[parts] != B:
        raise ValueError(f"bounds must run from 0 to B={B}")
    for p in range(parts):
        if bounds[p + 1] < bounds[p]:
            raise ValueError("bounds must be non-decreasing")
    return 0


cdef inline Py_ssize_t _active(int nact_t, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """How many of the rows lo..hi-1 are active, given nact_t active rows in all."""
    if nact_t <= lo:
        return 0
    return (nact_t if nact_t < hi else hi) - lo


# ---------------------------------------------------------------------------------------
# Vanilla RNN:  h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh | relu
# ---------------------------------------------------------------------------------------

cdef void _rnn_forward_rows(const floating* W_hh, const floating* W_hh_t, const floating* Wp,
                            const floating* X, Py_ssize_t I, const floating* Wip,
                            const floating* sbias, Py_ssize_t gstep, const int* nact,
                            Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse, bint relu,
                            Py_ssize_t lo, Py_ssize_t hi, floating* g, floating* hs,
                            floating* y, Py_ssize_t ldy, floating* hp) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, s, t, n
    cdef floating* gt
    cdef floating* yt
    g += lo * H
    hs += lo * H
    y += lo * ldy
    if hp != NULL:
        hp += lo * H
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = _active(nact[t], lo, hi)
        gt = g + t * gstep
        yt = y + t * B * ldy
        if hp != NULL:
            memcpy(hp + t * B * H, hs, rows * H * sizeof(floating))
        if Wip != NULL:
            # 0. Gt[t] = x_t @ W_ih.T + biases: the projection, step by step
            _step_input(<int>n, <int>H, <int>I, X + (t * B + lo) * I, Wip, sbias, gt)
        # 1. Gt[t] += h @ W_hh.T
        _step_product(<int>n, <int>H, <int>H, hs, W_hh, W_hh_t, Wp, <floating>1, gt)
        # 2.-3. h = act(Gt[t])
        _rnn_act(gt, n * H, relu)
        memcpy(hs, gt, n * H * sizeof(floating))
        # 4. Y[t] = h; zeros at padded steps
        _copy_rows(gt, H, yt, ldy, n, H)
        _zero_rows(yt + n * ldy, ldy, rows - n, H)


def rnn_forward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                const floating[:, ::1] W_hh, floating[::1] b_ih, floating[::1] b_hh,
                const int[::1] nact, bint reverse, bint relu,
                floating[:, ::1] h, floating[:, :, ::1] Y, Py_ssize_t col,
                floating[:, ::1] Gt, floating[:, :, ::1] Hp, const int[::1] bounds,
                const floating[:, ::1] W_hh_t, int layout=_TRANSPOSED,
                const floating[:, ::1] W_ih_p=None):
    """RNN forward over a sequence.  Training when ``Hp`` has T rows, inference when 0.

    On exit ``Gt`` holds the activations h_t (the training cache) and ``h`` the final state.
    The time loop runs on the row ranges of ``bounds`` in parallel; ``W_hh_t`` (H, G*H),
    the transposed recurrent weight, makes each step a plain product (empty: not used),
    or with ``layout=LAYOUT_PANELS`` holds it packed by :func:`panel_pack` (float32).
    With ``W_ih_p`` (W_ih.T packed by :func:`panel_pack`, float32) each step computes its
    own input projection, just before it needs it, instead of one product over all steps
    first; in inference ``Gt`` may then have just B rows, reused by every step.
    """
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], H = h.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = Y.shape[2], p, parts = bounds.shape[0] - 1
    cdef bint train = Hp.shape[0] != 0
    _check_common(T, B, I, H, H, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(Y.shape)[:3], col)
    cdef const floating* wip = _optional_panels("W_ih_p", W_ih_p, I, H)
    _check_shape("Gt", tuple(Gt.shape)[1:2], (H,))
    cdef Py_ssize_t gstep = _gates_step(Gt.shape[0], wip != NULL, train, T, B, H)
    _check_cache("Hp", Hp, T, B, H)
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pb_ih = _bias_ptr(b_ih, H, "b_ih")
    cdef floating* pb_hh = _bias_ptr(b_hh, H, "b_hh")
    _check_bias_pair(pb_ih, pb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* hs = &h[0, 0]
    cdef floating* y = &Y[0, 0, 0] + col
    cdef floating* hp = &Hp[0, 0, 0] if train else NULL
    cdef const floating* x = &X[0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* whh_t = _transposed_ptr(W_hh_t, H, W_hh.shape[0])
    cdef const floating* wp = _panels_ptr(whh_t, layout)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef floating* sb = _step_bias(wip, pb_ih, pb_hh, H, H)
    with nogil:
        if wip == NULL:
            _input_all(<int>(T * B), <int>H, <int>I, x, &W_ih[0, 0], pb_ih, pb_hh, <int>H, g)
        if parts == 1:
            _rnn_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, na, T, B, H, reverse,
                              relu, 0, B, g, hs, y, ldy, hp)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _rnn_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, na, T, B, H, reverse,
                                  relu, bd[p], bd[p + 1], g, hs, y, ldy, hp)
        free(sb)


cdef void _rnn_backward_rows(const floating* W_hh, const floating* Wp, const int* nact,
                             Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse, bint relu,
                             Py_ssize_t lo, Py_ssize_t hi, floating* g,
                             const floating* dy, Py_ssize_t ldy, floating* dhs) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, s, t, n
    cdef floating* gt
    g += lo * H
    dy += lo * ldy
    dhs += lo * H
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = _active(nact[t], lo, hi)
        gt = g + t * B * H
        # 1. dh += dY[t]
        _add_rows(dy + t * B * ldy, ldy, dhs, H, n, H)
        # 2. dG[t] = dh * act'(h_t), in place over the cached h_t
        _rnn_grad(gt, dhs, n * H, relu)
        memset(gt + n * H, 0, (rows - n) * H * sizeof(floating))
        # 3. dh = dG[t] @ W_hh
        _back_product(<int>n, <int>H, <int>H, gt, <int>H, W_hh, Wp, <floating>0, dhs)


def rnn_backward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                 const floating[:, ::1] W_hh, const int[::1] nact, bint reverse, bint relu,
                 floating[:, ::1] Gt, const floating[:, :, ::1] Hp,
                 const floating[:, :, ::1] dY, Py_ssize_t col, floating[:, ::1] dh,
                 floating[:, ::1] dX, bint accumulate_dx, floating[:, ::1] dW_ih,
                 floating[:, ::1] dW_hh, floating[::1] db_ih, floating[::1] db_hh,
                 const int[::1] bounds, const floating[:, ::1] W_hh_p):
    """RNN backward through time.  ``dh``: dh_n on entry, dh0 on exit; ``Gt`` becomes dG.
    ``W_hh_p``: W_hh packed by :func:`panel_pack` for the per-step products (float32), or
    empty (BLAS)."""
    cdef Py_ssize_t T = nact.shape[0], B = dh.shape[0], H = dh.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = dY.shape[2], p, parts = bounds.shape[0] - 1
    _check_common(T, B, I, H, H, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(dY.shape)[:3], col)
    _check_shape("Gt", tuple(Gt.shape)[:2], (T * B, H))
    _check_shape("Hp", tuple(Hp.shape)[:3], (T, B, H))
    _check_shape("dX", tuple(dX.shape)[:2], (T * B, I))
    _check_shape("dW_ih", tuple(dW_ih.shape)[:2], (H, I))
    _check_shape("dW_hh", tuple(dW_hh.shape)[:2], (H, H))
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pdb_ih = _bias_ptr(db_ih, H, "db_ih")
    cdef floating* pdb_hh = _bias_ptr(db_hh, H, "db_hh")
    _check_bias_pair(pdb_ih, pdb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* dhs = &dh[0, 0]
    cdef const floating* dy = &dY[0, 0, 0] + col
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* wp = _optional_panels("W_hh_p", W_hh_p, H, H)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef _Grads gd = _grads_shape(T * B, H, I, H, accumulate_dx, H, H, 0)
    with nogil:
        if parts == 1:
            _rnn_backward_rows(whh, wp, na, T, B, H, reverse, relu, 0, B, g, dy, ldy, dhs)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _rnn_backward_rows(whh, wp, na, T, B, H, reverse, relu, bd[p], bd[p + 1], g, dy,
                                   ldy, dhs)
        _param_grads(&gd, g, <floating*>NULL, &X[0, 0], &W_ih[0, 0], &Hp[0, 0, 0], &dX[0, 0],
                     &dW_ih[0, 0], pdb_ih, &dW_hh[0, 0], pdb_hh)


# ---------------------------------------------------------------------------------------
# LSTM:  gates i f g o;  c' = f*c + i*g;  h' = o*tanh(c')
# ---------------------------------------------------------------------------------------

cdef void _lstm_forward_rows(const floating* W_hh, const floating* W_hh_t, const floating* Wp,
                             const floating* X, Py_ssize_t I, const floating* Wip,
                             const floating* sbias, Py_ssize_t gstep, const int* nact,
                             Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse,
                             Py_ssize_t lo, Py_ssize_t hi, floating* g, floating* hs,
                             floating* cs, floating* y, Py_ssize_t ldy, floating* hp,
                             floating* cp) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, GH = 4 * H, s, t, n
    cdef floating* gt
    cdef floating* yt
    g += lo * GH
    hs += lo * H
    cs += lo * H
    y += lo * ldy
    if hp != NULL:
        hp += lo * H
        cp += lo * H
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = _active(nact[t], lo, hi)
        gt = g + t * gstep
        yt = y + t * B * ldy
        if hp != NULL:
            memcpy(hp + t * B * H, hs, rows * H * sizeof(floating))
            memcpy(cp + t * B * H, cs, rows * H * sizeof(floating))
        if Wip != NULL:
            # 0. Gt[t] = x_t @ W_ih.T + biases: the projection, step by step
            _step_input(<int>n, <int>GH, <int>I, X + (t * B + lo) * I, Wip, sbias, gt)
        # 1. Gt[t] += h @ W_hh.T
        _step_product(<int>n, <int>GH, <int>H, hs, W_hh, W_hh_t, Wp, <floating>1, gt)
        # 2.-3. gates, c = f*c + i*g, h = o*tanh(c)
        _lstm_step(gt, hs, cs, n, H)
        # 4. Y[t] = h; zeros at padded steps
        _copy_rows(hs, H, yt, ldy, n, H)
        _zero_rows(yt + n * ldy, ldy, rows - n, H)


def same_bytes(a, b):
    """Whether two C-contiguous arrays hold the same bytes (memcmp; no dtype logic, so
    NaNs with the same bits compare equal and -0.0 differs from 0.0)."""
    cdef const unsigned char[::1] x = memoryview(a).cast("B")
    cdef const unsigned char[::1] y = memoryview(b).cast("B")
    cdef bint same
    if x.shape[0] != y.shape[0]:
        return False
    if x.shape[0] == 0:
        return True
    with nogil:
        same = memcmp(&x[0], &y[0], x.shape[0]) == 0
    return same


def lstm_pack(const float[:, ::1] W_hh, float[:, ::1] out):
    """``out`` (H, 4H) read as (H/16, H, 64): for each block b of 16 units a panel whose
    row k holds gate q of unit ``16*b + u`` at ``16*q + u`` (``W_hh[q*H + 16*b + u, k]``),
    the layout of ``lstm_forward(..., packed=True)``.  H must be a multiple of 16."""
    cdef Py_ssize_t H = W_hh.shape[1]
    if H % 16 or W_hh.shape[0] != 4 * H:
        raise ValueError(f"W_hh must be (4H, H) with H a multiple of 16, got "
                         f"{tuple(W_hh.shape)[:2]}")
    _check_shape("out", tuple(out.shape)[:2], (H, 4 * H))
    with nogil:
        fr_lstm_pack_f(&W_hh[0, 0], H, &out[0, 0])


def panel_products(value=None):
    """Get (and optionally set) whether float32 products use fastrnn's panel product where
    it applies: the per-step products of the time loops (fastrnn._engine.use_panels) and
    the products before and after them.  Default: on when the CPU has AVX-512."""
    global _panel_products
    if value is not None:
        _panel_products = bool(value)
    return _panel_products


def panel_kernels_fast():
    """Whether fastrnn's own per-step product (:func:`panel_gemm`) runs at full speed on
    this CPU (it needs AVX-512; elsewhere it is correct but BLAS is faster)."""
    return bool(fr_panel_kernels_fast())


def panel_pack(const float[:, ::1] W, float[:, ::1] out, bint transpose):
    """Pack ``B = W.T`` (``transpose``) or ``B = W`` into ``out`` for :func:`panel_gemm`
    and the kernels' ``LAYOUT_PANELS``/``W_hh_p`` arguments.  ``out`` has the shape of B,
    (K, n), and n must be a multiple of 16.  Panel P holds columns 64P.. of B, element
    (k, c) at flat index ``64*P*K + k*w + c``, w the panel's width."""
    cdef Py_ssize_t K = W.shape[0] if not transpose else W.shape[1]
    cdef Py_ssize_t n = W.shape[1] if not transpose else W.shape[0]
    if n % 16 or n == 0 or K == 0:
        raise ValueError(f"B must be (K, n) with K >= 1 and n a positive multiple of 16, "
                         f"got {(K, n)}")
    _check_shape("out", tuple(out.shape)[:2], (K, n))
    cdef long sj = W.shape[1] if transpose else 1
    cdef long sk = 1 if transpose else W.shape[1]
    with nogil:
        fr_panel_pack_f(&W[0, 0], n, K, sj, sk, &out[0, 0])


def panel_gemm(const float[:, ::1] A, const float[:, ::1] Bp, float[:, ::1] C,
               bint accumulate=False, bint trans_a=False, const float[::1] bias=None):
    """``C = op(A) @ B`` (``C += ...`` with ``accumulate``, else ``C = bias + ...`` with a
    ``bias`` of n values) with ``Bp`` = B packed by :func:`panel_pack` and op(A) = A, or
    A.T with ``trans_a``: fastrnn's own product, in the calling thread."""
    cdef Py_ssize_t m = A.shape[1 if trans_a else 0], K = A.shape[0 if trans_a else 1]
    cdef Py_ssize_t n = Bp.shape[1]
    if Bp.shape[0] != K or n % 16 or n == 0:
        raise ValueError(f"Bp must be (K={K}, n) with n a positive multiple of 16, got "
                         f"{tuple(Bp.shape)[:2]}")
    _check_shape("C", tuple(C.shape)[:2], (m, n))
    if m == 0 or K == 0:
        raise ValueError(f"A must have at least one row and one column, got {(m, K)}")
    cdef const float* pbias = NULL
    if bias is not None:
        _check_shape("bias", tuple(bias.shape)[:1], (n,))
        pbias = &bias[0]
    with nogil:
        fr_panel_gemm_f(&A[0, 0], A.shape[1], trans_a, m, K, &Bp[0, 0], n, &C[0, 0], n,
                        accumulate, pbias)


def lstm_forward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                 const floating[:, ::1] W_hh, floating[::1] b_ih, floating[::1] b_hh,
                 const int[::1] nact, bint reverse,
                 floating[:, ::1] h, floating[:, ::1] c, floating[:, :, ::1] Y, Py_ssize_t col,
                 floating[:, ::1] Gt, floating[:, :, ::1] Hp, floating[:, :, ::1] Cp,
                 const int[::1] bounds, const floating[:, ::1] W_hh_t,
                 int layout=_TRANSPOSED, const floating[:, ::1] W_ih_p=None):
    """LSTM forward over a sequence.  Training when ``Hp``/``Cp`` have T rows, inference when 0.

    On exit ``Gt`` holds the gate activations (i, f, g, o) and ``h``, ``c`` the final state.
    The time loop runs on the row ranges of ``bounds`` in parallel; ``W_hh_t`` (H, G*H),
    the transposed recurrent weight, makes each step a plain product (empty: not used).
    With ``layout=LAYOUT_PANELS`` it holds W_hh.T packed by :func:`panel_pack` (float32).
    With ``layout=LAYOUT_LSTM_ROW`` it is :func:`lstm_pack`'s layout and the one batch row
    (float32, B = 1) runs the fused one-row loop of ``fr_lstm_row_f``.
    With ``W_ih_p`` (W_ih.T packed by :func:`panel_pack`, float32) each step computes its
    own input projection, just before it needs it, instead of one product over all steps
    first; in inference ``Gt`` may then have just B rows, reused by every step.
    """
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], H = h.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = Y.shape[2], GH = 4 * H, p, parts = bounds.shape[0] - 1
    cdef bint train = Hp.shape[0] != 0
    _check_common(T, B, I, H, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(Y.shape)[:3], col)
    _check_shape("c", tuple(c.shape)[:2], (B, H))
    cdef const floating* wip = _optional_panels("W_ih_p", W_ih_p, I, GH)
    _check_shape("Gt", tuple(Gt.shape)[1:2], (GH,))
    cdef Py_ssize_t gstep = _gates_step(Gt.shape[0], wip != NULL, train, T, B, GH)
    _check_cache("Hp", Hp, T, B, H)
    _check_cache("Cp", Cp, T, B, H)
    if train != (Cp.shape[0] != 0):
        raise ValueError("Hp and Cp must both be given (training) or both be empty")
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pb_ih = _bias_ptr(b_ih, GH, "b_ih")
    cdef floating* pb_hh = _bias_ptr(b_hh, GH, "b_hh")
    _check_bias_pair(pb_ih, pb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* hs = &h[0, 0]
    cdef floating* cs = &c[0, 0]
    cdef floating* y = &Y[0, 0, 0] + col
    cdef floating* hp = &Hp[0, 0, 0] if train else NULL
    cdef floating* cp = &Cp[0, 0, 0] if train else NULL
    cdef const floating* x = &X[0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* whh_t = _transposed_ptr(W_hh_t, H, W_hh.shape[0])
    cdef const floating* wp = NULL
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef float* work = NULL
    cdef bint packed = layout == _LSTM_ROW
    if not packed:
        wp = _panels_ptr(whh_t, layout)
    else:
        if sizeof(floating) != sizeof(float):
            raise ValueError("packed weights are float32 only")
        if B != 1 or H % 16 or whh_t == NULL or wip != NULL:
            raise ValueError("packed weights need one batch row, H a multiple of 16, "
                             "W_hh_t of shape (H, 4H) and no W_ih_p")
        work = <float*>malloc(2 * H * sizeof(float))
        if work == NULL:
            raise MemoryError()
    cdef floating* sb = _step_bias(wip, pb_ih, pb_hh, GH, GH)   # NULL when packed
    with nogil:
        if wip == NULL:
            _input_all(<int>(T * B), <int>GH, <int>I, x, &W_ih[0, 0], pb_ih, pb_hh, <int>GH,
                       g)
        if packed:
            if floating is float:
                fr_lstm_row_f(whh_t, H, na, T, reverse, g, GH, hs, cs, y, ldy, hp, cp, H,
                              work)
            free(work)
        elif parts == 1:
            _lstm_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, na, T, B, H, reverse, 0,
                               B, g, hs, cs, y, ldy, hp, cp)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _lstm_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, na, T, B, H, reverse,
                                   bd[p], bd[p + 1], g, hs, cs, y, ldy, hp, cp)
        free(sb)


cdef void _lstm_backward_rows(const floating* W_hh, const floating* Wp, const int* nact,
                              Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse, Py_ssize_t lo,
                              Py_ssize_t hi, floating* g, const floating* cp,
                              const floating* dy, Py_ssize_t ldy, floating* dhs,
                              floating* dcs) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, GH = 4 * H, s, t, n
    cdef floating* gt
    g += lo * GH
    cp += lo * H
    dy += lo * ldy
    dhs += lo * H
    dcs += lo * H
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = _active(nact[t], lo, hi)
        gt = g + t * B * GH
        # 1. dh += dY[t]
        _add_rows(dy + t * B * ldy, ldy, dhs, H, n, H)
        # 2. dG[t], dc = dc_prev
        _lstm_grad(gt, cp + t * B * H, dhs, dcs, n, H)
        memset(gt + n * GH, 0, (rows - n) * GH * sizeof(floating))
        # 3. dh = dG[t] @ W_hh
        _back_product(<int>n, <int>GH, <int>H, gt, <int>GH, W_hh, Wp, <floating>0, dhs)


def lstm_backward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                  const floating[:, ::1] W_hh, const int[::1] nact, bint reverse,
                  floating[:, ::1] Gt, const floating[:, :, ::1] Hp,
                  const floating[:, :, ::1] Cp, const floating[:, :, ::1] dY, Py_ssize_t col,
                  floating[:, ::1] dh, floating[:, ::1] dc,
                  floating[:, ::1] dX, bint accumulate_dx, floating[:, ::1] dW_ih,
                  floating[:, ::1] dW_hh, floating[::1] db_ih, floating[::1] db_hh,
                  const int[::1] bounds, const floating[:, ::1] W_hh_p):
    """LSTM backward through time.  ``dh``, ``dc``: dh_n, dc_n on entry, dh0, dc0 on exit.
    ``W_hh_p``: W_hh packed by :func:`panel_pack` for the per-step products (float32), or
    empty (BLAS)."""
    cdef Py_ssize_t T = nact.shape[0], B = dh.shape[0], H = dh.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = dY.shape[2], GH = 4 * H, p, parts = bounds.shape[0] - 1
    _check_common(T, B, I, H, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(dY.shape)[:3], col)
    _check_shape("dc", tuple(dc.shape)[:2], (B, H))
    _check_shape("Gt", tuple(Gt.shape)[:2], (T * B, GH))
    _check_shape("Hp", tuple(Hp.shape)[:3], (T, B, H))
    _check_shape("Cp", tuple(Cp.shape)[:3], (T, B, H))
    _check_shape("dX", tuple(dX.shape)[:2], (T * B, I))
    _check_shape("dW_ih", tuple(dW_ih.shape)[:2], (GH, I))
    _check_shape("dW_hh", tuple(dW_hh.shape)[:2], (GH, H))
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pdb_ih = _bias_ptr(db_ih, GH, "db_ih")
    cdef floating* pdb_hh = _bias_ptr(db_hh, GH, "db_hh")
    _check_bias_pair(pdb_ih, pdb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* dhs = &dh[0, 0]
    cdef floating* dcs = &dc[0, 0]
    cdef const floating* dy = &dY[0, 0, 0] + col
    cdef const floating* cp = &Cp[0, 0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* wp = _optional_panels("W_hh_p", W_hh_p, GH, H)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef _Grads gd = _grads_shape(T * B, GH, I, H, accumulate_dx, GH, GH, 0)
    with nogil:
        if parts == 1:
            _lstm_backward_rows(whh, wp, na, T, B, H, reverse, 0, B, g, cp, dy, ldy, dhs, dcs)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _lstm_backward_rows(whh, wp, na, T, B, H, reverse, bd[p], bd[p + 1], g, cp, dy,
                                    ldy, dhs, dcs)
        _param_grads(&gd, g, <floating*>NULL, &X[0, 0], &W_ih[0, 0], &Hp[0, 0, 0], &dX[0, 0],
                     &dW_ih[0, 0], pdb_ih, &dW_hh[0, 0], pdb_hh)


# ---------------------------------------------------------------------------------------
# GRU:  gates r z n;  n = tanh(W_in x + b_in + r*(W_hn h + b_hn));  h' = (1-z)*n + z*h
# ---------------------------------------------------------------------------------------

cdef void _gru_forward_rows(const floating* W_hh, const floating* W_hh_t,
                            const floating* Wp,
                            const floating* X, Py_ssize_t I, const floating* Wip,
                            const floating* sbias, Py_ssize_t gstep,
                            const floating* b_hn, const int* nact,
                            Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse,
                            Py_ssize_t lo, Py_ssize_t hi, floating* g, floating* gh,
                            floating* hs, floating* y, Py_ssize_t ldy, floating* hp,
                            floating* hn) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, GH = 3 * H, s, t, n
    cdef floating* gt
    cdef floating* yt
    g += lo * GH
    gh += lo * GH
    hs += lo * H
    y += lo * ldy
    if hp != NULL:
        hp += lo * H
        hn += lo * H
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = _active(nact[t], lo, hi)
        gt = g + t * gstep
        yt = y + t * B * ldy
        if hp != NULL:
            memcpy(hp + t * B * H, hs, rows * H * sizeof(floating))
        if Wip != NULL:
            # 0. Gt[t] = x_t @ W_ih.T + biases (b_hn stays inside r*(...)), step by step
            _step_input(<int>n, <int>GH, <int>I, X + (t * B + lo) * I, Wip, sbias, gt)
        # 1. Gh = h @ W_hh.T
        _step_product(<int>n, <int>GH, <int>H, hs, W_hh, W_hh_t, Wp, <floating>0, gh)
        # 2.-3. gates and h
        _gru_step(gt, gh, b_hn, hs, hn + t * B * H if hp != NULL else NULL, n, H)
        # 4. Y[t] = h; zeros at padded steps
        _copy_rows(hs, H, yt, ldy, n, H)
        _zero_rows(yt + n * ldy, ldy, rows - n, H)


def gru_forward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                const floating[:, ::1] W_hh, floating[::1] b_ih, floating[::1] b_hh,
                const int[::1] nact, bint reverse,
                floating[:, ::1] h, floating[:, :, ::1] Y, Py_ssize_t col,
                floating[:, ::1] Gt, floating[:, ::1] Gh,
                floating[:, :, ::1] Hp, floating[:, :, ::1] Hn, const int[::1] bounds,
                const floating[:, ::1] W_hh_t, int layout=_TRANSPOSED,
                const floating[:, ::1] W_ih_p=None):
    """GRU forward over a sequence.  Training when ``Hp``/``Hn`` have T rows, inference when 0.

    ``Gh`` (B, 3H) is per-step workspace.  On exit ``Gt`` holds the gates (r, z, n).
    The time loop runs on the row ranges of ``bounds`` in parallel; ``W_hh_t`` (H, G*H),
    the transposed recurrent weight, makes each step a plain product (empty: not used),
    or with ``layout=LAYOUT_PANELS`` holds it packed by :func:`panel_pack` (float32).
    With ``W_ih_p`` (W_ih.T packed by :func:`panel_pack`, float32) each step computes its
    own input projection, just before it needs it, instead of one product over all steps
    first; in inference ``Gt`` may then have just B rows, reused by every step.
    """
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], H = h.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = Y.shape[2], GH = 3 * H, p, parts = bounds.shape[0] - 1
    cdef bint train = Hp.shape[0] != 0
    _check_common(T, B, I, H, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(Y.shape)[:3], col)
    cdef const floating* wip = _optional_panels("W_ih_p", W_ih_p, I, GH)
    _check_shape("Gt", tuple(Gt.shape)[1:2], (GH,))
    cdef Py_ssize_t gstep = _gates_step(Gt.shape[0], wip != NULL, train, T, B, GH)
    _check_shape("Gh", tuple(Gh.shape)[:2], (B, GH))
    _check_cache("Hp", Hp, T, B, H)
    _check_cache("Hn", Hn, T, B, H)
    if train != (Hn.shape[0] != 0):
        raise ValueError("Hp and Hn must both be given (training) or both be empty")
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pb_ih = _bias_ptr(b_ih, GH, "b_ih")
    cdef floating* pb_hh = _bias_ptr(b_hh, GH, "b_hh")
    _check_bias_pair(pb_ih, pb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* gh = &Gh[0, 0]
    cdef floating* hs = &h[0, 0]
    cdef floating* y = &Y[0, 0, 0] + col
    cdef floating* hp = &Hp[0, 0, 0] if train else NULL
    cdef floating* hn = &Hn[0, 0, 0] if train else NULL
    cdef const floating* b_hn = pb_hh + 2 * H if pb_hh != NULL else NULL
    cdef const floating* x = &X[0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* whh_t = _transposed_ptr(W_hh_t, H, W_hh.shape[0])
    cdef const floating* wp = _panels_ptr(whh_t, layout)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    # b_hn stays inside r*(...): b_hh on the r and z columns only
    cdef floating* sb = _step_bias(wip, pb_ih, pb_hh, GH, 2 * H)
    with nogil:
        if wip == NULL:
            _input_all(<int>(T * B), <int>GH, <int>I, x, &W_ih[0, 0], pb_ih, pb_hh,
                       <int>(2 * H), g)
        if parts == 1:
            _gru_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, b_hn, na, T, B, H, reverse,
                              0, B, g, gh, hs, y, ldy, hp, hn)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _gru_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, b_hn, na, T, B, H,
                                  reverse, bd[p], bd[p + 1], g, gh, hs, y, ldy, hp, hn)
        free(sb)


cdef void _gru_backward_rows(const floating* W_hh, const floating* Wp, const int* nact,
                             Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse, Py_ssize_t lo,
                             Py_ssize_t hi, floating* g, floating* dgh, floating* hn,
                             const floating* hp, const floating* dy, Py_ssize_t ldy,
                             floating* dhs) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, GH = 3 * H, s, t, n
    cdef floating* gt
    g += lo * GH
    dgh += lo * GH
    hn += lo * H
    hp += lo * H
    dy += lo * ldy
    dhs += lo * H
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = _active(nact[t], lo, hi)
        gt = g + t * B * GH
        # 1. dh += dY[t]
        _add_rows(dy + t * B * ldy, ldy, dhs, H, n, H)
        # 2. dG[t], dHn[t], dGh; dh = dh * z
        _gru_grad(gt, hn + t * B * H, dgh, hp + t * B * H, dhs, n, H)
        memset(gt + n * GH, 0, (rows - n) * GH * sizeof(floating))
        memset(hn + t * B * H + n * H, 0, (rows - n) * H * sizeof(floating))
        # 3. dh += dGh @ W_hh
        _back_product(<int>n, <int>GH, <int>H, dgh, <int>GH, W_hh, Wp, <floating>1, dhs)


def gru_backward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                 const floating[:, ::1] W_hh, const int[::1] nact, bint reverse,
                 floating[:, ::1] Gt, floating[:, ::1] Gh, const floating[:, :, ::1] Hp,
                 floating[:, :, ::1] Hn, const floating[:, :, ::1] dY, Py_ssize_t col,
                 floating[:, ::1] dh, floating[:, ::1] dX, bint accumulate_dx,
                 floating[:, ::1] dW_ih, floating[:, ::1] dW_hh,
                 floating[::1] db_ih, floating[::1] db_hh, const int[::1] bounds,
                 const floating[:, ::1] W_hh_p):
    """GRU backward through time.  ``dh``: dh_n on entry, dh0 on exit.

    ``Gt`` becomes dG (input side), ``Hn`` becomes dHn, ``Gh`` (B, 3H) is workspace.
    ``W_hh_p``: W_hh packed by :func:`panel_pack` for the per-step products (float32), or
    empty (BLAS).
    """
    cdef Py_ssize_t T = nact.shape[0], B = dh.shape[0], H = dh.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = dY.shape[2], GH = 3 * H, p, parts = bounds.shape[0] - 1
    _check_common(T, B, I, H, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(dY.shape)[:3], col)
    _check_shape("Gt", tuple(Gt.shape)[:2], (T * B, GH))
    _check_shape("Gh", tuple(Gh.shape)[:2], (B, GH))
    _check_shape("Hp", tuple(Hp.shape)[:3], (T, B, H))
    _check_shape("Hn", tuple(Hn.shape)[:3], (T, B, H))
    _check_shape("dX", tuple(dX.shape)[:2], (T * B, I))
    _check_shape("dW_ih", tuple(dW_ih.shape)[:2], (GH, I))
    _check_shape("dW_hh", tuple(dW_hh.shape)[:2], (GH, H))
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pdb_ih = _bias_ptr(db_ih, GH, "db_ih")
    cdef floating* pdb_hh = _bias_ptr(db_hh, GH, "db_hh")
    _check_bias_pair(pdb_ih, pdb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* dgh = &Gh[0, 0]
    cdef floating* hn = &Hn[0, 0, 0]
    cdef floating* dhs = &dh[0, 0]
    cdef const floating* dy = &dY[0, 0, 0] + col
    cdef const floating* hp = &Hp[0, 0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* wp = _optional_panels("W_hh_p", W_hh_p, GH, H)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef _Grads gd = _grads_shape(T * B, GH, I, H, accumulate_dx, 2 * H, GH, H)
    with nogil:
        if parts == 1:
            _gru_backward_rows(whh, wp, na, T, B, H, reverse, 0, B, g, dgh, hn, hp, dy, ldy,
                               dhs)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _gru_backward_rows(whh, wp, na, T, B, H, reverse, bd[p], bd[p + 1], g, dgh, hn,
                                   hp, dy, ldy, dhs)
        # dW_hh[:2H] += dG[:, :2H].T @ Hp;  dW_hh[2H:] += dHn.T @ Hp
        _param_grads(&gd, g, hn, &X[0, 0], &W_ih[0, 0], hp, &dX[0, 0], &dW_ih[0, 0], pdb_ih,
                     &dW_hh[0, 0], pdb_hh)


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
    cdef _Grads gd = _grads_shape(T * B, GH, I, H, False, GH, GH, 0)
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
            _param_grads(&gd, g, <floating*>NULL, &X[0, 0], &W_ih[0, 0], &Hp[0, 0], &dX[0, 0],
                         &dW_ih[0, 0], NULL, &dW_hh[0, 0], NULL)


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


cdef void _step_impl(int mode, bint relu, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                     const floating* x, const floating* W_ih, const floating* W_hh,
                     const floating* b_ih, const floating* b_hh, floating* h, floating* c,
                     floating* g, floating* gh) noexcept nogil:
    cdef Py_ssize_t GH = (1 if mode == 0 else (4 if mode == 1 else 3)) * H
    # Gt = x @ W_ih.T + b_ih + b_hh   (GRU: b_hn stays inside r*(...))
    if b_ih != NULL:
        _fill_bias(g, B, GH, b_ih, b_hh, 2 * H if mode == 2 else GH)
    gemm(False, True, <int>B, <int>GH, <int>I, <floating>1, x, <int>I, W_ih, <int>I,
         <floating>(1 if b_ih != NULL else 0), g, <int>GH)
    if mode == 2:
        gemm(False, True, <int>B, <int>GH, <int>H, <floating>1, h, <int>H, W_hh, <int>H,
             <floating>0, gh, <int>GH)
        _gru_step(g, gh, b_hh + 2 * H if b_hh != NULL else NULL, h, <floating*>NULL, B, H)
        return
    gemm(False, True, <int>B, <int>GH, <int>H, <floating>1, h, <int>H, W_hh, <int>H,
         <floating>1, g, <int>GH)
    if mode == 1:
        _lstm_step(g, h, c, B, H)
    else:
        _rnn_act(g, B * H, relu)
        memcpy(h, g, B * H * sizeof(floating))


cdef int _run_step(int mode, bint relu, int typenum, Py_ssize_t B, Py_ssize_t I,
                   Py_ssize_t H, object W_ih, object W_hh, object b_ih, object b_hh,
                   void* px, void* ph, void* pc, void* pg, void* pgh) except -1:
    """Check the weights of one step (dtype ``typenum``, PyTorch's shapes, both biases or
    neither) and run :func:`_step_impl` in that dtype, without the GIL."""
    cdef Py_ssize_t GH = (1 if mode == 0 else (4 if mode == 1 else 3)) * H
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
    the previous state to the new one.  ``mode`` 0 RNN, 1 LSTM, 2 GRU; ``gates`` (B, G*H)
    and, for a GRU, ``gh`` (B, 3H) are workspace; empty biases mean none; ``c`` is used
    by the LSTM only (empty otherwise)."""
    cdef cnp.ndarray xa
    cdef int typenum
    cdef Py_ssize_t B, I, H, GH
    if mode < 0 or mode > 2:
        raise ValueError(f"mode must be 0, 1 or 2, got {mode}")
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
    GH = (1 if mode == 0 else (4 if mode == 1 else 3)) * H
    if B < 1 or I < 1 or H < 1:
        raise ValueError("sizes must be positive")
    _check_array(x, "x", typenum, B, I)
    _check_array(h, "h", typenum, B, H)
    _check_array(gates, "gates", typenum, B, GH)
    if mode == 1:
        _check_array(c, "c", typenum, B, H)
    if mode == 2:
        _check_array(gh, "gh", typenum, B, 3 * H)
    _run_step(mode, relu, typenum, B, I, H, W_ih, W_hh, b_ih, b_hh,
              cnp.PyArray_DATA(xa), cnp.PyArray_DATA(<cnp.ndarray>h),
              cnp.PyArray_DATA(<cnp.ndarray>c) if mode == 1 else NULL,
              cnp.PyArray_DATA(<cnp.ndarray>gates),
              cnp.PyArray_DATA(<cnp.ndarray>gh) if mode == 2 else NULL)


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
    if mode < 0 or mode > 2:
        raise ValueError(f"mode must be 0, 1 or 2, got {mode}")
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
    GH = (1 if mode == 0 else (4 if mode == 1 else 3)) * H
    if B < 1 or H < 1 or I != (cnp.PyArray_DIM(<cnp.ndarray>W_ih, 1)
                               if cnp.PyArray_NDIM(<cnp.ndarray>W_ih) == 2 else -1):
        return None
    if nd == 1:
        dims[0] = H
    else:
        dims[0], dims[1] = B, H
    if state is not None:
        if mode == 1:
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
    if mode == 1:
        c_new = cnp.PyArray_EMPTY(nd, dims, typenum, 0)
        if c0 is None:
            memset(cnp.PyArray_DATA(c_new), 0, nbytes)
        else:
            memcpy(cnp.PyArray_DATA(c_new), cnp.PyArray_DATA(<cnp.ndarray>c0), nbytes)
    work = malloc(B * (GH + (3 * H if mode == 2 else 0)) * item)
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
