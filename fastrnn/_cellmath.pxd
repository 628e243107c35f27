# cython: language_level=3
"""The cell math of one step, in C (fastrnn/_cellmath.h), and its typed glue: what the
kernels (fastrnn/_core.pyx) and the one-step entry (fastrnn/_step.pyx) cimport.

Every function here is inline, so it compiles into each module that uses it.
"""

from cython cimport floating
from libc.string cimport memcpy, memset

# ---------------------------------------------------------------------------------------
# Cell math: the gate nonlinearities and state updates of one step, in C (_cellmath.h), so
# that every loop vectorises (float: its own exp/tanh, dispatched to AVX-512/AVX2/baseline
# at load time; double: the C library's exp/tanh)
# ---------------------------------------------------------------------------------------

cdef extern from "_cellmath.h" nogil:
    ctypedef struct fr_kind:
        int gates, biases, biases_in_step, product_apart, direct_path, keeps_candidate
        int loop_sums, scalar_sums, reset_before, peephole, layer_norm
    const fr_kind FR_KINDS[8]       # one row per CELL_* below: what each kind does
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
    void fr_fastrnn_step_f(float* g, float* h, float alpha, float beta, long n)
    void fr_fastrnn_step_d(double* g, double* h, double alpha, double beta, long n)
    void fr_fastrnn_grad_f(float* g, const float* hp, float* dh, float alpha, float beta,
                           float* acc, long n, long H)
    void fr_fastrnn_grad_d(double* g, const double* hp, double* dh, double alpha,
                           double beta, double* acc, long n, long H)
    void fr_fastgrnn_step_f(float* g, const float* b_z, const float* b_h, float zeta,
                            float nu, float* h, float* ht, long n, long H)
    void fr_fastgrnn_step_d(double* g, const double* b_z, const double* b_h, double zeta,
                            double nu, double* h, double* ht, long n, long H)
    void fr_fastgrnn_grad_f(float* g, const float* ht, const float* hp, float* dh,
                            float zeta, float nu, float* acc, long n, long H)
    void fr_fastgrnn_grad_d(double* g, const double* ht, const double* hp, double* dh,
                            double zeta, double nu, double* acc, long n, long H)
    void fr_grurb_gate_f(float* gates, const float* h, float* rh, long n, long H)
    void fr_grurb_gate_d(double* gates, const double* h, double* rh, long n, long H)
    void fr_grurb_step_f(float* gates, float* h, long n, long H)
    void fr_grurb_step_d(double* gates, double* h, long n, long H)
    void fr_grurb_grad_f(float* gates, const float* hp, float* dh, long n, long H)
    void fr_grurb_grad_d(double* gates, const double* hp, double* dh, long n, long H)
    void fr_grurb_reset_grad_f(float* gates, const float* drh, const float* hp, float* dh,
                               long n, long H)
    void fr_grurb_reset_grad_d(double* gates, const double* drh, const double* hp,
                               double* dh, long n, long H)
    void fr_lstmp_step_f(float* gates, const float* p, float* h, float* c, long n, long H)
    void fr_lstmp_step_d(double* gates, const double* p, double* h, double* c, long n,
                         long H)
    void fr_lstmp_grad_f(float* gates, const float* cp, const float* p, const float* dh,
                         float* dc, float* acc, long n, long H)
    void fr_lstmp_grad_d(double* gates, const double* cp, const double* p,
                         const double* dh, double* dc, double* acc, long n, long H)
    void fr_ln_rows_f(const float* x, long ldx, long rows, long n, const float* gain,
                      const float* bias, const float* bias2, int add, float* out, long ldo,
                      float* xhat, long ldxh, float* rstd, long rs, float eps)
    void fr_ln_rows_d(const double* x, long ldx, long rows, long n, const double* gain,
                      const double* bias, const double* bias2, int add, double* out,
                      long ldo, double* xhat, long ldxh, double* rstd, long rs, double eps)
    void fr_ln_grad_f(const float* dy, long ldy, long rows, long n, const float* gain,
                      const float* xhat, long ldxh, const float* rstd, long rs, float* acc,
                      long lda, float* dx, long ldx)
    void fr_ln_grad_d(const double* dy, long ldy, long rows, long n, const double* gain,
                      const double* xhat, long ldxh, const double* rstd, long rs,
                      double* acc, long lda, double* dx, long ldx)
    void fr_ln_colgrads_f(const float* A, const float* X, long rows, long cols, long ld,
                          float* out, float* out2)
    void fr_ln_colgrads_d(const double* A, const double* X, long rows, long cols, long ld,
                          double* out, double* out2)
    void fr_lnlstm_step_f(float* gates, float* h, float* c, const float* gain,
                          const float* bias, float* xc, float* rstd, long rs, long n, long H,
                          float eps)
    void fr_lnlstm_step_d(double* gates, double* h, double* c, const double* gain,
                          const double* bias, double* xc, double* rstd, long rs, long n,
                          long H, double eps)
    void fr_lnlstm_grad_f(float* gates, const float* cp, const float* xc, const float* rstd,
                          long rs, const float* gain, const float* bias, const float* dh,
                          float* dc, float* acc, long lda, float* work, long n, long H)
    void fr_lnlstm_grad_d(double* gates, const double* cp, const double* xc,
                          const double* rstd, long rs, const double* gain,
                          const double* bias, const double* dh, double* dc, double* acc,
                          long lda, double* work, long n, long H)
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


cdef inline void _fastrnn_step(floating* g, floating* h, floating alpha, floating beta,
                               Py_ssize_t n) noexcept nogil:
    """2.-3. h~ = tanh(g) in place, h = alpha*h~ + beta*h, over n values."""
    if floating is float:
        fr_fastrnn_step_f(g, h, alpha, beta, n)
    else:
        fr_fastrnn_step_d(g, h, alpha, beta, n)


cdef inline void _fastrnn_grad(floating* g, const floating* hp, floating* dh, floating alpha,
                               floating beta, floating* sums, Py_ssize_t n,
                               Py_ssize_t H) noexcept nogil:
    """2. dG in place of h~, dh = beta*dh; sums (2H a row) += dalpha, dbeta terms."""
    if floating is float:
        fr_fastrnn_grad_f(g, hp, dh, alpha, beta, sums, n, H)
    else:
        fr_fastrnn_grad_d(g, hp, dh, alpha, beta, sums, n, H)


cdef inline void _fastgrnn_step(floating* g, const floating* b_z, const floating* b_h,
                                floating zeta, floating nu, floating* h, floating* ht,
                                Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """2.-3. z in place of g = W x + U h, h~ into ht (if not NULL), h updated."""
    if floating is float:
        fr_fastgrnn_step_f(g, b_z, b_h, zeta, nu, h, ht, n, H)
    else:
        fr_fastgrnn_step_d(g, b_z, b_h, zeta, nu, h, ht, n, H)


cdef inline void _fastgrnn_grad(floating* g, const floating* ht, const floating* hp,
                                floating* dh, floating zeta, floating nu, floating* sums,
                                Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """2. dG in place of z, dh = z*dh; sums (4H a row) += db_z, db_h, dzeta, dnu terms."""
    if floating is float:
        fr_fastgrnn_grad_f(g, ht, hp, dh, zeta, nu, sums, n, H)
    else:
        fr_fastgrnn_grad_d(g, ht, hp, dh, zeta, nu, sums, n, H)


cdef inline void _reset_gate(floating* gt, const floating* h, floating* rh, Py_ssize_t n,
                             Py_ssize_t H) noexcept nogil:
    """GRU with r before the product, 2a.: r, z in place, rh = r * h, for n rows."""
    if floating is float:
        fr_grurb_gate_f(gt, h, rh, n, H)
    else:
        fr_grurb_gate_d(gt, h, rh, n, H)


cdef inline void _reset_grad(floating* gt, const floating* drh, const floating* hp,
                             floating* dh, Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """GRU with r before the product, backward 2b.: dr in place of r, dh += drh * r."""
    if floating is float:
        fr_grurb_reset_grad_f(gt, drh, hp, dh, n, H)
    else:
        fr_grurb_reset_grad_d(gt, drh, hp, dh, n, H)


# ---------------------------------------------------------------------------------------
# The cell kinds of the kernels: one number each (the ``kernel_id`` of fastrnn/_kinds.py),
# and what a time loop does differently for each.  A new kind is a number here, its cases
# in the functions below and its cell math in _cellmath.h.
# ---------------------------------------------------------------------------------------

cdef enum:
    CELL_RNN = 0        # h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh | relu
    CELL_LSTM = 1       # gates i f g o;  c' = f*c + i*g;  h' = o*tanh(c')
    CELL_GRU = 2        # gates r z n;  n = tanh(W_in x + b_in + r*(W_hn h + b_hn))
    CELL_FASTRNN = 3    # h~ = tanh(W x + U h + b);  h' = alpha*h~ + beta*h
    CELL_FASTGRNN = 4   # P = W x + U h;  z = sigmoid(P + b_z), h~ = tanh(P + b_h);
                        # h' = (zeta*(1-z) + nu)*h~ + z*h
    CELL_GRU_RB = 5     # GRU with n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)
    CELL_LSTM_P = 6     # LSTM with peepholes: i, f read p_i*c, p_f*c; o reads p_o*c'
    CELL_LSTM_LN = 7    # layer-normalised LSTM: its own loops (ln_forward, ln_backward)
    N_CELLS = 8

# What each kind does differently is its row of FR_KINDS (_cellmath.h).  The FastRNN and
# FastGRNN kernels take their two scalars (alpha, beta or zeta, nu) after the sigmoid, and
# their backward loop sums, per row and unit, the terms of those scalars' gradients (and
# FastGRNN's of its two biases) in ``loop_sums`` blocks of H values.


cdef inline Py_ssize_t _bias_columns(int kind, Py_ssize_t H) noexcept nogil:
    """The gate columns on which b_hh joins the input projection (b_ih joins all of
    them): all but the GRU's n block, whose b_hn stays inside r*(W_hn h + b_hn); none for
    FastRNN (no b_hh) and FastGRNN (its step adds both biases)."""
    if kind == CELL_GRU:
        return 2 * H
    if kind == CELL_FASTRNN or kind == CELL_FASTGRNN:
        return 0
    return FR_KINDS[kind].gates * H     # the GRU with r before the product: b_hn too


cdef inline Py_ssize_t _hidden_columns(int kind, Py_ssize_t H) noexcept nogil:
    """The gate columns whose rows of dW_hh are a product of dG and Hp: all but the GRU's
    n block, whose rows are a product of dHn and Hp (GRU) or of dG and Hn (r*h, the GRU
    with r before the product)."""
    if kind == CELL_GRU or kind == CELL_GRU_RB:
        return 2 * H
    return FR_KINDS[kind].gates * H


cdef inline void _cell_step(int kind, bint relu, floating* gt, const floating* gh,
                            const floating* b1, const floating* b2, floating s0, floating s1,
                            floating* h, floating* c, floating* aux, Py_ssize_t n,
                            Py_ssize_t H) noexcept nogil:
    """Steps 2.-3. of the forward pass, for n rows: the gate nonlinearities of ``gt`` in
    place and the new state ``h`` (and ``c``).  GRU: ``gh`` = h @ W_hh.T, ``b1`` b_hn,
    ``aux`` the cache Hn or NULL.  FastRNN, FastGRNN: ``s0, s1`` the scalars; FastGRNN:
    ``b1, b2`` b_z, b_h (or NULL), ``aux`` the cache Ht or NULL.  LSTM with peepholes:
    ``b1`` p (3H).  GRU with r before the product: the second half of the step (n and
    h), after :func:`_reset_gate` and the product of r*h."""
    if kind == CELL_LSTM:
        _lstm_step(gt, h, c, n, H)
    elif kind == CELL_LSTM_P:
        if floating is float:
            fr_lstmp_step_f(gt, b1, h, c, n, H)
        else:
            fr_lstmp_step_d(gt, b1, h, c, n, H)
    elif kind == CELL_GRU_RB:
        if floating is float:
            fr_grurb_step_f(gt, h, n, H)
        else:
            fr_grurb_step_d(gt, h, n, H)
    elif kind == CELL_GRU:
        _gru_step(gt, gh, b1, h, aux, n, H)
    elif kind == CELL_FASTRNN:
        _fastrnn_step(gt, h, s0, s1, n * H)
    elif kind == CELL_FASTGRNN:
        _fastgrnn_step(gt, b1, b2, s0, s1, h, aux, n, H)
    else:
        _rnn_act(gt, n * H, relu)
        memcpy(h, gt, n * H * sizeof(floating))


cdef inline void _cell_grad(int kind, bint relu, floating* gt, floating* aux, floating* dgh,
                            const floating* hp, const floating* cp, const floating* p,
                            floating* dh, floating* dc, floating s0, floating s1,
                            floating* sums, Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """Step 2. of the backward pass, for n rows: dG in place of the cached gates, from dh
    (and dc, which becomes dc_prev).  GRU: dHn in place of ``aux`` (Hn), dGh into
    ``dgh``, and dh = dh * z (the direct path; the product with W_hh adds the rest).
    FastRNN, FastGRNN: dh becomes its direct path, ``sums`` gathers the scalars' (and
    FastGRNN's biases') terms; FastGRNN reads h~ from ``aux`` (Ht).  LSTM with
    peepholes: ``p`` (3H), ``sums`` gathers dp.  GRU with r before the product: the dz,
    dn blocks and dh = dh * z; :func:`_reset_grad` does dr after the product dn @ W_hn."""
    if kind == CELL_LSTM:
        _lstm_grad(gt, cp, dh, dc, n, H)
    elif kind == CELL_LSTM_P:
        if floating is float:
            fr_lstmp_grad_f(gt, cp, p, dh, dc, sums, n, H)
        else:
            fr_lstmp_grad_d(gt, cp, p, dh, dc, sums, n, H)
    elif kind == CELL_GRU_RB:
        if floating is float:
            fr_grurb_grad_f(gt, hp, dh, n, H)
        else:
            fr_grurb_grad_d(gt, hp, dh, n, H)
    elif kind == CELL_GRU:
        _gru_grad(gt, aux, dgh, hp, dh, n, H)
    elif kind == CELL_FASTRNN:
        _fastrnn_grad(gt, hp, dh, s0, s1, sums, n, H)
    elif kind == CELL_FASTGRNN:
        _fastgrnn_grad(gt, aux, hp, dh, s0, s1, sums, n, H)
    else:
        _rnn_grad(gt, dh, n * H, relu)


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


cdef inline void _mask_rows(const floating* src, const floating* m, floating* dst,
                            Py_ssize_t n, Py_ssize_t cols) noexcept nogil:
    """dst[:n] = src[:n] * m[:n] (rows of ``cols`` values): h entering the recurrent
    product under a recurrent dropout mask."""
    cdef Py_ssize_t j
    for j in range(n * cols):
        dst[j] = src[j] * m[j]


cdef inline void _add_masked(const floating* src, const floating* m, floating* dst,
                             Py_ssize_t n, Py_ssize_t cols, bint accumulate) noexcept nogil:
    """dst[:n] (+)= src[:n] * m[:n]: the recurrent product's gradient through the mask."""
    cdef Py_ssize_t j
    if accumulate:
        for j in range(n * cols):
            dst[j] += src[j] * m[j]
    else:
        for j in range(n * cols):
            dst[j] = src[j] * m[j]


cdef inline void _zone(const floating* z, const floating* prev, floating* cur,
                       Py_ssize_t count) noexcept nogil:
    """Zoneout: cur = z * prev + (1 - z) * cur over ``count`` values (z: 1 keeps the
    previous value, 0 takes the new one; at inference the rate itself)."""
    cdef Py_ssize_t j
    for j in range(count):
        cur[j] = z[j] * prev[j] + (1 - z[j]) * cur[j]


cdef inline void _zone_grad(const floating* z, floating* d, floating* kept,
                            Py_ssize_t count) noexcept nogil:
    """Backward of :func:`_zone`: kept = z * d (what reaches the previous state directly),
    d = (1 - z) * d (what reaches the new one)."""
    cdef Py_ssize_t j
    for j in range(count):
        kept[j] = z[j] * d[j]
        d[j] = (1 - z[j]) * d[j]


cdef inline void _add_colsum(const floating* A, Py_ssize_t rows, Py_ssize_t cols,
                             Py_ssize_t lda, floating* out) noexcept nogil:
    """out += A.sum(axis=0) for A (rows, cols) with row stride lda."""
    if floating is float:
        fr_add_colsum_f(A, rows, cols, lda, out)
    else:
        fr_add_colsum_d(A, rows, cols, lda, out)
