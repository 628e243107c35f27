"""Which BLAS the kernels use, and control of its threads.

The kernels call scipy's BLAS (``scipy.linalg.cython_blas``), which scipy's wheels bundle
as their own OpenBLAS, separate from numpy's.  Here fastrnn finds that library among the
loaded ones and hands its ``set_num_threads`` to the kernels, which then choose one
thread for small products and all threads for large ones (see ``_core.blas_threads``).
Where the library cannot be found (another BLAS, another platform), the BLAS keeps its own
threading and everything else works the same.
"""

from __future__ import annotations

import ctypes
import os

import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's BLAS)

from . import _core

_SET = ("scipy_openblas_set_num_threads", "openblas_set_num_threads")
_GET = ("scipy_openblas_get_num_threads", "openblas_get_num_threads")
_CONFIG = ("scipy_openblas_get_config", "openblas_get_config")


def _loaded_openblas() -> str | None:
    """Path of scipy's OpenBLAS among the libraries mapped into this process."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    # scipy's wheels keep it in site-packages/scipy.libs (numpy's lives in numpy.libs)
    scipy_libs = sorted(p for p in paths
                        if os.path.basename(os.path.dirname(p)) == "scipy.libs")
    return scipy_libs[0] if scipy_libs else None


def _symbol(lib, names):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def _bind() -> dict:
    info = {"library": None, "config": None, "threads": None, "controlled": False}
    path = _loaded_openblas()
    if path is None:
        return info
    lib = ctypes.CDLL(path)
    set_fn, get_fn = _symbol(lib, _SET), _symbol(lib, _GET)
    config_fn = _symbol(lib, _CONFIG)
    info["library"] = path
    if config_fn is not None:
        config_fn.restype = ctypes.c_char_p
        info["config"] = config_fn().decode(errors="replace")
    if set_fn is None or get_fn is None:
        return info
    get_fn.restype = ctypes.c_int
    threads = max(1, int(get_fn()))
    _core._bind_blas_threads(ctypes.cast(set_fn, ctypes.c_void_p).value, threads)
    info.update(threads=threads, controlled=True)
    return info


INFO = _bind()


def blas_info() -> dict:
    """The BLAS library in use, its configuration, thread count and whether fastrnn
    chooses its threads per call."""
    max_threads, min_flops, bound = _core.blas_threads()
    return {**INFO, "max_threads": max_threads, "min_flops_for_threads": min_flops,
            "controlled": bound}


def set_num_threads(n: int) -> None:
    """The most BLAS threads fastrnn's large products use (small ones always use one)."""
    _core.blas_threads(max_threads=n)
