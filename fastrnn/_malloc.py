"""Keep the memory of large temporary arrays in the process between calls.

A training step allocates its tape (gates, states, their gradients: megabytes for a
mid-size layer) and frees it when backward is done.  glibc's malloc serves a request that
large with a fresh ``mmap`` and returns the memory to the system on ``free`` (or trims it
off the top of the heap), so that every call pays again for the kernel to map and zero
the pages: measured here, 10-25 % of a training step of a small or variable-length LSTM.
On import fastrnn raises glibc's thresholds (``mallopt``) so that blocks up to
``MMAP_THRESHOLD`` come from the heap and up to ``TRIM_THRESHOLD`` of freed memory stays
there for the next call.  The cost: a process keeps up to that much freed memory mapped.

This is process-wide, so fastrnn leaves malloc as it is where the host has tuned it: when
any ``MALLOC_*`` variable (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_ARENA_MAX``, ... as Dask's
nanny sets for its workers) or a ``glibc.malloc`` tunable in ``GLIBC_TUNABLES`` is set.
Set ``FASTRNN_MALLOC_TUNING=0`` before importing fastrnn to leave it alone anyway
(``OPT_OUT``); nothing is done where the C library is not glibc.  ``REASON`` says why
malloc was or was not tuned (``fastrnn.process_settings()["malloc"]``).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1           # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20       # bytes: larger blocks are still mapped on their own
TRIM_THRESHOLD = 256 << 20      # bytes of free memory kept at the top of the heap
OPT_OUT = "FASTRNN_MALLOC_TUNING=0 before importing fastrnn"


def _host_settings() -> list[str]:
    """The malloc settings the host gave this process through its environment."""
    names = sorted(k for k in os.environ if k.startswith("MALLOC_"))
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        names.append("GLIBC_TUNABLES")
    return names


def _tune() -> tuple[bool, str]:
    """Raise the thresholds; returns whether it did, and why (not)."""
    if os.environ.get("FASTRNN_MALLOC_TUNING", "1").strip() == "0":
        return False, "FASTRNN_MALLOC_TUNING=0"
    host = _host_settings()
    if host:
        return False, f"left to the host, which set {', '.join(host)}"
    if not sys.platform.startswith("linux"):
        return False, "not Linux"
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False, "no mallopt"
    if not hasattr(libc, "gnu_get_libc_version"):     # glibc only: others differ
        return False, "not glibc"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return False, "mallopt refused"
    return True, (f"mallopt: M_MMAP_THRESHOLD={MMAP_THRESHOLD}, "
                  f"M_TRIM_THRESHOLD={TRIM_THRESHOLD}")


TUNED, REASON = _tune()
