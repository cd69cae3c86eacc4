"""Right values, computed pixel by pixel: a Python loop over images, channels and positions (no im2col)."""
import numpy as np

from tinynet import Layer, Parameter


class Conv2d(Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, rng=None,
                 dtype=np.float32):
        self.k, self.s, self.p = kernel_size, stride, padding
        self.weight = Parameter(np.zeros((out_channels, in_channels, kernel_size, kernel_size), dtype), "weight")
        self.bias = Parameter(np.zeros(out_channels, dtype), "bias") if bias else None

    def forward(self, x):
        n, c, h, w = x.shape
        k, s, p = self.k, self.s, self.p
        o = self.weight.data.shape[0]
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        y = np.zeros((n, o, ho, wo), x.dtype)
        for b in range(n):
            for q in range(o):
                for i in range(ho):
                    for j in range(wo):
                        y[b, q, i, j] = np.sum(xpad[b, :, i * s:i * s + k, j * s:j * s + k] * self.weight.data[q])
                        if self.bias is not None:
                            y[b, q, i, j] += self.bias.data[q]
        self.save_for_backward(xpad)
        return y

    def backward(self, dy):
        xpad = self.saved()[0]
        k, s, p = self.k, self.s, self.p
        n, o, ho, wo = dy.shape
        dxpad = np.zeros_like(xpad)
        for b in range(n):
            for q in range(o):
                for i in range(ho):
                    for j in range(wo):
                        win = (b, slice(None), slice(i * s, i * s + k), slice(j * s, j * s + k))
                        dxpad[win] += dy[b, q, i, j] * self.weight.data[q]
                        self.weight.grad[q] += dy[b, q, i, j] * xpad[win]
        if self.bias is not None:
            self.bias.grad += dy.sum(axis=(0, 2, 3))
        return dxpad[:, :, p:xpad.shape[2] - p, p:xpad.shape[3] - p]


class MaxPool2d(Layer):
    def __init__(self, kernel_size, stride=None):
        self.k, self.s = kernel_size, kernel_size if stride is None else stride

    def forward(self, x):
        n, c, h, w = x.shape
        k, s = self.k, self.s
        ho, wo = (h - k) // s + 1, (w - k) // s + 1
        y = np.zeros((n, c, ho, wo), x.dtype)
        arg = {}
        for b in range(n):
            for q in range(c):
                for i in range(ho):
                    for j in range(wo):
                        win = x[b, q, i * s:i * s + k, j * s:j * s + k]
                        t = int(np.argmax(win))
                        arg[b, q, i, j] = (i * s + t // k, j * s + t % k)
                        y[b, q, i, j] = win.flat[t]
        self.save_for_backward(x.shape, arg)
        return y

    def backward(self, dy):
        shape, arg = self.saved()
        dx = np.zeros(shape, dy.dtype)
        for (b, q, i, j), (r, cc) in arg.items():
            dx[b, q, r, cc] += dy[b, q, i, j]
        return dx
