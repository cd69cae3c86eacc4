"""The figures of a comparison, drawn with matplotlib (the optional extra ``tinynet[plot]``).

``figure1.png``: (a) test accuracy vs steps, with and without BatchNorm; (b, c) the 15th,
50th and 85th percentiles of one last-hidden-layer activation input, without and with
BatchNorm. ``lr_sweep.png``: final test accuracy against the learning rate, and the curves.
"""

import os

from .outputs import dataset_name

COLORS = {False: "tab:orange", True: "tab:blue"}
LABELS = {False: "without BatchNorm", True: "with BatchNorm"}


def write_plots(result, out_dir):
    """Draw the figures into ``out_dir``; return their paths.

    Raises
    ------
    ImportError
        When matplotlib is not installed (the data files do not need it).
    """
    # The object-oriented API without pyplot: no GUI backend is chosen and no global figure state is touched.
    from matplotlib.figure import Figure

    os.makedirs(out_dir, exist_ok=True)
    paths = [figure1(Figure, result, os.path.join(out_dir, "figure1.png"))]
    if result.sweep:
        paths.append(sweep_figure(Figure, result, os.path.join(out_dir, "lr_sweep.png")))
    return paths


def figure1(Figure, result, path):
    c = result.config
    plain, bn = (next(r for r in result.main if r.batchnorm == flag) for flag in (False, True))
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    ax_a, ax_b, ax_c = fig.subplots(1, 3)
    for run in (plain, bn):
        ax_a.plot(run.step, [100 * a for a in run.test_accuracy], color=COLORS[run.batchnorm],
                  label=LABELS[run.batchnorm], lw=1.6)
    # like the paper (whose axis starts at 70 %), zoom on where the runs differ once trained;
    # the first steps enter from below. A run that ends low gets the whole range.
    final = min(plain.final_accuracy, bn.final_accuracy)
    low = 80 if final >= 0.85 else 0
    ax_a.set_ylim(low, 100)
    targets = sorted(100 * t for t in c.targets)
    for target in targets:
        ax_a.axhline(target, color="0.6", lw=0.8, ls=":")
    # the target labels sit at the right edge, outside the data; labels closer than about 12 points
    # on the page (95 and 97 on a 0-100 axis) share one line
    close = len(targets) > 1 and min(b - a for a, b in zip(targets, targets[1:])) < 0.05 * (100 - low)
    labels = [(targets[-1], " / ".join(f"{t:g} %" for t in targets))] if close else [(t, f"{t:g} %") for t in targets]
    for y, text in labels:
        ax_a.annotate(text, (1, y), xycoords=("axes fraction", "data"), xytext=(3, 0), textcoords="offset points",
                      fontsize="small", color="0.4", va="center", annotation_clip=False)
    ax_a.set_title(f"(a) test accuracy, lr {c.lr:g}")
    ax_a.set_xlabel(f"training steps (batches of {c.batch_size})")
    ax_a.set_ylabel("test accuracy (%)")
    ax_a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    ax_a.grid(alpha=0.3)

    what = f"input to {c.activation} unit {c.probe_unit}, last hidden layer"
    for ax, run, letter in ((ax_b, plain, "b"), (ax_c, bn, "c")):
        for values, pct, style in ((run.p85, 85, "--"), (run.p50, 50, "-"), (run.p15, 15, ":")):
            ax.plot(run.step, values, color=COLORS[run.batchnorm], ls=style, lw=1.6, label=f"{pct}th percentile")
        ax.set_title(f"({letter}) {LABELS[run.batchnorm]}: {what}", fontsize="medium")
        ax.set_xlabel(f"training steps (batches of {c.batch_size})")
        ax.set_ylabel(f"{c.activation} input (pre-activation value)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)  # below: off the data
        ax.grid(alpha=0.3)
    # (b) and (c) on one y-scale, so the two spreads compare at a glance
    values = [v for run in (plain, bn) for series in (run.p15, run.p85) for v in series]
    spread = max(values) - min(values)
    ax_b.set_ylim(min(values) - 0.05 * spread, max(values) + 0.05 * spread)
    ax_c.set_ylim(ax_b.get_ylim())
    fig.suptitle(f"{arch_text(result)} {c.activation} MLP on {dataset_name(result.data_info)}, "
                 f"with and without BatchNorm (Ioffe & Szegedy 2015, Fig. 1); percentiles over "
                 f"{result.data_info['test_examples']:,} test examples")
    fig.savefig(path, dpi=110)
    return path


def sweep_figure(Figure, result, path):
    c = result.config
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    ax_final, ax_plain, ax_bn = fig.subplots(1, 3)
    runs = sorted(result.sweep, key=lambda r: r.lr)
    lrs = sorted({r.lr for r in runs})
    for flag in (False, True):
        mine = [r for r in runs if r.batchnorm == flag]
        ax_final.plot([r.lr for r in mine], [100 * r.final_accuracy for r in mine], "o-",
                      color=COLORS[flag], label=LABELS[flag])
        for r in mine:
            if r.diverged_at is not None:
                ax_final.annotate("diverged", (r.lr, 100 * r.final_accuracy), textcoords="offset points",
                                  xytext=(4, -12), fontsize="small", color=COLORS[flag])
    ax_final.set_xscale("log")
    ax_final.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
    ax_final.minorticks_off()
    ax_final.set_ylim(0, 100)
    chance = 100 / result.data_info["classes"]
    ax_final.axhline(chance, color="0.6", lw=0.8, ls=":")
    ax_final.annotate(f"chance ({result.data_info['classes']} classes)", (0, chance), xycoords=("axes fraction", "data"),
                      xytext=(4, 3), textcoords="offset points", fontsize="small", color="0.4")
    ax_final.set_title(f"test accuracy after {c.sweep_steps:,} steps")
    ax_final.set_xlabel("learning rate (log scale)")
    ax_final.set_ylabel("test accuracy (%)")
    ax_final.legend(loc="center left")
    ax_final.grid(alpha=0.3)

    # the curves: one panel per network, one colour per learning rate (the same in both), one legend
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    colors = {lr: cmap(0.9 * i / max(1, len(lrs) - 1)) for i, lr in enumerate(lrs)}
    for ax, flag in ((ax_plain, False), (ax_bn, True)):
        for r in (r for r in runs if r.batchnorm == flag):
            ax.plot(r.step, [100 * a for a in r.test_accuracy], color=colors[r.lr], lw=1.5, label=f"lr {r.lr:g}")
        ax.set_ylim(0, 100)
        ax.set_title(f"test accuracy during training, {LABELS[flag]}")
        ax.set_xlabel(f"training steps (batches of {c.batch_size})")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    ax_bn.sharey(ax_plain)
    ax_bn.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="learning rate")
    fig.suptitle(f"Learning-rate sweep: {arch_text(result)} {c.activation} MLP, SGD momentum {c.momentum:g}, "
                 f"same initial weights and batches")
    fig.savefig(path, dpi=110)
    return path


def arch_text(result):
    info = result.data_info
    return "-".join(map(str, (info["features"], *result.config.hidden, info["classes"])))
