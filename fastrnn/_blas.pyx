# cython: language_level=3
"""The typed BLAS layer of fastrnn: the wrappers every product of the kernels goes through,
the panel product's dispatch, the threads and the size settings.

The wrappers themselves (:func:`gemm`, :func:`pgemm`, :func:`gemm_rows`, the checks) are
declared in fastrnn/_blas.pxd, which the other compiled modules cimport; the state they
read (threads, size limits, whether the panel product is on) lives here only, and the
``def`` functions below get and set it.  ``blas_gemm``, ``transpose``, ``panel_pack`` and
``panel_gemm`` are the Python entries (and test hooks) of the products.
"""

from cython.parallel cimport prange
from libc.stdlib cimport free

cdef extern from "_adam.h" nogil:
    void fr_adam_f(float* p, const float* grad, float* m, float* v, long n, float w,
                   int lerp_high, float beta2, float one_minus_beta2, float sqrt_bc2,
                   float eps, float neg_step)
    void fr_adam_d(double* p, const double* grad, double* m, double* v, long n, double w,
                   int lerp_high, double beta2, double one_minus_beta2, double sqrt_bc2,
                   double eps, double neg_step)

cdef extern from "<stdlib.h>" nogil:
    void* aligned_alloc(size_t alignment, size_t size)

from fastrnn._b16 cimport (_isa_name, _set_isa_cap, fr_b16, fr_b16_gemm, fr_b16_isa,
                           fr_b16_isa_detected, fr_b16_kp, fr_b16_pack,
                           fr_b16_packed_size, fr_b16_rows)

# ---------------------------------------------------------------------------------------
# Threads and the size from which a product is split across them
# ---------------------------------------------------------------------------------------

# Threads.  fastrnn parallelises its own work with OpenMP and keeps scipy's BLAS on one
# thread (fastrnn._runtime sets it).  Large products split the rows of their result across
# the threads; the time loops split the batch (see row_bounds in fastrnn/_engine.py).
# The thresholds here and below start at the values fastrnn/_tuning.py sets on import,
# which says why each is what it is.
#
# How many: the process-wide default (set_num_threads), unless the calling thread is inside
# a ``fastrnn.threads(k)`` block, whose limit is thread-local (C thread-local storage, so a
# kernel reads it without the GIL).  A kernel reads them once per product it splits
# (fr_threads: one thread-local load and one global load), never per step.
# fastrnn_num_threads is exported, unmangled, for threadpoolctl to recognise this library
# (fastrnn/_threadpool.py).
cdef extern from *:
    """
    static int fr_default_threads = 1;          /* set_num_threads: every thread */
    static __thread int fr_local_threads = 0;   /* fastrnn.threads(k) here; 0: none */
    static inline int fr_threads(void) {
        int local = fr_local_threads;
        return local > 0 ? local : fr_default_threads;
    }
    static inline int fr_local(void) { return fr_local_threads; }
    static inline void fr_set_local(int n) { fr_local_threads = n; }
    static inline void fr_set_default(int n) { fr_default_threads = n; }
    __attribute__((visibility("default"))) int fastrnn_num_threads(void) {
        return fr_default_threads;
    }
    """
    int fr_threads() noexcept nogil
    int fr_local() noexcept nogil
    void fr_set_local(int n) noexcept nogil
    void fr_set_default(int n) noexcept nogil
    int fastrnn_num_threads() noexcept nogil

cdef double _par_min_flops = 2e7            # _tuning.PARALLEL_MIN_FLOPS

# libgomp keeps the threads of a parallel region in a pool for the next one, and a forked
# child inherits the pool's bookkeeping but not its threads: its first region of more than
# one thread waits for them forever.  So every region starts through _team, which notes
# that the pool exists, and after a fork the child runs its kernels on one thread.
cdef bint _teams_started = False
cdef bint _forked_serial = False


cdef int _team(int threads) noexcept nogil:
    """``threads``, for the num_threads of a parallel region: notes the pool."""
    global _teams_started
    if threads > 1:
        _teams_started = True
    return threads


cdef int _threads() noexcept nogil:
    """The most threads a kernel called from this thread uses (what
    :func:`get_num_threads` returns)."""
    return fr_threads()


cdef int _positive(int n) except -1:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return 1 if _forked_serial else n


def set_num_threads(int n):
    """Use at most ``n`` threads in the kernels of every thread without a limit of its own
    (1 in a child forked after the parent ran a parallel region)."""
    fr_set_default(_positive(n))


def get_num_threads():
    """The most threads a kernel called from this thread uses: its own limit
    (:func:`set_thread_limit`) if it has one, else the process-wide value."""
    return fr_threads()


def process_num_threads():
    """The process-wide value of :func:`set_num_threads`, whatever this thread's limit."""
    return fastrnn_num_threads()


def set_thread_limit(int n):
    """Limit the kernels called from this thread to ``n`` threads (0: no limit of its own,
    the process-wide value applies); returns the previous limit (0 for none).  Other
    threads are unaffected.  1 in a child forked after the parent ran a parallel region."""
    cdef int previous = fr_local()
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fr_set_local(0 if n == 0 else _positive(n))
    return previous


def thread_limit():
    """This thread's own limit (:func:`set_thread_limit`), 0 for none."""
    return fr_local()


def after_fork_in_child():
    """Called in a forked child: one thread from now on if the parent's pool existed.
    Returns whether the child was limited."""
    global _forked_serial
    if _teams_started:
        _forked_serial = True
        fr_set_default(1)
        if fr_local() > 1:          # forked inside a fastrnn.threads block
            fr_set_local(1)
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


cdef double _setting(double* slot, value) except -1:
    """Set ``slot`` to the size setting ``value`` unless None; its value."""
    if value is not None:
        slot[0] = _size_setting(value)
    return slot[0]


def parallel_min_flops(value=None):
    """Get (and optionally set) the size, in floating-point operations, from which a product
    is split across threads."""
    return _setting(&_par_min_flops, value)


cdef int _parts(int m, int n, int k) noexcept nogil:
    """How many threads share the m rows of a product."""
    cdef int parts = fr_threads()
    if parts > m // 8:
        parts = m // 8
    if parts < 1 or 2.0 * m * n * k < _par_min_flops:
        return 1
    return parts


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
# op(B) is packed once (a copy the size of B), then the row parts run the panel kernel;
# where it beats BLAS: _tuning.PANEL_MIN_ROWS, PANEL_TA_MAX_ROWS, PANEL_MAX_BYTES.
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
        # on a 64-byte boundary: the kernel's vector loads then never split a cache line
        Bp = <float*>aligned_alloc(64, (<size_t>k * n * sizeof(float) + 63) // 64 * 64)
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


# The per-step products run in blocks of rows of at most this M*N*K (gemm_rows), the
# size below which OpenBLAS skips packing its operands (_tuning.SMALL_PRODUCT_SIZE).
cdef double _small_mnk = 1048575


def small_product_size(value=None):
    """Get (and optionally set) the largest M*N*K of one per-step BLAS call; 0 disables the
    blocking."""
    return _setting(&_small_mnk, value)


cdef void gemm_rows(bint trans_b, int m, int n, int k, const floating* A, int lda,
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


# The products after a backward loop (see _param_grads in fastrnn/_core.pyx) run side by
# side, one per thread, below this many flops, and one after another, each split across
# the threads, from it on (_tuning.GRADS_SIDE_BY_SIDE_FLOPS).
cdef double _side_by_side_flops = 1.6e8


def grads_side_by_side_flops(value=None):
    """Get (and optionally set) the size (flops of the four products) below which the
    products after a backward loop run side by side, one per thread; 0: never."""
    return _setting(&_side_by_side_flops, value)


cdef double _side_by_side() noexcept nogil:
    """The size below which the products after a backward loop run side by side."""
    return _side_by_side_flops


# The threads of a time loop share each step's products where the packed weights a step
# reads take this many bytes or more (fastrnn/_core.pyx; _tuning.SHARED_PRODUCT_BYTES).
cdef double _shared_bytes = 4.0 * 1024 * 1024


def shared_product_bytes(value=None):
    """Get (and optionally set) the size of the packed weights a step's products read, in
    bytes, from which the threads of a time loop share each step's products (each
    computes some columns for all rows) instead of each multiplying its own rows by all of
    them; 0: always, where the loop can."""
    return _setting(&_shared_bytes, value)


cdef double _shared_product_bytes() noexcept nogil:
    """The weights' size from which a time loop's threads share each step's products."""
    return _shared_bytes


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


cdef int _check_shape(str name, tuple actual, tuple expected) except -1:
    if actual != expected:
        raise ValueError(f"{name} must have shape {expected}, got {actual}")
    return 0


# ---------------------------------------------------------------------------------------
# The panel product: its setting and its Python entries
# ---------------------------------------------------------------------------------------

def panel_products(value=None):
    """Get (and optionally set) whether float32 products use fastrnn's panel product where
    it applies: the per-step products of the time loops (fastrnn._engine.use_panels) and
    the products before and after them.  Default: on when the CPU has AVX-512."""
    global _panel_products
    if value is not None:
        _panel_products = bool(value)
    return _panel_products


def panel_limits(min_rows=None, ta_max_rows=None, max_bytes=None):
    """Get (and optionally set) where the products before and after the time loops use the
    panel product: ``(min_rows, ta_max_rows, max_bytes)``, the fewest rows of C, the most
    rows of a product with op(A) = A.T (the weight gradients), and the largest packed copy
    of op(B) in bytes."""
    global _panel_min_rows, _panel_ta_max_rows, _panel_max_bytes
    cdef double rows = _panel_min_rows if min_rows is None else _size_setting(min_rows)
    cdef double ta = _panel_ta_max_rows if ta_max_rows is None else _size_setting(ta_max_rows)
    if rows > 2147483647 or ta > 2147483647:
        raise ValueError("min_rows and ta_max_rows must be at most 2**31 - 1")
    if max_bytes is not None:
        _panel_max_bytes = _size_setting(max_bytes)
    _panel_min_rows, _panel_ta_max_rows = <int>rows, <int>ta
    return (_panel_min_rows, _panel_ta_max_rows, _panel_max_bytes)


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



# ---------------------------------------------------------------------------------------
# The scatter of a row lookup's gradient
# ---------------------------------------------------------------------------------------

def scatter_add_rows(const Py_ssize_t[::1] index, const floating[:, ::1] rows,
                     floating[:, ::1] out):
    """``out[index[i]] += rows[i]`` for i = 0, 1, ... in that order: ``numpy.add.at(out,
    index, rows)``, the same sums in the same order (so the same bits), without its
    dispatch per element.  The gradient of a row lookup (an Embedding's weight).  Every
    index must lie in [0, len(out)); ``rows`` (n, F) and ``out`` (V, F)."""
    cdef Py_ssize_t n = index.shape[0], F = rows.shape[1], V = out.shape[0], i, j, r
    cdef Py_ssize_t bad = -1
    if rows.shape[0] != n or out.shape[1] != F:
        raise ValueError(f"rows must be ({n}, F) and out (V, F), got {tuple(rows.shape)[:2]} "
                         f"and {tuple(out.shape)[:2]}")
    with nogil:
        for i in range(n):
            r = index[i]
            if r < 0 or r >= V:
                bad = i
                break
            for j in range(F):
                out[r, j] += rows[i, j]
    if bad >= 0:
        raise ValueError(f"index[{bad}] = {index[bad]} lies outside [0, {V})")


# ---------------------------------------------------------------------------------------
# bfloat16 products (fastrnn/_b16.h): the ISA cap of this module and the test hooks
# ---------------------------------------------------------------------------------------

def set_isa_cap(name=None):
    """Cap the instruction set this module's bf16 products use at ``name`` ("baseline",
    "avx512", "avx512_vnni", "avx512_bf16", "amx"), or lift the cap (None), to run every
    lower path on this CPU (_core.set_isa_cap caps the kernels' own copy)."""
    _set_isa_cap(name)


def isa():
    """The instruction set this module's bf16 products use: the detected one, capped."""
    return _isa_name(fr_b16_isa())


def isa_detected():
    """The instruction set the running CPU (and operating system) allows, uncapped."""
    return _isa_name(fr_b16_isa_detected())


def b16_kp(Py_ssize_t K):
    """K rounded up to a multiple of 32: the width of a converted row of K values."""
    return fr_b16_kp(K)


def b16_packed_size(Py_ssize_t K, Py_ssize_t n):
    """The bf16 values of B (K, n) packed by :func:`b16_pack`."""
    return fr_b16_packed_size(K, n)


def b16_convert(const float[:, :] A, fr_b16[:, ::1] out):
    """``out[:, :K] = bf16(A)`` (to nearest, ties to even), ``out[:, K:b16_kp(K)] = 0``,
    A (m, K) read through its strides (a transposed view converts too), out (m, >= Kp)
    uint16 holding the bf16 bits."""
    cdef Py_ssize_t m = A.shape[0], K = A.shape[1]
    if out.shape[0] != m or out.shape[1] < fr_b16_kp(K):
        raise ValueError(f"out must be ({m}, >= {fr_b16_kp(K)}), got {tuple(out.shape)[:2]}")
    if m == 0 or K == 0:
        return
    with nogil:
        fr_b16_rows(&A[0, 0], m, K, A.strides[0] // 4, A.strides[1] // 4, &out[0, 0],
                    out.shape[1])


def b16_pack(const float[:, :] B, fr_b16[::1] out):
    """B (K, n), read through its strides, in bf16 into ``out``
    (:func:`b16_packed_size` values): panels of 16 columns with k in pairs, element
    (k, c) of panel P at ``P*16*Kp + (k//2)*32 + c*2 + k%2``, zeros after K and n."""
    cdef Py_ssize_t K = B.shape[0], n = B.shape[1]
    if K == 0 or n == 0:
        raise ValueError(f"B must have at least one row and one column, got {(K, n)}")
    _check_shape("out", tuple(out.shape)[:1], (fr_b16_packed_size(K, n),))
    with nogil:
        fr_b16_pack(&B[0, 0], n, K, B.strides[1] // 4, B.strides[0] // 4, &out[0])


def b16_gemm(const fr_b16[:, ::1] A, Py_ssize_t K, const fr_b16[::1] Bp, float[:, ::1] C,
             bint accumulate=False, const float[::1] bias=None):
    """``C = A @ B`` (``C += ...`` with ``accumulate``, else ``C = bias + ...`` with a bias
    of n values) with A (m, >= Kp) from :func:`b16_convert` of an (m, K) matrix and ``Bp``
    = B (K, n) packed by :func:`b16_pack`; float sums, in the calling thread, on the path
    :func:`isa` allows."""
    cdef Py_ssize_t m = A.shape[0], n = C.shape[1]
    if K < 1 or A.shape[1] < fr_b16_kp(K):
        raise ValueError(f"A must be (m, >= {fr_b16_kp(K)}) for K={K}, got "
                         f"{tuple(A.shape)[:2]}")
    _check_shape("C", tuple(C.shape)[:2], (m, n))
    _check_shape("Bp", tuple(Bp.shape)[:1], (fr_b16_packed_size(K, n),))
    if m == 0 or n == 0:
        return
    cdef const float* pbias = NULL
    if bias is not None:
        _check_shape("bias", tuple(bias.shape)[:1], (n,))
        pbias = &bias[0]
    with nogil:
        fr_b16_gemm(&A[0, 0], A.shape[1], m, K, &Bp[0], n, &C[0, 0], n, accumulate, pbias)


# ---------------------------------------------------------------------------------------
# Adam's update in one pass (fastrnn/_adam.h)
# ---------------------------------------------------------------------------------------

def adam_step(floating[::1] p, const floating[::1] grad, floating[::1] m, floating[::1] v,
              double w, bint lerp_high, double beta2, double one_minus_beta2,
              double sqrt_bc2, double eps, double neg_step):
    """One Adam step on flat, contiguous ``p`` in place, moments ``m`` and ``v`` updated:
    ``fastrnn.optim.functional.adam_update``'s operations in its order, bit for bit (no
    weight decay, no amsgrad, not maximizing).  The scalars are those the NumPy update
    multiplies by, already rounded to the arrays' type: ``w`` the lerp's weight 1 - beta1
    (or 1 - w, ``lerp_high``: weights of 0.5 and more take torch.lerp's other form),
    ``sqrt_bc2`` sqrt(1 - beta2**t), ``neg_step`` -lr / (1 - beta1**t)."""
    cdef Py_ssize_t n = p.shape[0]
    for name, a in (("grad", grad), ("m", m), ("v", v)):
        if a.shape[0] != n:
            raise ValueError(f"{name} must have {n} values, as p, got {a.shape[0]}")
    if n == 0:
        return
    with nogil:
        if floating is float:
            fr_adam_f(&p[0], &grad[0], &m[0], &v[0], n, <float>w, lerp_high, <float>beta2,
                      <float>one_minus_beta2, <float>sqrt_bc2, <float>eps, <float>neg_step)
        else:
            fr_adam_d(&p[0], &grad[0], &m[0], &v[0], n, w, lerp_high, beta2,
                      one_minus_beta2, sqrt_bc2, eps, neg_step)
