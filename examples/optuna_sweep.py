"""A hyper-parameter sweep with Optuna: trials in threads, then on a local Dask cluster.

The bundled 8x8 digits are read row by row (8 steps of 8 pixels) by a recurrent
classifier; Optuna chooses the cell, the hidden size and the learning rate, and
``fastrnn.optuna.PruningCallback`` reports each epoch's validation loss so that the
median pruner stops the trials that lag behind.

* Threads: ``study.optimize(objective, n_jobs=2)`` runs two trials at a time in this
  process; each trial's kernels run on one thread (``with fastrnn.threads(1):``), so two
  trials fill two cores and no more.
* Dask (``--dask``): two worker processes share one study through Optuna's storage on
  the Dask scheduler (``optuna_integration.DaskStorage``); each worker runs its trials
  on the one thread Dask's nanny gives it (``OMP_NUM_THREADS=1``, which fastrnn reads).

    pip install 'fastrnn[optuna,dask]' optuna-integration
    python examples/optuna_sweep.py [--trials 12] [--epochs 6] [--dask]
"""

import argparse
import os
import time
import warnings

import numpy as np
import optuna
from optuna.exceptions import ExperimentalWarning

import fastrnn
from fastrnn.data import load_digits, train_test_split
from fastrnn.optuna import PruningCallback

try:                                     # optional: the --dask run needs them
    from distributed import Client, LocalCluster, wait
    from optuna_integration import DaskStorage
except ImportError:
    Client = LocalCluster = wait = DaskStorage = None


def digits(samples: int):
    images, labels = load_digits()
    x = images[:samples].reshape(-1, 8, 8)                  # 8 steps of 8 pixels
    return train_test_split(x, labels[:samples], test_fraction=0.25, seed=0)


def make_objective(samples: int, epochs: int):
    """The objective, with its data (a closure: it pickles whole for the Dask workers)."""
    x_train, x_val, y_train, y_val = digits(samples)

    def objective(trial: optuna.Trial) -> float:
        cell = trial.suggest_categorical("cell", ["gru", "lstm"])
        hidden = trial.suggest_int("hidden_size", 8, 48, log=True)
        lr = trial.suggest_float("lr", 1e-3, 3e-2, log=True)
        with fastrnn.threads(1):                 # this trial's share of the cores
            trial.set_user_attr("threads", fastrnn.get_num_threads())
            trial.set_user_attr("pid", os.getpid())
            model = fastrnn.SequenceModel.build(cell, input_size=8, hidden_size=hidden,
                                                output_size=10, head="many_to_one", seed=0)
            history = model.fit(x_train, y_train, epochs=epochs, batch_size=32,
                                optimizer=fastrnn.optim.Adam(model.parameters(), lr=lr),
                                validation_data=(x_val, y_val), seed=0, progress=False,
                                callbacks=[PruningCallback(trial, "val_loss")])
        return history["val_loss"][-1]

    return objective


def new_study(storage=None, seed: int = 0) -> optuna.Study:
    return optuna.create_study(
        direction="minimize", storage=storage, sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))


def optimize_on_worker(study_name: str, storage, objective, n_trials: int, seed: int) -> None:
    """One worker's share of the trials of the study in ``storage``, drawn by a sampler
    seeded for this worker (a sampler pickled to every worker would suggest the same
    parameters on each)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=seed),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=2,
                                                                 n_warmup_steps=1))
    study.optimize(objective, n_trials=n_trials)


def report(name: str, study: optuna.Study, seconds: float) -> None:
    states = [t.state for t in study.trials]
    done = states.count(optuna.trial.TrialState.COMPLETE)
    pruned = states.count(optuna.trial.TrialState.PRUNED)
    threads = sorted({t.user_attrs.get("threads") for t in study.trials})
    processes = len({t.user_attrs.get("pid") for t in study.trials})
    print(f"{name}: {len(states)} trials ({done} complete, {pruned} pruned) in "
          f"{seconds:.1f} s, in {processes} process(es), kernel threads per trial "
          f"{threads}; best val_loss {study.best_value:.4f} with {study.best_params}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--samples", type=int, default=1797)
    parser.add_argument("--dask", action="store_true", help="also run on a Dask cluster")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=ExperimentalWarning)      # DaskStorage
    objective = make_objective(args.samples, args.epochs)

    study = new_study()
    start = time.perf_counter()
    study.optimize(objective, n_trials=args.trials, n_jobs=2)
    report("threads (n_jobs=2)", study, time.perf_counter() - start)

    if not args.dask:
        return
    if DaskStorage is None:
        raise SystemExit("--dask needs distributed and optuna-integration")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(warnings.filterwarnings, "ignore", category=ExperimentalWarning)
        storage = DaskStorage(client=client)     # the study lives on the scheduler
        study = new_study(storage)
        start = time.perf_counter()
        # one optimize loop on each worker, each drawing trials of the one study
        workers = sorted(client.scheduler_info()["workers"])
        per_worker = np.array_split(np.arange(args.trials), len(workers))
        futures = [client.submit(optimize_on_worker, study.study_name, storage, objective,
                                 len(part), seed, workers=[worker], pure=False)
                   for seed, (worker, part) in enumerate(zip(workers, per_worker))]
        wait(futures)
        for f in futures:
            f.result()                           # re-raise a worker's error, if any
        report("Dask (2 workers, DaskStorage)", study, time.perf_counter() - start)


if __name__ == "__main__":
    main()
