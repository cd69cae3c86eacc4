"""SGD's step and fit's NaN/Inf check over every parameter in one launch each ("multi-tensor" kernels).

The plain ``SGD.step`` costs four launches per parameter (buf *= m, buf += g, lr * g,
p -= ...); for the MNIST MLP that is ~30 launches of tiny kernels per step. Here one
kernel walks a flat index over all parameters: tensor t owns [offsets[t], offsets[t+1]), and
tables of device pointers say where each one lives. The tables are built once per set of arrays (a host-to-device copy) and cached; a CUDA
graph capture reuses them and must never build one (see tinynet.cuda_graph).

The kernel is compiled without fused multiply-add, so every rounding happens where the
plain code rounds: the result is the plain step's, bit for bit.
"""

import cupy
import numpy as np

from .registry import capturing
from ._cuda import flat_grid, kernel, scalar

OPTIONS = ("--fmad=false",)

SOURCE = r"""
__device__ __forceinline__ int tensor_of(long long i, const long long* offsets) {
    int t = 0;
    while (i >= offsets[t + 1]) ++t;
    return t;
}

// Per element, PyTorch's rule: g = grad + wd * p; b = m * b + g; g = nesterov ? g + m * b : b;
// p -= lr * g. A zero momentum buffer makes the first step b = g, as the plain code's copy.
// Each thread takes four elements per trip (i, i + stride, ...) and loads all of them before it
// writes any: four times the loads in flight of one element at a time.
extern "C" __global__ void sgd_multi(T* const* params, T* const* grads, T* const* bufs,
                                     const long long* offsets, int count,
                                     T lr, T momentum, T weight_decay, int nesterov) {
    const long long total = offsets[count];
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i0 = (long long)blockIdx.x * blockDim.x + threadIdx.x; i0 < total; i0 += 4 * stride) {
        T* param[4];
        T* buf[4];
        T p[4], g[4], b[4];
        for (int k = 0; k < 4; ++k) {
            const long long i = i0 + k * stride;
            param[k] = 0;
            if (i < total) {
                const int t = tensor_of(i, offsets);
                const long long j = i - offsets[t];
                param[k] = params[t] + j;
                buf[k] = bufs[t] + j;
                p[k] = *param[k];
                g[k] = grads[t][j];
                b[k] = momentum != (T)0 ? *buf[k] : (T)0;
            }
        }
        for (int k = 0; k < 4; ++k) {
            if (param[k] == 0) continue;
            T step = g[k];
            if (weight_decay != (T)0) step = step + weight_decay * p[k];
            if (momentum != (T)0) {
                const T next = b[k] * momentum + step;
                *buf[k] = next;
                step = nesterov ? step + momentum * next : next;
            }
            *param[k] = p[k] - lr * step;
        }
    }
}

// flag = 1 if the loss or any element of any tensor is NaN or Inf (every writer writes 1).
extern "C" __global__ void nonfinite_multi(const T* const* ptrs, const long long* offsets, int count,
                                           const T* loss, int* flag) {
    const long long total = offsets[count];
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (first == 0 && !isfinite(*loss)) *flag = 1;
    for (long long i = first; i < total; i += (long long)gridDim.x * blockDim.x) {
        const int t = tensor_of(i, offsets);
        if (!isfinite(ptrs[t][i - offsets[t]])) *flag = 1;
    }
}
"""

_tables = {}  # (pointers..., sizes) -> device tables; a handful of entries per model


def _table(columns, sizes):
    """Device arrays: one uint64 pointer table per column of arrays, and the int64 offsets."""
    key = (tuple(tuple(a.data.ptr for a in column) for column in columns), tuple(sizes))
    tables = _tables.get(key)
    if tables is None:
        if capturing():
            raise RuntimeError(
                "fused SGD: a new set of parameter arrays appeared while a CUDA graph was being "
                "captured; run one eager step first (tinynet.cuda_graph does)"
            )
        if len(_tables) >= 16:  # old models' tables: drop them (they keep their arrays alive)
            _tables.clear()
        offsets = cupy.asarray(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        pointers = [cupy.asarray(np.array([a.data.ptr for a in column], dtype=np.uint64)) for column in columns]
        # keep the arrays alive with their table: a freed array's address could be reused
        tables = _tables[key] = (pointers, offsets, columns)
    return tables[0], tables[1]


def _usable(a, like):
    """A CuPy array a kernel can read and write as ``like``'s flat storage."""
    return (isinstance(a, cupy.ndarray) and a.flags.c_contiguous and a.dtype == like.dtype
            and a.shape == like.shape)


def _groups(params):
    """Parameters grouped by dtype, or None if any is not a C-contiguous float32/float64 CuPy array."""
    groups = {}
    for p in params:
        if not (isinstance(p.data, cupy.ndarray) and p.data.flags.c_contiguous and p.data.dtype.char in "fd"):
            return None
        groups.setdefault(p.data.dtype, []).append(p)
    return groups


def all_finite(loss_value, params):
    """True when the loss and every ``p.grad`` are finite: one kernel and one read back.

    Returns NotImplemented when some gradient is not one the kernel can read.
    """
    dtype = loss_value.dtype
    if not all(_usable(p.grad, p.data) and p.data.dtype == dtype for p in params) or loss_value.size != 1:
        return NotImplemented
    sizes = [p.data.size for p in params]
    (pointers,), offsets = _table([[p.grad for p in params]], sizes)
    flag = cupy.zeros((), np.int32)
    kernel(SOURCE, dtype, "nonfinite_multi", OPTIONS)(
        flat_grid(sum(sizes)), (256,), (pointers, offsets, np.int32(len(params)), loss_value, flag))
    return not bool(flag)


def sgd_step(opt):
    """One SGD step (momentum, Nesterov, weight decay) over all of ``opt.params``.

    Returns NotImplemented, changing nothing, when some array is not one the kernel can
    take (not contiguous, gradient of another shape or kind): the plain step then runs and
    raises its own clear errors.
    """
    params = opt.params
    groups = _groups(params)
    if groups is None or not all(_usable(p.grad, p.data) for p in params):
        return NotImplemented
    for p, state in zip(params, opt.state):
        buf = state.get("momentum_buffer")
        if buf is not None and not _usable(buf, p.data):
            if type(buf).__module__.startswith("numpy"):
                raise TypeError(
                    f"SGD: the momentum buffer of {p.name} is a numpy array but the parameter is a cupy "
                    "array; call optimizer.to('cupy') after model.to('cupy') (fit does it for you)"
                )
            return NotImplemented
    if opt.momentum:
        for p, state in zip(params, opt.state):
            if state.get("momentum_buffer") is None:  # zero, then b = m * 0 + g = g: the plain first step
                state["momentum_buffer"] = cupy.zeros_like(p.data)
    index = {id(p): i for i, p in enumerate(params)}
    for dtype, group in groups.items():
        sizes = [p.data.size for p in group]
        bufs = [opt.state[index[id(p)]].get("momentum_buffer", p.data) for p in group]  # unused without momentum
        (param_ptrs, grad_ptrs, buf_ptrs), offsets = _table(
            [[p.data for p in group], [p.grad for p in group], bufs], sizes)
        kernel(SOURCE, dtype, "sgd_multi", OPTIONS)(
            flat_grid(-(-sum(sizes) // 4)), (256,),
            (param_ptrs, grad_ptrs, buf_ptrs, offsets, np.int32(len(group)),
             scalar(dtype, opt.lr), scalar(dtype, opt.momentum), scalar(dtype, opt.weight_decay),
             np.int32(bool(opt.nesterov))),
        )
    return None
