"""The built-in layers, one small file per family."""

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm
from .batchnorm2d import BatchNorm2d
from .conv import Conv2d
from .dropout import Dropout
from .layernorm import LayerNorm
from .linear import Linear
from .merge import Add
from .pooling import AvgPool2d, Flatten, MaxPool2d
from .softmax import Softmax

__all__ = ["Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Add", "Dropout", "BatchNorm",
           "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "BatchNorm2d", "LayerNorm", "LeakyReLU", "GELU"]
