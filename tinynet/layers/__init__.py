"""The built-in layers, one small file per family.

The families of the default multi-layer perceptron (Linear, BatchNorm, the activations) are
imported here; the others (Dropout, Add, Softmax, GELU, the convolutional ones) on first use.
"""

from ..lazy import on_first_use
from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm
from .linear import Linear

_ON_FIRST_USE = {"Dropout": ".dropout", "Add": ".merge", "Softmax": ".softmax", "GELU": ".gelu",
                 "Conv2d": ".conv", "MaxPool2d": ".pooling", "AvgPool2d": ".pooling", "Flatten": ".pooling",
                 "BatchNorm2d": ".batchnorm2d", "LayerNorm": ".layernorm"}


__getattr__, __dir__ = on_first_use(__name__, _ON_FIRST_USE)

__all__ = ["Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Add", "Dropout", "BatchNorm",
           "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "BatchNorm2d", "LayerNorm", "LeakyReLU", "GELU"]
