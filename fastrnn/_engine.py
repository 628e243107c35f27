"""Runs recurrent layers through the compiled kernels: the only Python module that calls
them.

Stacks of layers over whole sequences (the sequence layers, and the cells' training step),
and one time step (:func:`cell_call`, :func:`step`, :func:`readout`: the cells' call and
streaming inference).  The callers validate; everything here takes arrays already of the
right dtype, contiguous, and with the batch rows sorted by length (longest first), as the
kernels require.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import _blas, _core, _floor, _lowp, _runtime, _step, _tuning  # _runtime: BLAS threads
from ._kinds import KINDS, Kind
from .precision import compute_dtype

#: a layer-direction's ``(W_ih, W_hh, b_ih, b_hh)`` as the kernels take them (empty bias
#: arrays for a layer without biases), then for some kinds FastRNN's and FastGRNN's two
#: scalars after the sigmoid (as gradients: the gradients of those values) or an LSTM's
#: peepholes (3H,), and last an LSTM's projection W_hr (P, H) if it has one (:func:`extras`)
Weights = tuple[np.ndarray, ...]

# libgomp's threads do not survive fork: a child runs its kernels on one thread if its
# parent had started them (see _blas.after_fork_in_child), instead of hanging.
os.register_at_fork(after_in_child=_blas.after_fork_in_child)

# The dense product (Linear): the compiled function itself, so that a call costs no more
# than calling it directly.
gemm = _blas.blas_gemm


def scatter_add_rows(index: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[index[i]] += rows[i]`` in the order of ``i`` (``numpy.add.at``'s sums): the
    gradient of a row lookup; ``index`` any integer array of checked rows, ``rows`` (n, F)
    C-contiguous, ``out`` (V, F) C-contiguous of the same dtype."""
    _blas.scatter_add_rows(np.ascontiguousarray(index, dtype=np.intp), rows, out)


def adam_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
              exp_avg_sq: np.ndarray, *scalars) -> None:
    """Adam's update in one compiled pass (``_blas.adam_step``, fastrnn/_adam.h) on
    C-contiguous arrays of one dtype and size, through their flat views; ``scalars`` as
    ``_blas.adam_step`` takes them."""
    _blas.adam_step(param.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1),
                    exp_avg_sq.reshape(-1), *scalars)


def active_rows(sorted_lengths: np.ndarray | None, steps: int, batch: int) -> np.ndarray:
    """nact[t] = number of rows with t < length; rows sorted longest first."""
    if sorted_lengths is None:
        return np.full(steps, batch, dtype=np.intc)
    t = np.arange(steps)
    # -lengths is ascending, and length > t  <=>  -length < -t
    return np.searchsorted(-sorted_lengths, -t, side="left").astype(np.intc)


# The thread settings live in fastrnn._runtime (process set-up, with the thread budget);
# the engine's names for them, as before.
set_num_threads = _runtime.set_num_threads
get_num_threads = _runtime.get_num_threads


def row_bounds(nact: np.ndarray, batch: int, hidden: int, gates: int,
               align: int = 1) -> np.ndarray:
    """Row ranges for the parallel time loop: ``bounds[p]..bounds[p+1]`` is part p.

    Rows are sorted longest first, so an even split by rows would give the first part the
    most steps; the cuts balance the active (row, step) pairs instead.  At most
    ``get_num_threads()`` parts of at least ``_tuning.MIN_ROWS`` rows, when the loop has
    ``_tuning.MIN_LOOP_FLOPS`` of work or more.  ``align``: the cuts rounded down to
    multiples of it (the bf16 mode: 16, the rows of an AMX tile, so that each row's
    products take the path they take in one part, whatever the threads).
    """
    bounds = _row_bounds(nact, batch, hidden, gates)
    if align > 1 and bounds.shape[0] > 2:
        bounds[1:-1] = bounds[1:-1] // align * align
    return bounds


def _row_bounds(nact: np.ndarray, batch: int, hidden: int, gates: int) -> np.ndarray:
    """:func:`row_bounds` without alignment."""
    T = nact.shape[0]
    parts = min(_blas.get_num_threads(), batch // _tuning.MIN_ROWS)
    if parts <= 1 or 2.0 * T * batch * gates * hidden * hidden < _tuning.MIN_LOOP_FLOPS:
        return np.array([0, batch], dtype=np.intc)
    if nact[0] == nact[-1]:
        # every row runs every step: cut at the row nearest to batch * p / parts (a tie
        # to the lower row), as the balance below would
        return np.array([0] + [(2 * batch * p + parts - 1) // (2 * parts)
                               for p in range(1, parts)] + [batch], dtype=np.intc)
    # steps[b] = number of steps row b is active = #{t : nact[t] > b}
    counts = np.bincount(nact, minlength=batch + 1)
    steps = np.cumsum(counts[::-1])[::-1][1:]
    work = np.cumsum(steps)
    targets = work[-1] * np.arange(1, parts) / parts
    cuts = np.abs(work[None, :] - targets[:, None]).argmin(axis=1) + 1   # nearest cut
    return np.concatenate(([0], cuts, [batch])).astype(np.intc)


_EMPTY2 = {np.dtype(t).char: np.empty((0, 0), t) for t in (np.float32, np.float64)}


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts on a 64-byte boundary (a cache
    line, one AVX-512 vector).  NumPy aligns to 16 bytes; a packed operand that the panel
    product reads one 64-byte vector at a time from a 16-byte offset splits every load
    over two cache lines, which cost 15-20 % of the product (bench/bench_products.py)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(count * dtype.itemsize + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def _cache_array(train: bool, shape: tuple[int, int, int], dtype) -> np.ndarray:
    return np.empty(shape if train else (0,) + shape[1:], dtype)


def recurrent_t(W_hh: np.ndarray, T: int, B: int) -> np.ndarray:
    """The transposed copy of W_hh the time loop multiplies by, or an empty array when
    the kernel should read W_hh itself."""
    if B > 1 or (W_hh.dtype == np.float32 and T >= _tuning.TRANSPOSE_B1_STEPS
                  and W_hh.nbytes <= _tuning.TRANSPOSE_B1_BYTES):
        out = np.empty(W_hh.shape[::-1], W_hh.dtype)
        _blas.transpose(W_hh, out)
        return out
    return _EMPTY2[W_hh.dtype.char]


# Packed weights are kept per weight array, with a copy of the bytes they were packed
# from: a call compares the array to that copy (a memcmp, a few times cheaper than packing
# again) and repacks when anything changed, in place or not.  An entry is never modified,
# only replaced, so a call in another thread keeps the one it took; it goes when its
# weight array does.
_PACKED: dict[tuple[int, str], tuple] = {}


def _forget(key: tuple[int, str], ref) -> None:
    entry = _PACKED.get(key)
    if entry is not None and entry[0] is ref:
        del _PACKED[key]


def _packed(W: np.ndarray, layout: str, pack) -> np.ndarray:
    """``pack(W)``, kept for ``W`` under the name ``layout`` and computed again only when
    W's bytes changed (see _PACKED)."""
    key = (id(W), layout)
    entry = _PACKED.get(key)
    if entry is not None and entry[0]() is W and _core.same_bytes(W, entry[1]):
        return entry[2]
    # pack from a copy, which the entry keeps: packed and compared bytes are the same
    # bytes even when W is rewritten meanwhile (a load_state_dict in another thread)
    source = W.copy()
    out = pack(source)
    try:
        ref = weakref.ref(W, functools.partial(_forget, key))
    except TypeError:                   # an object without weak references: no caching
        return out
    _PACKED[key] = (ref, source, out)
    return out


def _lstm_pack(W_hh: np.ndarray) -> np.ndarray:
    out = aligned_empty((W_hh.shape[1], W_hh.shape[0]), np.float32)
    _core.lstm_pack(W_hh, out)
    return out


def packed_lstm_weights(W_hh: np.ndarray, T: int, B: int,
                        keep: bool = True) -> np.ndarray | None:
    """W_hh packed for the one-row LSTM loop (``_core.lstm_pack``), or None when that
    loop does not apply (several rows, float64, H not a multiple of 16, few steps);
    ``keep``: see :func:`panels`."""
    H = W_hh.shape[1]
    if B != 1 or W_hh.dtype != np.float32 or H % 16 or T < _tuning.PACKED_MIN_STEPS:
        return None
    return _packed(W_hh, "lstm_row", _lstm_pack) if keep else _lstm_pack(W_hh)


def use_panels(W_hh: np.ndarray, T: int, B: int, kind: Kind | None = None) -> bool:
    """Whether the time loops of a call multiply by W_hh with the panel product (not for
    a GRU with r before the product, whose steps multiply by parts of W_hh)."""
    return (B > 1 and T >= _tuning.PANEL_MIN_STEPS and W_hh.dtype == np.float32
            and W_hh.shape[1] % 16 == 0 and _blas.panel_products()
            and not (kind is not None and kind.reset_before))


def _panel_pack(W: np.ndarray, transpose: bool) -> np.ndarray:
    out = aligned_empty(W.shape[::-1] if transpose else W.shape, np.float32)
    _blas.panel_pack(W, out, transpose)
    return out


def panels(W: np.ndarray, transpose: bool, keep: bool = True) -> np.ndarray:
    """W.T (W_hh.T, W_ih.T forward) or W (W_hh backward) packed for the panel product;
    with ``keep``, kept with W while its bytes do not change (see _PACKED): inference,
    where the weights stay as they are from call to call (training changes them at every
    step, so its calls pack afresh rather than copy and compare as well)."""
    if not transpose and W.shape[1] <= 64:
        return W            # one panel, rows in order: W is laid out as its packed copy
    if not keep:
        return _panel_pack(W, transpose)
    return _packed(W, "panels_t" if transpose else "panels",
                   functools.partial(_panel_pack, transpose=transpose))


def step_operand(W_hh: np.ndarray, T: int, B: int, kind: Kind | None = None,
                 keep: bool = True) -> tuple[np.ndarray, int]:
    """What the per-step product ``h @ W_hh.T`` of a forward loop reads, and its layout
    (``_core``'s ``LAYOUT_PANELS`` or ``LAYOUT_TRANSPOSED``); ``keep``: see :func:`panels`."""
    if use_panels(W_hh, T, B, kind):
        return panels(W_hh, True, keep), _core.LAYOUT_PANELS
    return recurrent_t(W_hh, T, B), _core.LAYOUT_TRANSPOSED


def forward_operand(kind: Kind, W_hh: np.ndarray, T: int, B: int, plain: bool = True,
                    keep: bool = True) -> tuple[np.ndarray, int]:
    """What a forward time loop multiplies by at each step, and its layout: the one-row
    LSTM loop's packed weights when it applies (a ``plain`` LSTM: no projection, no
    recurrent dropout, no zoneout), else :func:`step_operand`."""
    if kind.kernel_id == _core.KIND_LSTM and plain:
        packed = packed_lstm_weights(W_hh, T, B, keep)
        if packed is not None:
            return packed, _core.LAYOUT_LSTM_ROW
    return step_operand(W_hh, T, B, kind, keep)


def input_operand(W_ih: np.ndarray, layout: int, keep: bool = True) -> np.ndarray | None:
    """W_ih.T packed for a forward loop that projects each step's input itself (with the
    panel product: the step's gates stay in cache), or None: one product over all steps
    before the loop; ``keep``: see :func:`panels`."""
    if layout == _core.LAYOUT_PANELS and _tuning.STEP_PROJECTION:
        return panels(W_ih, True, keep)
    return None


def backward_operand(W_hh: np.ndarray, T: int, B: int, kind: Kind | None = None) -> np.ndarray:
    """W_hh packed for the backward time loop's products (afresh: training changes W_hh
    at every step), or empty (BLAS reads W_hh)."""
    return (panels(W_hh, False, keep=False) if use_panels(W_hh, T, B, kind)
            else _EMPTY2[W_hh.dtype.char])


# ------------------------------------------------------------------------------ bfloat16
# Under fastrnn.autocast("bfloat16") a float32 layer-direction's products run in bf16
# with float sums (fastrnn/_b16.h): the kernels take the weights in bf16 panels and
# workspaces for the converted left operands.

def b16_active(dtype) -> bool:
    """Whether a call with arrays of ``dtype`` runs its products in bf16: float32 inside
    ``autocast("bfloat16")`` (float64 stays float64)."""
    return compute_dtype() == "bfloat16" and dtype == np.float32


def b16_refusal(kind: Kind, projection: bool = False) -> None:
    """A ValueError for what the bf16 mode does not cover."""
    what = ("the layer-normalised LSTM" if kind.layer_norm
            else "the GRU with r before the product" if kind.reset_before
            else "an LSTM's projection (proj_size)" if projection else None)
    if what is not None:
        raise ValueError(f"fastrnn.autocast('bfloat16') does not cover {what}; run it "
                         f"outside autocast (float32)")


def _b16_pack(B: np.ndarray) -> np.ndarray:
    out = aligned_empty((_blas.b16_packed_size(*B.shape),), np.uint16)
    _blas.b16_pack(B, out)
    return out


def b16_panels(W: np.ndarray, transpose: bool) -> np.ndarray:
    """W.T (W_hh.T, W_ih.T forward) or W (W_hh, W_ih backward) in bf16 panels, kept
    with W while its bytes do not change (as the one-row LSTM's packed weights)."""
    if transpose:
        return _packed(W, "b16_t", lambda source: _b16_pack(source.T))
    return _packed(W, "b16", _b16_pack)


_B16_WORK = threading.local()


def b16_backward_work(size: int) -> np.ndarray:
    """The bf16 backward's workspace of ``size`` uint16 values (64-byte aligned): one
    array per thread, kept and grown as needed, since a training loop calls backward with
    the same sizes every step (a fresh array of tens of MB costs its page faults, a fifth
    of a bf16 training step of W4)."""
    work = getattr(_B16_WORK, "array", None)
    if work is None or work.shape[0] < size:
        work = _B16_WORK.array = aligned_empty((size,), np.uint16)
    return work[:size]


def b16_rows(rows: int, width: int) -> np.ndarray:
    """A workspace of ``rows`` bf16 rows of ``width`` values (padded as the kernels
    need)."""
    return aligned_empty((rows, _blas.b16_kp(width)), np.uint16)


class Cache(NamedTuple):
    """What :func:`run_forward` keeps for :func:`run_backward`: the gates ``Gt``, the
    states each step started from ``Hp`` (and ``Cp`` for a kind with a cell state), the
    kept-apart recurrent product ``Hn`` and its workspace ``Gh`` (GRU; the GRU with r
    before the product keeps r * h_prev in ``Hn``), the candidate
    ``Ht`` (FastGRNN), the row ranges."""

    Gt: np.ndarray
    Hp: np.ndarray
    Cp: np.ndarray | None
    Gh: np.ndarray | None
    Hn: np.ndarray | None
    Ht: np.ndarray | None
    bounds: np.ndarray
    Hm: np.ndarray | None = None      # an LSTM with a projection: o*tanh(c) of every step
    hmask: np.ndarray | None = None   # recurrent dropout: the mask on h (B, P)
    zoneout: tuple = (None, None)     # zoneout's masks of h (T, B, P) and c (T, B, H)
    norm: tuple = ()                  # the layer-normalised LSTM: Xn, Xh, Xc, R (ln_forward)
    b16: bool = False                 # the products ran in bf16 (autocast): backward too


def run_forward(kind: Kind, relu: bool, X: np.ndarray, weights: Weights, nact: np.ndarray,
                reverse: bool, h: np.ndarray, c: np.ndarray | None, Y: np.ndarray, col: int,
                train: bool, hmask: np.ndarray | None = None,
                zoneout: tuple = (None, None)) -> Cache | None:
    """One layer in one direction.  Updates ``h`` (and ``c``) in place to the final state,
    writes columns ``col:col+H`` of ``Y``; returns what backward needs (or None).
    ``hmask`` (B, P): recurrent dropout, h * hmask entering the recurrent product;
    ``zoneout``: (zh, zc), the kernels' zoneout masks (or rates), or Nones."""
    b16 = b16_active(X.dtype)
    if kind.layer_norm:
        if b16:
            b16_refusal(kind)
        _plain(kind, hmask, zoneout)
        return _ln_forward(kind, X, weights, nact, reverse, h, _cell(c), Y, col, train)
    T = nact.shape[0]
    B, P = h.shape
    scalars, vectors, W_hr = extras(kind, weights)
    peephole = vectors[0] if vectors else None
    H = P if W_hr is None else W_hr.shape[1]
    dt = X.dtype
    GH = kind.gates * H
    bounds = row_bounds(nact, B, H, kind.gates, 16 if b16 else 1)
    b16_args: dict = {}
    in_loop = False                 # the input projection step by step, in the loop
    if b16:
        b16_refusal(kind, W_hr is not None)
        W_hh_t, layout, W_ih_p = _EMPTY2[dt.char], _core.LAYOUT_TRANSPOSED, None
        b16_args = dict(W_hh_b=b16_panels(weights[1], True),
                        W_ih_b=b16_panels(weights[0], True))
        I = X.shape[1]
        in_loop = _core.b16_fuses(kind.kernel_id)
        if in_loop:                 # each row of hb: [x_t | h], one product a step
            b16_args["hb"] = b16_rows(B, _blas.b16_kp(I) + P)
        elif B >= _tuning.B16_STEP_INPUT_MIN_ROWS:     # x_t, then h, through hb
            in_loop = True
            b16_args["hb"] = b16_rows(B, max(I, P))
        else:
            b16_args.update(Xb=b16_rows(T * B, I), hb=b16_rows(B, P))
    else:
        W_hh_t, layout = forward_operand(kind, weights[1], T, B,
                                         W_hr is None and hmask is None and zoneout[0] is None,
                                         keep=not train)
        W_ih_p = input_operand(weights[0], layout, keep=not train)
        in_loop = W_ih_p is not None
    # projecting step by step, inference keeps the gates of one step only
    # the gates are the panel product's C: aligned, as its packed operands are
    Gt = aligned_empty((T * B if train or not in_loop else B, GH), dt)
    Hp = _cache_array(train, (T, B, P), dt)
    Hm = np.empty((T, B, H), dt) if train and W_hr is not None else None
    Cp = _cache_array(train, (T, B, H), dt) if kind.has_cell else None
    Hn = _cache_array(train, (T, B, H), dt) if kind.keeps_product else None
    Gh = aligned_empty((B, GH), dt) if kind.keeps_product else None
    Ht = _cache_array(train, (T, B, H), dt) if kind.keeps_candidate else None
    W_ih, W_hh, b_ih, b_hh = weights[:4]
    _core.forward(kind.kernel_id, X, W_ih, W_hh, b_ih, b_hh, nact, bounds, h, Y, col, Gt, c=c,
                  Hp=Hp, Cp=Cp, Gh=Gh, Hn=Hn, Ht=Ht, scalars=scalars, peephole=peephole,
                  W_hr=W_hr, Hm=Hm, hmask=hmask, zh=zoneout[0], zc=zoneout[1], reverse=reverse,
                  relu=relu, W_hh_t=W_hh_t, layout=layout, W_ih_p=W_ih_p, **b16_args)
    return Cache(Gt, Hp, Cp, Gh, Hn, Ht, bounds, Hm, hmask, zoneout, b16=b16) if train else None


def extras(kind: Kind, weights: Weights) -> tuple:
    """``(scalars, vectors, W_hr)``: the arrays of ``weights`` after the first four, in
    their order: the scalars (None where the kind has none), the kind's per-unit vectors
    (a tuple, flat: an LSTM's peepholes; the layer-normalised LSTM's six gains and
    biases; empty for the others) and an LSTM's projection W_hr (or None)."""
    rest = list(weights[4:])
    scalars = rest.pop(0) if kind.scalars else None
    vectors = tuple(rest.pop(0) for _ in kind.vectors)
    return scalars, vectors, (rest[0] if rest else None)


def _cell(a: np.ndarray | None) -> np.ndarray:
    """An array an LSTM's call always has (its cell state, its gradient, its caches)."""
    if a is None:
        raise ValueError("an LSTM's call takes its cell state c")
    return a


def _plain(kind: Kind, hmask, zoneout: tuple) -> None:
    """A layer-normalised LSTM's call has no recurrent dropout and no zoneout (its
    layers refuse them)."""
    if hmask is not None or zoneout[0] is not None:
        raise ValueError(f"{kind.label}: no recurrent dropout or zoneout")


def _ln_forward(kind: Kind, X: np.ndarray, weights: Weights, nact: np.ndarray,
                reverse: bool, h: np.ndarray, c: np.ndarray, Y: np.ndarray, col: int,
                train: bool) -> Cache | None:
    """:func:`run_forward` of the layer-normalised LSTM (``_core.ln_forward``)."""
    T = nact.shape[0]
    B, H = h.shape
    dt = X.dtype
    GH = 4 * H
    bounds = row_bounds(nact, B, H, kind.gates)
    W_ih, W_hh = weights[:2]
    norms = extras(kind, weights)[1]
    W_hh_t, layout = step_operand(W_hh, T, B, kind, keep=not train)
    Gt, Gh = np.empty((T * B, GH), dt), np.empty((B, GH), dt)
    Hp, Cp, Xc = (_cache_array(train, (T, B, H), dt) for _ in range(3))
    Xh = _cache_array(train, (T, B, GH), dt)
    Xn = np.empty((T * B if train else 0, GH), dt)
    R = np.empty((T * B if train else 0, 3), dt)
    _core.ln_forward(X, W_ih, W_hh, norms, nact, bounds, h, c, Y, col, Gt, Gh, Hp=Hp, Cp=Cp,
                     Xn=Xn, Xh=Xh, Xc=Xc, R=R, reverse=reverse, W_hh_t=W_hh_t, layout=layout)
    return Cache(Gt, Hp, Cp, Gh, None, None, bounds, norm=(Xn, Xh, Xc, R)) if train else None


def run_backward(kind: Kind, relu: bool, X: np.ndarray, weights: Weights, nact: np.ndarray,
                 reverse: bool, cache: Cache, dY: np.ndarray, col: int, dh: np.ndarray,
                 dc: np.ndarray | None, dX: np.ndarray | None, accumulate: bool,
                 grads: Weights) -> None:
    """Backward of :func:`run_forward`: ``dh``/``dc`` from dh_n/dc_n to dh0/dc0 in place,
    ``dX`` written (or added to; None: not computed), gradients added into ``grads``."""
    W_ih, W_hh = weights[0], weights[1]
    b16_args: dict = {}
    if cache.b16:       # the precision of the forward pass, whatever the current one
        T, B, P = nact.shape[0], dh.shape[0], dh.shape[1]
        W_hh_p = _EMPTY2[W_hh.dtype.char]
        b16_args = dict(W_hh_b=b16_panels(W_hh, False), W_ih_b=b16_panels(W_ih, False),
                        b16_work=b16_backward_work(_core.b16_backward_size(
                            T, B, X.shape[1], W_hh.shape[0], P, W_hh.shape[1])))
    else:
        W_hh_p = backward_operand(W_hh, nact.shape[0], dh.shape[0], kind)
    scalars, vectors, W_hr = extras(kind, weights)
    dscalars, dvectors, dW_hr = extras(kind, grads)
    if kind.layer_norm:
        Xn, Xh, Xc, R = cache.norm
        _core.ln_backward(X, W_ih, W_hh, vectors, nact, cache.bounds, cache.Gt, cache.Hp,
                          _cell(cache.Cp), Xn, Xh, Xc, R, _cell(cache.Gh), dY, col, dh,
                          _cell(dc), grads[0], grads[1], dvectors, dX=dX,
                          accumulate_dx=accumulate, reverse=reverse, W_hh_p=W_hh_p)
        return
    peephole, dpeephole = (vectors[0], dvectors[0]) if vectors else (None, None)
    _core.backward(kind.kernel_id, X, W_ih, W_hh, nact, cache.bounds, cache.Gt,
                   cache.Hp, dY, col, dh, grads[0], grads[1], grads[2], grads[3], dc=dc,
                   Cp=cache.Cp, Gh=cache.Gh, Hn=cache.Hn, Ht=cache.Ht, scalars=scalars,
                   dscalars=dscalars, peephole=peephole, dpeephole=dpeephole, W_hr=W_hr,
                   Hm=cache.Hm, dW_hr=dW_hr, hmask=cache.hmask, zh=cache.zoneout[0],
                   zc=cache.zoneout[1], dX=dX,
                   accumulate_dx=accumulate,
                   reverse=reverse, relu=relu, W_hh_p=W_hh_p, **b16_args)


@dataclass
class Tape:
    """What a training forward pass of a stack keeps for its backward pass."""

    kind: Kind
    relu: bool
    nact: np.ndarray
    reverse: bool = False                         # one direction, read backwards
    inputs: list = field(default_factory=list)   # per layer: its input (T*B, I_k)
    masks: list = field(default_factory=list)    # per layer: dropout mask on its input, or None
    caches: list = field(default_factory=list)   # per layer: per direction: kernel cache


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float,
                 dtype) -> np.ndarray:
    """Inverted dropout: 1/(1-p) where an entry is kept (probability 1-p), else 0 (all 0
    at p = 1)."""
    mask = (rng.random(shape) >= p).astype(dtype)
    if p < 1:
        mask /= mask.dtype.type(1 - p)
    return mask


def zoneout_arrays(rng, train: bool, steps: int, batch: int, widths: tuple[int, int],
                   rates: tuple[float, float], has_cell: bool, dtype) -> tuple:
    """What the kernels take for zoneout (Krueger et al. 2017) of one layer-direction:
    ``(zh, zc)`` masks, 1 where a unit keeps its previous value (probability the rate),
    (T, B, P) and (T, B, H), in training; the rates themselves, (1, B, .), at inference
    (the expectation); zc None without a cell state; (None, None) without zoneout."""
    z_h, z_c = rates
    if not (z_h or (z_c and has_cell)):
        return None, None
    arrays = []
    for width, rate in zip(widths[:1 + has_cell], (z_h, z_c)):
        if train:
            arrays.append((rng.random((steps, batch, width)) < rate).astype(dtype))
        else:
            arrays.append(np.full((1, batch, width), rate, dtype))
    return arrays[0], (arrays[1] if has_cell else None)


def stack_forward(kind, relu, X, weights, h, c, nact, train, dropout=0.0, rng=None,
                  reverse=False, recurrent_dropout=0.0, input_dropout=0.0,
                  zoneout=(0.0, 0.0), zoneout_masks=None):
    """Run ``len(weights)`` layers of ``len(weights[0])`` directions of ``kind``.

    ``X`` (T*B, I); ``weights[k][d]`` = (W_ih, W_hh, b_ih, b_hh); ``h``, ``c``
    (L*D, B, H): the initial states on entry, the final states on exit (``c`` None unless
    LSTM).  When training: dropout with probability ``dropout`` applies to the inputs of
    layers 1.. (a mask per step), ``input_dropout`` to every layer's input with one mask
    per sequence, the same at every step, and ``recurrent_dropout`` to h entering each
    layer-direction's recurrent product, one mask per sequence (Gal & Ghahramani 2016);
    all drawn from ``rng``.  ``zoneout`` (z_h, z_c): each unit of h (and of c) keeps its
    previous value with that probability in training, the expectation at inference
    (``zoneout_masks=False``: the expectation in training too).
    ``reverse``: the one direction reads each sequence from its end.  Returns the output
    (T, B, D*H) and the tape (None unless training).
    """
    T = nact.shape[0]
    B, H = h.shape[1], h.shape[2]
    D = len(weights[0])
    tape = Tape(kind, relu, nact, reverse) if train else None
    Y = None
    for k, layer in enumerate(weights):
        mask = None
        if train and dropout > 0 and k > 0:
            mask = dropout_mask(rng, X.shape, dropout, X.dtype)
        if train and input_dropout > 0:     # one mask per sequence: the same at every step
            steps = dropout_mask(rng, (B, X.shape[1]), input_dropout, X.dtype)
            steps = np.broadcast_to(steps, (T, B, X.shape[1])).reshape(T * B, -1)
            mask = steps if mask is None else mask * steps
        if mask is not None:
            X = X * mask
        Y = np.empty((T, B, D * H), X.dtype)
        caches = []
        for d, w in enumerate(layer):
            i = k * D + d
            hmask = (dropout_mask(rng, (B, H), recurrent_dropout, X.dtype)
                     if train and recurrent_dropout > 0 else None)
            zones = zoneout_arrays(rng, train if zoneout_masks is None else zoneout_masks, T, B,
                                   (H, 0 if c is None else c.shape[2]), zoneout,
                                   c is not None, X.dtype)
            caches.append(run_forward(kind, relu, X, w, nact, d == 1 or reverse, h[i],
                                      None if c is None else c[i], Y, d * H, train, hmask,
                                      zones))
        if tape is not None:
            tape.inputs.append(X)
            tape.masks.append(mask)
            tape.caches.append(caches)
        X = Y.reshape(T * B, D * H)
    return Y, tape


def stack_backward(tape, weights, grads, dY, dh, dc, input_grad=True):
    """Backward of :func:`stack_forward`.  ``dY`` (T, B, D*H), or None for zeros (the
    outputs are not read); ``dh``, ``dc`` (L*D, B, H):
    dh_n/dc_n on entry, dh0/dc0 on exit; ``grads[k][d]`` = the 4 gradient arrays to add
    into.  Returns dX (T*B, I), or None without ``input_grad`` (the first layer's input
    product is then not computed)."""
    D = len(weights[0])
    H = dh.shape[2]
    dX = None
    for k in range(len(weights) - 1, -1, -1):
        X = tape.inputs[k]
        dX = np.empty_like(X) if k > 0 or input_grad else None
        for d in range(D):
            i = k * D + d
            run_backward(tape.kind, tape.relu, X, weights[k][d], tape.nact,
                         d == 1 or tape.reverse,
                         tape.caches[k][d], dY, d * H, dh[i], None if dc is None else dc[i],
                         dX, d > 0, grads[k][d])
        if dX is None:
            break
        if tape.masks[k] is not None:
            dX *= tape.masks[k]
        dY = dX.reshape(tape.nact.shape[0], -1, X.shape[1])
    return dX


def step_states(tape: Tape, c_final: np.ndarray | None) -> tuple[np.ndarray | None,
                                                                  np.ndarray]:
    """Every layer's cell state after each step and gate activations at each step, from
    a training forward pass: ``(c, gates)``, c (L, T, B, D*H) (None unless the kind has a
    cell state; ``c_final`` (L*D, B, H) its final states) and gates (L, T, B, D*G*H), the
    directions side by side, zeros at padded steps, rows in the tape's (sorted) order.
    c_t is the state the next step started from (the training cache Cp), or the final
    state after a sequence's last step: the kernels' own numbers."""
    nact = tape.nact
    T = nact.shape[0]
    B = tape.caches[0][0].Hp.shape[1]
    steps = np.arange(T)[:, None]
    length = (nact[:, None] > np.arange(B)[None, :]).sum(axis=0)      # per sorted row
    valid = steps < length[None, :]                                     # (T, B)
    rows = np.arange(B)
    cs, gates = [], []
    for k, caches in enumerate(tape.caches):
        D = len(caches)
        c_dirs, g_dirs = [], []
        for d, cache in enumerate(caches):
            g = cache.Gt.reshape(T, B, -1) * valid[:, :, None]
            g_dirs.append(g)
            if cache.Cp is None or c_final is None:
                continue
            after = np.zeros_like(cache.Cp)
            if d == 1 or tape.reverse:          # step t is followed by step t - 1
                after[1:] = cache.Cp[:-1]
                last = np.zeros(B, int)
            else:                               # by step t + 1
                after[:-1] = cache.Cp[1:]
                last = length - 1
            after[last, rows] = c_final[k * D + d]
            c_dirs.append(after * valid[:, :, None])
        gates.append(np.concatenate(g_dirs, axis=2))
        if c_dirs:
            cs.append(np.concatenate(c_dirs, axis=2))
    return (np.stack(cs) if cs else None), np.stack(gates)


def gemm_floor(mode: str, x: np.ndarray, W_ih: np.ndarray, W_hh: np.ndarray, lengths=None,
               train: bool = False):
    """A callable that runs only the matrix products of one layer-direction over ``x``
    (T, B, I) (time-major, rows sorted longest first when ``lengths`` is given), with the
    kernels' shapes, blocking, threads and product kernels (BLAS, or the panel product for
    the per-step products where the layer uses it): the time a kernel cannot go below
    with these products.  Used by the benchmarks."""
    T, B, I = x.shape
    dt = x.dtype
    GH, H = W_hh.shape
    nact = active_rows(None if lengths is None else np.sort(lengths)[::-1].copy(), T, B)
    bounds = row_bounds(nact, B, H, KINDS[mode].gates)
    X = np.ascontiguousarray(x).reshape(T * B, I)
    W_hh_t, layout = step_operand(W_hh, T, B, keep=not train)
    W_hh_p = backward_operand(W_hh, T, B)
    W_ih_p = input_operand(W_ih, layout, keep=not train)
    Gt = np.zeros((T * B, GH), dt)
    h = np.zeros((B, H), dt)
    Hp = np.zeros((T * B, H), dt)
    dX = np.zeros((T * B, I), dt)
    dW_ih = np.zeros_like(W_ih)
    dW_hh = np.zeros_like(W_hh)

    def run():
        _floor.gemm_floor(X, W_ih, W_hh, W_hh_t, W_hh_p, Gt, h, Hp, dX, dW_ih, dW_hh, nact,
                         bounds, train, layout, W_ih_p)

    return run


# ------------------------------------------------------------------------------- one step
# The cells' call and the streaming Stepper: a few microseconds a call, so these add one
# Python call to the kernel's and nothing else (no allocation, no checks of their own).

def cell_call(kind: Kind, relu: bool, x: object, state: object, weights: Weights):
    """A cell's whole call, the new state in new arrays, from ``x`` (B, I) or (I,) and
    ``state`` (h, or (h, c); None for zeros), or None when ``x`` or ``state`` need
    converting (not ndarrays of the weights' dtype, C-contiguous, of the right shapes):
    the caller then converts and checks them and runs :func:`step` (always, for a kind
    without a one-step kernel)."""
    if not kind.one_step:
        return None
    W_ih, W_hh, b_ih, b_hh = weights[:4]
    if compute_dtype() is not None:
        b16_step_refusal(W_hh.dtype)
    return _step.cell_call(kind.kernel_id, relu, x, state, W_ih, W_hh, b_ih, b_hh)


def b16_step_refusal(dtype) -> None:
    """One-step calls (a cell's call, the Stepper) have no bf16 mode: a ValueError under
    ``autocast("bfloat16")`` for float32 weights."""
    if b16_active(dtype):
        raise ValueError("fastrnn.autocast('bfloat16') covers the sequence layers and a "
                         "cell's forward_train, not one-step calls (a cell's call, "
                         "Stepper): run them outside autocast (float32)")


def step_workspace(kind: Kind, batch: int, hidden: int, dtype,
                   state_size: int | None = None,
                   sequence: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(gates, gh)``, the workspace :func:`step` takes for ``batch`` rows: ``gates``
    (B, G*H), and ``gh`` (B, 3H) for a GRU (``gates`` again for the other kinds).  For a
    kind without a one-step kernel, an LSTM with a projection (``state_size`` P, the
    width of h, not H) or a layer with zoneout (``sequence``), ``gh`` is the output
    (1, B, P) of the sequence kernel and
    ``gates`` (2, B, G*H) for a kind that keeps a product apart (the gates, then the
    kernel's workspace Gh), else (1, B, G*H)."""
    GH = kind.gates * hidden
    state_size = state_size or hidden
    if not kind.one_step or state_size != hidden or sequence:
        gates = np.empty((2 if kind.keeps_product else 1, batch, GH), dtype)
        return gates, np.empty((1, batch, state_size), dtype)
    gates = np.empty((batch, GH), dtype)
    gh = np.empty((batch, GH), dtype) if kind.product_apart else gates
    return gates, gh


@functools.lru_cache(maxsize=64)
def _one_step_rows(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(nact, bounds)`` of one step over ``batch`` rows, all active, in one part."""
    return np.full(1, batch, np.intc), np.array([0, batch], np.intc)


def step(kind: Kind, relu: bool, x: np.ndarray, weights: Weights, h: np.ndarray,
         c: np.ndarray | None, gates: np.ndarray, gh: np.ndarray,
         zoneout: tuple = (None, None)) -> None:
    """One time step of one layer on every row, in place: ``h`` (and ``c``, the LSTM's
    cell state; None for the other kinds) (B, H) go from the previous state to the new
    one, from ``x`` (B, I); ``gates``, ``gh`` from :func:`step_workspace`.  A kind
    without a one-step kernel (FastRNN, FastGRNN, the variants) or an LSTM with a
    projection runs its sequence kernel over the step, reading W_hh as it is (no per-call
    copy); so does a layer with ``zoneout``, the rates of :func:`zoneout_arrays` at
    inference."""
    W_ih, W_hh, b_ih, b_hh = weights[:4]
    if compute_dtype() is not None:
        b16_step_refusal(W_hh.dtype)
    if gates.ndim == 3:            # the workspace of the sequence kernel (step_workspace)
        nact, bounds = _one_step_rows(h.shape[0])
        scalars, vectors, W_hr = extras(kind, weights)
        if kind.layer_norm:
            _core.ln_forward(x, W_ih, W_hh, vectors, nact, bounds, h, _cell(c), gh, 0,
                             gates[0], gates[1])
            return
        peephole = vectors[0] if vectors else None
        _core.forward(kind.kernel_id, x, W_ih, W_hh, b_ih, b_hh, nact, bounds, h, gh, 0,
                      gates[0], c=c, Gh=gates[1] if kind.keeps_product else None,
                      scalars=scalars, peephole=peephole, W_hr=W_hr, zh=zoneout[0],
                      zc=zoneout[1], relu=relu)
        return
    _step.step(kind.kernel_id, relu, x, W_ih, W_hh, b_ih, b_hh, h, gates if c is None else c,
               gates, gh)


def readout(h: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
            out: np.ndarray) -> None:
    """``out = h @ weight.T + bias`` (no bias if None) in place, with the kernels' BLAS
    (one BLAS, not two: see DESIGN.md)."""
    if bias is None:
        _blas.blas_gemm(h, weight, out, False, True, 1.0, 0.0)
    else:
        out[...] = bias
        _blas.blas_gemm(h, weight, out, False, True, 1.0, 1.0)


# ------------------------------------------------------------------- quantized inference
# int8 weights per output row, int8 activations per row and step, int32 sums, float32
# gate math (fastrnn/_q8.h, fastrnn/_lowp.pyx); inference only, the plain kinds only.

#: the kinds the int8 loop runs (the variants and FastRNN/FastGRNN have no int8 loop)
Q8_KINDS = (_core.KIND_RNN, _core.KIND_LSTM, _core.KIND_GRU)


class Q8(NamedTuple):
    """One quantized layer-direction as the int8 loop takes it: W_ih and W_hh packed
    (``_lowp.pack``) with their column sums and per-row scales, the bias row of the input
    projection and the GRU's b_hn (empty otherwise)."""

    W_ih: np.ndarray
    cs_ih: np.ndarray
    s_ih: np.ndarray
    W_hh: np.ndarray
    cs_hh: np.ndarray
    s_hh: np.ndarray
    bias: np.ndarray
    b_hn: np.ndarray


def q8_pack(kind: Kind, W_ih: np.ndarray, s_ih: np.ndarray, W_hh: np.ndarray,
            s_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray) -> Q8:
    """A layer-direction's int8 weights (G*H, I), (G*H, H) and float32 scales (G*H,)
    packed for the int8 loop; ``b_ih``, ``b_hh`` float32 (G*H,) or empty (no biases)."""
    GH, H = W_hh.shape
    bias = np.zeros(GH, np.float32)
    b_hn = np.empty(0, np.float32)
    if b_ih.size:
        n_hh = 2 * H if kind.kernel_id == _core.KIND_GRU else GH   # b_hn stays in r*(...)
        bias += b_ih
        bias[:n_hh] += b_hh[:n_hh]
        if n_hh < GH:
            b_hn = np.ascontiguousarray(b_hh[n_hh:], np.float32)
    ih, hh = _lowp.pack(W_ih), _lowp.pack(W_hh)
    return Q8(ih[0], ih[1], s_ih, hh[0], hh[1], s_hh, bias, b_hn)


def q8_forward(kind: Kind, relu: bool, X: np.ndarray, q: Q8, nact: np.ndarray,
               reverse: bool, h: np.ndarray, c: np.ndarray | None, Y: np.ndarray,
               col: int) -> None:
    """:func:`run_forward` of a quantized layer-direction, at inference."""
    B, H = h.shape
    bounds = row_bounds(nact, B, H, kind.gates)
    ops = 2.0 * X.shape[0] * X.shape[1] * q.s_ih.shape[0]
    parts = _blas.get_num_threads() if ops >= _tuning.Q8_PARALLEL_MIN_OPS else 1
    _lowp.forward(kind.kernel_id, relu, X, q.W_ih, q.cs_ih, q.s_ih, q.W_hh, q.cs_hh, q.s_hh,
                  q.bias, q.b_hn, nact, bounds, h, c, Y, col, reverse, parts,
                  B >= _tuning.Q8_STEP_INPUT_MIN_ROWS)


def q8_stack_forward(kind: Kind, relu: bool, X: np.ndarray, layers: list, h: np.ndarray,
                     c: np.ndarray | None, nact: np.ndarray, reverse: bool = False):
    """:func:`stack_forward` at inference of a quantized stack: ``layers[k][d]`` a
    :class:`Q8`.  Returns the output (T, B, D*H)."""
    T = nact.shape[0]
    B, H = h.shape[1], h.shape[2]
    D = len(layers[0])
    Y = X
    for k, layer in enumerate(layers):
        Y = np.empty((T, B, D * H), np.float32)
        for d, q in enumerate(layer):
            i = k * D + d
            q8_forward(kind, relu, X, q, nact, d == 1 or reverse, h[i],
                       None if c is None else c[i], Y, d * H)
        X = Y.reshape(T * B, D * H)
    return Y


def q8_step(kind: Kind, relu: bool, x: np.ndarray, q: Q8, h: np.ndarray,
            c: np.ndarray | None, y: np.ndarray) -> None:
    """One step of a quantized layer on every row, in place (``h``, ``c`` (B, H)): the
    int8 loop over one step; ``y`` (1, B, H) its workspace."""
    nact, bounds = _one_step_rows(h.shape[0])
    _lowp.forward(kind.kernel_id, relu, x, q.W_ih, q.cs_ih, q.s_ih, q.W_hh, q.cs_hh, q.s_hh,
                  q.bias, q.b_hn, nact, bounds, h, c, y, 0, False)
