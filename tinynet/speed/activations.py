"""ReLU in one kernel each way: y = max(x, 0) forward, dx = dy * (y > 0) backward.

Plain code (``ReLU``): the forward is ``xp.maximum(x, 0)``, which CuPy runs about 2.5x slower
than memory allows on a large array; the backward ``dy * (y > 0)`` is two launches and a
temporary boolean array. Here each is one pass, and each thread keeps four elements in flight:
with one 4-byte load per thread an H200 streams at about 70 % of its memory bandwidth. Where
every array allows it (a size divisible by 4, addresses aligned to four elements, as CuPy's
own allocations are) the ``*_vec`` kernels move the four in one load or store each; else the
scalar kernels take elements i, i + stride, i + 2 stride, i + 3 stride, loading all before
storing any.
"""

import cupy

from ._cuda import FOUR, contiguous, flat_grid, in_fours, kernel

SOURCE = FOUR + r"""
// NaN stays NaN, as in np.maximum: x > 0 is false for NaN, so test x != x too
__device__ __forceinline__ T relu(T x) { return (x > (T)0 || x != x) ? x : (T)0; }

extern "C" __global__ void relu_forward_vec(const Four* __restrict__ x, Four* __restrict__ y, long long quads) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < quads;
         i += (long long)gridDim.x * blockDim.x) {
        Four a = x[i];
        for (int k = 0; k < 4; ++k) a.v[k] = relu(a.v[k]);
        y[i] = a;
    }
}

extern "C" __global__ void relu_backward_vec(const Four* __restrict__ y, const Four* __restrict__ dy,
                                             Four* __restrict__ dx, long long quads) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < quads;
         i += (long long)gridDim.x * blockDim.x) {
        const Four out = y[i];
        Four grad = dy[i];
        for (int k = 0; k < 4; ++k) grad.v[k] = grad.v[k] * (T)(out.v[k] > (T)0);
        dx[i] = grad;
    }
}

extern "C" __global__ void relu_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += 4 * stride) {
        T v[4];
        for (int k = 0; k < 4; ++k) v[k] = i + k * stride < n ? x[i + k * stride] : (T)0;  // loads first
        for (int k = 0; k < 4; ++k)
            if (i + k * stride < n) y[i + k * stride] = relu(v[k]);
    }
}

extern "C" __global__ void relu_backward(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx,
                                         long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += 4 * stride) {
        T out[4], grad[4];
        for (int k = 0; k < 4; ++k) {
            const bool inside = i + k * stride < n;
            out[k] = inside ? y[i + k * stride] : (T)0;
            grad[k] = inside ? dy[i + k * stride] : (T)0;
        }
        for (int k = 0; k < 4; ++k)  // a multiply, as the plain code: NaN in dy stays NaN
            if (i + k * stride < n) dx[i + k * stride] = grad[k] * (T)(out[k] > (T)0);
    }
}
"""


def _launch(name, n, *arrays):
    """The vector kernel where the arrays allow it, else the scalar one; four elements a thread."""
    if in_fours(*arrays):
        kernel(SOURCE, arrays[0].dtype, f"{name}_vec")(flat_grid(n // 4), (256,), (*arrays, n // 4))
    else:
        kernel(SOURCE, arrays[0].dtype, name)(flat_grid(-(-n // 4)), (256,), (*arrays, n))


def relu_forward(x):
    """y = max(x, 0) for a CuPy x of any shape (NaN stays NaN, as in ``maximum``)."""
    (x,) = contiguous(x)
    y = cupy.empty_like(x)
    _launch("relu_forward", x.size, x, y)
    return y


def relu_backward(y, dy):
    """dx = dy * (y > 0) for CuPy arrays y (ReLU's output) and dy of one shape."""
    if y.shape != dy.shape:
        raise ValueError(f"ReLU.backward: expected dy of the output's shape {tuple(y.shape)}, got {tuple(dy.shape)}")
    y, dy = contiguous(y, dy.astype(y.dtype, copy=False))
    dx = cupy.empty_like(y)
    _launch("relu_backward", y.size, y, dy, dx)
    return dx
