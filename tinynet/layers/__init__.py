"""The built-in layers, one small file per family.

The families of the default multi-layer perceptron (Linear, BatchNorm, the activations) are
imported here; the others (Dropout, Add, Softmax, GELU, the convolutional ones) on first use.
"""

import importlib

from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm
from .linear import Linear

_ON_FIRST_USE = {"Dropout": ".dropout", "Add": ".merge", "Softmax": ".softmax", "GELU": ".gelu",
                 "Conv2d": ".conv", "MaxPool2d": ".pooling", "AvgPool2d": ".pooling", "Flatten": ".pooling",
                 "BatchNorm2d": ".batchnorm2d", "LayerNorm": ".layernorm"}


def __getattr__(name):
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module 'tinynet.layers' has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(_ON_FIRST_USE[name], __name__), name)
    return value


def __dir__():
    return sorted(set(globals()) | set(_ON_FIRST_USE))


__all__ = ["Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Add", "Dropout", "BatchNorm",
           "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "BatchNorm2d", "LayerNorm", "LeakyReLU", "GELU"]
