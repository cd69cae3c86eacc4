"""Data loading: IDX files and the MNIST / Fashion-MNIST datasets.

>>> from tinynet.data import load_mnist
>>> (x_train, y_train), (x_test, y_test) = load_mnist()  # doctest: +SKIP
"""

from ..lazy import on_first_use
from .batching import images_to_features, images_to_nchw, minibatches, split_validation

# the file formats and the dataset downloads load on first use: a training step needs only batching
_ON_FIRST_USE = {"read_idx": ".idx", "write_idx": ".idx", "load_mnist": ".mnist", "load_fashion_mnist": ".mnist",
                 "data_home": ".mnist", "DatasetUnavailableError": ".mnist"}


__getattr__, __dir__ = on_first_use(__name__, _ON_FIRST_USE)

__all__ = ["read_idx", "write_idx", "load_mnist", "load_fashion_mnist", "data_home", "DatasetUnavailableError",
           "images_to_nchw", "images_to_features", "minibatches", "split_validation"]
