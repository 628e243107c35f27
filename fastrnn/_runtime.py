"""Process set-up: which BLAS the kernels use, its threads, the kernels' thread budget,
and the list of what ``import fastrnn`` changed in the process (:func:`process_settings`;
:func:`show_config` says it with where each setting came from and how to opt out).

The kernels call scipy's BLAS (``scipy.linalg.cython_blas``), which scipy's wheels bundle
as their own OpenBLAS, separate from numpy's.  fastrnn parallelises its kernels itself
(OpenMP: parts of the batch in the time loops, blocks of rows in the large products), so
on import it finds that library among the loaded ones and sets it to one thread: a second
pool of spinning threads would only steal the cores.  (This is process-wide: scipy's own
BLAS calls then run on one thread too; ``fastrnn.set_num_threads`` does not change it.)
Where the library cannot be found (another BLAS, another platform), it keeps its own
threading and everything else works the same.  ``FASTRNN_BLAS_TUNING=0`` before the import
leaves it with its own threads (``BLAS_OPT_OUT``).

The kernels' own threads (their *budget*) start at ``FASTRNN_NUM_THREADS``, else
``OMP_NUM_THREADS`` (its first value, for a list such as ``"4,2"``), else the cores of the
affinity mask, and never more than those cores: engines (Dask, Ray, Spark, joblib) give
each worker its share of the cores through ``OMP_NUM_THREADS``.  A value that is not a
positive integer is ignored with a warning.  :func:`set_num_threads` changes the budget
for the whole process, :func:`threads` for the calling thread only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TextIO

import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's BLAS)

from . import _blas, _core, _environ, _lowp, _malloc
from ._version import __version__

#: where the thread budget at import comes from, first found first
BUDGET_VARIABLES = ("FASTRNN_NUM_THREADS", "OMP_NUM_THREADS")
BUDGET_OPT_OUT = ("FASTRNN_NUM_THREADS=n before importing fastrnn, or "
                  "fastrnn.set_num_threads(n) (fastrnn's own threads; nothing else's)")
BLAS_OPT_OUT = "FASTRNN_BLAS_TUNING=0 before importing fastrnn"

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
    """The cores this process may run on (its affinity mask)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _positive_int(text: str) -> int | None:
    try:
        n = int(text.strip())
    except ValueError:
        return None
    return n if n >= 1 else None


def budget_from_environment(environ: Mapping[str, str] = os.environ) -> tuple[int, str]:
    """The kernels' threads at import and where they come from: ``FASTRNN_NUM_THREADS``,
    else the first value of ``OMP_NUM_THREADS``, else the affinity mask; capped at the
    cores of the affinity mask.  An empty variable counts as unset; one that is not a
    positive integer is skipped with a ``RuntimeWarning``."""
    cores = available_cores()
    for name in BUDGET_VARIABLES:
        text = environ.get(name, "").strip()
        if not text:
            continue
        # OMP_NUM_THREADS may list one value per nesting level: the first is ours
        n = _positive_int(text.split(",")[0] if name == "OMP_NUM_THREADS" else text)
        if n is None:
            warnings.warn(f"fastrnn ignores {name}={text!r}: it must be a positive integer",
                          RuntimeWarning, stacklevel=2)
            continue
        return min(n, cores), name
    return cores, "affinity mask"


def _setup() -> dict:
    info: dict[str, str | int | None] = {"library": None, "config": None,
                                         "blas_threads_before": None, "blas_threads": None,
                                         "blas_reason": "scipy's OpenBLAS not found among "
                                                        "the loaded libraries"}
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
            if os.environ.get("FASTRNN_BLAS_TUNING", "1").strip() == "0":
                info["blas_reason"] = "FASTRNN_BLAS_TUNING=0"
            else:
                set_fn(1)
                info["blas_reason"] = "set to 1"
            info["blas_threads"] = int(get_fn())
    return info


INFO = _setup()
BUDGET, BUDGET_SOURCE = budget_from_environment()
_blas.set_num_threads(BUDGET)

# The instruction sets the kernels with ISA-specific paths may use (fastrnn/_isa.h): the
# level the CPU and operating system allow, capped by FASTRNN_ISA at import or by set_isa.
#: the compiled modules with such paths: each has ``isa()`` and ``set_isa_cap(level)``
ISA_MODULES = (_lowp, _core, _blas)
#: the levels, lowest first (each includes the ones before it)
ISA_LEVELS: tuple[str, ...] = tuple(_lowp.LEVELS)
ISA_OPT_OUT = ("FASTRNN_ISA=level before importing fastrnn, or fastrnn._runtime.set_isa(level), "
               f"level one of {', '.join(ISA_LEVELS)}")


def set_isa(level: str) -> None:
    """Run fastrnn's kernels with instruction-set specific paths (the int8 products of
    :func:`fastrnn.quantize`, the bf16 products of :func:`fastrnn.autocast`) at ``level``
    at most: one of :data:`ISA_LEVELS`
    (``"baseline"``: portable code; ``"amx"``: no cap).  Every path gives the same
    results; the cap is for testing the lower ones and for comparing them.

    >>> from fastrnn import _runtime
    >>> _runtime.set_isa("baseline"); _runtime.get_isa()
    'baseline'
    >>> _runtime.set_isa("amx")                   # no cap: the CPU's own level
    """
    if not isinstance(level, str) or level not in ISA_LEVELS:
        raise ValueError(f"level must be one of {ISA_LEVELS}, got {level!r}")
    for module in ISA_MODULES:
        module.set_isa_cap(level)


def get_isa() -> str:
    """The level the kernels run at now: the detected one, capped (:func:`set_isa`)."""
    return _lowp.isa()


def _isa_from_environment() -> str:
    text = os.environ.get("FASTRNN_ISA", "").strip().lower()
    if not text:
        return "detected"
    if text not in ISA_LEVELS:
        warnings.warn(f"fastrnn ignores FASTRNN_ISA={text!r}: it must be one of "
                      f"{', '.join(ISA_LEVELS)}", RuntimeWarning, stacklevel=2)
        return "detected"
    set_isa(text)
    return f"FASTRNN_ISA={text}"


ISA_SOURCE = _isa_from_environment()

#: what other modules set up at import, for process_settings (fastrnn._threadpool adds
#: whether it registered a threadpoolctl controller)
EXTRA_SETTINGS: dict[str, object] = {}


def _capped(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return min(n, available_cores())


def _warn_if_forked(n: int) -> None:
    if n > 1 and _blas.forked_serial():
        warnings.warn("this process was forked after fastrnn ran a kernel on several "
                      "threads; its kernels run on one thread (start it with the 'spawn' "
                      "or 'forkserver' method to use more)", RuntimeWarning, stacklevel=3)


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads in fastrnn's kernels, in every Python thread that is not
    inside a :func:`threads` block (the default at import: ``FASTRNN_NUM_THREADS``, else
    ``OMP_NUM_THREADS``, else the available cores).

    ``n`` is capped at the cores this process may run on (its affinity mask): more
    threads than cores only wait for each other, and each Python thread that calls a
    kernel starts a team of its own.  In a child forked after the parent ran a kernel on
    several threads the kernels run on one thread (the OpenMP runtime cannot start
    threads there); start such children with the "spawn" or "forkserver" method instead.

    >>> import fastrnn
    >>> before = fastrnn.get_num_threads()
    >>> fastrnn.set_num_threads(1)
    >>> fastrnn.get_num_threads()
    1
    >>> fastrnn.set_num_threads(before)
    """
    n = _capped(n)
    _warn_if_forked(n)
    _blas.set_num_threads(n)


def get_num_threads() -> int:
    """The most threads fastrnn's kernels use when called from this Python thread: the
    limit of the :func:`threads` block it is in, else the process-wide value.

    >>> import fastrnn
    >>> fastrnn.get_num_threads() >= 1
    True
    """
    return _blas.get_num_threads()


def process_num_threads() -> int:
    """The process-wide value of :func:`set_num_threads` (what threads outside a
    :func:`threads` block use), whatever the calling thread's own limit."""
    return _blas.process_num_threads()


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Within the block, fastrnn's kernels called from this Python thread use at most
    ``n`` threads (capped at the available cores; ``n`` may be more than the
    process-wide value); other Python threads keep theirs.

    The model is threadpoolctl's ``threadpool_limits``, for fastrnn and one thread: the
    way to give each trial of a sweep, or each request of a thread pool, its own share
    of the cores.  Blocks nest, and leaving one (also by an exception) restores what the
    thread had before.  The limit belongs to the thread: threads started inside the
    block do not inherit it.  :func:`set_num_threads` and ``threadpoolctl`` change the
    process-wide value, which applies to the threads outside such a block.  Usable as a
    decorator too.

    >>> import fastrnn
    >>> with fastrnn.threads(1):
    ...     fastrnn.get_num_threads()
    1
    """
    n = _capped(n)
    _warn_if_forked(n)
    previous = _blas.set_thread_limit(n)
    try:
        yield
    finally:
        _blas.set_thread_limit(previous)


def process_settings() -> dict:
    """What ``import fastrnn`` changed in this process, in one place.

    * ``"environment"``: the variables it set because they were unset (OpenMP's wait
      policy, see ``fastrnn/_environ.py``);
    * ``"blas_threads"``: scipy's OpenBLAS, set to one thread (``before``, ``after`` and
      ``reason``: "set to 1", or "FASTRNN_BLAS_TUNING=0"; None where that library was not
      found);
    * ``"kernel_threads"``: the process-wide thread budget of fastrnn's kernels at
      import and its source (``FASTRNN_NUM_THREADS``, ``OMP_NUM_THREADS`` or the
      affinity mask), and the value now;
    * ``"malloc"``: whether glibc's malloc thresholds were raised, and why (not);
    * ``"threadpoolctl"``: whether fastrnn registered its controller with threadpoolctl;
    * ``"isa"``: the instruction-set level of the kernels that have specific paths, the
      level detected, and where a cap comes from (``FASTRNN_ISA``, or none: "detected").

    >>> import fastrnn
    >>> sorted(fastrnn.process_settings())
    ['blas_threads', 'environment', 'isa', 'kernel_threads', 'malloc', 'threadpoolctl']
    """
    blas = None if INFO["blas_threads"] is None else {
        "library": INFO["library"], "before": INFO["blas_threads_before"],
        "after": INFO["blas_threads"], "reason": INFO["blas_reason"]}
    return {"environment": dict(_environ.SET),
            "blas_threads": blas,
            "kernel_threads": {"at_import": BUDGET, "source": BUDGET_SOURCE,
                               "now": process_num_threads()},
            "malloc": {"tuned": _malloc.TUNED, "reason": _malloc.REASON},
            "threadpoolctl": EXTRA_SETTINGS.get("threadpoolctl", False),
            "isa": {"now": get_isa(), "detected": _lowp.detected_isa(),
                    "source": ISA_SOURCE}}


@dataclass(frozen=True)
class Setting:
    """One process-wide setting of ``import fastrnn``: what it is, its value as fastrnn
    left it, where that came from, and the one way to have fastrnn leave it alone."""

    name: str
    value: str
    source: str
    opt_out: str


def settings() -> list[Setting]:
    """Every process-wide setting ``import fastrnn`` makes, as :func:`show_config` lists
    them (the facts are :func:`process_settings`')."""
    now = process_settings()
    env = now["environment"]
    host = [f"{k}={os.environ[k]}" for k in _environ.DEFAULTS if k in os.environ and
            k not in env]
    wait = Setting("OpenMP wait policy (environment)",
                   " ".join(f"{k}={v}" for k, v in env.items()) if env else
                   " ".join(host) or "unset (the OpenMP runtime's default)",
                   "set by fastrnn: neither was set" if env else
                   "left as the host set it", _environ.OPT_OUT)
    blas = now["blas_threads"]
    scipy_blas = Setting(
        "scipy's BLAS threads",
        "unknown" if blas is None else f"{blas['after']} (was {blas['before']}; "
                                       f"{blas['library']})",
        f"left alone: {INFO['blas_reason']}" if blas is None or blas["reason"] != "set to 1"
        else "set by fastrnn: its kernels run their own threads around scipy's BLAS, and two "
        "pools of spinning threads on the same cores slow each other down", BLAS_OPT_OUT)
    malloc = Setting("glibc malloc thresholds", "raised" if _malloc.TUNED else "as they were",
                     ("set by fastrnn: " if _malloc.TUNED else "left alone: ")
                     + now["malloc"]["reason"], _malloc.OPT_OUT)
    k = now["kernel_threads"]
    budget = Setting("fastrnn's kernel threads (its budget)",
                     f"{k['at_import']} at import, {k['now']} now",
                     f"{k['source']}, capped at the {available_cores()} cores of the "
                     f"affinity mask", BUDGET_OPT_OUT)
    isa = now["isa"]
    level = Setting("instruction set of the int8 kernels",
                    f"{isa['now']} (detected {isa['detected']})",
                    "set by fastrnn: " + isa["source"] if isa["source"] != "detected"
                    else "detected (CPU and operating system)", ISA_OPT_OUT)
    rows = EXTRA_SETTINGS.get("rows", [])             # fastrnn._threadpool's
    return [wait, scipy_blas, malloc, budget, level,
            *(rows if isinstance(rows, list) else [])]


def show_config(file: TextIO | None = None) -> None:
    """Print every process-wide setting ``import fastrnn`` made -- OpenMP's wait policy
    in the environment, scipy's BLAS threads, malloc's thresholds, the kernels' thread
    budget, threadpoolctl's controller -- each with its value, where it came from and how
    to opt out (on ``file``, default stdout).  :func:`process_settings` gives the values
    as a dict.

    >>> import fastrnn
    >>> fastrnn.show_config()                  # doctest: +ELLIPSIS
    fastrnn ...: what import fastrnn set in this process
    OpenMP wait policy (environment)
      value    ...
      opt out  set OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself before importing fastrnn
    scipy's BLAS threads
    ...
    """
    out = sys.stdout if file is None else file
    print(f"fastrnn {__version__}: what import fastrnn set in this process", file=out)
    for row in settings():
        print(f"{row.name}\n  value    {row.value}\n  from     {row.source}\n"
              f"  opt out  {row.opt_out}", file=out)


def blas_info() -> dict:
    """The BLAS library in use, its configuration and threads, the threads of fastrnn's
    own kernels, whether float32 products use fastrnn's own panel product (AVX-512; see
    ``fastrnn/_panel.h``) and whether malloc keeps large freed blocks (see
    ``fastrnn._malloc``).  :func:`process_settings` lists everything ``import fastrnn``
    changed in the process.

    >>> import fastrnn
    >>> info = fastrnn.blas_info()
    >>> info["kernel_threads"] == fastrnn.get_num_threads()
    True
    """
    return {**INFO, "kernel_threads": _blas.get_num_threads(),
            "panel_products": _blas.panel_products(), "malloc_tuned": _malloc.TUNED}
