"""Saving, loading and moving state: ``state_dict``, ``load_state_dict`` and ``Layer.to``.

Loaded on first use (checkpoints, ``load_state_dict``); a training step needs none of it.
"""

import warnings

import numpy as np

from .backend import backend_name, check_backend, get_array_module, to_device, to_numpy
from .layer import Parameter


def layer_state(layer):
    """``layer.state_dict()``: ``{name: numpy.ndarray}`` host copies of parameters and buffers."""
    return {name: to_numpy(getattr(obj, attr)).copy() for name, (obj, attr) in state_slots(layer)}


def state_slots(layer, prefix=""):
    """Yield ``(name, (object, attribute))`` for every saved array, layer by layer (a shared
    Parameter under each of its names, as PyTorch saves tied weights)."""
    for attr, value in vars(layer).items():
        if isinstance(value, Parameter):
            yield prefix + attr, (value, "data")
    for attr in layer.buffers:
        yield prefix + attr, (layer, attr)
    for name, child in layer.children():
        yield from state_slots(child, prefix + name + ".")


def load_layer_state(layer, state):
    """``layer.load_state_dict(state)``; strict: any mismatch raises and changes nothing."""
    if not isinstance(state, dict):
        raise TypeError(f"{type(layer).__name__}.load_state_dict: expected a dict, got {type(state).__name__}")
    tensors = [name for name, value in state.items() if type(value).__module__.split(".")[0] == "torch"]
    if tensors:  # a PyTorch state_dict: square Linear weights would load transposed, without a word
        raise TypeError(f"{type(layer).__name__}.load_state_dict: {', '.join(tensors[:3])}"
                        f"{' ...' if len(tensors) > 3 else ''} are torch tensors, so this state_dict came from PyTorch, "
                        f"{FROM_TORCH}")
    targets = dict(state_slots(layer))
    missing = sorted(set(targets) - set(state))
    unexpected = sorted(set(state) - set(targets))
    wrong_shape = [
        f"{name}: model has {getattr(obj, attr).shape}, state has {np.shape(state[name])}"
        for name, (obj, attr) in targets.items()
        if name in state and tuple(getattr(obj, attr).shape) != tuple(np.shape(state[name]))
    ]
    if missing or unexpected or wrong_shape:
        hint = "; it looks like a PyTorch state_dict, " + FROM_TORCH if _looks_like_torch(targets, state, unexpected) else ""
        raise ValueError(f"{type(layer).__name__}.load_state_dict: " + describe_mismatch(missing, unexpected, wrong_shape)
                         + hint)
    for name, (obj, attr) in targets.items():
        current = getattr(obj, attr)
        xp = get_array_module(current)
        value = xp.array(to_device(state[name], backend_name(current)), dtype=current.dtype)
        setattr(obj, attr, value)


FROM_TORCH = ("whose Linear weights are (out, in) where tinynet's are (in, out) and whose BatchNorm calls gamma and "
              "beta weight and bias: build the tinynet model with tinynet.from_torch(torch_module) instead "
              "(docs/pytorch.md)")


def _looks_like_torch(targets, state, unexpected):
    """True when a state that does not fit has PyTorch's marks: a BatchNorm's ``num_batches_tracked``
    (saved by tinynet only with momentum=None), BatchNorm's ``weight``/``bias`` where tinynet has
    ``gamma``/``beta``, or a weight whose shape is the transpose of the model's."""
    if any(key.rsplit(".", 1)[-1] in ("num_batches_tracked", "weight", "bias") for key in unexpected):
        return True
    return any(name in state and len(np.shape(state[name])) == 2 and tuple(np.shape(state[name])[::-1])
               == tuple(getattr(obj, attr).shape) != tuple(np.shape(state[name]))
               for name, (obj, attr) in targets.items())


def describe_mismatch(missing, unexpected, wrong_shapes):
    """One line saying how a saved state and a model disagree (for strict loading)."""
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if wrong_shapes:
        problems.append("wrong shapes: " + "; ".join(wrong_shapes))
    return ", ".join(problems)


def optimizer_state(opt):
    """``optimizer.state_dict()``."""
    state = {
        "type": type(opt).__name__,
        "hyperparameters": {k: _plain(getattr(opt, k)) for k in opt.hyperparameters},
        "parameters": [p.name for p in opt.params],
        "state": [{k: to_numpy(v).copy() for k, v in s.items()} for s in opt.state],
    }
    state.update({c: int(getattr(opt, c)) for c in opt.counters})
    return state


def load_optimizer_state(opt, state):
    """``optimizer.load_state_dict(state)``: strict, see there."""
    name = type(opt).__name__
    if not isinstance(state, dict):
        raise TypeError(f"{name}.load_state_dict: expected a dict from state_dict(), got {type(state).__name__}")
    if state.get("type", name) != name:
        raise ValueError(f"{name}.load_state_dict: the state was saved by {state['type']}, not by {name}")
    missing = sorted({"type", "state", *opt.counters} - set(state))
    if missing:
        raise ValueError(f"{name}.load_state_dict: the state has no {missing}; expected a dict from state_dict()")
    saved = state["state"]
    if len(saved) != len(opt.params):
        raise ValueError(
            f"{name}.load_state_dict: the state is for {len(saved)} parameters, this optimizer has {len(opt.params)}"
        )
    wrong = [
        f"parameter {i} ({p.name}) {key}: optimizer has {tuple(p.data.shape)}, state has {tuple(np.shape(value))}"
        for i, (p, s) in enumerate(zip(opt.params, saved))
        for key, value in s.items()
        if tuple(np.shape(value)) != tuple(p.data.shape)
    ]
    if wrong:
        raise ValueError(f"{name}.load_state_dict: wrong shapes: " + "; ".join(wrong))
    changed = [
        f"{k}={v!r} (saved {state['hyperparameters'][k]!r})"
        for k, v in ((k, _plain(getattr(opt, k))) for k in opt.hyperparameters if k != "lr")
        if k in state.get("hyperparameters", {}) and state["hyperparameters"][k] != v
    ]
    if changed:
        warnings.warn(f"{name}.load_state_dict: keeping this optimizer's " + ", ".join(changed), stacklevel=2)
    opt.state = [
        {
            key: get_array_module(p.data).array(to_device(value, backend_name(p.data)), dtype=p.data.dtype)
            for key, value in s.items()
        }
        for p, s in zip(opt.params, saved)
    ]
    for c in opt.counters:
        setattr(opt, c, int(state[c]))


def _plain(value):
    """A hyperparameter as JSON keeps it: tuples become lists, so saved and current compare equal."""
    return list(value) if isinstance(value, tuple) else value


def move_layer(layer, backend):
    """``layer.to(backend)``: parameters, gradients and buffers moved; returns the layer."""
    check_backend(backend, f"{type(layer).__name__}.to")
    for _, p in layer.named_parameters():
        p.data = to_device(p.data, backend)
        p.grad = to_device(p.grad, backend)
    for _, owner, attr in layer.named_buffers():
        setattr(owner, attr, to_device(getattr(owner, attr), backend))
    return layer
