/* Elementwise cell math of fastrnn's kernels: the gate nonlinearities and state updates of
 * one time step, forward and backward, over the active rows of a batch; and, at the end,
 * the fused forward loop of a float LSTM over one batch row.
 *
 * The notation is the one of fastrnn/_core.pyx: `g` points at the gate block of a row
 * (G*H values, gates stacked as PyTorch stacks them), `h`, `c` at the running state.
 *
 * float: exp and tanh are computed here, in float arithmetic only, with range reduction
 * and polynomials (the classic Cephes single-precision coefficients, within 2 ulp), so
 * that the compiler vectorises every loop.  Each loop function is compiled three times
 * (AVX-512, AVX2 and the x86-64 baseline) and the best one for the running CPU is picked
 * when the module loads (GCC's target_clones, an ifunc).
 * double: the C library's exp and tanh, so that float64 results match NumPy's to the
 * last few ulp (the reference tests compare to 1e-10).
 */
#ifndef FASTRNN_CELLMATH_H
#define FASTRNN_CELLMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- the cell kinds ------------------------------------------------------------------

   One row per kind of the kernels (CELL_* of _cellmath.pxd, the kernel_id of _kinds.py):
   what a time loop does differently for it.  A new kind is a row here, its cases in
   _cell_step and _cell_grad (_cellmath.pxd) and its cell math below. */
typedef struct {
    int gates;            /* G: its products are G*H wide */
    int biases;           /* bias vectors of G*H values: b_ih and b_hh, or FastRNN's b */
    int biases_in_step;   /* the step adds them (FastGRNN), not the input projection */
    int product_apart;    /* h @ W_hh.T into a workspace Gh (GRU: r scales part of it) */
    int direct_path;      /* h_prev reaches h' directly too: the back product adds on */
    int keeps_candidate;  /* training keeps h~ in a cache Ht (FastGRNN) */
    int loop_sums;        /* blocks of H values the backward loop sums per row */
    int scalar_sums;      /*   of which the last ones are totals (the trainable scalars) */
    int reset_before;     /* the reset gate scales h before the product: two products a
                             step, r*h kept in Hn (GRU with linear_before_reset=0) */
    int peephole;         /* the gates read c through a vector p (3H: p_i, p_f, p_o) */
    int layer_norm;       /* layer-normalised (Ba et al. 2016): its own loops, ln_forward
                             and ln_backward of _core.pyx; the sums: the gains of the
                             recurrent (4H) and cell (H) normalisations, the cell's bias */
} fr_kind;

static const fr_kind FR_KINDS[8] = {
    /*            G  biases  in_step  apart  direct  cand  sums  scalars  before  peep  ln */
    /* RNN */    {1, 2,      0,       0,     0,      0,    0,    0,       0,      0,   0},
    /* LSTM */   {4, 2,      0,       0,     0,      0,    0,    0,       0,      0,   0},
    /* GRU */    {3, 2,      0,       1,     1,      0,    0,    0,       0,      0,   0},
    /* FastRNN */{1, 1,      0,       0,     1,      0,    2,    2,       0,      0,   0},
    /* FastGRNN*/{1, 2,      1,       0,     1,      1,    4,    2,       0,      0,   0},
    /* GRU, r before the product */
                 {3, 2,      0,       0,     1,      0,    0,    0,       1,      0,   0},
    /* LSTM with peepholes */
                 {4, 2,      0,       0,     0,      0,    3,    0,       0,      1,   0},
    /* LSTM, layer-normalised */
                 {4, 0,      0,       1,     0,      0,    6,    0,       0,      0,   1},
};

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FR_CLONES
#endif

#define FR_RESTRICT __restrict__

/* ---- float exp / sigmoid / tanh ---------------------------------------------------- */

static inline float fr_expf(float x)
{
    /* e^x = 2^n * e^r, n = round(x / ln 2), |r| <= ln(2)/2 */
    const float magic = 12582912.0f;              /* 1.5 * 2^23: rounds to an integer */
    float t, n, r, p, scale;
    int32_t bits;
    x = x < -87.0f ? -87.0f : x;                  /* e^-87 is still a normal float */
    x = x > 88.0f ? 88.0f : x;                    /* e^88 is still finite */
    t = x * 1.44269504088896341f + magic;
    n = t - magic;
    memcpy(&bits, &t, sizeof bits);
    bits -= 0x4B400000;                           /* the integer n itself */
    r = x - n * 0.693359375f;                     /* ln 2 in two parts (Cody-Waite) */
    r = r + n * 2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    bits = (bits + 127) << 23;                    /* 2^n */
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float fr_sigmoidf(float x)
{
    return 1.0f / (1.0f + fr_expf(-x));
}

static inline float fr_tanhf(float x)
{
    /* |x| < 0.625: odd polynomial; otherwise (1 - e^-2|x|) / (1 + e^-2|x|) */
    float a = x < 0.0f ? -x : x;
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z
                     - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z
                   - 3.33332819422e-1f) * z * x + x;
    float e = fr_expf(-2.0f * a);
    float large = (1.0f - e) / (1.0f + e);
    large = x < 0.0f ? -large : large;
    return a < 0.625f ? small : large;
}

static inline double fr_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The GRU's r, z, n blocks of row b of a (rows, 3H) array: pointers P##r, P##z, P##n */
#define FR_GRU_BLOCKS(Q, P, base, b, H)                                                    \
    Q *FR_RESTRICT P##r = (base) + (b) * 3 * (H), *FR_RESTRICT P##z = P##r + (H),          \
        *FR_RESTRICT P##n = P##r + 2 * (H)

/* ---- the loops, once per precision ------------------------------------------------- */

#define FR_DEFINE(T, SFX, SIGMOID, TANH, SQRT)                                                   \
                                                                                           \
/* out += A.sum(axis=0), A (rows, cols) with row stride lda: the bias gradients, summed    \
   row by row (in the order of the rows) */                                                \
FR_CLONES void fr_add_colsum_##SFX(const T *FR_RESTRICT A, long rows, long cols, long lda, \
                                   T *FR_RESTRICT out)                                     \
{                                                                                          \
    long r, j;                                                                             \
    for (r = 0; r < rows; r++) {                                                           \
        const T *FR_RESTRICT a = A + r * lda;                                              \
        for (j = 0; j < cols; j++) out[j] += a[j];                                         \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* RNN, forward 2.-3.: a = act(a) over n values (relu or tanh) */                          \
FR_CLONES void fr_rnn_act_##SFX(T *FR_RESTRICT a, long n, int relu)                        \
{                                                                                          \
    long j;                                                                                \
    if (relu) {                                                                            \
        for (j = 0; j < n; j++) a[j] = a[j] < (T)0 ? (T)0 : a[j];   /* NaN stays NaN */    \
    } else {                                                                               \
        for (j = 0; j < n; j++) a[j] = TANH(a[j]);                                         \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* RNN, backward 2.: dG = dh * act'(h), in place of the cached h, over n values */         \
FR_CLONES void fr_rnn_grad_##SFX(T *FR_RESTRICT a, const T *FR_RESTRICT dh, long n,        \
                                 int relu)                                                 \
{                                                                                          \
    long j;                                                                                \
    if (relu) {                                                                            \
        for (j = 0; j < n; j++) a[j] = a[j] > (T)0 ? dh[j] : (T)0;                         \
    } else {                                                                               \
        for (j = 0; j < n; j++) a[j] = dh[j] * ((T)1 - a[j] * a[j]);                       \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* LSTM, forward 2.-3.: gates i f g o in place, c = f*c + i*g, h = o*tanh(c) */            \
FR_CLONES void fr_lstm_step_##SFX(T *FR_RESTRICT gates, T *FR_RESTRICT h,                  \
                                  T *FR_RESTRICT c, long n, long H)                        \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gi = gates + b * 4 * H, *FR_RESTRICT gf = gi + H;                   \
        T *FR_RESTRICT gg = gi + 2 * H, *FR_RESTRICT go = gi + 3 * H;                      \
        T *FR_RESTRICT hb = h + b * H, *FR_RESTRICT cb = c + b * H;                        \
        for (j = 0; j < H; j++) {                                                          \
            T i = SIGMOID(gi[j]), f = SIGMOID(gf[j]), g = TANH(gg[j]), o = SIGMOID(go[j]); \
            T cn = f * cb[j] + i * g;                                                      \
            gi[j] = i; gf[j] = f; gg[j] = g; go[j] = o;                                    \
            cb[j] = cn;                                                                    \
            hb[j] = o * TANH(cn);                                                          \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* LSTM, backward 2.: from gates (i f g o) and c_prev: dG in place of the gates and        \
   dc_prev in place of dc; dh is the gradient of this step's h (both paths added) */       \
FR_CLONES void fr_lstm_grad_##SFX(T *FR_RESTRICT gates, const T *FR_RESTRICT cp,           \
                                  const T *FR_RESTRICT dh, T *FR_RESTRICT dc, long n,      \
                                  long H)                                                  \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gi = gates + b * 4 * H, *FR_RESTRICT gf = gi + H;                   \
        T *FR_RESTRICT gg = gi + 2 * H, *FR_RESTRICT go = gi + 3 * H;                      \
        const T *FR_RESTRICT cpb = cp + b * H, *FR_RESTRICT dhb = dh + b * H;              \
        T *FR_RESTRICT dcb = dc + b * H;                                                   \
        for (j = 0; j < H; j++) {                                                          \
            T i = gi[j], f = gf[j], g = gg[j], o = go[j];                                  \
            T tc = TANH(f * cpb[j] + i * g);              /* tanh(c_t), recomputed */      \
            T dct = dcb[j] + dhb[j] * o * ((T)1 - tc * tc);                                \
            gi[j] = dct * g * i * ((T)1 - i);             /* di */                         \
            gf[j] = dct * cpb[j] * f * ((T)1 - f);        /* df */                         \
            gg[j] = dct * i * ((T)1 - g * g);             /* dg */                         \
            go[j] = dhb[j] * tc * o * ((T)1 - o);         /* do */                         \
            dcb[j] = dct * f;                             /* dc_prev */                    \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* GRU, forward 2.-3.: with gh = h @ W_hh.T, gates r z n in place, h updated,              \
   hn = W_hn h + b_hn cached (if hn is not NULL) */                                        \
FR_CLONES void fr_gru_step_##SFX(T *FR_RESTRICT gates, const T *FR_RESTRICT gh,            \
                                 const T *FR_RESTRICT b_hn, T *FR_RESTRICT h,              \
                                 T *FR_RESTRICT hn, long n, long H)                        \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        FR_GRU_BLOCKS(T, g, gates, b, H);                                                  \
        FR_GRU_BLOCKS(const T, q, gh, b, H);                                               \
        T *FR_RESTRICT hb = h + b * H;                                                     \
        T *FR_RESTRICT hnb = hn ? hn + b * H : 0;                                          \
        for (j = 0; j < H; j++) {                                                          \
            T r = SIGMOID(gr[j] + qr[j]), z = SIGMOID(gz[j] + qz[j]);                      \
            T whn = qn[j] + (b_hn ? b_hn[j] : (T)0);                                       \
            T nn = TANH(gn[j] + r * whn);                                                  \
            gr[j] = r; gz[j] = z; gn[j] = nn;                                              \
            if (hnb) hnb[j] = whn;                                                         \
            hb[j] = nn + z * (hb[j] - nn);                /* (1-z)*n + z*h */              \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* GRU, backward 2.: dG (input side) in place of the gates, dHn in place of hn, dGh        \
   (hidden side) written, dh = dh * z (the direct path) */                                 \
FR_CLONES void fr_gru_grad_##SFX(T *FR_RESTRICT gates, T *FR_RESTRICT hn,                  \
                                 T *FR_RESTRICT dgh, const T *FR_RESTRICT hp,              \
                                 T *FR_RESTRICT dh, long n, long H)                        \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        FR_GRU_BLOCKS(T, g, gates, b, H);                                                  \
        FR_GRU_BLOCKS(T, q, dgh, b, H);                                                    \
        T *FR_RESTRICT hnb = hn + b * H, *FR_RESTRICT dhb = dh + b * H;                    \
        const T *FR_RESTRICT hpb = hp + b * H;                                             \
        for (j = 0; j < H; j++) {                                                          \
            T r = gr[j], z = gz[j], nn = gn[j];                                            \
            T dnp = dhb[j] * ((T)1 - z) * ((T)1 - nn * nn);   /* d(n pre-activation) */    \
            T dzp = dhb[j] * (hpb[j] - nn) * z * ((T)1 - z);  /* d(z pre-activation) */    \
            T drp = dnp * hnb[j] * r * ((T)1 - r);            /* d(r pre-activation) */    \
            gr[j] = drp; gz[j] = dzp; gn[j] = dnp;                                         \
            qr[j] = drp; qz[j] = dzp; qn[j] = dnp * r;                                     \
            hnb[j] = dnp * r;                                 /* d(W_hn h + b_hn) */       \
            dhb[j] = dhb[j] * z;                              /* dh_prev, direct path */   \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* FastRNN, forward 2.-3.: g = tanh(g) (the candidate h~, over n rows of H values),        \
   h = alpha*h~ + beta*h */                                                                \
FR_CLONES void fr_fastrnn_step_##SFX(T *FR_RESTRICT g, T *FR_RESTRICT h, T alpha, T beta,  \
                                     long n)                                               \
{                                                                                          \
    long j;                                                                                \
    for (j = 0; j < n; j++) {                                                              \
        T a = TANH(g[j]);                                                                  \
        g[j] = a;                                                                          \
        h[j] = alpha * a + beta * h[j];                                                    \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* FastRNN, backward 2.: from dh (reaching h_t), the cached h~ in g and h_prev: dG in      \
   place of h~, dh = beta*dh (the direct path); acc (2H per row: dalpha, dbeta per         \
   unit) += the terms of the scalars' gradients */                                         \
FR_CLONES void fr_fastrnn_grad_##SFX(T *FR_RESTRICT g, const T *FR_RESTRICT hp,            \
                                     T *FR_RESTRICT dh, T alpha, T beta, T *FR_RESTRICT acc, \
                                     long n, long H)                                       \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gb = g + b * H, *FR_RESTRICT dhb = dh + b * H;                      \
        const T *FR_RESTRICT hpb = hp + b * H;                                             \
        T *FR_RESTRICT ab = acc + b * 2 * H;                                               \
        for (j = 0; j < H; j++) {                                                          \
            T a = gb[j], d = dhb[j];                                                       \
            ab[j] += d * a;                                      /* dalpha */              \
            ab[H + j] += d * hpb[j];                             /* dbeta */               \
            gb[j] = alpha * d * ((T)1 - a * a);                                            \
            dhb[j] = beta * d;                                                             \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* FastGRNN, forward 2.-3.: from g = W x + U h (no bias), z = sigmoid(g + b_z),            \
   h~ = tanh(g + b_h), h = (zeta*(1-z) + nu)*h~ + z*h; z in place of g, h~ cached in ht    \
   (if ht is not NULL); b_z, b_h may be NULL (no biases) */                                \
FR_CLONES void fr_fastgrnn_step_##SFX(T *FR_RESTRICT g, const T *FR_RESTRICT b_z,          \
                                      const T *FR_RESTRICT b_h, T zeta, T nu,              \
                                      T *FR_RESTRICT h, T *FR_RESTRICT ht, long n, long H) \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gb = g + b * H, *FR_RESTRICT hb = h + b * H;                        \
        T *FR_RESTRICT htb = ht ? ht + b * H : 0;                                          \
        for (j = 0; j < H; j++) {                                                          \
            T z = SIGMOID(gb[j] + (b_z ? b_z[j] : (T)0));                                  \
            T c = TANH(gb[j] + (b_h ? b_h[j] : (T)0));                                     \
            gb[j] = z;                                                                     \
            if (htb) htb[j] = c;                                                           \
            hb[j] = (zeta * ((T)1 - z) + nu) * c + z * hb[j];                              \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* FastGRNN, backward 2.: from dh (reaching h_t), the cached z (in g), h~ (ht) and h_prev: \
   dG = dG_z + dG_h in place of z, dh = z*dh (the direct path); acc (4H per row: db_z,     \
   db_h, dzeta, dnu per unit) += their terms */                                            \
FR_CLONES void fr_fastgrnn_grad_##SFX(T *FR_RESTRICT g, const T *FR_RESTRICT ht,           \
                                      const T *FR_RESTRICT hp, T *FR_RESTRICT dh, T zeta,  \
                                      T nu, T *FR_RESTRICT acc, long n, long H)            \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gb = g + b * H, *FR_RESTRICT dhb = dh + b * H;                      \
        const T *FR_RESTRICT htb = ht + b * H, *FR_RESTRICT hpb = hp + b * H;              \
        T *FR_RESTRICT ab = acc + b * 4 * H;                                               \
        for (j = 0; j < H; j++) {                                                          \
            T z = gb[j], c = htb[j], d = dhb[j];                                           \
            T dz = d * (hpb[j] - zeta * c) * z * ((T)1 - z);     /* dG_z */                \
            T dc = d * (zeta * ((T)1 - z) + nu) * ((T)1 - c * c); /* dG_h */               \
            ab[j] += dz;                                                                   \
            ab[H + j] += dc;                                                               \
            ab[2 * H + j] += d * ((T)1 - z) * c;                /* dzeta */                \
            ab[3 * H + j] += d * c;                             /* dnu */                  \
            gb[j] = dz + dc;                                                               \
            dhb[j] = z * d;                                                                \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* GRU with the reset gate before the product, forward 2a.: with the r, z blocks of the    \
   gates holding their pre-activations (input and recurrent), r and z in place and         \
   rh = r * h (n rows of H values; the product rh @ W_hn.T then joins the n block) */      \
FR_CLONES void fr_grurb_gate_##SFX(T *FR_RESTRICT gates, const T *FR_RESTRICT h,           \
                                   T *FR_RESTRICT rh, long n, long H)                      \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        FR_GRU_BLOCKS(T, g, gates, b, H);                                                  \
        const T *FR_RESTRICT hb = h + b * H;                                               \
        T *FR_RESTRICT rhb = rh + b * H;                                                   \
        for (j = 0; j < H; j++) {                                                          \
            T r = SIGMOID(gr[j]);                                                          \
            gr[j] = r;                                                                     \
            gz[j] = SIGMOID(gz[j]);                                                        \
            rhb[j] = r * hb[j];                                                            \
        }                                                                                  \
        (void)gn;                                                                          \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* ... forward 2b.-3.: n = tanh(n block) in place, h = (1-z)*n + z*h */                    \
FR_CLONES void fr_grurb_step_##SFX(T *FR_RESTRICT gates, T *FR_RESTRICT h, long n, long H) \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        FR_GRU_BLOCKS(T, g, gates, b, H);                                                  \
        T *FR_RESTRICT hb = h + b * H;                                                     \
        for (j = 0; j < H; j++) {                                                          \
            T nn = TANH(gn[j]);                                                            \
            gn[j] = nn;                                                                    \
            hb[j] = nn + gz[j] * (hb[j] - nn);                                             \
        }                                                                                  \
        (void)gr;                                                                          \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* ... backward 2a.: from dh (reaching h_t) and the cached r, z, n and h_prev: the z and   \
   n blocks of dG in place, dh = dh * z (the direct path) */                               \
FR_CLONES void fr_grurb_grad_##SFX(T *FR_RESTRICT gates, const T *FR_RESTRICT hp,          \
                                   T *FR_RESTRICT dh, long n, long H)                      \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        FR_GRU_BLOCKS(T, g, gates, b, H);                                                  \
        T *FR_RESTRICT dhb = dh + b * H;                                                   \
        const T *FR_RESTRICT hpb = hp + b * H;                                             \
        for (j = 0; j < H; j++) {                                                          \
            T z = gz[j], nn = gn[j], d = dhb[j];                                           \
            gn[j] = d * ((T)1 - z) * ((T)1 - nn * nn);       /* d(n pre-activation) */     \
            gz[j] = d * (hpb[j] - nn) * z * ((T)1 - z);      /* d(z pre-activation) */     \
            dhb[j] = d * z;                                                                \
        }                                                                                  \
        (void)gr;                                                                          \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* ... backward 2b.: from drh = dn @ W_hn (the gradient of r*h_prev): the r block of dG    \
   in place of r, dh += drh * r */                                                         \
FR_CLONES void fr_grurb_reset_grad_##SFX(T *FR_RESTRICT gates, const T *FR_RESTRICT drh,   \
                                         const T *FR_RESTRICT hp, T *FR_RESTRICT dh,       \
                                         long n, long H)                                   \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gr = gates + b * 3 * H, *FR_RESTRICT dhb = dh + b * H;              \
        const T *FR_RESTRICT d = drh + b * H, *FR_RESTRICT hpb = hp + b * H;               \
        for (j = 0; j < H; j++) {                                                          \
            T r = gr[j];                                                                   \
            gr[j] = d[j] * hpb[j] * r * ((T)1 - r);          /* d(r pre-activation) */     \
            dhb[j] += d[j] * r;                                                            \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* LSTM with peepholes p = (p_i, p_f, p_o) (3H), forward 2.-3.: i = sigmoid(. + p_i*c),    \
   f = sigmoid(. + p_f*c), g = tanh(.), c = f*c + i*g, o = sigmoid(. + p_o*c), h = o*tanh(c) \
   (gates in place) */                                                                     \
FR_CLONES void fr_lstmp_step_##SFX(T *FR_RESTRICT gates, const T *FR_RESTRICT p,           \
                                   T *FR_RESTRICT h, T *FR_RESTRICT c, long n, long H)     \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gi = gates + b * 4 * H, *FR_RESTRICT gf = gi + H;                   \
        T *FR_RESTRICT gg = gi + 2 * H, *FR_RESTRICT go = gi + 3 * H;                      \
        T *FR_RESTRICT hb = h + b * H, *FR_RESTRICT cb = c + b * H;                        \
        for (j = 0; j < H; j++) {                                                          \
            T cp = cb[j];                                                                  \
            T i = SIGMOID(gi[j] + p[j] * cp), f = SIGMOID(gf[j] + p[H + j] * cp);          \
            T g = TANH(gg[j]);                                                             \
            T cn = f * cp + i * g;                                                         \
            T o = SIGMOID(go[j] + p[2 * H + j] * cn);                                      \
            gi[j] = i; gf[j] = f; gg[j] = g; go[j] = o;                                    \
            cb[j] = cn;                                                                    \
            hb[j] = o * TANH(cn);                                                          \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* ... backward 2.: dG in place of the gates, dc becomes dc_prev; acc (3H per row: dp_i,   \
   dp_f, dp_o per unit) += their terms */                                                  \
FR_CLONES void fr_lstmp_grad_##SFX(T *FR_RESTRICT gates, const T *FR_RESTRICT cp,          \
                                   const T *FR_RESTRICT p, const T *FR_RESTRICT dh,        \
                                   T *FR_RESTRICT dc, T *FR_RESTRICT acc, long n, long H)  \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gi = gates + b * 4 * H, *FR_RESTRICT gf = gi + H;                   \
        T *FR_RESTRICT gg = gi + 2 * H, *FR_RESTRICT go = gi + 3 * H;                      \
        const T *FR_RESTRICT cpb = cp + b * H, *FR_RESTRICT dhb = dh + b * H;              \
        T *FR_RESTRICT dcb = dc + b * H, *FR_RESTRICT ab = acc + b * 3 * H;                \
        for (j = 0; j < H; j++) {                                                          \
            T i = gi[j], f = gf[j], g = gg[j], o = go[j];                                  \
            T cn = f * cpb[j] + i * g, tc = TANH(cn);         /* c_t, recomputed */        \
            T dop = dhb[j] * tc * o * ((T)1 - o);             /* do */                     \
            T dct = dcb[j] + dhb[j] * o * ((T)1 - tc * tc) + dop * p[2 * H + j];           \
            T dip = dct * g * i * ((T)1 - i);                 /* di */                     \
            T dfp = dct * cpb[j] * f * ((T)1 - f);            /* df */                     \
            gi[j] = dip; gf[j] = dfp;                                                      \
            gg[j] = dct * i * ((T)1 - g * g);                 /* dg */                     \
            go[j] = dop;                                                                   \
            dcb[j] = dct * f + dip * p[j] + dfp * p[H + j];   /* dc_prev */                \
            ab[j] += dip * cpb[j];                                                         \
            ab[H + j] += dfp * cpb[j];                                                     \
            ab[2 * H + j] += dop * cn;                                                     \
        }                                                                                  \
    }                                                                                      \
} \
                                                                                           \
/* ---- layer normalisation (Ba, Kiros & Hinton 2016) ------------------------------------ \
   Over n values of a row: xh = (x - mean) / sqrt(var + eps), var the mean squared         \
   deviation (PyTorch's LayerNorm), then gain * xh + bias.  Sums run in 16 interleaved     \
   partial sums, so that the compiler vectorises them; the order is fixed, whatever the    \
   instruction set. */                                                                     \
                                                                                           \
static inline T fr_sum16_##SFX(const T *FR_RESTRICT a, long n)                             \
{                                                                                          \
    T acc[16] = {0};                                                                       \
    T total = 0;                                                                           \
    long j, k;                                                                             \
    for (j = 0; j + 16 <= n; j += 16)                                                      \
        for (k = 0; k < 16; k++) acc[k] += a[j + k];                                       \
    for (k = 0; k < 16; k++) total += acc[k];                                              \
    for (; j < n; j++) total += a[j];                                                      \
    return total;                                                                          \
}                                                                                          \
                                                                                           \
static inline T fr_dot16_##SFX(const T *FR_RESTRICT a, const T *FR_RESTRICT b, long n)     \
{                                                                                          \
    T acc[16] = {0};                                                                       \
    T total = 0;                                                                           \
    long j, k;                                                                             \
    for (j = 0; j + 16 <= n; j += 16)                                                      \
        for (k = 0; k < 16; k++) acc[k] += a[j + k] * b[j + k];                            \
    for (k = 0; k < 16; k++) total += acc[k];                                              \
    for (; j < n; j++) total += a[j] * b[j];                                               \
    return total;                                                                          \
}                                                                                          \
                                                                                           \
/* mean and 1/sqrt(var + eps) of n values (two passes: the deviations' squares) */         \
static inline T fr_moments_##SFX(const T *FR_RESTRICT a, long n, T eps, T *mean)           \
{                                                                                          \
    T m = fr_sum16_##SFX(a, n) / (T)n, acc[16] = {0}, var = 0;                             \
    long j, k;                                                                             \
    for (j = 0; j + 16 <= n; j += 16)                                                      \
        for (k = 0; k < 16; k++) { T d = a[j + k] - m; acc[k] += d * d; }                  \
    for (k = 0; k < 16; k++) var += acc[k];                                                \
    for (; j < n; j++) { T d = a[j] - m; var += d * d; }                                   \
    *mean = m;                                                                             \
    return (T)1 / SQRT(var / (T)n + eps);                                                  \
}                                                                                          \
                                                                                           \
/* Layer normalisation of `rows` rows of n values, row r of x at x + r*ldx: with `add`,    \
   out += gain * xh; else out = gain * xh + bias + bias2 (x may be out then).  xhat (row   \
   stride ldxh), when not NULL, keeps xh; rstd (stride rs), when not NULL, 1/sqrt(var+eps). */ \
FR_CLONES void fr_ln_rows_##SFX(const T *x, long ldx, long rows, long n,                   \
                                const T *FR_RESTRICT gain, const T *FR_RESTRICT bias,      \
                                const T *FR_RESTRICT bias2, int add, T *out, long ldo,     \
                                T *xhat, long ldxh, T *rstd, long rs, T eps)               \
{                                                                                          \
    long r, j;                                                                             \
    for (r = 0; r < rows; r++) {                                                           \
        const T *xr = x + r * ldx;                                                         \
        T *o = out + r * ldo;                                                              \
        T mean, s = fr_moments_##SFX(xr, n, eps, &mean);                                   \
        if (rstd != NULL) rstd[r * rs] = s;                                                \
        if (xhat != NULL) {                                                                \
            T *xh = xhat + r * ldxh;                                                       \
            for (j = 0; j < n; j++) xh[j] = (xr[j] - mean) * s;                            \
            xr = xh; mean = 0; s = 1;        /* from here, read the normalised values */   \
        }                                                                                  \
        if (add) {                                                                         \
            for (j = 0; j < n; j++) o[j] += gain[j] * ((xr[j] - mean) * s);                \
        } else {                                                                           \
            for (j = 0; j < n; j++) o[j] = gain[j] * ((xr[j] - mean) * s) + bias[j] + bias2[j]; \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* Backward of layer normalisation for `rows` rows: dy (row stride ldy) the gradient of    \
   gain * xh + bias; dx = rstd * (dy*gain - mean(dy*gain) - xh * mean(dy*gain * xh)) (row  \
   stride ldx: dx may be dy or xhat, element by element); acc (row stride lda), when not   \
   NULL, += dy * xh, the gain's terms. */                                                  \
FR_CLONES void fr_ln_grad_##SFX(const T *dy, long ldy, long rows, long n,                  \
                                const T *FR_RESTRICT gain, const T *xhat, long ldxh,       \
                                const T *FR_RESTRICT rstd, long rs, T *acc, long lda,      \
                                T *dx, long ldx)                                           \
{                                                                                          \
    long r, j, k;                                                                          \
    for (r = 0; r < rows; r++) {                                                           \
        const T *d = dy + r * ldy, *xh = xhat + r * ldxh;                                  \
        T *o = dx + r * ldx;                                                               \
        T a1[16] = {0}, a2[16] = {0}, m1 = 0, m2 = 0, s = rstd[r * rs];                    \
        for (j = 0; j + 16 <= n; j += 16)                                                  \
            for (k = 0; k < 16; k++) {                                                     \
                T dg = d[j + k] * gain[j + k];                                             \
                a1[k] += dg; a2[k] += dg * xh[j + k];                                      \
            }                                                                              \
        for (k = 0; k < 16; k++) { m1 += a1[k]; m2 += a2[k]; }                             \
        for (; j < n; j++) { T dg = d[j] * gain[j]; m1 += dg; m2 += dg * xh[j]; }          \
        m1 /= (T)n; m2 /= (T)n;                                                            \
        if (acc != NULL) {                                                                 \
            T *ar = acc + r * lda;                                                         \
            for (j = 0; j < n; j++) ar[j] += d[j] * xh[j];                                 \
        }                                                                                  \
        for (j = 0; j < n; j++) o[j] = s * (d[j] * gain[j] - m1 - xh[j] * m2);             \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* out[j] += sum over rows of A[r, j] * X[r, j], and out2[j] += sum of A[r, j] (out2 may be \
   NULL): the gain and bias gradients of a layer normalisation over all rows, in the       \
   order of the rows */                                                                    \
FR_CLONES void fr_ln_colgrads_##SFX(const T *FR_RESTRICT A, const T *FR_RESTRICT X,        \
                                    long rows, long cols, long ld, T *FR_RESTRICT out,     \
                                    T *FR_RESTRICT out2)                                   \
{                                                                                          \
    long r, j;                                                                             \
    for (r = 0; r < rows; r++) {                                                           \
        const T *a = A + r * ld, *x = X + r * ld;                                          \
        for (j = 0; j < cols; j++) out[j] += a[j] * x[j];                                  \
        if (out2 != NULL)                                                                  \
            for (j = 0; j < cols; j++) out2[j] += a[j];                                    \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* Layer-normalised LSTM, forward 2.-3.: gates i f g o in place, c = f*c + i*g,            \
   h = o * tanh(gain * LN(c) + bias); xc (row stride H), when not NULL, keeps LN(c), and   \
   rstd (stride rs) its 1/sqrt(var + eps) */                                               \
FR_CLONES void fr_lnlstm_step_##SFX(T *FR_RESTRICT gates, T *FR_RESTRICT h,                \
                                    T *FR_RESTRICT c, const T *FR_RESTRICT gain,           \
                                    const T *FR_RESTRICT bias, T *FR_RESTRICT xc,          \
                                    T *FR_RESTRICT rstd, long rs, long n, long H, T eps)   \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gi = gates + b * 4 * H, *FR_RESTRICT gf = gi + H;                   \
        T *FR_RESTRICT gg = gi + 2 * H, *FR_RESTRICT go = gi + 3 * H;                      \
        T *FR_RESTRICT hb = h + b * H, *FR_RESTRICT cb = c + b * H;                        \
        T mean, s;                                                                         \
        for (j = 0; j < H; j++) {                                                          \
            T i = SIGMOID(gi[j]), f = SIGMOID(gf[j]), g = TANH(gg[j]), o = SIGMOID(go[j]); \
            gi[j] = i; gf[j] = f; gg[j] = g; go[j] = o;                                    \
            cb[j] = f * cb[j] + i * g;                                                     \
        }                                                                                  \
        s = fr_moments_##SFX(cb, H, eps, &mean);                                           \
        if (rstd != NULL) rstd[b * rs] = s;                                                \
        if (xc != NULL) {                                                                  \
            T *FR_RESTRICT xb = xc + b * H;                                                \
            for (j = 0; j < H; j++) {                                                      \
                T xh = (cb[j] - mean) * s;                                                 \
                xb[j] = xh;                                                                \
                hb[j] = go[j] * TANH(gain[j] * xh + bias[j]);                              \
            }                                                                              \
        } else {                                                                           \
            for (j = 0; j < H; j++) hb[j] = go[j] * TANH(gain[j] * ((cb[j] - mean) * s) + bias[j]); \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* ... backward 2.: from the gates (i f g o), c_prev (cp), LN(c) (xc) and its rstd: dG in  \
   place of the gates, dc (the gradient of c_t from the next step) becomes dc_prev; dh is  \
   the gradient of this step's h; acc (2H per row, lda apart) += the terms of the cell                \
   normalisation's gain and bias; work: H values per row */                                \
FR_CLONES void fr_lnlstm_grad_##SFX(T *FR_RESTRICT gates, const T *FR_RESTRICT cp,         \
                                    const T *FR_RESTRICT xc, const T *FR_RESTRICT rstd,    \
                                    long rs, const T *FR_RESTRICT gain,                    \
                                    const T *FR_RESTRICT bias, const T *FR_RESTRICT dh,    \
                                    T *FR_RESTRICT dc, T *FR_RESTRICT acc, long lda,                 \
                                    T *FR_RESTRICT work, long n, long H)                   \
{                                                                                          \
    long b, j;                                                                             \
    for (b = 0; b < n; b++) {                                                              \
        T *FR_RESTRICT gi = gates + b * 4 * H, *FR_RESTRICT gf = gi + H;                   \
        T *FR_RESTRICT gg = gi + 2 * H, *FR_RESTRICT go = gi + 3 * H;                      \
        const T *FR_RESTRICT cpb = cp + b * H, *FR_RESTRICT dhb = dh + b * H;              \
        const T *FR_RESTRICT xb = xc + b * H;                                              \
        T *FR_RESTRICT dcb = dc + b * H, *FR_RESTRICT ab = acc + b * lda;                    \
        T *FR_RESTRICT w = work + b * H;                                                   \
        T m1, m2, s = rstd[b * rs];                                                        \
        for (j = 0; j < H; j++) {                                                          \
            T o = go[j], th = TANH(gain[j] * xb[j] + bias[j]);                             \
            T dn = dhb[j] * o * ((T)1 - th * th);         /* d(gain * LN(c) + bias) */     \
            go[j] = dhb[j] * th * o * ((T)1 - o);         /* do */                         \
            ab[j] += dn * xb[j];                                                           \
            ab[H + j] += dn;                                                               \
            w[j] = dn * gain[j];                          /* d LN(c) */                    \
        }                                                                                  \
        m1 = fr_sum16_##SFX(w, H) / (T)H;                                                  \
        m2 = fr_dot16_##SFX(w, xb, H) / (T)H;                                              \
        for (j = 0; j < H; j++) {                                                          \
            T i = gi[j], f = gf[j], g = gg[j];                                             \
            T dct = dcb[j] + s * (w[j] - m1 - xb[j] * m2);                                 \
            gi[j] = dct * g * i * ((T)1 - i);             /* di */                         \
            gf[j] = dct * cpb[j] * f * ((T)1 - f);        /* df */                         \
            gg[j] = dct * i * ((T)1 - g * g);             /* dg */                         \
            dcb[j] = dct * f;                             /* dc_prev */                    \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \

FR_DEFINE(float, f, fr_sigmoidf, fr_tanhf, sqrtf)
FR_DEFINE(double, d, fr_sigmoid, tanh, sqrt)

#undef FR_DEFINE

/* ---- LSTM forward of one batch row, float ------------------------------------------

   A batch of one row spends each step on a matrix-vector product h @ W_hh.T and then a
   pass over the gates.  Here both run in one pass over blocks of 16 units: the weights
   come packed (fr_lstm_pack_f) so that a block's panel holds, for each k, the i, f, g
   and o weights of its 16 units side by side; the four gate sums of a block build up in
   vector registers (two sets, for even and odd k, so that the additions overlap), start
   from the input projection in g, and go straight into the cell update.  The weights
   are read once per step, in order.  GCC vector extensions: one 16-float vector is one
   AVX-512 register, two AVX2 or four SSE registers.

   Per step t (in the order of `reverse`): hp[t], cp[t] = h, c (when hp is not NULL);
   steps with nact[t] == 0 keep the state and get y = 0.  g, y, hp, cp advance by gstep,
   ystep, pstep per step; g[t] ends as the gate activations (i, f, g, o), as the other
   kernels leave it.  work: 2H floats.  H must be a multiple of 16. */

typedef float fr_v16 __attribute__((vector_size(64), aligned(4)));

FR_CLONES void fr_lstm_pack_f(const float *FR_RESTRICT W_hh, long H, float *FR_RESTRICT out)
{
    /* out[b, k, 16q + u] = W_hh[q*H + 16b + u, k]: block b's weights in one contiguous
       (H, 64) panel, read in order by the k loop; W_hh is (4H, H), read row by row */
    long k, b, q, u;
    for (b = 0; b < H / 16; b++)
        for (q = 0; q < 4; q++)
            for (u = 0; u < 16; u++) {
                const float *FR_RESTRICT src = W_hh + (q * H + 16 * b + u) * H;
                float *FR_RESTRICT dst = out + b * H * 64 + 16 * q + u;
                for (k = 0; k < H; k++)
                    dst[k * 64] = src[k];
            }
}

/* One step: gate sums from the packed weights and src (h_prev), then the cell update
   into dst (h), c, the gates gt and the output yt. */
static inline __attribute__((always_inline)) void
fr_lstm_row_step(const float *FR_RESTRICT W, long H, float *gt,
                 const float *FR_RESTRICT src, float *FR_RESTRICT dst,
                 float *FR_RESTRICT c, float *FR_RESTRICT yt)
{
    long b, k, u, q;
    for (b = 0; b < H / 16; b++) {
        fr_v16 even[4], odd[4];
        float a[4][16];
        const float *FR_RESTRICT wb = W + b * H * 64;
        for (q = 0; q < 4; q++) {
            memcpy(&even[q], gt + q * H + 16 * b, sizeof(fr_v16));
            odd[q] = (fr_v16){0};
        }
        for (k = 0; k + 1 < H; k += 2) {
            const fr_v16 *FR_RESTRICT w0 = (const fr_v16 *)(wb + k * 64);
            const fr_v16 *FR_RESTRICT w1 = (const fr_v16 *)(wb + (k + 1) * 64);
            const float x0 = src[k], x1 = src[k + 1];
            for (q = 0; q < 4; q++) {
                even[q] += x0 * w0[q];
                odd[q] += x1 * w1[q];
            }
        }
        for (q = 0; q < 4; q++) {
            fr_v16 sum = even[q] + odd[q];
            memcpy(a[q], &sum, sizeof sum);
        }
        for (u = 0; u < 16; u++) {
            long j = 16 * b + u;
            float i = fr_sigmoidf(a[0][u]), f = fr_sigmoidf(a[1][u]);
            float gg = fr_tanhf(a[2][u]), o = fr_sigmoidf(a[3][u]);
            float cn = f * c[j] + i * gg;
            gt[j] = i; gt[H + j] = f; gt[2 * H + j] = gg; gt[3 * H + j] = o;
            c[j] = cn;
            dst[j] = o * fr_tanhf(cn);
            yt[j] = dst[j];
        }
    }
}

/* The whole time loop of one batch row.  work holds h_prev and h, swapped each step:
   every unit of a step reads the whole previous h. */
FR_CLONES void fr_lstm_row_f(const float *FR_RESTRICT W, long H, const int *nact, long T,
                             int reverse, float *g, long gstep, float *h, float *c,
                             float *y, long ystep, float *hp, float *cp, long pstep,
                             float *work)
{
    long s, t;
    memcpy(work, h, H * sizeof(float));
    for (s = 0; s < T; s++) {
        const float *src = work + (s % 2) * H;
        float *dst = work + ((s + 1) % 2) * H;
        t = reverse ? T - 1 - s : s;
        if (hp) {
            memcpy(hp + t * pstep, src, H * sizeof(float));
            memcpy(cp + t * pstep, c, H * sizeof(float));
        }
        if (nact[t] < 1) {                      /* a padded step: the state is kept */
            memcpy(dst, src, H * sizeof(float));
            memset(y + t * ystep, 0, H * sizeof(float));
        } else {
            fr_lstm_row_step(W, H, g + t * gstep, src, dst, c, y + t * ystep);
        }
    }
    memcpy(h, work + (T % 2) * H, H * sizeof(float));
}

#endif /* FASTRNN_CELLMATH_H */
