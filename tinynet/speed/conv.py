"""Fused CPU implementations of the 4-D layers (opted into): Conv2d, BatchNorm2d, MaxPool2d.

The plain code in ``tinynet/layers/conv.py``, ``batchnorm2d.py`` and ``pooling.py`` is the
reference; each implementation here computes the same values (``tests/test_speed_conv.py``
holds them to it) with fewer passes over memory:

=============  =====================================================  ===========================
class          plain code                                             here
=============  =====================================================  ===========================
Conv2d         pad + channels-last copy, strided-view im2col copy,    im2col in C straight from
               product, NCHW copy; backward: dy copy, two products,   NCHW into Caffe's transposed
               k*k slab additions, NCHW copy                          layout (runs of Wo values,
                                                                      padding on the fly), the
                                                                      same products into kept
                                                                      scratch, col2im in C
                                                                      straight into NCHW
BatchNorm2d    about six NumPy passes each way, each a new array      3 passes forward, 2 back,
                                                                      one array each way
MaxPool2d      k*k strided taps, two NumPy passes per tap             one pass each way
=============  =====================================================  ===========================

One difference, for inputs the plain code would refuse to train on anyway: a NaN in a pooling
window wins in the plain code (``numpy.maximum`` propagates it) but only as the window's first
element here (``>`` is false for NaN); fit's NaN guard stops such a run either way.

Memory is kept per layer instance and reused from step to step: a fresh array of several MB
costs its page faults on every step, which on a small CPU was a third of the plain step's time.
Internal scratch (a chunk's im2col columns, the products) is simply kept: nothing outside a
call reads it (Conv2d saves x and rebuilds the columns in backward). An output or input gradient is handed back in the memory of the
previous step's only when nothing refers to that array any more (:func:`_unshared` reads its
reference count): a caller never sees an array it holds change. The C source is compiled on first use beside the other CPU kernels
(:mod:`.cpu`: same compiler, flags and cache folder); without a compiler the plain code runs.
"""

import ctypes
import os
import subprocess
import sys

import numpy as np

from ..layer import check_grad, check_input
from ..layers.batchnorm2d import BatchNorm2d
from ..layers.conv import Conv2d, output_size
from ..layers.pooling import MaxPool2d
from . import cpu
from .registry import Fused, register

BODY = r"""
// im2col, transposed: x (n, c, h, w) -> cols (c*kh*kw, n*ho*wo); row (ch, a, b), the column
// order of weight.reshape(out, -1); column (img, i, j). Each (row, img, i) is a run of wo values
// read along one input row (contiguous when sw == 1); taps that fall in the padding are 0.
void NAME(im2col)(const T* restrict x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                  ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph, ptrdiff_t pw,
                  ptrdiff_t ho, ptrdiff_t wo, T* restrict cols) {
    const ptrdiff_t columns = n * ho * wo;
    for (ptrdiff_t ch = 0; ch < c; ++ch)
        for (ptrdiff_t img = 0; img < n; ++img) {
            const T* restrict plane = x + (img * c + ch) * h * w;
            for (ptrdiff_t a = 0; a < kh; ++a)
                for (ptrdiff_t b = 0; b < kw; ++b) {
                    // the outputs j whose tap q = j*sw + b - pw lies inside the row: j0 <= j < j1
                    ptrdiff_t j0 = 0, j1 = wo;
                    while (j0 < wo && j0 * sw + b - pw < 0) ++j0;
                    while (j1 > j0 && (j1 - 1) * sw + b - pw >= w) --j1;
                    for (ptrdiff_t i = 0; i < ho; ++i) {
                        T* restrict out = cols + ((ch * kh + a) * kw + b) * columns + (img * ho + i) * wo;
                        const ptrdiff_t r = i * sh + a - ph;
                        if (r < 0 || r >= h) { for (ptrdiff_t j = 0; j < wo; ++j) out[j] = (T)0; continue; }
                        const T* restrict src = plane + r * w + b - pw;
                        for (ptrdiff_t j = 0; j < j0; ++j) out[j] = (T)0;
                        if (sw == 1) for (ptrdiff_t j = j0; j < j1; ++j) out[j] = src[j];
                        else for (ptrdiff_t j = j0; j < j1; ++j) out[j] = src[j * sw];
                        for (ptrdiff_t j = j1; j < wo; ++j) out[j] = (T)0;
                    }
                }
        }
}

// col2im, from the transposed layout: dx (n, c, h, w) = the sum, over the windows each pixel
// sits in, of dcols (c*kh*kw, n*ho*wo); entries in the padding are dropped. dx is overwritten.
void NAME(col2im)(const T* restrict dcols, ptrdiff_t n, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                  ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph, ptrdiff_t pw,
                  ptrdiff_t ho, ptrdiff_t wo, T* restrict dx) {
    const ptrdiff_t columns = n * ho * wo;
    for (ptrdiff_t e = 0; e < n * c * h * w; ++e) dx[e] = (T)0;
    for (ptrdiff_t ch = 0; ch < c; ++ch)
        for (ptrdiff_t img = 0; img < n; ++img) {
            T* restrict plane = dx + (img * c + ch) * h * w;
            for (ptrdiff_t a = 0; a < kh; ++a)
                for (ptrdiff_t b = 0; b < kw; ++b) {
                    ptrdiff_t j0 = 0, j1 = wo;
                    while (j0 < wo && j0 * sw + b - pw < 0) ++j0;
                    while (j1 > j0 && (j1 - 1) * sw + b - pw >= w) --j1;
                    for (ptrdiff_t i = 0; i < ho; ++i) {
                        const ptrdiff_t r = i * sh + a - ph;
                        if (r < 0 || r >= h) continue;
                        const T* restrict in = dcols + ((ch * kh + a) * kw + b) * columns + (img * ho + i) * wo;
                        T* restrict dst = plane + r * w + b - pw;
                        if (sw == 1) for (ptrdiff_t j = j0; j < j1; ++j) dst[j] += in[j];
                        else for (ptrdiff_t j = j0; j < j1; ++j) dst[j * sw] += in[j];
                    }
                }
        }
}

// (o, n, hw) -> (n, o, hw), plus bias[o] when bias is not NULL: the product's output as NCHW
void NAME(cnp_to_nchw)(const T* restrict src, ptrdiff_t n, ptrdiff_t o, ptrdiff_t hw, const T* restrict bias,
                       T* restrict y) {
    for (ptrdiff_t img = 0; img < n; ++img)
        for (ptrdiff_t ch = 0; ch < o; ++ch) {
            const T* restrict from = src + (ch * n + img) * hw;
            T* restrict to = y + (img * o + ch) * hw;
            const T add = bias ? bias[ch] : (T)0;
            for (ptrdiff_t p = 0; p < hw; ++p) to[p] = from[p] + add;
        }
}

// (n, o, hw) -> (n*hw, o): dy as rows, for the weight gradient's product (cols @ rows)
void NAME(nchw_to_rows)(const T* restrict dy, ptrdiff_t n, ptrdiff_t o, ptrdiff_t hw, T* restrict rows) {
    for (ptrdiff_t img = 0; img < n; ++img)
        for (ptrdiff_t ch = 0; ch < o; ++ch) {
            const T* restrict from = dy + (img * o + ch) * hw;
            T* restrict to = rows + img * hw * o + ch;
            for (ptrdiff_t p = 0; p < hw; ++p) to[p * o] = from[p];
        }
}

// (n, o, hw) -> (o, n, hw): dy laid out for the column gradient's product (weight.T @ dy_t)
void NAME(nchw_to_cnp)(const T* restrict dy, ptrdiff_t n, ptrdiff_t o, ptrdiff_t hw, T* restrict dst) {
    for (ptrdiff_t img = 0; img < n; ++img)
        for (ptrdiff_t ch = 0; ch < o; ++ch) {
            const T* restrict from = dy + (img * o + ch) * hw;
            T* restrict to = dst + (ch * n + img) * hw;
            for (ptrdiff_t p = 0; p < hw; ++p) to[p] = from[p];
        }
}

// Sums over one contiguous block in 8 independent lanes of T, so the loop vectorises without
// reordering a single running sum (-O3 without -ffast-math may not); the lanes meet in double.
static double NAME(block_sum)(const T* restrict v, ptrdiff_t len, T centre, int squared) {
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t p = 0;
    if (squared) {
        for (; p + 8 <= len; p += 8)
            for (int k = 0; k < 8; ++k) { const T d = v[p + k] - centre; acc[k] += d * d; }
    } else {
        for (; p + 8 <= len; p += 8)
            for (int k = 0; k < 8; ++k) acc[k] += v[p + k];
    }
    double s = 0.0;
    for (int k = 0; k < 8; ++k) s += acc[k];
    for (; p < len; ++p) { const T d = squared ? v[p] - centre : v[p]; s += squared ? d * d : d; }
    return s;
}

// BatchNorm2d's training forward, per channel over n and hw: mean, biased var (centred first),
// y = (x - mean) * inv_std * gamma + beta
void NAME(bn2d_forward)(const T* restrict x, ptrdiff_t n, ptrdiff_t c, ptrdiff_t hw, const T* restrict gamma,
                        const T* restrict beta, T eps, T* restrict mean_out, T* restrict var_out,
                        T* restrict inv_std_out, T* restrict y) {
    const double m = (double)(n * hw);
    for (ptrdiff_t ch = 0; ch < c; ++ch) {
        double s = 0.0;
        for (ptrdiff_t img = 0; img < n; ++img) s += NAME(block_sum)(x + (img * c + ch) * hw, hw, (T)0, 0);
        const T mean = (T)(s / m);
        double ss = 0.0;
        for (ptrdiff_t img = 0; img < n; ++img) ss += NAME(block_sum)(x + (img * c + ch) * hw, hw, mean, 1);
        const T var = (T)(ss / m);
        const T inv_std = (T)1 / SQRT(var + eps);
        mean_out[ch] = mean; var_out[ch] = var; inv_std_out[ch] = inv_std;
        const T g = gamma[ch], bt = beta[ch];
        for (ptrdiff_t img = 0; img < n; ++img) {
            const T* restrict v = x + (img * c + ch) * hw;
            T* restrict out = y + (img * c + ch) * hw;
            for (ptrdiff_t p = 0; p < hw; ++p) out[p] = (v[p] - mean) * inv_std * g + bt;
        }
    }
}

// BatchNorm2d's simplified backward: dgamma, dbeta (written), dx = gamma * inv_std *
// (dy - dbeta / m - xhat * dgamma / m), xhat recomputed from x; the sums in 8 lanes as above
void NAME(bn2d_backward)(const T* restrict x, const T* restrict dy, ptrdiff_t n, ptrdiff_t c, ptrdiff_t hw,
                         const T* restrict mean, const T* restrict inv_std, const T* restrict gamma,
                         T* restrict dgamma, T* restrict dbeta, T* restrict dx) {
    const T m = (T)(n * hw);
    for (ptrdiff_t ch = 0; ch < c; ++ch) {
        const T mu = mean[ch], is = inv_std[ch];
        double sdy = 0.0, sdyx = 0.0;
        for (ptrdiff_t img = 0; img < n; ++img) {
            const T* restrict v = x + (img * c + ch) * hw;
            const T* restrict g = dy + (img * c + ch) * hw;
            T a1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, a2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            ptrdiff_t p = 0;
            for (; p + 8 <= hw; p += 8)
                for (int k = 0; k < 8; ++k) { a1[k] += g[p + k]; a2[k] += g[p + k] * ((v[p + k] - mu) * is); }
            for (int k = 0; k < 8; ++k) { sdy += a1[k]; sdyx += a2[k]; }
            for (; p < hw; ++p) { sdy += g[p]; sdyx += (double)(g[p] * ((v[p] - mu) * is)); }
        }
        const T db = (T)sdy, dg = (T)sdyx;
        dbeta[ch] = db; dgamma[ch] = dg;
        const T scale = gamma[ch] * is, shift = db / m, slope = dg / m;
        for (ptrdiff_t img = 0; img < n; ++img) {
            const T* restrict v = x + (img * c + ch) * hw;
            const T* restrict g = dy + (img * c + ch) * hw;
            T* restrict out = dx + (img * c + ch) * hw;
            for (ptrdiff_t p = 0; p < hw; ++p) out[p] = scale * (g[p] - shift - (v[p] - mu) * is * slope);
        }
    }
}

// MaxPool2d over planes (nc, h, w): y = the window maximum, which = its tap a*kw + b (the first
// of equal ones, as the plain code and PyTorch)
void NAME(maxpool_forward)(const T* restrict x, ptrdiff_t nc, ptrdiff_t h, ptrdiff_t w, ptrdiff_t kh, ptrdiff_t kw,
                           ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ho, ptrdiff_t wo, T* restrict y,
                           int32_t* restrict which) {
    for (ptrdiff_t pl = 0; pl < nc; ++pl) {
        const T* restrict plane = x + pl * h * w;
        for (ptrdiff_t i = 0; i < ho; ++i)
            for (ptrdiff_t j = 0; j < wo; ++j) {
                const T* restrict corner = plane + i * sh * w + j * sw;
                T best = corner[0];
                int32_t tap = 0;
                for (ptrdiff_t a = 0; a < kh; ++a)
                    for (ptrdiff_t b = 0; b < kw; ++b)
                        if (corner[a * w + b] > best) { best = corner[a * w + b]; tap = (int32_t)(a * kw + b); }
                y[(pl * ho + i) * wo + j] = best;
                which[(pl * ho + i) * wo + j] = tap;
            }
    }
}

// dx (nc, h, w), overwritten: each dy goes to its window's winning tap (+=: windows may overlap)
void NAME(maxpool_backward)(const T* restrict dy, const int32_t* restrict which, ptrdiff_t nc, ptrdiff_t h,
                            ptrdiff_t w, ptrdiff_t kw, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ho, ptrdiff_t wo,
                            T* restrict dx) {
    for (ptrdiff_t e = 0; e < nc * h * w; ++e) dx[e] = (T)0;
    for (ptrdiff_t pl = 0; pl < nc; ++pl)
        for (ptrdiff_t i = 0; i < ho; ++i)
            for (ptrdiff_t j = 0; j < wo; ++j) {
                const ptrdiff_t o = (pl * ho + i) * wo + j, tap = which[o];
                dx[pl * h * w + (i * sh + tap / kw) * w + j * sw + tap % kw] += dy[o];
            }
}
"""

SOURCE = "\n".join([
    "#include <math.h>", "#include <stddef.h>", "#include <stdint.h>",
    "#define T float", "#define NAME(f) f##_f32", "#define SQRT sqrtf", BODY,
    "#undef T", "#undef NAME", "#undef SQRT",
    "#define T double", "#define NAME(f) f##_f64", "#define SQRT sqrt", BODY,
])

_P, _L = ctypes.c_void_p, ctypes.c_ssize_t
SIGNATURES = {
    "im2col": ([_P] + [_L] * 12 + [_P], None),
    "col2im": ([_P] + [_L] * 12 + [_P], None),
    "cnp_to_nchw": ([_P, _L, _L, _L, _P, _P], None),
    "nchw_to_cnp": ([_P, _L, _L, _L, _P], None),
    "nchw_to_rows": ([_P, _L, _L, _L, _P], None),
    "bn2d_forward": ([_P, _L, _L, _L, _P, _P, "T", _P, _P, _P, _P], None),
    "bn2d_backward": ([_P, _P, _L, _L, _L, _P, _P, _P, _P, _P, _P], None),
    "maxpool_forward": ([_P] + [_L] * 9 + [_P, _P], None),
    "maxpool_backward": ([_P, _P] + [_L] * 8 + [_P], None),
}

_library = None


def library():
    """``{(name, dtype char): ctypes function}``, or None without a compiler (or with
    ``TINYNET_CPU_KERNELS=0``); built once per process, cached as the other CPU kernels."""
    global _library
    if _library is None:
        _library = False
        if os.environ.get("TINYNET_CPU_KERNELS", "1") != "0":
            try:
                _library = cpu._load(cpu._build(SOURCE, "tinynet-conv")[0], SIGNATURES)
            except (OSError, RuntimeError, subprocess.SubprocessError):
                _library = False
    return _library or None


def _kernel(name, dtype):
    return library()[name, dtype.char]


def _ptr(a):
    return a.ctypes.data


def _scratch(owner, key, shape, dtype):
    """A kept array of ``shape`` and ``dtype`` under ``owner.scratch[key]``, made once and reused."""
    a = owner.scratch.get(key)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = owner.scratch[key] = np.empty(shape, dtype)
    return a


def _unshared(owner, key, shape, dtype):
    """An array to return: the one made under ``owner.scratch[key]`` last time when nobody else
    holds it any more (no caller, no saved value, no view: its reference count says so), else a
    new one. A caller never sees an array change under it; a training loop gets the same memory
    back step after step, without the page faults of a fresh one."""
    a = owner.scratch.get(key)
    # references: the dict's, this frame's ``a``, getrefcount's argument; a view adds its base's
    if a is None or a.shape != shape or a.dtype != dtype or sys.getrefcount(a) > 3:
        a = owner.scratch[key] = np.empty(shape, dtype)
    return a


class _OnCpu(Fused):
    """What the three share: the library check, which arrays the kernels take, the saved tag."""

    def __init__(self, owner):
        super().__init__(owner)
        self.scratch = {}

    def usable(self):
        return library() is not None and cpu.library() is not None

    def fits(self, x, like):
        """A C-contiguous-able float32/float64 NumPy array of the parameters' dtype."""
        return type(x) is np.ndarray and x.dtype.char in "fd" and (like is None or x.dtype == like.dtype)

    def plain_backward(self, dy):
        self.hand_over()  # a fused forward's save, in the plain layout
        return self.plain.backward(self.layer, dy)


CHUNK_FLOATS = 1 << 18  # im2col columns per chunk of images: about 1 MB of float32, kept in cache


@register(Conv2d, "numpy")
class CpuConv2d(_OnCpu):
    """The plain layer's products on the transposed layout (Caffe's): cols (C*kh*kw, B*Ho*Wo),
    y = weight (O, C*kh*kw) @ cols, for a chunk of B images at a time so that the columns stay
    in cache; im2col and col2im in C, a run of Wo values at a time. Forward saves x only:
    backward builds each chunk's columns again (cheaper than reading 20 MB back from memory)."""

    def forward(self, x):
        layer = self.layer
        if not self.fits(x, layer.weight.data):
            return self.plain.forward(layer, x)
        check_input(layer, x, ndim=4, features=layer.in_channels, axis=1, like=layer.weight.data)
        x = np.ascontiguousarray(x)
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        ho = output_size(layer.name_for_errors(), h, kh, sh, ph)
        wo = output_size(layer.name_for_errors(), w, kw, sw, pw)
        o, k, dtype = layer.out_channels, c * kh * kw, x.dtype
        weight = layer.weight.data.reshape(o, k)  # (O, C*kh*kw): the row order of im2col
        bias = None if layer.bias is None else _ptr(layer.bias.data)
        y = _unshared(self, "y", (n, o, ho, wo), dtype)
        for start, b in self._chunks(n, k, ho * wo):
            cols = self._columns(x, start, b, ho, wo)  # (C*kh*kw, b*Ho*Wo)
            product = np.matmul(weight, cols, out=_scratch(self, "product", (o, b * ho * wo), dtype))
            _kernel("cnp_to_nchw", dtype)(_ptr(product), b, o, ho * wo, bias, _ptr(y[start:]))
        layer.save_for_backward(self, x)
        return y

    def backward(self, dy):
        layer = self.layer
        if not self.owns_pending() or not self.fits(dy, layer.weight.data):
            return self.plain_backward(dy)
        _, x = layer.saved()
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        o, k, dtype = layer.out_channels, c * kh * kw, dy.dtype
        check_grad(layer, dy, (n, o, ho, wo))
        dy = np.ascontiguousarray(dy)
        weight = layer.weight.data.reshape(o, k)
        dweight_t = np.zeros((k, o), dtype)  # dL/dweight, transposed: cols @ rows is OpenBLAS's faster form
        dx = _unshared(self, "dx", (n, c, h, w), dtype) if layer.input_grad else None
        for start, b in self._chunks(n, k, ho * wo):
            cols = self._columns(x, start, b, ho, wo)
            dy_rows = _scratch(self, "dy_rows", (b * ho * wo, o), dtype)  # (b*Ho*Wo, O)
            _kernel("nchw_to_rows", dtype)(_ptr(dy[start:]), b, o, ho * wo, _ptr(dy_rows))
            dweight_t += cols @ dy_rows  # (C*kh*kw, O)
            if dx is not None:
                dy_t = _scratch(self, "dy_t", (o, b * ho * wo), dtype)  # (O, b*Ho*Wo)
                _kernel("nchw_to_cnp", dtype)(_ptr(dy[start:]), b, o, ho * wo, _ptr(dy_t))
                dcols = np.matmul(weight.T, dy_t, out=_scratch(self, "dcols", (k, b * ho * wo), dtype))
                _kernel("col2im", dtype)(_ptr(dcols), b, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo, _ptr(dx[start:]))
        layer.weight.grad += dweight_t.T.reshape(o, c, kh, kw)  # PyTorch's order
        if layer.bias is not None:
            layer.bias.grad += dy.sum(axis=(0, 2, 3))
        return dx

    @staticmethod
    def _chunks(n, k, positions):
        """``(first image, count)`` per chunk: as many images as keep the columns near CHUNK_FLOATS."""
        per = max(1, CHUNK_FLOATS // (k * positions))
        return [(start, min(per, n - start)) for start in range(0, n, per)]

    def _columns(self, x, start, b, ho, wo):
        """im2col of images start .. start+b of x into kept scratch: (C*kh*kw, b*Ho*Wo)."""
        layer = self.layer
        _, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        cols = _scratch(self, "cols", (c * kh * kw, b * ho * wo), x.dtype)
        _kernel("im2col", x.dtype)(_ptr(x[start:]), b, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo, _ptr(cols))
        return cols

    def plain_saved(self, saved):
        (x,) = saved
        self.plain.forward(self.layer, x)  # the plain columns, from x (a Conv2d has no other state)
        return self.layer.saved()


@register(BatchNorm2d, "numpy")
class CpuBatchNorm2d(_OnCpu):
    def forward(self, x):
        layer = self.layer
        if not (layer.training and layer.gradient == "simplified" and self.fits(x, layer.gamma.data)):
            return self.plain.forward(layer, x)  # eval mode and the paper's form: the plain code
        check_input(layer, x, ndim=4, features=layer.num_features, axis=1, like=layer.gamma.data)
        n, c, h, w = x.shape
        if n * h * w < 2:
            return self.plain.forward(layer, x)  # its error message
        x = np.ascontiguousarray(x)
        dtype = x.dtype
        mean, var, inv_std = np.empty(c, dtype), np.empty(c, dtype), np.empty(c, dtype)
        y = _unshared(self, "y", x.shape, dtype)
        _kernel("bn2d_forward", dtype)(_ptr(x), n, c, h * w, _ptr(layer.gamma.data), _ptr(layer.beta.data),
                                       layer.eps, _ptr(mean), _ptr(var), _ptr(inv_std), _ptr(y))
        layer._update_running_statistics(mean, var, n * h * w)
        layer.save_for_backward(self, x, mean, inv_std)  # x, not xhat: the kernel recomputes it
        return y

    def backward(self, dy):
        layer = self.layer
        saved = layer.__dict__.get("_saved")
        if not self.owns_pending() or not (self.fits(dy, None) and dy.dtype == saved[1].dtype):
            return self.plain_backward(dy)
        _, x, mean, inv_std = layer.saved()
        check_grad(layer, dy, x.shape)
        dy = np.ascontiguousarray(dy)
        n, c, h, w = x.shape
        dgamma, dbeta, dx = np.empty(c, dy.dtype), np.empty(c, dy.dtype), _unshared(self, "dx", dy.shape, dy.dtype)
        _kernel("bn2d_backward", dy.dtype)(_ptr(x), _ptr(dy), n, c, h * w, _ptr(mean), _ptr(inv_std),
                                           _ptr(layer.gamma.data), _ptr(dgamma), _ptr(dbeta), _ptr(dx))
        layer.gamma.grad += dgamma
        layer.beta.grad += dbeta
        return dx

    def plain_saved(self, saved):
        x, mean, inv_std = saved
        xc = x - mean[:, None, None]
        return True, xc * inv_std[:, None, None], inv_std, xc  # as BatchNorm2d.forward saves them


@register(MaxPool2d, "numpy")
class CpuMaxPool2d(_OnCpu):
    def forward(self, x):
        layer = self.layer
        if not self.fits(x, None):
            return self.plain.forward(layer, x)
        n, c, ho, wo = layer._output_shape(x)  # checks x
        x = np.ascontiguousarray(x)
        (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
        y, which = _unshared(self, "y", (n, c, ho, wo), x.dtype), _unshared(self, "which", (n, c, ho, wo), np.int32)
        _kernel("maxpool_forward", x.dtype)(_ptr(x), n * c, x.shape[2], x.shape[3], kh, kw, sh, sw, ho, wo,
                                            _ptr(y), _ptr(which))
        layer.save_for_backward(self, x.shape, which)  # the plain layout: which tap won
        return y

    def backward(self, dy):
        layer = self.layer
        if not self.owns_pending() or not self.fits(dy, None):
            return self.plain_backward(dy)
        _, shape, which = layer.saved()
        check_grad(layer, dy, which.shape)
        dy = np.ascontiguousarray(dy)
        (_, kw), (sh, sw) = layer.kernel_size, layer.stride
        n, c, h, w = shape
        dx = _unshared(self, "dx", shape, dy.dtype)
        _kernel("maxpool_backward", dy.dtype)(_ptr(dy), _ptr(which), n * c, h, w, kw, sh, sw,
                                              which.shape[2], which.shape[3], _ptr(dx))
        return dx
