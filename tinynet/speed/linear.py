"""Linear's forward and backward through :mod:`blas` (our cuBLAS handle), bias gradient in one kernel.

Same arithmetic as the plain ``Linear`` (``y = x @ W + b``; ``W.grad += x.T @ dy``,
``b.grad += dy.sum(0)``, ``dx = dy @ W.T``), with two differences that save launches and
passes: the GEMM adds into the weight gradient itself (beta = 1), and the bias gradient is
one column-sum kernel that adds the same way (two for a tall batch: see
``_cuda.column_chunks``). Going through our own cuBLAS handle is what lets a whole training
step be captured as a CUDA graph (see :mod:`tinynet.cuda_graph`).
"""

import cupy
import numpy as np

from . import blas
from ._cuda import BLOCK_COLUMN_TOTAL, column_chunks, contiguous, flat_grid, kernel, partial_sums

SOURCE = BLOCK_COLUMN_TOTAL + r"""
// out[j] = (overwrite ? 0 : out[j]) + sum over rows of a[:, j]; a is (n, c) row-major. As in batchnorm.py: 32 x 32 threads
// own 32 columns and one chunk of `rows` rows (blockIdx.y); one chunk adds into out itself, several
// (a tall a, to fill the GPU) write their sums to partial (double, (chunks, c)) for column_sum_merge.
extern "C" __global__ void __launch_bounds__(1024) column_sum_add(const T* a, long long n, long long c, long long rows,
                                                                  T* out, int overwrite, double* partial) {
    __shared__ double part[32][33], total[32];  // block_column_total's scratch
    const auto [col, first, last] = column_block(n, rows);
    const double t = chunk_column_sum(a, c, col, first, last, part, total);
    if (threadIdx.y == 0 && col < c) {
        if (gridDim.y == 1)
            out[col] = (overwrite ? (T)0 : out[col]) + (T)t;  // 0 + t: the plain code's zeros, then +=
        else
            partial[blockIdx.y * c + col] = t;
    }
}

// One thread per column adds the chunks' sums in chunk order (deterministic), then into out.
extern "C" __global__ void column_sum_merge(const double* partial, long long chunks, long long c, T* out,
                                            int overwrite) {
    for (long long col = (long long)blockIdx.x * blockDim.x + threadIdx.x; col < c;
         col += (long long)gridDim.x * blockDim.x) {
        double t = 0;
        for (long long k = 0; k < chunks; ++k) t += partial[k * c + col];
        out[col] = (overwrite ? (T)0 : out[col]) + (T)t;
    }
}
"""


def _accumulates_in_place(grad, like):
    return isinstance(grad, cupy.ndarray) and grad.flags.c_contiguous and grad.dtype == like.dtype and grad.shape == like.shape


def forward(layer, x):
    """y = x @ W (+ b) for a CuPy x (N, in); the layer has checked x and saved it for backward."""
    y = blas.gemm(x, contiguous(layer.weight.data)[0])  # (N, in) @ (in, out) -> (N, out)
    if layer.bias is not None:
        y += layer.bias.data
    return y


def column_sum_add(a, out, overwrite=False):
    """out += a.sum(axis=0) in one kernel (two for a tall a); a (N, C) and out (C,) CuPy arrays of one
    dtype. ``overwrite=True``: out = a.sum(axis=0) instead (out's old values are not read)."""
    (a,) = contiguous(a)
    n, c = a.shape
    if _accumulates_in_place(out, a[0]):
        target, flag = out, overwrite
    else:
        target, flag = cupy.empty(c, a.dtype), True
    grid, block, rows = column_chunks(n, c)
    chunks = grid[1]
    partial = partial_sums(chunks, 1, c)
    flag = np.int32(flag)
    kernel(SOURCE, a.dtype, "column_sum_add")(grid, block, (a, n, c, rows, target, flag, partial))
    if chunks > 1:
        kernel(SOURCE, a.dtype, "column_sum_merge")(flat_grid(c), (256,), (partial, chunks, c, target, flag))
    if target is not out:
        if overwrite:
            out[...] = target
        else:
            out += target


def backward(layer, x, dy):
    """Adds into weight.grad (and bias.grad); returns dx = dy @ W.T, or None when
    ``layer.input_grad`` is False (nothing upstream needs it: the first layer in fit)."""
    (dy,) = contiguous(dy.astype(x.dtype, copy=False))
    w = layer.weight
    grad = w.grad
    if _accumulates_in_place(grad, w.data):  # (in, N) @ (N, out), added by the GEMM (beta = 1)
        blas.gemm(x.T, dy, out=grad, beta=1.0)
    else:
        grad += blas.gemm(x.T, dy)
    if layer.bias is not None:
        column_sum_add(dy, layer.bias.grad)
    if not getattr(layer, "input_grad", True):
        return None
    return blas.gemm(dy, w.data.T)  # (N, out) @ (out, in) -> (N, in)
