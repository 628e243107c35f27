"""What the test files share: central differences, and the tolerance of each kind of
comparison (one table here, each named after what it compares)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

EPS = 1e-6   # the step of the central differences, in float64

# kernels against fastrnn.reference, and fastrnn against PyTorch with the same weights
# (DESIGN.md: 1e-10 in float64; rtol 1e-4 / atol 1e-5 in float32)
PARITY_TOL = {np.float64: dict(rtol=1e-10, atol=1e-10),
              np.float32: dict(rtol=1e-4, atol=1e-5)}
# one matrix product (or a dense layer) against NumPy's
PRODUCT_TOL = {np.float64: dict(rtol=1e-12, atol=1e-12),
               np.float32: dict(rtol=1e-5, atol=1e-6)}
# optimizer steps against torch.optim's (params are O(1); atol covers entries that pass
# near 0 in float32)
OPTIM_TOL = {np.float64: dict(rtol=1e-12, atol=1e-14),
             np.float32: dict(rtol=1e-6, atol=1e-7)}
# the hypothesis properties: random sizes, saturated gates, long sums in float32
PROPERTY_TOL = {np.float64: dict(rtol=1e-9, atol=1e-10),
                np.float32: dict(rtol=2e-3, atol=2e-4)}
# analytic gradients against central differences (float64 only)
FD_TOL = dict(rtol=1e-6, atol=1e-8)


def central_differences(f, a: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d f() / d a by central differences, perturbing each entry of ``a`` in place (and
    restoring it): ``f`` must read ``a`` itself, not a copy made before."""
    flat = a.reshape(-1)
    assert np.shares_memory(flat, a), "a must be contiguous: it is perturbed in place"
    g = np.zeros(a.size)
    for i in range(a.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        g[i] = (up - down) / (2 * eps)
    return g.reshape(a.shape)


def load_reference():
    """``fastrnn.reference``; where the package cannot be imported (no compiled core
    built), the pure-NumPy reference package loaded on its own from the source tree."""
    try:
        from fastrnn import reference
        return reference
    except ImportError:
        path = Path(__file__).resolve().parents[1] / "fastrnn" / "reference" / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            "fastrnn_reference", path, submodule_search_locations=[str(path.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module          # its submodules import it by name
        spec.loader.exec_module(module)
        return module
