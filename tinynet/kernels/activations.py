"""ReLU's backward in one kernel: dx = dy * (y > 0), the mask read from the saved output.

Plain code (``ReLU.backward``): ``dy * (y > 0)`` is two launches and a temporary boolean
array; here it is one pass that reads y and dy and writes dx.
"""

import cupy

from ._cuda import contiguous, flat_grid, kernel

SOURCE = r"""
extern "C" __global__ void relu_backward(const T* y, const T* dy, T* dx, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        dx[i] = dy[i] * (T)(y[i] > (T)0);  // a multiply, as the plain code: NaN in dy stays NaN
}
"""


def relu_backward(y, dy):
    """dx = dy * (y > 0) for CuPy arrays y (ReLU's output) and dy of one shape."""
    if y.shape != dy.shape:
        raise ValueError(f"ReLU.backward: expected dy of the output's shape {tuple(y.shape)}, got {tuple(dy.shape)}")
    y, dy = contiguous(y, dy.astype(y.dtype, copy=False))
    dx = cupy.empty_like(y)
    n = y.size
    kernel(SOURCE, y.dtype, "relu_backward")(flat_grid(n), (256,), (y, dy, dx, n))
    return dx
