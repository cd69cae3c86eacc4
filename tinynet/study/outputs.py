"""The data files of a comparison: curves.csv, results.json and report.md."""

import csv
import json
import math
import os
import platform

import numpy as np

COLUMNS = ("phase", "run", "batchnorm", "lr", "step", "test_loss", "test_accuracy", "train_loss",
           "p15", "p50", "p85", "train_seconds")
PLOTS = ("figure1.png", "lr_sweep.png")


def write_data(result, out_dir):
    """Write ``curves.csv`` and ``results.json`` into ``out_dir`` (created if needed); return their paths.

    ``curves.csv`` has one row per evaluation of every run, columns :data:`COLUMNS`;
    ``results.json`` holds the settings and, per run, the same series as lists.
    """
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, "curves.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for run in result.runs:
            for i, step in enumerate(run.step):
                writer.writerow([run.phase, run.name, int(run.batchnorm), f"{run.lr:g}", step,
                                 *(fmt(getattr(run, c)[i]) for c in COLUMNS[5:])])
    json_path = os.path.join(out_dir, "results.json")
    with open(json_path, "w") as f:
        json.dump(to_json(result), f, indent=1, allow_nan=False)
    return [csv_path, json_path]


def fmt(value):
    return "" if math.isnan(value) else f"{value:.6g}"


def to_json(result):
    """A JSON-ready dict: settings, data sizes, wall time and every run (nan written as null)."""
    def clean(values):
        return [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]

    runs = []
    for run in result.runs:
        entry = dict(phase=run.phase, run=run.name, batchnorm=run.batchnorm, lr=run.lr,
                     diverged_at=run.diverged_at, wall_seconds=round(run.wall_seconds, 3),
                     steps_to={f"{t:g}": run.steps_to(t) for t in result.config.targets})
        for column in COLUMNS[4:]:
            entry[column] = clean(getattr(run, column))
        runs.append(entry)
    return dict(settings=result.config.to_dict(), data=result.data_info, command=command_line(result),
                wall_seconds=round(result.wall_seconds, 3), numpy=np.__version__, python=platform.python_version(),
                runs=runs)


def command_line(result):
    """The command that reruns this study."""
    c = result.config
    parts = ["python -m tinynet compare", f"--preset {c.preset}", f"--steps {c.steps}", f"--eval-every {c.eval_every}",
             f"--lr {c.lr:g}", f"--batch-size {c.batch_size}", f"--momentum {c.momentum:g}",
             "--hidden " + ",".join(map(str, c.hidden)), f"--activation {c.activation}"]
    if c.init_std is not None:
        parts.append(f"--init-std {c.init_std:g}")
    parts.append("--sweep-lr " + (",".join(f"{lr:g}" for lr in c.sweep_lrs) or "none"))
    parts += [f"--sweep-steps {c.sweep_steps}", f"--bn-gradient {c.bn_gradient}", f"--seed {c.seed}",
              f"--probe-unit {c.probe_unit}", f"--backend {result.data_info['backend']}"]
    if "dataset" in result.data_info:
        parts.append(f"--dataset {result.data_info['dataset']}")
    return " ".join(parts)


def write_report(result, out_dir, plots=(), plot_note=None):
    """Write ``report.md``: settings, steps to each target accuracy, final accuracies, wall times, sweep."""
    c, info = result.config, result.data_info
    targets = c.targets
    lines = [
        "# BatchNorm comparison",
        "",
        f"The same {arch(c, info)} network trained with and without BatchNorm from the same initial "
        "weights, on the same batches in the same order (Ioffe & Szegedy 2015, Figure 1).",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| preset | {c.preset} |",
        f"| data | {dataset_name(info)}: {info['train_examples']} training, "
        f"{info['test_examples']} test examples |",
        f"| network | {arch(c, info)}, {c.activation}; with BatchNorm: Linear without bias, then BatchNorm, "
        f"before each {c.activation} |",
        f"| initial weights | {c.describe_init()}, biases 0 |",
        f"| optimizer | SGD, lr {c.lr:g}, momentum {c.momentum:g}, batch {c.batch_size} |",
        f"| steps | {c.steps}, test evaluated every {c.eval_every} |",
        f"| BatchNorm backward | {c.bn_gradient} |",
        f"| seed | {c.seed} (weights and batch order) |",
        f"| backend | {info['backend']} |",
        f"| probe | input to {c.activation} unit {c.probe_unit} of the last hidden layer, over the test set, eval mode |",
        f"| wall time | {result.wall_seconds:.1f} s for all runs |",
        "",
        f"Rerun: `{command_line(result)}`",
        "",
        "## Main runs",
        "",
        "| run | " + " | ".join(f"steps to {100 * t:g} %" for t in targets)
        + " | final test accuracy | final test loss | training time | wall time |",
        "| --- | " + " | ".join("---:" for _ in targets) + " | ---: | ---: | ---: | ---: |",
    ]
    for run in result.main:
        reached = " | ".join(step_text(run.steps_to(t)) for t in targets)
        lines.append(f"| {run.name} | {reached} | {100 * run.final_accuracy:.2f} % | {run.test_loss[-1]:.4f} | "
                     f"{run.train_seconds[-1]:.1f} s | {run.wall_seconds:.1f} s |")
    lines += ["", f"Steps to a target are the first evaluation at or above it (resolution {c.eval_every} steps)."]
    lines += verdict(result)
    if result.sweep:
        lines += ["", "## Learning-rate sweep", "",
                  f"Both nets, {c.sweep_steps} steps at each rate, same weights and batches.", "",
                  "| lr | plain: final test accuracy | BatchNorm: final test accuracy |",
                  "| ---: | ---: | ---: |"]
        by_lr = {}
        for run in [*result.main, *result.sweep]:
            by_lr.setdefault(run.lr, {})[run.batchnorm] = run
        for lr in sorted(by_lr):
            cells = [sweep_cell(by_lr[lr].get(bn), c.sweep_steps) for bn in (False, True)]
            lines.append(f"| {lr:g} | {cells[0]} | {cells[1]} |")
    lines += ["", "## Files", "", "- `curves.csv`, `results.json`: every evaluation of every run"]
    lines += [f"- `{p}`" for p in plots]
    if plot_note:
        lines += ["", plot_note]
    for p in plots:
        lines += ["", f"![{p}]({p})"]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def dataset_name(info):
    """How the data is called in titles: MNIST, Fashion-MNIST, or the name given."""
    name = info.get("dataset")
    return {"mnist": "MNIST", "fashion": "Fashion-MNIST", None: "the given data"}.get(name, name)


def arch(config, info):
    return "-".join(map(str, (info["features"], *config.hidden, info["classes"])))


def step_text(step):
    return "not reached" if step is None else f"{step:,}"


def verdict(result):
    """One sentence on which run reached the highest target first."""
    target = max(result.config.targets)
    plain, bn = (next(r for r in result.main if r.batchnorm == flag) for flag in (False, True))
    a, b = plain.steps_to(target), bn.steps_to(target)
    if a is None and b is None:
        text = f"Neither net reached {100 * target:g} % in {result.config.steps:,} steps."
    elif b is None:
        text = f"The plain net reached {100 * target:g} % at step {a:,}; BatchNorm did not within {result.config.steps:,} steps."
    elif a is None:
        text = f"BatchNorm reached {100 * target:g} % at step {b:,}; the plain net did not within {result.config.steps:,} steps."
    else:
        text = f"BatchNorm reached {100 * target:g} % at step {b:,}, the plain net at step {a:,} ({a / b:.1f}x as many)."
    return ["", text]


def sweep_cell(run, sweep_steps):
    if run is None:
        return ""
    text = f"{100 * run.final_accuracy:.2f} %"
    if run.phase == "main" and run.step[-1] != sweep_steps:
        # the main run is longer: quote it at the sweep's length so the column compares like with like
        at = [a for s, a in zip(run.step, run.test_accuracy) if s <= sweep_steps]
        text = f"{100 * at[-1]:.2f} % (main run at step {max(s for s in run.step if s <= sweep_steps):,})"
    if run.diverged_at is not None:
        text += f", diverged at step {run.diverged_at:,}"
    return text
