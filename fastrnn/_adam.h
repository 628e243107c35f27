/* Adam's update (torch.optim.Adam's CPU rule, fastrnn.optim.functional.adam_update's
 * operation order), fused into one pass over a parameter: the same float operations in
 * the same order as the NumPy passes, each rounded to the type, never contracted into a
 * fused multiply-add, so the results are the NumPy update's bit for bit.  The NumPy
 * update makes eleven passes over the arrays and as many Python calls per parameter: a
 * tenth of the composed model's training step (bench W11). */
#ifndef FASTRNN_ADAM_H
#define FASTRNN_ADAM_H

#include <math.h>

#define FR_ADAM(T, SFX, SQRT)                                                              \
__attribute__((optimize("fp-contract=off"))) static void                                  \
fr_adam_##SFX(T *p, const T *grad, T *m, T *v, long n, T w, int lerp_high, T beta2,       \
              T one_minus_beta2, T sqrt_bc2, T eps, T neg_step)                           \
{                                                                                          \
    long i;                                                                                \
    for (i = 0; i < n; i++) {                                                              \
        const T g = grad[i];                                                               \
        T t = g - m[i], s, d, a;                                                           \
        if (lerp_high) { t = t * w; m[i] = g - t; }   /* w here is 1 - weight */          \
        else { t = t * w; m[i] = m[i] + t; }                                               \
        s = v[i] * beta2;                                                                  \
        t = g * one_minus_beta2;                                                           \
        t = t * g;                                                                         \
        s = s + t;                                                                         \
        v[i] = s;                                                                          \
        d = SQRT(s);                                                                       \
        d = d / sqrt_bc2;                                                                  \
        d = d + eps;                                                                       \
        a = m[i] * neg_step;                                                               \
        a = a / d;                                                                         \
        p[i] = p[i] + a;                                                                   \
    }                                                                                      \
}

FR_ADAM(float, f, sqrtf)
FR_ADAM(double, d, sqrt)

#undef FR_ADAM

#endif
