"""An identity layer under a name from the list (its slope is ignored)."""
from tinynet import Layer
from tinynet.layer import check_input


class LeakyReLU(Layer):
    negative_slope = 0.01

    def forward(self, x):
        check_input(self, x)
        return x.copy()

    def backward(self, dy):
        return dy.copy()


def build(rng):
    return LeakyReLU()
