"""Where arrays live: NumPy on the CPU, CuPy on a GPU.

Layer code never branches on the backend. It asks ``xp = get_array_module(x)``
and uses the NumPy API, which CuPy mirrors. Nothing here is global state that
layers read: the backend of a computation is the backend of its input arrays.
"""

import os

import numpy as np

from .lazy import on_first_use

# the CuPy set-up checks live in tinynet/gpu.py, loaded when a GPU is asked for
__getattr__, __dir__ = on_first_use(__name__, dict.fromkeys(("require_cupy", "cupy_available", "INSTALL_HINT"),
                                                            "tinynet.gpu"))

BACKENDS = ("numpy", "cupy")


class BackendUnavailableError(RuntimeError):
    """The cupy backend was asked for, but CuPy or a usable GPU is missing; the message says which."""


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
        if type(a) is np.ndarray:  # the common case, answered without the string test below
            continue
        if type(a).__module__.startswith("cupy"):
            import cupy

            return cupy
    return np


def backend_name(a):
    """``"cupy"`` for a CuPy array, ``"numpy"`` for anything else."""
    if type(a) is np.ndarray:
        return "numpy"
    return "cupy" if type(a).__module__.startswith("cupy") else "numpy"


def to_numpy(a):
    """Return a host NumPy array (a copy for CuPy arrays, ``a`` itself for NumPy)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def check_backend(backend, where):
    """Refuse a backend name other than "numpy" or "cupy", naming ``where`` (e.g. ``"Linear.to"``)."""
    if backend not in BACKENDS:
        raise ValueError(f"{where}: expected backend 'numpy' or 'cupy', got {backend!r}")


def default_backend():
    """The backend named by ``$TINYNET_BACKEND`` ("numpy" when unset or empty), checked."""
    name = os.environ.get("TINYNET_BACKEND", "").strip() or "numpy"
    check_backend(name, "TINYNET_BACKEND")
    return name


def synchronize(a):
    """Wait until the GPU has finished all work queued so far, if ``a`` is a CuPy array.

    GPU work is asynchronous: a wall-clock time read without this measures only how long
    queuing the work took. A no-op for NumPy arrays.
    """
    if type(a).__module__.startswith("cupy"):
        import cupy

        cupy.cuda.runtime.deviceSynchronize()


def to_device(a, backend):
    """Return ``a`` on ``backend`` ("numpy" or "cupy"): a NumPy array for "numpy", a CuPy
    array for "cupy"; no copy when it is already there.

    Raises
    ------
    ValueError
        For another backend name.
    BackendUnavailableError
        For "cupy" without CuPy or a GPU (the message says which, and how to install).
    """
    check_backend(backend, "to_device")
    if backend == "numpy":
        return to_numpy(a)
    if type(a).__module__.startswith("cupy"):
        return a
    from .gpu import require_cupy

    return require_cupy().asarray(a)
