"""The blocks of fastrnn.blocks: forward against NumPy written here, backward against
central differences (float64), configurations and model files, bad input, and PyTorch
where it has the same layer (GELU, LayerNorm, Dropout at inference; the ``torch`` fixture
of conftest.py skips them without torch)."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastrnn
from fastrnn.blocks import Block
from fastrnn.sequential import build_layer, layer_config
from _tools import FD_TOL, PARITY_TOL, PRODUCT_TOL, central_differences

B, T, F = 3, 4, 5
LENGTHS = np.array([2, 4, 1])            # unsorted, min 1, max T
DTYPES = [np.float32, np.float64]


def data(dtype=np.float64, shape=(B, T, F), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def valid_mask(lengths):
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


# -- the references, written out here, step by step --------------------------------------

def ref_gelu(x):
    return np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel()]
                    ).reshape(x.shape)


def ref_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def ref_layer_norm(x, w, b, eps):
    out = np.empty_like(x, dtype=np.float64)
    for index in np.ndindex(x.shape[:-1]):
        row = x[index].astype(np.float64)
        mean = row.sum() / row.size
        var = ((row - mean) ** 2).sum() / row.size
        out[index] = (row - mean) / math.sqrt(var + eps) * w + b
    return out


def ref_pool(x, lengths, mode):
    out = np.empty((x.shape[0], x.shape[2]))
    for b in range(x.shape[0]):
        steps = x[b, :lengths[b]].astype(np.float64)
        out[b] = {"last": steps[-1], "mean": steps.mean(axis=0), "max": steps.max(axis=0)}[mode]
    return out


def ref_attention(x, lengths, W, bias, v):
    out = np.empty((x.shape[0], x.shape[2]))
    for b in range(x.shape[0]):
        h = x[b, :lengths[b]].astype(np.float64)
        scores = np.array([v @ np.tanh(W @ h_t + bias) for h_t in h])
        a = np.exp(scores - scores.max())
        a /= a.sum()
        out[b] = sum(a_t * h_t for a_t, h_t in zip(a, h))
    return out


ACTIVATIONS = [(fastrnn.ReLU(), lambda x: np.where(x > 0, x, 0.0)),
               (fastrnn.Tanh(), np.tanh),
               (fastrnn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
               (fastrnn.GELU(), ref_gelu),
               (fastrnn.GELU("tanh"), ref_gelu_tanh)]
ACTIVATION_IDS = ["relu", "tanh", "sigmoid", "gelu", "gelu_tanh"]


# -- forward -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block, ref", ACTIVATIONS, ids=ACTIVATION_IDS)
def test_activation_forward(block, ref, dtype):
    x = data(dtype) * 3
    y = block(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert_allclose(y, ref(x.astype(np.float64)), **PRODUCT_TOL[dtype])
    assert_array_equal(block.forward_train(x)[0], y)


def test_activations_keep_nan_and_take_lists():
    for block, _ in ACTIVATIONS:
        assert np.isnan(block(np.array([np.nan]))[0])
    assert fastrnn.ReLU()([[-1, 2]]).dtype == np.float64        # ints: computed in float64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, False)])
def test_layer_norm_forward(affine, bias, dtype):
    norm = fastrnn.LayerNorm(F, eps=1e-3, elementwise_affine=affine, bias=bias, dtype=dtype)
    rng = np.random.default_rng(1)
    for p in norm.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    w = norm.weight.data if affine else np.ones(F)
    b = norm.bias.data if bias else np.zeros(F)
    x = data(dtype) * 2 + 1
    y = norm(x)
    assert y.dtype == dtype
    assert_allclose(y, ref_layer_norm(x, w, b, 1e-3), **PARITY_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["last", "mean", "max"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_time_pooling_forward(mode, lengths, dtype):
    x = data(dtype)
    full = np.full(B, T) if lengths is None else lengths
    if lengths is not None:
        x[~valid_mask(lengths)] = np.nan           # padding is never read
    y = fastrnn.TimePooling(mode)(x, lengths)
    assert y.shape == (B, F) and y.dtype == dtype
    assert_allclose(y, ref_pool(x, full, mode), **PRODUCT_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_attention_pooling_forward(lengths, dtype):
    attn = fastrnn.AttentionPooling(F, 6, dtype=dtype, seed=0)
    x = data(dtype)
    full = np.full(B, T) if lengths is None else lengths
    if lengths is not None:
        x[~valid_mask(lengths)] = np.nan
    y = attn(x, lengths)
    assert y.shape == (B, F) and y.dtype == dtype
    ref = ref_attention(x, full, attn.proj.weight.data.astype(np.float64),
                        attn.proj.bias.data.astype(np.float64), attn.v.data.astype(np.float64))
    assert_allclose(y, ref, **PARITY_TOL[dtype])
    a = attn.attention(x, lengths)
    assert_allclose(a.sum(axis=1), 1, **PRODUCT_TOL[dtype])
    assert np.all(a[~valid_mask(full)] == 0)
    assert_array_equal(attn.forward_train(x, lengths)[0], y)


def test_dropout_masks_scaling_and_inference():
    x = np.ones((200, 50))
    drop = fastrnn.Dropout(0.3, seed=0)
    y, backward = drop.forward_train(x)
    assert set(np.unique(y)) == {0.0, 1 / 0.7}
    assert abs((y == 0).mean() - 0.3) < 0.01               # 10000 draws: sd 0.0046
    assert_array_equal(backward(np.full_like(x, 2.0)), 2 * y)
    again, _ = fastrnn.Dropout(0.3, seed=0).forward_train(x)
    assert_array_equal(again, y)                            # seeded
    assert not np.array_equal(drop.forward_train(x)[0], y)  # a new mask per call
    assert_array_equal(drop(x), x)                          # inference: the identity
    assert_array_equal(fastrnn.Dropout(1.0).forward_train(x)[0], 0 * x)
    assert_array_equal(fastrnn.Dropout(0.0).forward_train(x)[0], x)
    assert fastrnn.Dropout(0.5).forward_train(x.astype(np.float32))[0].dtype == np.float32


# -- backward: central differences, float64 ----------------------------------------------

def check_gradients(block, x, lengths=None):
    """backward against central differences of L = sum(y * R), for x and every
    parameter (the block's inference path reads x and the parameters themselves)."""
    y, backward = block.forward_train(x, lengths)
    R = np.random.default_rng(7).standard_normal(y.shape)
    block.zero_grad()
    dx = backward(R)

    def loss():
        return float((block(x, lengths) * R).sum())

    assert_allclose(dx, central_differences(loss, x), **FD_TOL, err_msg="dx")
    for name, p in block.named_parameters():
        assert_allclose(p.grad, central_differences(loss, p.data), **FD_TOL, err_msg=name)


@pytest.mark.parametrize("block", [b for b, _ in ACTIVATIONS], ids=ACTIVATION_IDS)
def test_activation_gradients(block):
    check_gradients(block, data() * 2)


@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, False)])
def test_layer_norm_gradients(affine, bias):
    norm = fastrnn.LayerNorm(F, elementwise_affine=affine, bias=bias, dtype=np.float64)
    rng = np.random.default_rng(1)
    for p in norm.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    check_gradients(norm, data())


@pytest.mark.parametrize("mode", ["last", "mean", "max"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_time_pooling_gradients(mode, lengths):
    x = data()
    check_gradients(fastrnn.TimePooling(mode), x, lengths)
    if lengths is not None:
        _, backward = fastrnn.TimePooling(mode).forward_train(x, lengths)
        assert np.all(backward(np.ones((B, F)))[~valid_mask(lengths)] == 0)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_attention_pooling_gradients(lengths, bias):
    attn = fastrnn.AttentionPooling(F, 6, bias=bias, dtype=np.float64, seed=0)
    check_gradients(attn, data(), lengths)


def test_gradients_accumulate():
    attn = fastrnn.AttentionPooling(F, 6, dtype=np.float64, seed=0)
    x = data()
    for _ in range(2):
        y, backward = attn.forward_train(x, LENGTHS)
        backward(np.ones_like(y))
    twice = attn.v.grad.copy()
    attn.zero_grad()
    y, backward = attn.forward_train(x, LENGTHS)
    backward(np.ones_like(y))
    assert_allclose(twice, 2 * attn.v.grad, rtol=1e-12)


# -- configurations and model files ------------------------------------------------------

BLOCKS = [fastrnn.ReLU(), fastrnn.Tanh(), fastrnn.Sigmoid(), fastrnn.GELU("tanh"),
          fastrnn.Dropout(0.25, seed=3), fastrnn.LayerNorm(F, eps=1e-4, bias=False),
          fastrnn.TimePooling("max"), fastrnn.AttentionPooling(F, 6, bias=False, seed=0)]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: type(b).__name__)
def test_config_round_trip(block):
    cfg = layer_config(block)
    again = build_layer(cfg, np.float32)
    assert type(again) is type(block) and layer_config(again) == cfg
    assert [(n, p.shape) for n, p in again.named_parameters()] == \
        [(n, p.shape) for n, p in block.named_parameters()]
    assert sorted(dict(type(block).config_shapes(cfg))) == \
        sorted(n for n, _ in block.named_parameters())


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: type(b).__name__)
def test_save_load_round_trip(block, tmp_path):
    model = fastrnn.Sequential([block])
    rng = np.random.default_rng(2)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    fastrnn.save(model, tmp_path / "m.npz")
    loaded = fastrnn.load(tmp_path / "m.npz")
    assert type(loaded[0]) is type(block)
    x = data(np.float32)
    assert_array_equal(loaded(x, LENGTHS), model(x, LENGTHS))
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), loaded.named_parameters()):
        assert n1 == n2 and np.array_equal(p1.data, p2.data)


def test_blocks_are_blocks():
    for block in BLOCKS:
        assert isinstance(block, Block)
        assert block.reduces_time == isinstance(block, (fastrnn.TimePooling,
                                                        fastrnn.AttentionPooling))


# -- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("make, error, word", [
    (lambda: fastrnn.GELU("erf"), ValueError, "approximate"),
    (lambda: fastrnn.Dropout(1.5), ValueError, "p must"),
    (lambda: fastrnn.Dropout("0.5"), TypeError, "p must"),
    (lambda: fastrnn.Dropout(0.5, seed=-1), ValueError, "seed"),
    (lambda: fastrnn.LayerNorm(0), ValueError, "normalized_shape"),
    (lambda: fastrnn.LayerNorm(3, eps=0.0), ValueError, "eps"),
    (lambda: fastrnn.LayerNorm(3, dtype=np.int32), TypeError, "dtype"),
    (lambda: fastrnn.TimePooling("sum"), ValueError, "mode"),
    (lambda: fastrnn.AttentionPooling(0, 3), ValueError, "input_size"),
    (lambda: fastrnn.AttentionPooling(3, 1.5), TypeError, "attention_size"),
])
def test_bad_arguments(make, error, word):
    with pytest.raises(error, match=word):
        make()


@pytest.mark.parametrize("call, error, word", [
    (lambda: fastrnn.ReLU()(np.array(["a"])), TypeError, "x"),
    (lambda: fastrnn.Tanh()(np.float64(1.0)), ValueError, "x"),
    (lambda: fastrnn.LayerNorm(4)(np.ones((2, 3))), ValueError, "normalized_shape=4"),
    (lambda: fastrnn.TimePooling()(np.ones((2, 3))), ValueError, "3-D"),
    (lambda: fastrnn.TimePooling()(np.ones((2, 3, 1)), [1, 4]), ValueError, "lengths"),
    (lambda: fastrnn.TimePooling()(np.ones((2, 3, 1)), [1]), ValueError, "lengths"),
    (lambda: fastrnn.TimePooling()(np.ones((2, 3, 1)), [1.5, 2]), TypeError, "lengths"),
    (lambda: fastrnn.TimePooling()(np.ones((0, 3, 1))), ValueError, "at least one"),
    (lambda: fastrnn.AttentionPooling(4, 2)(np.ones((2, 3, 5))), ValueError, "input_size"),
    (lambda: fastrnn.ReLU().forward_train(np.ones(3))[1](np.ones(4)), ValueError, "dy"),
    (lambda: fastrnn.TimePooling().forward_train(np.ones((1, 2, 3)))[1](np.ones((1, 2))),
     ValueError, "dy"),
])
def test_bad_input(call, error, word):
    with pytest.raises(error, match=word):
        call()


# -- PyTorch -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(torch, approximate, dtype):
    x = data(dtype) * 3
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.GELU(approximate=approximate)(xt)
    R = data(dtype, seed=5)
    yt.backward(torch.tensor(R))
    y, backward = fastrnn.GELU(approximate).forward_train(x)
    assert_allclose(y, yt.detach().numpy(), **PARITY_TOL[dtype])
    assert_allclose(backward(R), xt.grad.numpy(), **PARITY_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_matches_torch(torch, dtype):
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    ref = torch.nn.LayerNorm(F, dtype=tdtype)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    norm = fastrnn.LayerNorm(F, dtype=dtype)
    norm.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = data(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    R = data(dtype, seed=5)
    yt.backward(torch.tensor(R))
    y, backward = norm.forward_train(x)
    assert_allclose(y, yt.detach().numpy(), **PARITY_TOL[dtype])
    assert_allclose(backward(R), xt.grad.numpy(), **PARITY_TOL[dtype])
    assert_allclose(norm.weight.grad, ref.weight.grad.numpy(), **PARITY_TOL[dtype])
    assert_allclose(norm.bias.grad, ref.bias.grad.numpy(), **PARITY_TOL[dtype])


def test_dropout_at_inference_matches_torch(torch):
    x = data(np.float32)
    ref = torch.nn.Dropout(0.4).eval()
    assert_array_equal(fastrnn.Dropout(0.4)(x), ref(torch.tensor(x)).numpy())


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_attention_pooling_reads_a_time_major_array_in_place(lengths):
    """The batch-first view of a time-major array (a recurrent layer's outputs in a
    Sequential) gives the outputs and gradients of the same values batch-first, and its
    dx is again such a view."""
    attn = fastrnn.AttentionPooling(4, 3, dtype=np.float64, seed=0)
    twin = fastrnn.AttentionPooling(4, 3, dtype=np.float64, seed=0)
    rng = np.random.default_rng(1)
    time_major = rng.standard_normal((5, 3, 4))                 # (T, B, F)
    view = time_major.swapaxes(0, 1)
    y, backward = attn.forward_train(view, lengths)
    y2, backward2 = twin.forward_train(np.ascontiguousarray(view), lengths)
    np.testing.assert_allclose(y, y2, rtol=1e-13)
    dy = rng.standard_normal(y.shape)
    dx, dx2 = backward(dy), backward2(dy)
    assert dx.swapaxes(0, 1).flags.c_contiguous
    np.testing.assert_allclose(dx, dx2, rtol=1e-12, atol=1e-14)
    for p, q in zip(attn.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12, atol=1e-14)
