/* fastrnn's own matrix product, float: C = A @ B with B packed, register-blocked.
 *
 * Every step of a time loop multiplies a few rows (the batch rows of one thread) by the
 * same recurrent weight matrix: h @ W_hh.T forward, dG @ W_hh backward.  BLAS packs its
 * right-hand operand into its own panel layout on every call, and for a product of a few
 * rows that packing costs about as much as the arithmetic (with a large W_hh, more: the
 * packed copy is written and read again each step).  Here the operand is packed once per
 * call of a kernel, and each step runs a register-blocked product over the packed panels.
 * The products before and after the loops use it too where it beats BLAS (_blas.pyx,
 * _panel_pgemm).
 *
 *   C (m, n) = A (m, K) @ B (K, n)   [+ C when accumulate]
 *
 * Packed layout: panel P holds columns 64P .. 64P + w - 1 of B, w = min(64, n - 64P); its
 * element (k, c) is at P*64*K + k*w + c, so the k loop reads a panel in order.  n must be
 * a multiple of 16 (w is 16, 32, 48 or 64).  fr_panel_pack_f reads B through two strides,
 * B[k, j] = src[j*sj + k*sk], so that both W_hh.T (sj = H, sk = 1) and W_hh (sj = 1,
 * sk = H) pack from W_hh itself.
 *
 * The block of rows r..r+RM of C over a panel lives in RM*NQ vector registers (NQ = w/16
 * vectors of 16 floats) for the whole k loop: per k, NQ loads of the panel and RM
 * broadcasts of A feed RM*NQ independent multiply-adds; the next block's rows of C are
 * prefetched meanwhile (for short k loops a miss on C would otherwise dominate).  Each C
 * element is one sum over k in order, so results are the same whatever the number of
 * rows or threads.
 *
 * fr_panel_gemm_f is compiled for AVX-512, where the 16-float vector is one register and
 * the 4x4 block fits the 32 registers, and for the x86-64 baseline, picked when the module
 * loads; fr_panel_kernels_fast() says whether the running CPU has AVX-512.  The baseline
 * build is correct but slow (a 16-float vector spans four SSE registers), so without
 * AVX-512 fastrnn keeps BLAS for these products.
 */
#ifndef FASTRNN_PANEL_H
#define FASTRNN_PANEL_H

#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* an AVX-512 clone and a baseline one, picked when the module loads (an ifunc) */
#define FR_PANEL_TARGET __attribute__((target_clones("avx512f", "default")))
static inline int fr_panel_kernels_fast(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#else
#define FR_PANEL_TARGET
static inline int fr_panel_kernels_fast(void) { return 0; }
#endif

typedef float fr_pv16 __attribute__((vector_size(64)));

/* (unused: not every module that includes this header calls both functions) */
static __attribute__((unused))
void fr_panel_pack_f(const float *src, long n, long K, long sj, long sk, float *out)
{
    /* the inner loop runs along the source's contiguous axis */
    long P, k, c;
    for (P = 0; P * 64 < n; P++) {
        const long w = n - 64 * P < 64 ? n - 64 * P : 64;
        const float *first = src + 64 * P * sj;
        float *panel = out + P * 64 * K;
        if (sj == 1) {
            for (k = 0; k < K; k++)
                for (c = 0; c < w; c++)
                    panel[k * w + c] = first[k * sk + c];
        } else {
            for (c = 0; c < w; c++)
                for (k = 0; k < K; k++)
                    panel[k * w + c] = first[c * sj + k * sk];
        }
    }
}

/* The block kernel: rows r..r+RM of C, one panel of NQ vectors, over k in [0, K) of the
   panel chunk bp.  A is read as A[r*lda + k], or with ta (A given transposed) A[k*lda + r].
   Unaligned loads and stores through memcpy (NumPy aligns arrays to 16 bytes, not 64). */
#define FR_PANEL_BLOCK(RM, NQ)                                                             \
static inline __attribute__((always_inline)) void                                          \
fr_panel_block_##RM##_##NQ(const float *A, long lda, const int ta, const float *bp, long K,\
                           float *C, long ldc, int accumulate, const float *bias)          \
{                                                                                          \
    fr_pv16 acc[RM][NQ], w[NQ];                                                            \
    long k;                                                                                \
    int r, q;                                                                              \
    for (r = 0; r < RM; r++)            /* the next block's C, while this one computes */  \
        for (q = 0; q < NQ; q++)                                                           \
            __builtin_prefetch(C + (RM + r) * ldc + 16 * q, 1);                            \
    for (r = 0; r < RM; r++)                                                               \
        for (q = 0; q < NQ; q++) {                                                         \
            if (accumulate)                                                                \
                memcpy(&acc[r][q], C + r * ldc + 16 * q, sizeof(fr_pv16));                 \
            else if (bias)                                                                 \
                memcpy(&acc[r][q], bias + 16 * q, sizeof(fr_pv16));                        \
            else                                                                           \
                acc[r][q] = (fr_pv16){0};                                                  \
        }                                                                                  \
    for (k = 0; k < K; k++) {                                                              \
        for (q = 0; q < NQ; q++)                                                           \
            memcpy(&w[q], bp + k * 16 * NQ + 16 * q, sizeof(fr_pv16));                     \
        for (r = 0; r < RM; r++) {                                                         \
            const float a = ta ? A[k * lda + r] : A[r * lda + k];                          \
            for (q = 0; q < NQ; q++)                                                       \
                acc[r][q] += a * w[q];                                                     \
        }                                                                                  \
    }                                                                                      \
    for (r = 0; r < RM; r++)                                                               \
        for (q = 0; q < NQ; q++)                                                           \
            memcpy(C + r * ldc + 16 * q, &acc[r][q], sizeof(fr_pv16));                     \
}

/* Main blocks keep 8-16 accumulators; the last rows of a panel go 2, then 1 at a time. */
FR_PANEL_BLOCK(4, 4) FR_PANEL_BLOCK(2, 4) FR_PANEL_BLOCK(1, 4)
FR_PANEL_BLOCK(4, 3) FR_PANEL_BLOCK(2, 3) FR_PANEL_BLOCK(1, 3)
FR_PANEL_BLOCK(6, 2) FR_PANEL_BLOCK(2, 2) FR_PANEL_BLOCK(1, 2)
FR_PANEL_BLOCK(8, 1) FR_PANEL_BLOCK(2, 1) FR_PANEL_BLOCK(1, 1)

#undef FR_PANEL_BLOCK

#define FR_PANEL_ROWS(RM, NQ)                                                              \
    for (; r + RM <= m1; r += RM) {                                                        \
        if (pf < pfend) {                                                                  \
            for (u = 0; u < FR_PANEL_PREFETCH; u++)                                        \
                __builtin_prefetch(pf + 16 * u, 0, 3);                                     \
            pf += 16 * FR_PANEL_PREFETCH;                                                  \
        }                                                                                  \
        fr_panel_block_##RM##_##NQ(a + r * ars, lda, ta, bp, kn, c + r * ldc, ldc, acc,    \
                                   bz);                                                    \
    }                                                                                      \
    for (; r + 2 <= m1; r += 2)                                                            \
        fr_panel_block_2_##NQ(a + r * ars, lda, ta, bp, kn, c + r * ldc, ldc, acc, bz);    \
    for (; r < m1; r++)                                                                    \
        fr_panel_block_1_##NQ(a + r * ars, lda, ta, bp, kn, c + r * ldc, ldc, acc, bz);

/* Blocking: chunks of FR_PANEL_KC values of k, so that a panel's chunk (at most 32 KiB)
   stays in the L1 cache while the row blocks pass over it, however long K is (with
   chunks of 256, 64 KiB, the per-step products of H=512 ran 8 % slower on a 48 KiB L1);
   and blocks of FR_PANEL_MC rows, so that a long A is read from memory once per chunk,
   not once per panel.  Each C element is still one sum over k in order (the partial sum
   goes through C between chunks, in float, so the chunk size changes no result). */
#define FR_PANEL_KC 128
#define FR_PANEL_MC 256

/* While the row blocks pass over one panel's chunk, the chunk that comes next is fetched
   into L1, FR_PANEL_PREFETCH cache lines before each block.  A per-step product reads its
   4 MiB W_hh.T (H=512) from L3 at every step; without this, the first row block of each
   chunk waited for it (64 rows, K=512, n=2048: 172 -> 178 GFLOP/s a core). */
#define FR_PANEL_PREFETCH 16

/* One chunk k0 .. k0 + kn of m1 rows over every panel: ``a`` is A at the block's first
   row and k0, ``C`` C at its first row.  ``next`` is the chunk that comes after this one
   (NULL: none). */
static inline __attribute__((always_inline)) void
fr_panel_chunk(const float *a, long lda, const int ta, long m1, long K, long k0, long kn,
               const float *Bp, long n, float *C, long ldc, int acc, const float *bias,
               const float *next)
{
    const long ars = ta ? 1 : lda;
    long P, r, u;
    for (P = 0; P * 64 < n; P++) {
        const long w = n - 64 * P < 64 ? n - 64 * P : 64;
        const float *bp = Bp + P * 64 * K + k0 * w;
        const float *bz = bias ? bias + 64 * P : NULL;
        float *c = C + 64 * P;
        /* the next chunk: the next panel's, or after the last panel the one in ``next`` */
        const float *pf = NULL, *pfend = NULL;
        if (next) {
            if ((P + 1) * 64 < n) {
                const long w2 = n - 64 * (P + 1) < 64 ? n - 64 * (P + 1) : 64;
                pf = Bp + (P + 1) * 64 * K + k0 * w2;
                pfend = pf + kn * w2;
            } else {
                pf = next;
                pfend = next + FR_PANEL_KC * (n < 64 ? n : 64);
            }
        }
        r = 0;
        switch (w / 16) {
        case 4: FR_PANEL_ROWS(4, 4) break;
        case 3: FR_PANEL_ROWS(4, 3) break;
        case 2: FR_PANEL_ROWS(6, 2) break;
        default: FR_PANEL_ROWS(8, 1) break;
        }
    }
}

#undef FR_PANEL_ROWS

/* Blocks of rows outside, chunks of k inside: the block's C (FR_PANEL_MC rows) stays in L2
   over all of k, and B comes again for each block, fetched ahead as above.  (Chunks
   outside read and wrote all of C once per chunk: the products before and after the loops,
   T*B rows, kept it in memory; 6400 rows, K=2048, n=512: 158 -> 168 GFLOP/s a core.)

   With ``abuf``, each chunk of A is first copied there, kn rows of mb values (ta) or mb
   rows of kn values, so that the row blocks read it from a few pages (see
   fr_panel_copies_a). */
static inline __attribute__((always_inline)) void
fr_panel_gemm_body(const float *A, long lda, const int ta, long m, long K, const float *Bp,
                   long n, float *C, long ldc, int accumulate, const float *bias, float *abuf)
{
    const long p0 = n < 64 ? n : 64;        /* the width of panel 0 */
    long k0, m0, m1, k;
    for (m0 = 0; m0 < m; m0 = m1) {
        m1 = m - m0 < FR_PANEL_MC ? m : m0 + FR_PANEL_MC;
        for (k0 = 0; k0 < K; k0 += FR_PANEL_KC) {
            const long kn = K - k0 < FR_PANEL_KC ? K - k0 : FR_PANEL_KC;
            const int acc = accumulate || k0 > 0;
            /* after the last chunk of k, the first one again for the next block of rows */
            const float *next = k0 + FR_PANEL_KC < K ? Bp + (k0 + FR_PANEL_KC) * p0
                                : m1 < m && K > FR_PANEL_KC ? Bp : NULL;
            const float *a = ta ? A + k0 * lda + m0 : A + m0 * lda + k0;
            long lda_chunk = lda;
            if (abuf) {     /* (ta) kn rows of mb values, else mb rows of kn */
                const long mb = m1 - m0, rows = ta ? kn : mb, len = ta ? mb : kn;
                for (k = 0; k < rows; k++)
                    memcpy(abuf + k * len, a + k * lda, len * sizeof(float));
                a = abuf;
                lda_chunk = len;
            }
            fr_panel_chunk(a, lda_chunk, ta, m1 - m0, K, k0, kn, Bp, n, C + m0 * ldc, ldc,
                           acc, bias, next);
        }
    }
}

/* Whether a product copies A's chunks before the row blocks read them.  A copy is read
   once per panel, so only with at least 4 panels (n >= 256).  With ta, A (K, m) is read
   down its columns, each k a row lda apart: a weight gradient dG.T @ X reads dG (T*B, 4H)
   so, each k a new page (LSTM H=512, 1024 rows, K=6400, n=512: 135 -> 161 GFLOP/s a
   core).  Without ta, when A's rows are 8 KiB or more apart and there are more rows than
   one block: dX = dG @ W_ih (6400 rows of 2048, n=512) 176 -> 189, (3200 of 4096,
   n=1024) 174 -> 189; with rows 4 KiB apart or fewer, or short K, the copy costs more
   than it saves. */
static inline int fr_panel_copies_a(int ta, long m, long K, long n, long lda)
{
    if (n < 256)
        return 0;
    return ta || (m > FR_PANEL_MC && K >= FR_PANEL_KC && lda >= 2048);
}

/* C (m, n; row stride ldc) = A @ B, C += A @ B when accumulate, else C = bias + A @ B when
   bias (n values, added to every row) is not NULL.  A is (m, K) with row stride lda, or
   with ta its transpose is given: (K, m) with row stride lda.  B (K, n) is packed by
   fr_panel_pack_f.  The sums start from C, the bias or zero, then add the products in
   the order of k.  Where fr_panel_copies_a, the call allocates FR_PANEL_KC * FR_PANEL_MC
   floats for its copies of A (when that fails, it reads A in place: the same result,
   slower). */
FR_PANEL_TARGET static __attribute__((unused))
void fr_panel_gemm_f(const float *A, long lda, int ta, long m, long K, const float *Bp,
                     long n, float *C, long ldc, int accumulate, const float *bias)
{
    float *abuf = NULL;
    if (accumulate)
        bias = NULL;
    if (fr_panel_copies_a(ta, m, K, n, lda))
        abuf = (float *)aligned_alloc(64, FR_PANEL_KC * FR_PANEL_MC * sizeof(float));
    if (ta)
        fr_panel_gemm_body(A, lda, 1, m, K, Bp, n, C, ldc, accumulate, bias, abuf);
    else
        fr_panel_gemm_body(A, lda, 0, m, K, Bp, n, C, ldc, accumulate, bias, abuf);
    free(abuf);
}

#endif /* FASTRNN_PANEL_H */
