"""Lab 1 reference: a model solution, written in this file as a student would.

``make labs-selfcheck`` grades this file: every item must pass. (tinynet's own Linear and
ReLU are unavailable while lab 1 is graded.)
"""

import numpy as np

from tinynet import Layer, Parameter
from tinynet.backend import get_array_module
from tinynet.layer import check_input


class Linear(Layer):
    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        rng = np.random.default_rng() if rng is None else rng
        scale = np.sqrt(2.0 / in_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter((rng.standard_normal((in_features, out_features)) * scale).astype(dtype), "weight")
        self.bias = Parameter(np.zeros(out_features, dtype), "bias") if bias else None

    def forward(self, x):
        check_input(self, x, ndim=2, features=self.in_features, like=self.weight.data)
        self.save_for_backward(x)
        y = x @ self.weight.data  # (N, in) @ (in, out) -> (N, out)
        if self.bias is not None:
            y = y + self.bias.data
        return y

    def backward(self, dy):
        (x,) = self.saved()
        self.weight.grad += x.T @ dy  # (in, out)
        if self.bias is not None:
            self.bias.grad += dy.sum(axis=0)  # (out,)
        return dy @ self.weight.data.T  # (N, in)


class ReLU(Layer):
    def forward(self, x):
        check_input(self, x)
        y = get_array_module(x).maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved()
        return dy * (y > 0)
