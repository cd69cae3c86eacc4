"""Stopping at the first NaN or Inf: the cheap per-step check fit makes.

Finding where the failed step went non-finite (:mod:`tinynet.diagnose`) is loaded only
when a step fails.
"""

import numpy as np

from .backend import get_array_module


class NonFiniteError(FloatingPointError):
    """fit stopped at a NaN or Inf loss or gradient.

    Attributes
    ----------
    step : int
        The failed step, counted from 1 over the whole run.
    epoch : int
    where : str
        The first layer output or gradient found non-finite, e.g. ``"the output of Linear (layer 3)"``.
    history : History
        The run so far; ``step_loss`` includes the failed epoch's steps up to the failed one.
    """

    def __init__(self, message, step, epoch, where, history):
        super().__init__(message)
        self.step, self.epoch, self.where, self.history = step, epoch, where, history


class NonFiniteGuard:
    """fit's NaN guard: ``check(loss, xb, yb)`` after each backward raises :class:`NonFiniteError`
    at the first non-finite loss or gradient; ``start_epoch`` tells it where it is."""

    def __init__(self, model, loss, params, history, checkpoint):
        self.model, self.loss, self.params, self.history, self.checkpoint = model, loss, params, history, checkpoint
        self.epoch, self.losses = 0, []

    def start_epoch(self, epoch, losses):
        """``losses`` is the list fit fills with this epoch's step losses."""
        self.epoch, self.losses = epoch, losses

    def check(self, loss_value, xb, yb):
        if not finite_step(get_array_module(loss_value), loss_value, self.params):
            from .diagnose import stop_nonfinite

            step = len(self.history.step_loss) + len(self.losses) + 1
            stop_nonfinite(self.model, self.loss, xb, yb, self.epoch, step, self.history,
                           self.losses + [loss_value], self.checkpoint)

    def check_epoch(self, losses):
        """With a CUDA graph, the epoch's losses read back at its end."""
        if not np.all(np.isfinite(losses)):
            from .diagnose import stop_nonfinite_epoch

            stop_nonfinite_epoch(self.epoch, self.history, losses)


def finite_step(xp, loss_value, params):
    """True when the loss and every gradient are finite: one flag, so one device sync."""
    # NaN and Inf survive the sum of the loss and every g . g: one fast dot per gradient, cheaper
    # than isfinite(g).all(); a finite g so large that g . g overflows is a false alarm, which
    # the exact check clears
    total = loss_value
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow here is the false alarm above
        for p in params:
            g = p.grad.reshape(-1)
            total = total + xp.dot(g, g)
    if bool(xp.isfinite(total)):
        return True
    return bool(xp.isfinite(loss_value)) and all(bool(xp.isfinite(p.grad).all()) for p in params)
