"""The built-in layers, one small file per family."""

from .activations import ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm
from .dropout import Dropout
from .linear import Linear
from .merge import Add
from .softmax import Softmax

__all__ = ["Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Add", "Dropout", "BatchNorm"]
