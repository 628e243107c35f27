/* fastrnn's bfloat16 products: C (+)= A @ B with A and B in bf16 and the sums in float.
 *
 * bf16 is the upper half of a float (1 sign, 8 exponent, 7 mantissa bits): a float rounds
 * to it by dropping 16 bits (to nearest, ties to even), and widens back exactly by adding
 * them as zeros.  The product of two bf16 values is exact in float, so a bf16 product
 * differs from the float one by the rounding of its operands and by the order of its float
 * sums only.  This is the mixed precision of PyTorch's autocast on the CPU: bf16 products,
 * float sums, float everywhere else.
 *
 *   fr_b16_rows   rows of a float matrix, read through a row and a k stride (so that a
 *                 transposed operand converts too), to bf16 rows of Kp values, the last
 *                 Kp - K zeros (Kp = fr_b16_kp(K), K rounded up to a multiple of 32)
 *   fr_b16_pack   the right operand B (K, n), read through two strides, into panels of 16
 *                 columns with k in pairs: element (k, c) of panel P at
 *                 P*16*Kp + (k/2)*32 + c*2 + k%2; k >= K and columns >= n are zeros.  One
 *                 64-byte row (16 columns, a pair of k) is one row of an AMX B tile and
 *                 one operand of _mm512_dpbf16_ps
 *   fr_b16_gemm   C (m, n) = A (m, K) @ B, or C += A @ B (accumulate), or C = bias + A @ B;
 *                 A from fr_b16_rows (row stride lda >= Kp, zeros after K), B packed
 *   fr_b16_gemm2  the same over two operands side by side in k, [A1 | A2] @ [B1 ; B2],
 *                 one sum per element (a step's input projection and recurrent product)
 *   fr_b16_add_t  W += Ct.T in tiles (a weight gradient computed transposed)
 *
 * fr_b16_gemm takes the fastest of three paths fr_isa() allows (fastrnn/_isa.h):
 *   AMX-BF16     _tile_dpbf16ps on blocks of 32 x 32 (16 x 16 tiles, 32 values of k a
 *                tile product), for the rows and columns that fill whole tiles; the tile
 *                configuration is loaded by each call (it is per thread), and released
 *                after; the rest of the rows and columns take the AVX512-BF16 path
 *   AVX512-BF16  _mm512_dpbf16_ps, blocks of rows times up to 4 panels held in registers
 *                for a chunk of k, as fastrnn/_panel.h's float product
 *   portable C   any x86-64: each bf16 value widened to float, products exact, float sums
 * The paths add the same exact products in different orders (the AVX512 and AMX units
 * add a pair of products at a time, and flush denormal results to zero), so they agree
 * to the rounding of float sums, not bit for bit.
 */
#ifndef FASTRNN_B16_H
#define FASTRNN_B16_H

#include <string.h>

#include "_isa.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FR_B16_X86 1
#else
#define FR_B16_X86 0
#endif

typedef unsigned short fr_b16;

/* K rounded up to a multiple of 32: the bf16 values a converted row or a panel holds */
static inline long fr_b16_kp(long K) { return (K + 31) / 32 * 32; }

/* the fr_b16 values of B (K, n) packed */
static inline long fr_b16_packed_size(long K, long n) { return (n + 15) / 16 * 16 * fr_b16_kp(K); }

/* float -> bf16, to nearest, ties to even; a NaN stays a (quiet) NaN */
static inline fr_b16 fr_b16_round(float x)
{
    unsigned int u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (fr_b16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (fr_b16)(u >> 16);
}

static inline float fr_b16_widen(fr_b16 b)
{
    unsigned int u = (unsigned int)b << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* fr_b16_round without branches (so that loops of it vectorise), as an unsigned int */
static inline __attribute__((always_inline)) unsigned int fr_b16_bits(const float *x)
{
    unsigned int u;
    memcpy(&u, x, sizeof u);
    const unsigned int nearest = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const unsigned int quiet = (u >> 16) | 0x40u;
    return (u & 0x7fffffffu) > 0x7f800000u ? quiet : nearest;
}

/* fr_b16_round of a row */
static inline __attribute__((always_inline)) void
fr_b16_round_row(const float *src, long K, fr_b16 *dst)
{
    long k;
    for (k = 0; k < K; k++)
        dst[k] = (fr_b16)fr_b16_bits(src + k);
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FR_B16_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define FR_B16_CLONES
#endif

#if FR_B16_X86
#define FR_B16_AVX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* fr_b16_round_row by the AVX512-BF16 conversion, 16 values an instruction: the same bits
   (it rounds to nearest, ties to even, and quiets a NaN as fr_b16_round does; checked
   over all 2^32 floats), but for denormal inputs, which it takes as zeros: 16 values
   with one among them take fr_b16_bits.  One thread's rows of a step of an LSTM with
   I = H = 512, 64 x 1024 floats in L2, on the AMX Xeon: 11 -> 7 us. */
static FR_B16_AVX __attribute__((unused))
void fr_b16_round_row_avx(const float *src, long K, fr_b16 *dst)
{
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    const __m512i exponent = _mm512_set1_epi32(0x7f800000);
    long k;
    int i;
    for (k = 0; k + 16 <= K; k += 16) {
        const __m512 v = _mm512_loadu_ps(src + k);
        const __m512i u = _mm512_castps_si512(v);
        const __mmask16 denormal = _mm512_test_epi32_mask(u, magnitude)
                                   & ~_mm512_test_epi32_mask(u, exponent);
        if (denormal) {
            for (i = 0; i < 16; i++)
                dst[k + i] = (fr_b16)fr_b16_bits(src + k + i);
        } else {
            const __m256bh b = _mm512_cvtneps_pbh(v);
            memcpy(dst + k, &b, sizeof b);
        }
    }
    for (; k < K; k++)
        dst[k] = (fr_b16)fr_b16_bits(src + k);
}
#endif

/* dst[r*ldd + k] = bf16(src[r*sr + k*sk]) for r < m, k < K; zeros for K <= k < Kp.
   In tiles of 32 x 32 when the source is read across its rows (sk != 1), so that both
   sides stay in the cache. */
FR_B16_CLONES static __attribute__((unused))
void fr_b16_rows(const float *src, long m, long K, long sr, long sk, fr_b16 *dst, long ldd)
{
    const long Kp = fr_b16_kp(K);
    long r, k, r0, k0;
    if (sk == 1) {
#if FR_B16_X86
        const int bf16 = fr_isa() >= FR_ISA_BF16;
#else
        const int bf16 = 0;
#endif
        for (r = 0; r < m; r++) {
            fr_b16 *d = dst + r * ldd;
#if FR_B16_X86
            if (bf16)
                fr_b16_round_row_avx(src + r * sr, K, d);
            else
#endif
                fr_b16_round_row(src + r * sr, K, d);
            for (k = K; k < Kp; k++)
                d[k] = 0;
        }
        return;
    }
    /* chunks of 32 values of k outer: with A's rows the source's columns (sr = 1), a
       chunk is 32 whole rows of the source, read in order, and each tile writes a 64-byte
       piece of 32 rows of dst */
    for (k0 = 0; k0 < K; k0 += 32) {
        const long k1 = K - k0 < 32 ? K : k0 + 32;
        for (r0 = 0; r0 < m; r0 += 32) {
            const long r1 = m - r0 < 32 ? m : r0 + 32;
            if (sr == 1) {
                /* round the tile along the source's rows (contiguous, vectorised), then
                   transpose it */
                fr_b16 tile[32][32];
                for (k = k0; k < k1; k++)
                    fr_b16_round_row(src + r0 + k * sk, r1 - r0, tile[k - k0]);
                for (r = r0; r < r1; r++)
                    for (k = k0; k < k1; k++)
                        dst[r * ldd + k] = tile[k - k0][r - r0];
            } else {
                for (k = k0; k < k1; k++)
                    for (r = r0; r < r1; r++)
                        dst[r * ldd + k] = fr_b16_round(src[r * sr + k * sk]);
            }
        }
    }
    for (r = 0; r < m; r++)
        for (k = K; k < Kp; k++)
            dst[r * ldd + k] = 0;
}

/* W[j*ldw + i] += Ct[i*ldc + j] for i < rows, j < cols: a product computed transposed
   added into its destination, in tiles of 32 x 32 */
FR_B16_CLONES static __attribute__((unused))
void fr_b16_add_t(const float *Ct, long ldc, long rows, long cols, float *W, long ldw)
{
    long i0, j0, i, j;
    for (j0 = 0; j0 < cols; j0 += 32) {
        const long j1 = cols - j0 < 32 ? cols : j0 + 32;
        for (i0 = 0; i0 < rows; i0 += 32) {
            const long i1 = rows - i0 < 32 ? rows : i0 + 32;
            for (j = j0; j < j1; j++)
                for (i = i0; i < i1; i++)
                    W[j * ldw + i] += Ct[i * ldc + j];
        }
    }
}

/* B[k, j] = src[j*sj + k*sk] (K, n) into the panels of fr_b16_pack's layout (above);
   fr_b16_packed_size(K, n) values, every one written */
FR_B16_CLONES static __attribute__((unused))
void fr_b16_pack(const float *src, long n, long K, long sj, long sk, fr_b16 *out)
{
    const long Kp = fr_b16_kp(K);
    long j, k;
    memset(out, 0, (size_t)fr_b16_packed_size(K, n) * sizeof(fr_b16));
    /* the inner loop runs along the source's contiguous axis */
    if (sj == 1) {
        /* a pair of rows of B at a time: one 64-byte row of a panel from 16 values of
           each, interleaved (vectorised) */
        for (k = 0; k < K; k += 2) {
            /* an odd K's last row pairs with zeros (hi then reads lo again: in bounds) */
            const int pair = k + 1 < K;
            const float *lo = src + k * sk, *hi = pair ? src + (k + 1) * sk : lo;
            const unsigned int keep = pair ? 0xffff0000u : 0u;
            long P;
            for (P = 0; P * 16 < n; P++) {
                const long w = n - 16 * P < 16 ? n - 16 * P : 16;
                unsigned int row[16];
                long c;
                for (c = 0; c < w; c++)
                    row[c] = fr_b16_bits(lo + 16 * P + c)
                             | ((fr_b16_bits(hi + 16 * P + c) << 16) & keep);
                memcpy(out + P * 16 * Kp + (k / 2) * 32, row, (size_t)w * sizeof row[0]);
            }
        }
    } else {
        for (j = 0; j < n; j++)
            for (k = 0; k < K; k++)
                out[(j / 16) * 16 * Kp + (k / 2) * 32 + (j % 16) * 2 + (k % 2)] =
                    fr_b16_round(src[j * sj + k * sk]);
    }
}

/* ------------------------------------------------------------------ portable C path */

static __attribute__((unused))
void fr_b16_gemm_c(const fr_b16 *A, long lda, long m, long K, const fr_b16 *Bp, long n,
                   float *C, long ldc, int accumulate, const float *bias)
{
    const long Kp = fr_b16_kp(K), pairs = (K + 1) / 2;
    long r, P, kk;
    int c;
    for (r = 0; r < m; r++) {
        const fr_b16 *a = A + r * lda;
        for (P = 0; P * 16 < n; P++) {
            const fr_b16 *bp = Bp + P * 16 * Kp;
            const int w = n - 16 * P < 16 ? (int)(n - 16 * P) : 16;
            float acc[16];
            float *cr = C + r * ldc + 16 * P;
            for (c = 0; c < 16; c++)
                acc[c] = c >= w ? 0.0f : accumulate ? cr[c] : bias ? bias[16 * P + c] : 0.0f;
            for (kk = 0; kk < pairs; kk++) {
                const float a0 = fr_b16_widen(a[2 * kk]), a1 = fr_b16_widen(a[2 * kk + 1]);
                const fr_b16 *b = bp + kk * 32;
                for (c = 0; c < 16; c++)
                    acc[c] += a0 * fr_b16_widen(b[2 * c]) + a1 * fr_b16_widen(b[2 * c + 1]);
            }
            for (c = 0; c < w; c++)
                cr[c] = acc[c];
        }
    }
}

#if FR_B16_X86

/* ------------------------------------------------------------------ AVX512-BF16 path */

/* Rows r..r+RM of C over NQ panels, for the pairs kk0..kk1 of k: per pair, NQ loads of
   the panels and RM broadcasts of A's pair feed RM*NQ dot products.  ``first``: the sums
   start from C's value (accumulate), the bias or zero, else from C (a later chunk).
   Columns past n (the last panel) are masked off in every load and store of C. */
#define FR_B16_BLOCK(RM, NQ)                                                               \
static inline __attribute__((always_inline)) FR_B16_AVX void                               \
fr_b16_block_##RM##_##NQ(const fr_b16 *A, long lda, const fr_b16 *bp, long Kp, long kk0,   \
                         long kk1, float *C, long ldc, int from_c, const float *bias,      \
                         const __mmask16 *mask)                                            \
{                                                                                          \
    __m512 acc[RM][NQ];                                                                    \
    __m512i w[NQ];                                                                         \
    long kk;                                                                               \
    int r, q;                                                                              \
    for (r = 0; r < RM; r++)                                                               \
        for (q = 0; q < NQ; q++) {                                                         \
            if (from_c)                                                                    \
                acc[r][q] = _mm512_maskz_loadu_ps(mask[q], C + r * ldc + 16 * q);          \
            else if (bias)                                                                 \
                acc[r][q] = _mm512_maskz_loadu_ps(mask[q], bias + 16 * q);                 \
            else                                                                           \
                acc[r][q] = _mm512_setzero_ps();                                           \
        }                                                                                  \
    for (kk = kk0; kk < kk1; kk++) {                                                       \
        for (q = 0; q < NQ; q++)                                                           \
            w[q] = _mm512_loadu_si512((const void *)(bp + q * 16 * Kp + kk * 32));         \
        for (r = 0; r < RM; r++) {                                                         \
            int pair;                                                                      \
            memcpy(&pair, A + r * lda + 2 * kk, sizeof pair);                              \
            const __m512i a = _mm512_set1_epi32(pair);                                     \
            for (q = 0; q < NQ; q++)                                                       \
                acc[r][q] = _mm512_dpbf16_ps(acc[r][q], (__m512bh)a, (__m512bh)w[q]);      \
        }                                                                                  \
    }                                                                                      \
    for (r = 0; r < RM; r++)                                                               \
        for (q = 0; q < NQ; q++)                                                           \
            _mm512_mask_storeu_ps(C + r * ldc + 16 * q, mask[q], acc[r][q]);               \
}

FR_B16_BLOCK(6, 4) FR_B16_BLOCK(2, 4) FR_B16_BLOCK(1, 4)
FR_B16_BLOCK(8, 3) FR_B16_BLOCK(2, 3) FR_B16_BLOCK(1, 3)
FR_B16_BLOCK(8, 2) FR_B16_BLOCK(2, 2) FR_B16_BLOCK(1, 2)
FR_B16_BLOCK(8, 1) FR_B16_BLOCK(2, 1) FR_B16_BLOCK(1, 1)

#undef FR_B16_BLOCK

#define FR_B16_ROWS(RM, NQ)                                                                \
    for (; r + RM <= m1; r += RM)                                                          \
        fr_b16_block_##RM##_##NQ(A + r * lda, lda, bp, Kp, kk0, kk1, c + r * ldc, ldc,     \
                                 from_c, bz, mask);                                        \
    for (; r + 2 <= m1; r += 2)                                                            \
        fr_b16_block_2_##NQ(A + r * lda, lda, bp, Kp, kk0, kk1, c + r * ldc, ldc, from_c,  \
                            bz, mask);                                                     \
    for (; r < m1; r++)                                                                    \
        fr_b16_block_1_##NQ(A + r * lda, lda, bp, Kp, kk0, kk1, c + r * ldc, ldc, from_c,  \
                            bz, mask);

/* chunks of 128 pairs of k (a chunk of 4 panels: 32 KiB) and of 128 rows, as _panel.h */
#define FR_B16_KC 128
#define FR_B16_MC 128

static __attribute__((unused)) FR_B16_AVX
void fr_b16_gemm_avx(const fr_b16 *A, long lda, long m, long K, const fr_b16 *Bp, long n,
                     float *C, long ldc, int accumulate, const float *bias)
{
    const long Kp = fr_b16_kp(K), pairs = (K + 1) / 2;
    long kk0, m0, m1, G, r;
    for (kk0 = 0; kk0 < pairs; kk0 += FR_B16_KC) {
        const long kk1 = pairs - kk0 < FR_B16_KC ? pairs : kk0 + FR_B16_KC;
        const int from_c = accumulate || kk0 > 0;
        for (m0 = 0; m0 < m; m0 = m1) {
            m1 = m - m0 < FR_B16_MC ? m : m0 + FR_B16_MC;
            for (G = 0; G * 64 < n; G++) {           /* groups of up to 4 panels */
                const long cols = n - 64 * G < 64 ? n - 64 * G : 64;
                const int nq = (int)((cols + 15) / 16);
                __mmask16 mask[4];
                int q;
                for (q = 0; q < 4; q++) {
                    const long left = cols - 16 * q;
                    mask[q] = left >= 16 ? (__mmask16)0xFFFF
                              : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;
                }
                const fr_b16 *bp = Bp + G * 4 * 16 * Kp;
                const float *bz = bias ? bias + 64 * G : NULL;
                float *c = C + 64 * G;
                r = m0;
                switch (nq) {
                case 4: FR_B16_ROWS(6, 4) break;
                case 3: FR_B16_ROWS(8, 3) break;
                case 2: FR_B16_ROWS(8, 2) break;
                default: FR_B16_ROWS(8, 1) break;
                }
            }
        }
    }
}

#undef FR_B16_ROWS

/* ------------------------------------------------------------------ AMX-BF16 path */

#define FR_B16_AMX \
    __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

/* the 64-byte tile configuration: palette 1; tiles 0-3 C (16 rows of 16 floats), 4-5 A
   (16 rows of 32 bf16), 6-7 B (16 pairs of k of 16 columns) */
struct fr_b16_tilecfg {
    unsigned char palette, start_row, reserved[14];
    unsigned short colsb[16];
    unsigned char rows[16];
};

/* The tile products of a block over one operand: A's columns kb0.. against the panels
   bp (Kp values of k a panel), into tiles 0-3.  With ``prefetch``, A's rows two steps of
   k ahead (strided, the hardware does not fetch them): for the first pair of panels of a
   block of rows, whose rows come from memory.  For the other pairs they are in L2, and
   the prefetches only cost.  One thread, GFLOP/s: the per-step fused product (64 rows,
   k = 1024, n = 2048) 806-957 with every pair's, 973-1004 with the first pair's; the
   input projection (6400 rows, k = 512, n = 2048) 705-809, 656-738, and 636-704 with
   none. */
static inline __attribute__((always_inline)) FR_B16_AMX void
fr_b16_amx_k(const fr_b16 *A, long lda, long Kp, const fr_b16 *bp, int rt, int ct,
             int prefetch)
{
    long kb;
    const long sa = lda * (long)sizeof(fr_b16);
    for (kb = 0; kb < Kp; kb += 32) {
        if (prefetch && kb + 64 < Kp) {
            int q;
            for (q = 0; q < 16 * rt; q++)
                _mm_prefetch((const char *)(A + q * lda + kb + 64), _MM_HINT_T0);
        }
        _tile_loadd(4, A + kb, sa);
        _tile_loadd(6, bp + kb * 16, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (ct > 1) {
            _tile_loadd(7, bp + 16 * Kp + kb * 16, 64);
            _tile_dpbf16ps(1, 4, 7);
        }
        if (rt > 1) {
            _tile_loadd(5, A + 16 * lda + kb, sa);
            _tile_dpbf16ps(2, 5, 6);
            if (ct > 1) _tile_dpbf16ps(3, 5, 7);
        }
    }
}

/* A 16- or 32-row block (rt tiles) times a 16- or 32-column block (ct panels) of C, over
   all of k: A's first Kp1 columns against the panels bp1, then (Kp2 > 0) the next Kp2
   against bp2; prefetching A's rows as fr_b16_amx_k.  The tile numbers are immediates,
   hence the branches. */
static inline __attribute__((always_inline)) FR_B16_AMX void
fr_b16_amx_block(const fr_b16 *A, long lda, long Kp1, const fr_b16 *bp1, long Kp2,
                 const fr_b16 *bp2, float *C, long ldc, int rt, int ct, int from_c,
                 const float *bias16, int prefetch)
{
    const long sc = ldc * (long)sizeof(float);
    if (from_c) {
        _tile_loadd(0, C, sc);
        if (ct > 1) _tile_loadd(1, C + 16, sc);
        if (rt > 1) _tile_loadd(2, C + 16 * ldc, sc);
        if (rt > 1 && ct > 1) _tile_loadd(3, C + 16 * ldc + 16, sc);
    } else if (bias16) {        /* 16 rows of the bias, 32 columns */
        _tile_loadd(0, bias16, 128);
        if (ct > 1) _tile_loadd(1, bias16 + 16, 128);
        if (rt > 1) _tile_loadd(2, bias16, 128);
        if (rt > 1 && ct > 1) _tile_loadd(3, bias16 + 16, 128);
    } else {
        _tile_zero(0);
        if (ct > 1) _tile_zero(1);
        if (rt > 1) _tile_zero(2);
        if (rt > 1 && ct > 1) _tile_zero(3);
    }
    fr_b16_amx_k(A, lda, Kp1, bp1, rt, ct, prefetch);
    if (Kp2 > 0)
        fr_b16_amx_k(A + Kp1, lda, Kp2, bp2, rt, ct, prefetch);
    _tile_stored(0, C, sc);
    if (ct > 1) _tile_stored(1, C + 16, sc);
    if (rt > 1) _tile_stored(2, C + 16 * ldc, sc);
    if (rt > 1 && ct > 1) _tile_stored(3, C + 16 * ldc + 16, sc);
}

/* rows of A a block (a multiple of 32): 256 KiB of A when K is 512 */
#define FR_B16_AMX_MC 256

static __attribute__((unused)) FR_B16_AMX
void fr_b16_gemm_amx(const fr_b16 *A, long lda, long m, long K, const fr_b16 *Bp, long K2,
                     const fr_b16 *Bp2, long n, float *C, long ldc, int accumulate,
                     const float *bias)
{
    const long Kp = fr_b16_kp(K), Kp2 = K2 > 0 ? fr_b16_kp(K2) : 0;
    const long mt = m / 16 * 16, nt = n / 16 * 16;
    struct fr_b16_tilecfg cfg;
    float bias16[16 * 32];
    long r, j, i, m0, m1;
    int t;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    /* blocks of FR_B16_AMX_MC rows (in the L2 cache) pass over the pairs of panels of
       B (each in the L1 cache while the block's rows pass over it) */
    for (m0 = 0; m0 < mt; m0 = m1) {
        m1 = mt - m0 < FR_B16_AMX_MC ? mt : m0 + FR_B16_AMX_MC;
        for (j = 0; j < nt; j += 32) {      /* a pair of panels (the last may be one) */
            const int ct = nt - j >= 32 ? 2 : 1;
            const fr_b16 *bp = Bp + (j / 16) * 16 * Kp;
            const fr_b16 *bp2 = Kp2 ? Bp2 + (j / 16) * 16 * Kp2 : NULL;
            const float *bz = NULL;
            if (bias && !accumulate) {
                for (r = 0; r < 16; r++)
                    for (i = 0; i < 16 * ct; i++)
                        bias16[r * 32 + i] = bias[j + i];
                bz = bias16;
            }
            for (r = m0; r < m1; r += 32) {
                const int rt = m1 - r >= 32 ? 2 : 1;
                fr_b16_amx_block(A + r * lda, lda, Kp, bp, Kp2, bp2, C + r * ldc + j, ldc,
                                 rt, ct, accumulate, bz, j == 0);
            }
        }
    }
    _tile_release();
    /* the columns after the whole panels, then the rows after the whole tiles */
    if (nt < n && mt > 0) {
        fr_b16_gemm_avx(A, lda, mt, K, Bp + (nt / 16) * 16 * Kp, n - nt, C + nt, ldc,
                        accumulate, bias ? bias + nt : NULL);
        if (Kp2)
            fr_b16_gemm_avx(A + Kp, lda, mt, K2, Bp2 + (nt / 16) * 16 * Kp2, n - nt, C + nt,
                            ldc, 1, NULL);
    }
    if (mt < m) {
        fr_b16_gemm_avx(A + mt * lda, lda, m - mt, K, Bp, n, C + mt * ldc, ldc, accumulate,
                        bias);
        if (Kp2)
            fr_b16_gemm_avx(A + mt * lda + Kp, lda, m - mt, K2, Bp2, n, C + mt * ldc, ldc, 1,
                            NULL);
    }
}

#endif /* FR_B16_X86 */

static __attribute__((unused))
void fr_b16_gemm2(const fr_b16 *A, long lda, long m, long K, const fr_b16 *Bp, long K2,
                  const fr_b16 *Bp2, long n, float *C, long ldc, int accumulate,
                  const float *bias);

/* C (m, n; row stride ldc) = A @ B, C += A @ B with accumulate, else C = bias + A @ B when
   bias (n values) is not NULL; A (m, K) bf16 rows from fr_b16_rows (row stride lda, at
   least fr_b16_kp(K), zeros after K), B packed by fr_b16_pack.  The path: AMX for a
   product with at least one whole 16 x 16 tile of C (its rows after the last whole tile
   and columns after the last whole panel by AVX512-BF16), else AVX512-BF16, else portable
   C, as fr_isa() allows. */
static __attribute__((unused))
void fr_b16_gemm(const fr_b16 *A, long lda, long m, long K, const fr_b16 *Bp, long n,
                 float *C, long ldc, int accumulate, const float *bias)
{
    fr_b16_gemm2(A, lda, m, K, Bp, 0, NULL, n, C, ldc, accumulate, bias);
}

/* fr_b16_gemm of two operands side by side in k: C (+)= A[:, :Kp] @ B + A[:, Kp:] @ B2
   (Kp = fr_b16_kp(K); B (K, n), B2 (K2, n) packed; lda >= Kp + fr_b16_kp(K2)), one sum
   per element of C; K2 = 0: B alone.  The input projection and the recurrent product
   of a step are one product so. */
static __attribute__((unused))
void fr_b16_gemm2(const fr_b16 *A, long lda, long m, long K, const fr_b16 *Bp, long K2,
                  const fr_b16 *Bp2, long n, float *C, long ldc, int accumulate,
                  const float *bias)
{
    const long Kp = fr_b16_kp(K);
    if (m <= 0 || n <= 0)
        return;
    if (accumulate)
        bias = NULL;
#if FR_B16_X86
    {
        const int isa = fr_isa();
        if (isa >= FR_ISA_AMX && m >= 16 && n >= 16) {
            fr_b16_gemm_amx(A, lda, m, K, Bp, K2, Bp2, n, C, ldc, accumulate, bias);
            return;
        }
        if (isa >= FR_ISA_BF16) {
            fr_b16_gemm_avx(A, lda, m, K, Bp, n, C, ldc, accumulate, bias);
            if (K2 > 0)
                fr_b16_gemm_avx(A + Kp, lda, m, K2, Bp2, n, C, ldc, 1, NULL);
            return;
        }
    }
#endif
    fr_b16_gemm_c(A, lda, m, K, Bp, n, C, ldc, accumulate, bias);
    if (K2 > 0)
        fr_b16_gemm_c(A + Kp, lda, m, K2, Bp2, n, C, ldc, 1, NULL);
}

/* The level the products run at (fr_isa()), and its cap: what _blas.set_isa_cap and
   _core.set_isa_cap set, each module's own copy of fr_isa_cap. */
static __attribute__((unused)) int fr_b16_isa(void) { return fr_isa(); }
static __attribute__((unused)) int fr_b16_isa_detected(void) { return fr_isa_detected(); }
static __attribute__((unused)) void fr_b16_set_cap(int cap) { fr_isa_cap = cap; }

#endif /* FASTRNN_B16_H */
