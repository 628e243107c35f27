"""Tests of fastrnn.optim: parity with torch.optim step by step, clipping, schedules,
state dicts, validation.

Tests taking the ``torch`` fixture (tests/conftest.py) are skipped without PyTorch, unless
FASTRNN_REQUIRE_TORCH=1, when a missing torch fails them.
"""

import doctest
import importlib
import itertools
import json
import math
import pkgutil

import numpy as np
import pytest

from fastrnn import optim
from fastrnn.module import Parameter
from fastrnn.optim import (SGD, Adagrad, Adam, AdamW, CosineAnnealingLR, ExponentialLR,
                           LambdaLR, RMSprop, StepLR, clip_grad_norm, clip_grad_value)
from _tools import OPTIM_TOL as TOL

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 5
DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]
CLASSES = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "Adagrad": Adagrad}


def grid(**axes):
    """Every combination of the given hyper-parameter values, as kwargs dicts."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def config_id(kwargs):
    return ",".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults"


SGD_CONFIGS = [c for c in grid(lr=[0.1], momentum=[0.0, 0.9], dampening=[0.0, 0.3],
                               nesterov=[False, True], weight_decay=[0.0, 0.05],
                               maximize=[False, True])
               if not c["nesterov"] or (c["momentum"] > 0 and c["dampening"] == 0)]
ADAM_CONFIGS = grid(lr=[0.01], betas=[(0.9, 0.999), (0.3, 0.6)], weight_decay=[0.0, 0.1],
                    amsgrad=[False, True], maximize=[False, True])
RMSPROP_CONFIGS = grid(lr=[0.01], alpha=[0.99, 0.3], momentum=[0.0, 0.5],
                       centered=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True])
ADAGRAD_CONFIGS = grid(lr=[0.05], lr_decay=[0.0, 0.1], weight_decay=[0.0, 0.1],
                       initial_accumulator_value=[0.0, 0.2], maximize=[False, True])
CONFIGS = ([("SGD", c) for c in SGD_CONFIGS] + [("Adam", c) for c in ADAM_CONFIGS]
           + [("AdamW", c) for c in ADAM_CONFIGS] + [("RMSprop", c) for c in RMSPROP_CONFIGS]
           + [("Adagrad", c) for c in ADAGRAD_CONFIGS])

# two or three groups with their own lr and some other overrides
GROUP_CONFIGS = {
    "SGD": ({"lr": 0.1, "momentum": 0.5},
            [{"params": [0, 1], "lr": 0.03, "momentum": 0.9, "nesterov": True},
             {"params": [2], "weight_decay": 0.1, "dampening": 0.2}]),
    "Adam": ({"lr": 0.01}, [{"params": [0], "lr": 0.1, "amsgrad": True},
                            {"params": [1, 2], "betas": (0.5, 0.9), "weight_decay": 0.2}]),
    "AdamW": ({"lr": 0.01}, [{"params": [2, 0], "lr": 0.003},
                             {"params": [1], "weight_decay": 0.5, "maximize": True}]),
    "RMSprop": ({"lr": 0.01, "momentum": 0.3},
                [{"params": [0], "lr": 0.002, "centered": True},
                 {"params": [1], "alpha": 0.5}, {"params": [2], "momentum": 0.0}]),
    "Adagrad": ({"lr": 0.05}, [{"params": [1], "lr": 0.5, "lr_decay": 0.2},
                               {"params": [0, 2], "initial_accumulator_value": 0.1}]),
}


def make_data(dtype, seed, shapes=SHAPES, steps=STEPS):
    """Initial parameters and ``steps`` rounds of gradients."""
    rng = np.random.default_rng(seed)
    init = [rng.uniform(-1, 1, s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return init, grads


def build(make, params, groups):
    """``make`` over plain params, or over groups whose "params" are indices into params."""
    if groups is None:
        return make(list(params))
    return make([{**g, "params": [params[i] for i in g["params"]]} for g in groups])


def compare_with_torch(torch, name, kwargs, init, grads, groups=None):
    ours = [Parameter(a.copy()) for a in init]
    theirs = [torch.tensor(a.copy()) for a in init]
    opt = build(lambda ps: CLASSES[name](ps, **kwargs), ours, groups)
    ref = build(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kwargs), theirs,
                groups)
    for step_grads in grads:
        for p, t, g in zip(ours, theirs, step_grads):
            p.grad[...] = g
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        ref.step()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            np.testing.assert_allclose(p.data, t.numpy(), **TOL[p.data.dtype.type],
                                       err_msg=f"parameter {i}")
    # the state has torch's names and values; it is keyed by position over the groups
    order = range(len(ours)) if groups is None else [i for g in groups for i in g["params"]]
    for position, i in enumerate(order):
        p, t = ours[i], theirs[i]
        expected = {k: v for k, v in ref.state[t].items() if v is not None}
        assert set(opt.state[position]) == set(expected), (i, set(opt.state[i]), set(expected))
        for key, value in opt.state[position].items():
            if key == "step":
                assert value == int(expected[key].item())
            else:   # sums of many terms: the error scales with the largest entry
                want = expected[key].numpy()
                rtol = TOL[p.data.dtype.type]["rtol"]
                np.testing.assert_allclose(value, want, rtol=rtol,
                                           atol=rtol * np.abs(want).max(initial=0.0),
                                           err_msg=f"{key} of {i}")
    return opt


# ----------------------------------------------------------------------------- torch parity


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name, kwargs", CONFIGS,
                         ids=[f"{n}-{config_id(c)}" for n, c in CONFIGS])
def test_matches_torch(torch, name, kwargs, dtype):
    init, grads = make_data(dtype, seed=len(config_id(kwargs)))
    compare_with_torch(torch, name, kwargs, init, grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(CLASSES))
def test_defaults_match_torch(torch, name, dtype):
    init, grads = make_data(dtype, seed=1)
    compare_with_torch(torch, name, {}, init, grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(GROUP_CONFIGS))
def test_param_groups_match_torch(torch, name, dtype):
    kwargs, groups = GROUP_CONFIGS[name]
    init, grads = make_data(dtype, seed=2)
    opt = compare_with_torch(torch, name, kwargs, init, grads, groups)
    assert [g["lr"] for g in opt.param_groups] == [g.get("lr", kwargs["lr"]) for g in groups]


@pytest.mark.parametrize("name", list(CLASSES))
def test_mixed_dtypes_and_empty_parameter_match_torch(torch, name):
    shapes = [(4, 3), (0, 2), (6,)]
    init, grads = make_data(np.float64, seed=3, shapes=shapes)
    init[2], grads = init[2].astype(np.float32), [[g[0], g[1], g[2].astype(np.float32)]
                                                 for g in grads]
    compare_with_torch(torch, name, {"lr": 0.02}, init, grads)


def test_schedule_changes_lr_between_steps_like_torch(torch):
    init, grads = make_data(np.float64, seed=4, steps=12)
    ours = [Parameter(a.copy()) for a in init]
    theirs = [torch.tensor(a.copy()) for a in init]
    opt, ref = Adam(ours, lr=0.05), torch.optim.Adam(theirs, lr=0.05, foreach=False)
    sched = CosineAnnealingLR(opt, T_max=8, eta_min=0.001)
    ref_sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=8, eta_min=0.001)
    for step_grads in grads:
        for p, t, g in zip(ours, theirs, step_grads):
            p.grad[...] = g
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        ref.step()
        sched.step()
        ref_sched.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.numpy(), **TOL[np.float64])


# ----------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, math.inf], ids=["l2", "l1", "l3.5", "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clips", "no-clip"])
def test_clip_grad_norm_matches_torch(torch, dtype, norm_type, max_norm):
    _, (grads,) = make_data(dtype, seed=5, steps=1)
    params = [Parameter(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad[...] = g
    tensors = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype) for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g.copy())
    total = clip_grad_norm(params, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type,
                                              foreach=False)
    assert isinstance(total, float)
    rtol = 1e-12 if dtype is np.float64 else 1e-6
    np.testing.assert_allclose(total, expected.item(), rtol=rtol)
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=rtol, atol=rtol * 1e-2)
    if max_norm > total:
        for p, g in zip(params, grads):
            np.testing.assert_array_equal(p.grad, g)   # untouched below the threshold


def test_clip_grad_norm_single_parameter_and_nonfinite(torch):
    p = Parameter(np.zeros(3))
    p.grad[...] = [3.0, 4.0, 0.0]
    assert clip_grad_norm(p, 1.0) == 5.0                # a Parameter alone is accepted
    np.testing.assert_allclose(p.grad, np.array([3.0, 4.0, 0.0]) / (5.0 + 1e-6))
    assert clip_grad_norm([], 1.0) == 0.0
    p.grad[...] = [np.nan, 1.0, 2.0]
    before = p.grad.copy()
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm([p], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(p.grad, before)
    t = torch.zeros(3, dtype=torch.float64)
    t.grad = torch.from_numpy(before.copy())
    expected = torch.nn.utils.clip_grad_norm_([t], 1.0)
    assert math.isnan(clip_grad_norm([p], 1.0)) and math.isnan(expected.item())
    np.testing.assert_array_equal(p.grad, t.grad.numpy())   # nan everywhere, as torch


def test_clip_grad_value_matches_torch(torch):
    _, (grads,) = make_data(np.float32, seed=6, steps=1)
    params = [Parameter(np.zeros_like(g)) for g in grads]
    tensors = [torch.zeros(g.shape) for g in grads]
    for p, t, g in zip(params, tensors, grads):
        p.grad[...] = g
        t.grad = torch.from_numpy(g.copy())
    grad_ids = [id(p.grad) for p in params]
    assert clip_grad_value(params, 0.7) is None
    torch.nn.utils.clip_grad_value_(tensors, 0.7)
    for p, t in zip(params, tensors):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())
    assert [id(p.grad) for p in params] == grad_ids


# ----------------------------------------------------------------------------- schedules


SCHEDULES = {
    "StepLR": (StepLR, dict(step_size=4, gamma=0.5)),
    "StepLR-default-gamma": (StepLR, dict(step_size=3)),
    "ExponentialLR": (ExponentialLR, dict(gamma=0.9)),
    "CosineAnnealingLR": (CosineAnnealingLR, dict(T_max=7, eta_min=0.001)),
    "CosineAnnealingLR-default": (CosineAnnealingLR, dict(T_max=10)),
    "LambdaLR-warmup": (LambdaLR, dict(lr_lambda=lambda t: min(1.0, (t + 1) / 6))),
    "LambdaLR-per-group": (LambdaLR, dict(lr_lambda=[lambda t: 0.95 ** t,
                                                     lambda t: 1 / (1 + t)])),
}


def two_group_sgd(params, lr=0.1):
    return SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=lr)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_torch(torch, name):
    cls, kwargs = SCHEDULES[name]
    opt = two_group_sgd([Parameter(np.zeros(2)), Parameter(np.zeros(3))])
    tensors = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    ref = torch.optim.SGD([{"params": tensors[:1]}, {"params": tensors[1:], "lr": 0.02}],
                          lr=0.1)
    sched = cls(opt, **kwargs)
    ref_sched = getattr(torch.optim.lr_scheduler, cls.__name__)(ref, **kwargs)
    for _ in range(30):
        assert sched.get_last_lr() == ref_sched.get_last_lr()   # the same floats, exactly
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups]
        opt.step()
        ref.step()
        sched.step()
        ref_sched.step()
    assert sched.last_epoch == ref_sched.last_epoch == 30


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_state_dict_resumes(name):
    cls, kwargs = SCHEDULES[name]
    opt = two_group_sgd([Parameter(np.zeros(2)), Parameter(np.zeros(3))])
    sched = cls(opt, **kwargs)
    for _ in range(9):
        opt.step()
        sched.step()
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    json.dumps(saved)                                   # plain numbers and lists
    opt2 = two_group_sgd([Parameter(np.zeros(2)), Parameter(np.zeros(3))], lr=0.5)
    sched2 = cls(opt2, **kwargs)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(json.loads(json.dumps(saved)))
    for _ in range(15):
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_loads_torch_state_dict(torch, name):
    cls, kwargs = SCHEDULES[name]
    sched = cls(two_group_sgd([Parameter(np.zeros(2)), Parameter(np.zeros(3))]), **kwargs)
    tensors = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    ref = torch.optim.SGD([{"params": tensors[:1]}, {"params": tensors[1:], "lr": 0.02}],
                          lr=0.1)
    ref_sched = getattr(torch.optim.lr_scheduler, cls.__name__)(ref, **kwargs)
    for _ in range(5):
        ref.step()
        ref_sched.step()
    sched.load_state_dict(ref_sched.state_dict())
    assert sched.last_epoch == 5 and sched.get_last_lr() == ref_sched.get_last_lr()
    assert sched.state_dict()["_step_count"] == ref_sched.state_dict()["_step_count"]


def test_schedule_resume_with_last_epoch(torch):
    opt = SGD([Parameter(np.zeros(2))], lr=0.1)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        opt.step()
        sched.step()
    resumed = StepLR(opt, step_size=2, gamma=0.5, last_epoch=sched.last_epoch)
    t = torch.zeros(2, requires_grad=True)
    ref = torch.optim.SGD([t], lr=0.1)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref, step_size=2, gamma=0.5)
    for _ in range(3):
        ref.step()
        ref_sched.step()
    ref_resumed = torch.optim.lr_scheduler.StepLR(ref, step_size=2, gamma=0.5,
                                                  last_epoch=ref_sched.last_epoch)
    for _ in range(6):
        assert resumed.get_last_lr() == ref_resumed.get_last_lr()
        opt.step()
        ref.step()
        resumed.step()
        ref_resumed.step()


def test_schedule_errors():
    opt = SGD([Parameter(np.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="step_size"):
        StepLR(opt, step_size=0)
    with pytest.raises(TypeError, match="step_size"):
        StepLR(opt, step_size=1.5)
    with pytest.raises(ValueError, match="gamma"):
        ExponentialLR(opt, gamma=-0.5)
    with pytest.raises(ValueError, match="gamma"):
        StepLR(opt, step_size=2, gamma=math.nan)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="eta_min"):
        CosineAnnealingLR(opt, T_max=5, eta_min=-1.0)
    with pytest.raises(TypeError, match="lr_lambda"):
        LambdaLR(opt, lr_lambda=0.5)
    with pytest.raises(ValueError, match="lr_lambda"):
        LambdaLR(opt, lr_lambda=[lambda t: 1.0, lambda t: 1.0])
    with pytest.raises(TypeError, match="optimizer"):
        StepLR("sgd", step_size=2)
    with pytest.raises(ValueError, match="initial_lr"):
        StepLR(SGD([Parameter(np.zeros(2))]), step_size=2, last_epoch=4)
    sched = StepLR(opt, step_size=2)
    with pytest.raises(ValueError, match="missing keys"):
        sched.load_state_dict({"last_epoch": 3})
    bad = {**sched.state_dict(), "base_lrs": [0.1, 0.2]}
    with pytest.raises(ValueError, match="base_lrs"):
        sched.load_state_dict(bad)
    with pytest.raises(ValueError, match="learning rate"):
        LambdaLR(opt, lr_lambda=lambda t: -1.0)


# ----------------------------------------------------------------------------- state dicts


ROUND_TRIP = [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
              ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.5, maximize=True)),
              ("SGD", dict(lr=0.1)),
              ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
              ("AdamW", dict(lr=0.01, betas=(0.8, 0.99))),
              ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
              ("Adagrad", dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.1))]


def train(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()


def plain(obj):
    """True when ``obj`` is made of dicts, lists, numbers, strings and arrays only."""
    if isinstance(obj, dict):
        return all(isinstance(k, (int, str)) and plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(plain(v) for v in obj)
    return obj is None or isinstance(obj, (bool, int, float, str, np.ndarray))


def as_json(state_dict):
    """The state dict through JSON, arrays as nested lists (keys become strings)."""
    return json.loads(json.dumps(state_dict, default=lambda a: a.tolist()))


@pytest.mark.parametrize("via_json", [False, True], ids=["dict", "json"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name, kwargs", ROUND_TRIP,
                         ids=[f"{n}-{config_id(c)}" for n, c in ROUND_TRIP])
def test_state_dict_resumes_bit_exactly(name, kwargs, dtype, via_json):
    init, grads = make_data(dtype, seed=7, steps=6)
    params = [Parameter(a.copy()) for a in init]
    groups = [{"params": [0, 2]}, {"params": [1], "lr": kwargs["lr"] / 3}]
    opt = build(lambda ps: CLASSES[name](ps, **kwargs), params, groups)
    train(opt, params, grads[:3])
    saved = opt.state_dict()
    assert plain(saved)
    assert list(saved) == ["state", "param_groups"]
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2]]
    copies = [Parameter(p.data.copy()) for p in params]
    fresh = build(lambda ps: CLASSES[name](ps), copies, groups)     # other hyper-parameters
    fresh.load_state_dict(as_json(saved) if via_json else saved)
    train(opt, params, grads[3:])
    train(fresh, copies, grads[3:])
    for p, q in zip(params, copies):
        np.testing.assert_array_equal(p.data, q.data)
        assert q.data.dtype == dtype
    assert fresh.param_groups[1]["lr"] == kwargs["lr"] / 3
    after = fresh.state_dict()
    for i, entry in opt.state_dict()["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(after["state"][i][key], value)


def test_state_dict_is_a_copy():
    init, grads = make_data(np.float64, seed=8, steps=2)
    params = [Parameter(a.copy()) for a in init]
    opt = Adam(params)
    train(opt, params, grads[:1])
    saved = opt.state_dict()
    before = saved["state"][0]["exp_avg"].copy()
    train(opt, params, grads[1:])
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], before)
    opt.load_state_dict(saved)
    assert opt.state[0]["exp_avg"] is not saved["state"][0]["exp_avg"]


def test_load_state_dict_errors_change_nothing():
    init, grads = make_data(np.float32, seed=9, steps=2)
    params = [Parameter(a.copy()) for a in init]
    opt = Adam(params, lr=0.01, amsgrad=True)
    train(opt, params, grads)
    good = opt.state_dict()

    def edited(edit):
        sd = opt.state_dict()
        edit(sd)
        return sd

    bad = [
        (ValueError, "keys", {"state": {}}),
        (ValueError, "parameter groups", edited(lambda sd: sd["param_groups"].append(
            dict(sd["param_groups"][0])))),
        (ValueError, "params", edited(lambda sd: sd["param_groups"][0]["params"].pop())),
        (ValueError, "shape", edited(lambda sd: sd["state"][1].update(
            exp_avg=np.zeros((5, 1), np.float32)))),
        (ValueError, "missing entries", edited(lambda sd: sd["state"][0].pop("exp_avg_sq"))),
        (ValueError, "unknown entries", edited(lambda sd: sd["state"][0].update(
            momentum_buffer=np.zeros((3, 4))))),
        (ValueError, "no parameter has index 7", edited(lambda sd: sd["state"].update(
            {7: sd["state"][0]}))),
        (ValueError, "'lr'", edited(lambda sd: sd["param_groups"][0].update(lr=-1.0))),
        (ValueError, r"betas'\]\[1\]", edited(lambda sd: sd["param_groups"][0].update(
            betas=[0.9, 1.5]))),
        (ValueError, "lacks hyper-parameters", edited(lambda sd: sd["param_groups"][0].pop(
            "eps"))),
        (ValueError, "step", edited(lambda sd: sd["state"][0].update(step=-2))),
        (TypeError, "real array", edited(lambda sd: sd["state"][0].update(
            exp_avg=np.array(["a"] * 12).reshape(3, 4)))),
        (ValueError, "missing entries", edited(lambda sd: sd["param_groups"][0].update(
            amsgrad=True) or [s.pop("max_exp_avg_sq") for s in sd["state"].values()])),
    ]
    for exc, match, sd in bad:
        with pytest.raises(exc, match=match):
            opt.load_state_dict(sd)
        after = opt.state_dict()
        assert after["param_groups"] == good["param_groups"]
        for i in good["state"]:
            for key, value in good["state"][i].items():
                np.testing.assert_array_equal(after["state"][i][key], value)


# ----------------------------------------------------------------------------- bookkeeping


@pytest.mark.parametrize("name", list(CLASSES))
def test_zero_grad_and_step_keep_the_same_arrays(name):
    init, grads = make_data(np.float64, seed=10, steps=3)
    params = [Parameter(a.copy()) for a in init]
    opt = CLASSES[name](params, lr=0.01, weight_decay=0.1, maximize=True)
    data_ids, grad_ids = [id(p.data) for p in params], [id(p.grad) for p in params]
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()
        for p, g in zip(params, step_grads):
            np.testing.assert_array_equal(p.grad, g)        # the update never writes grad
    opt.zero_grad()
    assert [id(p.data) for p in params] == data_ids
    assert [id(p.grad) for p in params] == grad_ids
    assert all(not p.grad.any() for p in params)
    assert sorted(opt.state) == [0, 1, 2]                   # keyed by position


def test_step_closure_and_repr():
    p = Parameter(np.ones(2))
    opt = SGD([p], lr=0.1, momentum=0.9)
    assert opt.step(lambda: 1.5) == 1.5
    text = repr(opt)
    assert text.startswith("SGD (") and "Parameter Group 0" in text and "lr: 0.1" in text
    assert "momentum: 0.9" in text


def test_add_param_group_and_group_defaults():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(3, np.float32))
    opt = Adam([a], lr=0.01, betas=[0.8, 0.9])
    opt.add_param_group({"params": b, "eps": 1e-6})
    assert opt.param_groups[1]["params"] == [b]
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["betas"] == (0.8, 0.9)
    assert opt.param_groups[1]["eps"] == 1e-6
    with pytest.raises(ValueError, match="more than once"):
        opt.add_param_group({"params": [a]})


BAD_HYPER = [
    (SGD, dict(lr=-0.1), ValueError, "lr"),
    (SGD, dict(lr=math.nan), ValueError, "lr"),
    (SGD, dict(lr=math.inf), ValueError, "lr"),
    (SGD, dict(lr="0.1"), TypeError, "lr"),
    (SGD, dict(lr=True), TypeError, "lr"),
    (SGD, dict(momentum=-0.9), ValueError, "momentum"),
    (SGD, dict(dampening=math.inf), ValueError, "dampening"),
    (SGD, dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (SGD, dict(nesterov=True), ValueError, "nesterov"),
    (SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "nesterov"),
    (SGD, dict(nesterov=1), TypeError, "nesterov"),
    (SGD, dict(maximize="yes"), TypeError, "maximize"),
    (Adam, dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    (Adam, dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (Adam, dict(betas=0.9), TypeError, "betas"),
    (Adam, dict(betas=(0.9, 0.99, 0.9)), TypeError, "betas"),
    (Adam, dict(eps=-1e-8), ValueError, "eps"),
    (Adam, dict(weight_decay=math.nan), ValueError, "weight_decay"),
    (Adam, dict(amsgrad=None), TypeError, "amsgrad"),
    (AdamW, dict(lr=-1.0), ValueError, "lr"),
    (AdamW, dict(weight_decay=-0.01), ValueError, "weight_decay"),
    (RMSprop, dict(alpha=1.5), ValueError, "alpha"),
    (RMSprop, dict(alpha=-0.1), ValueError, "alpha"),
    (RMSprop, dict(eps=-1.0), ValueError, "eps"),
    (RMSprop, dict(momentum=-0.5), ValueError, "momentum"),
    (RMSprop, dict(centered="no"), TypeError, "centered"),
    (Adagrad, dict(lr_decay=-0.1), ValueError, "lr_decay"),
    (Adagrad, dict(initial_accumulator_value=-1.0), ValueError, "initial_accumulator_value"),
    (Adagrad, dict(eps=math.nan), ValueError, "eps"),
]


@pytest.mark.parametrize("cls, kwargs, exc, match", BAD_HYPER,
                         ids=[f"{c.__name__}-{config_id(k)}" for c, k, _, _ in BAD_HYPER])
def test_bad_hyper_parameters_are_refused(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls([Parameter(np.zeros(2))], **kwargs)


def test_bad_params_and_groups_are_refused():
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['lr'\]"):
        SGD([{"params": [p]}, {"params": [Parameter(np.zeros(1))], "lr": -1.0}])
    with pytest.raises(TypeError, match="params"):
        SGD(p)                                            # not wrapped in a list
    with pytest.raises(ValueError, match="empty"):
        Adam([])
    with pytest.raises(TypeError, match="Parameter"):
        Adam([np.zeros(2)])
    with pytest.raises(TypeError, match="both"):
        Adam([p, {"params": [Parameter(np.zeros(1))]}])
    with pytest.raises(ValueError, match="more than once"):
        Adam([p, p])
    with pytest.raises(ValueError, match="more than once"):
        Adam([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="'params'"):
        Adam([{"lr": 0.1}])
    with pytest.raises(TypeError, match="floating"):
        SGD([Parameter(np.zeros(2, np.int64))])
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([p], -1.0)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([p], math.nan)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm([p], 1.0, norm_type=0)
    with pytest.raises(TypeError, match="parameters"):
        clip_grad_norm(3.0, 1.0)
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value([p], -0.1)


def test_grad_not_matching_data_is_refused():
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="grad must have shape"):
        p.grad = np.zeros(3)
    with pytest.raises(TypeError, match="grad has dtype complex128"):
        p.grad = np.zeros(2, complex)
    opt = SGD([p], lr=0.1)
    p.grad = np.ones(2, np.float32)                     # castable: stored in p's dtype
    assert p.grad.dtype == np.float64
    opt.step()
    np.testing.assert_allclose(p.data, [-0.1, -0.1])


def test_update_functions_refuse_a_missing_buffer_they_need():
    w, g, zeros = np.ones(2), np.ones(2), np.zeros(2)
    with pytest.raises(TypeError, match="momentum_buffer must be an array when momentum"):
        optim.sgd_update(w, g, None, lr=0.1, momentum=0.9, first_step=True)
    with pytest.raises(TypeError, match="max_exp_avg_sq must be an array when amsgrad"):
        optim.adam_update(w, g, zeros.copy(), zeros.copy(), None, 1, lr=0.1, beta1=0.9,
                          beta2=0.999, eps=1e-8, amsgrad=True)
    with pytest.raises(TypeError, match="grad_avg must be an array when centered"):
        optim.rmsprop_update(w, g, zeros.copy(), None, None, lr=0.1, alpha=0.99, eps=1e-8,
                             centered=True)
    with pytest.raises(TypeError, match="momentum_buffer must be an array when momentum"):
        optim.rmsprop_update(w, g, zeros.copy(), None, None, lr=0.1, alpha=0.99, eps=1e-8,
                             momentum=0.5)


def test_docstring_examples():
    # the examples stand beside the code, in each module of the package
    modules = [optim] + [importlib.import_module(f"{optim.__name__}.{info.name}")
                         for info in pkgutil.iter_modules(optim.__path__)]
    finder = doctest.DocTestFinder()
    attempted = failed = 0
    documented = set()
    for module in modules:
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        attempted += result.attempted
        failed += result.failed
        documented |= {t.name.rsplit(".", 1)[-1] for t in finder.find(module) if t.examples}
    assert attempted > 20 and failed == 0
    assert set(optim.__all__) <= documented, sorted(set(optim.__all__) - documented)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta1", [0.9, 0.3], ids=["lerp-low", "lerp-high"])
def test_adam_compiled_pass_is_the_numpy_update_bit_for_bit(dtype, beta1):
    """The one-pass update (C-contiguous arrays) and the NumPy passes (the same arrays in
    Fortran order) give the same bits over several steps, for both forms of the lerp."""
    from fastrnn.optim.functional import adam_update
    rng = np.random.default_rng(0)
    shape = (37, 19)
    p = rng.standard_normal(shape).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    pf, mf, vf = (np.asfortranarray(a) for a in (p, m, v))
    for step in range(1, 6):
        g = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 3, shape)).astype(dtype)
        gf = np.asfortranarray(g)
        kwargs = dict(lr=3e-3, beta1=beta1, beta2=0.999, eps=1e-8)
        adam_update(p, g, m, v, None, step, **kwargs)
        adam_update(pf, gf, mf, vf, None, step, **kwargs)
        for a, b in ((p, pf), (m, mf), (v, vf)):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(p, rng.standard_normal(shape).astype(dtype))


def test_adam_compiled_pass_refuses_mismatched_arrays():
    from fastrnn import _blas
    a = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="grad must have 4 values"):
        _blas.adam_step(a, np.zeros(3, np.float32), a.copy(), a.copy(), 0.1, False, 0.999,
                        0.001, 1.0, 1e-8, -1e-3)
