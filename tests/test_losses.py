"""Tests of fastrnn.losses: values and gradients against PyTorch's functional losses and
central finite differences (float64), masks and ignore_index, numerical stability,
empty selections and bad input.

Tests taking the ``torch`` fixture (tests/conftest.py) are skipped without PyTorch, unless
FASTRNN_REQUIRE_TORCH=1, when a missing torch fails them.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastrnn import losses
from fastrnn.losses import (BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, bce_with_logits,
                            get_loss, log_softmax, mse, softmax, softmax_cross_entropy)
from _tools import central_differences

TIGHT = dict(rtol=1e-12, atol=1e-12)
# shapes of the predictions: (..., C); masks cover the leading axes
SHAPES = [(7, 5), (3, 4, 6), (2, 3, 2, 4)]
SHAPE_IDS = ["2d", "3d", "4d"]


def ce_case(shape, seed=0, ignore=False, masked=False):
    rng = np.random.default_rng(seed)
    C = shape[-1]
    logits = rng.standard_normal(shape) * 2
    targets = rng.integers(0, C, shape[:-1])
    mask = None
    if ignore:
        targets[rng.random(targets.shape) < 0.3] = -100
    if masked:
        mask = rng.random(targets.shape) < 0.7
    return logits, targets, mask


def torch_ce(torch, logits, targets, mask, ignore_index=-100):
    """PyTorch's mean cross-entropy with a mask expressed as ignore_index."""
    t = targets.copy()
    if mask is not None:
        t[~mask] = ignore_index
    C = logits.shape[-1]
    z = torch.tensor(logits.reshape(-1, C), requires_grad=True)
    loss = torch.nn.functional.cross_entropy(z, torch.tensor(t.reshape(-1)),
                                             ignore_index=ignore_index)
    loss.backward()
    return loss.item(), z.grad.numpy().reshape(logits.shape)


def torch_elementwise(torch, name, pred, target, mask):
    """PyTorch's mean mse / bce-with-logits over the entries the (leading-axes) mask keeps."""
    p = torch.tensor(pred, requires_grad=True)
    t = torch.tensor(target)
    fn = (torch.nn.functional.mse_loss if name == "mse"
          else torch.nn.functional.binary_cross_entropy_with_logits)
    if mask is None:
        loss = fn(p, t)
    else:
        m = torch.tensor(mask)
        loss = fn(p[m], t[m])
    loss.backward()
    return loss.item(), p.grad.numpy()


# ------------------------------------------------------------------- cross-entropy parity


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all", "ignore"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_cross_entropy_matches_torch(torch, shape, ignore, masked):
    logits, targets, mask = ce_case(shape, seed=len(shape), ignore=ignore, masked=masked)
    loss, grad = softmax_cross_entropy(logits, targets, mask)
    t_loss, t_grad = torch_ce(torch, logits, targets, mask)
    assert isinstance(loss, float)
    assert grad.shape == logits.shape and grad.dtype == np.float64
    assert_allclose(loss, t_loss, **TIGHT)
    assert_allclose(grad, t_grad, **TIGHT)


def test_cross_entropy_custom_ignore_index_matches_torch(torch):
    logits, targets, _ = ce_case((9, 4), seed=3)
    targets[[1, 4, 5]] = 2
    loss, grad = softmax_cross_entropy(logits, targets, ignore_index=2)
    t_loss, t_grad = torch_ce(torch, logits, targets, None, ignore_index=2)
    assert_allclose(loss, t_loss, **TIGHT)
    assert_allclose(grad, t_grad, **TIGHT)
    # the loss object carries the same ignore_index
    loss2, grad2 = CrossEntropyLoss(ignore_index=2)(logits, targets)
    assert loss2 == loss
    np.testing.assert_array_equal(grad2, grad)


def test_cross_entropy_float32_matches_torch(torch):
    logits, targets, mask = ce_case((4, 5, 6), seed=11, masked=True)
    logits = logits.astype(np.float32)
    loss, grad = softmax_cross_entropy(logits, targets, mask)
    t_loss, t_grad = torch_ce(torch, logits, targets, mask)
    assert grad.dtype == np.float32
    assert_allclose(loss, t_loss, rtol=1e-6)
    assert_allclose(grad, t_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_cross_entropy_finite_differences(masked):
    logits, targets, mask = ce_case((3, 4, 5), seed=5, ignore=True, masked=masked)
    _, grad = softmax_cross_entropy(logits, targets, mask)
    numeric = central_differences(lambda: softmax_cross_entropy(logits, targets, mask)[0],
                                  logits)
    assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_cross_entropy_is_mean_over_counted_entries():
    logits, targets, _ = ce_case((10, 6), seed=8)
    mask = np.zeros(10, bool)
    mask[[0, 3, 7]] = True
    targets[5] = -100
    logp = log_softmax(logits)
    expected = -np.mean([logp[i, targets[i]] for i in (0, 3, 7)])
    loss, grad = softmax_cross_entropy(logits, targets, mask)
    assert_allclose(loss, expected, **TIGHT)
    assert not np.any(grad[~mask])
    # each counted row's gradient is (softmax - onehot) / 3 and sums to 0
    p = softmax(logits)
    for i in (0, 3, 7):
        row = p[i].copy()
        row[targets[i]] -= 1
        assert_allclose(grad[i], row / 3, **TIGHT)
    # a mask of 0/1 integers means the same as the boolean one
    loss_int, grad_int = softmax_cross_entropy(logits, targets, mask.astype(np.int64))
    assert loss_int == loss
    np.testing.assert_array_equal(grad_int, grad)


def test_cross_entropy_targets_out_of_range_where_masked_are_allowed():
    logits, targets, _ = ce_case((6, 3), seed=9)
    mask = np.ones(6, bool)
    mask[[2, 4]] = False
    reference = softmax_cross_entropy(logits, targets, mask)
    targets[2], targets[4] = -1, 99          # padding values no one looks at
    loss, grad = softmax_cross_entropy(logits, targets, mask)
    assert loss == reference[0]
    np.testing.assert_array_equal(grad, reference[1])


# ------------------------------------------------------------ elementwise losses parity


def elementwise_case(name, shape, seed, mask_ndim):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal(shape) * 2
    target = (rng.random(shape) if name == "bce_with_logits"
              else rng.standard_normal(shape))
    mask = None
    if mask_ndim:
        mask = rng.random(shape[:mask_ndim]) < 0.6
        mask.reshape(-1)[0] = True
    return pred, target, mask


FUNCS = {"mse": mse, "bce_with_logits": bce_with_logits}


@pytest.mark.parametrize("mask_ndim", [0, 1, 2, -1], ids=["nomask", "mask1", "mask2", "full"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_elementwise_losses_match_torch(torch, name, shape, mask_ndim):
    mask_ndim = len(shape) if mask_ndim == -1 else mask_ndim
    pred, target, mask = elementwise_case(name, shape, len(shape) + mask_ndim, mask_ndim)
    loss, grad = FUNCS[name](pred, target, mask)
    t_loss, t_grad = torch_elementwise(torch, name, pred, target, mask)
    assert isinstance(loss, float)
    assert grad.shape == pred.shape and grad.dtype == np.float64
    assert_allclose(loss, t_loss, **TIGHT)
    assert_allclose(grad, t_grad, **TIGHT)


@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_elementwise_losses_float32_match_torch(torch, name):
    pred, target, mask = elementwise_case(name, (5, 4, 3), 2, 2)
    pred, target = pred.astype(np.float32), target.astype(np.float32)
    loss, grad = FUNCS[name](pred, target, mask)
    t_loss, t_grad = torch_elementwise(torch, name, pred, target, mask)
    assert grad.dtype == np.float32
    assert_allclose(loss, t_loss, rtol=1e-6)
    assert_allclose(grad, t_grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("mask_ndim", [0, 1, 2], ids=["nomask", "mask1", "mask2"])
@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_elementwise_losses_finite_differences(name, mask_ndim):
    pred, target, mask = elementwise_case(name, (3, 4, 2), 7, mask_ndim)
    _, grad = FUNCS[name](pred, target, mask)
    numeric = central_differences(lambda: FUNCS[name](pred, target, mask)[0], pred)
    assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_elementwise_mask_of_leading_axes_counts_whole_rows(name):
    pred, target, _ = elementwise_case(name, (4, 5, 3), 1, 0)
    mask = np.zeros((4, 5), bool)
    mask[0, :2] = mask[3, 4] = True                    # 3 rows of 3 entries
    loss, grad = FUNCS[name](pred, target, mask)
    ref_loss, ref_grad = FUNCS[name](pred[mask], target[mask])
    assert_allclose(loss, ref_loss, **TIGHT)
    assert_allclose(grad[mask], ref_grad, **TIGHT)
    assert not np.any(grad[~mask])


@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_elementwise_masked_out_non_finite_entries_do_not_leak(name):
    """Padding may hold anything, nan and inf included: it must count for nothing."""
    pred, target, _ = elementwise_case(name, (4, 6, 2), 4, 0)
    mask = np.ones((4, 6), bool)
    mask[1, 3:] = mask[2, 5] = False
    clean = FUNCS[name](pred, target, mask)
    pred[1, 3:], target[1, 4:] = np.inf, np.nan
    target[2, 5] = -np.inf
    with np.errstate(invalid="ignore"):              # inf - inf in the ignored entries
        loss, grad = FUNCS[name](pred, target, mask)
    assert loss == clean[0]
    np.testing.assert_array_equal(grad, clean[1])


def test_mse_values_by_hand():
    loss, grad = mse(np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.0, 1.0]))
    assert loss == pytest.approx((0 + 4 + 9) / 3)
    assert_allclose(grad, [0, 4 / 3, 2.0])


# ------------------------------------------------------------------ numerical stability


def test_cross_entropy_huge_logits_are_stable(torch):
    logits = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [-1e4, -1e4, 1e4],
                       [1e4, 1e4, -1e4]])
    targets = np.array([0, 1, 2, 1])
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # no overflow, no nan
        loss, grad = softmax_cross_entropy(logits, targets)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    # row 1 pays 2e4 nats, row 3 log(2); the others 0
    assert_allclose(loss, (2e4 + np.log(2)) / 4, rtol=1e-15)
    assert_allclose(grad[1], [0.25, -0.25, 0.0], atol=1e-300)
    assert_allclose(grad[3], [0.125, -0.125, 0.0], atol=1e-300)
    t_loss, t_grad = torch_ce(torch, logits, targets, None)
    assert_allclose(loss, t_loss, **TIGHT)
    assert_allclose(grad, t_grad, **TIGHT)


def test_cross_entropy_huge_logits_float32():
    logits = np.array([[3e38, -3e38], [-3e38, 3e38]], np.float32)
    with np.errstate(over="ignore"):                # max - (-max) overflows to inf in float32
        loss, grad = softmax_cross_entropy(logits, np.array([0, 1]))
    assert loss == 0.0 and np.all(np.isfinite(grad))
    logits = np.array([[1e4, -1e4]], np.float32)
    loss, grad = softmax_cross_entropy(logits, np.array([1]))
    assert loss == pytest.approx(2e4)
    assert_allclose(grad, [[1.0, -1.0]])


def test_bce_huge_logits_are_stable(torch):
    z = np.array([1e4, -1e4, 1e4, -1e4, 0.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, grad = bce_with_logits(z, y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert_allclose(loss, (0 + 0 + 1e4 + 1e4 + np.log(2)) / 5, rtol=1e-15)
    assert_allclose(grad, np.array([0, 0, 1, -1, 0]) / 5, atol=1e-300)
    t_loss, t_grad = torch_elementwise(torch, "bce_with_logits", z, y, None)
    assert_allclose(loss, t_loss, **TIGHT)
    assert_allclose(grad, t_grad, **TIGHT)


def test_softmax_and_log_softmax_are_stable():
    z = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p, logp = softmax(z), log_softmax(z)
    assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-300)
    assert_allclose(logp[0], [0, -1e4, -2e4])
    assert_allclose(logp[1], np.log([1 / 3] * 3), **TIGHT)
    assert_allclose(softmax(z, axis=0).sum(axis=0), 1.0, **TIGHT)


# ------------------------------------------------------------------- nothing to count


def test_cross_entropy_without_valid_entries_is_zero():
    logits, targets, _ = ce_case((3, 4, 5), seed=2)
    for kwargs in ({"mask": np.zeros((3, 4), bool)},
                   {"mask": None, "ignore_index": -100}):
        t = targets if kwargs.get("mask") is not None else np.full((3, 4), -100)
        loss, grad = softmax_cross_entropy(logits, t, **kwargs)
        assert loss == 0.0
        assert grad.shape == logits.shape and not np.any(grad)
    loss, grad = softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64))
    assert loss == 0.0 and grad.shape == (0, 3)


@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_elementwise_without_valid_entries_is_zero(name):
    pred, target, _ = elementwise_case(name, (3, 4, 2), 0, 0)
    for mask in (np.zeros(3, bool), np.zeros((3, 4), bool), np.zeros((3, 4, 2), bool)):
        loss, grad = FUNCS[name](pred, target, mask)
        assert loss == 0.0
        assert grad.shape == pred.shape and not np.any(grad)


# --------------------------------------------------------------------- objects, lookup


def test_loss_objects_and_get_loss():
    logits, targets, mask = ce_case((4, 3), seed=1, masked=True)
    assert get_loss("cross_entropy")(logits, targets, mask)[0] == \
        softmax_cross_entropy(logits, targets, mask)[0]
    pred = np.linspace(-1, 1, 6).reshape(3, 2)
    target = np.full((3, 2), 0.25)
    assert MSELoss()(pred, target)[0] == mse(pred, target)[0]
    assert BCEWithLogitsLoss()(pred, target)[0] == bce_with_logits(pred, target)[0]
    for name, cls in [("cross_entropy", CrossEntropyLoss), ("mse", MSELoss),
                      ("bce_with_logits", BCEWithLogitsLoss)]:
        obj = get_loss(name)
        assert type(obj) is cls and obj.name == name
        assert get_loss(obj) is obj
        assert repr(obj) == f"{cls.__name__}()"
    with pytest.raises(ValueError, match="loss must be one of"):
        get_loss("hinge")
    with pytest.raises(ValueError, match="loss must be one of"):
        get_loss(None)
    assert set(losses.__all__) >= {"softmax_cross_entropy", "mse", "bce_with_logits"}


def test_elementwise_target_is_cast_to_pred_dtype():
    pred = np.array([[0.5, 1.5]], np.float32)
    loss, grad = mse(pred, np.array([[0, 1]]))          # integer target
    assert grad.dtype == np.float32
    assert loss == pytest.approx(0.25)


# -------------------------------------------------------------------------- bad input


def test_cross_entropy_bad_input_names_the_argument():
    logits, targets, _ = ce_case((4, 3), seed=0)
    with pytest.raises(ValueError, match=r"targets must have shape \(4,\).*got \(3,\)"):
        softmax_cross_entropy(logits, targets[:3])
    with pytest.raises(ValueError, match=r"targets must have shape"):
        softmax_cross_entropy(logits, targets[:, None])
    with pytest.raises(TypeError, match=r"targets must hold integer class indices.*float64"):
        softmax_cross_entropy(logits, targets.astype(np.float64))
    with pytest.raises(TypeError, match="targets must hold integer"):
        softmax_cross_entropy(logits, targets.astype(bool))
    bad = targets.copy()
    bad[1] = 3
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        softmax_cross_entropy(logits, bad)
    bad[1] = -2
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        softmax_cross_entropy(logits, bad)
    with pytest.raises(TypeError, match="logits must be floating"):
        softmax_cross_entropy(logits.astype(np.int64), targets)
    with pytest.raises(ValueError, match="logits must have a class axis"):
        softmax_cross_entropy(np.float64(1.0), np.int64(0))
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\), got \(4, 3\)"):
        softmax_cross_entropy(logits, targets, np.ones((4, 3), bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        softmax_cross_entropy(logits, targets, np.array(["a"] * 4))


@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_elementwise_bad_input_names_the_argument(name):
    fn = FUNCS[name]
    arg = "pred" if name == "mse" else "logits"
    pred = np.zeros((3, 4))
    with pytest.raises(ValueError, match=rf"target must have the shape of {arg}, \(3, 4\), "
                                         rf"got \(4, 3\)"):
        fn(pred, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="target must be 2-D"):
        fn(pred, np.zeros(12))
    with pytest.raises(TypeError, match="target must hold real numbers"):
        fn(pred, np.zeros((3, 4), complex))
    with pytest.raises(TypeError, match=f"{arg} must be floating"):
        fn(pred.astype(np.int64), pred)
    with pytest.raises(ValueError, match=r"mask must have shape \(3,\).*got \(4,\)"):
        fn(pred, pred, np.ones(4, bool))
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 4\).*got \(3, 5\)"):
        fn(pred, pred, np.ones((3, 5), bool))


# -- weights: Keras's weighted mean, sum(w * loss) / count -----------------------------

WEIGHT_CASES = [((7, 5), 1), ((3, 4, 6), 1), ((3, 4, 6), 2)]
WEIGHT_IDS = ["per-sample", "per-sample-of-steps", "per-step"]


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape,wdim", WEIGHT_CASES, ids=WEIGHT_IDS)
def test_weighted_cross_entropy_is_keras_mean(shape, wdim, masked):
    logits, targets, mask = ce_case(shape, seed=3, ignore=True, masked=masked)
    w = np.random.default_rng(4).uniform(0, 3, shape[:wdim])
    loss, grad = softmax_cross_entropy(logits, targets, mask, weight=w)
    valid = targets != -100
    if mask is not None:
        valid &= mask
    wf = np.broadcast_to(w.reshape(w.shape + (1,) * (targets.ndim - wdim)), targets.shape)
    logp = log_softmax(logits)
    direct = -sum(wf[i] * logp[i + (targets[i],)] for i in zip(*np.nonzero(valid)))
    assert_allclose(loss, direct / valid.sum(), **TIGHT)
    g = central_differences(lambda: softmax_cross_entropy(logits, targets, mask,
                                                          weight=w)[0], logits)
    assert_allclose(grad, g, rtol=1e-6, atol=1e-9)


def test_weighted_cross_entropy_against_torch_class_weights(torch):
    """PyTorch's CrossEntropyLoss(weight=) divides by the sum of the weights of the
    targets; fastrnn (Keras) by their count: the two differ by that ratio, and its
    reduction='sum' over the count is fastrnn's loss exactly."""
    logits, targets, _ = ce_case((40, 5), seed=5)
    cw = np.array([0.5, 2.0, 1.0, 3.0, 0.25])
    loss, grad = softmax_cross_entropy(logits, targets, weight=cw[targets])
    z = torch.tensor(logits, requires_grad=True)
    t = torch.tensor(targets)
    mean = torch.nn.CrossEntropyLoss(weight=torch.tensor(cw))(z, t)
    assert_allclose(loss, mean.item() * cw[targets].sum() / len(targets), **TIGHT)
    total = torch.nn.CrossEntropyLoss(weight=torch.tensor(cw), reduction="sum")(z, t)
    (total / len(targets)).backward()
    assert_allclose(loss, total.item() / len(targets), **TIGHT)
    assert_allclose(grad, z.grad.numpy(), **TIGHT)
    assert not np.isclose(loss, mean.item())          # the definitions do differ here


@pytest.mark.parametrize("name", ["mse", "bce"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("wdim", [1, 2])
def test_weighted_elementwise_losses_are_keras_mean(name, masked, wdim):
    rng = np.random.default_rng(6)
    pred = rng.standard_normal((4, 5, 3))
    target = rng.standard_normal((4, 5, 3)) if name == "mse" else \
        (rng.random((4, 5, 3)) < 0.5).astype(float)
    mask = rng.random((4, 5)) < 0.7 if masked else None
    w = rng.uniform(0, 2, (4, 5)[:wdim])
    fn = mse if name == "mse" else bce_with_logits
    loss, grad = fn(pred, target, mask, weight=w)
    each = (pred - target) ** 2 if name == "mse" else \
        np.maximum(pred, 0) - pred * target + np.log1p(np.exp(-np.abs(pred)))
    keep = np.ones((4, 5), bool) if mask is None else mask
    wf = np.broadcast_to(w.reshape(w.shape + (1,) * (3 - wdim)), (4, 5, 3))
    assert_allclose(loss, (wf * each)[keep].sum() / (keep.sum() * 3), **TIGHT)
    g = central_differences(lambda: fn(pred, target, mask, weight=w)[0], pred)
    assert_allclose(grad, g, rtol=1e-6, atol=1e-9)


def test_weight_keeps_the_dtype_and_is_checked():
    logits = np.zeros((3, 4), np.float32)
    _, grad = softmax_cross_entropy(logits, np.array([0, 1, 2]), weight=np.ones(3))
    assert grad.dtype == np.float32
    _, grad = mse(logits, logits, weight=np.ones(3))
    assert grad.dtype == np.float32
    with pytest.raises(ValueError, match="weight must have the leading axes"):
        softmax_cross_entropy(logits, np.array([0, 1, 2]), weight=np.ones(4))
    with pytest.raises(TypeError, match="weight must hold real numbers"):
        mse(logits, logits, weight=np.array(["a", "b", "c"]))


def test_weight_zero_drops_an_entry_from_the_sum_not_the_count():
    logits, targets, _ = ce_case((6, 3), seed=7)
    w = np.array([1.0, 1, 1, 0, 1, 1])
    loss, _ = softmax_cross_entropy(logits, targets, weight=w)
    keep = np.array([True, True, True, False, True, True])
    assert_allclose(loss, softmax_cross_entropy(logits, targets, keep)[0] * 5 / 6, **TIGHT)


def test_loss_entries_and_classes():
    y = np.array([[0, 2], [-100, 1]])
    ce = CrossEntropyLoss()
    assert ce.entry_shape(y) == (2, 2)
    assert ce.entry_classes(y).tolist() == [[0, 2], [-1, 1]]
    assert MSELoss().entry_shape(np.zeros((2, 5, 3))) == (2, 5)
    with pytest.raises(ValueError, match="class_weight needs a classification loss"):
        MSELoss().entry_classes(np.zeros((2, 1)))
    b = BCEWithLogitsLoss()
    assert b.entry_classes(np.array([[0.0], [1.0]])).tolist() == [0, 1]
    with pytest.raises(ValueError, match="one output a row"):
        b.entry_classes(np.zeros((2, 3)))
    custom = losses.CustomLoss(lambda o, t: (0.0, o * 0))
    with pytest.raises(ValueError, match="need a built-in loss"):
        custom.entry_shape(y)
    with pytest.raises(ValueError, match="need a built-in loss"):
        custom(np.zeros((2, 1)), np.zeros((2, 1)), weight=np.ones(2))
