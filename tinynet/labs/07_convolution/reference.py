"""Lab 7 reference: a model solution, written in this file as a student would.

``make labs-selfcheck`` grades this file: every item must pass. (tinynet's own Conv2d,
MaxPool2d and AvgPool2d are unavailable while lab 7 is graded.)
"""

import numpy as np

from tinynet import Layer, Parameter
from tinynet.backend import get_array_module
from tinynet.layer import check_input


def im2col(xpad, kh, kw, stride, ho, wo):
    """xpad (N, C, Hp, Wp) -> cols (N*Ho*Wo, C*kh*kw): row (n, i, j) is window (i, j) of image n,
    its columns in the order (c, a, b), the order of weight.reshape(O, -1)."""
    xp = get_array_module(xpad)
    n, c = xpad.shape[:2]
    cols = xp.empty((n, c, kh, kw, ho, wo), xpad.dtype)
    for a in range(kh):
        for b in range(kw):
            # tap (a, b) of every window at once: rows a, a+s, ..., columns b, b+s, ...
            cols[:, :, a, b] = xpad[:, :, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * ho * wo, c * kh * kw)


def col2im(dcols, padded_shape, kh, kw, stride, ho, wo):
    """The adjoint of im2col: dcols (N*Ho*Wo, C*kh*kw) -> dxpad (N, C, Hp, Wp), overlapping windows added (+=)."""
    xp = get_array_module(dcols)
    n, c = padded_shape[:2]
    d = dcols.reshape(n, ho, wo, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)  # (N, C, kh, kw, Ho, Wo)
    dxpad = xp.zeros(padded_shape, dcols.dtype)
    for a in range(kh):
        for b in range(kw):
            dxpad[:, :, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride] += d[:, :, a, b]
    return dxpad


class Conv2d(Layer):
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
        check_input(self, x, ndim=4, features=self.in_channels, axis=1, like=self.weight.data)
        xp = get_array_module(x)
        n, c, h, w = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        xpad = xp.zeros((n, c, h + 2 * p, w + 2 * p), x.dtype)  # a new array: x itself is left alone
        xpad[:, :, p:p + h, p:p + w] = x
        cols = im2col(xpad, k, k, s, ho, wo)  # (N*Ho*Wo, C*k*k)
        y = cols @ self.weight.data.reshape(self.out_channels, -1).T  # (N*Ho*Wo, O)
        if self.bias is not None:
            y = y + self.bias.data
        self.save_for_backward(xpad.shape, cols, ho, wo)
        return y.reshape(n, ho, wo, self.out_channels).transpose(0, 3, 1, 2)  # (N, O, Ho, Wo)

    def backward(self, dy):
        padded_shape, cols, ho, wo = self.saved()
        k, s, p = self.kernel_size, self.stride, self.padding
        dy_rows = dy.transpose(0, 2, 3, 1).reshape(-1, self.out_channels)  # (N*Ho*Wo, O), a copy
        self.weight.grad += (dy_rows.T @ cols).reshape(self.weight.data.shape)  # (O, C, k, k)
        if self.bias is not None:
            self.bias.grad += dy_rows.sum(axis=0)  # (O,): a sum over the batch and every position
        dcols = dy_rows @ self.weight.data.reshape(self.out_channels, -1)  # (N*Ho*Wo, C*k*k)
        dxpad = col2im(dcols, padded_shape, k, k, s, ho, wo)
        hp, wp = padded_shape[2:]
        return dxpad[:, :, p:hp - p, p:wp - p]  # cut the padding off again: (N, C, H, W)


class MaxPool2d(Layer):
    def __init__(self, kernel_size, stride=None):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride

    def forward(self, x):
        check_input(self, x, ndim=4)
        xp = get_array_module(x)
        n, c, h, w = x.shape
        k, s = self.kernel_size, self.stride
        ho, wo = (h - k) // s + 1, (w - k) // s + 1
        taps = xp.stack([x[:, :, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s]
                         for a in range(k) for b in range(k)])  # (k*k, N, C, Ho, Wo)
        which = taps.argmax(axis=0)  # the winning tap of each window (the first, where several tie)
        self.save_for_backward(x.shape, which)
        return taps.max(axis=0)

    def backward(self, dy):
        shape, which = self.saved()
        xp = get_array_module(dy)
        k, s = self.kernel_size, self.stride
        ho, wo = dy.shape[2:]
        dx = xp.zeros(shape, dy.dtype)
        for a in range(k):
            for b in range(k):
                # dy goes to the element of the window that was the maximum, nowhere else
                dx[:, :, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s] += dy * (which == a * k + b)
        return dx
