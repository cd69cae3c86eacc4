"""Optimizers with PyTorch's update rules: SGD (momentum, Nesterov, weight decay) and Adam."""

import math

from .backend import get_array_module, to_device
from .layer import Parameter


class Optimizer:
    """Holds a list of Parameters; ``step()`` updates ``p.data`` in place from ``p.grad``."""

    def __init__(self, params, lr):
        params = list(params) if not isinstance(params, Parameter) else [params]
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{type(self).__name__}: expected Parameters (model.parameters()), got {type(p).__name__}"
                )
        check_nonnegative(self, "lr", lr)
        self.params, self.lr = params, float(lr)
        self.state = [{} for _ in params]  # per parameter, same order as params

    def zero_grad(self):
        for p in self.params:
            p.zero_grad()

    def to(self, backend):
        """Move the optimizer state (momentum buffers, moments) to ``"numpy"`` or ``"cupy"``."""
        for state in self.state:
            for key, value in state.items():
                if hasattr(value, "shape"):
                    state[key] = to_device(value, backend)
        return self

    def _grad(self, p, weight_decay):
        """The gradient with L2 weight decay added (as PyTorch does: coupled, not AdamW)."""
        if p.grad.shape != p.data.shape:
            raise ValueError(
                f"{type(self).__name__}: gradient of {p.name} has shape {p.grad.shape}, "
                f"its parameter {p.data.shape}"
            )
        return p.grad + weight_decay * p.data if weight_decay else p.grad


def check_nonnegative(opt, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{type(opt).__name__}: expected {name} to be a finite number >= 0, got {value!r}")


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule (dampening 0)::

        g = grad + weight_decay * p
        b = g (first step), else b = momentum * b + g
        g = g + momentum * b if nesterov else b
        p = p - lr * g
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        check_nonnegative(self, "momentum", momentum)
        check_nonnegative(self, "weight_decay", weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = float(momentum), float(weight_decay), bool(nesterov)

    def step(self):
        for p, state in zip(self.params, self.state):
            g = self._grad(p, self.weight_decay)
            if self.momentum:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = g.copy()
                else:
                    buf *= self.momentum
                    buf += g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), PyTorch's rule with bias correction::

        g = grad + weight_decay * p
        m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g**2
        p = p - lr / (1 - b1**t) * m / (sqrt(v / (1 - b2**t)) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: expected betas as two numbers in [0, 1), got {betas!r}")
        check_nonnegative(self, "eps", eps)
        check_nonnegative(self, "weight_decay", weight_decay)
        self.betas, self.eps, self.weight_decay = tuple(map(float, betas)), float(eps), float(weight_decay)
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1**self.t)
        root_correction = math.sqrt(1 - b2**self.t)
        for p, state in zip(self.params, self.state):
            g = self._grad(p, self.weight_decay)
            xp = get_array_module(p.data)
            if "m" not in state:
                state["m"], state["v"] = xp.zeros_like(p.data), xp.zeros_like(p.data)
            m, v = state["m"], state["v"]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p.data -= step_size * m / (xp.sqrt(v) / root_correction + self.eps)


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
