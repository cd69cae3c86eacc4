"""Softmax cross-entropy: the loss in one kernel, its gradient in one kernel.

The plain code (``tinynet/losses.py``) takes about a dozen launches forward: row max, shift,
exp, row sum, log, a gather of the label entries, a mean, the division for the
probabilities. Here one block does all of it: each thread takes whole rows (MNIST has 10
classes, so a row is a short loop), and the block sums the row losses in double and writes
their mean. Backward turns the saved probabilities into (p - onehot) * dloss / N in place.
"""

import cupy
import numpy as np

from ._cuda import contiguous, kernel, row_launch, scalar

THREADS = 1024  # one block; a power of two for the tree sum

SOURCE = r"""
// __launch_bounds__: a block of 1024 threads may use at most 64 registers each
extern "C" __global__ void __launch_bounds__(1024) softmax_ce_forward(const T* logits, const long long* labels,
                                              long long n, long long c, T* probs, T* loss) {
    __shared__ double part[1024];
    double acc = 0;
    for (long long r = threadIdx.x; r < n; r += blockDim.x) {
        const T* z = logits + r * c;
        T* p = probs + r * c;
        T m = z[0];
        for (long long j = 1; j < c; ++j) m = z[j] > m ? z[j] : m;
        T s = 0;  // every shifted logit is <= 0: exp never overflows, and s >= 1
        for (long long j = 0; j < c; ++j) {
            const T e = exp(z[j] - m);
            p[j] = e;
            s += e;
        }
        for (long long j = 0; j < c; ++j) p[j] = p[j] / s;
        const long long label = labels[r];
        // a label out of range (only possible inside a captured graph, where the host check
        // cannot run) makes the loss NaN instead of reading out of bounds
        acc += (label >= 0 && label < c) ? (double)(log(s) - (z[label] - m)) : nan("");
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) *loss = (T)(part[0] / (double)n);
}

// probs -> (probs - onehot(labels)) * scale, in place; scale = dloss / n.
extern "C" __global__ void softmax_ce_backward(T* probs, const long long* labels,
                                               long long n, long long c, T scale) {
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        const long long label = labels[r];
        for (long long j = threadIdx.x; j < c; j += blockDim.x) {
            const long long i = r * c + j;
            const T g = j == label ? probs[i] - (T)1 : probs[i];
            probs[i] = g * scale;
        }
    }
}
"""


def forward(loss, logits, labels):
    """Mean cross-entropy of CuPy logits (N, C) against labels (N,); saves the probabilities.

    The loss object has checked shapes, dtypes and label range. Returns a 0-d array.
    """
    (logits,) = contiguous(logits)
    labels = contiguous(labels.astype(np.int64, copy=False))[0]
    n, c = logits.shape
    probs = cupy.empty_like(logits)
    value = cupy.empty((), logits.dtype)
    kernel(SOURCE, logits.dtype, "softmax_ce_forward")((1,), (THREADS,), (logits, labels, n, c, probs, value))
    loss._saved = (probs, labels)
    return value


def backward(probs, labels, dloss):
    """dL/dlogits = (probs - onehot) * dloss / N, computed in place in ``probs``, which is returned.

    ``dloss`` must be a Python or NumPy number here (the plain code also takes arrays).
    """
    n, c = probs.shape
    grid, block = row_launch(n, c)
    labels = contiguous(labels.astype(np.int64, copy=False))[0]
    kernel(SOURCE, probs.dtype, "softmax_ce_backward")(grid, block, (probs, labels, n, c, scalar(probs.dtype, dloss / n)))
    return probs
