"""Softmax along one axis, with the Jacobian-vector product as its backward."""

from ..backend import get_array_module
from ..layer import Layer, check_grad, check_input


class Softmax(Layer):
    """y = exp(x) / sum(exp(x)) along ``axis``.

    Backward is the Jacobian-vector product: dx = y * (dy - sum(dy * y, axis)),
    never the (C, C) Jacobian itself. For training a classifier use
    :class:`tinynet.SoftmaxCrossEntropy`, which fuses softmax and the loss.
    """

    def __init__(self, axis=-1):
        if not isinstance(axis, int):
            raise TypeError(f"Softmax: expected an integer axis, got {axis!r}")
        self.axis = axis

    def forward(self, x):
        check_input(self, x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"Softmax: axis {self.axis} is out of range for an input of shape {tuple(x.shape)}")
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))  # shifted: exp never overflows
        y = e / e.sum(axis=self.axis, keepdims=True)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved()
        check_grad(self, dy, y.shape)
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))

    def extra_repr(self):
        return f"axis={self.axis}"
