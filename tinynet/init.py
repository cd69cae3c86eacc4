"""Weight initialisers: He, Xavier (Glorot) and a plain Gaussian of a chosen std.

Each takes ``(shape, rng, dtype)`` with ``shape = (fan_in, fan_out)`` and an explicit
``numpy.random.Generator``, and returns a NumPy array.
"""

import math

import numpy as np


def he(shape, rng, dtype=np.float32):
    """N(0, 2 / fan_in): keeps the activation variance steady through ReLUs (He et al. 2015)."""
    std = math.sqrt(2.0 / shape[0])
    return (rng.standard_normal(shape, dtype=np.float64) * std).astype(dtype)


def xavier(shape, rng, dtype=np.float32):
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010), for sigmoid/tanh."""
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def normal(std):
    """Return an initialiser drawing N(0, std**2), e.g. ``Linear(..., init=normal(0.01))``."""
    if not (isinstance(std, (int, float)) and std > 0):
        raise ValueError(f"init.normal: expected a positive std, got {std!r}")

    def init(shape, rng, dtype=np.float32):
        return (rng.standard_normal(shape, dtype=np.float64) * std).astype(dtype)

    init.__name__ = f"normal({std})"
    return init


INITIALISERS = {"he": he, "xavier": xavier, "small": normal(0.01)}


def get_initialiser(init):
    """Resolve ``"he"``, ``"xavier"``, ``"small"`` or a callable to an initialiser."""
    if callable(init):
        return init
    if init in INITIALISERS:
        return INITIALISERS[init]
    raise ValueError(f"init: expected one of {sorted(INITIALISERS)} or a callable, got {init!r}")
