"""Looking inside a run: per-layer statistics recorded every k-th step of ``fit(..., inspect_every=k)``.

Loaded only when asked for; with ``inspect_every=None`` (the default) fit runs exactly as without
this module. At a recorded step, before the step runs, each layer's ``forward`` is wrapped for that
one step to read its output, and the parameters are copied; after the step (forward, backward,
update) it records, per layer:

    act_mean, act_std   mean and standard deviation of the layer's output over the batch
    zero_frac           ReLU: fraction of outputs that are exactly 0 (units that pass no gradient)
    saturated_frac      Sigmoid: outputs below 0.02 or above 0.98; Tanh: |output| above 0.97
                        (the derivative there is under 0.02 and 0.06: gradients barely pass)
    grad_norm           layers with parameters: the L2 norm of all their gradients at that step
    weight_norm         the L2 norm of all their parameters before the update
    update_ratio        ||parameters after - before|| / ||before||: how much the step moved them
                        (about 1e-3 is the usual rule of thumb for a healthy learning rate)

into ``history.layer_stats = {"step": [...], "layers": {"1 BatchNorm": {"act_mean": [...], ...}}}``,
layers named by their position (as in ``state_dict``) and class. Steps count from 0 over the whole
run, so ``history.step_loss[s]`` is the loss of recorded step ``s``.
"""

import numpy as np

from .backend import get_array_module, to_numpy
from .diagnose import wrap_methods
from .graph import Graph
from .layer import check_positive_int
from .layers import ReLU, Sigmoid, Tanh


def named_layers(model, prefix=""):
    """Yield ``(label, layer)`` for each layer that is not a Graph: ``("1 BatchNorm", layer)``."""
    if not isinstance(model, Graph):
        yield (f"{prefix} " if prefix else "") + type(model).__name__, model
        return
    for name, child in model.children():
        yield from named_layers(child, f"{prefix}.{name}" if prefix else name)


def recording_step(model, step, history, every, cuda_graph=False):
    """Wrap fit's ``step(xb, yb)`` so that every ``every``-th call also records the statistics."""
    check_positive_int("fit", "inspect_every", every)
    if cuda_graph:
        raise ValueError("fit: inspect_every reads each layer's output in Python, which a replayed CUDA graph "
                         "skips; use it without cuda_graph=True")
    layers = list(named_layers(model))
    stats = history.layer_stats
    stats.setdefault("step", [])
    stats.setdefault("layers", {label: {} for label, _ in layers})
    count = [len(history.step_loss)]  # a resumed run goes on counting

    def recorded(xb, yb):
        index = count[0]
        count[0] += 1
        if index % every:
            return step(xb, yb)
        outputs, restore = watch_outputs(layers)
        before = {label: [p.data.copy() for _, p in layer.named_parameters()] for label, layer in layers}
        try:
            value = step(xb, yb)
        finally:
            restore()
        stats["step"].append(index)
        for label, layer in layers:
            row = layer_row(layer, outputs.get(label), before[label])
            for key, number in row.items():
                stats["layers"].setdefault(label, {}).setdefault(key, []).append(number)
        return value

    return recorded


def watch_outputs(layers):
    """Wrap each layer's ``forward`` to keep its output; return ``(outputs, restore)``."""
    outputs = {}
    undo = []
    for label, layer in layers:

        def forward(*xs, _label=label, _forward=layer.forward):  # an instance-level forward (the speed ring's) too
            y = _forward(*xs)
            outputs[_label] = y
            return y

        undo.append(wrap_methods(layer, forward=forward))

    def restore():
        for undo_one in undo:
            undo_one()

    return outputs, restore


def layer_row(layer, y, before):
    """The statistics of one layer at one step, as Python floats (see the module docstring)."""
    row = {}
    if y is not None and hasattr(y, "dtype"):
        xp = get_array_module(y)
        row["act_mean"], row["act_std"] = float(y.mean()), float(y.std())
        if isinstance(layer, ReLU):
            row["zero_frac"] = float((y == 0).mean())
        elif isinstance(layer, Sigmoid):
            row["saturated_frac"] = float(((y < 0.02) | (y > 0.98)).mean())
        elif isinstance(layer, Tanh):
            row["saturated_frac"] = float((xp.abs(y) > 0.97).mean())
    params = [p for _, p in layer.named_parameters()]
    if params:
        row["grad_norm"] = norm([p.grad for p in params])
        row["weight_norm"] = norm(before)
        row["update_ratio"] = norm([p.data - b for p, b in zip(params, before)]) / max(row["weight_norm"], 1e-30)
    return row


def norm(arrays):
    return float(np.sqrt(sum(float((to_numpy(a).astype(np.float64) ** 2).sum()) for a in arrays)))


def describe_history(history):
    """``repr(history)``: a few lines on what the run measured, not every step's loss."""
    epochs, steps = len(history.train_loss), len(history.step_loss)
    if not epochs and not steps:
        return "History(empty: no epoch has run)"
    lines = [f"History: {epochs} epoch{'s' * (epochs != 1)}, {steps:,} steps"
             + (f", {np.mean(history.seconds):.2f} s/epoch" if history.seconds else "")]
    if epochs:
        lines.append(f"  train loss  {history.train_loss[0]:.4f} -> {history.train_loss[-1]:.4f}")
    if history.val_loss:
        best = int(np.argmax(history.val_accuracy))
        lines.append(f"  val loss    {history.val_loss[0]:.4f} -> {history.val_loss[-1]:.4f}")
        lines.append(f"  val acc     {100 * history.val_accuracy[0]:.2f}% -> {100 * history.val_accuracy[-1]:.2f}% "
                     f"(best {100 * history.val_accuracy[best]:.2f}% after epoch {best + 1})")
    if history.layer_stats.get("step"):
        recorded = history.layer_stats["step"]
        lines.append(f"  layer statistics at {len(recorded)} steps ({recorded[0]} to {recorded[-1]}) of "
                     f"{len(history.layer_stats['layers'])} layers: history.layer_stats")
    lines.append("  (lists: step_loss, train_loss, val_loss, val_accuracy, seconds)")
    return "\n".join(lines)
