"""Shared fixtures: optional PyTorch, and fastrnn / PyTorch modules with the same weights.

PyTorch is optional: tests that take the ``torch`` fixture are skipped without it, unless
the environment variable ``FASTRNN_REQUIRE_TORCH=1`` is set (as in CI), in which case a
missing torch makes each of those tests fail.
"""

import os

import numpy as np
import pytest

import fastrnn

REQUIRE_TORCH = os.environ.get("FASTRNN_REQUIRE_TORCH", "") == "1"

MODULES = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")


class _MissingTorch:
    """Stands in for torch when it is required but cannot be imported: the first use of
    it fails the test that uses it (a failure in the test, not an error or a skip)."""

    def __init__(self, reason: str):
        self._reason = reason

    def __getattr__(self, name):
        pytest.fail(self._reason, pytrace=False)


def _import_torch():
    if not REQUIRE_TORCH:
        return pytest.importorskip("torch")
    try:
        import torch
    except ImportError as exc:
        return _MissingTorch(f"FASTRNN_REQUIRE_TORCH=1 but torch cannot be imported: {exc}")
    return torch


@pytest.fixture(scope="session")
def torch():
    """The torch module, single-threaded (the test machine's cores are shared)."""
    module = _import_torch()
    if not isinstance(module, _MissingTorch):
        module.set_num_threads(1)
    return module


def torch_dtype(torch, dtype):
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def to_numpy_state_dict(torch_module):
    """A torch module's state_dict as numpy arrays, the form fastrnn loads."""
    return {k: v.detach().cpu().numpy() for k, v in torch_module.state_dict().items()}


@pytest.fixture
def make_pair(torch):
    """``make_pair(name, input_size, hidden_size, dtype=..., nonlinearity=..., seed=...,
    **kwargs) -> (fastrnn_module, torch_module)`` with equal weights.

    ``name`` is one of RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell; the torch module is
    initialised from ``torch.manual_seed(seed)`` and its weights are loaded into fastrnn.
    """

    def make(name, input_size, hidden_size, dtype=np.float64, nonlinearity="tanh", seed=0,
             **kwargs):
        assert name in MODULES, name
        extra = {"nonlinearity": nonlinearity} if name.startswith("RNN") else {}
        torch.manual_seed(seed)
        tm = getattr(torch.nn, name)(input_size, hidden_size, **kwargs, **extra)
        tm = tm.to(torch_dtype(torch, dtype))
        fm = getattr(fastrnn, name)(input_size, hidden_size, dtype=dtype, **kwargs, **extra)
        fm.load_state_dict(to_numpy_state_dict(tm))
        return fm, tm

    return make


# Hypothesis profiles of the property and fuzz tests: "ci" (the default) keeps the whole
# set quick on two cores; "long" (HYPOTHESIS_PROFILE=long) tries many more cases.
try:
    from hypothesis import HealthCheck, settings
except ImportError:      # the property tests skip themselves without hypothesis
    pass
else:
    settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True,
                              database=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("long", deadline=None, print_blob=True, max_examples=5_000,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(n: int) -> int:
    """``n`` hypothesis examples in CI; fifty times as many with HYPOTHESIS_PROFILE=long."""
    return n * 50 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else n
