"""Dropout's keep-mask drawn on the GPU, its randomness still coming from the layer's rng.

The plain code draws the mask with the layer's NumPy Generator on the host and copies it
over (``xp.asarray(rng.random(shape) >= p)``): for a (4096, 4096) activation that is a
64 MB host-to-device copy per step. Here a CuPy Generator on the device draws it; that
generator is seeded once from ``layer.rng`` (one draw), so a seeded rng still gives
reproducible masks, and nothing random happens outside the rng the user passed.
"""

import cupy


def keep_mask(layer, x):
    """Boolean mask of x's shape, True with probability 1 - layer.p, drawn on x's GPU."""
    generator = layer.__dict__.get("_device_rng")
    if generator is None:
        seed = int(layer.rng.integers(2**63 - 1))
        generator = layer._device_rng = cupy.random.default_rng(seed)
    return generator.random(x.shape, dtype=x.dtype) >= layer.p
