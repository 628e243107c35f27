# cython: language_level=3
"""Compiled kernels of fastrnn: forward unrolling and BPTT of RNN, LSTM and GRU layers.

The kernels know nothing of classes: each takes arrays, writes into arrays it is given and
returns nothing.  Two entries, :func:`forward` and :func:`backward`, serve every cell
kind, named by its kernel number (``KIND_RNN``, ``KIND_LSTM``, ``KIND_GRU``); what a kind
does differently -- its gate count, where its recurrent product goes, its cell math and
its caches -- is in fastrnn/_cellmath.pxd.  Each entry runs its time loop without the GIL
and does all matrix products through the typed BLAS layer (fastrnn/_blas.pxd).

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
or accumulated (``accumulate_dx``), so two directions can share one input gradient, or
not computed at all when nothing reads it (the first layer of a model).
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from fastrnn._b16 cimport (_isa_name, _set_isa_cap, fr_b16, fr_b16_gemm, fr_b16_isa,
                           fr_b16_add_t, fr_b16_gemm2, fr_b16_kp, fr_b16_pack,
                           fr_b16_packed_size, fr_b16_rows)
from fastrnn._blas cimport (_check_index, _check_shape, _parts, _pgemm_parts,
                            _shared_product_bytes, _side_by_side, _team, _threads)
from fastrnn._cellmath cimport (CELL_FASTGRNN, CELL_FASTRNN, CELL_GRU, CELL_GRU_RB,
                                CELL_LSTM, CELL_LSTM_LN, CELL_LSTM_P, CELL_RNN, FR_KINDS,
                                N_CELLS,
                                _add_colsum, _add_masked, _add_rows, _bias_columns,
                                _cell_grad, _cell_step, _copy_rows, _fill_bias,
                                _hidden_columns, _mask_rows, _reset_gate, _reset_grad,
                                _zero_rows, _zone, _zone_grad, fr_ln_colgrads_d,
                                fr_ln_colgrads_f, fr_ln_grad_d, fr_ln_grad_f, fr_ln_rows_d,
                                fr_ln_rows_f, fr_lnlstm_grad_d, fr_lnlstm_grad_f,
                                fr_lnlstm_step_d, fr_lnlstm_step_f, fr_lstm_pack_f,
                                fr_lstm_row_f)

cimport openmp

cdef extern from "_barrier.h" nogil:
    ctypedef struct fr_barrier:
        pass
    void fr_barrier_init(fr_barrier* b, int n)
    void fr_barrier_wait(fr_barrier* b, int* sense)

cnp.import_array()


# ---------------------------------------------------------------------------------------
# The products after the backward loop
# ---------------------------------------------------------------------------------------

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
# (the size: grads_side_by_side_flops in fastrnn/_blas.pyx)


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
    """dX (+)= dG @ W_ih (nothing when dX is NULL), or with ``weights`` dW_ih += dG.T @ X
    and db_ih += dG.sum(0)."""
    if not weights:
        if dX == NULL:
            return
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
                       const floating* Hp2, floating* dX, floating* dW_ih, floating* db_ih,
                       floating* dW_hh, floating* db_hh) noexcept nogil:
    """The four tasks above, side by side or one after another.  The last ``n2`` gate
    rows of dW_hh, when there are any, are dG2.T @ Hp2 (row stride ld2)."""
    cdef double flops = 2.0 * d.TB * (2.0 * d.GH * d.In + (d.n1 + d.n2) * d.H)
    cdef int task, h0, n2 = d.n2          # 0 unless dG2 is given
    cdef floating* db2 = db_hh + d.n1 if db_hh != NULL else NULL
    if _threads() < 2 or flops >= _side_by_side():
        _input_part(0, False, d, dG, X, W_ih, dX, dW_ih, db_ih)
        _input_part(0, True, d, dG, X, W_ih, dX, dW_ih, db_ih)
        _hidden_part(0, d, dG, d.ld1, d.n1, Hp, dW_hh, db_hh)
        _hidden_part(0, d, dG2, d.ld2, n2, Hp2, dW_hh + d.n1 * d.H, db2)
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
                _hidden_part(1, d, dG2, d.ld2, n2, Hp2, dW_hh + d.n1 * d.H, db2)
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


# How the forward kernels read their W_hh_t argument (the enum is in _core.pxd)
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
# The bf16 mode (fastrnn/_b16.h): bf16 products with float sums, float everything else
#
# Given bf16 panels of its weights, a loop converts the left operand of each product to
# bf16 rows (into a workspace the caller allocates) and runs fr_b16_gemm: the per-step
# product h @ W_hh.T forward, dG @ W_hh backward, and the products before and after the
# loops.  The gates, the states, the caches and the gradients stay float.
# ---------------------------------------------------------------------------------------

def set_isa_cap(name=None):
    """Cap the instruction set of the kernels' bf16 products at ``name`` ("baseline",
    "avx512", "avx512_vnni", "avx512_bf16", "amx"), or lift the cap (None)."""
    _set_isa_cap(name)


def isa():
    """The instruction set the kernels' bf16 products use: the detected one, capped."""
    return _isa_name(fr_b16_isa())


cdef inline void _b16_product(int n, int N, int K, const floating* a, int lda,
                              const fr_b16* Bp, fr_b16* ab, Py_ssize_t ldab, floating beta,
                              floating* out, int ldo) noexcept nogil:
    """out[:n] := bf16(a[:n]) @ B + beta * out[:n] (beta 0 or 1), a (n, K) converted into
    ``ab`` first; B (K, N) in bf16 panels (float only)."""
    if floating is float:
        if n <= 0:
            return
        fr_b16_rows(a, n, K, lda, 1, ab, ldab)
        fr_b16_gemm(ab, ldab, n, K, Bp, N, out, ldo, beta != 0, NULL)


cdef inline void _b16_fused(int n, int N, int I, int P, const floating* x,
                            const floating* h, const fr_b16* Bx, const fr_b16* Bh,
                            fr_b16* ab, Py_ssize_t ldab, const floating* bias,
                            floating* out) noexcept nogil:
    """out[:n] := bias + bf16([x | h]) @ [W_ih.T ; W_hh.T] (no bias: NULL): a step's input
    projection and recurrent product as one product, x (n, I) and h (n, P) converted side
    by side into the rows of ``ab``; Bx, Bh W_ih.T and W_hh.T in bf16 panels (float
    only)."""
    if floating is float:
        if n <= 0:
            return
        fr_b16_rows(x, n, I, I, 1, ab, ldab)
        fr_b16_rows(h, n, P, P, 1, ab + fr_b16_kp(I), ldab)
        fr_b16_gemm2(ab, ldab, n, I, Bx, P, Bh, N, out, N, 0, bias)


cdef inline void _b16_input(int n, int N, int K, const floating* x, const fr_b16* Bx,
                            fr_b16* ab, Py_ssize_t ldab, const floating* bias,
                            floating* out) noexcept nogil:
    """out[:n] := bias + bf16(x[:n]) @ W_ih.T (no bias: NULL), a step's input projection,
    x (n, K) converted into ``ab`` first (float only)."""
    if floating is float:
        if n <= 0:
            return
        fr_b16_rows(x, n, K, K, 1, ab, ldab)
        fr_b16_gemm(ab, ldab, n, K, Bx, N, out, N, 0, bias)


cdef bint _b16_fuses(int kind) noexcept nogil:
    """Whether the bf16 mode computes a step's input projection and recurrent product of
    ``kind`` as one product: when both go into the gates alike (not the GRU, whose
    recurrent product stays apart, nor FastGRNN, whose step adds its biases)."""
    return not (FR_KINDS[kind].product_apart or FR_KINDS[kind].biases_in_step
                or FR_KINDS[kind].reset_before)


def b16_fuses(int kind):
    """Whether :func:`forward` in the bf16 mode runs kind ``kind``'s input projection in
    its time loop, fused with the recurrent product (then ``hb`` is (B, b16_kp(I) +
    b16_kp(P)), ``Xb`` unused, and in inference ``Gt`` may have B rows)."""
    _check_kind(kind)
    return _b16_fuses(kind)


cdef void _b16_pgemm(int m, int N, int K, const floating* a, long sr, long sk,
                     const fr_b16* Bp, fr_b16* ab, bint convert, floating beta,
                     floating* out, int ldo) noexcept nogil:
    """out := bf16(op(a)) @ B + beta * out (beta 0 or 1) over m rows, op(a)[r, k] =
    a[r*sr + k*sk], in parts of rows across the threads; ``ab`` (m, fr_b16_kp(K)) the
    converted rows: converted here with ``convert``, else already (float only).  The
    parts start at multiples of 16 rows, so that every row takes the path (AMX tiles or
    the rows after them) it takes in one part: the same sums whatever the threads."""
    cdef int parts = _parts(m, N, K), p, r0, r1
    cdef long kp = fr_b16_kp(K)
    if floating is float:
        if m <= 0:
            return
        if parts == 1:
            if convert:
                fr_b16_rows(a, m, K, sr, sk, ab, kp)
            fr_b16_gemm(ab, kp, m, K, Bp, N, out, ldo, beta != 0, NULL)
            return
        for p in prange(parts, num_threads=_team(parts), schedule="static"):
            r0 = <int>((<long>m * p) // parts) // 16 * 16
            r1 = <int>((<long>m * (p + 1)) // parts) // 16 * 16 if p + 1 < parts else m
            if convert:
                fr_b16_rows(a + r0 * sr, r1 - r0, K, sr, sk, ab + r0 * kp, kp)
            fr_b16_gemm(ab + r0 * kp, kp, r1 - r0, K, Bp, N, out + <long>r0 * ldo, ldo,
                        beta != 0, NULL)


cdef struct _B16Grads:
    # the bf16 operands of the products after a backward loop, in one workspace.  The
    # weight gradients are computed transposed, dW.T = X.T @ dG (and Hp.T @ dG): the
    # transposed operands are then X and Hp, smaller than dG, and dG packs as a right
    # operand in the order of its rows
    const fr_b16* W_ih          # W_ih (G*H, I) in panels: dX = dG @ W_ih
    fr_b16* dG                  # dG (T*B, G*H) as rows, for dX
    fr_b16* dGp                 # dG (T*B, G*H) in panels
    fr_b16* dHp                 # the GRU's dHn (T*B, H) in panels, or unused
    fr_b16* Xt                  # X.T (I, T*B) as rows
    fr_b16* Hpt                 # Hp.T (P, T*B) as rows
    float* Ct                   # a product's transposed sums, (max(I, P), G*H) floats


def b16_backward_size(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t GH,
                      Py_ssize_t P, Py_ssize_t H):
    """The uint16 values of :func:`backward`'s ``b16_work`` for T, B, I, the gate width
    G*H, the width P of h and the cell width H: the rows of a step's dG, then
    :c:type:`_B16Grads`' operands (every part on a 64-byte boundary of an aligned
    array)."""
    return _b16_backward_parts(T, B, I, GH, P, H)[7]


cdef tuple _b16_backward_parts(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t GH,
                               Py_ssize_t P, Py_ssize_t H):
    """Offsets of hb, dG, dGp, dHp, Xt, Hpt, Ct in b16_work, then its size (index 7)."""
    cdef Py_ssize_t TB = T * B
    sizes = [B * fr_b16_kp(GH), TB * fr_b16_kp(GH), fr_b16_packed_size(TB, GH),
             fr_b16_packed_size(TB, H), I * fr_b16_kp(TB), P * fr_b16_kp(TB),
             2 * max(I, P) * GH]
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[len(offsets) - 1] + (size + 31) // 32 * 32)
    return tuple(offsets)


cdef void _b16_pack_parts(const float* src, long n, long K, long ld, fr_b16* out) noexcept nogil:
    """fr_b16_pack of a row-major B (K, n; row stride ld), its panels in parts across the
    threads."""
    cdef long panels = (n + 15) // 16, kp = fr_b16_kp(K)
    cdef int parts = _parts(<int>K, <int>n, 1), p
    cdef long j0, j1
    if parts > panels:
        parts = <int>panels
    if parts <= 1:
        fr_b16_pack(src, n, K, 1, ld, out)
        return
    for p in prange(parts, num_threads=_team(parts), schedule="static"):
        j0 = panels * p // parts * 16
        j1 = panels * (p + 1) // parts * 16
        if j1 > n:
            j1 = n
        fr_b16_pack(src + j0, j1 - j0, K, 1, ld, out + j0 * kp)


cdef void _b16_param_grads(const _Grads* d, const _B16Grads* b, const floating* dG,
                           const floating* dG2, const floating* X, const floating* Hp,
                           floating* dX, floating* dW_ih, floating* db_ih,
                           floating* dW_hh, floating* db_hh) noexcept nogil:
    """_param_grads in bf16: the four products from bf16 operands, float sums; the bias
    gradients in float."""
    cdef int n2 = d.n2
    if floating is float:
        # dX (+)= dG @ W_ih
        if dX != NULL:
            _b16_pgemm(d.TB, d.In, d.GH, dG, d.GH, 1, b.W_ih, b.dG, True,
                       <floating>(1 if d.accumulate_dx else 0), dX, d.In)
        # dW_ih += (X.T @ dG).T
        _b16_pack_parts(dG, d.GH, d.TB, d.GH, b.dGp)
        _b16_pgemm(d.In, d.GH, d.TB, X, 1, d.In, b.dGp, b.Xt, True, <floating>0, b.Ct,
                   d.GH)
        fr_b16_add_t(b.Ct, d.GH, d.In, d.GH, dW_ih, d.In)
        # dW_hh[:n1] += (Hp.T @ dG).T[:n1];  GRU: dW_hh[n1:] += (Hp.T @ dHn).T
        _b16_pgemm(d.H, d.GH, d.TB, Hp, 1, d.H, b.dGp, b.Hpt, True, <floating>0, b.Ct,
                   d.GH)
        fr_b16_add_t(b.Ct, d.GH, d.H, d.n1, dW_hh, d.H)
        if dG2 != NULL and n2 > 0:
            _b16_pack_parts(dG2, n2, d.TB, d.ld2, b.dHp)
            _b16_pgemm(d.H, n2, d.TB, Hp, 1, d.H, b.dHp, b.Hpt, False, <floating>0, b.Ct,
                       n2)
            fr_b16_add_t(b.Ct, n2, d.H, n2, dW_hh + d.n1 * d.H, d.H)
    if db_ih != NULL:
        _add_colsum(dG, d.TB, d.GH, d.GH, db_ih)
    if db_hh != NULL:
        _add_colsum(dG, d.TB, d.n1, d.ld1, db_hh)
        if dG2 != NULL and n2 > 0:
            _add_colsum(dG2, d.TB, n2, d.ld2, db_hh + d.n1)


cdef const fr_b16* _b16_panels(str name, const fr_b16[::1] Bp, Py_ssize_t K,
                               Py_ssize_t n) except? NULL:
    """Pointer to B (K, n) in bf16 panels, checked, or NULL when None or empty."""
    if Bp is None or Bp.shape[0] == 0:
        return NULL
    _check_shape(name, (Bp.shape[0],), (fr_b16_packed_size(K, n),))
    fr_b16_isa()        # the detection (and AMX's permission) once, with the GIL
    return &Bp[0]


cdef fr_b16* _b16_work(str name, fr_b16[:, ::1] W, Py_ssize_t rows,
                       Py_ssize_t K) except NULL:
    """Pointer to a workspace of ``rows`` bf16 rows of width fr_b16_kp(K), checked."""
    if W is None:
        raise ValueError(f"{name} is given with the bf16 panels")
    _check_shape(name, tuple(W.shape)[:2], (rows, fr_b16_kp(K)))
    return &W[0, 0]


cdef int _b16_kind(int kind, const void* W_hr, bint float32) except -1:
    """The kinds and variants the bf16 mode covers: float32, every kind whose products
    multiply by the whole of W_hh (not the GRU with r before the product), without an
    LSTM's projection."""
    if not float32:
        raise ValueError("the bf16 mode is float32 only")
    if FR_KINDS[kind].reset_before:
        raise ValueError("the bf16 mode does not cover the GRU with r before the product")
    if W_hr != NULL:
        raise ValueError("the bf16 mode does not cover an LSTM's projection")
    return 0


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


# ---------------------------------------------------------------------------------------
# The time loops, one for every kind
#
# What a call shares with the row ranges of its threads is one _Loop: sizes and pointers,
# the pointers untyped because a struct cannot hold fused types (each loop casts them to
# its ``floating``).  The kind changes only the product's destination, the cell math
# (_cell_step, _cell_grad in fastrnn/_cellmath.pxd) and the caches it keeps.
# ---------------------------------------------------------------------------------------

cdef struct _Loop:
    int kind
    bint relu, reverse
    Py_ssize_t T, B, H, In, GH, ldy   # In: the input size (I is a C macro)
    Py_ssize_t P                # the width of h: H, or an LSTM's projection size
    Py_ssize_t gstep            # rows of Gt from one step to the next, times GH
    const int* nact
    const void* W_hh            # (G*H, H)
    const void* W_hh_t          # forward: (H, G*H), or NULL: BLAS reads W_hh
    const void* panels          # W_hh.T (forward) or W_hh (backward) packed, or NULL
    const void* X               # (T*B, I)
    const void* W_ih_p          # forward: W_ih.T packed, the projection in the loop, or NULL
    const void* sbias           # with W_ih_p: the bias row of every step's projection
    const void* b1              # the vectors the step reads: GRU b_hh[2H:] (b_hn);
    const void* b2              #   FastGRNN b_z, b_h; LSTM with peepholes p (3H) in b1;
                                #   else (or without biases) NULL
    double s0, s1               # FastRNN alpha, beta; FastGRNN zeta, nu (after the sigmoid)
    void* h                     # forward: h; backward: dh (B, H)
    void* c                     # LSTM, forward: c; backward: dc (B, H); else NULL
    void* gh                    # GRU: Gh workspace (B, G*H); else NULL
    void* y                     # forward: Y + col; backward: dY + col (T, B, ldy)
    void* hp                    # training cache Hp (T, B, H), or NULL (inference)
    void* cp                    # LSTM: Cp (T, B, H), or NULL
    void* hn                    # GRU: Hn (T, B, H), or NULL (forward inference); the GRU
                                #   with r before the product: r*h_prev there
    void* ht                    # FastGRNN: Ht (T, B, H), the candidate h~, or NULL
    const void* W_hr            # an LSTM's projection (P, H): h = W_hr (o*tanh(c)); or NULL
    void* hm                    # with W_hr: o*tanh(c), the cache Hm (T, B, H) in training,
                                #   else a workspace (B, H); backward: workspace (B, H)
    Py_ssize_t mstep            # rows of hm from one step to the next, times H (0: workspace)
    void* dhs                   # backward with W_hr: the gradient of every step's h (T, B, P)
    const void* hmask           # recurrent dropout: one mask (B, P) on h entering the
                                #   product, the same at every step; or NULL
    void* hwork                 # with hmask: a workspace (B, P)
    const void* zh              # zoneout of h: (T, B, P) masks in training (1 keeps h_prev),
    const void* zc              #   of c (T, B, H); the rates, (1, B, .), at inference; or NULL
    Py_ssize_t zstep            # rows of zh, zc from one step to the next (0: the rates)
    void* zwork                 # with zh: h_prev, c_prev (forward inference) or the kept
                                #   gradients (backward), (B, P) then (B, H)
    const void* bpanels         # the bf16 mode: W_hh.T (forward) or W_hh (backward) in
                                #   bf16 panels (fr_b16_pack), or NULL (float products)
    void* hb                    # with bpanels: the bf16 rows of a step's left operand,
    Py_ssize_t hbk              #   (B, hbk), hbk = fr_b16_kp of its width
    const void* W_ih_b          # forward, a kind _b16_fuses: W_ih.T in bf16 panels, each
                                #   step one product [x_t | h] @ [W_ih.T ; W_hh.T] (hb's
                                #   rows [x_t | h], hbk = kp(I) + kp(P)); else NULL
    const void* W_ih_bs         # forward, a kind that does not fuse: W_ih.T in bf16 panels,
                                #   each step its own input projection before the recurrent
                                #   product (hb holds x_t, then h: hbk = kp(max(I, P)));
                                #   else NULL


cdef inline floating* _rows(void* p, Py_ssize_t offset, floating* like) noexcept nogil:
    """``p`` as a ``floating`` pointer, ``offset`` values on; NULL stays NULL."""
    return <floating*>p + offset if p != NULL else NULL


cdef bint _h_in_y(const _Loop* L) noexcept nogil:
    """Whether the forward loop keeps h in Y: each step writes h into Y[t] and the next
    reads it there, and only the last step's is copied into h (instead of every step's
    into Y).  For a kind whose cell step only writes h (the plain LSTM), with Y's rows
    as wide as h, and every row active at every step (a row that waits keeps its h but
    has zeros in Y); not with recurrent dropout, zoneout or a projection."""
    cdef Py_ssize_t t
    if (L.kind != CELL_LSTM or L.ldy != L.P or L.hmask != NULL or L.zh != NULL
            or L.W_hr != NULL):
        return False
    for t in range(L.T):
        if L.nact[t] != L.B:
            return False
    return True


cdef void _forward_rows(const _Loop* L, floating* g, Py_ssize_t lo, Py_ssize_t hi,
                        _Team* tm) noexcept nogil:
    """The forward time loop over batch rows lo..hi-1 (``g`` is Gt); with ``tm``, each
    step's products shared with the team (see _share_step); h kept in Y when
    _h_in_y says so."""
    cdef Py_ssize_t T = L.T, B = L.B, H = L.H, P = L.P, GH = L.GH, ldy = L.ldy, rows = hi - lo
    cdef Py_ssize_t s, t, n, step = B * H, pstep = B * P
    cdef bint apart = FR_KINDS[L.kind].product_apart, before = FR_KINDS[L.kind].reset_before
    cdef const floating* W_hr = <const floating*>L.W_hr
    cdef const floating* W_hh = <const floating*>L.W_hh
    cdef const floating* W_hh_t = <const floating*>L.W_hh_t
    cdef const floating* panels = <const floating*>L.panels
    cdef const floating* Wip = <const floating*>L.W_ih_p
    cdef const floating* X = <const floating*>L.X
    cdef floating* hs = _rows(L.h, lo * P, g)
    cdef floating* cs = _rows(L.c, lo * H, g)
    cdef floating* gh = _rows(L.gh, lo * GH, g)
    cdef floating* y = _rows(L.y, lo * ldy, g)
    cdef floating* hp = _rows(L.hp, lo * P, g)
    cdef floating* hm = _rows(L.hm, lo * H, g)
    cdef const floating* hmask = _rows(<void*>L.hmask, lo * P, g)
    cdef floating* hw = _rows(L.hwork, lo * P, g)
    cdef floating* cp = _rows(L.cp, lo * H, g)
    cdef floating* hn = _rows(L.hn, lo * H, g)
    cdef floating* ht = _rows(L.ht, lo * H, g)
    cdef floating* aux = hn if hn != NULL else ht     # the kind's second cache, if any
    cdef floating* gt
    cdef floating* yt
    cdef floating* rh
    cdef floating* mt
    cdef const floating* hsrc = hs if hmask == NULL else hw   # what the product reads
    cdef floating* hout = hs                    # where the cell step writes h
    cdef bint in_y = _h_in_y(L)
    cdef const floating* hall = <const floating*>(L.h if hmask == NULL else L.hwork)
    cdef const floating* zh = <const floating*>L.zh
    cdef const floating* zc = <const floating*>L.zc
    cdef floating* zw = <floating*>L.zwork
    cdef floating* hprev = NULL
    cdef floating* cprev = NULL
    cdef floating* g_all = g
    if zh != NULL:                  # the state each step starts from, for zoneout
        hprev = hp if hp != NULL else zw + lo * P
        cprev = cp if cp != NULL else (zw + B * P + lo * H if cs != NULL else NULL)
        zh += lo * P
        if zc != NULL:
            zc += lo * H
    g += lo * GH
    for s in range(T):
        t = T - 1 - s if L.reverse else s
        n = _active(L.nact[t], lo, hi)
        gt = g + t * L.gstep
        yt = y + t * B * ldy
        if in_y:                    # h_prev is the last step's Y (h at the first step)
            if s > 0:
                hsrc = hout
                hall = <const floating*>L.y + (t + 1 if L.reverse else t - 1) * B * ldy
            hout = yt
        if hp != NULL:
            memcpy(hp + t * pstep, hsrc if in_y else hs, rows * P * sizeof(floating))
        if cp != NULL:
            memcpy(cp + t * step, cs, rows * H * sizeof(floating))
        if zh != NULL and hp == NULL:           # inference: keep h_prev (and c_prev)
            memcpy(hprev, hs, n * P * sizeof(floating))
            if cprev != NULL:
                memcpy(cprev, cs, n * H * sizeof(floating))
        if tm != NULL:
            # 0.-1. as below, each thread some columns of every row (h * mask first)
            if hmask != NULL:
                _mask_rows(hs, hmask, hw, n, P)
            _share_step(L, tm, t, g_all + t * L.gstep, hall, lo, n)
        elif Wip != NULL:
            # 0. Gt[t] = x_t @ W_ih.T + biases: the projection, step by step
            _step_input(<int>n, <int>GH, <int>L.In, X + (t * B + lo) * L.In, Wip,
                        <const floating*>L.sbias, gt)
        elif L.W_ih_bs != NULL:
            # 0. the same as a bf16 product (x_t through hb, which h then reuses)
            _b16_input(<int>n, <int>GH, <int>L.In, X + (t * B + lo) * L.In,
                       <const fr_b16*>L.W_ih_bs, <fr_b16*>L.hb + lo * L.hbk, L.hbk,
                       <const floating*>L.sbias, gt)
        if tm != NULL:
            pass
        elif before:
            # 1. Gt[t, r z] += h @ W_hr,z.T; r, z; then Gt[t, n] += (r*h) @ W_hn.T, with
            #    r*h kept in Hn (training) or the workspace Gh
            rh = hn + t * step if hn != NULL else gh
            _part_product(<int>n, <int>(2 * H), <int>H, hs, W_hh, W_hh_t, <int>GH, gt,
                          <int>GH)
            _reset_gate(gt, hs, rh, n, H)
            _part_product(<int>n, <int>H, <int>H, rh, W_hh + 2 * H * H,
                          W_hh_t + 2 * H if W_hh_t != NULL else NULL, <int>GH, gt + 2 * H,
                          <int>GH)
            if hn != NULL:          # rows that wait: zeros, for the products after backward
                memset(rh + n * H, 0, (rows - n) * H * sizeof(floating))
        else:
            # 1. Gt[t] += h @ W_hh.T   (GRU: Gh = h @ W_hh.T; h * mask under recurrent
            #    dropout)
            if hmask != NULL:
                _mask_rows(hs, hmask, hw, n, P)
            if L.W_ih_b != NULL:
                # 0.-1. Gt[t] = biases + [x_t | h] @ [W_ih.T ; W_hh.T], one bf16 product
                _b16_fused(<int>n, <int>GH, <int>L.In, <int>P, X + (t * B + lo) * L.In,
                           hsrc, <const fr_b16*>L.W_ih_b, <const fr_b16*>L.bpanels,
                           <fr_b16*>L.hb + lo * L.hbk, L.hbk, <const floating*>L.sbias, gt)
            elif L.bpanels != NULL:
                _b16_product(<int>n, <int>GH, <int>P, hsrc, <int>P,
                             <const fr_b16*>L.bpanels, <fr_b16*>L.hb + lo * L.hbk, L.hbk,
                             <floating>(0 if apart else 1), gh if apart else gt, <int>GH)
            else:
                _step_product(<int>n, <int>GH, <int>P, hsrc, W_hh, W_hh_t, panels,
                              <floating>(0 if apart else 1), gh if apart else gt)
        # 2.-3. the gate nonlinearities and the new state (with a projection: o*tanh(c)
        #    into Hm, then h = Hm[t] @ W_hr.T)
        mt = hm + t * L.mstep if hm != NULL else NULL
        _cell_step(L.kind, L.relu, gt, gh, <const floating*>L.b1, <const floating*>L.b2,
                   <floating>L.s0, <floating>L.s1, hout if mt == NULL else mt, cs,
                   aux + t * step if aux != NULL else NULL, n, H)
        if mt != NULL:
            gemm(False, True, <int>n, <int>P, <int>H, <floating>1, mt, <int>H, W_hr, <int>H,
                 <floating>0, hs, <int>P)
            if L.mstep:             # rows that wait: zeros, for the product after backward
                memset(mt + n * H, 0, (rows - n) * H * sizeof(floating))
        if zh != NULL:
            # 3b. zoneout: each unit keeps its previous value where the mask says so
            _zone(zh + t * step_z(L, P), hprev + (t * pstep if hp != NULL else 0), hs, n * P)
            if zc != NULL:
                _zone(zc + t * step_z(L, H), cprev + (t * step if cp != NULL else 0), cs,
                      n * H)
        # 4. Y[t] = h; zeros at padded steps
        if not in_y:
            _copy_rows(hs, P, yt, ldy, n, P)
            _zero_rows(yt + n * ldy, ldy, rows - n, P)
    if in_y and T > 0:              # the last h, from Y
        memcpy(hs, hout, rows * P * sizeof(floating))


cdef void _backward_rows(const _Loop* L, floating* g, Py_ssize_t lo, Py_ssize_t hi,
                         floating* sums, _Team* tm) noexcept nogil:
    """The backward time loop over batch rows lo..hi-1 (``g`` is Gt, which becomes dG);
    ``sums``: from row lo on, ``_loop_sums`` blocks of H values per row, or NULL; with
    ``tm``, each step's product shared with the team (see _share_back)."""
    cdef Py_ssize_t T = L.T, B = L.B, H = L.H, P = L.P, GH = L.GH, ldy = L.ldy, rows = hi - lo
    cdef Py_ssize_t s, t, n, step = B * H, pstep = B * P
    cdef bint apart = FR_KINDS[L.kind].product_apart, direct = FR_KINDS[L.kind].direct_path
    cdef const floating* W_hr = <const floating*>L.W_hr
    cdef floating* dm = _rows(L.hm, lo * H, g)
    cdef floating* dhc = _rows(L.dhs, lo * P, g)
    cdef const floating* hmask = _rows(<void*>L.hmask, lo * P, g)
    cdef floating* hw = _rows(L.hwork, lo * P, g)
    cdef floating* dcell
    cdef bint before = FR_KINDS[L.kind].reset_before
    cdef Py_ssize_t back = 2 * H if before else GH   # the gate columns the product reads
    cdef const floating* W_hh = <const floating*>L.W_hh
    cdef const floating* panels = <const floating*>L.panels
    cdef floating* dhs = _rows(L.h, lo * P, g)
    cdef floating* dcs = _rows(L.c, lo * H, g)
    cdef floating* dgh = _rows(L.gh, lo * GH, g)
    cdef const floating* dy = _rows(L.y, lo * ldy, g)
    cdef const floating* hp = _rows(L.hp, lo * P, g)
    cdef const floating* cp = _rows(L.cp, lo * H, g)
    cdef floating* hn = _rows(L.hn, lo * H, g)
    cdef floating* aux = hn if hn != NULL else _rows(L.ht, lo * H, g)
    cdef floating* gt
    cdef const floating* zh = _rows(<void*>L.zh, lo * P, g)
    cdef const floating* zc = _rows(<void*>L.zc, lo * H, g)
    cdef floating* kept_h = _rows(L.zwork, lo * P, g)
    cdef floating* kept_c = _rows(L.zwork, B * P + lo * H, g)
    cdef floating* g_all = g
    g += lo * GH
    for s in range(T):
        t = s if L.reverse else T - 1 - s
        n = _active(L.nact[t], lo, hi)
        gt = g + t * B * GH
        # 1. dh += dY[t]   (no dY: the outputs are not read, zeros)
        if dy != NULL:
            _add_rows(dy + t * B * ldy, ldy, dhs, P, n, P)
        if zh != NULL:
            # 1a. zoneout: the kept units' gradient goes straight to h_prev (and c_prev)
            _zone_grad(zh + t * step_z(L, P), dhs, kept_h, n * P)
            if zc != NULL:
                _zone_grad(zc + t * step_z(L, H), dcs, kept_c, n * H)
        dcell = dhs
        if W_hr != NULL:
            # 1b. with a projection: dh[t] kept for dW_hr, and d(o*tanh(c)) = dh @ W_hr
            _copy_rows(dhs, P, dhc + t * pstep, P, n, P)
            _zero_rows(dhc + t * pstep + n * P, P, rows - n, P)
            gemm_rows(False, <int>n, <int>H, <int>P, dhs, <int>P, W_hr, <int>H, <floating>0,
                      dm, <int>H)
            dcell = dm
        # 2. dG[t] (and dc = dc_prev; GRU: dHn[t], dGh, dh = dh * z; FastRNN, FastGRNN:
        #    dh = its direct path, the scalars' terms into sums)
        _cell_grad(L.kind, L.relu, gt, aux + t * step if aux != NULL else NULL, dgh,
                   hp + t * pstep, cp + t * step if cp != NULL else NULL,
                   <const floating*>L.b1, dcell, dcs, <floating>L.s0, <floating>L.s1, sums,
                   n, H)
        if before:
            # 2b. d(r*h) = dn @ W_hn (into the workspace Gh), then dr and dh += d(r*h) * r
            gemm_rows(False, <int>n, <int>H, <int>H, gt + 2 * H, <int>GH, W_hh + 2 * H * H,
                      <int>H, <floating>0, dgh, <int>H)
            _reset_grad(gt, dgh, hp + t * step, dhs, n, H)
        memset(gt + n * GH, 0, (rows - n) * GH * sizeof(floating))
        if hn != NULL and not before:
            memset(hn + t * step + n * H, 0, (rows - n) * H * sizeof(floating))
        # 3. dh = dG[t] @ W_hh   (GRU: dh += dGh @ W_hh; FastRNN, FastGRNN, the GRU with r
        #    before the product: dh += ...)
        if L.bpanels != NULL:       # the bf16 mode: dG[t] in bf16 rows first
            _b16_product(<int>n, <int>P, <int>back, dgh if apart else gt, <int>GH,
                         <const fr_b16*>L.bpanels, <fr_b16*>L.hb + lo * L.hbk, L.hbk,
                         <floating>(1 if direct and hmask == NULL else 0),
                         dhs if hmask == NULL else hw, <int>P)
            if hmask != NULL:
                _add_masked(hw, hmask, dhs, n, P, direct)
        elif tm != NULL:            # each thread some columns of every row
            _share_back(L, tm, t, g_all + t * B * GH)
            if hmask != NULL:
                _add_masked(hw, hmask, dhs, n, P, direct)
        elif hmask == NULL:
            _back_product(<int>n, <int>back, <int>P, dgh if apart else gt, <int>GH, W_hh,
                          panels, <floating>(1 if direct else 0), dhs)
        else:               # through the recurrent dropout mask
            _back_product(<int>n, <int>back, <int>P, dgh if apart else gt, <int>GH, W_hh,
                          panels, <floating>0, hw)
            _add_masked(hw, hmask, dhs, n, P, direct)
        if zh != NULL:
            _add_rows(kept_h, P, dhs, P, n, P)
            if zc != NULL:
                _add_rows(kept_c, H, dcs, H, n, H)


cdef inline Py_ssize_t step_z(const _Loop* L, Py_ssize_t cols) noexcept nogil:
    """The offset of zoneout's masks from one step to the next."""
    return L.zstep * cols


# ---------------------------------------------------------------------------------------
# Sharing each step's products
#
# Split by rows, every thread multiplies its rows by all of W_hh.T (and with the projection
# in the loop, W_ih.T) at every step: with large weights (LSTM H=512: 4 MiB each) each
# thread streams them all from L3 at every step.  Where the packed weights are large
# (_blas.shared_product_bytes), the threads share each step's products instead: each one
# computes a range of whole panels, some columns of every active row, between two
# barriers; then each thread does the cell math of its own rows as before.  Each element
# is the same sum in the same order, so the results do not change; the price is two
# barriers a step.  (W4, LSTM T=50 B=128 I=512 H=512, both threads: see _tuning.)  The
# bf16 mode's forward loops share the same way: each thread converts its own rows (the
# operand of every row is ready after the first barrier), then multiplies every row by
# some columns of the bf16 panels; every element takes the path (AMX tiles or the rows
# after them) it takes in the row split, whose parts start at multiples of 16 rows.
# (An LSTM H=512 bf16 step's fused product reads 4 MiB of panels; shared, each thread
# streams half of them from L3: W4i's 50 products alone, 2 threads, 16-18 -> 14-15 ms.)
# ---------------------------------------------------------------------------------------

cdef struct _Team:
    fr_barrier* barrier
    int p, n                    # this thread's place in the team, the team's size
    int sense                   # this thread's sense of the barrier


cdef inline void _team_columns(const _Team* tm, Py_ssize_t cols, Py_ssize_t* c0,
                               Py_ssize_t* c1) noexcept nogil:
    """The columns [c0, c1) of a product of ``cols`` columns that thread tm.p computes:
    whole panels of 64 (a range of panels is laid out as a packed matrix of its own)."""
    cdef Py_ssize_t panels = (cols + 63) // 64
    c0[0] = min(64 * (panels * tm.p // tm.n), cols)
    c1[0] = min(64 * (panels * (tm.p + 1) // tm.n), cols)


cdef void _share_step(const _Loop* L, _Team* tm, Py_ssize_t t, floating* gt,
                      const floating* h, Py_ssize_t lo, Py_ssize_t mine) noexcept nogil:
    """Steps 0.-1. of the forward loop for all active rows of step t, columns
    _team_columns of them in this thread: Gt[t] (= biases + x_t @ W_ih.T when the loop
    projects the input) += h @ W_hh.T, or Gh = h @ W_hh.T for a kind that keeps the
    product apart (float only).  ``gt`` is Gt[t] and ``h`` h_prev (B, P), from row 0.
    The bf16 mode converts this thread's own ``mine`` active rows from ``lo`` on (x_t and
    h side by side when it fuses the projection) before the first barrier: every row's
    bf16 operand is ready after it."""
    cdef Py_ssize_t n = L.nact[t], GH = L.GH, P = L.P, I = L.In, c0, c1, ldb = L.hbk
    cdef bint apart = FR_KINDS[L.kind].product_apart
    cdef const float* src = <const float*>h
    cdef const float* bias = <const float*>L.sbias
    cdef const float* x = <const float*>L.X + t * L.B * I
    cdef fr_b16* hb = <fr_b16*>L.hb
    cdef long kx = fr_b16_kp(I) if L.W_ih_b != NULL else 0
    _team_columns(tm, GH, &c0, &c1)
    if floating is float:
        if L.bpanels != NULL and mine > 0:
            if L.W_ih_b != NULL:
                fr_b16_rows(x + lo * I, mine, I, I, 1, hb + lo * ldb, ldb)
            fr_b16_rows(src + lo * P, mine, P, P, 1, hb + lo * ldb + kx, ldb)
        fr_barrier_wait(tm.barrier, &tm.sense)      # every row's h (and Gt) is ready
        if c1 > c0 and n > 0:
            if L.bpanels != NULL:
                if L.W_ih_b != NULL:
                    fr_b16_gemm2(hb, ldb, n, I, <const fr_b16*>L.W_ih_b + c0 * kx, P,
                                 <const fr_b16*>L.bpanels + c0 * fr_b16_kp(P), c1 - c0,
                                 gt + c0, GH, 0, bias + c0 if bias != NULL else NULL)
                else:
                    fr_b16_gemm(hb, ldb, n, P, <const fr_b16*>L.bpanels + c0 * fr_b16_kp(P),
                                c1 - c0, gt + c0, GH, 1, NULL)
            else:
                if L.W_ih_p != NULL:
                    fr_panel_gemm_f(x, I, 0, n, I, <const float*>L.W_ih_p + c0 * I,
                                    c1 - c0, gt + c0, GH, 0,
                                    bias + c0 if bias != NULL else NULL)
                fr_panel_gemm_f(src, P, 0, n, P, <const float*>L.panels + c0 * P, c1 - c0,
                                (<float*>L.gh if apart else gt) + c0, GH, 0 if apart else 1,
                                NULL)
        fr_barrier_wait(tm.barrier, &tm.sense)      # every row's products are done


cdef void _share_back(const _Loop* L, _Team* tm, Py_ssize_t t,
                      floating* gt) noexcept nogil:
    """Step 3. of the backward loop for all active rows of step t, columns _team_columns
    of them in this thread: dh = dG[t] @ W_hh (+ dh on a kind's direct path; into the
    workspace under recurrent dropout), from dGh for a kind that keeps the product apart
    (float only).  ``gt`` is dG[t] from row 0."""
    cdef Py_ssize_t n = L.nact[t], GH = L.GH, P = L.P, c0, c1
    cdef bint apart = FR_KINDS[L.kind].product_apart
    cdef bint add = FR_KINDS[L.kind].direct_path and L.hmask == NULL
    cdef float* dh = <float*>(L.h if L.hmask == NULL else L.hwork)
    _team_columns(tm, P, &c0, &c1)
    if floating is float:
        fr_barrier_wait(tm.barrier, &tm.sense)      # every row's dG[t] (and dh) is ready
        if c1 > c0 and n > 0:
            fr_panel_gemm_f(<const float*>L.gh if apart else gt, GH, 0, n, GH,
                            <const float*>L.panels + c0 * GH, c1 - c0, dh + c0, P, add,
                            NULL)
        fr_barrier_wait(tm.barrier, &tm.sense)      # every row's dh is done


cdef bint _shares_products(const _Loop* L, bint backward, Py_ssize_t parts) noexcept nogil:
    """Whether the threads of this loop share each step's products: float panel products,
    or the bf16 mode's forward products (not for a kind that keeps the product apart or
    projects its input in a product of its own), not the GRU with r before the product;
    over packed weights of at least _blas.shared_product_bytes."""
    cdef double values = <double>L.GH * L.P
    cdef bint b16 = L.bpanels != NULL
    if parts < 2 or FR_KINDS[L.kind].reset_before or (L.panels == NULL and not b16):
        return False
    if b16 and (backward or L.W_ih_bs != NULL or FR_KINDS[L.kind].product_apart):
        return False
    if not backward and (L.W_ih_p != NULL or L.W_ih_b != NULL):
        values += <double>L.GH * L.In
    return values * (sizeof(fr_b16) if b16 else sizeof(float)) >= _shared_product_bytes()


cdef void _team_rows(const _Loop* L, floating* g, const int* bd, Py_ssize_t parts,
                     bint backward, floating* sums, fr_barrier* barrier) noexcept nogil:
    """One thread of a loop whose threads share each step's products: its part of the
    rows, in step with the others.  With fewer threads than parts (a team cut short by
    OpenMP), the parts run one after another without sharing."""
    cdef Py_ssize_t width = FR_KINDS[L.kind].loop_sums * L.H, p
    cdef int tn = openmp.omp_get_num_threads()
    cdef _Team tm
    tm.barrier, tm.p, tm.n, tm.sense = barrier, openmp.omp_get_thread_num(), tn, 0
    if tn != parts:
        p = tm.p
        while p < parts:
            if backward:
                _backward_rows(L, g, bd[p], bd[p + 1],
                               sums + bd[p] * width if sums != NULL else NULL, NULL)
            else:
                _forward_rows(L, g, bd[p], bd[p + 1], NULL)
            p += tn
        return
    p = tm.p
    if backward:
        _backward_rows(L, g, bd[p], bd[p + 1], sums + bd[p] * width if sums != NULL else NULL,
                       &tm)
    else:
        _forward_rows(L, g, bd[p], bd[p + 1], &tm)


cdef Py_ssize_t _shared_loops = 0


def shared_loops():
    """How many time loops (forward or backward) have shared their steps' products since
    the module was loaded."""
    return _shared_loops


cdef int _run_rows(const _Loop* L, floating* g, const int[::1] bounds, bint backward,
                   floating* sums) except -1:
    """The time loop on the row ranges of ``bounds``, in parallel when there are several
    (sharing each step's products where _shares_products); backward: row b sums into
    ``sums + b * FR_KINDS[kind].loop_sums * H`` (``sums`` NULL when the kind sums
    nothing), so that the sums do not depend on how the rows are split."""
    cdef Py_ssize_t p, parts = bounds.shape[0] - 1, width = FR_KINDS[L.kind].loop_sums * L.H
    cdef const int* bd = &bounds[0]
    cdef fr_barrier barrier
    cdef bint share = floating is float and _shares_products(L, backward, parts)
    global _shared_loops
    _shared_loops += share
    with nogil:
        if parts == 1:
            if backward:
                _backward_rows(L, g, 0, L.B, sums, NULL)
            else:
                _forward_rows(L, g, 0, L.B, NULL)
        elif share:
            fr_barrier_init(&barrier, <int>parts)
            with parallel(num_threads=_team(<int>parts)):
                _team_rows(L, g, bd, parts, backward, sums, &barrier)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                if backward:
                    _backward_rows(L, g, bd[p], bd[p + 1],
                                   sums + bd[p] * width if sums != NULL else NULL, NULL)
                else:
                    _forward_rows(L, g, bd[p], bd[p + 1], NULL)
    return 0


# ---------------------------------------------------------------------------------------
# The entries: checks with the GIL, then the loop and the products without it
# ---------------------------------------------------------------------------------------

cdef bint _is_double(object X) except -1:
    """Whether the kernels run in float64 for input ``X`` (float32 otherwise: the typed
    arguments then refuse any other dtype)."""
    return isinstance(X, cnp.ndarray) and cnp.PyArray_TYPE(<cnp.ndarray>X) == cnp.NPY_FLOAT64


def kind_gates(int kind):
    """G of the kernels' kind number ``kind`` (one of the ``KIND_*``)."""
    _check_kind(kind)
    return FR_KINDS[kind].gates


def kind_row(int kind):
    """The kernels' row of kind number ``kind`` (``FR_KINDS`` of _cellmath.h), as a dict."""
    _check_kind(kind)
    return dict(FR_KINDS[kind])


# The kernels' numbers of the kinds (the kernel_id of fastrnn/_kinds.py)
KIND_RNN, KIND_LSTM, KIND_GRU = CELL_RNN, CELL_LSTM, CELL_GRU
KIND_FASTRNN, KIND_FASTGRNN = CELL_FASTRNN, CELL_FASTGRNN
KIND_GRU_RB, KIND_LSTM_P, KIND_LSTM_LN = CELL_GRU_RB, CELL_LSTM_P, CELL_LSTM_LN


cdef int _check_kind(int kind) except -1:
    if kind < 0 or kind >= N_CELLS:
        raise ValueError(f"kind must be one of 0..{N_CELLS - 1}, got {kind}")
    return 0


cdef int _check_loop_kind(int kind) except -1:
    """A kind that :func:`forward` and :func:`backward` run (not the layer-normalised
    LSTM: :func:`ln_forward`, :func:`ln_backward`)."""
    _check_kind(kind)
    if FR_KINDS[kind].layer_norm:
        raise ValueError("the layer-normalised LSTM runs through ln_forward and "
                         "ln_backward")
    return 0


cdef floating* _state_ptr(str name, floating[:, ::1] A, Py_ssize_t B,
                          Py_ssize_t cols) except? NULL:
    """Pointer to an optional (B, cols) array, or NULL when None or empty."""
    if A is None or A.shape[0] == 0:
        return NULL
    _check_shape(name, tuple(A.shape)[:2], (B, cols))
    return &A[0, 0]


cdef floating* _cache_ptr(str name, floating[:, :, ::1] C, Py_ssize_t T, Py_ssize_t B,
                          Py_ssize_t H) except? NULL:
    """Pointer to an optional (T, B, H) cache, or NULL when None or empty."""
    if C is None or C.shape[0] == 0:
        return NULL
    _check_shape(name, tuple(C.shape)[:3], (T, B, H))
    return &C[0, 0, 0]


cdef int _check_kind_arrays(int kind, bint train, bint backward, const void* c,
                            const void* cp, const void* gh, const void* hn,
                            const void* ht) except -1:
    """The arrays only some kinds use: given exactly where the kind needs them."""
    cdef bint lstm = _has_cell(kind)
    cdef bint apart = FR_KINDS[kind].product_apart or FR_KINDS[kind].reset_before
    cdef bint cand = FR_KINDS[kind].keeps_candidate
    cdef str state = "dc" if backward else "c"
    if (c != NULL) != lstm:
        raise ValueError(f"{state} is given with an LSTM, and only then")
    if (cp != NULL) != (lstm and train):
        raise ValueError("Cp is given with an LSTM in training, and only then "
                         "(Hp and Cp both given or both empty)")
    if (gh != NULL) != apart:
        raise ValueError("Gh is given with a GRU, and only then")
    if (hn != NULL) != (apart and train):
        raise ValueError("Hn is given with a GRU in training, and only then "
                         "(Hp and Hn both given or both empty)")
    if (ht != NULL) != (cand and train):
        raise ValueError("Ht is given with a FastGRNN in training, and only then "
                         "(Hp and Ht both given or both empty)")
    return 0


cdef bint _has_cell(int kind) noexcept nogil:
    """Whether the kind's state is (h, c): the LSTMs."""
    return kind == CELL_LSTM or kind == CELL_LSTM_P or kind == CELL_LSTM_LN


cdef const floating* _peephole_ptr(int kind, const floating[::1] P, Py_ssize_t H,
                                   str name) except? NULL:
    """Pointer to the peepholes p (3H), given with an LSTM with peepholes, and only then."""
    cdef bint peep = FR_KINDS[kind].peephole
    if (P is not None and P.shape[0] != 0) != peep:
        raise ValueError(f"{name} is given with an LSTM with peepholes, and only then")
    if not peep:
        return NULL
    _check_shape(name, (P.shape[0],), (3 * H,))
    return &P[0]


cdef int _check_product_layout(int kind, const void* panels, const void* W_ih_p) except -1:
    if FR_KINDS[kind].reset_before and (panels != NULL or W_ih_p != NULL):
        raise ValueError("the GRU with r before the product multiplies by W_hh or its "
                         "transposed copy: no panels")
    return 0


cdef int _scalars(_Loop* L, int kind, const floating[::1] S) except -1:
    """The kind's two scalars (FastRNN alpha, beta; FastGRNN zeta, nu, after the
    sigmoid) into L, from ``S`` (2,): given with these kinds, and only then."""
    cdef bint fast = FR_KINDS[kind].scalar_sums > 0
    if (S is not None and S.shape[0] != 0) != fast:
        raise ValueError("scalars are given with a FastRNN or FastGRNN, and only then")
    L.s0 = L.s1 = 0
    if fast:
        _check_shape("scalars", (S.shape[0],), (2,))
        L.s0, L.s1 = S[0], S[1]
    return 0


cdef int _biases(int kind, Py_ssize_t GH, const void* b_ih, const void* b_hh) except -1:
    """Both biases or neither (FastRNN: b_ih alone, or none)."""
    if FR_KINDS[kind].biases == 1:
        if b_hh != NULL:
            raise ValueError("a FastRNN has one bias: b_hh must be empty")
        return 0
    return _check_bias_pair(b_ih, b_hh)


def forward(int kind, X, W_ih, W_hh, b_ih, b_hh, nact, bounds, h, Y, Py_ssize_t col, Gt, *,
            c=None, Hp=None, Cp=None, Gh=None, Hn=None, Ht=None, scalars=None,
            peephole=None, W_hr=None, Hm=None, hmask=None, zh=None, zc=None,
            bint reverse=False, bint relu=False, W_hh_t=None, int layout=_TRANSPOSED,
            W_ih_p=None, W_hh_b=None, W_ih_b=None, Xb=None, hb=None):
    """Forward over a sequence, one layer in one direction.  Training when ``Hp`` has T
    rows (and ``Cp`` for an LSTM, ``Hn`` for a GRU, ``Ht`` for a FastGRNN), inference
    when they are None or empty.

    ``h`` (B, P) (and the LSTM's ``c`` (B, H)): the initial state on entry, the final
    state on exit; P = H, or an LSTM's projection size with ``W_hr`` (P, H), which makes
    h = W_hr (o*tanh(c)) (``Hm`` (T, B, H) keeps o*tanh(c) in training).  ``Gt`` (T*B, G*H)
    holds the gate activations on exit (the training cache); ``Gh`` (B, G*H) is the GRU's
    per-step workspace; the GRU with r before the product keeps r*h_prev in ``Hn``.
    ``peephole`` (3H,): an LSTM with peepholes' p_i, p_f, p_o.  FastRNN, FastGRNN:
    ``scalars`` (2,) alpha, beta or zeta, nu after the sigmoid; b_ih, b_hh their biases
    (FastRNN's b as b_ih, b_hh empty; FastGRNN's b_z, b_h).  The time loop runs on the row
    ranges of ``bounds`` in parallel.  ``hmask`` (B, P): recurrent dropout, h * hmask
    entering the recurrent product at every step (not the GRU with r before the product).
    Zoneout: ``zh`` (T, B, P) (and an LSTM's ``zc`` (T, B, H)) mix each new state with the
    previous one, z * prev + (1 - z) * new (masks of 0 and 1 in training; the rates, of
    shape (1, B, .), at inference).
    ``W_hh_t`` (P, G*H), the transposed recurrent weight, makes
    each step a plain product (None or empty: BLAS reads W_hh); with
    ``layout=LAYOUT_PANELS`` it holds W_hh.T packed by ``_blas.panel_pack`` (float32);
    with ``layout=LAYOUT_LSTM_ROW`` (an LSTM, float32, B = 1) :func:`lstm_pack`'s layout
    for the fused one-row loop.  With ``W_ih_p`` (W_ih.T packed by ``panel_pack``,
    float32) each step computes its own input projection, just before it needs it; in
    inference ``Gt`` may then have just B rows, reused by every step.

    The bf16 mode (float32): ``W_hh_b``, W_hh.T (P, G*H) in bf16 panels
    (``_blas.b16_pack``), makes every step's product a bf16 product with float sums, h
    converted into the workspace ``hb`` (B, b16_kp(P)) uint16; ``W_ih_b``, W_ih.T
    (I, G*H) in bf16 panels, does the same for the input projection before the loop, X
    converted into ``Xb`` (T*B, b16_kp(I)); without ``Xb`` (a kind that does not fuse, see
    :func:`b16_fuses`) each step projects its own input in the loop, x_t and then h
    converted into ``hb`` (B, b16_kp(max(I, P))), and in inference ``Gt`` may have B rows.  With them, W_hh_t is empty and the layout
    LAYOUT_TRANSPOSED (no panels, no W_ih_p).
    """
    if _is_double(X):
        _forward[double](kind, X, W_ih, W_hh, b_ih, b_hh, nact, bounds, h, Y, col, Gt, c,
                         Hp, Cp, Gh, Hn, Ht, scalars, peephole, W_hr, Hm, hmask, zh, zc,
                         reverse, relu, W_hh_t, layout, W_ih_p, W_hh_b, W_ih_b, Xb, hb)
    else:
        _forward[float](kind, X, W_ih, W_hh, b_ih, b_hh, nact, bounds, h, Y, col, Gt, c, Hp,
                        Cp, Gh, Hn, Ht, scalars, peephole, W_hr, Hm, hmask, zh, zc, reverse,
                        relu, W_hh_t, layout, W_ih_p, W_hh_b, W_ih_b, Xb, hb)


cdef int _loop_arrays(_Loop* L, int kind, bint train, bint backward, floating[:, ::1] c,
                      floating[:, :, ::1] Cp, floating[:, ::1] Gh, floating[:, :, ::1] Hn,
                      floating[:, :, ::1] Ht, const floating[::1] scalars) except -1:
    """The arrays and scalars only some kinds use, checked and into L."""
    L.c = _state_ptr("dc" if backward else "c", c, L.B, L.H)
    L.cp = _cache_ptr("Cp", Cp, L.T, L.B, L.H)
    L.gh = _state_ptr("Gh", Gh, L.B, L.GH)
    L.hn = _cache_ptr("Hn", Hn, L.T, L.B, L.H)
    L.ht = _cache_ptr("Ht", Ht, L.T, L.B, L.H)
    _check_kind_arrays(kind, train, backward, L.c, L.cp, L.gh, L.hn, L.ht)
    _scalars(L, kind, scalars)
    return 0


cdef int _forward(int kind, const floating[:, ::1] X, const floating[:, ::1] W_ih,
                  const floating[:, ::1] W_hh, floating[::1] b_ih, floating[::1] b_hh,
                  const int[::1] nact, const int[::1] bounds, floating[:, ::1] h,
                  floating[:, :, ::1] Y, Py_ssize_t col, floating[:, ::1] Gt,
                  floating[:, ::1] c, floating[:, :, ::1] Hp, floating[:, :, ::1] Cp,
                  floating[:, ::1] Gh, floating[:, :, ::1] Hn, floating[:, :, ::1] Ht,
                  const floating[::1] scalars, const floating[::1] peephole,
                  const floating[:, ::1] W_hr, floating[:, :, ::1] Hm,
                  const floating[:, ::1] hmask, const floating[:, :, ::1] zh,
                  const floating[:, :, ::1] zc, bint reverse, bint relu,
                  const floating[:, ::1] W_hh_t, int layout,
                  const floating[:, ::1] W_ih_p, const fr_b16[::1] W_hh_b,
                  const fr_b16[::1] W_ih_b, fr_b16[:, ::1] Xb,
                  fr_b16[:, ::1] hb) except -1:
    _check_loop_kind(kind)
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], P = h.shape[1], I = X.shape[1]
    cdef Py_ssize_t H = _cell_width(kind, P, W_hr)
    cdef Py_ssize_t GH = FR_KINDS[kind].gates * H, n_hh = _bias_columns(kind, H)
    _check_common(T, B, I, P, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(Y.shape)[:3], col)
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef _Loop L
    L.kind, L.relu, L.reverse = kind, relu, reverse
    L.T, L.B, L.H, L.P, L.In, L.GH, L.ldy = T, B, H, P, I, GH, Y.shape[2]
    L.nact = &nact[0]
    L.hp = _cache_ptr("Hp", Hp, T, B, P)
    cdef bint train = L.hp != NULL
    _loop_arrays(&L, kind, train, False, c, Cp, Gh, Hn, Ht, scalars)
    L.W_hr = NULL if W_hr is None or W_hr.shape[0] == 0 else &W_hr[0, 0]
    L.dhs = NULL
    L.hmask = _mask_ptr(kind, hmask, B, P)
    _zoneout(&L, zh, zc)
    L.hm = _cache_ptr("Hm", Hm, T, B, H)
    L.mstep = B * H if L.hm != NULL else 0
    if (L.hm != NULL) != (L.W_hr != NULL and train):
        raise ValueError("Hm is given with an LSTM's projection W_hr in training, and only "
                         "then")
    L.W_ih_p = _optional_panels("W_ih_p", W_ih_p, I, GH)
    _check_shape("Gt", tuple(Gt.shape)[1:2], (GH,))
    cdef floating* pb_ih = _bias_ptr(b_ih, GH, "b_ih")
    cdef floating* pb_hh = _bias_ptr(b_hh, GH, "b_hh")
    _biases(kind, GH, pb_ih, pb_hh)
    L.b1 = L.b2 = NULL
    if FR_KINDS[kind].biases_in_step:           # the step adds them: none in the projection
        L.b1, L.b2 = pb_ih, pb_hh
        pb_ih = pb_hh = NULL
    elif pb_hh != NULL and n_hh < GH:   # GRU: b_hn stays inside r*(...)
        L.b1 = pb_hh + n_hh
    if FR_KINDS[kind].peephole:
        L.b1 = _peephole_ptr(kind, peephole, H, "peephole")
    else:
        _peephole_ptr(kind, peephole, H, "peephole")
    L.X, L.W_hh, L.h, L.y = &X[0, 0], &W_hh[0, 0], &h[0, 0], &Y[0, 0, 0] + col
    cdef const floating* whh_t = (_transposed_ptr(W_hh_t, P, GH) if W_hh_t is not None
                                  else NULL)
    L.W_hh_t = whh_t
    cdef bint one_row = layout == _LSTM_ROW
    if one_row:
        _check_one_row(kind, B, H, whh_t, L.W_ih_p, <floating>0)
        if L.W_hr != NULL or L.hmask != NULL or L.zh != NULL:
            raise ValueError("LAYOUT_LSTM_ROW is the plain LSTM's layout: no projection, "
                             "recurrent dropout or zoneout")
        L.panels = NULL
    else:
        L.panels = _panels_ptr(whh_t, layout)
    _check_product_layout(kind, L.panels, L.W_ih_p)
    L.bpanels = _b16_panels("W_hh_b", W_hh_b, P, GH)
    L.W_ih_b = L.W_ih_bs = NULL
    cdef const fr_b16* wib = _b16_panels("W_ih_b", W_ih_b, I, GH)
    cdef fr_b16* xb = NULL
    L.hb, L.hbk = NULL, fr_b16_kp(P)
    if L.bpanels != NULL or wib != NULL:
        _b16_kind(kind, L.W_hr, sizeof(floating) == sizeof(float))
        if L.bpanels == NULL or wib == NULL:
            raise ValueError("W_hh_b and W_ih_b are given together")
        if whh_t != NULL or layout != _TRANSPOSED or L.W_ih_p != NULL:
            raise ValueError("with bf16 panels, W_hh_t is empty and the layout "
                             "LAYOUT_TRANSPOSED, without W_ih_p")
        if _b16_fuses(kind):        # [x_t | h] in each row of hb; no Xb
            L.W_ih_b = wib
            L.hbk = fr_b16_kp(I) + fr_b16_kp(P)
            L.hb = _b16_work("hb", hb, B, fr_b16_kp(I) + P)
            wib = NULL
        elif Xb is None:            # each step projects its own input, x_t then h in hb
            L.W_ih_bs = wib
            L.hbk = fr_b16_kp(max(I, P))
            L.hb = _b16_work("hb", hb, B, max(I, P))
            wib = NULL
        else:
            L.hb = _b16_work("hb", hb, B, P)
            xb = _b16_work("Xb", Xb, T * B, I)
    L.gstep = _gates_step(Gt.shape[0], L.W_ih_p != NULL or L.W_ih_b != NULL
                          or L.W_ih_bs != NULL, train, T, B, GH)
    cdef floating* g = &Gt[0, 0]
    cdef floating* work = NULL
    cdef floating* sb = NULL
    L.hwork = L.zwork = NULL
    try:
        if L.W_hr != NULL and not train:        # o*tanh(c) of one step at a time
            work = <floating*>malloc(B * H * sizeof(floating))
            if work == NULL:
                raise MemoryError()
            L.hm = work
        L.hwork = _mask_work(L.hmask, B, P, sizeof(floating))
        if L.zh != NULL and not train:          # the previous states of a step
            L.zwork = _mask_work(L.zh, B, P + H, sizeof(floating))
        sb = _step_bias(<const floating*>(L.W_ih_p if L.W_ih_p != NULL else
                                          L.W_ih_b if L.W_ih_b != NULL else L.W_ih_bs), pb_ih,
                        pb_hh, GH, n_hh)
    except MemoryError:
        free(work)
        free(L.hwork)
        free(L.zwork)
        raise
    L.sbias = sb
    try:
        if wib != NULL:
            with nogil:
                # Gt = biases + bf16(X) @ bf16(W_ih.T)
                if pb_ih != NULL:
                    _fill_bias(g, T * B, GH, pb_ih, pb_hh, n_hh)
                _b16_pgemm(<int>(T * B), <int>GH, <int>I, &X[0, 0], I, 1, wib, xb, True,
                           <floating>(1 if pb_ih != NULL else 0), g, <int>GH)
        elif L.W_ih_p == NULL and L.W_ih_b == NULL and L.W_ih_bs == NULL:
            with nogil:
                _input_all(<int>(T * B), <int>GH, <int>I, &X[0, 0], &W_ih[0, 0], pb_ih,
                           pb_hh, <int>n_hh, g)
        if one_row:
            _one_row_lstm(&L, g)
        else:
            _run_rows(&L, g, bounds, False, <floating*>NULL)
    finally:
        free(sb)
        free(work)
        free(L.hwork)
        free(L.zwork)
    return 0


cdef int _zoneout(_Loop* L, const floating[:, :, ::1] zh,
                  const floating[:, :, ::1] zc) except -1:
    """Zoneout's masks (or rates) into L, checked: zh (T or 1, B, P), and with an LSTM's
    zh a zc (T or 1, B, H); NULL without them."""
    L.zh = L.zc = NULL
    L.zstep = 0
    if zh is None or zh.shape[0] == 0:
        if zc is not None and zc.shape[0] != 0:
            raise ValueError("zc is given with zh")
        return 0
    cdef Py_ssize_t steps = zh.shape[0]
    if steps != L.T and steps != 1:
        raise ValueError(f"zh must have T={L.T} steps (masks) or 1 (rates), got {steps}")
    _check_shape("zh", tuple(zh.shape)[:3], (steps, L.B, L.P))
    if (zc is not None and zc.shape[0] != 0) != _has_cell(L.kind):
        raise ValueError("zc is given with zh for an LSTM, and only then")
    if zc is not None and zc.shape[0] != 0:
        _check_shape("zc", tuple(zc.shape)[:3], (steps, L.B, L.H))
        L.zc = &zc[0, 0, 0]
    L.zh = &zh[0, 0, 0]
    L.zstep = L.B if steps == L.T and L.T > 1 else 0
    return 0


cdef const floating* _mask_ptr(int kind, const floating[:, ::1] hmask, Py_ssize_t B,
                               Py_ssize_t P) except? NULL:
    """Pointer to a recurrent dropout mask (B, P), or NULL when None or empty."""
    if hmask is None or hmask.shape[0] == 0:
        return NULL
    if FR_KINDS[kind].reset_before:
        raise ValueError("hmask (recurrent dropout) is not computed for the GRU with r "
                         "before the product")
    _check_shape("hmask", tuple(hmask.shape)[:2], (B, P))
    return &hmask[0, 0]


cdef void* _mask_work(const void* hmask, Py_ssize_t B, Py_ssize_t P,
                      size_t item) except? NULL:
    """The (B, P) workspace of a recurrent dropout mask, malloc'ed (NULL without one)."""
    if hmask == NULL:
        return NULL
    cdef void* out = malloc(B * P * item)
    if out == NULL:
        raise MemoryError()
    return out


cdef Py_ssize_t _cell_width(int kind, Py_ssize_t P, const floating[:, ::1] W_hr) except -1:
    """H, the cell's width: P (the width of h), or W_hr's columns for an LSTM with a
    projection W_hr (P, H)."""
    if W_hr is None or W_hr.shape[0] == 0:
        return P
    if not _has_cell(kind):
        raise ValueError("W_hr is an LSTM's projection: given with an LSTM only")
    if W_hr.shape[0] != P or W_hr.shape[1] < 1:
        raise ValueError(f"W_hr must have shape (P, H) with P={P} the width of h, got "
                         f"{tuple(W_hr.shape)[:2]}")
    return W_hr.shape[1]


cdef int _check_one_row(int kind, Py_ssize_t B, Py_ssize_t H, const void* W_hh_t,
                        const void* W_ih_p, floating dtype) except -1:
    if kind != CELL_LSTM:
        raise ValueError("LAYOUT_LSTM_ROW is the LSTM's layout")
    if sizeof(floating) != sizeof(float):
        raise ValueError("packed weights are float32 only")
    if B != 1 or H % 16 or W_hh_t == NULL or W_ih_p != NULL:
        raise ValueError("packed weights need one batch row, H a multiple of 16, "
                         "W_hh_t of shape (H, 4H) and no W_ih_p")
    return 0


cdef int _one_row_lstm(const _Loop* L, floating* g) except -1:
    """The fused one-row LSTM loop of ``fr_lstm_row_f`` (float32, B = 1)."""
    cdef float* work = <float*>malloc(2 * L.H * sizeof(float))
    if work == NULL:
        raise MemoryError()
    if floating is float:
        with nogil:
            fr_lstm_row_f(<const float*>L.W_hh_t, L.H, L.nact, L.T, L.reverse, g, L.GH,
                          <float*>L.h, <float*>L.c, <float*>L.y, L.ldy, <float*>L.hp,
                          <float*>L.cp, L.H, work)
    free(work)
    return 0


def backward(int kind, X, W_ih, W_hh, nact, bounds, Gt, Hp, dY, Py_ssize_t col, dh, dW_ih,
             dW_hh, db_ih, db_hh, *, dc=None, Cp=None, Gh=None, Hn=None, Ht=None,
             scalars=None, dscalars=None, peephole=None, dpeephole=None, W_hr=None,
             Hm=None, dW_hr=None, hmask=None, zh=None, zc=None, dX=None,
             bint accumulate_dx=False, bint reverse=False, bint relu=False, W_hh_p=None,
             W_hh_b=None, W_ih_b=None, b16_work=None):
    """Backward through time of :func:`forward`, from its training cache.

    ``dY`` (T, B, ldy), columns ``col .. col+H``: the gradient of the outputs, or None
    for zeros (outputs nothing reads).  ``dh`` (and the LSTM's ``dc``): dh_n, dc_n on
    entry, dh0, dc0 on exit.  ``Gt`` becomes dG; the GRU's ``Hn`` becomes dHn and ``Gh``
    (B, G*H) is workspace.  Weight and bias gradients are added into the arrays given;
    FastRNN, FastGRNN: ``scalars`` as forward took them, ``dscalars`` (2,) += the
    gradients of the two scalars' values (after the sigmoid); an LSTM with peepholes:
    ``peephole`` as forward took it, ``dpeephole`` (3H,) += its gradient; an LSTM with a
    projection: ``W_hr`` and its cache ``Hm`` as forward took them, ``dW_hr`` += the
    projection's gradient (``dh`` is then (B, P)); recurrent dropout: ``hmask`` as forward
    took it (``Hp`` is then multiplied by it, in place); zoneout: ``zh``, ``zc`` as forward
    took them.  ``dX`` (T*B, I) is
    overwritten, or added to with ``accumulate_dx``, or not computed when None.
    ``W_hh_p``: W_hh packed by ``_blas.panel_pack`` for the per-step products (float32),
    or None or empty (BLAS).

    The bf16 mode (float32): ``W_hh_b`` W_hh (G*H, P) and ``W_ih_b`` W_ih (G*H, I) in
    bf16 panels (``_blas.b16_pack``) make every product bf16 with float sums: each step's
    dG @ W_hh, and after the loop dX, dW_ih and dW_hh, with ``b16_work`` (uint16,
    :func:`b16_backward_size` values) holding the converted operands.
    """
    if _is_double(X):
        _backward[double](kind, X, W_ih, W_hh, nact, bounds, Gt, Hp, dY, col, dh, dW_ih,
                          dW_hh, db_ih, db_hh, dc, Cp, Gh, Hn, Ht, scalars, dscalars,
                          peephole, dpeephole, W_hr, Hm, dW_hr, hmask, zh, zc, dX,
                          accumulate_dx, reverse, relu, W_hh_p, W_hh_b, W_ih_b, b16_work)
    else:
        _backward[float](kind, X, W_ih, W_hh, nact, bounds, Gt, Hp, dY, col, dh, dW_ih,
                         dW_hh, db_ih, db_hh, dc, Cp, Gh, Hn, Ht, scalars, dscalars,
                         peephole, dpeephole, W_hr, Hm, dW_hr, hmask, zh, zc, dX,
                         accumulate_dx, reverse, relu, W_hh_p, W_hh_b, W_ih_b, b16_work)


cdef int _backward(int kind, const floating[:, ::1] X, const floating[:, ::1] W_ih,
                   const floating[:, ::1] W_hh, const int[::1] nact, const int[::1] bounds,
                   floating[:, ::1] Gt, floating[:, :, ::1] Hp, const floating[:, :, ::1] dY,
                   Py_ssize_t col, floating[:, ::1] dh, floating[:, ::1] dW_ih,
                   floating[:, ::1] dW_hh, floating[::1] db_ih, floating[::1] db_hh,
                   floating[:, ::1] dc, floating[:, :, ::1] Cp, floating[:, ::1] Gh,
                   floating[:, :, ::1] Hn, floating[:, :, ::1] Ht,
                   const floating[::1] scalars, floating[::1] dscalars,
                   const floating[::1] peephole, floating[::1] dpeephole,
                   const floating[:, ::1] W_hr, floating[:, :, ::1] Hm,
                   floating[:, ::1] dW_hr, const floating[:, ::1] hmask,
                   const floating[:, :, ::1] zh, const floating[:, :, ::1] zc,
                   floating[:, ::1] dX, bint accumulate_dx, bint reverse, bint relu,
                   const floating[:, ::1] W_hh_p, const fr_b16[::1] W_hh_b,
                   const fr_b16[::1] W_ih_b, fr_b16[::1] b16_work) except -1:
    _check_loop_kind(kind)
    cdef Py_ssize_t T = nact.shape[0], B = dh.shape[0], P = dh.shape[1], I = X.shape[1]
    cdef Py_ssize_t H = _cell_width(kind, P, W_hr)
    cdef Py_ssize_t GH = FR_KINDS[kind].gates * H, n1 = _hidden_columns(kind, H)
    _check_common(T, B, I, P, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], (T, B, col + P) if dY is None else tuple(dY.shape)[:3],
                  col)
    _check_shape("Gt", tuple(Gt.shape)[:2], (T * B, GH))
    _check_shape("Hp", tuple(Hp.shape)[:3], (T, B, P))
    if dX is not None:
        _check_shape("dX", tuple(dX.shape)[:2], (T * B, I))
    _check_shape("dW_ih", tuple(dW_ih.shape)[:2], (GH, I))
    _check_shape("dW_hh", tuple(dW_hh.shape)[:2], (GH, P))
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef _Loop L
    L.kind, L.relu, L.reverse = kind, relu, reverse
    L.T, L.B, L.H, L.P, L.In, L.GH = T, B, H, P, I, GH
    L.W_hr = NULL if W_hr is None or W_hr.shape[0] == 0 else &W_hr[0, 0]
    L.bpanels = L.hb = L.W_ih_b = NULL
    L.hbk = 0
    L.mstep = 0
    cdef floating* phm = _cache_ptr("Hm", Hm, T, B, H)
    if L.W_hr != NULL and (phm == NULL or dW_hr is None):
        raise ValueError("an LSTM's projection W_hr needs its cache Hm and dW_hr")
    if L.W_hr != NULL:
        _check_shape("dW_hr", tuple(dW_hr.shape)[:2], (P, H))
    L.ldy = 0 if dY is None else dY.shape[2]
    L.gstep = B * GH
    L.nact = &nact[0]
    _loop_arrays(&L, kind, True, True, dc, Cp, Gh, Hn, Ht, scalars)
    cdef int nsums = FR_KINDS[kind].loop_sums
    cdef floating* pdscalars = NULL
    if FR_KINDS[kind].scalar_sums:
        if dscalars is None:
            raise ValueError("dscalars is given with a FastRNN or FastGRNN")
        _check_shape("dscalars", (dscalars.shape[0],), (2,))
        pdscalars = &dscalars[0]
    cdef const floating* pp = _peephole_ptr(kind, peephole, H, "peephole")
    cdef floating* pdp = <floating*>_peephole_ptr(kind, dpeephole, H, "dpeephole")
    cdef floating* pdb_ih = _bias_ptr(db_ih, GH, "db_ih")
    cdef floating* pdb_hh = _bias_ptr(db_hh, GH, "db_hh")
    _biases(kind, GH, pdb_ih, pdb_hh)
    L.X, L.W_hh, L.h, L.hp = &X[0, 0], &W_hh[0, 0], &dh[0, 0], &Hp[0, 0, 0]
    L.y = NULL if dY is None else <void*>(&dY[0, 0, 0] + col)
    L.W_hh_t = L.W_ih_p = L.sbias = L.b2 = NULL
    L.b1 = pp
    L.panels = _optional_panels("W_hh_p", W_hh_p, GH, P)
    _check_product_layout(kind, L.panels, NULL)
    L.bpanels = _b16_panels("W_hh_b", W_hh_b, GH, P)
    cdef _B16Grads bg
    bg.dG = bg.dGp = bg.dHp = bg.Xt = bg.Hpt = NULL
    bg.Ct = NULL
    bg.W_ih = _b16_panels("W_ih_b", W_ih_b, GH, I)
    cdef tuple offsets
    cdef fr_b16* work
    if L.bpanels != NULL or bg.W_ih != NULL:
        _b16_kind(kind, L.W_hr, sizeof(floating) == sizeof(float))
        if L.bpanels == NULL or bg.W_ih == NULL or L.panels != NULL:
            raise ValueError("W_hh_b and W_ih_b are given together, without W_hh_p")
        offsets = _b16_backward_parts(T, B, I, GH, P, H)
        if b16_work is None or b16_work.shape[0] != offsets[7]:
            raise ValueError(f"b16_work must have {offsets[7]} values (b16_backward_size)")
        if (<size_t>&b16_work[0]) % 64:
            raise ValueError("b16_work must start on a 64-byte boundary")
        work = &b16_work[0]
        L.hb, L.hbk = work, fr_b16_kp(GH)
        bg.dG = work + <Py_ssize_t>offsets[1]
        bg.dGp = work + <Py_ssize_t>offsets[2]
        bg.dHp = work + <Py_ssize_t>offsets[3]
        bg.Xt = work + <Py_ssize_t>offsets[4]
        bg.Hpt = work + <Py_ssize_t>offsets[5]
        bg.Ct = <float*>(work + <Py_ssize_t>offsets[6])
    cdef floating* g = &Gt[0, 0]
    cdef floating* pdx = &dX[0, 0] if dX is not None else NULL
    cdef bint before = FR_KINDS[kind].reset_before
    # the last GH - n1 gate rows of dW_hh: GRU dHn.T @ Hp; r before the product dG.T @ Hn
    cdef _Grads gd = _grads_shape(T * B, GH, I, P, accumulate_dx, n1, GH, GH - n1,
                                  GH if before else H)
    cdef floating* dG2 = g + n1 if before else <floating*>L.hn
    cdef floating* Hp2 = <floating*>L.hn if before else &Hp[0, 0, 0]
    cdef floating* sums = NULL
    L.hm = L.dhs = L.hwork = L.zwork = NULL
    L.hmask = _mask_ptr(kind, hmask, B, P)
    _zoneout(&L, zh, zc)
    cdef Py_ssize_t t
    try:
        L.hwork = _mask_work(L.hmask, B, P, sizeof(floating))
        L.zwork = _mask_work(L.zh, B, P + H, sizeof(floating))
        if nsums:
            sums = <floating*>calloc(B * nsums * H, sizeof(floating))
            if sums == NULL:
                raise MemoryError()
        if L.W_hr != NULL:      # d(o*tanh(c)) of a step; every step's dh, for dW_hr
            L.hm = malloc(B * H * sizeof(floating))
            L.dhs = malloc(T * B * P * sizeof(floating))
            if L.hm == NULL or L.dhs == NULL:
                raise MemoryError()
        _run_rows(&L, g, bounds, True, sums)
        if nsums:
            _add_sums(kind, sums, B, H, pdb_ih, pdb_hh, pdp, pdscalars)
        if FR_KINDS[kind].biases_in_step:       # FastGRNN: its bias gradients are in the sums
            pdb_ih = pdb_hh = NULL
        with nogil:
            if L.hmask != NULL:     # the product read h * mask: so do its weights' gradients
                for t in range(T):
                    _mask_rows(&Hp[t, 0, 0], <const floating*>L.hmask, &Hp[t, 0, 0], B, P)
            # dW_hh[:n1] += dG[:, :n1].T @ Hp;  GRU: dW_hh[2H:] += dHn.T @ Hp
            if L.bpanels != NULL:
                _b16_param_grads(&gd, &bg, g, dG2, &X[0, 0], &Hp[0, 0, 0], pdx,
                                 &dW_ih[0, 0], pdb_ih, &dW_hh[0, 0], pdb_hh)
            else:
                _param_grads(&gd, g, dG2, &X[0, 0], &W_ih[0, 0], &Hp[0, 0, 0], Hp2, pdx,
                             &dW_ih[0, 0], pdb_ih, &dW_hh[0, 0], pdb_hh)
            if L.W_hr != NULL:  # dW_hr += dH.T @ Hm over all T*B rows
                pgemm(True, False, <int>P, <int>H, <int>(T * B), <floating>1,
                      <floating*>L.dhs, <int>P, phm, <int>H, <floating>1, &dW_hr[0, 0],
                      <int>H)
    finally:
        free(sums)
        free(L.hm)
        free(L.dhs)
        free(L.hwork)
        free(L.zwork)
    return 0


cdef void _add_sums(int kind, const floating* sums, Py_ssize_t rows, Py_ssize_t H,
                    floating* db_ih, floating* db_hh, floating* dp,
                    floating* dscalars) noexcept nogil:
    """What the rows' sums add up to, in the order of the rows: per unit into vectors
    (FastGRNN db_z, db_h into db_ih, db_hh when given; an LSTM with peepholes dp_i, dp_f,
    dp_o into dp), then totals into dscalars (FastRNN dalpha, dbeta; FastGRNN dzeta,
    dnu)."""
    cdef Py_ssize_t nsums = FR_KINDS[kind].loop_sums, first = nsums - FR_KINDS[kind].scalar_sums
    cdef Py_ssize_t p, j, q
    cdef floating* vectors[3]
    cdef const floating* part
    cdef double total
    vectors[0] = vectors[1] = vectors[2] = NULL
    if kind == CELL_FASTGRNN:
        vectors[0], vectors[1] = db_ih, db_hh
    elif dp != NULL:
        vectors[0], vectors[1], vectors[2] = dp, dp + H, dp + 2 * H
    for p in range(rows):
        for q in range(first):
            if vectors[q] != NULL:
                part = sums + (p * nsums + q) * H
                for j in range(H):
                    vectors[q][j] += part[j]
    for q in range(nsums - first):
        total = 0
        for p in range(rows):
            part = sums + (p * nsums + first + q) * H
            for j in range(H):
                total += part[j]
        dscalars[q] += <floating>total


# ---------------------------------------------------------------------------------------
# The layer-normalised LSTM (Ba, Kiros & Hinton 2016, appendix)
#
#   G_t = LN(x_t @ W_ih.T; g_x, b_x) + LN(h_prev @ W_hh.T; g_h, b_h)   (one LN over 4H)
#   i, f, g, o = σ, σ, tanh, σ of G_t's blocks;  c_t = f*c_prev + i*g
#   h_t = o * tanh(LN(c_t; g_c, b_c))
#
# Its own loops.  Before the loop, the input projection of all T*B rows is normalised in
# place: Gt = g_x * Xn + b_x + b_h (Xn the normalised projection).  Each step's recurrent
# product goes to the workspace Gh and joins Gt normalised; the cell state is normalised
# before the output tanh.  Training keeps Xn (T*B, 4H), Xh (T, B, 4H) the normalised
# recurrent products, Xc (T, B, H) the normalised cell states and R (T*B, 3) the three
# 1/sqrt(var + eps) of each row (input, recurrent, cell), besides Hp and Cp.
# Backward, per step: the cell's gradient (fr_lnlstm_grad), then through the recurrent
# normalisation into Xh[t], which becomes dU, the gradient of the product; dh = dU @ W_hh.
# After the loop: dW_hh += dU.T @ Hp; the input normalisation's gain and bias gradients;
# its gradient into Xn, which becomes dA; dX (+)= dA @ W_ih, dW_ih += dA.T @ X.  The
# per-row sums (the gains g_h, g_c and the bias b_c) add up in the order of the rows.
# ---------------------------------------------------------------------------------------

#: the variance epsilon of every layer normalisation (PyTorch's LayerNorm default)
LN_EPS = 1e-5

cdef struct _LNLoop:
    bint reverse
    Py_ssize_t T, B, H, GH, ldy
    const int* nact
    const void* W_hh            # (4H, H)
    const void* W_hh_t          # forward: (H, 4H) or its panels, or NULL: BLAS reads W_hh
    const void* panels          # W_hh.T (forward) or W_hh (backward) packed, or NULL
    const void* g_h             # the recurrent normalisation's gain (4H)
    const void* g_c             # the cell normalisation's gain and bias (H each)
    const void* b_c
    void* h                     # forward: h; backward: dh (B, H)
    void* c                     # forward: c; backward: dc (B, H)
    void* gh                    # workspace (B, 4H)
    void* y                     # forward: Y + col; backward: dY + col, or NULL (T, B, ldy)
    void* hp                    # training: Hp, Cp (T, B, H); Xh (T, B, 4H); Xc (T, B, H);
    void* cp                    #   R (T*B, 3); NULL at inference
    void* xh
    void* xc
    void* r
    double eps


cdef inline void _ln_rows(const floating* x, Py_ssize_t ldx, Py_ssize_t rows, Py_ssize_t n,
                          const floating* gain, const floating* bias, const floating* bias2,
                          bint add, floating* out, Py_ssize_t ldo, floating* xhat,
                          Py_ssize_t ldxh, floating* rstd, double eps) noexcept nogil:
    """fr_ln_rows (R's stride 3)."""
    if floating is float:
        fr_ln_rows_f(x, ldx, rows, n, gain, bias, bias2, add, out, ldo, xhat, ldxh, rstd, 3,
                     <float>eps)
    else:
        fr_ln_rows_d(x, ldx, rows, n, gain, bias, bias2, add, out, ldo, xhat, ldxh, rstd, 3,
                     eps)


cdef inline void _ln_grad(const floating* dy, Py_ssize_t ldy, Py_ssize_t rows, Py_ssize_t n,
                          const floating* gain, const floating* xhat, Py_ssize_t ldxh,
                          const floating* rstd, floating* acc, Py_ssize_t lda, floating* dx,
                          Py_ssize_t ldx) noexcept nogil:
    """fr_ln_grad (R's stride 3)."""
    if floating is float:
        fr_ln_grad_f(dy, ldy, rows, n, gain, xhat, ldxh, rstd, 3, acc, lda, dx, ldx)
    else:
        fr_ln_grad_d(dy, ldy, rows, n, gain, xhat, ldxh, rstd, 3, acc, lda, dx, ldx)


cdef void _ln_forward_rows(const _LNLoop* L, floating* g, Py_ssize_t lo,
                           Py_ssize_t hi) noexcept nogil:
    """The forward time loop over batch rows lo..hi-1 (``g`` is Gt)."""
    cdef Py_ssize_t T = L.T, B = L.B, H = L.H, GH = L.GH, ldy = L.ldy, rows = hi - lo
    cdef Py_ssize_t s, t, n, step = B * H
    cdef const floating* W_hh = <const floating*>L.W_hh
    cdef const floating* W_hh_t = <const floating*>L.W_hh_t
    cdef const floating* panels = <const floating*>L.panels
    cdef const floating* g_h = <const floating*>L.g_h
    cdef const floating* g_c = <const floating*>L.g_c
    cdef const floating* b_c = <const floating*>L.b_c
    cdef floating* hs = _rows(L.h, lo * H, g)
    cdef floating* cs = _rows(L.c, lo * H, g)
    cdef floating* gh = _rows(L.gh, lo * GH, g)
    cdef floating* y = _rows(L.y, lo * ldy, g)
    cdef floating* hp = _rows(L.hp, lo * H, g)
    cdef floating* cp = _rows(L.cp, lo * H, g)
    cdef floating* xh = _rows(L.xh, lo * GH, g)
    cdef floating* xc = _rows(L.xc, lo * H, g)
    cdef floating* r = _rows(L.r, lo * 3, g)
    cdef floating* gt
    cdef floating* rt
    cdef floating* yt
    g += lo * GH
    for s in range(T):
        t = T - 1 - s if L.reverse else s
        n = _active(L.nact[t], lo, hi)
        gt = g + t * B * GH
        yt = y + t * B * ldy
        rt = r + t * B * 3 if r != NULL else NULL
        if hp != NULL:
            memcpy(hp + t * step, hs, rows * H * sizeof(floating))
            memcpy(cp + t * step, cs, rows * H * sizeof(floating))
        # 1. Gh = h @ W_hh.T;  Gt[t] += g_h * LN(Gh)  (+ b_h, added before the loop);
        #    training keeps LN(Gh) in Xh[t]
        _step_product(<int>n, <int>GH, <int>H, hs, W_hh, W_hh_t, panels, <floating>0, gh)
        _ln_rows(gh, GH, n, GH, g_h, NULL, NULL, True, gt, GH,
                 xh + t * B * GH if xh != NULL else NULL, GH,
                 rt + 1 if rt != NULL else NULL, L.eps)
        # 2.-3. the gates, c, and h = o * tanh(LN(c)) (training keeps LN(c) in Xc[t])
        if floating is float:
            fr_lnlstm_step_f(gt, hs, cs, g_c, b_c, xc + t * step if xc != NULL else NULL,
                             rt + 2 if rt != NULL else NULL, 3, n, H, <float>L.eps)
        else:
            fr_lnlstm_step_d(gt, hs, cs, g_c, b_c, xc + t * step if xc != NULL else NULL,
                             rt + 2 if rt != NULL else NULL, 3, n, H, L.eps)
        # 4. Y[t] = h; zeros at padded steps
        _copy_rows(hs, H, yt, ldy, n, H)
        _zero_rows(yt + n * ldy, ldy, rows - n, H)


cdef void _ln_backward_rows(const _LNLoop* L, floating* g, Py_ssize_t lo, Py_ssize_t hi,
                            floating* sums) noexcept nogil:
    """The backward time loop over batch rows lo..hi-1 (``g`` is Gt, which becomes dG);
    ``sums`` (B, 6H): per row, the terms of g_h (4H), then of g_c and b_c (H each)."""
    cdef Py_ssize_t T = L.T, B = L.B, H = L.H, GH = L.GH, ldy = L.ldy, rows = hi - lo
    cdef Py_ssize_t s, t, n, step = B * H
    cdef const floating* W_hh = <const floating*>L.W_hh
    cdef const floating* panels = <const floating*>L.panels
    cdef const floating* g_h = <const floating*>L.g_h
    cdef const floating* g_c = <const floating*>L.g_c
    cdef const floating* b_c = <const floating*>L.b_c
    cdef floating* dhs = _rows(L.h, lo * H, g)
    cdef floating* dcs = _rows(L.c, lo * H, g)
    cdef floating* work = _rows(L.gh, lo * GH, g)
    cdef const floating* dy = _rows(L.y, lo * ldy, g)
    cdef const floating* cp = _rows(L.cp, lo * H, g)
    cdef floating* xh = _rows(L.xh, lo * GH, g)
    cdef const floating* xc = _rows(L.xc, lo * H, g)
    cdef const floating* r = _rows(L.r, lo * 3, g)
    cdef floating* sums_h = sums + lo * 6 * H
    cdef floating* sums_c = sums_h + 4 * H
    cdef floating* gt
    cdef floating* dut
    g += lo * GH
    for s in range(T):
        t = s if L.reverse else T - 1 - s
        n = _active(L.nact[t], lo, hi)
        gt = g + t * B * GH
        dut = xh + t * B * GH
        # 1. dh += dY[t]   (no dY: the outputs are not read, zeros)
        if dy != NULL:
            _add_rows(dy + t * B * ldy, ldy, dhs, H, n, H)
        # 2. dG[t], dc = dc_prev, the terms of g_c and b_c
        if floating is float:
            fr_lnlstm_grad_f(gt, cp + t * step, xc + t * step, r + t * B * 3 + 2, 3, g_c, b_c,
                             dhs, dcs, sums_c, 6 * H, work, n, H)
        else:
            fr_lnlstm_grad_d(gt, cp + t * step, xc + t * step, r + t * B * 3 + 2, 3, g_c, b_c,
                             dhs, dcs, sums_c, 6 * H, work, n, H)
        # 3. through the recurrent normalisation: Xh[t] becomes dU; the terms of g_h
        _ln_grad(gt, GH, n, GH, g_h, dut, GH, r + t * B * 3 + 1, sums_h, 6 * H, dut, GH)
        memset(gt + n * GH, 0, (rows - n) * GH * sizeof(floating))
        memset(dut + n * GH, 0, (rows - n) * GH * sizeof(floating))
        # 4. dh = dU @ W_hh   (rows that wait keep their dh)
        _back_product(<int>n, <int>GH, <int>H, dut, <int>GH, W_hh, panels, <floating>0, dhs)


cdef int _ln_run_rows(const _LNLoop* L, floating* g, const int[::1] bounds, bint backward,
                      floating* sums) except -1:
    """The time loop on the row ranges of ``bounds``, in parallel when there are several."""
    cdef Py_ssize_t p, parts = bounds.shape[0] - 1
    cdef const int* bd = &bounds[0]
    with nogil:
        if parts == 1:
            if backward:
                _ln_backward_rows(L, g, 0, L.B, sums)
            else:
                _ln_forward_rows(L, g, 0, L.B)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                if backward:
                    _ln_backward_rows(L, g, bd[p], bd[p + 1], sums)
                else:
                    _ln_forward_rows(L, g, bd[p], bd[p + 1])
    return 0


cdef void _ln_all_rows(floating* G, Py_ssize_t rows, Py_ssize_t GH, const floating* gain,
                       const floating* b1, const floating* b2, floating* Xn, floating* R,
                       floating* dG, double eps) noexcept nogil:
    """Over all ``rows`` rows of G (rows, GH), in parallel blocks of rows: the input
    normalisation, G = gain * LN(G) + b1 + b2 in place (``Xn``, ``R``: LN(G) and column 0
    of R kept, when not NULL); or with ``dG``, its backward: ``Xn`` (LN(G)) becomes the
    gradient of G's rows, from dG."""
    cdef Py_ssize_t p, lo, hi, parts = _threads() if rows >= 64 else 1
    for p in prange(parts, num_threads=_team(<int>parts), schedule="static"):
        lo = rows * p // parts
        hi = rows * (p + 1) // parts
        if dG == NULL:
            _ln_rows(G + lo * GH, GH, hi - lo, GH, gain, b1, b2, False, G + lo * GH, GH,
                     Xn + lo * GH if Xn != NULL else NULL, GH,
                     R + lo * 3 if R != NULL else NULL, eps)
        else:
            _ln_grad(dG + lo * GH, GH, hi - lo, GH, gain, Xn + lo * GH, GH, R + lo * 3,
                     NULL, 0, Xn + lo * GH, GH)


cdef int _ln_norms(tuple norms, Py_ssize_t H, const floating** out, floating dtype,
                   str name) except -1:
    """The six normalisation vectors (g_x, b_x, g_h, b_h: 4H each; g_c, b_c: H each)."""
    if len(norms) != 6:
        raise ValueError(f"{name} must hold 6 vectors (g_x, b_x, g_h, b_h, g_c, b_c), got "
                         f"{len(norms)}")
    cdef const floating[::1] v
    cdef int k
    for k in range(6):
        v = norms[k]
        _check_shape(f"{name}[{k}]", (v.shape[0],), (4 * H if k < 4 else H,))
        out[k] = &v[0]
    return 0


def ln_forward(X, W_ih, W_hh, tuple norms, nact, bounds, h, c, Y, Py_ssize_t col, Gt, Gh, *,
               Hp=None, Cp=None, Xn=None, Xh=None, Xc=None, R=None, bint reverse=False,
               W_hh_t=None, int layout=_TRANSPOSED):
    """Forward of the layer-normalised LSTM over a sequence, one layer in one direction.

    As :func:`forward` for an LSTM, with ``norms`` = (g_x, b_x, g_h, b_h, g_c, b_c), the
    gains and biases of the input (4H), recurrent (4H) and cell (H) normalisations, and
    ``Gh`` (B, 4H) a workspace.  Training when ``Hp`` has T rows: then ``Cp`` (T, B, H),
    ``Xn`` (T*B, 4H), ``Xh`` (T, B, 4H), ``Xc`` (T, B, H) and ``R`` (T*B, 3) are kept for
    :func:`ln_backward`.  ``layout``: as :func:`forward` (not the one-row layout).
    """
    if _is_double(X):
        _ln_forward[double](X, W_ih, W_hh, norms, nact, bounds, h, c, Y, col, Gt, Gh, Hp, Cp,
                            Xn, Xh, Xc, R, reverse, W_hh_t, layout)
    else:
        _ln_forward[float](X, W_ih, W_hh, norms, nact, bounds, h, c, Y, col, Gt, Gh, Hp, Cp,
                           Xn, Xh, Xc, R, reverse, W_hh_t, layout)


cdef int _ln_check(_LNLoop* L, const floating[:, ::1] X, const floating[:, ::1] W_ih,
                   const floating[:, ::1] W_hh, const int[::1] nact, const int[::1] bounds,
                   floating[:, ::1] h, floating[:, ::1] c, tuple Y, Py_ssize_t col,
                   floating[:, ::1] Gt, floating[:, ::1] Gh) except -1:
    """The checks and sizes both entries share, into L."""
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], H = h.shape[1], I = X.shape[1]
    _check_common(T, B, I, H, 4 * H, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], Y, col)
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    _check_shape("c", tuple(c.shape)[:2], (B, H))
    _check_shape("Gt", tuple(Gt.shape)[:2], (T * B, 4 * H))
    _check_shape("Gh", tuple(Gh.shape)[:2], (B, 4 * H))
    L.T, L.B, L.H, L.GH, L.ldy = T, B, H, 4 * H, Y[2]
    L.nact = &nact[0]
    L.W_hh = &W_hh[0, 0]
    L.h, L.c, L.gh = &h[0, 0], &c[0, 0], &Gh[0, 0]
    L.eps = LN_EPS
    return 0


cdef int _ln_forward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                     const floating[:, ::1] W_hh, tuple norms, const int[::1] nact,
                     const int[::1] bounds, floating[:, ::1] h, floating[:, ::1] c,
                     floating[:, :, ::1] Y, Py_ssize_t col, floating[:, ::1] Gt,
                     floating[:, ::1] Gh, floating[:, :, ::1] Hp, floating[:, :, ::1] Cp,
                     floating[:, ::1] Xn, floating[:, :, ::1] Xh, floating[:, :, ::1] Xc,
                     floating[:, ::1] R, bint reverse, const floating[:, ::1] W_hh_t,
                     int layout) except -1:
    cdef _LNLoop L
    _ln_check(&L, X, W_ih, W_hh, nact, bounds, h, c, tuple(Y.shape)[:3], col, Gt, Gh)
    cdef Py_ssize_t T = L.T, B = L.B, H = L.H, GH = L.GH, I = X.shape[1]
    cdef const floating* v[6]
    _ln_norms(norms, H, v, <floating>0, "norms")
    L.reverse = reverse
    L.y = &Y[0, 0, 0] + col
    L.g_h, L.g_c, L.b_c = v[2], v[4], v[5]
    L.hp = _cache_ptr("Hp", Hp, T, B, H)
    cdef bint train = L.hp != NULL
    L.cp = _cache_ptr("Cp", Cp, T, B, H)
    L.xh = _cache_ptr("Xh", Xh, T, B, GH)
    L.xc = _cache_ptr("Xc", Xc, T, B, H)
    cdef floating* xn = NULL
    L.r = NULL
    if Xn is not None and Xn.shape[0] != 0:
        _check_shape("Xn", tuple(Xn.shape)[:2], (T * B, GH))
        xn = &Xn[0, 0]
    if R is not None and R.shape[0] != 0:
        _check_shape("R", tuple(R.shape)[:2], (T * B, 3))
        L.r = &R[0, 0]
    if train != (L.cp != NULL) or train != (L.xh != NULL) or train != (L.xc != NULL) or \
            train != (xn != NULL) or train != (L.r != NULL):
        raise ValueError("training takes Hp, Cp, Xn, Xh, Xc and R; inference none of them")
    if layout == _LSTM_ROW:
        raise ValueError("LAYOUT_LSTM_ROW is the plain LSTM's layout")
    L.W_hh_t = _transposed_ptr(W_hh_t, H, GH) if W_hh_t is not None else NULL
    L.panels = _panels_ptr(<const floating*>L.W_hh_t, layout)
    cdef floating* g = &Gt[0, 0]
    with nogil:
        _input_all(<int>(T * B), <int>GH, <int>I, &X[0, 0], &W_ih[0, 0], NULL, NULL, 0, g)
        _ln_all_rows(g, T * B, GH, v[0], v[1], v[3], xn, <floating*>L.r, NULL, L.eps)
    _ln_run_rows(&L, g, bounds, False, <floating*>NULL)
    return 0


def ln_backward(X, W_ih, W_hh, tuple norms, nact, bounds, Gt, Hp, Cp, Xn, Xh, Xc, R, Gh, dY,
                Py_ssize_t col, dh, dc, dW_ih, dW_hh, tuple dnorms, *, dX=None,
                bint accumulate_dx=False, bint reverse=False, W_hh_p=None):
    """Backward through time of :func:`ln_forward`, from its training cache.

    As :func:`backward` for an LSTM: ``dY`` (or None), ``dh``, ``dc`` (dh_n, dc_n on
    entry, dh0, dc0 on exit), ``dX``, ``accumulate_dx``, ``W_hh_p``; ``dnorms``, the six
    arrays the normalisations' gradients are added into; ``Gt`` becomes dG, ``Xn`` and
    ``Xh`` the gradients of the input and recurrent products; ``Gh`` (B, 4H) a workspace.
    """
    if _is_double(X):
        _ln_backward[double](X, W_ih, W_hh, norms, nact, bounds, Gt, Hp, Cp, Xn, Xh, Xc, R,
                             Gh, dY, col, dh, dc, dW_ih, dW_hh, dnorms, dX, accumulate_dx,
                             reverse, W_hh_p)
    else:
        _ln_backward[float](X, W_ih, W_hh, norms, nact, bounds, Gt, Hp, Cp, Xn, Xh, Xc, R,
                            Gh, dY, col, dh, dc, dW_ih, dW_hh, dnorms, dX, accumulate_dx,
                            reverse, W_hh_p)


cdef int _ln_backward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                      const floating[:, ::1] W_hh, tuple norms, const int[::1] nact,
                      const int[::1] bounds, floating[:, ::1] Gt, floating[:, :, ::1] Hp,
                      floating[:, :, ::1] Cp, floating[:, ::1] Xn, floating[:, :, ::1] Xh,
                      floating[:, :, ::1] Xc, floating[:, ::1] R, floating[:, ::1] Gh,
                      const floating[:, :, ::1] dY, Py_ssize_t col, floating[:, ::1] dh,
                      floating[:, ::1] dc, floating[:, ::1] dW_ih, floating[:, ::1] dW_hh,
                      tuple dnorms, floating[:, ::1] dX, bint accumulate_dx, bint reverse,
                      const floating[:, ::1] W_hh_p) except -1:
    cdef _LNLoop L
    cdef Py_ssize_t T = nact.shape[0], B = dh.shape[0], H = dh.shape[1]
    _ln_check(&L, X, W_ih, W_hh, nact, bounds, dh, dc,
              (T, B, col + H) if dY is None else tuple(dY.shape)[:3], col, Gt, Gh)
    cdef Py_ssize_t GH = L.GH, I = X.shape[1], TB = T * B, p, j
    cdef const floating* v[6]
    cdef const floating* dv[6]
    _ln_norms(norms, H, v, <floating>0, "norms")
    _ln_norms(dnorms, H, dv, <floating>0, "dnorms")
    _check_shape("Hp", tuple(Hp.shape)[:3], (T, B, H))
    _check_shape("Cp", tuple(Cp.shape)[:3], (T, B, H))
    _check_shape("Xn", tuple(Xn.shape)[:2], (TB, GH))
    _check_shape("Xh", tuple(Xh.shape)[:3], (T, B, GH))
    _check_shape("Xc", tuple(Xc.shape)[:3], (T, B, H))
    _check_shape("R", tuple(R.shape)[:2], (TB, 3))
    _check_shape("dW_ih", tuple(dW_ih.shape)[:2], (GH, I))
    _check_shape("dW_hh", tuple(dW_hh.shape)[:2], (GH, H))
    if dX is not None:
        _check_shape("dX", tuple(dX.shape)[:2], (TB, I))
    L.reverse = reverse
    L.y = NULL if dY is None else <void*>(&dY[0, 0, 0] + col)
    L.g_h, L.g_c, L.b_c = v[2], v[4], v[5]
    L.hp, L.cp, L.xh, L.xc, L.r = &Hp[0, 0, 0], &Cp[0, 0, 0], &Xh[0, 0, 0], &Xc[0, 0, 0], &R[0, 0]
    L.W_hh_t = NULL
    L.panels = _optional_panels("W_hh_p", W_hh_p, GH, H)
    cdef floating* g = &Gt[0, 0]
    cdef floating* dg_x = <floating*>dv[0]
    cdef floating* db_x = <floating*>dv[1]
    cdef floating* dg_h = <floating*>dv[2]
    cdef floating* db_h = <floating*>dv[3]
    cdef floating* dg_c = <floating*>dv[4]
    cdef floating* db_c = <floating*>dv[5]
    cdef floating* sums = <floating*>calloc(B * 6 * H + GH, sizeof(floating))
    if sums == NULL:
        raise MemoryError()
    cdef floating* db = sums + B * 6 * H            # the column sums of dG
    cdef floating* part
    try:
        _ln_run_rows(&L, g, bounds, True, sums)
        with nogil:
            for p in range(B):                      # the rows' sums, in the order of the rows
                part = sums + p * 6 * H
                for j in range(GH):
                    dg_h[j] += part[j]
                for j in range(H):
                    dg_c[j] += part[GH + j]
                    db_c[j] += part[GH + H + j]
            # dW_hh += dU.T @ Hp over all T*B rows
            pgemm(True, False, <int>GH, <int>H, <int>TB, <floating>1, &Xh[0, 0, 0], <int>GH,
                  &Hp[0, 0, 0], <int>H, <floating>1, &dW_hh[0, 0], <int>H)
            # the input normalisation: g_x += sum dG * Xn, b_x and b_h += sum dG; then Xn
            # becomes dA, the gradient of the input projection
            if floating is float:
                fr_ln_colgrads_f(g, &Xn[0, 0], TB, GH, GH, dg_x, db)
            else:
                fr_ln_colgrads_d(g, &Xn[0, 0], TB, GH, GH, dg_x, db)
            for j in range(GH):
                db_x[j] += db[j]
                db_h[j] += db[j]
            _ln_all_rows(NULL, TB, GH, v[0], NULL, NULL, &Xn[0, 0], &R[0, 0], g, L.eps)
            if dX is not None:
                pgemm(False, False, <int>TB, <int>I, <int>GH, <floating>1, &Xn[0, 0],
                      <int>GH, &W_ih[0, 0], <int>I,
                      <floating>(1 if accumulate_dx else 0), &dX[0, 0], <int>I)
            pgemm(True, False, <int>GH, <int>I, <int>TB, <floating>1, &Xn[0, 0], <int>GH,
                  &X[0, 0], <int>I, <floating>1, &dW_ih[0, 0], <int>I)
    finally:
        free(sums)
    return 0


#: bytes from which same_bytes compares in one part a thread: the check of a kept panel
#: (two 4 MiB weights of an LSTM with H = 512, every call) is bound by memory bandwidth,
#: which one core does not use up
cdef Py_ssize_t _COMPARE_SPLIT = 1 << 20


def same_bytes(a, b):
    """Whether two C-contiguous arrays hold the same bytes (memcmp; no dtype logic, so
    NaNs with the same bits compare equal and -0.0 differs from 0.0); from
    ``_COMPARE_SPLIT`` bytes on, in one part a thread."""
    cdef const unsigned char[::1] x = memoryview(a).cast("B")
    cdef const unsigned char[::1] y = memoryview(b).cast("B")
    cdef Py_ssize_t n = x.shape[0], p, lo, parts
    cdef int differ = 0
    if n != y.shape[0]:
        return False
    if n == 0:
        return True
    parts = _threads() if n >= _COMPARE_SPLIT else 1
    with nogil:
        if parts < 2:
            differ = memcmp(&x[0], &y[0], n) != 0
        else:
            for p in prange(parts, num_threads=_team(<int>parts), schedule="static"):
                lo = n * p // parts
                differ += memcmp(&x[lo], &y[lo], n * (p + 1) // parts - lo) != 0
    return differ == 0


def lstm_pack(const float[:, ::1] W_hh, float[:, ::1] out):
    """``out`` (H, 4H) read as (H/16, H, 64): for each block b of 16 units a panel whose
    row k holds gate q of unit ``16*b + u`` at ``16*q + u`` (``W_hh[q*H + 16*b + u, k]``),
    the layout of ``forward(KIND_LSTM, ..., layout=LAYOUT_LSTM_ROW)``.  H must be a
    multiple of 16."""
    cdef Py_ssize_t H = W_hh.shape[1]
    if H % 16 or W_hh.shape[0] != 4 * H:
        raise ValueError(f"W_hh must be (4H, H) with H a multiple of 16, got "
                         f"{tuple(W_hh.shape)[:2]}")
    _check_shape("out", tuple(out.shape)[:2], (H, 4 * H))
    with nogil:
        fr_lstm_pack_f(&W_hh[0, 0], H, &out[0, 0])
