"""Computes through float16 and casts back: the dtype is right, the values are not."""
import numpy as np

from tinynet import Layer, Parameter


class Linear(Layer):
    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        self.weight = Parameter(np.zeros((in_features, out_features), dtype), "weight")
        self.bias = Parameter(np.zeros(out_features, dtype), "bias") if bias else None

    def forward(self, x):
        self.save_for_backward(x)
        y = (x.astype(np.float16) @ self.weight.data.astype(np.float16)).astype(x.dtype)
        return y + self.bias.data if self.bias is not None else y

    def backward(self, dy):
        (x,) = self.saved()
        h = np.float16
        self.weight.grad += (x.astype(h).T @ dy.astype(h)).astype(x.dtype)
        if self.bias is not None:
            self.bias.grad += dy.astype(h).sum(axis=0).astype(x.dtype)
        return (dy.astype(h) @ self.weight.data.astype(h).T).astype(x.dtype)


class ReLU(Layer):
    def forward(self, x):
        y = np.maximum(x, 0).astype(np.float16).astype(x.dtype)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved()
        return (dy * (y > 0)).astype(np.float16).astype(dy.dtype)
