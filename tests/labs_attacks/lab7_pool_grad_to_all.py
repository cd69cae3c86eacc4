"""An honest Conv2d, and a MaxPool2d whose backward sends dy to every element of each window."""
import numpy as np

from tinynet import Layer, Parameter


class Conv2d(Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, rng=None,
                 dtype=np.float32):
        rng = np.random.default_rng() if rng is None else rng
        self.k, self.s, self.p, self.o = kernel_size, stride, padding, out_channels
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = Parameter(rng.standard_normal(shape).astype(dtype), "weight")
        self.bias = Parameter(np.zeros(out_channels, dtype), "bias") if bias else None

    def forward(self, x):
        n, c, h, w = x.shape
        k, s, p = self.k, self.s, self.p
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        cols = np.empty((n, ho, wo, c, k, k), x.dtype)
        for a in range(k):
            for b in range(k):
                window_tap = xpad[:, :, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s]
                cols[:, :, :, :, a, b] = window_tap.transpose(0, 2, 3, 1)
        cols = cols.reshape(n * ho * wo, -1)
        y = cols @ self.weight.data.reshape(self.o, -1).T
        if self.bias is not None:
            y = y + self.bias.data
        self.save_for_backward(xpad.shape, cols, ho, wo)
        return y.reshape(n, ho, wo, self.o).transpose(0, 3, 1, 2)

    def backward(self, dy):
        shape, cols, ho, wo = self.saved()
        k, s, p = self.k, self.s, self.p
        rows = dy.transpose(0, 2, 3, 1).reshape(-1, self.o)
        self.weight.grad += (rows.T @ cols).reshape(self.weight.data.shape)
        if self.bias is not None:
            self.bias.grad += rows.sum(axis=0)
        dcols = (rows @ self.weight.data.reshape(self.o, -1)).reshape(shape[0], ho, wo, shape[1], k, k)
        dxpad = np.zeros(shape, dy.dtype)
        for a in range(k):
            for b in range(k):
                dxpad[:, :, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s] += \
                    dcols[..., a, b].transpose(0, 3, 1, 2)
        return dxpad[:, :, p:shape[2] - p, p:shape[3] - p]


class MaxPool2d(Layer):
    def __init__(self, kernel_size, stride=None):
        self.k, self.s = kernel_size, kernel_size if stride is None else stride

    def forward(self, x):
        k, s = self.k, self.s
        windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        self.save_for_backward(x.shape)
        return windows.max(axis=(-2, -1))

    def backward(self, dy):
        (shape,) = self.saved()
        k, s = self.k, self.s
        ho, wo = dy.shape[2:]
        dx = np.zeros(shape, dy.dtype)
        for a in range(k):
            for b in range(k):
                dx[:, :, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s] += dy  # every element of the window
        return dx
