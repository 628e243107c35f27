"""MPI for :mod:`fastrnn.distributed`: :class:`MPIComm`, a communicator over mpi4py.

mpi4py is an optional dependency (``pip install 'fastrnn[mpi]'`` installs mpi4py's binary
wheel and the MPICH wheel, which brings ``mpiexec``; an MPI already on the machine works
too): this module imports it, and so initialises MPI; ``import fastrnn`` does not.

A script that trains on every rank, started as ``mpiexec -n 2 python train.py``::

    import fastrnn, fastrnn.distributed
    from fastrnn.mpi import MPIComm

    comm = MPIComm()
    model = fastrnn.SequenceModel.build("lstm", ..., seed=comm.rank)
    with fastrnn.distributed.data_parallel(model, comm):
        model.fit(x, y, epochs=10, batch_size=256, seed=0, progress=comm.rank == 0)
    if comm.rank == 0:
        fastrnn.save(model, "model.npz")

**Threads.**  ``mpiexec`` sets no thread budget: without ``FASTRNN_NUM_THREADS`` or
``OMP_NUM_THREADS``, each rank would take every core of its affinity mask, and two ranks
on one machine would run twice as many threads as it has cores.  So where the budget came
from the affinity mask, :class:`MPIComm` shares the cores among the ranks on the same
machine: the cores of their affinity masks together, divided by their number (at least 1,
at most the rank's own cores).  ``share_cores=False`` leaves the budget alone.
"""

from __future__ import annotations

import os

import numpy as np
from mpi4py import MPI

from . import _runtime

__all__ = ["MPIComm"]


class MPIComm:
    """A :class:`fastrnn.distributed.Communicator` over an mpi4py communicator
    (``MPI.COMM_WORLD`` by default): ``allreduce_`` is ``Allreduce(MPI.IN_PLACE, buf,
    MPI.SUM)``, ``bcast_`` is ``Bcast``, ``bcast`` mpi4py's pickle-based ``bcast``.

    >>> from fastrnn.mpi import MPIComm
    >>> import numpy as np
    >>> comm = MPIComm()             # started without mpiexec: a world of one rank
    >>> buf = np.ones(3, np.float32)
    >>> comm.allreduce_(buf)                # the sum over the ranks: their number
    >>> buf / comm.size
    array([1., 1., 1.], dtype=float32)
    """

    def __init__(self, comm=None, share_cores: bool = True):
        self.comm = MPI.COMM_WORLD if comm is None else comm
        if not isinstance(self.comm, MPI.Comm):
            raise TypeError(f"comm must be an mpi4py communicator (MPI.Comm), got "
                            f"{type(comm).__name__}")
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        #: the thread budget this rank set (None: left as it was)
        self.num_threads = self._share_cores() if share_cores else None

    def _share_cores(self) -> int | None:
        """Divide the cores of this machine's ranks among them, where no budget was set."""
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            masks = local.allgather(sorted(os.sched_getaffinity(0)))
            if _runtime.BUDGET_SOURCE != "affinity mask":
                return None           # FASTRNN_NUM_THREADS or OMP_NUM_THREADS: the host's
            cores = set().union(*masks)
            n = max(1, min(_runtime.available_cores(), len(cores) // local.Get_size()))
        finally:
            local.Free()
        _runtime.set_num_threads(n)
        return n

    def allreduce_(self, buf: np.ndarray) -> None:
        """``buf`` := the sum over the ranks, in place."""
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        """``buf`` := rank ``root``'s, in place."""
        self.comm.Bcast(buf, root=root)

    def bcast(self, obj, root: int = 0):
        """Rank ``root``'s ``obj``, on every rank."""
        return self.comm.bcast(obj, root=root)
