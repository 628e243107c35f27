"""scikit-learn estimators over :class:`~fastrnn.SequenceModel`: :class:`RNNClassifier`
and :class:`RNNRegressor`.

scikit-learn is an optional dependency (``pip install 'fastrnn[sklearn]'``): this module
imports it, ``import fastrnn`` does not.

**Inputs.**
``X`` is sample-first: a 2-D ``X (n, T)`` holds ``n`` univariate sequences of ``T`` steps
(each row is one sequence, each column one time step); a 3-D ``X (n, T, F)`` holds ``n``
sequences of ``F`` features a step.  ``n_features_in_`` counts the columns as
scikit-learn does (``X.shape[1]``: the ``T`` steps), ``input_size_`` the features a step
(1 for a 2-D ``X``); ``predict`` needs both to be those of ``fit``.

**Variable lengths.**
Sequences shorter than ``T`` are padded at their end with NaN: a step whose features are
all NaN is padding, and a sequence's padding is the run of such steps at its end.  This
is the primary convention because it needs nothing from scikit-learn: a padded ``X`` is
one array, and ``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and joblib split,
copy and send it like any other.  A NaN before a finite step, a sequence of padding
only, a step with some but not all features NaN, and inf anywhere raise ``ValueError``
(so does any NaN under ``lengths=``: there the lengths say where the padding is).

``fit``, ``partial_fit``, ``predict``, ``predict_proba`` and ``score`` also take
``lengths=`` (n,), one length per sequence: steps at and past a sequence's length are
padding and may hold anything.  Through a meta-estimator it is routed by scikit-learn's
metadata routing (``sklearn.set_config(enable_metadata_routing=True)`` and
``est.set_fit_request(lengths=True)``, ``set_predict_request``, ``set_score_request``).

**Numbers.**
The estimators compute in float64 by default (``dtype``): a prediction then does not
depend on how the rows are batched (BLAS rounds a row a few ulps differently in batches
of other sizes: 1e-16 in float64, far below scikit-learn's tolerance of 1e-7, but up to
1e-6 in float32), and the same ``random_state`` gives the same model.
``dtype=numpy.float32`` is faster.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from . import optim
from ._validate import all_finite, as_dtype, flag, lengths_array, positive_int
from .models import SequenceModel
from .training import History

__all__ = ["RNNClassifier", "RNNRegressor"]

#: the optimizers by name (``optimizer=``); each is built with ``lr`` and its defaults
OPTIMIZERS: dict[str, Callable[..., optim.Optimizer]] = {
    "adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD, "rmsprop": optim.RMSprop,
    "adagrad": optim.Adagrad}

#: seeds drawn from ``random_state`` lie in [0, SEED_MAX)
SEED_MAX = 2**31 - 1


def _padding_lengths(x: np.ndarray) -> np.ndarray | None:
    """The lengths a NaN-padded ``x`` (n, T, F) encodes, or None when no step is padding.

    A step is padding when all its features are NaN; padding must be the end of its
    sequence, and a sequence must keep at least one step."""
    nan = np.isnan(x)
    if not nan.any():
        return None
    padded = nan.all(axis=2)                                   # (n, T)
    partial = nan.any(axis=2) & ~padded
    if partial.any():
        n, t = (int(i) for i in np.argwhere(partial)[0])
        raise ValueError(f"X[{n}, {t}] holds NaN in some features but not all: NaN pads a "
                         f"sequence with whole steps (every feature NaN), at its end")
    lengths = np.where(padded.any(axis=1), padded.argmax(axis=1), x.shape[1])
    after = np.arange(x.shape[1])[None, :] >= lengths[:, None]
    late = after & ~padded
    if late.any():
        n, t = (int(i) for i in np.argwhere(late)[0])
        raise ValueError(f"X[{n}] has a NaN step before the finite step X[{n}, {t}]: NaN "
                         f"marks padding at the end of a sequence only")
    if lengths.min() == 0:
        n = int(lengths.argmin())
        raise ValueError(f"X[{n}] is NaN from its first step: a sequence needs at least one "
                         f"step that is not NaN padding")
    return lengths.astype(np.int64)


class _RNNEstimator(BaseEstimator):
    """What both estimators share: parameters, input checks, the model and its training.

    Subclasses set ``_loss`` (the name of the loss) and implement ``fit``,
    ``partial_fit`` and ``predict``: they check their targets, then call ``_build`` (the
    first time) and ``_train``.
    """

    _loss: str

    def __init__(self, cell="gru", hidden_size=32, num_layers=1, bidirectional=False,
                 dropout=0.0, epochs=20, batch_size=32, lr=1e-2, optimizer="adam",
                 clip_norm=None, dtype=np.float64, random_state=None, verbose=False):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.clip_norm = clip_norm
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # -- data ------------------------------------------------------------------------------

    def _sequences(self, X, y="no_validation", lengths=None, *, reset: bool, **y_options):
        """``(x, y, lengths)``: ``X`` checked by scikit-learn (``n_features_in_``, feature
        names) as (n, T, F) in the estimator's dtype, ``y`` (unless
        it is ``"no_validation"``, scikit-learn's word) as scikit-learn checks it, and the
        lengths (None when every sequence is whole)."""
        dtype = as_dtype(self.dtype, "dtype")
        options = dict(reset=reset, allow_nd=True, ensure_all_finite=False, dtype=dtype)
        if isinstance(y, str) and y == "no_validation":
            x = validate_data(self, X, **options)
        else:
            x, y = validate_data(self, X, y, **options, **y_options)
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim != 3:
            raise ValueError(f"X must be 2-D (n, T) or 3-D (n, T, F), got {x.ndim}-D with "
                             f"shape {x.shape}")
        if 0 in x.shape[1:]:
            raise ValueError(f"X must hold sequences of at least one step of at least one "
                             f"feature, got shape {x.shape}")
        if reset:
            self.input_size_ = x.shape[2]
        elif x.shape[2] != self.input_size_:
            raise ValueError(f"X has {x.shape[2]} features a step, but {type(self).__name__} "
                             f"is expecting {self.input_size_} features a step as input")
        if lengths is not None:
            lengths = lengths_array(lengths, x.shape[0], x.shape[1])
        else:
            lengths = _padding_lengths(x)
        all_finite(x, "X", lengths)
        if lengths is not None and np.all(lengths == x.shape[1]):
            lengths = None
        return x, y, lengths          # the layers never read the padding (NaN or not)

    # -- the model -------------------------------------------------------------------------

    def _build(self, output_size: int) -> None:
        """A new ``model_``, ``optimizer_`` and ``history_`` from the parameters."""
        optimizer = OPTIMIZERS.get(self.optimizer) if isinstance(self.optimizer, str) else None
        if optimizer is None:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        flag(self.verbose, "verbose")
        positive_int(self.epochs, "epochs")
        positive_int(self.batch_size, "batch_size")
        if self.clip_norm is not None and (
                isinstance(self.clip_norm, bool) or not isinstance(self.clip_norm, numbers.Real)):
            raise TypeError(f"clip_norm must be a number or None, got "
                            f"{type(self.clip_norm).__name__}")
        try:
            rng = check_random_state(self.random_state)
        except ValueError:
            raise ValueError(f"random_state must be an int, a numpy.random.RandomState or "
                             f"None, got {self.random_state!r}") from None
        self.seed_ = int(rng.randint(SEED_MAX))
        build_seed = int(np.random.SeedSequence([self.seed_, 0]).generate_state(1)[0])
        self.model_ = SequenceModel.build(
            self.cell, input_size=self.input_size_, hidden_size=self.hidden_size,
            output_size=output_size, head="many_to_one", num_layers=self.num_layers,
            bidirectional=self.bidirectional, dropout=self.dropout, loss=self._loss,
            dtype=as_dtype(self.dtype, "dtype"), seed=build_seed)
        self.optimizer_ = optimizer(self.model_.parameters(), lr=self.lr)
        self.history_ = History()
        self.n_iter_ = 0

    def _train(self, x, y, lengths, epochs: int) -> None:
        """``epochs`` more epochs over ``(x, y)``; ``history_`` and ``n_iter_`` continue."""
        seed = int(np.random.SeedSequence([self.seed_, 1, self.n_iter_]).generate_state(1)[0])
        history = self.model_.fit(x, y, lengths, epochs=epochs, batch_size=self.batch_size,
                                  optimizer=self.optimizer_, clip_norm=self.clip_norm,
                                  progress=self.verbose, seed=seed)
        for name, values in history.history.items():
            self.history_.history.setdefault(name, []).extend(values)
        self.history_.epochs += history.epochs
        self.history_.stop_reason = history.stop_reason
        self.n_iter_ += history.epochs

    def _forward(self, X, lengths):
        """The model's raw outputs for ``X`` (checked against what ``fit`` saw)."""
        check_is_fitted(self)
        x, _, lengths = self._sequences(X, lengths=lengths, reset=False)
        return self.model_.forward(x, lengths)

    def __sklearn_tags__(self):
        """scikit-learn's tags: 2-D and 3-D ``X`` (``allow_nan`` stays False: NaN is
        padding at the end of a sequence, not a missing value anywhere)."""
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True          # (n, T, F) sequences of F features
        return tags

    # -- pickle: the model as its configuration and parameters -----------------------------

    def __getstate__(self):
        """The estimator's state with the model as its configuration and parameter arrays
        and the optimizer as its state dict: no gradients, no workspace (numpy's arrays
        go out of band with pickle protocol 5).  Nor the dropout generator: with
        ``dropout > 0`` an unpickled estimator's ``partial_fit`` draws other masks, as a
        model read by :func:`fastrnn.load` does."""
        state = dict(super().__getstate__())        # object's is the __dict__ itself
        if "model_" in state:
            model, opt = state.pop("model_"), state.pop("optimizer_")
            state["model_"] = {"config": model.config(), "parameters": model.state_dict()}
            state["optimizer_"] = {"type": type(opt).__name__, "state": opt.state_dict()}
        return state

    def __setstate__(self, state):
        """Rebuild the model and its optimizer from what :meth:`__getstate__` kept."""
        state = dict(state)
        if "model_" in state:
            saved, opt = state.pop("model_"), state.pop("optimizer_")
            model = SequenceModel.from_config(saved["config"])
            model.load_state_dict(saved["parameters"])
            optimizer = getattr(optim, opt["type"])(model.parameters())
            optimizer.load_state_dict(opt["state"])
            state["model_"], state["optimizer_"] = model, optimizer
        super().__setstate__(state)


class RNNClassifier(ClassifierMixin, _RNNEstimator):
    r"""A recurrent network classifying whole sequences, as a scikit-learn estimator.

    A :class:`~fastrnn.SequenceModel` with a many-to-one head (the class is read from the
    state after each sequence's last step) trained with softmax cross-entropy.  ``X`` is
    (n, T) univariate or (n, T, F) sequences, NaN-padded at their end or with
    ``lengths=`` (see :mod:`fastrnn.sklearn`); ``y`` any labels.

    Parameters
    ----------
    cell : {'gru', 'lstm', 'rnn', 'fastrnn', 'fastgrnn'}
        The recurrent cell.
    hidden_size, num_layers, bidirectional, dropout
        The recurrent layer's (as :class:`~fastrnn.LSTM`).
    epochs : int
        Passes over the data by ``fit``; ``partial_fit`` runs one.
    batch_size : int
        Sequences a mini-batch.
    lr : float
        The learning rate.
    optimizer : {'adam', 'adamw', 'sgd', 'rmsprop', 'adagrad'}
        The optimizer (:mod:`fastrnn.optim`), with its defaults besides ``lr``.
    clip_norm : float or None
        Clip the global gradient norm to this before each step.
    dtype : numpy.float64 or numpy.float32
        What the model computes in.
    random_state : int, numpy.random.RandomState or None
        Fixes the initial weights and the shuffling.
    verbose : bool
        A progress bar per epoch.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    n_features_in_ : int
        ``X.shape[1]``, the number of time steps.
    input_size_ : int
        The features a step.
    model_ : SequenceModel
        The trained network (``model_.predict`` reads sequences of any length).
    optimizer_ : fastrnn.optim.Optimizer
        Its optimizer, whose state ``partial_fit`` continues from.
    history_ : fastrnn.History
        The per-epoch loss and accuracy, across ``fit`` and every ``partial_fit``.
    n_iter_ : int
        The epochs run.
    seed_ : int
        The seed drawn from ``random_state``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.sklearn import RNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(64, 12))                  # 64 univariate sequences of 12 steps
    >>> y = np.where(X.sum(axis=1) > 0, "up", "down")
    >>> clf = RNNClassifier(hidden_size=8, epochs=5, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).shape, clf.classes_
    ((3,), array(['down', 'up'], dtype='<U4'))
    """

    _loss = "cross_entropy"

    def fit(self, X, y, lengths=None):
        """Build the network and train it for ``epochs`` epochs; returns ``self``."""
        x, y, lengths = self._sequences(X, y, lengths, reset=True)
        check_classification_targets(y)
        self.classes_ = unique_labels(y)
        self._build(len(self.classes_))
        self._train(x, np.searchsorted(self.classes_, y), lengths, self.epochs)
        return self

    def partial_fit(self, X, y, classes=None, lengths=None):
        """One epoch over ``(X, y)``, continuing the training (the weights, the
        optimizer's state, ``history_``); the first call builds the network and needs
        ``classes``, every label there will be."""
        first = not hasattr(self, "model_")
        x, y, lengths = self._sequences(X, y, lengths, reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit "
                                 "(every label y will hold)")
            self.classes_ = unique_labels(classes)
            self._build(len(self.classes_))
        elif classes is not None and not np.array_equal(unique_labels(classes),
                                                        self.classes_):
            raise ValueError(f"classes must be those of the first call to partial_fit, "
                             f"{self.classes_.tolist()}, got {np.asarray(classes).tolist()}")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels not in classes: {unknown.tolist()}")
        self._train(x, np.searchsorted(self.classes_, y), lengths, 1)
        return self

    def predict(self, X, lengths=None):
        """The most probable class of each sequence (n,)."""
        out = self._forward(X, lengths)
        return self.classes_[self.model_.loss.predict(out)]

    def predict_proba(self, X, lengths=None):
        """Class probabilities (n, n_classes), columns in the order of ``classes_``."""
        out = self._forward(X, lengths)
        return self.model_.loss.proba(out)

    def score(self, X, y, sample_weight=None, lengths=None):
        """The mean accuracy on ``(X, y)``."""
        return accuracy_score(y, self.predict(X, lengths), sample_weight=sample_weight)


class RNNRegressor(RegressorMixin, _RNNEstimator):
    r"""A recurrent network regressing a value (or several) per sequence, as a
    scikit-learn estimator.

    A :class:`~fastrnn.SequenceModel` with a many-to-one head trained with the mean
    squared error.  ``X`` as :class:`RNNClassifier`'s; ``y`` (n,) or (n, n_outputs).  The
    parameters and attributes are :class:`RNNClassifier`'s (without ``classes_``; with
    ``n_outputs_``).  Standardise ``y`` (``TransformedTargetRegressor``) when its scale
    is far from 1.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.sklearn import RNNRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(64, 12, 2))               # 64 sequences of 12 steps, 2 features
    >>> y = X[:, :, 0].mean(axis=1)
    >>> reg = RNNRegressor(hidden_size=8, epochs=5, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    _loss = "mse"

    def _targets(self, y, reset: bool) -> np.ndarray:
        """``y`` as (n, n_outputs) in the estimator's dtype; ``n_outputs_`` set or checked."""
        y = np.asarray(y, dtype=as_dtype(self.dtype, "dtype"))
        outputs = 1 if y.ndim == 1 else y.shape[1]
        if reset:
            self.n_outputs_ = outputs
        elif outputs != self.n_outputs_:
            raise ValueError(f"y must have {self.n_outputs_} outputs as in the first call to "
                             f"partial_fit, got {outputs}")
        return y.reshape(len(y), outputs)

    def fit(self, X, y, lengths=None):
        """Build the network and train it for ``epochs`` epochs; returns ``self``."""
        x, y, lengths = self._sequences(X, y, lengths, reset=True, multi_output=True,
                                        y_numeric=True)
        y = self._targets(y, reset=True)
        self._build(self.n_outputs_)
        self._train(x, y, lengths, self.epochs)
        return self

    def partial_fit(self, X, y, lengths=None):
        """One epoch over ``(X, y)``, continuing the training; the first call builds the
        network."""
        first = not hasattr(self, "model_")
        x, y, lengths = self._sequences(X, y, lengths, reset=first, multi_output=True,
                                        y_numeric=True)
        y = self._targets(y, reset=first)
        if first:
            self._build(self.n_outputs_)
        self._train(x, y, lengths, 1)
        return self

    def predict(self, X, lengths=None):
        """The predicted values: (n,) with one output, else (n, n_outputs)."""
        out = self._forward(X, lengths)
        return out[:, 0] if self.n_outputs_ == 1 else out

    def score(self, X, y, sample_weight=None, lengths=None):
        """The coefficient of determination R² on ``(X, y)``."""
        return r2_score(y, self.predict(X, lengths), sample_weight=sample_weight)

    def __sklearn_tags__(self):
        """The tags of both estimators, and a ``y`` of several outputs."""
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
