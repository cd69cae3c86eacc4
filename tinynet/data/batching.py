"""Turning image arrays into training features, and slicing them into mini-batches."""

import numpy as np

from ..backend import get_array_module


def images_to_features(images, dtype=np.float32):
    """uint8 images (N, H, W) -> floats (N, H*W) in [0, 1], C-contiguous."""
    if not hasattr(images, "dtype") or images.ndim < 2:
        raise ValueError(f"images_to_features: expected an array of images (N, H, W), got {getattr(images, 'shape', type(images).__name__)}")
    xp = get_array_module(images)
    flat = images.reshape(images.shape[0], -1)
    features = xp.ascontiguousarray(flat, dtype=dtype)
    if images.dtype.kind in "ui":  # pixel values 0..255
        features /= 255
    return features


def split_validation(x, y, size):
    """Hold the last ``size`` examples out: ``(x_train, y_train), (x_val, y_val)``."""
    if not 0 <= size < len(x):
        raise ValueError(f"split_validation: expected 0 <= size < {len(x)}, got {size}")
    cut = len(x) - size
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def minibatches(x, y, batch_size, rng=None, min_size=1):
    """Yield ``(x_batch, y_batch)`` pairs, shuffled by ``rng`` when given.

    The data is permuted once per call (one gather), then sliced: every batch is
    a contiguous view. A last batch smaller than ``min_size`` is dropped.
    """
    xp = get_array_module(x)
    if rng is not None:
        order = xp.asarray(rng.permutation(len(x)))
        x, y = x[order], y[order]
    for start in range(0, len(x), batch_size):
        if len(x) - start < min_size:
            break
        yield x[start : start + batch_size], y[start : start + batch_size]
