"""The built-in layers, one small file per family.

The families a multi-layer perceptron uses are imported here; the convolutional ones
(Conv2d, pooling, Flatten, BatchNorm2d, LayerNorm) on first use.
"""

import importlib

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm
from .dropout import Dropout
from .linear import Linear
from .merge import Add
from .softmax import Softmax

_ON_FIRST_USE = {"Conv2d": ".conv", "MaxPool2d": ".pooling", "AvgPool2d": ".pooling", "Flatten": ".pooling",
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
