"""Plots of training runs: loss and metric curves, and forecasts against the truth.

matplotlib is an optional dependency (``pip install 'fastrnn[plot]'``).  Without it every
function here raises :class:`PlotUnavailable`, whose message is one line saying so; the
rest of fastrnn never needs it.  Figures are drawn off-screen (no window, no display
needed) and written to a file whose format follows its extension (.png, .pdf, .svg...).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["PlotUnavailable", "available", "training_curves", "forecast"]

MISSING = "matplotlib is not installed (pip install 'fastrnn[plot]'), so no plot was drawn"


class PlotUnavailable(RuntimeError):
    """matplotlib cannot be imported.

    >>> from fastrnn.plot import PlotUnavailable
    >>> issubclass(PlotUnavailable, RuntimeError)
    True
    """


def _figure(*, nrows: int = 1, ncols: int = 1, size=(10.0, 4.0)):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(MISSING) from None
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    return fig, axes


def available() -> bool:
    """Whether matplotlib can be imported.

    >>> from fastrnn import plot
    >>> plot.available() in (True, False)
    True
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _save(fig, path) -> str:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def training_curves(history, path, title: str | None = None, xlabel: str = "epoch") -> str:
    """Draw the per-epoch loss and metric (e.g. accuracy) of a training run, on the
    training data and the held-out (validation) data, side by side; returns ``path``.

    ``history`` is a :class:`fastrnn.History` or its ``history`` dict (``loss``, a metric,
    and ``val_*`` values per epoch).

    >>> from fastrnn import plot
    >>> history = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7]}
    >>> if plot.available():                               # needs matplotlib
    ...     _ = plot.training_curves(history, "curves.png", title="training")
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs.get("loss"):
        raise ValueError("history must hold at least one epoch of 'loss'")
    metrics = [k for k in logs if not k.startswith("val_") and k != "loss"]
    panels = ["loss"] + metrics
    fig, axes = _figure(ncols=len(panels), size=(5.0 * len(panels), 3.8))
    from matplotlib.ticker import MaxNLocator
    for ax, name in zip(axes, panels):
        for key, label, style in ((name, "train", "-"), (f"val_{name}", "held-out", "--")):
            values = logs.get(key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, marker="o" if len(values) < 30 else None,
                        markersize=3, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        values = [v for k in (name, f"val_{name}") for v in logs.get(k) or ()]
        if name == "loss" and min(values) > 0 and max(values) > 10 * min(values):
            ax.set_yscale("log")        # losses that fall by decades
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def forecast(x, y_true, y_pred, path, rows: int = 3, title: str | None = None) -> str:
    """Draw, for the first ``rows`` sequences, the input signal, the true next values and
    the model's one-step forecasts; returns ``path``.  Arrays are (N, T) or (N, T, 1).

    >>> import numpy as np
    >>> from fastrnn import plot
    >>> from fastrnn.data import sine_waves
    >>> x, y = sine_waves(3, 40, seed=0)
    >>> if plot.available():                               # needs matplotlib
    ...     _ = plot.forecast(x, y, y + 0.01, "forecast.png", rows=2)
    """
    x, y_true, y_pred = (np.asarray(a, dtype=np.float64) for a in (x, y_true, y_pred))
    x, y_true, y_pred = (a[..., 0] if a.ndim == 3 else a for a in (x, y_true, y_pred))
    if not (x.shape == y_true.shape == y_pred.shape and x.ndim == 2):
        raise ValueError(f"x, y_true and y_pred must have one shape (N, T), got {x.shape}, "
                         f"{y_true.shape} and {y_pred.shape}")
    rows = max(1, min(int(rows), x.shape[0]))
    fig, axes = _figure(nrows=rows, size=(10.0, 2.4 * rows))
    t = np.arange(x.shape[1])
    for i, ax in enumerate(axes):
        ax.plot(t, x[i], color="0.75", linewidth=3, label="input x[t]")
        ax.plot(t, y_true[i], color="C0", label="truth x[t+1]")
        ax.plot(t, y_pred[i], "--", color="C3", label="forecast")
        mse = float(np.mean((y_pred[i] - y_true[i]) ** 2))
        ax.set_ylabel(f"sequence {i}")
        ax.set_title(f"MSE {mse:.2e}", fontsize=9, loc="right")
        ax.grid(True, alpha=0.3)
        if i == 0:
            ax.legend(loc="upper left", fontsize=8, ncols=3)
    axes[-1].set_xlabel("time step")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
