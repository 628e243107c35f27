"""fastrnn.sklearn: scikit-learn's own estimator checks on RNNClassifier and RNNRegressor,
the input conventions (2-D/3-D, NaN padding, lengths), pickling, partial_fit, and a
grid search in a Pipeline with joblib's default backend and on a Dask cluster."""

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

import joblib  # noqa: E402
import sklearn  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn.sklearn import RNNClassifier, RNNRegressor  # noqa: E402

# Small and quick, yet enough to pass scikit-learn's accuracy (> 0.83 on blobs) and R²
# (> 0.5 on make_regression) checks: a few hundred sequences of 2 and 10 steps.
FAST_CLASSIFIER = RNNClassifier(hidden_size=8, epochs=5, random_state=0)
FAST_REGRESSOR = RNNRegressor(cell="rnn", hidden_size=8, epochs=20, batch_size=16, lr=1e-2,
                              random_state=0)

#: The checks that cannot apply to a sequence model, each with its reason.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "RNNClassifier": {},
    "RNNRegressor": {},
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS[type(estimator).__name__]


@parametrize_with_checks([FAST_CLASSIFIER, FAST_REGRESSOR],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
