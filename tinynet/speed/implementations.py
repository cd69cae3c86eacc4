"""The fused implementations tinynet ships, registered per exact class and backend.

Each one does the arithmetic of the plain code it replaces (tests/test_kernels.py and
tests/test_cpu_kernels.py hold them to it) and falls back to that plain code for whatever its
kernel does not cover. The kernels themselves live beside this file: ``cpu_ops`` (C, for
NumPy arrays) and ``activations``, ``batchnorm``, ``linear``, ``softmax_ce``, ``dropout``,
``optim`` (CUDA, for CuPy arrays), imported only when first used.

=========================  ========  ============================================
class                      backend   what runs instead
=========================  ========  ============================================
ReLU                       both      one kernel each way
BatchNorm                  both      statistics, running averages and y in one or
                                     two kernels; the simplified backward in two
                                     (training mode, gradient="simplified" only)
Linear                     cupy      tinynet's cuBLAS call (graph-capturable)
Dropout                    cupy      the mask drawn on the GPU
SoftmaxCrossEntropy        both      loss and probabilities in one kernel
SGD                        numpy     the update in one pass per parameter
SGD                        cupy      one kernel for all parameters
Adam                       numpy     the update in one pass per parameter
NonFiniteGuard (fit's)     both      the NaN/Inf check of every gradient in one
                                     pass (C) or one kernel (CUDA)
=========================  ========  ============================================
"""

import importlib
import math

import numpy as np

from ..layer import check_grad, check_input
from ..layers import BatchNorm, Dropout, Linear, ReLU
from ..losses import SoftmaxCrossEntropy
from ..nonfinite import NonFiniteGuard
from ..optim import SGD, Adam
from . import cpu
from .registry import Fused, capturing, register


def _module(name):
    return importlib.import_module(f"{__package__}.{name}")


def _numpy_floats(*arrays):
    """Arrays the C kernels take: float32 or float64 NumPy arrays (made contiguous by :func:`_contiguous`)."""
    return all(type(a) is np.ndarray and a.dtype.char in "fd" for a in arrays)


def _cupy_floats(*arrays):
    return all(type(a).__module__.startswith("cupy") and a.dtype.char in "fd" for a in arrays)


def _contiguous(a):
    """A NumPy array as the C kernels read it, C-contiguous (a copy only when it is not); CuPy arrays
    as they are (the CUDA functions make their own contiguous)."""
    return np.ascontiguousarray(a) if type(a) is np.ndarray else a


class _OnNumpy(Fused):
    fits = staticmethod(_numpy_floats)

    def usable(self):
        return cpu.library() is not None

    @staticmethod
    def ops(name):
        return _module("cpu_ops")


class _OnCupy(Fused):
    fits = staticmethod(_cupy_floats)

    @staticmethod
    def ops(name):
        return _module(name)


def _plain_backward(fused, dy):
    """The plain backward, after a fused forward too (its save handed over in the plain layout)."""
    fused.hand_over()
    return fused.plain.backward(fused.layer, dy)


# -- ReLU ------------------------------------------------------------------------------------
class _ReLU:
    def forward(self, x):
        if not self.fits(x):
            return self.plain.forward(self.layer, x)
        check_input(self.layer, x)
        y = self.ops("activations").relu_forward(_contiguous(x))
        self.layer.save_for_backward(self, y)
        return y

    def backward(self, dy):
        if not self.owns_pending() or not self.fits(dy):
            return _plain_backward(self, dy)
        _, y = self.layer.saved()
        check_grad(self.layer, dy, y.shape)
        return self.ops("activations").relu_backward(y, _contiguous(dy))


@register(ReLU, "numpy")
class CpuReLU(_ReLU, _OnNumpy):
    pass


@register(ReLU, "cupy")
class CupyReLU(_ReLU, _OnCupy):
    pass


# -- BatchNorm ---------------------------------------------------------------------------------
class _BatchNorm:
    def forward(self, x):
        layer = self.layer
        covered = layer.training and layer.gradient == "simplified" and layer.momentum is not None
        if not (covered and self.fits(x) and x.ndim == 2 and x.dtype == layer.gamma.data.dtype and len(x) >= 2):
            return self.plain.forward(layer, x)
        check_input(layer, x, ndim=2, features=layer.num_features, like=layer.gamma.data)
        x = _contiguous(x)
        y, mean, inv_std = self.ops("batchnorm").batchnorm_forward(layer, x)
        layer.num_batches_tracked += 1
        layer.save_for_backward(self, x, mean, inv_std)  # x, not xhat: the kernels recompute it
        return y

    def backward(self, dy):
        saved = self.layer.__dict__.get("_saved")
        # another dtype of dy: the plain code's dx has the promoted dtype, the kernel's x's
        if not self.owns_pending() or not (self.fits(dy) and dy.dtype == saved[1].dtype):
            return _plain_backward(self, dy)
        _, x, mean, inv_std = self.layer.saved()
        check_grad(self.layer, dy, x.shape)
        return self.ops("batchnorm").batchnorm_backward(self.layer, dy, x, mean, inv_std)

    def plain_saved(self, saved):
        x, mean, inv_std = saved
        xc = x - mean
        return True, xc * inv_std, inv_std, xc  # as BatchNorm.forward saves them in training mode


@register(BatchNorm, "numpy")
class CpuBatchNorm(_BatchNorm, _OnNumpy):
    pass


@register(BatchNorm, "cupy")
class CupyBatchNorm(_BatchNorm, _OnCupy):
    pass


# -- Linear and Dropout (GPU only: on NumPy the plain code is already one BLAS call) -----------
@register(Linear, "cupy")
class CupyLinear(_OnCupy):
    def forward(self, x):
        layer = self.layer
        if not self.fits(x):
            return self.plain.forward(layer, x)
        check_input(layer, x, ndim=2, features=layer.in_features, like=layer.weight.data)
        layer.save_for_backward(self, x)
        return self.ops("linear").forward(layer, x)

    def backward(self, dy):
        if not self.owns_pending() or not self.fits(dy):
            return _plain_backward(self, dy)
        _, x = self.layer.saved()
        check_grad(self.layer, dy, (x.shape[0], self.layer.out_features))
        return self.ops("linear").backward(self.layer, x, dy)


@register(Dropout, "cupy")
class CupyDropout(_OnCupy):
    methods = ("forward",)  # the backward multiplies by the saved mask, as the plain one

    def forward(self, x):
        layer = self.layer
        if not layer.training or layer.p == 0 or not self.fits(x):
            return self.plain.forward(layer, x)
        check_input(layer, x)
        keep = self.ops("dropout").keep_mask(layer, x)  # drawn on the GPU, seeded from layer.rng
        mask = keep.astype(x.dtype) / x.dtype.type(1 - layer.p)
        layer.save_for_backward(mask, x.shape)
        return x * mask


# -- the loss ----------------------------------------------------------------------------------
class _SoftmaxCrossEntropy:
    def forward(self, logits, labels):
        loss = self.layer
        if not self.fits(logits):
            return self.plain.forward(loss, logits, labels)
        check_input(loss, logits, ndim=2)
        if not capturing():  # a CUDA graph cannot read the labels back; its kernel makes the loss NaN instead
            loss._check_labels(logits, labels)
        logits = _contiguous(logits)
        return self.ops("softmax_ce").softmax_cross_entropy(loss, logits, labels)  # saves (probs, labels)

    def backward(self, dloss=1.0):
        saved = self.layer.__dict__.get("_saved")
        if saved is None or not isinstance(dloss, (int, float)) or not self.fits(saved[0]):
            return self.plain.backward(self.layer, dloss)
        probs, labels = self.layer.__dict__.pop("_saved")
        return self.ops("softmax_ce").softmax_cross_entropy_backward(probs, labels, dloss)


@register(SoftmaxCrossEntropy, "numpy")
class CpuSoftmaxCrossEntropy(_SoftmaxCrossEntropy, _OnNumpy):
    pass


@register(SoftmaxCrossEntropy, "cupy")
class CupySoftmaxCrossEntropy(_SoftmaxCrossEntropy, _OnCupy):
    pass


# -- optimizers ----------------------------------------------------------------------------------
@register(SGD, "numpy")
class CpuSGD(_OnNumpy):
    methods = ("update",)

    def update(self, data, grad, state):
        if not self.fits(data, grad) or self.ops("optim").sgd_update(self.layer, data, grad, state) is NotImplemented:
            self.plain.update(self.layer, data, grad, state)  # arrays the kernel cannot take


@register(Adam, "numpy")
class CpuAdam(_OnNumpy):
    methods = ("update",)

    def update(self, data, grad, state):
        opt = self.layer
        if "m" not in state or not self.fits(data, grad):  # the first step makes the moments as the plain rule does
            return self.plain.update(opt, data, grad, state)
        b1, b2 = opt.betas
        step_size, root_correction = opt.lr / (1 - b1**opt.t), math.sqrt(1 - b2**opt.t)
        if self.ops("optim").adam_update(opt, data, grad, state, step_size, root_correction) is NotImplemented:
            self.plain.update(opt, data, grad, state)


@register(SGD, "cupy")
class CupySGD(_OnCupy):
    methods = ("step",)

    def step(self):
        if self.ops("optim").sgd_step(self.layer) is NotImplemented:  # one kernel for all parameters
            self.plain.step(self.layer)


# -- fit's NaN guard -------------------------------------------------------------------------------
class _NonFiniteGuard:
    methods = ("check",)

    def check(self, loss_value, xb, yb):
        guard = self.layer
        answer = self.ops("optim").all_finite(loss_value, guard.params)  # one pass over every gradient
        if answer is NotImplemented or not answer:  # the plain check decides, and names what went wrong
            self.plain.check(guard, loss_value, xb, yb)


@register(NonFiniteGuard, "numpy")
class CpuNonFiniteGuard(_NonFiniteGuard, _OnNumpy):
    pass


@register(NonFiniteGuard, "cupy")
class CupyNonFiniteGuard(_NonFiniteGuard, _OnCupy):
    pass
