"""Dropout (inverted): zero each input with probability p in training, scale the rest by 1/(1-p)."""

import numpy as np

from ..backend import get_array_module
from ..layer import Layer, check_grad, check_input, check_rng


class Dropout(Layer):
    """Inverted dropout; the identity in eval mode.

    Parameters
    ----------
    p : float
        Probability of dropping a unit, 0 <= p < 1.
    rng : numpy.random.Generator, optional
        Source of the masks; a fresh unseeded one if omitted.

    Shapes: any (N, ...) -> same.
    """

    differs_in_training = True

    def __init__(self, p=0.5, rng=None):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"Dropout: expected 0 <= p < 1, got {p!r}")
        check_rng("Dropout", rng)
        self.p = float(p)
        self.rng = np.random.default_rng() if rng is None else rng

    def forward(self, x):
        check_input(self, x)
        if not self.training or self.p == 0:
            self.save_for_backward(None, x.shape)
            return x
        xp = get_array_module(x)
        keep = xp.asarray(self.rng.random(x.shape) >= self.p)  # (N, ...) bool, drawn on the host
        # scaling the kept units keeps E[y] = x, so eval needs no rescaling
        mask = keep.astype(x.dtype) / x.dtype.type(1 - self.p)
        self.save_for_backward(mask, x.shape)
        return x * mask

    def backward(self, dy):
        mask, shape = self.saved()
        check_grad(self, dy, shape)
        return dy if mask is None else dy * mask

    def extra_repr(self):
        return f"p={self.p}"
