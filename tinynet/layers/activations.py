"""Element-wise activations: ReLU, Sigmoid, Tanh, LeakyReLU (GELU has a file of its own). Shapes: any (N, ...) -> same."""

from ..backend import get_array_module
from ..layer import Layer, check_grad, check_input


class ReLU(Layer):
    """y = max(x, 0); dx = dy where x > 0, else 0."""

    def forward(self, x):
        check_input(self, x)
        y = get_array_module(x).maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved()
        check_grad(self, dy, y.shape)
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


class LeakyReLU(Layer):
    """y = x where x > 0, else negative_slope * x; dx = dy, or dy * negative_slope (PyTorch's LeakyReLU).

    Parameters
    ----------
    negative_slope : float
        The slope for x <= 0 (PyTorch's default 0.01).
    """

    def __init__(self, negative_slope=0.01):
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise TypeError(f"LeakyReLU: expected negative_slope to be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        check_input(self, x)
        positive = x > 0
        self.save_for_backward(positive)
        return get_array_module(x).where(positive, x, self.negative_slope * x)

    def backward(self, dy):
        (positive,) = self.saved()
        check_grad(self, dy, positive.shape)
        return get_array_module(dy).where(positive, dy, self.negative_slope * dy)

    def extra_repr(self):
        return "" if self.negative_slope == 0.01 else f"negative_slope={self.negative_slope!r}"
