"""Lab 5 reference: LayerNorm (it has parameters, so every item is exercised), written as a student would.

``make labs-selfcheck`` grades this file: every item must pass.
"""

import numpy as np

from tinynet import Layer, Parameter
from tinynet.backend import get_array_module
from tinynet.layer import check_input


class LayerNorm(Layer):
    """Normalise each row over its last axis: y = (x - mean) / sqrt(var + eps) * weight + bias."""

    def __init__(self, features, eps=1e-5, dtype=np.float32):
        self.eps = eps
        self.weight = Parameter(np.ones(features, dtype), "weight")
        self.bias = Parameter(np.zeros(features, dtype), "bias")

    def forward(self, x):
        check_input(self, x, like=self.weight.data)
        xp = get_array_module(x)
        mu = x.mean(axis=-1, keepdims=True)  # (N, 1)
        xc = x - mu
        inv_std = 1 / xp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + self.eps)  # (N, 1)
        xhat = xc * inv_std  # (N, D)
        self.save_for_backward(xhat, inv_std)
        return xhat * self.weight.data + self.bias.data

    def backward(self, dy):
        xhat, inv_std = self.saved()
        self.weight.grad += (dy * xhat).sum(axis=0)
        self.bias.grad += dy.sum(axis=0)
        g = dy * self.weight.data  # (N, D)
        d = xhat.shape[-1]
        # the simplified BatchNorm form, over the feature axis instead of the batch axis
        return inv_std / d * (d * g - g.sum(axis=-1, keepdims=True) - xhat * (g * xhat).sum(axis=-1, keepdims=True))


def build(rng):
    return LayerNorm(6)
