"""Linear: y = x @ weight + bias."""

import numpy as np

from ..init import get_initialiser
from ..layer import Layer, Parameter, check_grad, check_input, check_positive_int, check_rng


class Linear(Layer):
    """Fully connected layer.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the input and output feature axes.
    bias : bool
        Whether to add a learned bias (pointless right before a BatchNorm).
    init : {"he", "xavier", "small"} or callable
        Weight initialiser, see :mod:`tinynet.init`. The bias starts at zero.
    rng : numpy.random.Generator, optional
        Source of the initial weights; a fresh unseeded one if omitted.
    dtype : numpy dtype
        dtype of the parameters; inputs must match it.

    Shapes: x (N, in_features) -> y (N, out_features);
    weight (in_features, out_features), bias (out_features,).
    """

    # False when nothing needs dL/dx (fit sets it on a layer reading the data): backward then
    # returns None and skips its largest product, as PyTorch does for an input without requires_grad
    input_grad = True

    def __init__(self, in_features, out_features, bias=True, init="he", rng=None, dtype=np.float32):
        check_positive_int("Linear", "in_features", in_features)
        check_positive_int("Linear", "out_features", out_features)
        check_rng("Linear", rng)
        rng = np.random.default_rng() if rng is None else rng
        initialise = get_initialiser(init)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(initialise((self.in_features, self.out_features), rng, dtype), "weight")
        self.bias = Parameter(np.zeros(self.out_features, dtype), "bias") if bias else None

    def forward(self, x):
        check_input(self, x, ndim=2, features=self.in_features, like=self.weight.data)
        self.save_for_backward(x)
        y = x @ self.weight.data  # (N, in) @ (in, out) -> (N, out)
        if self.bias is not None:
            y += self.bias.data  # in place: y is ours, no second (N, out) temporary
        return y

    def backward(self, dy):
        (x,) = self.saved()
        check_grad(self, dy, (x.shape[0], self.out_features))
        self.weight.grad += x.T @ dy  # (in, N) @ (N, out) -> (in, out)
        if self.bias is not None:
            self.bias.grad += dy.sum(axis=0)  # (out,)
        if not self.input_grad:
            return None
        return dy @ self.weight.data.T  # (N, out) @ (out, in) -> (N, in)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}" + ("" if self.bias is not None else ", bias=False")
