"""Ready-made models: the MLP and the CNN that ``tinynet train`` and the examples use."""

import numpy as np

from .graph import Sequential
from .layers import BatchNorm, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sigmoid, Tanh

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


def cnn(image_shape=(1, 28, 28), classes=10, channels=(16, 32), hidden=128, batchnorm=True,
        bn_gradient="simplified", rng=None, dtype=np.float32):
    """A LeNet-style convolutional network with BatchNorm, for (N, 1, 28, 28) digits or clothes::

        Conv2d(1, 16, 5, padding=2) -> BatchNorm2d -> ReLU -> MaxPool2d(2)    (N, 16, 14, 14)
        Conv2d(16, 32, 5)           -> BatchNorm2d -> ReLU -> MaxPool2d(2)    (N, 32, 5, 5)
        Flatten -> Linear(800, 128) -> BatchNorm   -> ReLU -> Linear(128, 10) (N, 10)

    Parameters
    ----------
    image_shape : (int, int, int)
        (C, H, W) of one input image.
    classes : int
        Width of the output (the logits).
    channels : (int, int)
        Output channels of the two convolutions.
    hidden : int
        Width of the hidden Linear layer.
    batchnorm : bool
        Put a BatchNorm2d after each convolution and a BatchNorm after the hidden Linear; the
        layer before each then has no bias (BatchNorm's beta takes its place).
    bn_gradient : {"simplified", "paper"}
        The BatchNorms' backward form.
    rng : numpy.random.Generator, optional
        Source of the initial weights (He initialisation throughout).
    dtype : numpy dtype

    Returns
    -------
    Sequential
    """
    if len(image_shape) != 3:
        raise ValueError(f"cnn: expected image_shape as (C, H, W), got {image_shape!r}")
    if len(channels) != 2:
        raise ValueError(f"cnn: expected two channel counts, got {channels!r}")
    rng = np.random.default_rng() if rng is None else rng
    c, h, w = image_shape
    c1, c2 = channels
    layers = []
    for c_in, c_out, padding in ((c, c1, 2), (c1, c2, 0)):
        layers.append(Conv2d(c_in, c_out, 5, padding=padding, bias=not batchnorm, rng=rng, dtype=dtype))
        if batchnorm:
            layers.append(BatchNorm2d(c_out, gradient=bn_gradient, dtype=dtype))
        layers += [ReLU(), MaxPool2d(2)]
        h, w = (h + 2 * padding - 4) // 2, (w + 2 * padding - 4) // 2  # after the 5x5 conv, then the pool
    layers.append(Flatten())
    layers.append(Linear(c2 * h * w, hidden, bias=not batchnorm, rng=rng, dtype=dtype))
    if batchnorm:
        layers.append(BatchNorm(hidden, gradient=bn_gradient, dtype=dtype))
    layers += [ReLU(), Linear(hidden, classes, rng=rng, dtype=dtype)]
    return Sequential(*layers)
