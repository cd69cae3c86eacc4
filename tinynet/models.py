"""Ready-made models: the MLP that ``tinynet train`` and the examples use."""

import numpy as np

from .graph import Sequential
from .layers import BatchNorm, Linear, ReLU, Sigmoid, Tanh

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def mlp(sizes, batchnorm=True, activation="relu", bn_gradient="simplified", init="he", rng=None, dtype=np.float32):
    """A multi-layer perceptron: [Linear -> (BatchNorm) -> activation] per hidden layer, then Linear.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to output, e.g. ``(784, 256, 256, 10)``.
    batchnorm : bool
        Put a BatchNorm between each hidden Linear and its activation; that Linear
        then has no bias (BatchNorm's beta takes its place).
    activation : {"relu", "sigmoid", "tanh"}
    bn_gradient : {"simplified", "paper"}
        BatchNorm's backward form.
    init : str or callable
        Weight initialiser for every Linear (see :mod:`tinynet.init`).
    rng : numpy.random.Generator, optional
        Source of the initial weights.
    dtype : numpy dtype

    Returns
    -------
    Sequential
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp: expected at least two sizes (input and output), got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"mlp: expected activation in {sorted(ACTIVATIONS)}, got {activation!r}")
    rng = np.random.default_rng() if rng is None else rng
    layers = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        layers.append(Linear(fan_in, fan_out, bias=not batchnorm, init=init, rng=rng, dtype=dtype))
        if batchnorm:
            layers.append(BatchNorm(fan_out, gradient=bn_gradient, dtype=dtype))
        layers.append(ACTIVATIONS[activation]())
    layers.append(Linear(sizes[-2], sizes[-1], init=init, rng=rng, dtype=dtype))
    return Sequential(*layers)
