"""Pooling over NCHW images, MaxPool2d and AvgPool2d, as sums and maxima of strided taps; Flatten.

A k x k window with stride s has k*k *taps*: tap (a, b) is the strided slab
``x[:, :, a::s, b::s]`` cut to (Ho, Wo), the (a, b)-th element of every window at once. Max
pooling is the maximum of the taps, average pooling their mean, both without any copy of the
windows; backward adds each tap's share of dy back into its slab (+=, since taps overlap when
s < k). Output size is PyTorch's (floor mode, no padding): Ho = (H - kh) // sh + 1.
"""

import numpy as np

from ..backend import get_array_module
from ..layer import Layer, check_grad, check_input
from .conv import output_size, pair


def taps(kernel_size, stride, ho, wo):
    """Yield ``(t, slab)``: tap t's index expression into (N, C, H, W), for each of the kh*kw taps."""
    (kh, kw), (sh, sw) = kernel_size, stride
    for a in range(kh):
        for b in range(kw):
            yield a * kw + b, (slice(None), slice(None), slice(a, a + sh * (ho - 1) + 1, sh),
                               slice(b, b + sw * (wo - 1) + 1, sw))


class _Pool2d(Layer):
    """What the pooling layers share: sizes, checks, repr."""

    def __init__(self, kernel_size, stride=None):
        name = type(self).__name__
        self.kernel_size = pair(name, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else pair(name, "stride", stride)

    def _output_shape(self, x):
        check_input(self, x, ndim=4)
        n, c, h, w = x.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        where = self.name_for_errors()
        return n, c, output_size(where, h, kh, sh), output_size(where, w, kw, sw)

    def extra_repr(self):
        k, s = self.kernel_size, self.stride
        text = f"kernel_size={k[0] if k[0] == k[1] else k}"
        return text if s == k else text + f", stride={s[0] if s[0] == s[1] else s}"


class MaxPool2d(_Pool2d):
    """Maximum over each kh x kw window, PyTorch's semantics (floor mode, no padding).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to kernel_size (non-overlapping windows).

    Shapes: x (N, C, H, W) -> y (N, C, Ho, Wo). The gradient of each output goes to the one input
    that was the maximum (the first in the window, row by row, where several tie), as in PyTorch.
    """

    def forward(self, x):
        n, c, ho, wo = self._output_shape(x)
        xp = get_array_module(x)
        y, which = None, xp.zeros((n, c, ho, wo), np.uint8 if self._taps() < 256 else np.int32)
        for t, slab in taps(self.kernel_size, self.stride, ho, wo):
            tap = x[slab]  # (N, C, Ho, Wo), a view
            if y is None:
                y = tap.copy()
                continue
            # which: the winning tap. t grows tap by tap, so max(which, t) where this tap wins is t;
            # strictly >, so a tie keeps the earlier tap, as PyTorch
            xp.maximum(which, (tap > y) * which.dtype.type(t), out=which)
            xp.maximum(y, tap, out=y)
        self.save_for_backward(x.shape, which)
        return y

    def backward(self, dy):
        shape, which = self.saved()
        check_grad(self, dy, which.shape)
        xp = get_array_module(dy)
        dx = xp.zeros(shape, dy.dtype)  # (N, C, H, W)
        _, _, ho, wo = which.shape
        for t, slab in taps(self.kernel_size, self.stride, ho, wo):
            dx[slab] += dy * (which == t)  # only where tap t won
        return dx

    def _taps(self):
        return self.kernel_size[0] * self.kernel_size[1]


class AvgPool2d(_Pool2d):
    """Mean over each kh x kw window, PyTorch's semantics (floor mode, no padding).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to kernel_size (non-overlapping windows).

    Shapes: x (N, C, H, W) -> y (N, C, Ho, Wo); each input in a window gets dy / (kh * kw).
    """

    def forward(self, x):
        n, c, ho, wo = self._output_shape(x)
        xp = get_array_module(x)
        y = xp.zeros((n, c, ho, wo), x.dtype)
        for _, slab in taps(self.kernel_size, self.stride, ho, wo):
            y += x[slab]
        y /= self.kernel_size[0] * self.kernel_size[1]
        self.save_for_backward(x.shape)
        return y

    def backward(self, dy):
        (shape,) = self.saved()
        n, c, h, w = shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
        check_grad(self, dy, (n, c, ho, wo))
        xp = get_array_module(dy)
        share = dy / (kh * kw)  # (N, C, Ho, Wo): every input of a window counted once in its mean
        dx = xp.zeros(shape, dy.dtype)
        for _, slab in taps(self.kernel_size, self.stride, ho, wo):
            dx[slab] += share
        return dx


class Flatten(Layer):
    """Keep the batch axis, flatten the rest: (N, C, H, W) -> (N, C*H*W), as PyTorch's Flatten().

    Backward reshapes dy back to the input's shape. The order is C, then H, then W (C order), so a
    Linear after it sees the same features as PyTorch's.
    """

    def forward(self, x):
        check_input(self, x)
        if x.ndim < 2:
            raise ValueError(f"{self.name_for_errors()}: expected an input with a batch axis and at least one "
                             f"more, (N, ...), got shape {tuple(x.shape)}")
        self.save_for_backward(x.shape)
        return x.reshape(x.shape[0], -1)  # a view where the memory allows, else a copy

    def backward(self, dy):
        (shape,) = self.saved()
        check_grad(self, dy, (shape[0], int(np.prod(shape[1:]))))
        return dy.reshape(shape)
