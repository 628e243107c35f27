# cython: language_level=3
"""Compiled kernels of fastrnn: forward unrolling and BPTT of RNN, LSTM and GRU layers.

The kernels know nothing of classes: each takes arrays, writes into arrays it is given and
returns nothing.  Every kernel runs its whole time loop in one ``with nogil:`` block and
does all matrix products through :func:`gemm`, the one typed BLAS wrapper
(fastrnn/_blas.pxd).

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
or accumulated (``accumulate_dx``), so two directions can share one input gradient.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset

from fastrnn._blas cimport (_check_index, _check_shape, _parts, _pgemm_parts,
                            _side_by_side, _team, _threads)
from fastrnn._cellmath cimport (_add_colsum, _add_rows, _copy_rows, _fill_bias,
                                _gru_grad, _gru_step, _lstm_grad, _lstm_step, _rnn_act,
                                _rnn_grad, _zero_rows, fr_lstm_pack_f, fr_lstm_row_f)


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
    """dX (+)= dG @ W_ih, or with ``weights`` dW_ih += dG.T @ X and db_ih += dG.sum(0)."""
    if not weights:
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
                       floating* dX, floating* dW_ih, floating* db_ih, floating* dW_hh,
                       floating* db_hh) noexcept nogil:
    """The four tasks above, side by side or one after another."""
    cdef double flops = 2.0 * d.TB * (2.0 * d.GH * d.In + (d.n1 + d.n2) * d.H)
    cdef int task, h0, n2 = d.n2          # 0 unless dG2 is given
    cdef floating* db2 = db_hh + d.n1 if db_hh != NULL else NULL
    if _threads() < 2 or flops >= _side_by_side():
        _input_part(0, False, d, dG, X, W_ih, dX, dW_ih, db_ih)
        _input_part(0, True, d, dG, X, W_ih, dX, dW_ih, db_ih)
        _hidden_part(0, d, dG, d.ld1, d.n1, Hp, dW_hh, db_hh)
        _hidden_part(0, d, dG2, n2, n2, Hp, dW_hh + d.n1 * d.H, db2)
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
                _hidden_part(1, d, dG2, n2, n2, Hp, dW_hh + d.n1 * d.H, db2)
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


cdef int _check_cache(str name, floating[:, :, ::1] C, Py_ssize_t T, Py_ssize_t B,
                      Py_ssize_t H) except -1:
    if C.shape[0] != 0:
        _check_shape(name, tuple(C.shape)[:3], (T, B, H))
    return 0


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
# Vanilla RNN:  h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh | relu
# ---------------------------------------------------------------------------------------

cdef void _rnn_forward_rows(const floating* W_hh, const floating* W_hh_t, const floating* Wp,
                            const floating* X, Py_ssize_t I, const floating* Wip,
                            const floating* sbias, Py_ssize_t gstep, const int* nact,
                            Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse, bint relu,
                            Py_ssize_t lo, Py_ssize_t hi, floating* g, floating* hs,
                            floating* y, Py_ssize_t ldy, floating* hp) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, s, t, n
    cdef floating* gt
    cdef floating* yt
    g += lo * H
    hs += lo * H
    y += lo * ldy
    if hp != NULL:
        hp += lo * H
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = _active(nact[t], lo, hi)
        gt = g + t * gstep
        yt = y + t * B * ldy
        if hp != NULL:
            memcpy(hp + t * B * H, hs, rows * H * sizeof(floating))
        if Wip != NULL:
            # 0. Gt[t] = x_t @ W_ih.T + biases: the projection, step by step
            _step_input(<int>n, <int>H, <int>I, X + (t * B + lo) * I, Wip, sbias, gt)
        # 1. Gt[t] += h @ W_hh.T
        _step_product(<int>n, <int>H, <int>H, hs, W_hh, W_hh_t, Wp, <floating>1, gt)
        # 2.-3. h = act(Gt[t])
        _rnn_act(gt, n * H, relu)
        memcpy(hs, gt, n * H * sizeof(floating))
        # 4. Y[t] = h; zeros at padded steps
        _copy_rows(gt, H, yt, ldy, n, H)
        _zero_rows(yt + n * ldy, ldy, rows - n, H)


def rnn_forward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                const floating[:, ::1] W_hh, floating[::1] b_ih, floating[::1] b_hh,
                const int[::1] nact, bint reverse, bint relu,
                floating[:, ::1] h, floating[:, :, ::1] Y, Py_ssize_t col,
                floating[:, ::1] Gt, floating[:, :, ::1] Hp, const int[::1] bounds,
                const floating[:, ::1] W_hh_t, int layout=_TRANSPOSED,
                const floating[:, ::1] W_ih_p=None):
    """RNN forward over a sequence.  Training when ``Hp`` has T rows, inference when 0.

    On exit ``Gt`` holds the activations h_t (the training cache) and ``h`` the final state.
    The time loop runs on the row ranges of ``bounds`` in parallel; ``W_hh_t`` (H, G*H),
    the transposed recurrent weight, makes each step a plain product (empty: not used),
    or with ``layout=LAYOUT_PANELS`` holds it packed by :func:`panel_pack` (float32).
    With ``W_ih_p`` (W_ih.T packed by :func:`panel_pack`, float32) each step computes its
    own input projection, just before it needs it, instead of one product over all steps
    first; in inference ``Gt`` may then have just B rows, reused by every step.
    """
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], H = h.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = Y.shape[2], p, parts = bounds.shape[0] - 1
    cdef bint train = Hp.shape[0] != 0
    _check_common(T, B, I, H, H, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(Y.shape)[:3], col)
    cdef const floating* wip = _optional_panels("W_ih_p", W_ih_p, I, H)
    _check_shape("Gt", tuple(Gt.shape)[1:2], (H,))
    cdef Py_ssize_t gstep = _gates_step(Gt.shape[0], wip != NULL, train, T, B, H)
    _check_cache("Hp", Hp, T, B, H)
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pb_ih = _bias_ptr(b_ih, H, "b_ih")
    cdef floating* pb_hh = _bias_ptr(b_hh, H, "b_hh")
    _check_bias_pair(pb_ih, pb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* hs = &h[0, 0]
    cdef floating* y = &Y[0, 0, 0] + col
    cdef floating* hp = &Hp[0, 0, 0] if train else NULL
    cdef const floating* x = &X[0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* whh_t = _transposed_ptr(W_hh_t, H, W_hh.shape[0])
    cdef const floating* wp = _panels_ptr(whh_t, layout)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef floating* sb = _step_bias(wip, pb_ih, pb_hh, H, H)
    with nogil:
        if wip == NULL:
            _input_all(<int>(T * B), <int>H, <int>I, x, &W_ih[0, 0], pb_ih, pb_hh, <int>H, g)
        if parts == 1:
            _rnn_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, na, T, B, H, reverse,
                              relu, 0, B, g, hs, y, ldy, hp)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _rnn_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, na, T, B, H, reverse,
                                  relu, bd[p], bd[p + 1], g, hs, y, ldy, hp)
        free(sb)


cdef void _rnn_backward_rows(const floating* W_hh, const floating* Wp, const int* nact,
                             Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse, bint relu,
                             Py_ssize_t lo, Py_ssize_t hi, floating* g,
                             const floating* dy, Py_ssize_t ldy, floating* dhs) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, s, t, n
    cdef floating* gt
    g += lo * H
    dy += lo * ldy
    dhs += lo * H
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = _active(nact[t], lo, hi)
        gt = g + t * B * H
        # 1. dh += dY[t]
        _add_rows(dy + t * B * ldy, ldy, dhs, H, n, H)
        # 2. dG[t] = dh * act'(h_t), in place over the cached h_t
        _rnn_grad(gt, dhs, n * H, relu)
        memset(gt + n * H, 0, (rows - n) * H * sizeof(floating))
        # 3. dh = dG[t] @ W_hh
        _back_product(<int>n, <int>H, <int>H, gt, <int>H, W_hh, Wp, <floating>0, dhs)


def rnn_backward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                 const floating[:, ::1] W_hh, const int[::1] nact, bint reverse, bint relu,
                 floating[:, ::1] Gt, const floating[:, :, ::1] Hp,
                 const floating[:, :, ::1] dY, Py_ssize_t col, floating[:, ::1] dh,
                 floating[:, ::1] dX, bint accumulate_dx, floating[:, ::1] dW_ih,
                 floating[:, ::1] dW_hh, floating[::1] db_ih, floating[::1] db_hh,
                 const int[::1] bounds, const floating[:, ::1] W_hh_p):
    """RNN backward through time.  ``dh``: dh_n on entry, dh0 on exit; ``Gt`` becomes dG.
    ``W_hh_p``: W_hh packed by :func:`panel_pack` for the per-step products (float32), or
    empty (BLAS)."""
    cdef Py_ssize_t T = nact.shape[0], B = dh.shape[0], H = dh.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = dY.shape[2], p, parts = bounds.shape[0] - 1
    _check_common(T, B, I, H, H, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(dY.shape)[:3], col)
    _check_shape("Gt", tuple(Gt.shape)[:2], (T * B, H))
    _check_shape("Hp", tuple(Hp.shape)[:3], (T, B, H))
    _check_shape("dX", tuple(dX.shape)[:2], (T * B, I))
    _check_shape("dW_ih", tuple(dW_ih.shape)[:2], (H, I))
    _check_shape("dW_hh", tuple(dW_hh.shape)[:2], (H, H))
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pdb_ih = _bias_ptr(db_ih, H, "db_ih")
    cdef floating* pdb_hh = _bias_ptr(db_hh, H, "db_hh")
    _check_bias_pair(pdb_ih, pdb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* dhs = &dh[0, 0]
    cdef const floating* dy = &dY[0, 0, 0] + col
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* wp = _optional_panels("W_hh_p", W_hh_p, H, H)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef _Grads gd = _grads_shape(T * B, H, I, H, accumulate_dx, H, H, 0)
    with nogil:
        if parts == 1:
            _rnn_backward_rows(whh, wp, na, T, B, H, reverse, relu, 0, B, g, dy, ldy, dhs)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _rnn_backward_rows(whh, wp, na, T, B, H, reverse, relu, bd[p], bd[p + 1], g, dy,
                                   ldy, dhs)
        _param_grads(&gd, g, <floating*>NULL, &X[0, 0], &W_ih[0, 0], &Hp[0, 0, 0], &dX[0, 0],
                     &dW_ih[0, 0], pdb_ih, &dW_hh[0, 0], pdb_hh)


# ---------------------------------------------------------------------------------------
# LSTM:  gates i f g o;  c' = f*c + i*g;  h' = o*tanh(c')
# ---------------------------------------------------------------------------------------

cdef void _lstm_forward_rows(const floating* W_hh, const floating* W_hh_t, const floating* Wp,
                             const floating* X, Py_ssize_t I, const floating* Wip,
                             const floating* sbias, Py_ssize_t gstep, const int* nact,
                             Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse,
                             Py_ssize_t lo, Py_ssize_t hi, floating* g, floating* hs,
                             floating* cs, floating* y, Py_ssize_t ldy, floating* hp,
                             floating* cp) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, GH = 4 * H, s, t, n
    cdef floating* gt
    cdef floating* yt
    g += lo * GH
    hs += lo * H
    cs += lo * H
    y += lo * ldy
    if hp != NULL:
        hp += lo * H
        cp += lo * H
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = _active(nact[t], lo, hi)
        gt = g + t * gstep
        yt = y + t * B * ldy
        if hp != NULL:
            memcpy(hp + t * B * H, hs, rows * H * sizeof(floating))
            memcpy(cp + t * B * H, cs, rows * H * sizeof(floating))
        if Wip != NULL:
            # 0. Gt[t] = x_t @ W_ih.T + biases: the projection, step by step
            _step_input(<int>n, <int>GH, <int>I, X + (t * B + lo) * I, Wip, sbias, gt)
        # 1. Gt[t] += h @ W_hh.T
        _step_product(<int>n, <int>GH, <int>H, hs, W_hh, W_hh_t, Wp, <floating>1, gt)
        # 2.-3. gates, c = f*c + i*g, h = o*tanh(c)
        _lstm_step(gt, hs, cs, n, H)
        # 4. Y[t] = h; zeros at padded steps
        _copy_rows(hs, H, yt, ldy, n, H)
        _zero_rows(yt + n * ldy, ldy, rows - n, H)


def same_bytes(a, b):
    """Whether two C-contiguous arrays hold the same bytes (memcmp; no dtype logic, so
    NaNs with the same bits compare equal and -0.0 differs from 0.0)."""
    cdef const unsigned char[::1] x = memoryview(a).cast("B")
    cdef const unsigned char[::1] y = memoryview(b).cast("B")
    cdef bint same
    if x.shape[0] != y.shape[0]:
        return False
    if x.shape[0] == 0:
        return True
    with nogil:
        same = memcmp(&x[0], &y[0], x.shape[0]) == 0
    return same


def lstm_pack(const float[:, ::1] W_hh, float[:, ::1] out):
    """``out`` (H, 4H) read as (H/16, H, 64): for each block b of 16 units a panel whose
    row k holds gate q of unit ``16*b + u`` at ``16*q + u`` (``W_hh[q*H + 16*b + u, k]``),
    the layout of ``lstm_forward(..., packed=True)``.  H must be a multiple of 16."""
    cdef Py_ssize_t H = W_hh.shape[1]
    if H % 16 or W_hh.shape[0] != 4 * H:
        raise ValueError(f"W_hh must be (4H, H) with H a multiple of 16, got "
                         f"{tuple(W_hh.shape)[:2]}")
    _check_shape("out", tuple(out.shape)[:2], (H, 4 * H))
    with nogil:
        fr_lstm_pack_f(&W_hh[0, 0], H, &out[0, 0])


def lstm_forward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                 const floating[:, ::1] W_hh, floating[::1] b_ih, floating[::1] b_hh,
                 const int[::1] nact, bint reverse,
                 floating[:, ::1] h, floating[:, ::1] c, floating[:, :, ::1] Y, Py_ssize_t col,
                 floating[:, ::1] Gt, floating[:, :, ::1] Hp, floating[:, :, ::1] Cp,
                 const int[::1] bounds, const floating[:, ::1] W_hh_t,
                 int layout=_TRANSPOSED, const floating[:, ::1] W_ih_p=None):
    """LSTM forward over a sequence.  Training when ``Hp``/``Cp`` have T rows, inference when 0.

    On exit ``Gt`` holds the gate activations (i, f, g, o) and ``h``, ``c`` the final state.
    The time loop runs on the row ranges of ``bounds`` in parallel; ``W_hh_t`` (H, G*H),
    the transposed recurrent weight, makes each step a plain product (empty: not used).
    With ``layout=LAYOUT_PANELS`` it holds W_hh.T packed by :func:`panel_pack` (float32).
    With ``layout=LAYOUT_LSTM_ROW`` it is :func:`lstm_pack`'s layout and the one batch row
    (float32, B = 1) runs the fused one-row loop of ``fr_lstm_row_f``.
    With ``W_ih_p`` (W_ih.T packed by :func:`panel_pack`, float32) each step computes its
    own input projection, just before it needs it, instead of one product over all steps
    first; in inference ``Gt`` may then have just B rows, reused by every step.
    """
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], H = h.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = Y.shape[2], GH = 4 * H, p, parts = bounds.shape[0] - 1
    cdef bint train = Hp.shape[0] != 0
    _check_common(T, B, I, H, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(Y.shape)[:3], col)
    _check_shape("c", tuple(c.shape)[:2], (B, H))
    cdef const floating* wip = _optional_panels("W_ih_p", W_ih_p, I, GH)
    _check_shape("Gt", tuple(Gt.shape)[1:2], (GH,))
    cdef Py_ssize_t gstep = _gates_step(Gt.shape[0], wip != NULL, train, T, B, GH)
    _check_cache("Hp", Hp, T, B, H)
    _check_cache("Cp", Cp, T, B, H)
    if train != (Cp.shape[0] != 0):
        raise ValueError("Hp and Cp must both be given (training) or both be empty")
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pb_ih = _bias_ptr(b_ih, GH, "b_ih")
    cdef floating* pb_hh = _bias_ptr(b_hh, GH, "b_hh")
    _check_bias_pair(pb_ih, pb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* hs = &h[0, 0]
    cdef floating* cs = &c[0, 0]
    cdef floating* y = &Y[0, 0, 0] + col
    cdef floating* hp = &Hp[0, 0, 0] if train else NULL
    cdef floating* cp = &Cp[0, 0, 0] if train else NULL
    cdef const floating* x = &X[0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* whh_t = _transposed_ptr(W_hh_t, H, W_hh.shape[0])
    cdef const floating* wp = NULL
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef float* work = NULL
    cdef bint packed = layout == _LSTM_ROW
    if not packed:
        wp = _panels_ptr(whh_t, layout)
    else:
        if sizeof(floating) != sizeof(float):
            raise ValueError("packed weights are float32 only")
        if B != 1 or H % 16 or whh_t == NULL or wip != NULL:
            raise ValueError("packed weights need one batch row, H a multiple of 16, "
                             "W_hh_t of shape (H, 4H) and no W_ih_p")
        work = <float*>malloc(2 * H * sizeof(float))
        if work == NULL:
            raise MemoryError()
    cdef floating* sb = _step_bias(wip, pb_ih, pb_hh, GH, GH)   # NULL when packed
    with nogil:
        if wip == NULL:
            _input_all(<int>(T * B), <int>GH, <int>I, x, &W_ih[0, 0], pb_ih, pb_hh, <int>GH,
                       g)
        if packed:
            if floating is float:
                fr_lstm_row_f(whh_t, H, na, T, reverse, g, GH, hs, cs, y, ldy, hp, cp, H,
                              work)
            free(work)
        elif parts == 1:
            _lstm_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, na, T, B, H, reverse, 0,
                               B, g, hs, cs, y, ldy, hp, cp)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _lstm_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, na, T, B, H, reverse,
                                   bd[p], bd[p + 1], g, hs, cs, y, ldy, hp, cp)
        free(sb)


cdef void _lstm_backward_rows(const floating* W_hh, const floating* Wp, const int* nact,
                              Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse, Py_ssize_t lo,
                              Py_ssize_t hi, floating* g, const floating* cp,
                              const floating* dy, Py_ssize_t ldy, floating* dhs,
                              floating* dcs) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, GH = 4 * H, s, t, n
    cdef floating* gt
    g += lo * GH
    cp += lo * H
    dy += lo * ldy
    dhs += lo * H
    dcs += lo * H
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = _active(nact[t], lo, hi)
        gt = g + t * B * GH
        # 1. dh += dY[t]
        _add_rows(dy + t * B * ldy, ldy, dhs, H, n, H)
        # 2. dG[t], dc = dc_prev
        _lstm_grad(gt, cp + t * B * H, dhs, dcs, n, H)
        memset(gt + n * GH, 0, (rows - n) * GH * sizeof(floating))
        # 3. dh = dG[t] @ W_hh
        _back_product(<int>n, <int>GH, <int>H, gt, <int>GH, W_hh, Wp, <floating>0, dhs)


def lstm_backward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                  const floating[:, ::1] W_hh, const int[::1] nact, bint reverse,
                  floating[:, ::1] Gt, const floating[:, :, ::1] Hp,
                  const floating[:, :, ::1] Cp, const floating[:, :, ::1] dY, Py_ssize_t col,
                  floating[:, ::1] dh, floating[:, ::1] dc,
                  floating[:, ::1] dX, bint accumulate_dx, floating[:, ::1] dW_ih,
                  floating[:, ::1] dW_hh, floating[::1] db_ih, floating[::1] db_hh,
                  const int[::1] bounds, const floating[:, ::1] W_hh_p):
    """LSTM backward through time.  ``dh``, ``dc``: dh_n, dc_n on entry, dh0, dc0 on exit.
    ``W_hh_p``: W_hh packed by :func:`panel_pack` for the per-step products (float32), or
    empty (BLAS)."""
    cdef Py_ssize_t T = nact.shape[0], B = dh.shape[0], H = dh.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = dY.shape[2], GH = 4 * H, p, parts = bounds.shape[0] - 1
    _check_common(T, B, I, H, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(dY.shape)[:3], col)
    _check_shape("dc", tuple(dc.shape)[:2], (B, H))
    _check_shape("Gt", tuple(Gt.shape)[:2], (T * B, GH))
    _check_shape("Hp", tuple(Hp.shape)[:3], (T, B, H))
    _check_shape("Cp", tuple(Cp.shape)[:3], (T, B, H))
    _check_shape("dX", tuple(dX.shape)[:2], (T * B, I))
    _check_shape("dW_ih", tuple(dW_ih.shape)[:2], (GH, I))
    _check_shape("dW_hh", tuple(dW_hh.shape)[:2], (GH, H))
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pdb_ih = _bias_ptr(db_ih, GH, "db_ih")
    cdef floating* pdb_hh = _bias_ptr(db_hh, GH, "db_hh")
    _check_bias_pair(pdb_ih, pdb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* dhs = &dh[0, 0]
    cdef floating* dcs = &dc[0, 0]
    cdef const floating* dy = &dY[0, 0, 0] + col
    cdef const floating* cp = &Cp[0, 0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* wp = _optional_panels("W_hh_p", W_hh_p, GH, H)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef _Grads gd = _grads_shape(T * B, GH, I, H, accumulate_dx, GH, GH, 0)
    with nogil:
        if parts == 1:
            _lstm_backward_rows(whh, wp, na, T, B, H, reverse, 0, B, g, cp, dy, ldy, dhs, dcs)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _lstm_backward_rows(whh, wp, na, T, B, H, reverse, bd[p], bd[p + 1], g, cp, dy,
                                    ldy, dhs, dcs)
        _param_grads(&gd, g, <floating*>NULL, &X[0, 0], &W_ih[0, 0], &Hp[0, 0, 0], &dX[0, 0],
                     &dW_ih[0, 0], pdb_ih, &dW_hh[0, 0], pdb_hh)


# ---------------------------------------------------------------------------------------
# GRU:  gates r z n;  n = tanh(W_in x + b_in + r*(W_hn h + b_hn));  h' = (1-z)*n + z*h
# ---------------------------------------------------------------------------------------

cdef void _gru_forward_rows(const floating* W_hh, const floating* W_hh_t,
                            const floating* Wp,
                            const floating* X, Py_ssize_t I, const floating* Wip,
                            const floating* sbias, Py_ssize_t gstep,
                            const floating* b_hn, const int* nact,
                            Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse,
                            Py_ssize_t lo, Py_ssize_t hi, floating* g, floating* gh,
                            floating* hs, floating* y, Py_ssize_t ldy, floating* hp,
                            floating* hn) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, GH = 3 * H, s, t, n
    cdef floating* gt
    cdef floating* yt
    g += lo * GH
    gh += lo * GH
    hs += lo * H
    y += lo * ldy
    if hp != NULL:
        hp += lo * H
        hn += lo * H
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = _active(nact[t], lo, hi)
        gt = g + t * gstep
        yt = y + t * B * ldy
        if hp != NULL:
            memcpy(hp + t * B * H, hs, rows * H * sizeof(floating))
        if Wip != NULL:
            # 0. Gt[t] = x_t @ W_ih.T + biases (b_hn stays inside r*(...)), step by step
            _step_input(<int>n, <int>GH, <int>I, X + (t * B + lo) * I, Wip, sbias, gt)
        # 1. Gh = h @ W_hh.T
        _step_product(<int>n, <int>GH, <int>H, hs, W_hh, W_hh_t, Wp, <floating>0, gh)
        # 2.-3. gates and h
        _gru_step(gt, gh, b_hn, hs, hn + t * B * H if hp != NULL else NULL, n, H)
        # 4. Y[t] = h; zeros at padded steps
        _copy_rows(hs, H, yt, ldy, n, H)
        _zero_rows(yt + n * ldy, ldy, rows - n, H)


def gru_forward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                const floating[:, ::1] W_hh, floating[::1] b_ih, floating[::1] b_hh,
                const int[::1] nact, bint reverse,
                floating[:, ::1] h, floating[:, :, ::1] Y, Py_ssize_t col,
                floating[:, ::1] Gt, floating[:, ::1] Gh,
                floating[:, :, ::1] Hp, floating[:, :, ::1] Hn, const int[::1] bounds,
                const floating[:, ::1] W_hh_t, int layout=_TRANSPOSED,
                const floating[:, ::1] W_ih_p=None):
    """GRU forward over a sequence.  Training when ``Hp``/``Hn`` have T rows, inference when 0.

    ``Gh`` (B, 3H) is per-step workspace.  On exit ``Gt`` holds the gates (r, z, n).
    The time loop runs on the row ranges of ``bounds`` in parallel; ``W_hh_t`` (H, G*H),
    the transposed recurrent weight, makes each step a plain product (empty: not used),
    or with ``layout=LAYOUT_PANELS`` holds it packed by :func:`panel_pack` (float32).
    With ``W_ih_p`` (W_ih.T packed by :func:`panel_pack`, float32) each step computes its
    own input projection, just before it needs it, instead of one product over all steps
    first; in inference ``Gt`` may then have just B rows, reused by every step.
    """
    cdef Py_ssize_t T = nact.shape[0], B = h.shape[0], H = h.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = Y.shape[2], GH = 3 * H, p, parts = bounds.shape[0] - 1
    cdef bint train = Hp.shape[0] != 0
    _check_common(T, B, I, H, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(Y.shape)[:3], col)
    cdef const floating* wip = _optional_panels("W_ih_p", W_ih_p, I, GH)
    _check_shape("Gt", tuple(Gt.shape)[1:2], (GH,))
    cdef Py_ssize_t gstep = _gates_step(Gt.shape[0], wip != NULL, train, T, B, GH)
    _check_shape("Gh", tuple(Gh.shape)[:2], (B, GH))
    _check_cache("Hp", Hp, T, B, H)
    _check_cache("Hn", Hn, T, B, H)
    if train != (Hn.shape[0] != 0):
        raise ValueError("Hp and Hn must both be given (training) or both be empty")
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pb_ih = _bias_ptr(b_ih, GH, "b_ih")
    cdef floating* pb_hh = _bias_ptr(b_hh, GH, "b_hh")
    _check_bias_pair(pb_ih, pb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* gh = &Gh[0, 0]
    cdef floating* hs = &h[0, 0]
    cdef floating* y = &Y[0, 0, 0] + col
    cdef floating* hp = &Hp[0, 0, 0] if train else NULL
    cdef floating* hn = &Hn[0, 0, 0] if train else NULL
    cdef const floating* b_hn = pb_hh + 2 * H if pb_hh != NULL else NULL
    cdef const floating* x = &X[0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* whh_t = _transposed_ptr(W_hh_t, H, W_hh.shape[0])
    cdef const floating* wp = _panels_ptr(whh_t, layout)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    # b_hn stays inside r*(...): b_hh on the r and z columns only
    cdef floating* sb = _step_bias(wip, pb_ih, pb_hh, GH, 2 * H)
    with nogil:
        if wip == NULL:
            _input_all(<int>(T * B), <int>GH, <int>I, x, &W_ih[0, 0], pb_ih, pb_hh,
                       <int>(2 * H), g)
        if parts == 1:
            _gru_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, b_hn, na, T, B, H, reverse,
                              0, B, g, gh, hs, y, ldy, hp, hn)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _gru_forward_rows(whh, whh_t, wp, x, I, wip, sb, gstep, b_hn, na, T, B, H,
                                  reverse, bd[p], bd[p + 1], g, gh, hs, y, ldy, hp, hn)
        free(sb)


cdef void _gru_backward_rows(const floating* W_hh, const floating* Wp, const int* nact,
                             Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint reverse, Py_ssize_t lo,
                             Py_ssize_t hi, floating* g, floating* dgh, floating* hn,
                             const floating* hp, const floating* dy, Py_ssize_t ldy,
                             floating* dhs) noexcept nogil:
    cdef Py_ssize_t rows = hi - lo, GH = 3 * H, s, t, n
    cdef floating* gt
    g += lo * GH
    dgh += lo * GH
    hn += lo * H
    hp += lo * H
    dy += lo * ldy
    dhs += lo * H
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = _active(nact[t], lo, hi)
        gt = g + t * B * GH
        # 1. dh += dY[t]
        _add_rows(dy + t * B * ldy, ldy, dhs, H, n, H)
        # 2. dG[t], dHn[t], dGh; dh = dh * z
        _gru_grad(gt, hn + t * B * H, dgh, hp + t * B * H, dhs, n, H)
        memset(gt + n * GH, 0, (rows - n) * GH * sizeof(floating))
        memset(hn + t * B * H + n * H, 0, (rows - n) * H * sizeof(floating))
        # 3. dh += dGh @ W_hh
        _back_product(<int>n, <int>GH, <int>H, dgh, <int>GH, W_hh, Wp, <floating>1, dhs)


def gru_backward(const floating[:, ::1] X, const floating[:, ::1] W_ih,
                 const floating[:, ::1] W_hh, const int[::1] nact, bint reverse,
                 floating[:, ::1] Gt, floating[:, ::1] Gh, const floating[:, :, ::1] Hp,
                 floating[:, :, ::1] Hn, const floating[:, :, ::1] dY, Py_ssize_t col,
                 floating[:, ::1] dh, floating[:, ::1] dX, bint accumulate_dx,
                 floating[:, ::1] dW_ih, floating[:, ::1] dW_hh,
                 floating[::1] db_ih, floating[::1] db_hh, const int[::1] bounds,
                 const floating[:, ::1] W_hh_p):
    """GRU backward through time.  ``dh``: dh_n on entry, dh0 on exit.

    ``Gt`` becomes dG (input side), ``Hn`` becomes dHn, ``Gh`` (B, 3H) is workspace.
    ``W_hh_p``: W_hh packed by :func:`panel_pack` for the per-step products (float32), or
    empty (BLAS).
    """
    cdef Py_ssize_t T = nact.shape[0], B = dh.shape[0], H = dh.shape[1], I = X.shape[1]
    cdef Py_ssize_t ldy = dY.shape[2], GH = 3 * H, p, parts = bounds.shape[0] - 1
    _check_common(T, B, I, H, GH, tuple(X.shape)[:2], tuple(W_ih.shape)[:2],
                  tuple(W_hh.shape)[:2], tuple(dY.shape)[:3], col)
    _check_shape("Gt", tuple(Gt.shape)[:2], (T * B, GH))
    _check_shape("Gh", tuple(Gh.shape)[:2], (B, GH))
    _check_shape("Hp", tuple(Hp.shape)[:3], (T, B, H))
    _check_shape("Hn", tuple(Hn.shape)[:3], (T, B, H))
    _check_shape("dX", tuple(dX.shape)[:2], (T * B, I))
    _check_shape("dW_ih", tuple(dW_ih.shape)[:2], (GH, I))
    _check_shape("dW_hh", tuple(dW_hh.shape)[:2], (GH, H))
    _check_nact(nact, B)
    _check_bounds(bounds, B)
    cdef floating* pdb_ih = _bias_ptr(db_ih, GH, "db_ih")
    cdef floating* pdb_hh = _bias_ptr(db_hh, GH, "db_hh")
    _check_bias_pair(pdb_ih, pdb_hh)
    cdef floating* g = &Gt[0, 0]
    cdef floating* dgh = &Gh[0, 0]
    cdef floating* hn = &Hn[0, 0, 0]
    cdef floating* dhs = &dh[0, 0]
    cdef const floating* dy = &dY[0, 0, 0] + col
    cdef const floating* hp = &Hp[0, 0, 0]
    cdef const floating* whh = &W_hh[0, 0]
    cdef const floating* wp = _optional_panels("W_hh_p", W_hh_p, GH, H)
    cdef const int* na = &nact[0]
    cdef const int* bd = &bounds[0]
    cdef _Grads gd = _grads_shape(T * B, GH, I, H, accumulate_dx, 2 * H, GH, H)
    with nogil:
        if parts == 1:
            _gru_backward_rows(whh, wp, na, T, B, H, reverse, 0, B, g, dgh, hn, hp, dy, ldy,
                               dhs)
        else:
            for p in prange(parts, num_threads=_team(parts), schedule="static"):
                _gru_backward_rows(whh, wp, na, T, B, H, reverse, bd[p], bd[p + 1], g, dgh, hn,
                                   hp, dy, ldy, dhs)
        # dW_hh[:2H] += dG[:, :2H].T @ Hp;  dW_hh[2H:] += dHn.T @ Hp
        _param_grads(&gd, g, hn, &X[0, 0], &W_ih[0, 0], hp, &dX[0, 0], &dW_ih[0, 0], pdb_ih,
                     &dW_hh[0, 0], pdb_hh)

