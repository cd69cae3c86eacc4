"""Optimizers with PyTorch's update rules: SGD (momentum, Nesterov, weight decay) and Adam."""

import math

from .backend import backend_name, get_array_module, to_device
from .layer import Parameter


class Optimizer:
    """Holds a list of Parameters; ``step()`` updates each ``p.data`` in place from its ``p.grad``.

    A subclass defines ``update(data, grad, state)``: its rule applied to one parameter's
    arrays, with ``state`` a dict the rule keeps for that parameter between steps. ``step()``
    is a loop over the parameters, in the order given.
    """

    hyperparameters = ("lr",)  # saved by state_dict, compared by load_state_dict
    state_names = {}  # key in the per-parameter state -> its name in error messages
    counters = ()  # integer state beside the per-parameter arrays (Adam's step count t)

    def __init__(self, params, lr):
        params = list(params) if not isinstance(params, Parameter) else [params]
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{type(self).__name__}: expected Parameters (model.parameters()), got {type(p).__name__}"
                )
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{type(self).__name__}: a Parameter appears twice in the list; it would be "
                             "stepped twice per step (model.parameters() lists a shared one once)")
        check_nonnegative(self, "lr", lr)
        self.params, self.lr = params, float(lr)
        self.state = [{} for _ in params]  # per parameter, same order as params

    def step(self):
        """Update every parameter from its gradient, one after the other."""
        for p, state in zip(self.params, self.state):
            for key, value in state.items():
                self._check_kind(p, key, value)
            self.update(p.data, self._checked_grad(p), state)

    def update(self, data, grad, state):
        """Update ``data`` in place from ``grad``; ``state`` is a dict this rule keeps between steps."""
        raise NotImplementedError(f"{type(self).__name__} must define update(data, grad, state)")

    def zero_grad(self):
        """Set every gradient to zeros."""
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
        """Host copies of everything ``step()`` has accumulated, for checkpoints: ``type``,
        ``hyperparameters``, ``parameters`` (names), ``state`` (per parameter, {key: array}: SGD's
        ``momentum_buffer``, Adam's ``m`` and ``v``) and the counters (Adam's ``t``)."""
        from .state import optimizer_state

        return optimizer_state(self)

    def load_state_dict(self, state):
        """Load a ``state_dict`` onto this optimizer's parameters (their backend and dtype).

        Strict: any mismatch raises and changes nothing. Hyperparameters stay this
        optimizer's own, so a resumed run may lower the lr; any other that differs from
        the saved one gets a warning, since the run will not continue as it began.
        """
        from .state import load_optimizer_state

        load_optimizer_state(self, state)

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

    hyperparameters = ("lr", "momentum", "weight_decay", "nesterov")
    state_names = {"momentum_buffer": "momentum buffer"}

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        check_nonnegative(self, "momentum", momentum)
        check_nonnegative(self, "weight_decay", weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = float(momentum), float(weight_decay), bool(nesterov)

    def update(self, data, grad, state):
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

    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    state_names = {"m": "first moment", "v": "second moment"}
    counters = ("t",)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{type(self).__name__}: expected betas as two numbers in [0, 1), got {betas!r}")
        check_nonnegative(self, "eps", eps)
        check_nonnegative(self, "weight_decay", weight_decay)
        self.betas, self.eps, self.weight_decay = tuple(map(float, betas)), float(eps), float(weight_decay)
        self.t = 0

    def step(self):
        self.t += 1
        super().step()

    def update(self, data, grad, state):
        g = grad + self.weight_decay * data if self.weight_decay else grad  # L2 decay, coupled (not AdamW)
        self.adam_step(data, g, state)

    def adam_step(self, data, g, state):
        """The moments and the bias-corrected step, from the gradient ``g``."""
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1**self.t)
        root_correction = math.sqrt(1 - b2**self.t)
        xp = get_array_module(data)
        if "m" not in state:
            state["m"], state["v"] = xp.zeros_like(data), xp.zeros_like(data)
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        data -= step_size * m / (xp.sqrt(v) / root_correction + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), PyTorch's AdamW rule::

        p = p - lr * weight_decay * p                       (decay the weight, not the gradient)
        m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g**2
        p = p - lr / (1 - b1**t) * m / (sqrt(v / (1 - b2**t)) + eps)

    Adam with ``weight_decay`` adds the decay to the gradient, so it passes through m and v and
    is rescaled per weight; AdamW shrinks every weight by the same factor instead. The default
    weight_decay is PyTorch's, 0.01.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)

    def update(self, data, grad, state):
        data *= 1 - self.lr * self.weight_decay  # decoupled: the weight shrinks before the Adam step, as PyTorch
        self.adam_step(data, grad, state)


def clip_grad_norm(parameters, max_norm):
    """Scale all gradients together so that their joint L2 norm is at most ``max_norm``.

    PyTorch's ``clip_grad_norm_``: total = sqrt(sum of every gradient's squared entries); when
    total > max_norm every ``p.grad`` is multiplied in place by max_norm / (total + 1e-6), so the
    direction of the whole step is kept. Call it between ``backward`` and ``optimizer.step()``.

    Parameters
    ----------
    parameters : iterable of Parameter
        Usually ``model.parameters()``.
    max_norm : float
        The largest norm allowed, > 0.

    Returns
    -------
    float
        The total norm before clipping (a NaN or Inf when a gradient holds one: check it).
    """
    params = [parameters] if isinstance(parameters, Parameter) else list(parameters)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"clip_grad_norm: expected Parameters (model.parameters()), got {type(p).__name__}")
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
        raise ValueError(f"clip_grad_norm: expected max_norm to be a number > 0, got {max_norm!r}")
    if not params:
        return 0.0
    total = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in params))  # one value read per parameter
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for p in params:
            p.grad *= scale
    return total


def __getattr__(name):  # the schedules live in tinynet/schedules.py, loaded on first use
    if name in ("cosine_schedule", "step_decay", "warmup_cosine"):
        from . import schedules

        return getattr(schedules, name)
    raise AttributeError(f"module 'tinynet.optim' has no attribute {name!r}")
