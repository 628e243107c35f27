"""The precision of the recurrent layers' matrix products: float32 (the default) or
bfloat16 mixed precision, chosen per thread with :func:`autocast`.

Under ``autocast("bfloat16")`` the float32 recurrent layers (:class:`fastrnn.RNN`,
:class:`fastrnn.LSTM`, :class:`fastrnn.GRU`, :class:`fastrnn.FastRNN`,
:class:`fastrnn.FastGRNN`, and the sequence models built on them) multiply in bfloat16 with
float32 sums, as ``torch.autocast("cpu", dtype=torch.bfloat16)`` does: the input projection
of all steps, each step's recurrent product and, in training, the products of the
backward pass convert their operands to bf16 (8 bits of mantissa; to nearest, ties to
even) and add the exact products in float32.  Everything else stays float32: the gate
nonlinearities and state updates, the states, the caches, the parameters ("master
weights") and their gradients, the optimizer, the heads and the losses.  On a CPU with
AMX-BF16 (Intel Sapphire Rapids and newer) the products run on the tile units, several
times faster than float32; with AVX512-BF16 alone, or neither, they are correct but no
faster (fastrnn/_b16.h picks the path; ``FASTRNN_ISA`` caps it, as it caps the int8
products).

What it does not cover is refused with a ``ValueError`` naming it, rather than run in
float32 unannounced: the GRU with r before the product, the layer-normalised LSTM, an
LSTM's projection, and the cells' one-step calls and :class:`fastrnn.Stepper` (a cell's
``forward_train`` runs the sequence kernel and is covered).  float64 layers are left in
float64, as PyTorch leaves float64 alone.  Outside :func:`autocast` nothing changes:
float32 runs bit for bit as before.

Example::

    >>> import numpy as np, fastrnn
    >>> lstm = fastrnn.LSTM(8, 32, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((5, 3, 8)).astype(np.float32)
    >>> y32, _ = lstm(x)
    >>> with fastrnn.autocast("bfloat16"):
    ...     y16, _ = lstm(x)
    >>> bool(np.abs(y16 - y32).max() < 0.05)
    True
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

#: the names :func:`autocast` takes for each precision of the products
PRECISIONS = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float32": None, "fp32": None}

_local = threading.local()


def compute_dtype() -> str | None:
    """The precision of the calling thread's products: ``"bfloat16"`` inside
    :func:`autocast`, else None (float32, or the layers' own dtype).

    >>> from fastrnn.precision import compute_dtype
    >>> compute_dtype() is None
    True
    """
    return getattr(_local, "dtype", None)


def precision_name(dtype: object, name: str = "dtype") -> str | None:
    """``"bfloat16"`` or None (float32) for one of :data:`PRECISIONS`' names (or None);
    a ``ValueError`` naming ``name`` otherwise.

    >>> from fastrnn.precision import precision_name
    >>> precision_name("bf16"), precision_name("float32")
    ('bfloat16', None)
    """
    if dtype is None:
        return None
    key = getattr(dtype, "__name__", dtype)           # numpy.float32 and the like
    if not isinstance(key, str) or key.lower() not in PRECISIONS:
        raise ValueError(f"{name} must be one of {sorted(PRECISIONS)} or None, got "
                         f"{dtype!r}")
    return PRECISIONS[key.lower()]


@contextlib.contextmanager
def autocast(dtype: object = "bfloat16", enabled: bool = True) -> Iterator[None]:
    """Run the recurrent layers' products of the calling thread in ``dtype``
    (``"bfloat16"``/``"bf16"``, or ``"float32"`` to turn an outer autocast off) inside the
    ``with`` block; ``enabled=False`` leaves the precision as it is.  Nested blocks
    restore the outer precision on exit.  See the module's documentation for what
    changes and what is refused.

    The backward pass of a training forward pass runs in the precision its forward pass
    ran in, whatever the precision at the time of the backward call.

    >>> import fastrnn
    >>> from fastrnn.precision import compute_dtype
    >>> with fastrnn.autocast("bfloat16"):
    ...     inner = compute_dtype()
    >>> inner, compute_dtype()
    ('bfloat16', None)
    """
    chosen = precision_name(dtype)
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    if not enabled:
        yield
        return
    outer = compute_dtype()
    _local.dtype = chosen
    try:
        yield
    finally:
        _local.dtype = outer


def precision_scope(precision: object) -> contextlib.AbstractContextManager:
    """The context of a ``precision=`` argument (``fit``, ``predict``, ``evaluate``):
    :func:`autocast` of it, or nothing for None (the caller's precision).

    >>> from fastrnn.precision import compute_dtype, precision_scope
    >>> with precision_scope("bfloat16"):
    ...     compute_dtype()
    'bfloat16'
    """
    if precision is None:
        return contextlib.nullcontext()
    precision_name(precision, "precision")
    return autocast(precision)
