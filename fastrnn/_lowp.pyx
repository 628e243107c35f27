# cython: language_level=3
"""Low-precision inference kernels of fastrnn: the int8 product (fastrnn/_q8.h) and the
inference time loop of the quantized plain kinds (RNN tanh/relu, LSTM, GRU with r after
the product), with the instruction-set level they run at.

Quantization (fastrnn/_q8.h): weights per output row, symmetric int8 with scale
max|row|/127, packed once (:func:`pack`); activations per row and step, unsigned bytes
with zero point 128 and scale max|row|/127 (:func:`quantize_rows`); products in exact
int32 sums, then ``base + sums * s_a * s_w`` in float32 (:func:`product`); the gate math
in float32, the kernels' own (fastrnn/_cellmath.pxd).

Every path (AMX-INT8, AVX512-VNNI, portable C) gives the same bits; :func:`set_isa_cap`
lowers the level to run the lower ones (the tests do, on a CPU that has them all).
"""

cimport numpy as cnp
from cython.parallel cimport prange
from libc.stdint cimport int8_t, int32_t, uint8_t
from libc.stdlib cimport free, malloc

from fastrnn._blas cimport _team, _threads
from fastrnn._cellmath cimport (CELL_GRU, CELL_LSTM, CELL_RNN, FR_KINDS, _cell_step,
                                _copy_rows, _zero_rows)

cnp.import_array()

cdef extern from "_q8.h" nogil:
    enum:
        FR_ISA_BASE
        FR_ISA_AVX512
        FR_ISA_VNNI
        FR_ISA_BF16
        FR_ISA_AMX
    const char* fr_isa_names[5]
    int fr_isa_cap
    int fr_isa()
    int fr_isa_detected()
    long FR_Q8_MAX_K
    long fr_q8_kpad(long K)
    long fr_q8_npad(long n)
    void fr_q8_pack(const int8_t* W, long n, long K, int8_t* out, int32_t* colsum)
    void fr_q8_quant_rows(const float* A, long m, long K, long lda, uint8_t* Q, long ldq,
                          float* s)
    ctypedef struct fr_q8_call:
        long m, n, Kp
        const uint8_t* A
        long lda
        const int8_t* B
        const int32_t* colsum
        const float* sa
        const float* sw
        const float* bias
        int accumulate
        float* C
        long ldc
        int32_t* sums
    void fr_q8_gemm_rows(const fr_q8_call* P, long r0, long r1)
    void fr_q8_gemm_c(const fr_q8_call* P, long r0, long r1)
    int fr_q8_path()

#: the largest input or hidden size (the int32 sums stay exact below it)
MAX_K = FR_Q8_MAX_K
LEVELS = tuple(fr_isa_names[i].decode() for i in range(5))


# ---------------------------------------------------------------------------------------
# The instruction-set level
# ---------------------------------------------------------------------------------------

def isa():
    """The level the kernels of this module run at: the detected one, capped."""
    return fr_isa_names[fr_isa()].decode()


def detected_isa():
    """The level the running CPU and operating system allow (fastrnn/_isa.h)."""
    return fr_isa_names[fr_isa_detected()].decode()


def set_isa_cap(str level):
    """Run this module's kernels at ``level`` at most (one of :data:`LEVELS`; the last,
    ``"amx"``, removes the cap)."""
    global fr_isa_cap
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    fr_isa_cap = LEVELS.index(level)


def product_path():
    """The path :func:`product` takes: ``"amx"`` (tiles of 16 rows, the other rows on
    VNNI), ``"avx512_vnni"`` or ``"baseline"`` (portable C)."""
    return fr_isa_names[fr_q8_path()].decode()


# ---------------------------------------------------------------------------------------
# Weights and activations
# ---------------------------------------------------------------------------------------

def kpad(Py_ssize_t K):
    """K rounded up to a multiple of 64: the row length of quantized activations."""
    return fr_q8_kpad(K)


cdef int _check_k(Py_ssize_t K, str name) except -1:
    if K < 1 or K > FR_Q8_MAX_K:
        raise ValueError(f"{name} must be in [1, {FR_Q8_MAX_K}] for the int8 product, "
                         f"got {K}")
    return 0


def pack(const int8_t[:, ::1] W):
    """``(packed, colsum)``: W (n, K) int8 packed for the product (fastrnn/_q8.h's
    layout; npad(n) * kpad(K) bytes) and its column sums (npad(n),) int32."""
    cdef Py_ssize_t n = W.shape[0], K = W.shape[1]
    _check_k(K, "W.shape[1]")
    if n < 1:
        raise ValueError("W must have at least one row")
    out = cnp.PyArray_ZEROS(1, [fr_q8_npad(n) * fr_q8_kpad(K)], cnp.NPY_INT8, 0)
    colsum = cnp.PyArray_ZEROS(1, [fr_q8_npad(n)], cnp.NPY_INT32, 0)
    cdef int8_t[::1] o = out
    cdef int32_t[::1] cs = colsum
    with nogil:
        fr_q8_pack(&W[0, 0], n, K, &o[0], &cs[0])
    return out, colsum


def quantize_rows(const float[:, ::1] A):
    """``(Q, s)``: each row of A (m, K) float32 as unsigned bytes, Q (m, kpad(K)) uint8
    (128 + rint(a * (1 / s)), 128 in the padding), and its scale s (m,) = max|row| / 127."""
    cdef Py_ssize_t m = A.shape[0], K = A.shape[1], Kp
    _check_k(K, "A.shape[1]")
    Kp = fr_q8_kpad(K)
    Q = cnp.PyArray_EMPTY(2, [m, Kp], cnp.NPY_UINT8, 0)
    s = cnp.PyArray_EMPTY(1, [m], cnp.NPY_FLOAT32, 0)
    cdef uint8_t[:, ::1] q = Q
    cdef float[::1] sv = s
    if m:
        with nogil:
            fr_q8_quant_rows(&A[0, 0], m, K, K, &q[0, 0], Kp, &sv[0])
    return Q, s


cdef int _check_operand(Py_ssize_t n, Py_ssize_t Kp, Py_ssize_t packed,
                        Py_ssize_t colsum, Py_ssize_t scales, str name) except -1:
    if packed != fr_q8_npad(n) * Kp or colsum != fr_q8_npad(n) or scales != n:
        raise ValueError(f"{name}: packed ({packed},), colsum ({colsum},), scales "
                         f"({scales},) do not fit {n} outputs of {Kp} padded inputs")
    return 0


def product(const uint8_t[:, ::1] Q, const float[::1] s, const int8_t[::1] packed,
            const int32_t[::1] colsum, const float[::1] w_scale, float[::1] bias=None,
            float[:, ::1] out=None, bint accumulate=False, bint sums=False,
            bint portable=False):
    """The int8 product of quantized rows Q (m, Kp) with scales s (m,) by packed weights
    of n = len(w_scale) outputs: ``out = base + sums * s[:, None] * w_scale`` (base:
    ``bias``, ``out`` itself with ``accumulate``, else 0), out (m, n) float32 (made when
    None); with ``sums``, the exact int32 sums (m, n) instead.  One thread, on the path
    the level allows, or with ``portable`` the plain C product (what a platform without
    x86 intrinsics runs)."""
    cdef Py_ssize_t m = Q.shape[0], Kp = Q.shape[1], n = w_scale.shape[0]
    cdef fr_q8_call P
    if Kp % 64 or Kp == 0:
        raise ValueError(f"Q.shape[1] must be a positive multiple of 64, got {Kp}")
    _check_operand(n, Kp, packed.shape[0], colsum.shape[0], n, "product")
    if s.shape[0] != m:
        raise ValueError(f"s must have {m} values, got {s.shape[0]}")
    if bias is not None and bias.shape[0] != n:
        raise ValueError(f"bias must have {n} values, got {bias.shape[0]}")
    result = None
    cdef int32_t[:, ::1] iv
    if sums:
        result = cnp.PyArray_ZEROS(2, [m, n], cnp.NPY_INT32, 0)
        iv = result
    elif out is None:
        if accumulate:
            raise ValueError("accumulate adds onto out: give out")
        result = cnp.PyArray_ZEROS(2, [m, n], cnp.NPY_FLOAT32, 0)
        out = result
    elif out.shape[0] != m or out.shape[1] != n:
        raise ValueError(f"out must have shape ({m}, {n}), got {tuple(out.shape)[:2]}")
    if m == 0:
        return result
    P.m, P.n, P.Kp, P.A, P.lda = m, n, Kp, &Q[0, 0], Kp
    P.B, P.colsum, P.sa, P.sw = &packed[0], &colsum[0], &s[0], &w_scale[0]
    P.bias = NULL if bias is None else &bias[0]
    P.accumulate = accumulate
    P.C = NULL if sums else &out[0, 0]
    P.sums = &iv[0, 0] if sums else NULL
    P.ldc = n
    with nogil:
        if portable:
            fr_q8_gemm_c(&P, 0, m)
        else:
            fr_q8_gemm_rows(&P, 0, m)
    return out if result is None else result


# ---------------------------------------------------------------------------------------
# The inference time loop
# ---------------------------------------------------------------------------------------

cdef struct _Loop:
    int kind
    bint relu, reverse, apart
    Py_ssize_t T, B, H, GH, Kp, ldy
    const int* nact
    float* G               # (T*B, GH): the input projection, then each step's gates;
                           #   with Xq: (B, GH), each step's own
    const uint8_t* Xq      # with the input projection step by step: X quantized (T*B,
    const float* sx        #   Kpi) and its scales (T*B,); else NULL
    Py_ssize_t Kpi
    const int8_t* W_ih     # packed, with Xq
    const int32_t* cs_ih
    const float* sw_ih
    const float* bias
    uint8_t* hq            # (B, Kp): h quantized, the step's rows
    float* sh              # (B,): their scales
    float* gh              # GRU: h @ W_hh.T kept apart (B, GH); else NULL
    float* h               # (B, H)
    float* c               # LSTM: (B, H); else NULL
    float* y               # Y + col: (T, B, ldy)
    const int8_t* W_hh     # packed
    const int32_t* cs_hh
    const float* sw_hh
    const float* b_hn      # GRU: b_hh[2H:], inside r * (...); else NULL


cdef inline Py_ssize_t _active(int nact_t, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """How many of the rows lo..hi-1 are active, given nact_t active rows in all."""
    if nact_t <= lo:
        return 0
    return (nact_t if nact_t < hi else hi) - lo


cdef void _product_q(const uint8_t* Aq, const float* sa, Py_ssize_t m, Py_ssize_t Kp,
                     const int8_t* W, const int32_t* colsum, const float* sw, Py_ssize_t n,
                     const float* bias, bint accumulate, float* C,
                     Py_ssize_t ldc) noexcept nogil:
    """C (m, n) = base + Aq (m, Kp) @ W.T, Aq quantized rows with scales sa (base:
    ``bias``, C itself with ``accumulate``, else 0): the one product of the loop."""
    cdef fr_q8_call P
    if m <= 0:
        return
    P.m, P.n, P.Kp, P.A, P.lda = m, n, Kp, Aq, Kp
    P.B, P.colsum, P.sa, P.sw, P.bias = W, colsum, sa, sw, bias
    P.accumulate, P.C, P.ldc, P.sums = accumulate, C, ldc, NULL
    fr_q8_gemm_rows(&P, 0, m)


cdef void _product(const float* A, Py_ssize_t m, Py_ssize_t K, Py_ssize_t lda,
                   uint8_t* Aq, float* sa, Py_ssize_t Kp, const int8_t* W,
                   const int32_t* colsum, const float* sw, Py_ssize_t n, const float* bias,
                   bint accumulate, float* C, Py_ssize_t ldc) noexcept nogil:
    """:func:`_product_q` of A (m, K) float rows, quantized per row into Aq (m, Kp), sa
    (m,) on the way."""
    if m <= 0:
        return
    fr_q8_quant_rows(A, m, K, lda, Aq, Kp, sa)
    _product_q(Aq, sa, m, Kp, W, colsum, sw, n, bias, accumulate, C, ldc)


cdef void _loop_rows(const _Loop* L, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """The time loop over batch rows lo..hi-1."""
    cdef Py_ssize_t T = L.T, B = L.B, H = L.H, GH = L.GH, rows = hi - lo, s, t, n
    cdef float* hs = L.h + lo * H
    cdef float* cs = L.c + lo * H if L.c != NULL else NULL
    cdef float* gh = L.gh + lo * GH if L.gh != NULL else NULL
    cdef float* gt
    cdef float* yt
    for s in range(T):
        t = T - 1 - s if L.reverse else s
        n = _active(L.nact[t], lo, hi)
        gt = L.G + ((t * B if L.Xq == NULL else 0) + lo) * GH
        yt = L.y + (t * B + lo) * L.ldy
        if n > 0 and L.Xq != NULL:
            # 0. Gt[t] = q(x_t) @ q(W_ih).T + bias: the step's input projection, just
            #    before the step reads it
            _product_q(L.Xq + (t * B + lo) * L.Kpi, L.sx + t * B + lo, n, L.Kpi, L.W_ih,
                       L.cs_ih, L.sw_ih, GH, L.bias, False, gt, GH)
        if n > 0:
            # 1. Gt[t] += q(h) @ q(W_hh).T   (GRU: Gh = q(h) @ q(W_hh).T, kept apart)
            _product(hs, n, H, H, L.hq + lo * L.Kp, L.sh + lo, L.Kp, L.W_hh, L.cs_hh,
                     L.sw_hh, GH, NULL, not L.apart, gh if L.apart else gt, GH)
            # 2.-3. the gate nonlinearities and the new state, in float32
            _cell_step(L.kind, L.relu, gt, gh, L.b_hn, <const float*>NULL, <float>0,
                       <float>0, hs, cs, <float*>NULL, n, H)
        # 4. Y[t] = h; zeros at padded steps
        _copy_rows(hs, H, yt, L.ldy, n, H)
        _zero_rows(yt + n * L.ldy, L.ldy, rows - n, H)


def forward(int kind, bint relu, const float[:, ::1] X, const int8_t[::1] W_ih,
            const int32_t[::1] cs_ih, const float[::1] sw_ih, const int8_t[::1] W_hh,
            const int32_t[::1] cs_hh, const float[::1] sw_hh, const float[::1] bias,
            const float[::1] b_hn, const int[::1] nact, const int[::1] bounds,
            float[:, ::1] h, float[:, ::1] c, float[:, :, ::1] Y, Py_ssize_t col,
            bint reverse=False, int parts_ih=1, bint step_input=False):
    """Quantized inference over a sequence, one layer in one direction (rows sorted by
    length, longest first; ``nact`` (T,) active rows per step).

    ``X`` (T*B, I) float32; ``W_ih``, ``W_hh``: :func:`pack` of the int8 weights, with
    their column sums and per-row scales ``sw_*`` (G*H,); ``bias`` (G*H,) the bias row
    of the input projection (b_ih, plus b_hh on all gate columns but the GRU's n block;
    zeros without biases); ``b_hn`` (H,) the GRU's b_hh[2H:] (empty: none, or not a
    GRU).  The input projection runs in ``parts_ih`` blocks of rows side by side, over
    all T*B rows before the loop, or with ``step_input`` X is quantized so and each step
    projects its own rows in the loop (its gates stay in cache).  ``h`` (B, H) (and the LSTM's ``c``; None for the other kinds): the initial
    state on entry, the final one on exit; writes columns col:col+H of ``Y`` (T, B, ldy),
    zeros at padded steps.  The row ranges of ``bounds`` run in parallel."""
    if kind != CELL_RNN and kind != CELL_LSTM and kind != CELL_GRU:
        raise ValueError(f"kind must be RNN, LSTM or GRU's kernel id, got {kind}")
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], H = h.shape[1], I = X.shape[1]
    cdef Py_ssize_t GH = FR_KINDS[kind].gates * H, TB = T * B, p, parts, chunk
    cdef Py_ssize_t Kpi, Kph, n_chunks
    _check_k(I, "input_size")
    _check_k(H, "hidden_size")
    Kpi, Kph = fr_q8_kpad(I), fr_q8_kpad(H)
    if T < 1 or B < 1:
        raise ValueError(f"a call has at least one step and one row, got T={T}, B={B}")
    if X.shape[0] != TB:
        raise ValueError(f"X must have T*B = {TB} rows, got {X.shape[0]}")
    _check_operand(GH, Kpi, W_ih.shape[0], cs_ih.shape[0], sw_ih.shape[0], "W_ih")
    _check_operand(GH, Kph, W_hh.shape[0], cs_hh.shape[0], sw_hh.shape[0], "W_hh")
    if bias.shape[0] != GH:
        raise ValueError(f"bias must have {GH} values, got {bias.shape[0]}")
    if b_hn.shape[0] not in (0, H) or (b_hn.shape[0] and kind != CELL_GRU):
        raise ValueError(f"b_hn is the GRU's ({H},) or empty, got ({b_hn.shape[0]},)")
    if (c is not None) != (kind == CELL_LSTM):
        raise ValueError("c is given with an LSTM, and only then")
    if c is not None and (c.shape[0] != B or c.shape[1] != H):
        raise ValueError(f"c must have shape ({B}, {H}), got {tuple(c.shape)[:2]}")
    if Y.shape[0] != T or Y.shape[1] != B or col < 0 or col + H > Y.shape[2]:
        raise ValueError(f"Y (T, B, >= col + H) = ({T}, {B}, {col + H}) expected, got "
                         f"{tuple(Y.shape)}")
    if nact[0] > B or nact[T - 1] < 0:
        raise ValueError("nact must lie in [0, B]")
    for p in range(1, T):
        if nact[p] > nact[p - 1] or nact[p] < 0:
            raise ValueError("nact must not increase (rows sorted longest first)")
    parts = bounds.shape[0] - 1
    if parts < 1 or bounds[0] != 0 or bounds[parts] != B:
        raise ValueError(f"bounds must run from 0 to {B}")
    for p in range(parts):
        if bounds[p + 1] < bounds[p]:
            raise ValueError("bounds must not decrease")
    cdef _Loop L
    L.kind, L.relu, L.reverse = kind, relu, reverse
    L.apart = FR_KINDS[kind].product_apart
    L.T, L.B, L.H, L.GH, L.Kp, L.ldy = T, B, H, GH, Kph, Y.shape[2]
    L.nact, L.h, L.y = &nact[0], &h[0, 0], &Y[0, 0, 0] + col
    L.c = &c[0, 0] if c is not None else NULL
    L.W_hh, L.cs_hh, L.sw_hh = &W_hh[0], &cs_hh[0], &sw_hh[0]
    L.b_hn = &b_hn[0] if b_hn.shape[0] else NULL
    cdef uint8_t* Xq = <uint8_t*>malloc(TB * Kpi)
    cdef float* sx = <float*>malloc(TB * sizeof(float))
    L.G = <float*>malloc((B if step_input else TB) * GH * sizeof(float))
    L.Xq, L.sx, L.Kpi = NULL, NULL, Kpi
    if step_input:
        L.Xq, L.sx = Xq, sx
    L.W_ih, L.cs_ih, L.sw_ih, L.bias = &W_ih[0], &cs_ih[0], &sw_ih[0], &bias[0]
    L.hq = <uint8_t*>malloc(B * Kph)
    L.sh = <float*>malloc(B * sizeof(float))
    L.gh = <float*>malloc(B * GH * sizeof(float)) if L.apart else NULL
    cdef const float* x0 = &X[0, 0]
    cdef const int* bd = &bounds[0]
    try:
        if (Xq == NULL or sx == NULL or L.G == NULL or L.hq == NULL or L.sh == NULL
                or (L.apart and L.gh == NULL)):
            raise MemoryError()
        # the input projection of all T*B rows, in blocks of rows side by side:
        # G = q(X) @ q(W_ih).T + bias
        parts_ih = max(1, min(parts_ih, _threads()))
        chunk = (TB + parts_ih - 1) // parts_ih
        chunk = max(64, (chunk + 31) // 32 * 32)   # whole AMX tiles in every part
        n_chunks = (TB + chunk - 1) // chunk
        with nogil:
            if step_input:
                # X quantized per row, all T*B rows (the products come step by step)
                if n_chunks == 1:
                    fr_q8_quant_rows(x0, TB, I, I, Xq, Kpi, sx)
                else:
                    for p in prange(n_chunks, num_threads=_team(<int>n_chunks),
                                    schedule="static"):
                        fr_q8_quant_rows(x0 + p * chunk * I, min(chunk, TB - p * chunk), I,
                                         I, Xq + p * chunk * Kpi, Kpi, sx + p * chunk)
            elif n_chunks == 1:
                _product(x0, TB, I, I, Xq, sx, Kpi, &W_ih[0], &cs_ih[0], &sw_ih[0], GH,
                         &bias[0], False, L.G, GH)
            else:
                for p in prange(n_chunks, num_threads=_team(<int>n_chunks),
                                schedule="static"):
                    _product(x0 + p * chunk * I, min(chunk, TB - p * chunk), I, I,
                             Xq + p * chunk * Kpi, sx + p * chunk, Kpi, &W_ih[0],
                             &cs_ih[0], &sw_ih[0], GH, &bias[0], False, L.G + p * chunk * GH,
                             GH)
            if parts == 1:
                _loop_rows(&L, 0, B)
            else:
                for p in prange(parts, num_threads=_team(<int>parts), schedule="static"):
                    _loop_rows(&L, bd[p], bd[p + 1])
    finally:
        free(Xq)
        free(sx)
        free(L.G)
        free(L.hq)
        free(L.sh)
        free(L.gh)
