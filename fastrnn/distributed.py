"""Synchronous data-parallel training: :func:`data_parallel` around ``fit``, over a
:class:`Communicator`.

Every rank (a process, or a thread of :class:`ThreadGroup`) holds the whole data set and
runs the same ``fit`` on it::

    from fastrnn.mpi import MPIComm
    with fastrnn.distributed.data_parallel(model, MPIComm()):
        model.fit(x, y, epochs=10, batch_size=256, seed=0)

Inside the block ``fit`` is the 1-process ``fit`` of the same global batches, shared:

* every rank starts from rank 0's weights and shuffles with rank 0's ``seed`` (one is
  drawn there when ``seed`` is None), so the global batches are the same everywhere;
* each rank takes its contiguous part of each global batch (``numpy.array_split`` of the
  batch's rows into ``size`` parts) and computes the gradient of its part's loss;
* one in-place all-reduce of one flat buffer per step sums every rank's gradient
  (weighted by the entries its loss counted), the loss and the count; divided by the
  global count, that is the gradient of the global batch's mean loss;
* every rank then clips and steps with the same numbers, so the weights stay equal on
  every rank (bit for bit: the all-reduce gives every rank the same sum);
* the epoch's logs and the validation logs are the sums over all ranks (each rank
  evaluates its part of ``validation_data``), so callbacks see the same values
  everywhere and stop on the same epoch.

A 2-rank run equals the 1-process run of the same global batches up to the rounding of
the gradient's sum in another order: after 15 to 45 Adam steps the weights differ by at
most 6e-7 in float32 and 2.3e-15 in float64 (``tests/test_distributed.py`` allows 5e-6
and 1e-13); the difference grows slowly with the steps, as any rounding does in training.
A rank whose part of a (last, short) batch is empty computes on one row of the batch
with weight 0, so that every rank joins every all-reduce.  The count travels in the
gradients' dtype: exact up to 2**24 counted entries a step in float32.

Dropout masks come from each layer's own generator: ranks whose models were built with
the same ``seed`` draw the same masks for their parts.  Build each rank's model with a
seed of its own (``seed=rank``): the weights are rank 0's all the same.  Callbacks run on
every rank; give the ones that write files (``ModelCheckpoint``) to rank 0 only.

A communicator is anything with ``rank``, ``size``, ``allreduce_(buf)`` (sum in place
over the ranks, the same result on every rank), ``bcast_(buf, root)`` (an array in place)
and ``bcast(obj, root)`` (a small object): :class:`fastrnn.mpi.MPIComm` over mpi4py,
:class:`ThreadGroup`'s communicators in one process (for tests and for trying it).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from ._validate import positive_int
from .module import Module

__all__ = ["Communicator", "ThreadGroup", "data_parallel"]


@runtime_checkable
class Communicator(Protocol):
    """What data-parallel training needs of a group of ``size`` ranks.

    >>> import fastrnn.distributed
    >>> comm = fastrnn.distributed.ThreadGroup(1).comms[0]
    >>> isinstance(comm, fastrnn.distributed.Communicator), comm.rank, comm.size
    (True, 0, 1)
    """

    rank: int
    size: int

    def allreduce_(self, buf: np.ndarray) -> None:
        """``buf`` := the sum of every rank's ``buf``, in place, the same on every rank."""

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        """``buf`` := rank ``root``'s ``buf``, in place."""

    def bcast(self, obj, root: int = 0):
        """Rank ``root``'s ``obj`` (a small picklable object), returned on every rank."""


class _ThreadComm:
    """One rank of a :class:`ThreadGroup`."""

    def __init__(self, group: ThreadGroup, rank: int):
        self.group, self.rank, self.size = group, rank, group.size

    def _exchange(self, value):
        """Every rank's ``value``, by rank, once all have given theirs."""
        g = self.group
        g.slots[self.rank] = value
        g.barrier.wait()
        return list(g.slots)

    def allreduce_(self, buf: np.ndarray) -> None:
        bufs = self._exchange(buf)
        if any(b.shape != buf.shape or b.dtype != buf.dtype for b in bufs):
            self.group.barrier.abort()
            raise ValueError(f"allreduce_: the ranks' buffers differ: "
                             f"{[(b.shape, str(b.dtype)) for b in bufs]}")
        total = bufs[0].copy()
        for b in bufs[1:]:                 # in rank order: the same sum on every rank
            total += b
        self.group.barrier.wait()          # every rank has read every buffer
        buf[...] = total

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        source = self._exchange(buf)[root]
        if self.rank != root:
            buf[...] = source
        self.group.barrier.wait()

    def bcast(self, obj, root: int = 0):
        source = self._exchange(obj)[root]
        obj = obj if self.rank == root else copy.deepcopy(source)
        self.group.barrier.wait()
        return obj


class ThreadGroup:
    """``size`` ranks in one process, one thread each, for tests and trials of data
    parallelism (the kernels release the GIL, so the ranks do run side by side).

    ``run(fn)`` calls ``fn(comm)`` in ``size`` threads, one communicator each, and
    returns their results by rank; an exception in one rank stops the others and is
    raised.

    >>> import numpy as np, fastrnn.distributed
    >>> def total(comm):
    ...     buf = np.full(3, comm.rank + 1.0)
    ...     comm.allreduce_(buf)
    ...     return buf
    >>> fastrnn.distributed.ThreadGroup(2).run(total)
    [array([3., 3., 3.]), array([3., 3., 3.])]
    """

    def __init__(self, size: int):
        self.size = positive_int(size, "size")
        self.barrier = threading.Barrier(self.size)
        self.slots: list = [None] * self.size
        self.comms = [_ThreadComm(self, r) for r in range(self.size)]

    def run(self, fn: Callable) -> list:
        results: list = [None] * self.size
        errors: list = [None] * self.size

        def rank_main(r: int) -> None:
            try:
                results[r] = fn(self.comms[r])
            except BaseException as err:       # noqa: B036 - re-raised in the caller
                errors[r] = err
                self.barrier.abort()           # the other ranks stop waiting

        threads = [threading.Thread(target=rank_main, args=(r,), name=f"rank-{r}")
                   for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first = next((e for e in errors if e is not None
                      and not isinstance(e, threading.BrokenBarrierError)), None)
        first = first or next((e for e in errors if e is not None), None)
        self.barrier.reset()
        if first is not None:
            raise first
        return results


class _DataParallel:
    """What ``fit`` does differently inside :func:`data_parallel` (``_Fittable`` calls
    it): the shared start, each rank's part of a batch, the sums over the ranks."""

    def __init__(self, comm: Communicator):
        self.comm = comm
        self.weight = 1.0          # 0 for a rank that computes on a borrowed row
        self.buffer: np.ndarray | None = None

    def begin(self, model: Module, seed):
        """Rank 0's ``seed`` (drawn there when None) and weights, on every rank."""
        if seed is None and self.comm.rank == 0:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        seed = self.comm.bcast(seed, 0)
        params = model.parameters()
        flat = self._flat(params)
        offset = 0
        for p in params:
            flat[offset:offset + p.data.size] = p.data.ravel()
            offset += p.data.size
        self.comm.bcast_(flat, 0)
        offset = 0
        for p in params:
            p.data[...] = flat[offset:offset + p.data.size].reshape(p.shape)
            offset += p.data.size
        return seed

    def _flat(self, params) -> np.ndarray:
        """The one buffer of every gradient, the loss and the count (kept for the fit)."""
        size = sum(p.data.size for p in params) + 2
        dtype = np.result_type(*[p.dtype for p in params])
        if self.buffer is None or self.buffer.size != size or self.buffer.dtype != dtype:
            self.buffer = np.empty(size, dtype)
        return self.buffer

    def shard(self, idx: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's part of a global batch's rows and its weight (0 for an empty part,
        which computes on the batch's first row instead)."""
        part = np.array_split(idx, self.comm.size)[self.comm.rank]
        self.weight = 1.0 if part.size else 0.0
        return (part if part.size else idx[:1]), self.weight

    def part(self, columns: list) -> list:
        """This rank's contiguous part of a data set's rows (validation)."""
        N, r, size = columns[0].shape[0], self.comm.rank, self.comm.size
        lo, hi = N * r // size, N * (r + 1) // size
        return [None if c is None else c[lo:hi] for c in columns]

    def reduce(self, params, loss_sum: float, count: float) -> tuple[float, float]:
        """Every rank's gradients (each the mean over its ``count`` entries) summed as
        sums, into each ``p.grad`` as the mean over the global count; returns the global
        loss sum and count."""
        buf = self._flat(params)
        w = self.weight * count
        offset = 0
        for p in params:
            np.multiply(p.grad.ravel(), w, out=buf[offset:offset + p.grad.size])
            offset += p.grad.size
        buf[-2], buf[-1] = self.weight * loss_sum, w
        self.comm.allreduce_(buf)
        loss_sum, count = float(buf[-2]), float(buf[-1])
        scale = buf.dtype.type(1.0 / max(count, 1.0))
        offset = 0
        for p in params:
            np.multiply(buf[offset:offset + p.grad.size].reshape(p.shape), scale, out=p.grad)
            offset += p.grad.size
        return loss_sum, count

    def sum(self, *values: float) -> tuple[float, ...]:
        """Each of a few numbers summed over the ranks (float64)."""
        buf = np.array(values, np.float64)
        self.comm.allreduce_(buf)
        return tuple(float(v) for v in buf)

    def all(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        return self.sum(0.0 if flag else 1.0)[0] == 0.0


@contextlib.contextmanager
def data_parallel(model: Module, comm: Communicator) -> Iterator[Module]:
    """Within the block, ``model.fit`` trains data-parallel over ``comm``'s ranks (see
    the module's text: rank 0's weights and seed, each rank its part of every global
    batch, one all-reduce of the gradients a step).  Every rank must run the same
    ``fit`` on the same data.

    >>> import numpy as np, fastrnn, fastrnn.distributed
    >>> x = np.random.default_rng(0).standard_normal((64, 6, 2)).astype(np.float32)
    >>> def train(comm):
    ...     model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=4,
    ...                                         output_size=2, head="many_to_many",
    ...                                         loss="mse", seed=comm.rank)
    ...     with fastrnn.distributed.data_parallel(model, comm):
    ...         model.fit(x, x, epochs=2, batch_size=16, seed=0, progress=False)
    ...     return model.state_dict()
    >>> a, b = fastrnn.distributed.ThreadGroup(2).run(train)
    >>> all(np.array_equal(a[k], b[k]) for k in a)        # the same model on both ranks
    True
    """
    if not (isinstance(model, Module) and hasattr(type(model), "_data_parallel")):
        raise TypeError(f"model must be a fastrnn model with fit (SequenceModel, "
                        f"Sequential, Seq2Seq), got {type(model).__name__}")
    if not isinstance(comm, Communicator):
        raise TypeError(f"comm must have rank, size, allreduce_, bcast_ and bcast (a "
                        f"fastrnn.distributed.Communicator), got {type(comm).__name__}")
    if model._data_parallel is not None:
        raise ValueError("model is already inside a data_parallel block")
    model._data_parallel = _DataParallel(comm)
    try:
        yield model
    finally:
        del model._data_parallel             # back to the class's None
