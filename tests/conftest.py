"""Shared fixtures: every test that takes ``xp`` runs once per available array backend."""

import os

import numpy as np
import pytest
from hypothesis import settings

# CI runs the property tests on a fixed sequence of examples (HYPOTHESIS_PROFILE=ci in .ci/run),
# so a landing never hangs on a rare draw; locally every run explores new ones
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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
