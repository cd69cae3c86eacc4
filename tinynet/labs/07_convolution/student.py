"""Lab 7: a convolution from scratch: Conv2d by im2col and col2im, and MaxPool2d.

Fill in the six functions and methods marked TODO, then grade your work:

    python -m tinynet lab 7          (from the folder that holds this lab's folder)

Shapes (NCHW): x (N, C, H, W); weight (O, C, k, k) as PyTorch's; bias (O,); y and dy
(N, O, Ho, Wo) with Ho = (H + 2p - k) // s + 1, likewise Wo; dx (N, C, H, W).
Read 07_convolution/README.md first. tinynet's own Conv2d, MaxPool2d and AvgPool2d are
unavailable while this lab is graded.
"""

import numpy as np

from tinynet import Layer, Parameter
from tinynet.backend import get_array_module
from tinynet.layer import check_input


def im2col(xpad, kh, kw, stride, ho, wo):
    """xpad (N, C, Hp, Wp), already padded -> cols (N*Ho*Wo, C*kh*kw).

    Row n*Ho*Wo + i*Wo + j holds window (i, j) of image n, which starts at row i*stride and
    column j*stride of xpad; its columns go in the order (c, a, b), the order of
    weight.reshape(O, -1). Hint: loop over the kh*kw taps (a, b), not over pixels: tap (a, b) of
    every window at once is the strided slice xpad[:, :, a:a + stride*(ho-1) + 1:stride, b:...].
    """
    # TODO
    raise NotImplementedError("Lab 7: im2col")


def col2im(dcols, padded_shape, kh, kw, stride, ho, wo):
    """The reverse of im2col: dcols (N*Ho*Wo, C*kh*kw) -> dxpad of shape padded_shape (N, C, Hp, Wp).

    Each entry of dcols is added (+=) to the element of xpad it was copied from: windows overlap
    when stride < kernel, and an element shared by several windows gets the sum.
    """
    # TODO
    raise NotImplementedError("Lab 7: col2im")


class Conv2d(Layer):
    """2-D convolution (PyTorch's: a cross-correlation, the kernel is not flipped). Square kernels,
    one int stride and padding. The constructor is given; forward and backward are yours."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, rng=None,
                 dtype=np.float32):
        rng = np.random.default_rng() if rng is None else rng
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        fan_in = in_channels * kernel_size * kernel_size
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = Parameter((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype), "weight")
        self.bias = Parameter(np.zeros(out_channels, dtype), "bias") if bias else None

    def forward(self, x):
        """x (N, C, H, W) -> y (N, O, Ho, Wo). Save what backward needs with self.save_for_backward(...)."""
        check_input(self, x, ndim=4, features=self.in_channels, axis=1, like=self.weight.data)
        # TODO: pad x into a new array xpad (never change x), cols = im2col(...),
        #   y = cols @ weight.reshape(O, -1).T (+ bias), then back to (N, O, Ho, Wo)
        raise NotImplementedError("Lab 7: Conv2d.forward")

    def backward(self, dy):
        """dy (N, O, Ho, Wo) -> dx (N, C, H, W); ADD the parameter gradients into .grad (+=)."""
        # TODO: dy as rows (N*Ho*Wo, O); weight.grad += ...; bias.grad += ...;
        #   dcols = dy_rows @ weight.reshape(O, -1); dxpad = col2im(...); return dxpad without the padding
        raise NotImplementedError("Lab 7: Conv2d.backward")


class MaxPool2d(Layer):
    """The maximum of each k x k window (no padding; the stride defaults to the kernel size)."""

    def __init__(self, kernel_size, stride=None):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride

    def forward(self, x):
        """x (N, C, H, W) -> y (N, C, Ho, Wo), Ho = (H - k) // s + 1. Save which element won each window."""
        check_input(self, x, ndim=4)
        xp = get_array_module(x)  # numpy or cupy: use xp.maximum, xp.stack, ... never np. directly
        # TODO
        raise NotImplementedError("Lab 7: MaxPool2d.forward")

    def backward(self, dy):
        """dy (N, C, Ho, Wo) -> dx (N, C, H, W): each dy goes to its window's maximum only."""
        # TODO
        raise NotImplementedError("Lab 7: MaxPool2d.backward")
