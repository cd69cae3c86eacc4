"""tinynet: a small deep-learning framework for seeing how training really works.

Layers with explicit forward and backward, a Graph to wire them, BatchNorm with
both backward forms, on NumPy or CuPy.
"""

from . import datasets, init
from .checkpoint import load, save
from .backend import get_array_module, to_device, to_numpy
from .gradcheck import gradcheck
from .graph import Graph, Node, Sequential
from .layer import Layer, Parameter
from .layers import Add, BatchNorm, Dropout, Linear, ReLU, Sigmoid, Softmax, Tanh
from .layers import GELU, AvgPool2d, BatchNorm2d, Conv2d, Flatten, LayerNorm, LeakyReLU, MaxPool2d
from .losses import MSELoss, SoftmaxCrossEntropy
from .models import cnn, mlp
from .optim import SGD, Adam, AdamW, clip_grad_norm
from .history import History
from .nonfinite import NonFiniteError
from .train import evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "Parameter", "Layer", "Graph", "Node", "Sequential",
    "Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Add", "Dropout", "BatchNorm",
    "SoftmaxCrossEntropy", "SGD", "Adam", "gradcheck", "mlp",
    "fit", "evaluate", "History", "NonFiniteError", "save", "load", "datasets", "init",
    "get_array_module", "to_numpy", "to_device",
    "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "BatchNorm2d", "LayerNorm", "LeakyReLU", "GELU",
    "MSELoss", "AdamW", "clip_grad_norm", "cnn",
]
