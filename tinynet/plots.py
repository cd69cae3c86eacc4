"""Plots of a training run: the curves per epoch and the per-layer statistics (matplotlib, the ``plot`` extra).

    history = tn.fit(..., validation=(x_val, y_val), inspect_every=50)
    tinynet.plots.save_run_plots(history, "runs/train")   # curves.png, layers.png
    tinynet.plots.training_curves(history)                # a matplotlib Figure (shown inline in a notebook)

Figures are made with the object-oriented API (``matplotlib.figure.Figure``): no GUI backend is
chosen and no global figure state is touched, so this works on a machine without a display.
"""

import os

import numpy as np

INSTALL = "pip install 'tinynet[plot]' (from a clone: pip install -e '.[plot]')"

STATS = (  # (key, title, log scale)
    ("act_std", "output std", False),
    ("act_mean", "output mean", False),
    ("zero_frac", "ReLU outputs that are 0 (dead for that example)", False),
    ("saturated_frac", "saturated Sigmoid / Tanh outputs", False),
    ("grad_norm", "gradient norm (all parameters of the layer)", True),
    ("update_ratio", "update / weight norm per step", True),
)


def require_matplotlib(where="tinynet.plots"):
    """Import matplotlib's Figure, or raise ModuleNotFoundError saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"{where} needs matplotlib, an optional extra: {INSTALL}") from None
    return Figure


def _check_history(where, history):
    from .history import History

    if not isinstance(history, History):
        raise TypeError(f"{where}: expected the History that tinynet.fit returns, got {type(history).__name__}")


def training_curves(history):
    """A Figure with the loss (training and validation) and the validation accuracy per epoch.

    The faint line is each step's training loss, placed on the epoch axis (step s of an epoch of
    k steps at epoch + s / k), so the per-epoch means sit at the ends of their epochs.
    """
    _check_history("training_curves", history)
    Figure = require_matplotlib("tinynet.plots.training_curves")
    if not history.train_loss:
        raise ValueError("training_curves: the History has no epoch yet (fit records one per epoch)")
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, len(history.train_loss) + 1)
    steps = len(history.step_loss)
    if steps:
        ax_loss.plot(np.arange(1, steps + 1) * len(epochs) / steps, history.step_loss, color="tab:blue", alpha=0.25,
                     lw=0.7, label="training loss per step")
    ax_loss.plot(epochs, history.train_loss, "o-", color="tab:blue", label="training loss (epoch mean)")
    if history.val_loss:
        ax_loss.plot(epochs, history.val_loss, "s-", color="tab:orange", label="validation loss")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy (log scale)")
    ax_loss.set_title("loss")
    ax_loss.legend(loc="upper right", fontsize="small")
    ax_loss.grid(alpha=0.3, which="both")
    if history.val_accuracy:
        acc = 100 * np.asarray(history.val_accuracy)
        ax_acc.plot(epochs, acc, "s-", color="tab:orange", label="validation accuracy")
        best = int(np.argmax(acc))
        ax_acc.annotate(f"{acc[best]:.2f} %", (epochs[best], acc[best]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize="small")
        ax_acc.set_ylim(max(0, acc.min() - 2), min(100, acc.max() + 1))
        ax_acc.legend(loc="lower right", fontsize="small")
    else:
        ax_acc.text(0.5, 0.5, "no validation data:\nfit(..., validation=(x_val, y_val))", ha="center",
                    va="center", transform=ax_acc.transAxes, color="0.4")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("validation accuracy")
    ax_acc.grid(alpha=0.3)
    for ax in (ax_loss, ax_acc):
        ax.set_xticks(epochs)
    return fig


def layer_statistics(history):
    """A Figure with one panel per statistic of ``history.layer_stats`` against the step, one line per layer.

    Needs ``fit(..., inspect_every=k)``; the statistics are described in :mod:`tinynet.layer_stats`.
    """
    _check_history("layer_statistics", history)
    Figure = require_matplotlib("tinynet.plots.layer_statistics")
    stats = history.layer_stats
    if not stats.get("step"):
        raise ValueError("layer_statistics: the History has no layer statistics; train with "
                         "fit(..., inspect_every=50) to record them")
    shown = [(key, title, log) for key, title, log in STATS
             if any(key in values for values in stats["layers"].values())]
    columns = 2
    rows = -(-len(shown) // columns)
    fig = Figure(figsize=(13, 3.2 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    colors = {label: f"C{i % 10}" for i, label in enumerate(stats["layers"])}
    for ax, (key, title, log) in zip(axes, shown):
        for label, values in stats["layers"].items():
            if key in values:
                ax.plot(stats["step"], values[key], color=colors[label], lw=1.3, label=label)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    every = stats["step"][1] - stats["step"][0] if len(stats["step"]) > 1 else 1
    fig.suptitle(f"per-layer statistics, every {every} steps (tinynet.layer_stats)")
    return fig


def save_run_plots(history, folder):
    """Write ``curves.png`` and (when recorded) ``layers.png`` into ``folder``; return their paths."""
    _check_history("save_run_plots", history)
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, "curves.png")]
    training_curves(history).savefig(paths[0], dpi=110)
    if history.layer_stats.get("step"):
        paths.append(os.path.join(folder, "layers.png"))
        layer_statistics(history).savefig(paths[1], dpi=110)
    return paths
