"""When something went wrong: the first layer whose output or gradient went non-finite after a
failed step, and the warning for a training-mode forward where eval mode was meant.

Loaded only then (by :class:`tinynet.nonfinite.NonFiniteGuard`, by ``Graph.forward``), so the
training loop pays for none of it.
"""

import os
import warnings
from dataclasses import asdict

import numpy as np

from .backend import get_array_module
from .graph import EvalModeWarning, Graph
from .history import History
from .nonfinite import NonFiniteError


def stop_nonfinite(model, loss, xb, yb, epoch, step, history, step_losses, checkpoint):
    """Find where the failed step went non-finite and raise :class:`NonFiniteError`."""
    where = locate_nonfinite(model, loss, xb, yb)
    so_far = History(**{k: list(v) for k, v in asdict(history).items()})
    so_far.step_loss.extend(float(s) for s in step_losses)
    advice = "lower the learning rate, or look for a layer that can overflow"
    if checkpoint is not None and epoch > 1:
        advice += f"; {os.fspath(checkpoint)} holds the run after epoch {epoch - 1}: resume with resume=True"
    value = float(step_losses[-1])
    what = f"a non-finite gradient (the loss was {value:.6g})" if np.isfinite(value) else f"a non-finite loss ({value})"
    raise NonFiniteError(
        f"fit: step {step} (epoch {epoch}) gave {what}; the first non-finite value is {where}. "
        f"The parameters are as they were before this step; {advice}.",
        step, epoch, where, so_far,
    )


def stop_nonfinite_epoch(epoch, history, losses):
    """With cuda_graph=True: raise :class:`NonFiniteError` for the first non-finite loss of the epoch."""
    first = int(np.argmin(np.isfinite(losses)))
    step = len(history.step_loss) + first + 1
    so_far = History(**{k: list(v) for k, v in asdict(history).items()})
    so_far.step_loss.extend(losses[: first + 1])
    raise NonFiniteError(
        f"fit: step {step} (epoch {epoch}) gave a non-finite loss ({losses[first]}); with cuda_graph=True "
        "this is checked once per epoch, so the parameters are those after the epoch. Lower the learning "
        "rate, or rerun with cuda_graph=False to find the first non-finite layer.",
        step, epoch, "unknown (cuda_graph=True checks only the losses)", so_far,
    )


def locate_nonfinite(model, loss, xb, yb):
    """Repeat one step with every layer watched; describe the first non-finite output or gradient.

    Only runs after a step has failed, so the training loop pays for none of it. Each layer's
    forward and backward is wrapped for the repeat (the graph runs as usual) and unwrapped after;
    buffers (BatchNorm's running statistics) are restored.
    """
    buffers = [(owner, attr, getattr(owner, attr).copy()) for _, owner, attr in model.named_buffers()]
    watched = [watch(layer, context) for layer, context in layers_in_context(model)]
    try:
        out = model.forward(xb)
        value = loss(out, yb)
        if not all_finite(value):
            return f"the loss {type(loss).__name__} (its input, the logits, is finite)"
        model.zero_grad()
        model.backward(loss.backward())
        return "nowhere when the step was repeated (a random layer such as Dropout drew other values)"
    except FoundNonFinite as found:
        return found.where
    finally:
        for unwatch in watched:
            unwatch()
        for owner, attr, value in buffers:
            setattr(owner, attr, value)


class FoundNonFinite(Exception):
    """Raised inside a watched layer to stop the repeated step where it went non-finite."""

    def __init__(self, where):
        super().__init__(where)
        self.where = where


def all_finite(a):
    return bool(get_array_module(a).isfinite(a).all())


def layers_in_context(model, context=""):
    """Yield ``(layer, context)`` for every layer that is not a Graph; context names the
    graphs around it below the top one (" in Sequential (layer 2)")."""
    if not isinstance(model, Graph):
        yield model, context
    for _, child in model.children():
        inner = f" in {child.name_for_errors()}{context}" if isinstance(child, Graph) else context
        yield from layers_in_context(child, inner)


def watch(layer, context):
    """Wrap ``layer``'s forward and backward with finiteness checks; return the undo function."""
    forward, backward = layer.forward, layer.backward  # bound methods, or a user's own override
    name = f"{layer.name_for_errors()}{context}"

    def checked_forward(*xs):
        out = forward(*xs)
        if not all_finite(out):
            bad = [n for n, p in layer.named_parameters() if not all_finite(p.data)]
            note = f" (whose {', '.join(bad)} already non-finite: an earlier update overflowed)" if bad else ""
            raise FoundNonFinite(f"the output of {name}{note}")
        return out

    def checked_backward(dy):
        dx = backward(dy)
        bad = [n for n, p in layer.named_parameters() if not all_finite(p.grad)]
        if bad:
            raise FoundNonFinite(f"the gradient of {', '.join(bad)} in {name}")
        if not all(d is None or all_finite(d) for d in (dx if isinstance(dx, tuple) else (dx,))):
            raise FoundNonFinite(f"the input gradient of {name}")
        return dx

    return wrap_methods(layer, forward=checked_forward, backward=checked_backward)


def wrap_methods(layer, **methods):
    """Set instance-level methods on ``layer`` (``forward=...``); return the function that undoes it,
    putting back an instance-level method that was there before (the speed ring's) or removing the
    attribute so that the class's method shows again. Used to look inside a step (here, layer_stats)."""
    own = {name: vars(layer)[name] for name in methods if name in vars(layer)}
    for name, method in methods.items():
        setattr(layer, name, method)

    def undo():
        for name in methods:
            if name in own:
                setattr(layer, name, own[name])
            else:
                delattr(layer, name)

    return undo


def warn_eval_mode_forgotten(graph, after_fit):
    """Warn once per graph, and only when it has layers that behave differently in training."""
    if graph.__dict__.get("_warned_eval_mode"):
        return
    kinds = sorted({type(m).__name__ for m in graph.modules() if m.differs_in_training})
    if kinds:
        graph._warned_eval_mode = True
        what = ("ran in training mode after fit" if after_fit
                else "ran again in training mode with no backward after the previous one")
        changed = (f"; {'this' if after_fit else 'that'} forward changed the running statistics (running_mean, "
                   "running_var) with data the model was not fitting") if any("BatchNorm" in k for k in kinds) else ""
        warnings.warn(
            f"{graph.name_for_errors()}: forward {what}, and the model has {' and '.join(kinds)}, which behave "
            f"differently in training{changed}. If you are evaluating or predicting, call model.eval() first "
            "(tinynet.evaluate does it for you) and model.train() before training again (which also silences this).",
            EvalModeWarning, stacklevel=3)
