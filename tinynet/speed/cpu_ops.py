"""The Python side of the CPU kernels (:mod:`.cpu`): each function takes what the plain code
takes, calls one C kernel, and returns what the plain code computes.

:mod:`.implementations` calls these for float32/float64 NumPy arrays (made C-contiguous),
and only when the kernels were built.
"""

import ctypes

import numpy as np

from .cpu import library


def _ptr(a):
    """The address of ``a``'s data for a ctypes call (0.3 us; ``a.ctypes.data`` costs 1 us).

    Only an address: the caller must hold ``a`` (a named variable) until the call returns.
    """
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError):  # read-only or empty
        return a.ctypes.data


def _kernel(name, dtype):
    return library()[name, dtype.char]


def _fits(a, dtype, shape):
    """True if a kernel may read ``a`` as a C-contiguous NumPy array of ``dtype`` and ``shape``."""
    return type(a) is np.ndarray and a.flags.c_contiguous and a.dtype == dtype and a.shape == shape


def _own(a, dtype, shape):
    """True if a kernel may also write ``a`` in place."""
    return _fits(a, dtype, shape) and a.flags.writeable


def relu_forward(x):
    y = np.empty_like(x)
    _kernel("relu_forward", x.dtype)(_ptr(x), _ptr(y), x.size)
    return y


def relu_backward(y, dy):
    y = np.ascontiguousarray(y, dtype=dy.dtype)  # the plain dy * (y > 0) has dy's dtype
    dx = np.empty_like(dy)
    _kernel("relu_backward", dy.dtype)(_ptr(y), _ptr(dy), _ptr(dx), dy.size)
    return dx


def batchnorm_forward(layer, x):
    """BatchNorm's training forward of x (N, C); running statistics updated in place. Returns
    ``(y, mean, inv_std)``: :func:`batchnorm_backward` recomputes xhat from x and these."""
    n, c = x.shape
    dtype = x.dtype
    stats, y = np.empty(2 * c, dtype), np.empty_like(x)  # stats: mean, then inv_std
    rm, rv = layer.running_mean, layer.running_var
    in_place = _own(rm, dtype, (c,)) and _own(rv, dtype, (c,))
    if not in_place:  # unusual buffers (another dtype, a view): update copies, then assign back
        rm, rv = np.array(rm, dtype=dtype), np.array(rv, dtype=dtype)
    gamma = np.ascontiguousarray(layer.gamma.data, dtype=dtype)
    beta = np.ascontiguousarray(layer.beta.data, dtype=dtype)
    m = layer.momentum
    _check(_kernel("bn_forward", dtype)(_ptr(x), n, c, _ptr(gamma), _ptr(beta), layer.eps, 1 - m, m, m * n / (n - 1),
                                        _ptr(stats), _ptr(rm), _ptr(rv), _ptr(y)))
    if not in_place:
        layer.running_mean[...] = rm
        layer.running_var[...] = rv
    return y, stats[:c], stats[c:]


def batchnorm_backward(layer, dy, x, mean, inv_std):
    """The simplified backward with batch statistics: adds dgamma and dbeta into the gradients;
    returns dx."""
    dtype = x.dtype
    dy = np.ascontiguousarray(dy, dtype=dtype)
    n, c = dy.shape
    gamma = np.ascontiguousarray(layer.gamma.data, dtype=dtype)
    gamma_grad, beta_grad = layer.gamma.grad, layer.beta.grad
    in_place = _own(gamma_grad, dtype, (c,)) and _own(beta_grad, dtype, (c,))
    gg, bg = (gamma_grad, beta_grad) if in_place else (np.empty(c, dtype), np.empty(c, dtype))
    dx = np.empty_like(dy)
    write = int(not in_place)  # the kernel adds into the gradients, or writes the sums into gg, bg
    _check(_kernel("bn_backward", dtype)(_ptr(dy), _ptr(x), n, c, _ptr(mean), _ptr(inv_std), _ptr(gamma), _ptr(gg),
                                         _ptr(bg), write, write, _ptr(dx)))
    if not in_place:
        gamma_grad += gg
        beta_grad += bg
    return dx


def _check(status):
    if status != 0:
        raise MemoryError("BatchNorm: the C kernel could not allocate its per-column scratch")


def softmax_cross_entropy(loss, logits, labels):
    """Mean cross-entropy of logits (N, C) against checked labels (N,); saves the probabilities."""
    n, c = logits.shape
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    probs = np.empty_like(logits)
    value = _kernel("softmax_ce_forward", logits.dtype)(_ptr(logits), _ptr(labels), n, c, _ptr(probs))
    loss._saved = (probs, labels)  # as the plain forward saves them
    return logits.dtype.type(value)


def softmax_cross_entropy_backward(probs, labels, dloss):
    """(probs - onehot) * dloss / N, in place in ``probs`` (ours alone), which is returned."""
    n, c = probs.shape
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    _kernel("softmax_ce_backward", probs.dtype)(_ptr(probs), _ptr(labels), n, c, dloss / n)
    return probs


def sgd_update(opt, data, grad, state):
    """SGD's rule over ``data`` in one pass; NotImplemented (nothing changed) where the kernel
    cannot take the arrays, or on the first momentum step, which the plain code does (b = g)."""
    buf = state.get("momentum_buffer")
    if opt.momentum and buf is None:
        return NotImplemented
    buf = data if buf is None else buf  # not read without momentum
    if not (_own(data, data.dtype, data.shape) and _own(buf, data.dtype, data.shape)
            and _fits(grad, data.dtype, data.shape)):
        return NotImplemented
    _kernel("sgd_update", data.dtype)(_ptr(data), _ptr(grad), _ptr(buf), data.size,
                                      opt.lr, opt.momentum, opt.weight_decay, int(opt.nesterov))
    return None


def adam_update(opt, data, grad, state, step_size, root_correction):
    """Adam's rule over ``data`` in one pass; NotImplemented (nothing changed) where the kernel
    cannot take the arrays."""
    m, v = state["m"], state["v"]
    if not (all(_own(a, data.dtype, data.shape) for a in (data, m, v)) and _fits(grad, data.dtype, data.shape)):
        return NotImplemented
    b1, b2 = opt.betas
    _kernel("adam_update", data.dtype)(_ptr(data), _ptr(grad), _ptr(m), _ptr(v), data.size, b1, 1 - b1, b2, 1 - b2,
                                       step_size, root_correction, opt.eps, opt.weight_decay)
    return None


def all_finite(loss_value, params):
    """True when the loss and every ``p.grad`` are finite: one pass over each gradient.
    NotImplemented for gradients the kernel cannot read (not contiguous, another dtype)."""
    dtype = np.asarray(loss_value).dtype
    grads = [p.grad for p in params]
    if not all(_fits(g, dtype, g.shape) for g in grads):
        return NotImplemented
    if not np.isfinite(loss_value):
        return False
    check = _kernel("any_nonfinite", dtype)
    return not any(check(_ptr(g), g.size) for g in grads)
