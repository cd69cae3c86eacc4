"""Fused kernels, living beside the plain code: CuPy kernels for the GPU, C kernels for the CPU.

The plain NumPy-API code in ``tinynet/layers`` is the reference: it is what NumPy runs and
what a student reads. On a GPU that code is correct but launch-bound — every ``+``, ``*`` or
``.sum()`` is one CUDA kernel, each costing ~10-20 µs of launch overhead — so the hot ops
have fused versions here that do the same arithmetic in one or two kernels:

=========================  =====================================  ==========================
name                       plain code (reference)                 fused version
=========================  =====================================  ==========================
relu_forward / _backward   ``ReLU.forward`` / ``.backward``       activations.py, 1 kernel each
batchnorm_forward          ``BatchNorm.forward`` (training)       batchnorm.py, 2 kernels (3 tall)
batchnorm_backward         ``BatchNorm.backward`` (simplified)    batchnorm.py, 2 kernels (3 tall)
linear_forward / _backward ``Linear.forward`` / ``.backward``     linear.py, cuBLAS via blas.py
softmax_cross_entropy(*)   ``SoftmaxCrossEntropy``                softmax_ce.py, 1 kernel each
sgd_step                   ``SGD.step``                           optim.py, 1 kernel for all
all_finite                 fit's per-step NaN/Inf check           optim.py, 1 kernel for all
dropout_keep               ``Dropout.forward``'s mask             dropout.py, drawn on device
=========================  =====================================  ==========================

A tall batch (more than 1024 rows) gets its column sums in chunks of rows and one more
kernel to merge them, to fill the GPU (see ``_cuda.column_chunks``).

Selection happens in one place, :func:`fused`: a layer asks ``kernels.fused(name, x)`` and
gets the fused function when ``x`` is a float32/float64 CuPy array and fused kernels are on,
else ``None`` and it runs its plain code. Each fused function is tested equal to the plain
path in ``tests/test_kernels.py``. ``use_fused(False)`` switches them off (for comparisons).

Nothing here imports CuPy until a CuPy array arrives, so NumPy-only installs never touch it.

On NumPy arrays the same question gets the C kernels of :mod:`tinynet.kernels.cpu` (ReLU,
BatchNorm, the softmax cross-entropy, ``all_finite``, and ``sgd_update`` / ``adam_update``: an
optimizer's rule over one array), compiled on first use with the system's C compiler; without
one, ``fused`` answers None and the plain code runs. ``use_fused(False)`` switches these off too.
"""

import contextlib
import importlib
import threading

import numpy as np

from ..backend import backend_name
from .cpu import library as cpu_library
from .cpu import status as _cpu_status

__all__ = ["fused", "function", "use_fused", "fused_enabled", "capturing", "cpu_status", "NAMES"]

# name -> (module in this package, function): the one table of what is fused
_TABLE = {
    "relu_forward": ("activations", "relu_forward"),
    "relu_backward": ("activations", "relu_backward"),
    "batchnorm_forward": ("batchnorm", "forward"),
    "batchnorm_backward": ("batchnorm", "backward"),
    "linear_forward": ("linear", "forward"),
    "linear_backward": ("linear", "backward"),
    "softmax_cross_entropy": ("softmax_ce", "forward"),
    "softmax_cross_entropy_backward": ("softmax_ce", "backward"),
    "sgd_step": ("optim", "sgd_step"),
    "all_finite": ("optim", "all_finite"),
    "dropout_keep": ("dropout", "keep_mask"),
}
# the C kernels for NumPy arrays: functions of these names in cpu_ops
_CPU_NAMES = ("relu_forward", "relu_backward", "batchnorm_forward", "batchnorm_backward", "softmax_cross_entropy",
              "softmax_cross_entropy_backward", "sgd_update", "adam_update", "all_finite")
NAMES = tuple(_TABLE) + tuple(n for n in _CPU_NAMES if n not in _TABLE)
_FLOAT_CHARS = ("f", "d")  # float32, float64 (dtype.char: dtype.name costs a microsecond)


class _State(threading.local):
    enabled = True
    capture_depth = 0  # > 0 while tinynet.cuda_graph records a training step


_state = _State()
_resolved = {}


def fused(name, array):
    """Return the fused function for ``name`` if there is one for ``array``, else None.

    CuPy float arrays get the CuPy kernels; C-contiguous float NumPy arrays get the C kernels
    where :mod:`tinynet.kernels.cpu` could build them.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.
    array : ndarray
        The array the caller is about to compute on (its backend decides).

    Returns
    -------
    callable or None
        None for other arrays (non-float dtypes, non-contiguous NumPy arrays, no C compiler),
        names with no kernel on that backend, or while ``use_fused(False)`` is active.
    """
    if name not in NAMES:
        raise ValueError(f"kernels.fused: unknown kernel {name!r}; expected one of {NAMES}")
    if not _state.enabled or array.dtype.char not in _FLOAT_CHARS:
        return None
    if type(array) is np.ndarray or isinstance(array, np.generic):  # NumPy (a loss is a NumPy scalar)
        if name not in _CPU_NAMES or not array.flags.c_contiguous or cpu_library() is None:
            return None
        return function(name, array)
    if backend_name(array) != "cupy" or name not in _TABLE:
        return None
    return function(name)


def function(name, like=None):
    """The fused function ``name`` for ``like``'s backend (CuPy when None), whatever ``use_fused``
    says now: for a backward whose forward ran fused and saved what only the fused backward
    reads (BatchNorm's x and mean)."""
    cpu = type(like) is np.ndarray or isinstance(like, np.generic)
    found = _resolved.get((name, cpu))
    if found is None:
        if name not in (_CPU_NAMES if cpu else _TABLE):
            raise ValueError(f"kernels.function: unknown kernel {name!r}; expected one of {NAMES}")
        module, attr = ("cpu_ops", name) if cpu else _TABLE[name]
        found = _resolved[name, cpu] = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    return found


def cpu_status():
    """A line saying whether the C kernels for NumPy arrays are in use, and if not, why."""
    return _cpu_status()


def fused_enabled():
    """True unless a ``use_fused(False)`` block is active in this thread."""
    return _state.enabled


@contextlib.contextmanager
def use_fused(enabled=True):
    """Within the block, fused kernels are on (default) or off, in this thread only.

    ``with use_fused(False):`` runs the plain code on CuPy arrays too: the reference that
    the fused kernels are tested against, and the "straightforward CuPy" of the benchmarks.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"use_fused: expected True or False, got {enabled!r}")
    previous, _state.enabled = _state.enabled, enabled
    try:
        yield
    finally:
        _state.enabled = previous


def capturing():
    """True while a training step is being recorded as a CUDA graph (see tinynet.cuda_graph).

    Code that would read a value back to the host (a sync) or copy from the host must not
    run then: the recording would not contain it, or would fail.
    """
    return _state.capture_depth > 0


@contextlib.contextmanager
def _capture_scope():
    """Mark this thread as recording a CUDA graph (used by tinynet.cuda_graph only)."""
    _state.capture_depth += 1
    try:
        yield
    finally:
        _state.capture_depth -= 1
