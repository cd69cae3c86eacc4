"""GELU, the Gaussian error linear unit (exact and tanh-approximated), and the erf it needs.

Shapes: any (N, ...) -> same.
"""

import math

from ..backend import get_array_module
from ..layer import Layer, check_grad, check_input


class GELU(Layer):
    """Gaussian error linear unit (Hendrycks & Gimpel 2016), PyTorch's GELU.

    approximate="none":  y = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt(2))) / 2, the normal CDF;
                         dx = dy * (Phi(x) + x * phi(x)),  phi(x) = exp(-x**2 / 2) / sqrt(2 pi)
    approximate="tanh":  y = x / 2 * (1 + t),  t = tanh(u),  u = sqrt(2 / pi) * (x + 0.044715 x**3);
                         dx = dy * ((1 + t) / 2 + x / 2 * (1 - t**2) * sqrt(2 / pi) * (1 + 3 * 0.044715 x**2))
    """

    APPROXIMATIONS = ("none", "tanh")

    def __init__(self, approximate="none"):
        if approximate not in self.APPROXIMATIONS:
            raise ValueError(f"GELU: expected approximate to be one of {self.APPROXIMATIONS}, got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        check_input(self, x)
        xp = get_array_module(x)
        if self.approximate == "tanh":
            t = xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))
            self.save_for_backward(x, t)
            return 0.5 * x * (1 + t)
        cdf = 0.5 * (1 + erf(x / math.sqrt(2)))  # Phi(x)
        self.save_for_backward(x, cdf)
        return x * cdf

    def backward(self, dy):
        x, saved = self.saved()
        check_grad(self, dy, x.shape)
        xp = get_array_module(x)
        if self.approximate == "tanh":
            t = saved
            du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)  # du/dx
            return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
        pdf = xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # phi(x)
        return dy * (saved + x * pdf)

    def extra_repr(self):
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


def erf(x):
    """The error function, element-wise, to about 1e-15 on NumPy and CuPy alike (NumPy has none).

    |x| < 3:  erf(x) = 2 / sqrt(pi) * exp(-x**2) * sum_n (2 x**2)**n x / (1 * 3 * ... * (2n + 1)),
              a series of positive terms (no cancellation), 80 of them;
    |x| >= 3: erf(x) = 1 - exp(-x**2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))),
              the continued fraction of erfc, 60 levels deep, evaluated from the bottom up.
    """
    xp = get_array_module(x)
    z = xp.abs(x)
    near = xp.minimum(z, 3.0)  # each branch sees only arguments it converges for
    term, total = near, near
    for n in range(1, 80):
        term = term * (2 * near * near / (2 * n + 1))
        total = total + term
    series = 2 / math.sqrt(math.pi) * xp.exp(-near * near) * total
    far = xp.maximum(z, 3.0)
    fraction = far
    for k in range(60, 0, -1):
        fraction = far + (k / 2) / fraction
    tail = 1 - xp.exp(-far * far) / (math.sqrt(math.pi) * fraction)
    return xp.sign(x) * xp.where(z < 3.0, series, tail)
