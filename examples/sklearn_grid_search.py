"""A grid search over a recurrent classifier in a scikit-learn Pipeline, then on Dask.

The bundled 8x8 digits, flattened to 64 columns and standardised by ``StandardScaler``,
are turned back into sequences of 8 rows of 8 pixels and classified by
``fastrnn.sklearn.RNNClassifier``; ``GridSearchCV`` tries two hidden sizes and two
learning rates, first with joblib's default backend (processes on this machine), then
with joblib's Dask backend on a local Dask cluster when ``distributed`` is installed.

    pip install 'fastrnn[sklearn]' 'dask[distributed]'
    python examples/sklearn_grid_search.py [--samples 1797] [--epochs 8] [--jobs 2]
"""

import argparse
import time

import joblib
import numpy as np
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from fastrnn.data import load_digits
from fastrnn.sklearn import RNNClassifier

try:
    from distributed import Client, LocalCluster
except ImportError:                       # Dask is optional: its run is skipped without it
    Client = LocalCluster = None


def rows_as_steps(X: np.ndarray) -> np.ndarray:
    """(n, 64) pixels -> (n, 8, 8): 8 time steps of 8 pixels (a top-level function, so
    the pipeline pickles for the worker processes)."""
    return X.reshape(len(X), 8, 8)


def search(epochs: int, jobs: int) -> GridSearchCV:
    pipe = make_pipeline(StandardScaler(), FunctionTransformer(rows_as_steps),
                         RNNClassifier(epochs=epochs, random_state=0))
    grid = {"rnnclassifier__hidden_size": [16, 32], "rnnclassifier__lr": [3e-3, 1e-2]}
    return GridSearchCV(pipe, grid, cv=3, n_jobs=jobs)


def report(name: str, gs: GridSearchCV, X_test, y_test, seconds: float) -> None:
    print(f"{name}: best {gs.best_params_} (cv accuracy {gs.best_score_:.3f}), "
          f"test accuracy {gs.score(X_test, y_test):.3f}, {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1797)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    images, labels = load_digits()
    X = images.reshape(len(images), 64)[:args.samples]
    X_train, X_test, y_train, y_test = train_test_split(X, labels[:args.samples],
                                                        random_state=0)
    start = time.perf_counter()
    gs = search(args.epochs, args.jobs).fit(X_train, y_train)
    report("joblib (default backend)", gs, X_test, y_test, time.perf_counter() - start)

    if LocalCluster is None:
        print("distributed is not installed: the Dask run is skipped")
        return
    # one worker process of one thread per job; no dashboard
    with LocalCluster(n_workers=args.jobs, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        start = time.perf_counter()
        with joblib.parallel_backend("dask"):
            on_dask = search(args.epochs, -1).fit(X_train, y_train)
        report("joblib on Dask", on_dask, X_test, y_test, time.perf_counter() - start)
    same = np.allclose(gs.cv_results_["mean_test_score"],
                       on_dask.cv_results_["mean_test_score"])
    print(f"same cross-validation scores on both backends: {same}")


if __name__ == "__main__":
    main()
