"""Process set-up: which BLAS the kernels use, and its threads.

The kernels call scipy's BLAS (``scipy.linalg.cython_blas``), which scipy's wheels bundle
as their own OpenBLAS, separate from numpy's.  fastrnn parallelises its kernels itself
(OpenMP: parts of the batch in the time loops, blocks of rows in the large products), so
on import it finds that library among the loaded ones and sets it to one thread: a second
pool of spinning threads would only steal the cores.  (This is process-wide: scipy's own
BLAS calls then run on one thread too; ``fastrnn.set_num_threads`` does not change it.)
Where the library cannot be found (another BLAS, another platform), it keeps its own
threading and everything else works the same.
"""

from __future__ import annotations

import ctypes
import os

import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's BLAS)

from . import _blas, _malloc

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


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _setup() -> dict:
    info: dict[str, str | int | None] = {"library": None, "config": None,
                                         "blas_threads_before": None, "blas_threads": None}
    path = _loaded_openblas()
    if path is not None:
        lib = ctypes.CDLL(path)
        info["library"] = path
        config_fn = _symbol(lib, _CONFIG)
        if config_fn is not None:
            config_fn.restype = ctypes.c_char_p
            info["config"] = config_fn().decode(errors="replace")
        set_fn, get_fn = _symbol(lib, _SET), _symbol(lib, _GET)
        if set_fn is not None and get_fn is not None:
            get_fn.restype = ctypes.c_int
            info["blas_threads_before"] = int(get_fn())
            set_fn(1)
            info["blas_threads"] = int(get_fn())
    _blas.set_num_threads(available_cores())
    return info


INFO = _setup()


def blas_info() -> dict:
    """The BLAS library in use, its configuration and threads, the threads of fastrnn's
    own kernels, whether float32 products use fastrnn's own panel product (AVX-512; see
    ``fastrnn/_panel.h``) and whether malloc keeps large freed blocks (see
    ``fastrnn._malloc``).

    >>> import fastrnn
    >>> info = fastrnn.blas_info()
    >>> info["kernel_threads"] == fastrnn.get_num_threads()
    True
    """
    return {**INFO, "kernel_threads": _blas.get_num_threads(),
            "panel_products": _blas.panel_products(), "malloc_tuned": _malloc.TUNED}
