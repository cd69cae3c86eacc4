"""Conv2d on NCHW images: im2col as a strided view, one matrix product, col2im as k*k slab additions.

A convolution (PyTorch's, which is a cross-correlation: the kernel is not flipped) with
weight (O, C, kh, kw), stride s and zero padding p::

    y[n, o, i, j] = bias[o] + sum over c, a, b of weight[o, c, a, b] * xpad[n, c, i*s + a, j*s + b]
    Ho = (H + 2p - kh) // s + 1,  Wo = (W + 2p - kw) // s + 1

im2col lays every receptive field out as a row, so the sum is one matrix product. The rows are
read from a channels-last copy of the padded input through a strided *view* (no Python loop),
and the reshape to a matrix makes the one copy. Backward runs the same product transposed:
the weight gradient is dy_rows.T @ cols, the column gradient dy_rows @ weight, computed tap by
tap so that each tap's gradient is one contiguous (N, Ho, Wo, C) block, and col2im adds each of
the kh*kw kernel taps back as one slab, dxpad[:, a::s, b::s, :] += dcols[a, b] (taps overlap
when s < k, hence +=). A sliding-window layer differs from a dense one in these
two index maps only: docs/extending.md walks through them.
"""

import numpy as np

from ..backend import get_array_module
from ..init import get_initialiser
from ..layer import Layer, Parameter, check_grad, check_input, check_positive_int, check_rng


def pair(where, name, value, allow_zero=False):
    """``3 -> (3, 3)``; ``(3, 2)`` stays; anything else is refused, naming ``where`` and ``name``."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    low = 0 if allow_zero else 1
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low for v in values):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{where}: expected {name} to be a {kind} integer or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])


def output_size(where, size, kernel, stride, padding=0):
    """Output length of a sliding window along one axis; refuse an input smaller than the window."""
    if size + 2 * padding < kernel:
        raise ValueError(
            f"{where}: input of size {size} (padding {padding}) is smaller than the kernel size {kernel}"
        )
    return (size + 2 * padding - kernel) // stride + 1


def as_strided(x, shape, strides):
    """A view of ``x`` with the given shape and byte strides (NumPy's and CuPy's ``as_strided``)."""
    return get_array_module(x).lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


class Conv2d(Layer):
    """2-D convolution over NCHW inputs, PyTorch's semantics and weight layout.

    Parameters
    ----------
    in_channels, out_channels : int
        C and O.
    kernel_size, stride, padding : int or (int, int)
        Window size, step and zero padding on each side, as (height, width) or one int for both.
    bias : bool
        Whether to add a learned bias per output channel (pointless right before a BatchNorm2d).
    init : {"he", "xavier", "small"} or callable
        Weight initialiser, see :mod:`tinynet.init`: fan-in is C * kh * kw. The bias starts at
        zero (PyTorch draws both from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) instead).
    rng : numpy.random.Generator, optional
        Source of the initial weights; a fresh unseeded one if omitted.
    dtype : numpy dtype
        dtype of the parameters; inputs must match it.

    Shapes: x (N, C, H, W) -> y (N, O, Ho, Wo) with Ho = (H + 2 * ph - kh) // sh + 1, likewise Wo;
    weight (O, C, kh, kw) as PyTorch's, bias (O,). Inside, the work runs channels last; the output
    and dL/dx come back C-contiguous in NCHW.
    """

    input_grad = True  # False: backward returns None and skips col2im (nothing needs dL/dx)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, init="he",
                 rng=None, dtype=np.float32):
        check_positive_int("Conv2d", "in_channels", in_channels)
        check_positive_int("Conv2d", "out_channels", out_channels)
        check_rng("Conv2d", rng)
        self.kernel_size = pair("Conv2d", "kernel_size", kernel_size)
        self.stride = pair("Conv2d", "stride", stride)
        self.padding = pair("Conv2d", "padding", padding, allow_zero=True)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        rng = np.random.default_rng() if rng is None else rng
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = Parameter(get_initialiser(init)(shape, rng, dtype), "weight")
        self.bias = Parameter(np.zeros(self.out_channels, dtype), "bias") if bias else None

    def forward(self, x):
        check_input(self, x, ndim=4, features=self.in_channels, axis=1, like=self.weight.data)
        xp = get_array_module(x)
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho = output_size(self.name_for_errors(), h, kh, sh, ph)
        wo = output_size(self.name_for_errors(), w, kw, sw, pw)
        # padded and channels last: (N, H + 2ph, W + 2pw, C), so each window row is contiguous in C
        xpad = xp.zeros((n, h + 2 * ph, w + 2 * pw, c), x.dtype)
        xpad[:, ph:ph + h, pw:pw + w, :] = x.transpose(0, 2, 3, 1)
        # im2col as a view: windows[n, i, j, a, b, c] = xpad[n, i*sh + a, j*sw + b, c]
        bn, bh, bw, bc = xpad.strides
        windows = as_strided(xpad, (n, ho, wo, kh, kw, c), (bn, bh * sh, bw * sw, bh, bw, bc))
        cols = windows.reshape(n * ho * wo, kh * kw * c)  # (N*Ho*Wo, kh*kw*C): the one copy
        y = cols @ self._weight_matrix().T  # (N*Ho*Wo, kh*kw*C) @ (kh*kw*C, O) -> (N*Ho*Wo, O)
        if self.bias is not None:
            y += self.bias.data  # (O,) along each row
        self.save_for_backward(x.shape, cols)
        # back to NCHW memory: the layers after it then run on contiguous arrays (an element-wise
        # op on a transposed view next to a contiguous one is several times slower)
        return xp.ascontiguousarray(y.reshape(n, ho, wo, self.out_channels).transpose(0, 3, 1, 2))  # (N, O, Ho, Wo)

    def backward(self, dy):
        (n, c, h, w), cols = self.saved()
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        check_grad(self, dy, (n, self.out_channels, ho, wo))
        dy_rows = dy.transpose(0, 2, 3, 1).reshape(n * ho * wo, self.out_channels)  # (N*Ho*Wo, O)
        dweight = dy_rows.T @ cols  # (O, N*Ho*Wo) @ (N*Ho*Wo, kh*kw*C) -> (O, kh*kw*C)
        self.weight.grad += dweight.reshape(self.out_channels, kh, kw, c).transpose(0, 3, 1, 2)  # (O, C, kh, kw)
        if self.bias is not None:
            self.bias.grad += dy_rows.sum(axis=0)  # (O,)
        if not self.input_grad:
            return None
        # the column gradient tap by tap: dcols[a, b] = dy_rows @ weight[:, :, a, b], one batched product
        xp = get_array_module(dy)
        taps = xp.ascontiguousarray(self.weight.data.transpose(2, 3, 0, 1))  # (kh, kw, O, C)
        dcols = xp.matmul(dy_rows, taps.reshape(kh * kw, self.out_channels, c))  # (kh*kw, N*Ho*Wo, C)
        dcols = dcols.reshape(kh, kw, n, ho, wo, c)
        # col2im: tap (a, b) read the strided slab xpad[:, a::sh, b::sw, :]; add its gradient back there
        dxpad = xp.zeros((n, h + 2 * ph, w + 2 * pw, c), dcols.dtype)  # channels last, like xpad
        for a in range(kh):
            for b in range(kw):
                dxpad[:, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw, :] += dcols[a, b]  # (N, Ho, Wo, C)
        return xp.ascontiguousarray(dxpad[:, ph:ph + h, pw:pw + w, :].transpose(0, 3, 1, 2))  # (N, C, H, W), unpadded

    def _weight_matrix(self):
        """The weight as (O, kh*kw*C), its columns in the order of an im2col row (tap, then channel)."""
        return self.weight.data.transpose(0, 2, 3, 1).reshape(self.out_channels, -1)

    def extra_repr(self):
        k, s, p = self.kernel_size, self.stride, self.padding
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={k[0] if k[0] == k[1] else k}"
        if s != (1, 1):
            text += f", stride={s[0] if s[0] == s[1] else s}"
        if p != (0, 0):
            text += f", padding={p[0] if p[0] == p[1] else p}"
        return text + ("" if self.bias is not None else ", bias=False")
