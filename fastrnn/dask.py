"""Batch inference over a Dask array: :func:`predict`.

Dask is an optional dependency (``pip install 'fastrnn[dask]'``; ``distributed`` for a
cluster): this module imports it, ``import fastrnn`` does not.

A model maps over the sequences of a ``dask.array`` of shape ``(N, T, F)`` (or token ids
``(N, T)``) chunked along ``N``: each chunk of sequences is one task, which calls the
model's ``predict``, ``predict_proba`` or ``forward`` on it.  The model is one key of the
graph, a dependency of every task: a distributed scheduler sends it to each worker once
(pickled small: :class:`~fastrnn.Parameter` leaves its gradient out, protocol 5 ships the
arrays out of band), not once per chunk.

What fastrnn needs from the workers: one budget of threads each.  Dask's nanny starts
worker processes with ``OMP_NUM_THREADS=1``, which fastrnn reads at import, so a worker's
kernels run on one thread and ``n_workers`` processes share the cores without
oversubscribing them.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

__all__ = ["predict"]

#: the model methods :func:`predict` maps
METHODS = ("predict", "predict_proba", "forward")


def _apply(model, x, lengths, method, kwargs):
    """One chunk's task: the model's ``method`` on ``x`` (and ``lengths``)."""
    fn = getattr(model, method)
    return fn(x, **kwargs) if lengths is None else fn(x, lengths, **kwargs)


def _unknown(chunks) -> bool:
    """Whether some chunk size is unknown (Dask writes nan)."""
    return any(isinstance(c, float) and c != c for c in chunks)


def _lengths_blocks(lengths, chunks: tuple[int, ...]) -> list:
    """``lengths`` (N,) cut as ``x`` is along N: numpy arrays, or delayed blocks of a Dask
    array rechunked to ``x``'s chunks."""
    N = sum(chunks)
    if isinstance(lengths, da.Array):
        if lengths.ndim != 1 or lengths.shape[0] != N:
            raise ValueError(f"lengths must have shape (N,) = ({N},), got {lengths.shape}")
        if _unknown(lengths.chunks[0]):
            raise ValueError("lengths has unknown chunk sizes: call "
                             "lengths.compute_chunk_sizes() first")
        return list(lengths.rechunk((chunks,)).to_delayed())
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.shape[0] != N:
        raise ValueError(f"lengths must have shape (N,) = ({N},), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    bounds = np.cumsum((0,) + chunks)
    return [arr[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def predict(model, x, lengths=None, method: str = "predict", **kwargs):
    """Map ``model.<method>`` over the sequences of a Dask array, chunk by chunk.

    Parameters
    ----------
    model
        A fitted model: :class:`~fastrnn.SequenceModel`, :class:`~fastrnn.Sequential`,
        a :mod:`fastrnn.sklearn` estimator, or anything with the method, called as
        ``method(x_chunk, lengths_chunk, **kwargs)``.
    x : dask.array.Array
        ``(N, T, F)`` sequences (or ``(N, T)`` token ids), sample-first.  Chunks along
        ``T`` or ``F`` are merged (a sequence is one task's work); chunks along ``N``
        are the tasks.
    lengths : numpy or dask array (N,), optional
        One length per sequence, cut along ``N`` as ``x`` is.
    method : {"predict", "predict_proba", "forward"}
    **kwargs
        Passed to the method on every chunk (``batch_size=``).

    Returns
    -------
    dask.array.Array
        Lazy, chunked along ``N`` as ``x``; the rest of its shape and its dtype are those
        of the method's answer for one sequence.  ``.compute()`` equals the method on
        the whole array (up to the rounding of the batch size in float32).

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastrnn, fastrnn.dask
    >>> model = fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=8,
    ...                                     output_size=4, head="many_to_one", seed=0)
    >>> x = da.random.default_rng(0).standard_normal((100, 12, 3), chunks=(25, 12, 3))
    >>> y = fastrnn.dask.predict(model, x.astype(np.float32))
    >>> y.shape, y.chunks
    ((100,), ((25, 25, 25, 25),))
    >>> bool((y.compute() == model.predict(x.compute().astype(np.float32))).all())
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not callable(getattr(model, method, None)):
        raise TypeError(f"model has no method {method!r}: got {type(model).__name__}")
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask.array.Array, got {type(x).__name__} (wrap a "
                        f"numpy array with dask.array.from_array(x, chunks=...))")
    if x.ndim not in (2, 3):
        raise ValueError(f"x must have shape (N, T, F) or (N, T), got {x.shape}")
    if _unknown(x.chunks[0]):
        raise ValueError("x has unknown chunk sizes along N: call x.compute_chunk_sizes() "
                         "first")
    if x.numblocks[1:] != (1,) * (x.ndim - 1):
        x = x.rechunk({axis: -1 for axis in range(1, x.ndim)})
    chunks = tuple(int(c) for c in x.chunks[0])
    # the answer's shape past N and its dtype, from one sequence of zeros, here
    probe = _apply(model, np.zeros((1,) + x.shape[1:], x.dtype), None, method, kwargs)
    tail, dtype = probe.shape[1:], probe.dtype
    blocks = list(x.to_delayed().ravel())
    lengths_blocks = ([None] * len(blocks) if lengths is None
                      else _lengths_blocks(lengths, chunks))
    shipped = dask.delayed(model, pure=True)      # one key: sent to each worker once
    task = dask.delayed(_apply, pure=True)
    parts = [da.from_delayed(task(shipped, b, lb, method, kwargs), (n,) + tail, dtype=dtype)
             for b, lb, n in zip(blocks, lengths_blocks, chunks)]
    return da.concatenate(parts, axis=0)
