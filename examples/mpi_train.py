"""Data-parallel training over MPI ranks: the bundled digits, read row by row.

Every rank loads the same data and runs the same ``fit``; inside
``fastrnn.distributed.data_parallel`` each rank computes the gradient of its part of
every global batch, one all-reduce a step sums them, and every rank applies the same
Adam step, so all ranks end with the same model (rank 0 checks it and saves it).

    pip install 'fastrnn[mpi]'
    mpiexec -n 2 python examples/mpi_train.py [--epochs 5] [--out digits-mpi.npz]
"""

import argparse

import numpy as np

import fastrnn
import fastrnn.distributed
from fastrnn.data import load_digits, train_test_split
from fastrnn.mpi import MPIComm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--out", default="digits-mpi.npz")
    args = parser.parse_args()

    comm = MPIComm()          # the ranks on one machine share its cores between them
    images, labels = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(images.reshape(-1, 8, 8), labels,
                                                        seed=0)
    # a seed per rank: rank 0's weights reach every rank, and dropout, if any, differs
    model = fastrnn.SequenceModel.build("gru", input_size=8, hidden_size=args.hidden,
                                        output_size=10, head="many_to_one",
                                        seed=comm.rank)
    with fastrnn.distributed.data_parallel(model, comm):
        history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, seed=0,
                            validation_data=(x_test, y_test), progress=False)

    weights = np.concatenate([p.data.ravel() for p in model.parameters()])
    first = weights.copy()
    comm.bcast_(first, root=0)
    same = bool(comm.comm.allreduce(int(np.array_equal(weights, first))) == comm.size)
    if comm.rank == 0:
        print(f"{comm.size} ranks x {fastrnn.get_num_threads()} kernel thread(s): "
              f"val_accuracy {history['val_accuracy'][-1]:.3f} after {history.epochs} "
              f"epochs; the same weights on every rank: {same}")
        fastrnn.save(model, args.out)


if __name__ == "__main__":
    main()
