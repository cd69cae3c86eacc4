"""Returns stored numbers: outputs and gradients of the right shape and dtype, filled with a constant."""
import numpy as np

from tinynet import Layer, Parameter


class Conv2d(Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, rng=None,
                 dtype=np.float32):
        self.o, self.k, self.s, self.p = out_channels, kernel_size, stride, padding
        self.weight = Parameter(np.zeros((out_channels, in_channels, kernel_size, kernel_size), dtype), "weight")
        self.bias = Parameter(np.zeros(out_channels, dtype), "bias") if bias else None

    def forward(self, x):
        n, _, h, w = x.shape
        self.save_for_backward(x.shape, x.dtype)
        ho, wo = (h + 2 * self.p - self.k) // self.s + 1, (w + 2 * self.p - self.k) // self.s + 1
        return np.full((n, self.o, ho, wo), 0.5, x.dtype)

    def backward(self, dy):
        shape, dtype = self.saved()
        self.weight.grad += 0.25
        if self.bias is not None:
            self.bias.grad += 0.25
        return np.full(shape, 0.125, dtype)


class MaxPool2d(Layer):
    def __init__(self, kernel_size, stride=None):
        self.k, self.s = kernel_size, kernel_size if stride is None else stride

    def forward(self, x):
        n, c, h, w = x.shape
        self.save_for_backward(x.shape, x.dtype)
        return np.full((n, c, (h - self.k) // self.s + 1, (w - self.k) // self.s + 1), 1.0, x.dtype)

    def backward(self, dy):
        shape, dtype = self.saved()
        return np.full(shape, 0.125, dtype)
