"""Optimizers with PyTorch's update rules: SGD (momentum, Nesterov, weight decay) and Adam."""

import math
import warnings

import numpy as np

from . import kernels
from .backend import backend_name, get_array_module, to_device, to_numpy
from .flat import FlatParameters
from .layer import Parameter


class Optimizer:
    """Holds a list of Parameters; ``step()`` updates ``p.data`` in place from ``p.grad``.

    A subclass defines ``update(data, grad, state)``: its rule applied to one parameter's
    arrays, or to all parameters' at once. On the CPU the first ``step()`` packs the
    parameters into one flat array (:mod:`tinynet.flat`; ``flat=False`` does not), and each
    step then calls ``update`` once for all of them. The packing replaces each ``p.data`` and
    ``p.grad`` by a view of the flat arrays (same values and shapes): read ``p.data`` anew
    after a step, not through a reference kept from before.
    """

    hyperparameters = ("lr",)  # saved by state_dict, compared by load_state_dict
    state_names = {}  # key in the per-parameter state -> its name in error messages
    counters = ()  # integer state beside the per-parameter arrays (Adam's step count t)

    def __init__(self, params, lr, flat=True):
        params = list(params) if not isinstance(params, Parameter) else [params]
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{type(self).__name__}: expected Parameters (model.parameters()), got {type(p).__name__}"
                )
        check_nonnegative(self, "lr", lr)
        if not isinstance(flat, bool):
            raise TypeError(f"{type(self).__name__}: expected flat to be True or False, got {flat!r}")
        self.params, self.lr, self.use_flat = params, float(lr), flat
        self.state = [{} for _ in params]  # per parameter, same order as params
        self.flat, self._unpackable = None, ()  # the packing, made by the first step()

    def step(self):
        """Update every parameter from its gradient: one ``update`` for all, while packed."""
        flat = self.flat if self.flat is not None and self.flat.intact() else self._pack_again()
        state = flat.flat_state(self.state) if flat is not None else None
        if state is not None:
            self.update(flat.data, flat.grad, state)
            flat.share_state(state, self.state)  # what update made or replaced, seen per parameter
            return
        for p, state in zip(self.params, self.state):
            for key, value in state.items():
                self._check_kind(p, key, value)
            self.update(p.data, self._checked_grad(p), state)

    def update(self, data, grad, state):
        """Update ``data`` in place from ``grad``; ``state`` is a dict this rule keeps between steps."""
        raise NotImplementedError(f"{type(self).__name__} must define update(data, grad, state)")

    def _pack_again(self):
        """Pack the parameters: at the first step, or after something replaced their arrays
        (model.to, load_state_dict). Arrays found unpackable (tied weights, CuPy) are not tried
        again until one of them is replaced."""
        arrays = [a for p in self.params for a in (p.data, p._grad)]
        if not self.use_flat or (self._unpackable and all(a is b for a, b in zip(arrays, self._unpackable))):
            return None
        self.flat = FlatParameters.pack(self.params)
        self._unpackable = arrays if self.flat is None else ()
        return self.flat

    def zero_grad(self):
        """Mark every gradient zero (``Parameter.zero_grad``: no pass over the arrays here)."""
        for p in self.params:
            p.zero_grad()

    def to(self, backend):
        """Move the optimizer state (momentum buffers, moments) to ``"numpy"`` or ``"cupy"``.

        ``model.to(...)`` moves the parameters but not this state; ``fit`` calls
        ``optimizer.to(...)`` for you, a hand-written loop must call it after ``model.to``.
        """
        for state in self.state:
            for key, value in state.items():
                if hasattr(value, "shape"):
                    state[key] = to_device(value, backend)
        return self

    def state_dict(self):
        """Host copies of everything ``step()`` has accumulated, for checkpoints.

        Returns
        -------
        dict
            ``type`` (the class name), ``hyperparameters`` ({name: value}), ``parameters``
            (their names, in order), ``state`` (per parameter, {key: numpy.ndarray} of the
            parameter's shape: SGD's ``momentum_buffer``, Adam's ``m`` and ``v``) and the
            counters (Adam's step count ``t``).
        """
        state = {
            "type": type(self).__name__,
            "hyperparameters": {k: _plain(getattr(self, k)) for k in self.hyperparameters},
            "parameters": [p.name for p in self.params],
            "state": [{k: to_numpy(v).copy() for k, v in s.items()} for s in self.state],
        }
        state.update({c: int(getattr(self, c)) for c in self.counters})
        return state

    def load_state_dict(self, state):
        """Load a ``state_dict`` onto this optimizer's parameters (their backend and dtype).

        Strict: any mismatch raises and changes nothing. Hyperparameters stay this
        optimizer's own, so a resumed run may lower the lr; any other that differs from
        the saved one gets a warning, since the run will not continue as it began.
        """
        name = type(self).__name__
        if not isinstance(state, dict):
            raise TypeError(f"{name}.load_state_dict: expected a dict from state_dict(), got {type(state).__name__}")
        if state.get("type", name) != name:
            raise ValueError(f"{name}.load_state_dict: the state was saved by {state['type']}, not by {name}")
        missing = sorted({"type", "state", *self.counters} - set(state))
        if missing:
            raise ValueError(f"{name}.load_state_dict: the state has no {missing}; expected a dict from state_dict()")
        saved = state["state"]
        if len(saved) != len(self.params):
            raise ValueError(
                f"{name}.load_state_dict: the state is for {len(saved)} parameters, this optimizer has {len(self.params)}"
            )
        wrong = [
            f"parameter {i} ({p.name}) {key}: optimizer has {tuple(p.data.shape)}, state has {tuple(np.shape(value))}"
            for i, (p, s) in enumerate(zip(self.params, saved))
            for key, value in s.items()
            if tuple(np.shape(value)) != tuple(p.data.shape)
        ]
        if wrong:
            raise ValueError(f"{name}.load_state_dict: wrong shapes: " + "; ".join(wrong))
        changed = [
            f"{k}={v!r} (saved {state['hyperparameters'][k]!r})"
            for k, v in ((k, _plain(getattr(self, k))) for k in self.hyperparameters if k != "lr")
            if k in state.get("hyperparameters", {}) and state["hyperparameters"][k] != v
        ]
        if changed:
            warnings.warn(f"{name}.load_state_dict: keeping this optimizer's " + ", ".join(changed), stacklevel=2)
        self.state = [
            {
                key: get_array_module(p.data).array(to_device(value, backend_name(p.data)), dtype=p.data.dtype)
                for key, value in s.items()
            }
            for p, s in zip(self.params, saved)
        ]
        for c in self.counters:
            setattr(self, c, int(state[c]))

    def _check_kind(self, p, key, value):
        """Refuse state left on another backend than its parameter (model.to without optimizer.to)."""
        if backend_name(value) != backend_name(p.data):
            raise TypeError(
                f"{type(self).__name__}: the {self.state_names.get(key, key)} of {p.name} is a {backend_name(value)} array but the "
                f"parameter is a {backend_name(p.data)} array; call optimizer.to({backend_name(p.data)!r}) "
                "after model.to(...) (fit does it for you)"
            )

    def _checked_grad(self, p):
        if p.grad.shape != p.data.shape:
            raise ValueError(
                f"{type(self).__name__}: gradient of {p.name} has shape {p.grad.shape}, "
                f"its parameter {p.data.shape}"
            )
        return p.grad


def _plain(value):
    """A hyperparameter as JSON keeps it: tuples become lists, so saved and current compare equal."""
    return list(value) if isinstance(value, tuple) else value


def check_nonnegative(opt, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{type(opt).__name__}: expected {name} to be a finite number >= 0, got {value!r}")


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule (dampening 0)::

        g = grad + weight_decay * p
        b = g (first step), else b = momentum * b + g
        g = g + momentum * b if nesterov else b
        p = p - lr * g

    ``flat=False`` keeps every parameter in arrays of its own (see :class:`Optimizer`).
    """

    hyperparameters = ("lr", "momentum", "weight_decay", "nesterov")
    state_names = {"momentum_buffer": "momentum buffer"}

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, flat=True):
        super().__init__(params, lr, flat)
        check_nonnegative(self, "momentum", momentum)
        check_nonnegative(self, "weight_decay", weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = float(momentum), float(weight_decay), bool(nesterov)

    def step(self):
        fused = kernels.fused("sgd_step", self.params[0].data)
        if fused is not None and fused(self) is not NotImplemented:  # CuPy: one kernel for all parameters
            return
        super().step()

    def update(self, data, grad, state):
        fused = kernels.fused("sgd_update", data)
        if fused is not None and fused(self, data, grad, state) is not NotImplemented:
            return  # C: the rule below in one pass over the arrays instead of four
        # L2 weight decay coupled into the gradient, as PyTorch does (not AdamW)
        g = grad + self.weight_decay * data if self.weight_decay else grad
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), PyTorch's rule with bias correction::

        g = grad + weight_decay * p
        m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g**2
        p = p - lr / (1 - b1**t) * m / (sqrt(v / (1 - b2**t)) + eps)

    ``flat=False`` keeps every parameter in arrays of its own (see :class:`Optimizer`).
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    state_names = {"m": "first moment", "v": "second moment"}
    counters = ("t",)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, flat=True):
        super().__init__(params, lr, flat)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: expected betas as two numbers in [0, 1), got {betas!r}")
        check_nonnegative(self, "eps", eps)
        check_nonnegative(self, "weight_decay", weight_decay)
        self.betas, self.eps, self.weight_decay = tuple(map(float, betas)), float(eps), float(weight_decay)
        self.t = 0

    def step(self):
        self.t += 1
        super().step()

    def update(self, data, grad, state):
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1**self.t)
        root_correction = math.sqrt(1 - b2**self.t)
        xp = get_array_module(data)
        if "m" not in state:
            state["m"], state["v"] = xp.zeros_like(data), xp.zeros_like(data)
        fused = kernels.fused("adam_update", data)
        if fused is not None and fused(self, data, grad, state, step_size, root_correction) is not NotImplemented:
            return  # C: the rule below in one pass over the arrays instead of ten
        g = grad + self.weight_decay * data if self.weight_decay else grad
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        data -= step_size * m / (xp.sqrt(v) / root_correction + self.eps)


def cosine_schedule(lr, epochs, final_fraction=0.0):
    """Per-epoch learning rates falling from ``lr`` along a half cosine (Loshchilov & Hutter 2017).

    Returns ``schedule(epoch) -> lr`` for epochs 0 .. epochs-1; the last epoch
    trains at ``lr * final_fraction`` plus half a step of the cosine, never at 0.
    """
    if not epochs >= 1:
        raise ValueError(f"cosine_schedule: expected epochs >= 1, got {epochs!r}")

    def schedule(epoch):
        progress = (epoch + 0.5) / epochs  # the middle of the epoch
        return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))

    return schedule
