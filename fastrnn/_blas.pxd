# cython: language_level=3
"""The typed BLAS layer of fastrnn (fastrnn/_blas.pyx): what the kernels cimport.

Every matrix product of the kernels goes through these wrappers, which own the
row-major <-> column-major mapping and pick sgemm/dgemm at compile time
(``floating is float``).  :func:`gemm` and :func:`pgemm` are inline, so they compile into
each module that uses them as they did when they lived beside the kernels; the functions
that read or write this layer's settings (threads, size limits, the panel product) are
defined in _blas.pyx, where that state lives, and called through the module's C API.
"""

from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv

cdef extern from "_panel.h" nogil:
    int fr_panel_kernels_fast()
    void fr_panel_pack_f(const float* src, long n, long K, long sj, long sk, float* out)
    void fr_panel_gemm_f(const float* A, long lda, int ta, long m, long K, const float* Bp,
                         long n, float* C, long ldc, int accumulate, const float* bias)


# ---------------------------------------------------------------------------------------
# Threads and sizes (the state is in _blas.pyx)
# ---------------------------------------------------------------------------------------

cdef int _team(int threads) noexcept nogil
cdef int _threads() noexcept nogil
cdef double _side_by_side() noexcept nogil
cdef double _shared_product_bytes() noexcept nogil
cdef int _parts(int m, int n, int k) noexcept nogil


# ---------------------------------------------------------------------------------------
# The products
# ---------------------------------------------------------------------------------------

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


cdef void _pgemm_parts(int parts, bint trans_a, bint trans_b, int m, int n, int k,
                       floating alpha, const floating* A, int lda, const floating* B, int ldb,
                       floating beta, floating* C, int ldc) noexcept nogil


cdef inline void pgemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                       const floating* A, int lda, const floating* B, int ldb,
                       floating beta, floating* C, int ldc) noexcept nogil:
    """:func:`gemm` with the m rows of C split across threads when the product is large;
    in float, with fastrnn's panel product where it applies (see _panel_pgemm)."""
    _pgemm_parts(_parts(m, n, k), trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                 ldc)


cdef void gemm_rows(bint trans_b, int m, int n, int k, const floating* A, int lda,
                    const floating* B, int ldb, floating beta, floating* C,
                    int ldc) noexcept nogil


# ---------------------------------------------------------------------------------------
# Argument checks shared by the compiled modules (with the GIL)
# ---------------------------------------------------------------------------------------

cdef int _check_index(str what, Py_ssize_t value) except -1
cdef int _check_shape(str name, tuple actual, tuple expected) except -1
