"""Weight initialisers: He, Xavier (Glorot) and a plain Gaussian of a chosen std.

Each takes ``(shape, rng, dtype)`` and an explicit ``numpy.random.Generator``, and returns a
NumPy array. The fans come from the shape, in the layout of the layer that owns it (:func:`fans`):

- 2-D, tinynet's Linear weight ``(in, out)``: fan_in = in, fan_out = out (PyTorch stores a
  Linear weight as (out, in): the other way round);
- 3-D or more, a convolution weight ``(out, in, kh, kw)`` as PyTorch's:
  fan_in = in * kh * kw, fan_out = out * kh * kw.
"""

import math

import numpy as np


def fans(shape):
    """``(fan_in, fan_out)`` of a weight of ``shape``: ``(in, out)`` for 2-D, ``(out, in, *kernel)`` above.

    >>> fans((784, 256)), fans((64, 3, 3, 3))
    ((784, 256), (27, 576))
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"init: expected a weight shape of 2 or more axes, (in, out) or (out, in, kh, kw), got {shape}")
    if len(shape) == 2:  # tinynet's Linear: (in, out)
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])  # kh * kw: each output sees in * kh * kw inputs
    return shape[1] * receptive, shape[0] * receptive


def he(shape, rng, dtype=np.float32):
    """N(0, 2 / fan_in): keeps the activation variance steady through ReLUs (He et al. 2015)."""
    std = math.sqrt(2.0 / fans(shape)[0])
    return (rng.standard_normal(shape, dtype=np.float64) * std).astype(dtype)


def xavier(shape, rng, dtype=np.float32):
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010), for sigmoid/tanh."""
    fan_in, fan_out = fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
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
