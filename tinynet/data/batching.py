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


def images_to_nchw(images, dtype=np.float32):
    """uint8 images (N, H, W) -> floats (N, 1, H, W) in [0, 1], C-contiguous: the input of a Conv2d.

    Images that already have a channel axis, (N, C, H, W), keep it.
    """
    ndim = getattr(images, "ndim", None)
    if not hasattr(images, "dtype") or ndim not in (3, 4):
        raise ValueError("images_to_nchw: expected an array of images (N, H, W) or (N, C, H, W), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    xp = get_array_module(images)
    batch = images[:, None] if ndim == 3 else images  # (N, 1, H, W): one channel
    out = xp.ascontiguousarray(batch, dtype=dtype)
    if images.dtype.kind in "ui":  # pixel values 0..255
        out /= 255
    return out


def split_validation(x, y, size):
    """Hold the last ``size`` examples out: ``(x_train, y_train), (x_val, y_val)``."""
    if not 0 <= size < len(x):
        raise ValueError(f"split_validation: expected 0 <= size < {len(x)}, got {size}")
    cut = len(x) - size
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def minibatches(x, y, batch_size, rng=None, min_size=1):
    """Yield ``(x_batch, y_batch)`` pairs, shuffled by ``rng`` when given.

    Without ``rng`` every batch is a view of ``x``. With it, one permutation is drawn per
    call and each batch gathers its rows into a fresh C-contiguous array: never a
    permuted copy of the whole data set (188 MB for MNIST in float32), which would
    raise the peak memory of training by as much. A last batch smaller than
    ``min_size`` is dropped.
    """
    xp = get_array_module(x)
    order = None if rng is None else xp.asarray(rng.permutation(len(x)))
    for start in range(0, len(x), batch_size):
        if len(x) - start < min_size:
            break
        if order is None:
            yield x[start : start + batch_size], y[start : start + batch_size]
        else:
            rows = order[start : start + batch_size]
            yield x[rows], y[rows]
