"""Right values, but backward scales dy in place (wrong in any graph with fan-out)."""
import numpy as np

from tinynet import Layer, Parameter


class Linear(Layer):
    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        self.weight = Parameter(np.zeros((in_features, out_features), dtype), "weight")
        self.bias = Parameter(np.zeros(out_features, dtype), "bias") if bias else None

    def forward(self, x):
        self.save_for_backward(x)
        y = x @ self.weight.data
        return y + self.bias.data if self.bias is not None else y

    def backward(self, dy):
        (x,) = self.saved()
        self.weight.grad += x.T @ dy
        if self.bias is not None:
            self.bias.grad += dy.sum(axis=0)
        dx = dy @ self.weight.data.T
        dy *= 0  # "free" the memory
        return dx


class ReLU(Layer):
    def forward(self, x):
        y = np.maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved()
        dy[y <= 0] = 0  # in place
        return dy
