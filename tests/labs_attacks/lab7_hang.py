"""Every forward hangs: the grader must stop it at the item's time limit and go on."""
import numpy as np

from tinynet import Layer, Parameter


class Conv2d(Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, rng=None,
                 dtype=np.float32):
        self.weight = Parameter(np.zeros((out_channels, in_channels, kernel_size, kernel_size), dtype), "weight")
        self.bias = Parameter(np.zeros(out_channels, dtype), "bias") if bias else None

    def forward(self, x):
        while True:
            pass

    def backward(self, dy):
        while True:
            pass


class MaxPool2d(Layer):
    def __init__(self, kernel_size, stride=None):
        pass

    def forward(self, x):
        while True:
            pass

    def backward(self, dy):
        while True:
            pass
