"""Lab 5: a new layer of your choice, proven right with tinynet.gradcheck.

The stub is LeakyReLU; keep it, or replace it with another layer from the list the grader
knows (name your class after it): LeakyReLU, ELU, CELU, SELU, Softplus, SiLU, Swish, Mish,
GELU, PReLU, LayerNorm. Return yours from build(). Keep hyperparameters in PyTorch's attribute
names (negative_slope, alpha, beta, eps; GELU.approximate) and read them in forward and backward:
the grader sets them to values of its own.
Then grade your work:

    python -m tinynet lab 5          (from the folder that holds this lab's folder)

The grader feeds your layer float arrays of shape (N, 6). Read 05_new_layer/README.md first.
"""

from tinynet import Layer
from tinynet.backend import get_array_module
from tinynet.layer import check_input


class LeakyReLU(Layer):
    """y = x where x > 0, else negative_slope * x. Any shape."""

    def __init__(self, negative_slope=0.01):
        if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
            raise TypeError(f"LeakyReLU: expected a number for negative_slope, got {negative_slope!r}")
        self.negative_slope = negative_slope

    def forward(self, x):
        check_input(self, x)  # refuses non-arrays and non-float dtypes, naming the layer
        xp = get_array_module(x)
        # TODO: y (same shape and dtype as x, a new array); save what backward needs
        raise NotImplementedError("Lab 5: LeakyReLU.forward")

    def backward(self, dy):
        # TODO: dx = dy where x > 0, else negative_slope * dy
        raise NotImplementedError("Lab 5: LeakyReLU.backward")

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


def build(rng):
    """Return the layer to grade; it must take (N, 6) float32 arrays. rng: a numpy Generator for any weights."""
    return LeakyReLU(0.1)
