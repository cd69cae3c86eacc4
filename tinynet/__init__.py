"""tinynet: a small deep-learning framework for seeing how training really works.

Layers with explicit forward and backward, a Graph to wire them, BatchNorm with
both backward forms, on NumPy or CuPy.

``import tinynet`` loads what one training step reads (layers, loss, optimizers, Graph,
fit); the rest of the teaching library — convolutional layers, checkpoints, datasets,
ready-made models, the PyTorch bridge — loads the first time you use it. The opt-in
speed ring (:mod:`tinynet.speed`) and the applications (labs, commands, the BatchNorm
study) are never loaded by it.
"""

from . import init
from .backend import get_array_module, to_device, to_numpy
from .gradcheck import gradcheck
from .graph import Graph, Node, Sequential
from .history import History
from .layer import Layer, Parameter
from .lazy import on_first_use
from .layers import BatchNorm, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .losses import MSELoss, SoftmaxCrossEntropy
from .nonfinite import NonFiniteError
from .optim import SGD, Adam, AdamW, clip_grad_norm
from .train import evaluate, fit

__version__ = "0.1.0"

# name -> the module that defines it, imported on first use (PEP 562)
_ON_FIRST_USE = {
    "save": ".checkpoint", "load": ".checkpoint",
    "mlp": ".models", "cnn": ".models", "to_torch": ".bridge", "from_torch": ".bridge",
    "Dropout": ".layers", "Add": ".layers", "Softmax": ".layers", "GELU": ".layers",
    "Conv2d": ".layers", "MaxPool2d": ".layers", "AvgPool2d": ".layers", "Flatten": ".layers",
    "BatchNorm2d": ".layers", "LayerNorm": ".layers",
    "datasets": None, "data": None,  # submodules
}


__getattr__, __dir__ = on_first_use(__name__, _ON_FIRST_USE)

__all__ = [
    "Parameter", "Layer", "Graph", "Node", "Sequential",
    "Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Add", "Dropout", "BatchNorm",
    "SoftmaxCrossEntropy", "SGD", "Adam", "gradcheck", "mlp",
    "fit", "evaluate", "History", "NonFiniteError", "save", "load", "datasets", "init",
    "get_array_module", "to_numpy", "to_device",
    "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "BatchNorm2d", "LayerNorm", "LeakyReLU", "GELU",
    "MSELoss", "AdamW", "clip_grad_norm", "cnn", "to_torch", "from_torch",
]
