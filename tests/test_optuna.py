"""fastrnn.optuna.PruningCallback in real Optuna studies: it reports every epoch's
validation loss, a pruner stops a trial through it, and trials run side by side in
threads, each under its own thread budget, with the answers of a serial study; the
example sweep runs, in threads and on a local Dask cluster through Optuna's storage."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastrnn

optuna = pytest.importorskip("optuna")
from fastrnn.optuna import PruningCallback  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
State = optuna.trial.TrialState


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 7, 2))
    y = rng.integers(0, 3, 60)
    return x[:40], y[:40], x[40:], y[40:]


def objective(trial, epochs=4, callbacks=()):
    xt, yt, xv, yv = data()
    model = fastrnn.SequenceModel.build("gru", input_size=2, output_size=3,
                                        hidden_size=trial.suggest_int("hidden", 4, 12),
                                        head="many_to_one", dtype=np.float64, seed=0)
    lr = trial.suggest_float("lr", 0.0, 0.1)
    history = model.fit(xt, yt, epochs=epochs, batch_size=8, seed=0, progress=False,
                        optimizer=fastrnn.optim.Adam(model.parameters(), lr=lr),
                        validation_data=(xv, yv),
                        callbacks=[PruningCallback(trial), *callbacks])
    trial.set_user_attr("val_loss", history["val_loss"])
    return history["val_loss"][-1]


def test_reports_every_epoch_of_a_completed_trial():
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == State.COMPLETE
    assert trial.intermediate_values == dict(enumerate(trial.user_attrs["val_loss"]))
    assert len(trial.intermediate_values) == 4


def test_a_pruner_stops_a_trial_through_the_callback():
    # the median pruner: the second trial (lr = 0, no learning) lags behind the first
    study = optuna.create_study(
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1))
    study.enqueue_trial({"hidden": 8, "lr": 0.05})
    study.enqueue_trial({"hidden": 8, "lr": 0.0})
    ended = []

    class Ended(fastrnn.training.Callback):
        def on_train_end(self, model):
            ended.append(True)

    study.optimize(lambda t: objective(t, epochs=6, callbacks=[Ended()]), n_trials=2)
    good, bad = study.trials
    assert good.state == State.COMPLETE and bad.state == State.PRUNED
    # reported: epochs 0 (warm-up) and 1, pruned there, after the first's median
    assert sorted(bad.intermediate_values) == [0, 1]
    assert bad.intermediate_values[1] > good.intermediate_values[1]
    assert ended == [True, True]               # on_train_end ran in the pruned trial too


def test_trials_in_threads_each_under_its_own_budget():
    params = [{"hidden": h, "lr": lr} for h in (4, 8, 12) for lr in (0.01, 0.05)]

    def study_of(n_jobs):
        # no pruner: which trials a pruner stops depends on the order in which trials
        # end, which threads change (a pruned trial's value is its last report)
        study = optuna.create_study(pruner=optuna.pruners.NopPruner())
        for p in params:
            study.enqueue_trial(p)
        seen = []

        def threaded(trial):
            with fastrnn.threads(1):
                seen.append(fastrnn.get_num_threads())
                return objective(trial)

        study.optimize(threaded, n_trials=len(params), n_jobs=n_jobs)
        assert seen == [1] * len(params)
        return {(t.params["hidden"], t.params["lr"]): t.value for t in study.trials}

    threaded, serial = study_of(2), study_of(1)
    assert len(threaded) == len(params)
    assert threaded == serial                  # each trial's value as when run alone


def test_bad_arguments():
    with pytest.raises(TypeError, match="trial must be an optuna Trial"):
        PruningCallback(object())
    trial = optuna.create_study().ask()
    with pytest.raises(TypeError, match="monitor must be a str"):
        PruningCallback(trial, monitor=1)
    model = fastrnn.SequenceModel.build("rnn", input_size=2, hidden_size=3, output_size=3,
                                        head="many_to_one", seed=0)
    xt, yt, _, _ = data()
    with pytest.raises(ValueError, match="monitors 'val_loss', which is not among"):
        model.fit(xt, yt, epochs=1, progress=False, callbacks=[PruningCallback(trial)])


def test_the_example_sweep_in_threads_and_on_dask(tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("optuna_integration")
    script = Path(__file__).resolve().parents[1] / "examples" / "optuna_sweep.py"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(fastrnn.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(script), "--trials", "6", "--epochs", "3",
                           "--samples", "400", "--dask"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("threads (n_jobs=2): 6 trials")
    assert "in 1 process(es), kernel threads per trial [1]" in lines[0]
    assert lines[1].startswith("Dask (2 workers, DaskStorage): 6 trials")
    assert "in 2 process(es), kernel threads per trial [1]" in lines[1]
