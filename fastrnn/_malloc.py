"""Keep the memory of large temporary arrays in the process between calls.

A training step allocates its tape (gates, states, their gradients: megabytes for a
mid-size layer) and frees it when backward is done.  glibc's malloc serves a request that
large with a fresh ``mmap`` and returns the memory to the system on ``free`` (or trims it
off the top of the heap), so that every call pays again for the kernel to map and zero
the pages: measured here, 10-25 % of a training step of a small or variable-length LSTM.
On import fastrnn raises glibc's thresholds (``mallopt``) so that blocks up to
``MMAP_THRESHOLD`` come from the heap and up to ``TRIM_THRESHOLD`` of freed memory stays
there for the next call.  The cost: a process keeps up to that much freed memory mapped.

This is process-wide.  Set ``FASTRNN_MALLOC_TUNING=0`` before importing fastrnn to leave
malloc as it is; nothing is done where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1           # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20       # bytes: larger blocks are still mapped on their own
TRIM_THRESHOLD = 256 << 20      # bytes of free memory kept at the top of the heap


def _tune() -> bool:
    if os.environ.get("FASTRNN_MALLOC_TUNING", "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):     # glibc only: others differ
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


TUNED = _tune()
