"""Where arrays live: NumPy on the CPU, CuPy on a GPU.

Layer code never branches on the backend. It asks ``xp = get_array_module(x)``
and uses the NumPy API, which CuPy mirrors. Nothing here is global state that
layers read: the backend of a computation is the backend of its input arrays.
"""

import numpy as np

BACKENDS = ("numpy", "cupy")


def _cupy_or_none():
    try:
        import cupy
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    return cupy


def get_array_module(*arrays):
    """Return ``numpy`` or ``cupy``: the module that owns the given arrays.

    Parameters
    ----------
    *arrays : array-like
        Any arrays; non-array values (floats, None) are ignored.

    Returns
    -------
    module
        ``cupy`` if any argument is a CuPy array, else ``numpy``.
    """
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy

            return cupy
    return np


def backend_name(a):
    """``"cupy"`` for a CuPy array, ``"numpy"`` for anything else."""
    return "cupy" if type(a).__module__.startswith("cupy") else "numpy"


def to_numpy(a):
    """Return a host NumPy array (a copy for CuPy arrays, ``a`` itself for NumPy)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def require_cupy():
    """Import CuPy and check that a GPU is present, or explain how to get both."""
    cupy = _cupy_or_none()
    if cupy is None:
        raise RuntimeError(
            "backend 'cupy' asked for, but CuPy is not installed. Install the extra that "
            "matches your CUDA: pip install 'tinynet[cuda12]' or 'tinynet[cuda13]'."
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # the driver or runtime is missing
        raise RuntimeError(f"backend 'cupy' asked for, but no usable GPU was found: {exc}") from None
    if count == 0:
        raise RuntimeError("backend 'cupy' asked for, but no GPU was found (0 CUDA devices).")
    return cupy


def cupy_available():
    """True when CuPy imports and sees at least one GPU."""
    try:
        require_cupy()
    except RuntimeError:
        return False
    return True


def to_device(a, backend):
    """Return ``a`` on ``backend`` ("numpy" or "cupy"); no copy when already there."""
    if backend == "numpy":
        return to_numpy(a)
    if backend == "cupy":
        cupy = require_cupy()
        return cupy.asarray(a)
    raise ValueError(f"to_device: expected backend 'numpy' or 'cupy', got {backend!r}")
