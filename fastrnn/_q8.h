/* fastrnn's int8 product for quantized inference: C = base + (A_q @ W_q.T) * s_a * s_w.
 *
 * Weights are quantized once per output row (a gate unit: one row of W_ih or W_hh),
 * symmetric, w = q_w * s_w[c] with q_w in [-127, 127] and s_w[c] = max|W[c, :]| / 127.
 * Activations are quantized per row (a batch row of one step) when they are produced,
 * a = (q_a - 128) * s_a[r], q_a an unsigned byte with zero point 128 (VNNI's vpdpbusd
 * and AMX's tdpbusd multiply unsigned by signed bytes), s_a[r] = max|a[r, :]| / 127,
 * q_a = 128 + rint(a * (1 / s_a)) (1 / s_a rounded to float32 first: a multiply, not a
 * division, per value): a row of zeros has s_a = 0 and gives 0.
 *
 *   acc[r, c]  = sum_k q_a[r, k] * q_w[c, k] - 128 * colsum[c]      (int32, exact)
 *   C[r, c]    = fma((float)acc[r, c], s_a[r] * s_w[c], base[r, c])
 *
 * base is a bias row (the input projection), C itself (accumulate: the recurrent product
 * added onto the gates) or 0.  The int32 sums are exact (K <= FR_Q8_MAX_K keeps
 * 255 * 127 * K below 2^31), and every path rounds the same float operations the same
 * way (one fused multiply-add, fmaf in C), so every path gives the same bits.
 *
 * Packed weights (fr_q8_pack): B = W_q.T (K, n) in panels of 16 output columns, k in
 * groups of 4: element (k, c) at panel*16*Kp + (k/4)*64 + (c%16)*4 + k%4, K padded with
 * zeros to Kp, a multiple of 64, and n to a multiple of 16 (panel = c / 16).  One 64-byte
 * row is a zmm of 16 columns x 4 k (vpdpbusd's operand) and 16 such rows are an AMX
 * B tile (64 k x 16 columns).  Activations: rows of Kp bytes, padded with 128.
 *
 * Paths (chosen per call by fr_isa(), fastrnn/_isa.h):
 *   FR_ISA_AMX    tiles of 16 rows (2x2 tiles of C at a time); the rows left over
 *                 (m % 16) go to the VNNI path
 *   FR_ISA_VNNI   (and BF16) register-blocked vpdpbusd, 4 rows x 4 panels
 *   below         the x86-64 baseline, SSE2's pmaddwd (fr_q8_gemm_c, the same sums in
 *                 plain C, elsewhere)
 */
#ifndef FASTRNN_Q8_H
#define FASTRNN_Q8_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_isa.h"

#define FR_Q8_MAX_K 65536L

static inline long fr_q8_kpad(long K) { return (K + 63) / 64 * 64; }
static inline long fr_q8_npad(long n) { return (n + 15) / 16 * 16; }

/* ---------------------------------------------------------------- weights, packed once */

/* W (n, K) int8 row-major -> out (npad(n) * kpad(K) bytes), colsum (npad(n)) int32. */
static void fr_q8_pack(const int8_t *W, long n, long K, int8_t *out, int32_t *colsum)
{
    const long Kp = fr_q8_kpad(K), np = fr_q8_npad(n) / 16;
    long p, k, cc;
    memset(out, 0, (size_t)(np * 16 * Kp));
    for (p = 0; p < np; p++) {
        for (cc = 0; cc < 16; cc++) {
            const long c = p * 16 + cc;
            int32_t sum = 0;
            if (c < n) {
                for (k = 0; k < K; k++) {
                    const int8_t w = W[c * K + k];
                    out[p * 16 * Kp + (k / 4) * 64 + cc * 4 + k % 4] = w;
                    sum += w;
                }
            }
            colsum[c] = sum;
        }
    }
}

/* ------------------------------------------------------- activations, per row and step */

static inline uint8_t fr_q8_byte(float a, float inv)
{
    float q = nearbyintf(a * inv);
    q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
    return (uint8_t)(128 + (int)q);
}

static void fr_q8_quant_rows_c(const float *A, long m, long K, long lda, uint8_t *Q,
                               long ldq, float *s)
{
    long r, k;
    for (r = 0; r < m; r++) {
        const float *a = A + r * lda;
        uint8_t *q = Q + r * ldq;
        float mx = 0.0f, sc;
        for (k = 0; k < K; k++) {
            const float v = fabsf(a[k]);
            mx = v > mx ? v : mx;
        }
        sc = mx / 127.0f;
        s[r] = sc;
        if (sc == 0.0f)
            memset(q, 128, (size_t)K);
        else {
            const float inv = 1.0f / sc;
            for (k = 0; k < K; k++)
                q[k] = fr_q8_byte(a[k], inv);
        }
        memset(q + K, 128, (size_t)(ldq - K));
    }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FR_Q8_X86 1
#define FR_Q8_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define FR_Q8_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
#define FR_Q8_AMX __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni," \
                                        "amx-tile,amx-int8")))

static FR_Q8_AVX512 void fr_q8_quant_rows_avx512(const float *A, long m, long K, long lda,
                                                 uint8_t *Q, long ldq, float *s)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127),
                  zp = _mm512_set1_epi32(128);
    long r, k;
    for (r = 0; r < m; r++) {
        const float *a = A + r * lda;
        uint8_t *q = Q + r * ldq;
        __m512 vmax = _mm512_setzero_ps(), vs;
        float sc;
        for (k = 0; k < K; k += 16) {
            const __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF
                                             : (__mmask16)((1u << (K - k)) - 1);
            const __m512 v = _mm512_maskz_loadu_ps(mk, a + k);
            vmax = _mm512_max_ps(vmax, _mm512_andnot_ps(sign, v));
        }
        sc = _mm512_reduce_max_ps(vmax) / 127.0f;
        s[r] = sc;
        if (sc == 0.0f) {
            memset(q, 128, (size_t)ldq);
            continue;
        }
        vs = _mm512_set1_ps(1.0f / sc);
        for (k = 0; k < K; k += 16) {
            const __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF
                                             : (__mmask16)((1u << (K - k)) - 1);
            const __m512 v = _mm512_maskz_loadu_ps(mk, a + k);
            /* vcvtps2dq rounds to nearest even, as nearbyintf does */
            __m512i i = _mm512_cvtps_epi32(_mm512_mul_ps(v, vs));
            i = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(i, lo), hi), zp);
            _mm512_mask_cvtepi32_storeu_epi8(q + k, mk, i);
        }
        memset(q + K, 128, (size_t)(ldq - K));
    }
}
#endif

/* A (m, K) float rows (stride lda) -> Q (m, ldq) bytes, s (m) scales; ldq >= K. */
static void fr_q8_quant_rows(const float *A, long m, long K, long lda, uint8_t *Q, long ldq,
                             float *s)
{
#ifdef FR_Q8_X86
    if (fr_isa() >= FR_ISA_AVX512) {
        fr_q8_quant_rows_avx512(A, m, K, lda, Q, ldq, s);
        return;
    }
#endif
    fr_q8_quant_rows_c(A, m, K, lda, Q, ldq, s);
}

/* ------------------------------------------------------------------------ the product */

/* What a call computes, shared by the paths. */
typedef struct {
    long m, n, Kp;
    const uint8_t *A;       /* (m, Kp), row stride lda */
    long lda;
    const int8_t *B;        /* packed */
    const int32_t *colsum;  /* (npad(n)) */
    const float *sa;        /* (m) */
    const float *sw;        /* (n) */
    const float *bias;      /* (n) or NULL */
    int accumulate;         /* base = C (bias ignored) */
    float *C;               /* (m, n), row stride ldc */
    long ldc;
    int32_t *sums;          /* instead of C: the int32 sums acc (m, n), row stride ldc */
} fr_q8_call;

/* The epilogue of one element, in C: the reference of the vector epilogues. */
static inline void fr_q8_out1(const fr_q8_call *P, long r, long c, int32_t raw)
{
    const int32_t acc = raw - 128 * P->colsum[c];
    float base;
    if (P->sums != NULL) {
        P->sums[r * P->ldc + c] = acc;
        return;
    }
    base = P->accumulate ? P->C[r * P->ldc + c] : (P->bias != NULL ? P->bias[c] : 0.0f);
    P->C[r * P->ldc + c] = fmaf((float)acc, P->sa[r] * P->sw[c], base);
}

/* The C reference of the product (a platform without x86's intrinsics runs it; on x86
 * the tests call it through _lowp.product(..., portable=True)). */
static __attribute__((unused)) void fr_q8_gemm_c(const fr_q8_call *P, long r0, long r1)
{
    const long Kp = P->Kp, G = Kp / 4;
    long r, c, g, j;
    for (r = r0; r < r1; r++) {
        const uint8_t *a = P->A + r * P->lda;
        for (c = 0; c < P->n; c++) {
            const int8_t *b = P->B + (c / 16) * 16 * Kp + (c % 16) * 4;
            int32_t acc = 0;
            for (g = 0; g < G; g++)
                for (j = 0; j < 4; j++)
                    acc += (int32_t)a[g * 4 + j] * (int32_t)b[g * 64 + j];
            fr_q8_out1(P, r, c, acc);
        }
    }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <emmintrin.h>
/* The x86-64 baseline (SSE2, every x86-64 CPU): pmaddwd of 16-bit values.  Per k group,
 * the panel's 64 bytes are 4 x (4 columns x 4 k); each half (2 columns x 4 k) widened to
 * 16 bits times a's 4 values twice gives 2 sums of 2 per column (exact: 2 * 255 * 127 fits
 * in 32 bits), added over the groups, then the pairs of each column added. */
static void fr_q8_gemm_sse2(const fr_q8_call *P, long r0, long r1)
{
    const long Kp = P->Kp, G = Kp / 4, np = fr_q8_npad(P->n) / 16;
    const __m128i zero = _mm_setzero_si128();
    long r, p, g, cc;
    int q;
    for (r = r0; r < r1; r++) {
        const uint8_t *a = P->A + r * P->lda;
        for (p = 0; p < np; p++) {
            const int8_t *b = P->B + p * 16 * Kp;
            __m128i acc[8];
            int32_t out[8][4];
            for (q = 0; q < 8; q++)
                acc[q] = zero;
            for (g = 0; g < G; g++) {
                int32_t word;
                __m128i av;
                memcpy(&word, a + g * 4, 4);
                av = _mm_unpacklo_epi8(_mm_cvtsi32_si128(word), zero);   /* a0..a3 */
                av = _mm_unpacklo_epi64(av, av);                         /* twice */
                for (q = 0; q < 4; q++) {
                    const __m128i bv = _mm_loadu_si128((const __m128i *)(b + g * 64 + q * 16));
                    const __m128i sign = _mm_cmpgt_epi8(zero, bv);
                    acc[2 * q] = _mm_add_epi32(acc[2 * q], _mm_madd_epi16(
                        av, _mm_unpacklo_epi8(bv, sign)));
                    acc[2 * q + 1] = _mm_add_epi32(acc[2 * q + 1], _mm_madd_epi16(
                        av, _mm_unpackhi_epi8(bv, sign)));
                }
            }
            for (q = 0; q < 8; q++)
                _mm_storeu_si128((__m128i *)out[q], acc[q]);
            for (cc = 0; cc < 16 && p * 16 + cc < P->n; cc++) {
                const int32_t *v = out[cc / 2] + (cc % 2) * 2;   /* 2 columns a vector */
                fr_q8_out1(P, r, p * 16 + cc, v[0] + v[1]);
            }
        }
    }
}
#endif

#ifdef FR_Q8_X86
/* The epilogue of 16 columns c0.. of row r (mask: the columns < n). */
static inline __attribute__((always_inline)) FR_Q8_AVX512
void fr_q8_out16(const fr_q8_call *P, long r, long c0, __m512i raw)
{
    const long left = P->n - c0;
    const __mmask16 mk = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
    const __m512i acc = _mm512_sub_epi32(
        raw, _mm512_slli_epi32(_mm512_loadu_si512((const void *)(P->colsum + c0)), 7));
    __m512 base, scale;
    if (P->sums != NULL) {
        _mm512_mask_storeu_epi32(P->sums + r * P->ldc + c0, mk, acc);
        return;
    }
    if (P->accumulate)
        base = _mm512_maskz_loadu_ps(mk, P->C + r * P->ldc + c0);
    else if (P->bias != NULL)
        base = _mm512_maskz_loadu_ps(mk, P->bias + c0);
    else
        base = _mm512_setzero_ps();
    scale = _mm512_mul_ps(_mm512_set1_ps(P->sa[r]), _mm512_maskz_loadu_ps(mk, P->sw + c0));
    _mm512_mask_storeu_ps(P->C + r * P->ldc + c0, mk,
                          _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), scale, base));
}

/* acc + the dot products of a's unsigned and b's signed bytes, 4 by 4 (vpdpbusd), in
 * inline assembly: GCC 12 copies the accumulator of the intrinsic in and out at every
 * call, two register moves per product in the inner loop. */
static inline __attribute__((always_inline)) FR_Q8_VNNI
__m512i fr_q8_dpbusd(__m512i acc, __m512i a, __m512i b)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "vm"(b));
    return acc;
}

/* The epilogue of a block: the call's fields copied into locals first (the masked
 * stores may write anywhere as far as the compiler knows, so P's fields would be read
 * again after each one), the mode tested once. */
#define fr_q8_epilogue(P, r, p, MR, NP, acc, mk)                                           \
    do {                                                                                   \
        const long ldc_ = (P)->ldc;                                                        \
        int32_t *const sums_ = (P)->sums;                                                  \
        float *const C_ = (P)->C;                                                          \
        const float *const sa_ = (P)->sa + (r), *const sw_ = (P)->sw, *const bz_ = (P)->bias; \
        const int add_ = (P)->accumulate;                                                  \
        float sav_[MR];                                                                    \
        int i_, j_;                                                                        \
        if (sums_ != NULL) {                                                               \
            for (j_ = 0; j_ < NP; j_++)                                                    \
                for (i_ = 0; i_ < MR; i_++)                                                \
                    _mm512_mask_storeu_epi32(sums_ + ((r) + i_) * ldc_ + ((p) + j_) * 16,  \
                                             mk[j_], acc[i_][j_]);                         \
            break;                                                                         \
        }                                                                                  \
        for (i_ = 0; i_ < MR; i_++)                                                        \
            sav_[i_] = sa_[i_];                                                            \
        for (j_ = 0; j_ < NP; j_++) {                                                      \
            const long c0_ = ((p) + j_) * 16;                                              \
            const __m512 sw = _mm512_maskz_loadu_ps(mk[j_], sw_ + c0_);                    \
            const __m512 bias = bz_ != NULL ? _mm512_maskz_loadu_ps(mk[j_], bz_ + c0_)     \
                                            : _mm512_setzero_ps();                         \
            for (i_ = 0; i_ < MR; i_++) {                                                  \
                float *c_ = C_ + ((r) + i_) * ldc_ + c0_;                                  \
                const __m512 base = add_ ? _mm512_maskz_loadu_ps(mk[j_], c_) : bias;       \
                const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(sav_[i_]), sw);          \
                _mm512_mask_storeu_ps(c_, mk[j_], _mm512_fmadd_ps(                         \
                    _mm512_cvtepi32_ps(acc[i_][j_]), scale, base));                        \
            }                                                                              \
        }                                                                                  \
    } while (0)

/* Rows r..r+MR-1 over panels p..p+NP-1: MR*NP accumulators for the whole k loop, each
 * starting from -128 * colsum (the zero point's share: the sums come out exact), then the
 * epilogue with each panel's scales, column sums and bias loaded once for the MR rows.
 * One function per shape (the macro below): MR and NP are constants in each, so that its
 * loops unroll. */
#define FR_Q8_BLOCK(MR, NP)                                                                \
static inline __attribute__((always_inline)) FR_Q8_VNNI void                              \
fr_q8_block_##MR##_##NP(const fr_q8_call *P, long r, long p)                               \
{                                                                                          \
    const long Kp = P->Kp, G = Kp / 4, lda = P->lda;                                       \
    const int8_t *B = P->B + p * 16 * Kp;                                                  \
    const uint8_t *A = P->A + r * lda;                                                     \
    __m512i acc[MR][NP], zc[NP];                                                           \
    __mmask16 mk[NP];                                                                      \
    long g;                                                                                \
    int i, j;                                                                              \
    for (j = 0; j < NP; j++) {                                                             \
        const long left = P->n - (p + j) * 16;                                             \
        mk[j] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);            \
        zc[j] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(                \
            _mm512_loadu_si512((const void *)(P->colsum + (p + j) * 16)), 7));             \
    }                                                                                      \
    for (i = 0; i < MR; i++)                                                               \
        for (j = 0; j < NP; j++)                                                           \
            acc[i][j] = zc[j];                                                             \
    for (g = 0; g < G; g++) {                                                              \
        __m512i b[NP];                                                                     \
        for (j = 0; j < NP; j++)                                                           \
            b[j] = _mm512_loadu_si512((const void *)(B + j * 16 * Kp + g * 64));           \
        for (i = 0; i < MR; i++) {                                                         \
            int32_t word;                                                                  \
            memcpy(&word, A + i * lda + g * 4, 4);                                         \
            const __m512i a = _mm512_set1_epi32(word);                                     \
            for (j = 0; j < NP; j++)                                                       \
                acc[i][j] = fr_q8_dpbusd(acc[i][j], a, b[j]);                               \
        }                                                                                  \
    }                                                                                      \
    fr_q8_epilogue(P, r, p, MR, NP, acc, mk);                                              \
}

FR_Q8_BLOCK(4, 4) FR_Q8_BLOCK(3, 4) FR_Q8_BLOCK(2, 4) FR_Q8_BLOCK(1, 4)
FR_Q8_BLOCK(4, 3) FR_Q8_BLOCK(3, 3) FR_Q8_BLOCK(2, 3) FR_Q8_BLOCK(1, 3)
FR_Q8_BLOCK(4, 2) FR_Q8_BLOCK(3, 2) FR_Q8_BLOCK(2, 2) FR_Q8_BLOCK(1, 2)
FR_Q8_BLOCK(4, 1) FR_Q8_BLOCK(3, 1) FR_Q8_BLOCK(2, 1) FR_Q8_BLOCK(1, 1)

#undef FR_Q8_BLOCK
#undef fr_q8_epilogue

#define FR_Q8_ROWS(NP)                                                 \
    switch (r1 - r < 4 ? r1 - r : 4) {                                 \
    case 4: fr_q8_block_4_##NP(P, r, p); break;                        \
    case 3: fr_q8_block_3_##NP(P, r, p); break;                        \
    case 2: fr_q8_block_2_##NP(P, r, p); break;                        \
    default: fr_q8_block_1_##NP(P, r, p); break;                       \
    }

static FR_Q8_VNNI void fr_q8_gemm_vnni(const fr_q8_call *P, long r0, long r1)
{
    const long np = fr_q8_npad(P->n) / 16;
    long p, r;
    for (p = 0; p < np; p += 4) {          /* 4 panels (16 Kp bytes each) stay in cache */
        const long left = np - p;
        for (r = r0; r < r1; r += 4) {
            if (left >= 4) {
                FR_Q8_ROWS(4)
            } else if (left == 3) {
                FR_Q8_ROWS(3)
            } else if (left == 2) {
                FR_Q8_ROWS(2)
            } else {
                FR_Q8_ROWS(1)
            }
        }
    }
}
#undef FR_Q8_ROWS

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} fr_q8_tilecfg;

/* rows r0.. in blocks of 16 (at most r1); returns the first row it did not compute */
static FR_Q8_AMX long fr_q8_gemm_amx(const fr_q8_call *P, long r0, long r1)
{
    const long Kp = P->Kp, np = fr_q8_npad(P->n) / 16, lda = P->lda;
    fr_q8_tilecfg cfg;
    int32_t out[4][16][16] __attribute__((aligned(64)));
    long r, p, kb, i;
    int t;
    if (r1 - r0 < 16)
        return r0;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (t = 0; t < 8; t++) {       /* 0-3: C (int32), 4-5: A (bytes), 6-7: B */
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    for (r = r0; r + 16 <= r1; r += 32) {
        const int two_rows = r + 32 <= r1;
        for (p = 0; p < np; p += 2) {
            const int two_panels = p + 2 <= np;
            const int8_t *B = P->B + p * 16 * Kp;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (kb = 0; kb < Kp; kb += 64) {
                _tile_loadd(4, P->A + r * lda + kb, lda);
                _tile_loadd(6, B + kb * 16, 64);
                _tile_dpbusd(0, 4, 6);
                if (two_panels) {
                    _tile_loadd(7, B + 16 * Kp + kb * 16, 64);
                    _tile_dpbusd(1, 4, 7);
                }
                if (two_rows) {
                    _tile_loadd(5, P->A + (r + 16) * lda + kb, lda);
                    _tile_dpbusd(2, 5, 6);
                    if (two_panels)
                        _tile_dpbusd(3, 5, 7);
                }
            }
            _tile_stored(0, out[0], 64);
            _tile_stored(1, out[1], 64);
            _tile_stored(2, out[2], 64);
            _tile_stored(3, out[3], 64);
            for (i = 0; i < 16; i++) {
                fr_q8_out16(P, r + i, p * 16, _mm512_load_si512(out[0][i]));
                if (two_panels)
                    fr_q8_out16(P, r + i, p * 16 + 16, _mm512_load_si512(out[1][i]));
                if (two_rows) {
                    fr_q8_out16(P, r + 16 + i, p * 16, _mm512_load_si512(out[2][i]));
                    if (two_panels)
                        fr_q8_out16(P, r + 16 + i, p * 16 + 16,
                                    _mm512_load_si512(out[3][i]));
                }
            }
        }
        if (!two_rows)
            r -= 16;                /* one tile row done: the next block starts 16 on */
    }
    _tile_release();
    return r0 + (r1 - r0) / 16 * 16;
}
#endif

/* Rows r0..r1-1 of the call, on the highest path fr_isa() allows. */
static void fr_q8_gemm_rows(const fr_q8_call *P, long r0, long r1)
{
#ifdef FR_Q8_X86
    const int isa = fr_isa();
    if (isa >= FR_ISA_AMX)
        r0 = fr_q8_gemm_amx(P, r0, r1);
    if (isa >= FR_ISA_VNNI) {
        if (r0 < r1)
            fr_q8_gemm_vnni(P, r0, r1);
        return;
    }
    fr_q8_gemm_sse2(P, r0, r1);
#else
    fr_q8_gemm_c(P, r0, r1);
#endif
}

/* The path fr_q8_gemm_rows takes for a call of m rows (tests, show_config). */
static inline int fr_q8_path(void)
{
    const int isa = fr_isa();
    if (isa >= FR_ISA_AMX)
        return FR_ISA_AMX;
    if (isa >= FR_ISA_VNNI)
        return FR_ISA_VNNI;
    return FR_ISA_BASE;
}

#endif /* FASTRNN_Q8_H */
