"""The threads of a time loop sharing each step's products (``_blas.shared_product_bytes``).

Split by rows, each thread multiplies its own rows by all of the recurrent weights at every
step; sharing, each thread computes some 64-column panels of every active row, between two
barriers a step, then the cell math of its own rows.  Each element is the same sum in the
same order either way, so the results must be bit-identical: inference outputs and final
states, training outputs, every parameter's gradient, dx and dstate0, for every form whose
loop can share (and the forms that cannot must not try).
"""

import contextlib

import numpy as np
import pytest

import fastrnn
from fastrnn import _blas, _core
from fastrnn.fastgrnn import FastGRNN

T = 24
NEVER = 1e18     # a threshold no weights reach

# (layer class, input size, hidden size, batch, constructor options): loops of at least
# _tuning.MIN_LOOP_FLOPS, so that two threads split them
FORMS = {
    "lstm": (fastrnn.LSTM, 40, 96, 32, {}),
    "lstm-2layers-bi": (fastrnn.LSTM, 40, 80, 32, {"num_layers": 2, "bidirectional": True}),
    "lstm-proj": (fastrnn.LSTM, 40, 96, 32, {"proj_size": 32}),
    "lstm-peephole": (fastrnn.LSTM, 40, 96, 32, {"peephole": True}),
    "lstm-reverse": (fastrnn.LSTM, 40, 96, 32, {"reverse": True}),
    "lstm-recurrent-dropout": (fastrnn.LSTM, 40, 96, 32, {"recurrent_dropout": 0.3}),
    "lstm-zoneout": (fastrnn.LSTM, 40, 96, 32, {"zoneout": 0.2}),
    "gru": (fastrnn.GRU, 40, 96, 32, {}),
    "gru-recurrent-dropout-zoneout": (fastrnn.GRU, 40, 96, 32, {"recurrent_dropout": 0.2,
                                                                "zoneout": 0.1}),
    "rnn-tanh": (fastrnn.RNN, 40, 128, 32, {}),
    "rnn-relu-one-panel": (fastrnn.RNN, 24, 64, 128, {"nonlinearity": "relu"}),
    "fastgrnn": (FastGRNN, 40, 128, 32, {}),
}


@contextlib.contextmanager
def sharing(threshold):
    """Two threads in the kernels, and the sharing threshold set to ``threshold``."""
    before = _blas.shared_product_bytes()
    try:
        _blas.shared_product_bytes(threshold)
        with fastrnn.threads(2):
            yield
    finally:
        _blas.shared_product_bytes(before)


def _can_share():
    """Whether this machine runs the loops that share: two cores and the panel product."""
    with fastrnn.threads(2):
        return fastrnn.get_num_threads() >= 2 and _blas.panel_kernels_fast()


def _data(seed, I, B, lengths):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lens = rng.integers(1, T + 1, B) if lengths else None
    if lengths:
        lens[0] = T
    return x, lens


def _train(make, x, lens, threshold):
    """Outputs, final states, gradients, dx and dstate0 of one training step of a fresh
    layer from ``make`` (the same seed: the same weights and regularisers' masks)."""
    layer = make()
    with sharing(threshold):
        y, state, backward = layer.forward_train(x, None, lens)
        dy = np.cos(np.arange(y.size, dtype=np.float32)).reshape(y.shape)
        dx, dstate0 = backward(dy)
    grads = {name: p.grad.copy() for name, p in layer.named_parameters()}
    states = state if isinstance(state, tuple) else (state,)
    dstates = dstate0 if isinstance(dstate0, tuple) else (dstate0,)
    return [y, *states, dx, *dstates], grads


def _infer(make, x, lens, threshold):
    layer = make()
    with sharing(threshold):
        y, state = layer(x, None, lens)
    return [y, *(state if isinstance(state, tuple) else (state,))]


def _assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_shared_products_give_the_same_bits(form, lengths):
    cls, I, H, B, options = FORMS[form]
    x, lens = _data(7, I, B, lengths)

    def make():
        return cls(I, H, seed=3, **options)

    loops = _core.shared_loops()
    out_never, grads_never = _train(make, x, lens, NEVER)
    assert _core.shared_loops() == loops          # the threshold is respected
    out_always, grads_always = _train(make, x, lens, 0)
    shared = _core.shared_loops() - loops
    _assert_same(out_always, out_never)
    assert grads_always.keys() == grads_never.keys()
    for name in grads_never:
        np.testing.assert_array_equal(grads_always[name], grads_never[name], err_msg=name)

    before = _core.shared_loops()
    _assert_same(_infer(make, x, lens, 0), _infer(make, x, lens, NEVER))
    shared_inference = _core.shared_loops() - before
    if _can_share():
        layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
        assert shared >= 2 * layers               # each forward and each backward loop
        assert shared_inference >= layers


def test_forms_that_cannot_share_do_not():
    """The GRU with r before the product (its steps multiply by parts of W_hh), float64
    (no panel product) and one thread run the row split, at any threshold."""
    x, _ = _data(1, 40, 32, False)
    cases = [lambda: fastrnn.GRU(40, 96, reset_after=False, seed=0),
             lambda: fastrnn.LSTM(40, 96, dtype=np.float64, seed=0)]
    for make in cases:
        loops = _core.shared_loops()
        layer = make()
        with sharing(0):
            layer(x.astype(layer.dtype))
            y, _, backward = layer.forward_train(x.astype(layer.dtype))
            backward(np.ones_like(y))
        assert _core.shared_loops() == loops
    before = _blas.shared_product_bytes()
    try:
        _blas.shared_product_bytes(0)
        loops = _core.shared_loops()
        with fastrnn.threads(1):
            fastrnn.LSTM(40, 96, seed=0)(x)
        assert _core.shared_loops() == loops
    finally:
        _blas.shared_product_bytes(before)


def test_the_default_threshold_shares_large_weights_only():
    """At the tuned threshold, an LSTM with H=512 (W_hh.T 4 MiB) shares its loops, one
    with H=96 does not; both with the same results as the row split."""
    if not _can_share():
        pytest.skip("needs two cores and the panel product")
    for H, shares in [(96, False), (512, True)]:
        x = np.random.default_rng(H).standard_normal((8, 16, 32)).astype(np.float32)
        layer = fastrnn.LSTM(32, H, seed=0)
        with fastrnn.threads(2):
            loops = _core.shared_loops()
            y = layer(x)[0]
            assert (_core.shared_loops() > loops) == shares
        with sharing(NEVER):
            np.testing.assert_array_equal(layer(x)[0], y)


# The bf16 mode's forward loops share their products too (fr_b16_gemm over some columns of
# every active row); its backward loops and the kinds whose step multiplies apart (GRU) or
# projects its input in a product of its own (FastGRNN from 16 rows on) do not.  B = 40:
# row parts cut at multiples of 16, so that the last rows take the path after the AMX
# tiles; H = 88: 352 gate columns (no multiple of 64) and rows padded to 96 values.
B16_FORMS = {
    "lstm": (fastrnn.LSTM, 40, 88, 40, {}, True),
    "lstm-2layers-bi": (fastrnn.LSTM, 24, 80, 40, {"num_layers": 2, "bidirectional": True},
                        True),
    "lstm-peephole": (fastrnn.LSTM, 40, 88, 40, {"peephole": True}, True),
    "lstm-recurrent-dropout-zoneout": (fastrnn.LSTM, 40, 88, 40,
                                       {"recurrent_dropout": 0.3, "zoneout": 0.2}, True),
    "rnn-tanh": (fastrnn.RNN, 40, 160, 40, {}, True),
    "fastgrnn": (FastGRNN, 40, 160, 40, {}, False),
    "gru": (fastrnn.GRU, 40, 96, 40, {}, False),
}
LEVELS = ("baseline", "avx512_bf16", "amx")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("form", sorted(B16_FORMS))
def test_bf16_shared_products_give_the_same_bits(form, lengths, level):
    """Under autocast("bfloat16"), on each ISA path of the bf16 product (those above the
    CPU's run its best): sharing and the row split give the same bits, in inference and
    in training (outputs, states, gradients, dx, dstate0)."""
    cls, I, H, B, options, shares = B16_FORMS[form]
    x, lens = _data(5, I, B, lengths)

    def make():
        return cls(I, H, seed=4, **options)

    _core.set_isa_cap(level)
    try:
        with fastrnn.autocast("bfloat16"):
            loops = _core.shared_loops()
            out_never, grads_never = _train(make, x, lens, NEVER)
            infer_never = _infer(make, x, lens, NEVER)
            assert _core.shared_loops() == loops
            out_always, grads_always = _train(make, x, lens, 0)
            infer_always = _infer(make, x, lens, 0)
            shared = _core.shared_loops() - loops
    finally:
        _core.set_isa_cap(None)
    _assert_same(out_always, out_never)
    _assert_same(infer_always, infer_never)
    for name in grads_never:
        np.testing.assert_array_equal(grads_always[name], grads_never[name], err_msg=name)
    if _can_share():
        layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
        # each forward loop, in training and in inference; never a backward one
        assert shared == (2 * layers if shares else 0)
