"""Tests of the dense building blocks: ``Linear`` (the readout) and ``Embedding`` (token
vectors), against PyTorch's nn.Linear / nn.Embedding with the same weights, by finite
differences, and for init, memory layouts and bad input.

Tests taking the ``torch`` fixture (tests/conftest.py) are skipped without PyTorch, unless
FASTRNN_REQUIRE_TORCH=1, when a missing torch fails them.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from _tools import PRODUCT_TOL as TOL
from _tools import central_differences
from conftest import torch_dtype

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]


def linear_pair(torch, in_features, out_features, dtype, bias=True, seed=0):
    torch.manual_seed(seed)
    tm = torch.nn.Linear(in_features, out_features, bias=bias).to(torch_dtype(torch, dtype))
    fm = fastrnn.Linear(in_features, out_features, bias=bias, dtype=dtype)
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return fm, tm


def embedding_pair(torch, num, dim, dtype, padding_idx=None, seed=0):
    torch.manual_seed(seed)
    tm = torch.nn.Embedding(num, dim, padding_idx=padding_idx).to(torch_dtype(torch, dtype))
    fm = fastrnn.Embedding(num, dim, padding_idx=padding_idx, dtype=dtype)
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return fm, tm


# ---------------------------------------------------------------------------- Linear


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", [(5,), (4, 5), (3, 4, 5), (2, 1, 3, 5)],
                         ids=["1d", "2d", "3d", "4d"])
def test_linear_matches_torch(torch, shape, bias, dtype):
    fm, tm = linear_pair(torch, 5, 3, dtype, bias=bias, seed=len(shape))
    assert [n for n, _ in fm.named_parameters()] == list(tm.state_dict())
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape[:-1] + (3,)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    yt.backward(torch.tensor(dy))

    y_call = fm(x)
    y, backward = fm.forward_train(x)
    assert y.shape == shape[:-1] + (3,) and y.dtype == dtype
    np.testing.assert_array_equal(y, y_call)
    assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    dx = backward(dy)
    assert dx.shape == x.shape and dx.dtype == dtype
    assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
    assert_allclose(fm.weight.grad, tm.weight.grad.numpy(), **TOL[dtype])
    if bias:
        assert_allclose(fm.bias.grad, tm.bias.grad.numpy(), **TOL[dtype])
    else:
        assert fm.bias is None


def test_linear_backward_accumulates_and_zero_grad_resets():
    lin = fastrnn.Linear(4, 2, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    _, backward = lin.forward_train(x)
    backward(dy)
    once = {n: p.grad.copy() for n, p in lin.named_parameters()}
    grad_objects = [p.grad for p in lin.parameters()]
    _, backward = lin.forward_train(x)
    backward(dy)
    for n, p in lin.named_parameters():
        assert_allclose(p.grad, 2 * once[n], rtol=1e-14)
    lin.zero_grad()
    assert all(g is p.grad and not np.any(g) for g, p in zip(grad_objects, lin.parameters()))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear_finite_differences(bias):
    lin = fastrnn.Linear(3, 4, bias=bias, dtype=np.float64, seed=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 3))
    R = rng.standard_normal((2, 5, 4))

    def loss():
        return float(np.sum(lin(x) * R))

    lin.zero_grad()
    _, backward = lin.forward_train(x)
    dx = backward(R)
    for a, analytic in [(x, dx)] + [(p.data, p.grad) for p in lin.parameters()]:
        assert_allclose(analytic, central_differences(loss, a), rtol=1e-7, atol=1e-9)


def test_linear_init_bounds_and_seed():
    for fan_in in (1, 7, 300):
        lin = fastrnn.Linear(fan_in, 50, seed=0)
        bound = 1 / np.sqrt(fan_in)
        for p in lin.parameters():
            assert p.dtype == np.float32
            assert np.all(np.abs(p.data) <= bound)
        w = lin.weight.data
        # uniform over the whole interval, not a narrow part of it
        assert w.max() > 0.9 * bound and w.min() < -0.9 * bound
        assert abs(w.mean()) < 0.1 * bound
    a, b, c = (fastrnn.Linear(6, 3, seed=s) for s in (5, 5, 6))
    for n, p in a.named_parameters():
        np.testing.assert_array_equal(p.data, b.state_dict()[n])
        assert not np.array_equal(p.data, c.state_dict()[n])
    assert [n for n, _ in fastrnn.Linear(2, 2, bias=False).named_parameters()] == ["weight"]
    lin = fastrnn.Linear(3, 2, dtype=np.float64)
    assert lin.weight.dtype == np.float64 and lin.bias.dtype == np.float64
    assert lin.weight.shape == (2, 3) and lin.bias.shape == (2,)
    assert not np.any(lin.weight.grad) and lin.weight.grad.shape == (2, 3)
    assert repr(lin) == "Linear(3, 2, dtype=float64)"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_linear_non_contiguous_and_other_dtype_inputs(dtype):
    lin = fastrnn.Linear(4, 3, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    base = rng.standard_normal((6, 8, 9))
    x = base[::2, 1::2, :4]                             # strided view
    xf = np.asfortranarray(base[:, :5, :4])
    xt = base[:, 0, :4].T.copy().T                      # transposed buffer
    for a in (x, xf, xt):
        assert not a.flags.c_contiguous
        ref = lin(np.ascontiguousarray(a, dtype=dtype))
        np.testing.assert_array_equal(lin(a.astype(dtype)), ref)
        y, backward = lin.forward_train(a)              # float64 input, cast once
        assert_allclose(y, ref, **TOL[dtype])
        dx = backward(np.asfortranarray(np.ones_like(ref)))
        assert dx.shape == a.shape and dx.flags.c_contiguous
    before = base.copy()
    lin(x)
    np.testing.assert_array_equal(base, before)         # the input is never written
    # integer and boolean inputs are cast
    assert_allclose(lin(np.ones((2, 4), np.int64)), lin(np.ones((2, 4), dtype)))
    assert_allclose(lin(np.ones((2, 4), bool)), lin(np.ones((2, 4), dtype)))


def test_linear_bad_input_names_the_argument():
    lin = fastrnn.Linear(4, 3, seed=0)
    with pytest.raises(ValueError, match=r"x.shape\[-1\] must equal in_features=4, got 5"):
        lin(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="x must be at least 1-D"):
        lin(np.float32(1.0))
    with pytest.raises(TypeError, match="x must hold real numbers"):
        lin(np.zeros((2, 4), complex))
    with pytest.raises(TypeError, match="x must hold real numbers"):
        lin(np.array([["a"] * 4]))
    with pytest.raises(TypeError, match="x must be an array"):
        lin(None)
    with pytest.raises(ValueError, match="x must be a rectangular array"):
        lin([[1, 2, 3, 4], [1, 2]])
    _, backward = lin.forward_train(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"dy must have the shape of y, \(2, 3\), got \(3, 2\)"):
        backward(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="dy must be 2-D"):
        backward(np.zeros(6))
    assert not np.any(lin.weight.grad)                  # nothing was accumulated
    for bad, exc, msg in [((0, 3), ValueError, "in_features must be >= 1"),
                          ((4, 0), ValueError, "out_features must be >= 1"),
                          ((4.0, 3), TypeError, "in_features must be an int"),
                          ((True, 3), TypeError, "in_features must be an int")]:
        with pytest.raises(exc, match=msg):
            fastrnn.Linear(*bad)
    with pytest.raises(TypeError, match="dtype must be numpy.float32 or numpy.float64"):
        fastrnn.Linear(4, 3, dtype=np.int32)
    with pytest.raises(TypeError, match="seed must be an int or None"):
        fastrnn.Linear(4, 3, seed=1.5)


# ------------------------------------------------------------------------- Embedding


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1], ids=["nopad", "pad0", "pad3", "pad-1"])
def test_embedding_matches_torch(torch, padding_idx, dtype):
    fm, tm = embedding_pair(torch, 7, 4, dtype, padding_idx=padding_idx, seed=2)
    assert fm.padding_idx == tm.padding_idx
    np.testing.assert_array_equal(fm.weight.data, tm.weight.detach().numpy())
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 7, (5, 6))
    tokens[0, :3] = [3, 3, 6]                          # repeats accumulate; 6 is index -1
    tokens[1, :2] = 0
    dy = rng.standard_normal((5, 6, 4)).astype(dtype)
    yt = tm(torch.tensor(tokens))
    yt.backward(torch.tensor(dy))
    y, backward = fm.forward_train(tokens)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(fm(tokens), y)
    assert backward(dy) is None
    assert_allclose(fm.weight.grad, tm.weight.grad.numpy(), **TOL[dtype])
    if padding_idx is not None:
        assert not np.any(fm.weight.grad[fm.padding_idx])
        assert not np.any(fm.weight.data[fm.padding_idx])


def test_embedding_shapes_and_copies():
    emb = fastrnn.Embedding(10, 3, seed=0)
    assert emb(np.int64(4)).shape == (3,)
    assert emb(np.arange(4)).shape == (4, 3)
    assert emb(np.zeros((2, 3, 4), np.uint8)).shape == (2, 3, 4, 3)
    assert emb(np.zeros((2, 0), np.int64)).shape == (2, 0, 3)
    out = emb(np.array([1, 1]))
    out[:] = 99                                        # the result is a copy
    assert not np.any(emb.weight.data == 99)
    tokens = (np.arange(20).reshape(4, 5) % 10)[:, ::2]   # non-contiguous tokens
    assert not tokens.flags.c_contiguous
    np.testing.assert_array_equal(emb(tokens), emb(np.ascontiguousarray(tokens)))
    _, backward = emb.forward_train(tokens)
    backward(np.asfortranarray(np.ones(tokens.shape + (3,))))
    assert_allclose(emb.weight.grad.sum(axis=1), 3 * np.bincount(tokens.ravel(), minlength=10))


def test_embedding_init():
    emb = fastrnn.Embedding(400, 50, seed=0)
    w = emb.weight.data
    assert w.dtype == np.float32 and w.shape == (400, 50)
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02    # N(0, 1), as PyTorch
    emb = fastrnn.Embedding(5, 3, padding_idx=-2, dtype=np.float64, seed=1)
    assert emb.padding_idx == 3 and not np.any(emb.weight.data[3])
    assert np.all(emb.weight.data[[0, 1, 2, 4]] != 0)
    np.testing.assert_array_equal(fastrnn.Embedding(5, 3, seed=7).weight.data,
                                  fastrnn.Embedding(5, 3, seed=7).weight.data)
    assert repr(emb) == "Embedding(5, 3, padding_idx=3, dtype=float64)"


def test_embedding_bad_input_names_the_argument():
    emb = fastrnn.Embedding(6, 2, seed=0)
    with pytest.raises(TypeError, match="tokens must be integers, got dtype float64"):
        emb(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="tokens must be integers"):
        emb(np.array([True]))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 6\), got values in \[0, 6\]"):
        emb(np.array([0, 6]))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 6\)"):
        emb.forward_train(np.array([[-1, 2]]))
    _, backward = emb.forward_train(np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"dy must have the shape of y, \(1, 2, 2\)"):
        backward(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="dy must be 3-D"):
        backward(np.zeros((2, 2)))
    assert not np.any(emb.weight.grad)
    with pytest.raises(ValueError, match=r"padding_idx must be in \[-6, 6\), got 6"):
        fastrnn.Embedding(6, 2, padding_idx=6)
    with pytest.raises(ValueError, match="padding_idx must be in"):
        fastrnn.Embedding(6, 2, padding_idx=-7)
    with pytest.raises(ValueError, match="num_embeddings must be >= 1"):
        fastrnn.Embedding(0, 2)
    with pytest.raises(ValueError, match="embedding_dim must be >= 1"):
        fastrnn.Embedding(3, 0)
    with pytest.raises(TypeError, match="dtype must be numpy.float32 or numpy.float64"):
        fastrnn.Embedding(3, 2, dtype=np.float16)


def test_state_dict_round_trip_and_mismatch():
    lin = fastrnn.Linear(3, 2, seed=0)
    other = fastrnn.Linear(3, 2, seed=1)
    other.load_state_dict(lin.state_dict())
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(other(x), lin(x))
    with pytest.raises(ValueError, match=r"state_dict\['weight'\] must have shape \(2, 3\)"):
        other.load_state_dict({"weight": np.zeros((3, 2)), "bias": np.zeros(2)})
    with pytest.raises(ValueError, match="missing keys"):
        fastrnn.Embedding(3, 2).load_state_dict({})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_gradient_is_numpy_add_at(dtype, padding_idx):
    """The scatter of the embedding's gradient adds the rows in numpy.add.at's order: the
    same bits, repeated tokens included, nothing into the padding row."""
    emb = fastrnn.Embedding(5, 3, padding_idx=padding_idx, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5, (7, 9))
    y, backward = emb.forward_train(tokens.T)          # a strided view, as a model passes
    dy = rng.standard_normal(y.shape).astype(dtype)
    emb.weight.grad[...] = 0
    backward(dy)
    expected = np.zeros_like(emb.weight.data)
    flat, rows = tokens.T.reshape(-1), dy.reshape(-1, 3)
    keep = flat != (-1 if padding_idx is None else padding_idx)
    np.add.at(expected, flat[keep], rows[keep])
    np.testing.assert_array_equal(emb.weight.grad, expected)


def test_scatter_refuses_an_index_out_of_range():
    from fastrnn import _blas
    out = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="outside"):
        _blas.scatter_add_rows(np.array([0, 3], np.intp), np.ones((2, 2), np.float32), out)
    with pytest.raises(ValueError, match="rows must be"):
        _blas.scatter_add_rows(np.array([0], np.intp), np.ones((2, 2), np.float32), out)
