"""Past one machine, measured on this one: Dask batch inference with 1 and 2 workers, and
data-parallel training over 1 and 2 MPI ranks.  A benchmark, not a test: nothing is
asserted.

    python bench/bench_scale.py dask [--workers 1] [--sequences 8192] [--repeats 3]
    python bench/bench_scale.py dask --defaults        # threads a worker gets by default
    mpiexec -n 2 python bench/bench_scale.py mpi [--epochs 3] [--save weights.npz]
    python bench/bench_scale.py compare a.npz b.npz      # how far two runs' weights lie

``dask``: an LSTM classifier (2 layers, H=128, T=100 steps of 32 features, float32) over
``--sequences`` sequences in chunks of 256, on a ``LocalCluster`` of ``--workers``
processes of one thread each; the input is made and persisted on the workers first, so
the figure is the inference alone: sequences per second, median of the repeats.

``mpi``: the same model's shape (H=128, T=50 steps of 16 features) trained on 8192
sequences, global batches of 256, Adam; each rank fits data-parallel
(``fastrnn.distributed.data_parallel`` over ``fastrnn.mpi.MPIComm``); rank 0 prints the
median time per epoch, the time spent in the all-reduce, and the kernels' threads per
rank.  ``--save`` writes rank 0's final weights, which ``compare`` reads.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fastrnn  # noqa: E402
import fastrnn.distributed  # noqa: E402


def cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def dask_bench(args) -> None:
    import dask.array as da                          # optional: this subcommand only
    from distributed import Client, LocalCluster, wait

    import fastrnn.dask

    if args.defaults:
        with LocalCluster(dashboard_address=None) as cluster, Client(cluster) as client:
            info = client.scheduler_info()["workers"].values()
            omp = sorted(set(client.run(os.getenv, "OMP_NUM_THREADS").values()))
            print(f"LocalCluster() defaults on {os.cpu_count()} cores: {len(info)} "
                  f"workers x {[w['nthreads'] for w in info]} threads; fastrnn threads "
                  f"per worker {sorted(client.run(fastrnn.get_num_threads).values())}, "
                  f"OMP_NUM_THREADS {omp}")
        return
    model = fastrnn.SequenceModel.build("lstm", input_size=32, hidden_size=128,
                                        output_size=10, head="many_to_one", num_layers=2,
                                        seed=0)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        x = da.random.default_rng(0).standard_normal((args.sequences, 100, 32),
                                                     chunks=(256, 100, 32),
                                                     dtype=np.float32).persist()
        wait(x)
        times = []
        for _ in range(args.repeats + 1):                    # the first: a warm-up
            start = time.perf_counter()
            fastrnn.dask.predict(model, x).compute()
            times.append(time.perf_counter() - start)
        t = statistics.median(times[1:])
        threads = sorted(client.run(fastrnn.get_num_threads).values())
    print(f"dask: {args.workers} worker(s) x 1 thread (fastrnn threads {threads}), "
          f"{args.sequences} sequences: {t:.3f} s, {args.sequences / t:.0f} sequences/s "
          f"[{cpu()}, {os.cpu_count()} cores]")


class _Timed:
    """A communicator that adds up the time spent in its all-reduce."""

    def __init__(self, comm):
        self.comm, self.rank, self.size, self.seconds, self.calls = comm, comm.rank, \
            comm.size, 0.0, 0

    def allreduce_(self, buf):
        start = time.perf_counter()
        self.comm.allreduce_(buf)
        self.seconds += time.perf_counter() - start
        self.calls += 1

    def bcast_(self, buf, root=0):
        self.comm.bcast_(buf, root)

    def bcast(self, obj, root=0):
        return self.comm.bcast(obj, root)


class _EpochTimes(fastrnn.training.Callback):
    def on_train_begin(self, model, optimizer):
        self.times, self.start = [], time.perf_counter()

    def on_epoch_end(self, model, epoch, logs):
        now = time.perf_counter()
        self.times.append(now - self.start)
        self.start = now
        return False


def mpi_bench(args) -> None:
    from fastrnn.mpi import MPIComm                  # optional: this subcommand only

    comm = _Timed(MPIComm())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8192, 50, 16)).astype(np.float32)
    y = rng.integers(0, 10, 8192)
    model = fastrnn.SequenceModel.build("lstm", input_size=16, hidden_size=128,
                                        output_size=10, head="many_to_one", seed=comm.rank)
    epochs = _EpochTimes()
    with fastrnn.distributed.data_parallel(model, comm):
        history = model.fit(x, y, epochs=args.epochs, batch_size=256, seed=0,
                            progress=False, callbacks=[epochs])
    if comm.rank == 0:
        t = statistics.median(epochs.times)
        print(f"mpi: {comm.size} rank(s) x {fastrnn.get_num_threads()} thread(s): "
              f"{t:.3f} s per epoch (median of {args.epochs}; epochs {epochs.times}), "
              f"all-reduce {1e3 * comm.seconds / max(comm.calls, 1):.3f} ms a call "
              f"({comm.calls} calls), final loss {history['loss'][-1]:.6f} "
              f"[{cpu()}, {os.cpu_count()} cores]")
        if args.save:
            np.savez(args.save, **model.state_dict())


def compare(args) -> None:
    a, b = np.load(args.a), np.load(args.b)
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a.files)
    print(f"largest difference of a weight: {worst:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dask")
    d.add_argument("--workers", type=int, default=1)
    d.add_argument("--sequences", type=int, default=8192)
    d.add_argument("--repeats", type=int, default=3)
    d.add_argument("--defaults", action="store_true")
    m = sub.add_parser("mpi")
    m.add_argument("--epochs", type=int, default=3)
    m.add_argument("--save")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = parser.parse_args()
    {"dask": dask_bench, "mpi": mpi_bench, "compare": compare}[args.what](args)


if __name__ == "__main__":
    main()
