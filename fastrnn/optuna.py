"""Optuna for sweeps over fastrnn models: :class:`PruningCallback`.

Optuna is an optional dependency (``pip install 'fastrnn[optuna]'``): this module imports
it, ``import fastrnn`` does not.

In a sweep, each trial's ``fit`` takes the callback, which reports the validation metric
of every epoch to the trial; when the study's pruner judges the trial hopeless, the
callback raises ``optuna.TrialPruned`` out of ``fit`` (after every callback's
``on_train_end``), which Optuna records as a pruned trial.

Trials run side by side in threads (``study.optimize(objective, n_jobs=2)``: the kernels
release the GIL), each with its share of the cores: ``with fastrnn.threads(1):`` in the
objective.  On a Dask cluster, the trials of one study share Optuna's storage
(``optuna_integration.DaskStorage``), each worker process running its trials on the one
thread Dask gives it (docs: "Past one machine").
"""

from __future__ import annotations

import math

import optuna

from .training import Callback

__all__ = ["PruningCallback"]


class PruningCallback(Callback):
    """Report ``monitor`` (``"val_loss"`` by default: ``fit`` needs ``validation_data``)
    to an Optuna ``trial`` after every epoch, as step ``epoch``, and raise
    ``optuna.TrialPruned`` when the trial should be pruned.

    The study's direction must suit the metric: ``"minimize"`` for a loss,
    ``"maximize"`` for ``val_accuracy``.  A non-finite value is reported as it is (Optuna
    prunes on it where the pruner does).

    >>> import numpy as np, optuna, fastrnn
    >>> from fastrnn.optuna import PruningCallback
    >>> x = np.random.default_rng(0).standard_normal((64, 6, 2)).astype(np.float32)
    >>> def objective(trial):
    ...     model = fastrnn.SequenceModel.build(
    ...         "gru", input_size=2, hidden_size=trial.suggest_int("hidden", 4, 16),
    ...         output_size=2, head="many_to_many", loss="mse", seed=0)
    ...     history = model.fit(x[:48], x[:48], epochs=3, validation_data=(x[48:], x[48:]),
    ...                         callbacks=[PruningCallback(trial)], progress=False)
    ...     return history["val_loss"][-1]
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(pruner=optuna.pruners.MedianPruner())
    >>> study.optimize(objective, n_trials=3)
    >>> len(study.trials)
    3
    """

    def __init__(self, trial, monitor: str = "val_loss"):
        if not (callable(getattr(trial, "report", None))
                and callable(getattr(trial, "should_prune", None))):
            raise TypeError(f"trial must be an optuna Trial (with report and "
                            f"should_prune), got {type(trial).__name__}")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, got {type(monitor).__name__}")
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, model, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"PruningCallback monitors {self.monitor!r}, which is not "
                             f"among the logged values {sorted(logs)} (val_* needs "
                             f"validation_data)")
        value = float(logs[self.monitor])
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            shown = f"{value:.6g}" if math.isfinite(value) else str(value)
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: "
                                     f"{self.monitor} = {shown}")
        return False
