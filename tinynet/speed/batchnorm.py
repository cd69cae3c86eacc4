"""BatchNorm's training forward and its simplified backward, two kernels each (three if tall).

The plain code (``tinynet/layers/batchnorm.py``) is the reference and spells out every
step; it costs about fifteen launches forward and as many backward. Here:

forward   ``bn_stats``      per column: mean, biased variance (two passes, centred first, in
                            double), inv_std = 1/sqrt(var + eps), and both running averages
                            updated in place (running_var gets the unbiased variance)
          ``bn_normalize``  y = gamma * xhat + beta, xhat = (x - mean) * inv_std
backward  ``bn_grad_sums``  per column: dbeta = sum(dy), dgamma = sum(dy * xhat), written
                            (after zero_grad) or added into the gradients, and the three
                            per-column coefficients of dx
          ``bn_grad_x``     dx = k1 * dy - k2 - xhat * k3, with k1 = gamma * inv_std,
                            k2 = k1 * dbeta / m, k3 = k1 * dgamma / m: the simplified form
                            (inv_std / m) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
                            with dxhat = dy * gamma, multiplied out

Unlike the plain code, the forward does not write xhat: it keeps x (as much memory) and the
mean, and both backward kernels compute xhat again with the forward's two roundings, so the
results are the same. Writing xhat cost a pass over an (N, C) array per layer and step: on an
H200 at (4096, 4096) bn_normalize took 55 us with it, PyTorch's pass without it 39 us.

``bn_normalize`` and ``bn_grad_x`` have ``_vec`` forms that read and write four columns at a
time where C is a multiple of 4 and the arrays are aligned (``_cuda.in_fours``).

For a tall x (more than ``_cuda.SPLIT_ROWS`` rows) the two column reductions, ``bn_stats``
and ``bn_grad_sums``, run over chunks of rows in parallel and ``bn_stats_merge`` /
``bn_grad_merge`` combine the chunks: three kernels each way instead of two.
"""

import cupy
import numpy as np

from ._cuda import (BLOCK_COLUMN_TOTAL, FOUR, column_chunks, contiguous, flat_grid, in_fours, kernel, partial_sums,
                    row_launch, scalar)

SOURCE = BLOCK_COLUMN_TOTAL + FOUR + r"""
// Column reductions: x is (n, c), row-major. A block of 32 x 32 threads owns 32 columns and one
// chunk of `rows` rows (blockIdx.y picks it): threadIdx.x picks the column (so a warp reads 32
// neighbouring floats of a row), threadIdx.y strides down the chunk. With one chunk (gridDim.y
// == 1) the block finishes its columns itself. A tall x comes in several chunks, because 32
// columns per block alone would leave most of the GPU idle (see _cuda.column_chunks): then each
// block writes its chunk's sums to `partial` (double, (sums * chunks, c)) and a *_merge kernel
// adds the chunks in order, so the result does not depend on which block ran first.

// xhat of one entry, rounded as the plain code rounds it: (x - mean), then * inv_std. The forward
// and both backward kernels call this, so they see the same xhat without storing it.
__device__ __forceinline__ T xhat(T x, T mean, T inv_std) { return (x - mean) * inv_std; }

// What bn_stats keeps of each column: from its sum and its centred sum of squares m2 (double).
__device__ __forceinline__ void bn_stats_finish(long long col, double n, double sum, double m2,
                                                T eps, T keep, T new_mean, T new_var, T* mean,
                                                T* inv_std, T* running_mean, T* running_var) {
    const double mu = sum / n, var = m2 / n;  // biased: this one normalises
    mean[col] = (T)mu;
    inv_std[col] = (T)(1.0 / sqrt(var + (double)eps));
    running_mean[col] = running_mean[col] * keep + new_mean * (T)mu;
    running_var[col] = running_var[col] * keep + new_var * (T)var;  // new_var = momentum * m / (m - 1)
}

// What bn_grad_sums keeps of each column: dgamma, dbeta written into the gradients (added, unless
// overwrite_gamma / overwrite_beta: right after zero_grad, 0 + d as the plain code's zeros then
// +=), and dx's three coefficients.
__device__ __forceinline__ void bn_grad_finish(long long col, long long n, long long c,
                                               double dgamma, double dbeta, const T* gamma,
                                               const T* inv_std, T* gamma_grad, T* beta_grad,
                                               int overwrite_gamma, int overwrite_beta, T* coef) {
    gamma_grad[col] = (overwrite_gamma ? (T)0 : gamma_grad[col]) + (T)dgamma;
    beta_grad[col] = (overwrite_beta ? (T)0 : beta_grad[col]) + (T)dbeta;
    const double k1 = (double)gamma[col] * (double)inv_std[col];
    coef[col] = (T)k1;
    coef[c + col] = (T)(k1 * dbeta / (double)n);
    coef[2 * c + col] = (T)(k1 * dgamma / (double)n);
}

// partial: the chunks' sums (rows 0 .. chunks-1), then their centred sums of squares.
extern "C" __global__ void __launch_bounds__(1024) bn_stats(const T* x, long long n, long long c, long long rows,
                                    T eps, T keep, T new_mean, T new_var,
                                    T* mean, T* inv_std, T* running_mean, T* running_var, double* partial) {
    __shared__ double part[32][33], total[32];  // block_column_total's scratch
    const auto [col, first, last] = column_block(n, rows);
    const double sum = chunk_column_sum(x, c, col, first, last, part, total);
    const double mu = sum / (double)(last - first);  // this chunk's mean
    double q = 0;  // second pass over the centred values: never E[x^2] - E[x]^2
    if (col < c)
        for (long long r = first + threadIdx.y; r < last; r += 32) {
            const double d = (double)x[r * c + col] - mu;
            q += d * d;
        }
    const double m2 = block_column_total(q, part, total);
    if (threadIdx.y == 0 && col < c) {
        if (gridDim.y == 1) {
            bn_stats_finish(col, (double)n, sum, m2, eps, keep, new_mean, new_var,
                            mean, inv_std, running_mean, running_var);
        } else {
            partial[blockIdx.y * c + col] = sum;
            partial[(gridDim.y + blockIdx.y) * c + col] = m2;
        }
    }
}

// One thread per column combines the chunks (Chan et al.'s parallel variance): with chunk k's
// n_k rows, sum s_k and centred sum of squares q_k, and mu = sum(s_k) / n, the whole column's
// sum((x - mu)^2) = sum(q_k + n_k * (s_k / n_k - mu)^2): still no E[x^2] - E[x]^2.
extern "C" __global__ void bn_stats_merge(const double* partial, long long chunks, long long n, long long c,
                                          long long rows, T eps, T keep, T new_mean, T new_var,
                                          T* mean, T* inv_std, T* running_mean, T* running_var) {
    for (long long col = (long long)blockIdx.x * blockDim.x + threadIdx.x; col < c;
         col += (long long)gridDim.x * blockDim.x) {
        double s = 0;
        for (long long k = 0; k < chunks; ++k) s += partial[k * c + col];
        const double mu = s / (double)n;
        double q = 0;
        for (long long k = 0; k < chunks; ++k) {
            const double n_k = (double)((k + 1) * rows < n ? rows : n - k * rows);  // the last is shorter
            const double d = partial[k * c + col] / n_k - mu;
            q += partial[(chunks + k) * c + col] + n_k * d * d;
        }
        bn_stats_finish(col, (double)n, s, q, eps, keep, new_mean, new_var, mean, inv_std, running_mean, running_var);
    }
}

// One block per row at a time (grid-stride over rows), its threads along the row.
// Row-blocked: a block walks rows, its threads a row's columns, four columns per trip so that
// four loads of x are in flight per thread (one leaves the memory bandwidth two-thirds used).
extern "C" __global__ void bn_normalize(const T* __restrict__ x, const T* __restrict__ mean,
                                        const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                        const T* __restrict__ beta, T* __restrict__ y, long long n, long long c) {
    const long long step = blockDim.x;
    for (long long r = blockIdx.x; r < n; r += gridDim.x)
        for (long long j0 = threadIdx.x; j0 < c; j0 += 4 * step) {
            T v[4];
            for (int k = 0; k < 4; ++k) v[k] = j0 + k * step < c ? x[r * c + j0 + k * step] : (T)0;
            for (int k = 0; k < 4; ++k) {
                const long long j = j0 + k * step;
                if (j < c) y[r * c + j] = gamma[j] * xhat(v[k], mean[j], inv_std[j]) + beta[j];
            }
        }
}

// partial: the chunks' sums of dy * xhat (rows 0 .. chunks-1), then their sums of dy.
extern "C" __global__ void __launch_bounds__(1024) bn_grad_sums(const T* dy, const T* x, const T* mean,
                                        const T* gamma, const T* inv_std,
                                        long long n, long long c, long long rows,
                                        T* gamma_grad, T* beta_grad, int overwrite_gamma, int overwrite_beta,
                                        T* coef, double* partial) {
    __shared__ double part[32][33], total[32];  // block_column_total's scratch
    const auto [col, first, last] = column_block(n, rows);
    double sg = 0, sb = 0;
    if (col < c) {
        const T mu = mean[col], scale = inv_std[col];
        for (long long r = first + threadIdx.y; r < last; r += 32) {
            const double g = (double)dy[r * c + col];
            sb += g;
            sg += g * (double)xhat(x[r * c + col], mu, scale);
        }
    }
    const double dgamma = block_column_total(sg, part, total);
    const double dbeta = block_column_total(sb, part, total);
    if (threadIdx.y == 0 && col < c) {
        if (gridDim.y == 1) {
            bn_grad_finish(col, n, c, dgamma, dbeta, gamma, inv_std, gamma_grad, beta_grad,
                           overwrite_gamma, overwrite_beta, coef);
        } else {
            partial[blockIdx.y * c + col] = dgamma;
            partial[(gridDim.y + blockIdx.y) * c + col] = dbeta;
        }
    }
}

// One thread per column adds the chunks' sums, in chunk order.
extern "C" __global__ void bn_grad_merge(const double* partial, long long chunks, long long n, long long c,
                                         const T* gamma, const T* inv_std,
                                         T* gamma_grad, T* beta_grad, int overwrite_gamma, int overwrite_beta,
                                         T* coef) {
    for (long long col = (long long)blockIdx.x * blockDim.x + threadIdx.x; col < c;
         col += (long long)gridDim.x * blockDim.x) {
        double dgamma = 0, dbeta = 0;
        for (long long k = 0; k < chunks; ++k) {
            dgamma += partial[k * c + col];
            dbeta += partial[(chunks + k) * c + col];
        }
        bn_grad_finish(col, n, c, dgamma, dbeta, gamma, inv_std, gamma_grad, beta_grad,
                       overwrite_gamma, overwrite_beta, coef);
    }
}

// bn_normalize and bn_grad_x four columns at a time, where C is a multiple of 4 and every array
// is aligned (in_fours): c4 = C / 4 quads per row, coef holds three rows of c4 quads.
extern "C" __global__ void bn_normalize_vec(const Four* __restrict__ x, const Four* __restrict__ mean,
                                            const Four* __restrict__ inv_std, const Four* __restrict__ gamma,
                                            const Four* __restrict__ beta, Four* __restrict__ y,
                                            long long n, long long c4) {
    for (long long r = blockIdx.x; r < n; r += gridDim.x)
        for (long long q = threadIdx.x; q < c4; q += blockDim.x) {
            Four v = x[r * c4 + q];
            const Four mu = mean[q], s = inv_std[q], g = gamma[q], b = beta[q];
            for (int k = 0; k < 4; ++k) v.v[k] = g.v[k] * xhat(v.v[k], mu.v[k], s.v[k]) + b.v[k];
            y[r * c4 + q] = v;
        }
}

extern "C" __global__ void bn_grad_x_vec(const Four* __restrict__ dy, const Four* __restrict__ x,
                                         const Four* __restrict__ mean, const Four* __restrict__ inv_std,
                                         const Four* __restrict__ coef, Four* __restrict__ dx,
                                         long long n, long long c4) {
    for (long long r = blockIdx.x; r < n; r += gridDim.x)
        for (long long q = threadIdx.x; q < c4; q += blockDim.x) {
            Four g = dy[r * c4 + q];
            const Four h = x[r * c4 + q], mu = mean[q], s = inv_std[q];
            const Four k1 = coef[q], k2 = coef[c4 + q], k3 = coef[2 * c4 + q];
            for (int k = 0; k < 4; ++k)
                g.v[k] = k1.v[k] * g.v[k] - k2.v[k] - xhat(h.v[k], mu.v[k], s.v[k]) * k3.v[k];
            dx[r * c4 + q] = g;
        }
}

extern "C" __global__ void bn_grad_x(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ mean,
                                     const T* __restrict__ inv_std, const T* __restrict__ coef, T* __restrict__ dx,
                                     long long n, long long c) {
    const long long step = blockDim.x;  // four columns per trip, as bn_normalize
    for (long long r = blockIdx.x; r < n; r += gridDim.x)
        for (long long j0 = threadIdx.x; j0 < c; j0 += 4 * step) {
            T g[4], h[4];
            for (int k = 0; k < 4; ++k) {
                const bool inside = j0 + k * step < c;
                g[k] = inside ? dy[r * c + j0 + k * step] : (T)0;
                h[k] = inside ? x[r * c + j0 + k * step] : (T)0;
            }
            for (int k = 0; k < 4; ++k) {
                const long long j = j0 + k * step;
                if (j < c) dx[r * c + j] = coef[j] * g[k] - coef[c + j] - xhat(h[k], mean[j], inv_std[j]) * coef[2 * c + j];
            }
        }
}
"""


def _row_kernel(name, n, c, *arrays):
    """Launch the row-blocked ``name`` over (n, c): its ``_vec`` form, four columns per access,
    where c and the arrays allow it (in_fours), else the one-column-at-a-time kernel."""
    if in_fours(*arrays, size=c):
        kernel(SOURCE, arrays[0].dtype, f"{name}_vec")(*row_launch(n, c // 4), (*arrays, n, c // 4))
    else:
        kernel(SOURCE, arrays[0].dtype, name)(*row_launch(n, c), (*arrays, n, c))


def _writable(a, dtype):
    """True if a kernel may write ``a`` in place: a C-contiguous CuPy array of ``dtype``."""
    return isinstance(a, cupy.ndarray) and a.flags.c_contiguous and a.dtype == dtype


def forward(layer, x):
    """BatchNorm's training forward for a CuPy x (N, C); updates the running statistics in place.

    The layer has checked x (2-D, C features, N >= 2, its dtype and backend). Returns
    ``(y, mean, inv_std)``; :func:`backward` computes xhat again from x and these (this path
    is used only with gradient="simplified").
    """
    (x,) = contiguous(x)
    n, c = x.shape
    dtype = x.dtype
    mean, inv_std = cupy.empty(c, dtype), cupy.empty(c, dtype)
    rm, rv = layer.running_mean, layer.running_var
    in_place = _writable(rm, dtype) and _writable(rv, dtype)
    if not in_place:  # unusual buffers (another dtype, a view): update copies, then assign back
        rm, rv = cupy.array(rm, dtype=dtype), cupy.array(rv, dtype=dtype)
    m = layer.momentum
    grid, block, rows = column_chunks(n, c)
    chunks = grid[1]
    partial = partial_sums(chunks, 2, c)
    constants = (scalar(dtype, layer.eps), scalar(dtype, 1 - m), scalar(dtype, m), scalar(dtype, m * n / (n - 1)))
    kernel(SOURCE, dtype, "bn_stats")(grid, block, (x, n, c, rows) + constants + (mean, inv_std, rm, rv, partial))
    if chunks > 1:
        kernel(SOURCE, dtype, "bn_stats_merge")(
            flat_grid(c), (256,), (partial, chunks, n, c, rows) + constants + (mean, inv_std, rm, rv)
        )
    if not in_place:
        layer.running_mean[...] = rm
        layer.running_var[...] = rv
    gamma, beta = contiguous(layer.gamma.data, layer.beta.data)
    y = cupy.empty_like(x)
    _row_kernel("bn_normalize", n, c, x, mean, inv_std, gamma, beta, y)
    return y, mean, inv_std


def backward(layer, dy, x, mean, inv_std):
    """The simplified backward with batch statistics, from x and what :func:`forward` returned:
    adds into gamma.grad, beta.grad; returns dx."""
    (dy,) = contiguous(dy.astype(x.dtype, copy=False))
    n, c = dy.shape
    dtype = dy.dtype
    gamma = contiguous(layer.gamma.data)[0]
    gamma_grad, beta_grad = layer.gamma.grad, layer.beta.grad
    gg, bg = gamma_grad, beta_grad
    in_place = _writable(gg, dtype) and _writable(bg, dtype) and gg.shape == bg.shape == (c,)
    if not in_place:  # sums into fresh arrays, then added the way the plain code does
        gg, bg = cupy.empty(c, dtype), cupy.empty(c, dtype)
    flags = (np.int32(not in_place), np.int32(not in_place))  # 1: write the sums, 0: add them
    coef = cupy.empty(3 * c, dtype)
    grid, block, rows = column_chunks(n, c)
    chunks = grid[1]
    partial = partial_sums(chunks, 2, c)
    kernel(SOURCE, dtype, "bn_grad_sums")(grid, block, (dy, x, mean, gamma, inv_std, n, c, rows, gg, bg) + flags + (coef, partial))
    if chunks > 1:
        kernel(SOURCE, dtype, "bn_grad_merge")(
            flat_grid(c), (256,), (partial, chunks, n, c, gamma, inv_std, gg, bg) + flags + (coef,)
        )
    if not in_place:
        gamma_grad += gg
        beta_grad += bg
    dx = cupy.empty_like(dy)
    _row_kernel("bn_grad_x", n, c, dy, x, mean, inv_std, coef, dx)
    return dx


batchnorm_forward, batchnorm_backward = forward, backward  # the names implementations.py calls
