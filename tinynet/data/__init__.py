"""Data loading: IDX files and the MNIST / Fashion-MNIST datasets.

>>> from tinynet.data import load_mnist
>>> (x_train, y_train), (x_test, y_test) = load_mnist()  # doctest: +SKIP
"""

from .batching import images_to_nchw
from .idx import read_idx, write_idx
from .mnist import DatasetUnavailableError, data_home, load_fashion_mnist, load_mnist

__all__ = [
    "read_idx",
    "write_idx",
    "load_mnist",
    "load_fashion_mnist",
    "data_home",
    "DatasetUnavailableError",
    "images_to_nchw",
]
