"""Add: the sum of two or more inputs of the same shape (residual connections)."""

from ..backend import backend_name
from ..layer import Layer, check_grad, check_input


class Add(Layer):
    """y = x1 + x2 + ...; each input receives dy unchanged.

    Shapes: every input (N, ...) of the same shape -> y of that shape.
    Different shapes raise ``ValueError``: Add never broadcasts.
    """

    def forward(self, *xs):
        if len(xs) < 2:
            raise ValueError(f"Add: expected two or more inputs, got {len(xs)}")
        for x in xs:
            check_input(self, x)
            if x.dtype != xs[0].dtype or backend_name(x) != backend_name(xs[0]):
                raise TypeError(
                    f"Add: expected inputs of one dtype on one backend, got {[f'{backend_name(x)} {x.dtype}' for x in xs]}"
                )
            if x.shape != xs[0].shape:
                raise ValueError(
                    f"Add: expected inputs of one shape, got {[tuple(x.shape) for x in xs]}"
                )
        self.save_for_backward(len(xs), xs[0].shape)
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x
        return y

    def backward(self, dy):
        count, shape = self.saved()
        check_grad(self, dy, shape)
        return (dy,) * count
