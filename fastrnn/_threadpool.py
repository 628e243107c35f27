"""fastrnn's controller for threadpoolctl, registered when threadpoolctl is installed.

threadpoolctl (``threadpool_limits``, ``threadpool_info``) is how scikit-learn, joblib and
other engines limit the thread pools of the native libraries in a process.  It finds them
among the loaded shared libraries by file name; this controller makes fastrnn's compiled
BLAS layer (``fastrnn/_blas*.so``, recognised by the symbol ``fastrnn_num_threads`` it
exports) one of them, with ``user_api="fastrnn"``:

    >>> import threadpoolctl                             # doctest: +SKIP
    >>> with threadpoolctl.threadpool_limits(1):         # doctest: +SKIP
    ...     fastrnn.get_num_threads()
    1

It gets and sets the process-wide value (``fastrnn.set_num_threads``), as threadpoolctl
does for BLAS; a thread inside a ``fastrnn.threads(k)`` block keeps its own limit.
threadpoolctl is optional: without it this module does nothing.  Registering is
process-wide (every ``threadpool_limits`` then limits fastrnn too); ``OPT_OUT`` says how
not to.
"""

from __future__ import annotations

import os

from . import _runtime
from ._version import __version__

try:
    import threadpoolctl
except ImportError:               # optional: nothing to register with
    threadpoolctl = None

OPT_OUT = "FASTRNN_THREADPOOLCTL=0 before importing fastrnn"
REGISTERED = False
if threadpoolctl is None:
    REASON = "left alone: threadpoolctl is not installed"
elif os.environ.get("FASTRNN_THREADPOOLCTL", "1").strip() == "0":
    REASON = "left alone: FASTRNN_THREADPOOLCTL=0"
else:
    REASON = "registered by fastrnn: threadpool_limits and threadpool_info reach its kernels"

if threadpoolctl is not None and REASON.startswith("registered"):

    class FastrnnController(threadpoolctl.LibController):
        """The threads of fastrnn's kernels, as threadpoolctl sees a library's pool."""

        user_api = "fastrnn"
        internal_api = "fastrnn"
        filename_prefixes = ("_blas",)
        check_symbols = ("fastrnn_num_threads",)     # not another package's _blas module

        def get_num_threads(self) -> int:
            """The process-wide value (what threads outside a ``fastrnn.threads`` block
            use)."""
            return _runtime.process_num_threads()

        def set_num_threads(self, num_threads: int) -> None:
            """``fastrnn.set_num_threads(num_threads)``: capped at the cores."""
            _runtime.set_num_threads(num_threads)

        def get_version(self) -> str:
            return __version__

    threadpoolctl.register(FastrnnController)
    REGISTERED = True

_runtime.EXTRA_SETTINGS["threadpoolctl"] = REGISTERED
_runtime.EXTRA_SETTINGS["rows"] = [_runtime.Setting(
    "threadpoolctl controller (user_api='fastrnn')",
    "registered" if REGISTERED else "not registered", REASON, OPT_OUT)]
