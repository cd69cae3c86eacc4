"""Element-wise activations: ReLU, Sigmoid, Tanh. Shapes: any (N, ...) -> same."""

from .. import kernels
from ..backend import get_array_module
from ..layer import Layer, check_grad, check_input


class ReLU(Layer):
    """y = max(x, 0); dx = dy where x > 0, else 0."""

    def forward(self, x):
        check_input(self, x)
        if (fused := kernels.fused("relu_forward", x)) is not None:  # one kernel (tinynet/kernels)
            y = fused(x)
        else:
            y = get_array_module(x).maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved()
        check_grad(self, dy, y.shape)
        if (fused := kernels.fused("relu_backward", dy)) is not None:  # one kernel (tinynet/kernels)
            return fused(y, dy)
        return dy * (y > 0)


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)); dx = dy * y * (1 - y)."""

    def forward(self, x):
        check_input(self, x)
        xp = get_array_module(x)
        # exp of a negative number only: exp(-|x|) never overflows
        e = xp.exp(-xp.abs(x))
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved()
        check_grad(self, dy, y.shape)
        return dy * y * (1 - y)


class Tanh(Layer):
    """y = tanh(x); dx = dy * (1 - y**2)."""

    def forward(self, x):
        check_input(self, x)
        y = get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved()
        check_grad(self, dy, y.shape)
        return dy * (1 - y * y)
