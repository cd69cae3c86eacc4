"""Shared fixtures: every test that takes ``xp`` runs once per available array backend."""

import numpy as np
import pytest

from tinynet.backend import cupy_available


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module of the backend under test: numpy, or cupy where a GPU exists."""
    if request.param == "cupy":
        if not cupy_available():
            pytest.skip("cupy backend: CuPy or a GPU is not available here")
        import cupy

        return cupy
    return np


@pytest.fixture
def backend(xp):
    """The backend name matching ``xp``: "numpy" or "cupy"."""
    return "cupy" if xp is not np else "numpy"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
