"""Checking that CuPy and a GPU are there, and saying what to install when they are not.

Loaded only when the "cupy" backend is asked for (:func:`tinynet.to_device`, ``model.to``).
"""

from .backend import BackendUnavailableError

INSTALL_HINT = (
    "pip install 'tinynet[cuda12]' for a CUDA 12 driver or 'tinynet[cuda13]' for a CUDA 13 driver; "
    "from a clone of the repository, pip install -e '.[cuda12]' or -e '.[cuda13]' in its folder "
    "(or pip install cupy-cuda12x / cupy-cuda13x directly); nvidia-smi shows the CUDA version your driver supports"
)


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
