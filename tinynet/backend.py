"""Where arrays live: NumPy on the CPU, CuPy on a GPU.

Layer code never branches on the backend. It asks ``xp = get_array_module(x)``
and uses the NumPy API, which CuPy mirrors. Nothing here is global state that
layers read: the backend of a computation is the backend of its input arrays.
"""

import os

import numpy as np

BACKENDS = ("numpy", "cupy")
INSTALL_HINT = (
    "pip install 'tinynet[cuda12]' for a CUDA 12 driver or 'tinynet[cuda13]' for a CUDA 13 driver "
    "(nvidia-smi shows the CUDA version your driver supports)"
)


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


def require_cupy():
    """Import CuPy and check that a GPU is usable, or raise saying which is missing and what to do.

    Raises
    ------
    BackendUnavailableError
        CuPy is not installed, or fails to import, or sees no usable GPU (no driver, a
        driver older than CuPy's CUDA, no device).
    """
    try:
        import cupy
    except ModuleNotFoundError as exc:
        if exc.name != "cupy":
            raise BackendUnavailableError(
                f"backend 'cupy' asked for, but CuPy failed to import ({exc}); reinstall it: {INSTALL_HINT}"
            ) from None
        raise BackendUnavailableError(f"backend 'cupy' asked for, but CuPy is not installed: {INSTALL_HINT}") from None
    except Exception as exc:  # a CUDA library that fails to load
        raise BackendUnavailableError(
            f"backend 'cupy' asked for, but CuPy is installed and failed to import ({type(exc).__name__}: {exc}); "
            f"install the build that matches your driver: {INSTALL_HINT}"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or one older than CuPy's CUDA
        raise BackendUnavailableError(
            f"backend 'cupy' asked for: CuPy {cupy.__version__} is installed, but no usable GPU was found ({exc}). "
            "This needs an NVIDIA GPU and its driver; if the driver is older than CuPy's CUDA "
            f"(cudaErrorInsufficientDriver), {INSTALL_HINT}"
        ) from None
    if count == 0:
        raise BackendUnavailableError(
            f"backend 'cupy' asked for: CuPy {cupy.__version__} is installed, but the driver reports 0 GPUs "
            "(check nvidia-smi and CUDA_VISIBLE_DEVICES)"
        )
    return cupy


def cupy_available():
    """True when CuPy imports and sees at least one GPU."""
    try:
        require_cupy()
    except BackendUnavailableError:
        return False
    return True


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
    return require_cupy().asarray(a)
