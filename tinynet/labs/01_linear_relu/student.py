"""Lab 1: Linear and ReLU, forward and backward.

Fill in the four methods marked TODO, then grade your work:

    python -m tinynet lab 1          (from the folder that holds this lab's folder)

Shapes: x (N, in), weight (in, out), bias (out,), y and dy (N, out), dx (N, in).
Read 01_linear_relu/README.md first.
"""

import numpy as np

from tinynet import Layer, Parameter
from tinynet.backend import get_array_module
from tinynet.layer import check_input


class Linear(Layer):
    """y = x @ weight + bias. The constructor is given; forward and backward are yours."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        rng = np.random.default_rng() if rng is None else rng
        scale = np.sqrt(2.0 / in_features)  # He initialisation, good before a ReLU
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter((rng.standard_normal((in_features, out_features)) * scale).astype(dtype), "weight")
        self.bias = Parameter(np.zeros(out_features, dtype), "bias") if bias else None

    def forward(self, x):
        """x (N, in) -> y (N, out). Save what backward needs with self.save_for_backward(...)."""
        check_input(self, x, ndim=2, features=self.in_features, like=self.weight.data)
        # TODO: y = x @ weight + bias (skip the bias when self.bias is None)
        raise NotImplementedError("Lab 1: Linear.forward")

    def backward(self, dy):
        """dy (N, out) -> dx (N, in); ADD the parameter gradients into .grad (+=, never =)."""
        # TODO: (x,) = self.saved(); weight.grad += ...; bias.grad += ...; return dx
        raise NotImplementedError("Lab 1: Linear.backward")


class ReLU(Layer):
    """y = max(x, 0), element-wise. Any shape."""

    def forward(self, x):
        check_input(self, x)
        xp = get_array_module(x)  # numpy or cupy: use xp.maximum, xp.where, ... never np. directly
        # TODO: return max(x, 0) as a new array (do not change x) and save what backward needs
        raise NotImplementedError("Lab 1: ReLU.forward")

    def backward(self, dy):
        # TODO: dx = dy where x > 0, else 0
        raise NotImplementedError("Lab 1: ReLU.backward")
