"""Ready-made datasets, in the shape ``keras.datasets.mnist.load_data`` gives.

Each loader returns ``((x_train, y_train), (x_test, y_test))`` with uint8
images of shape ``(N, 28, 28)`` and int64 labels of shape ``(N,)``, and keeps a
checked copy of the files in a local cache (see :mod:`tinynet.data.mnist`).

Examples
--------
>>> from tinynet.datasets import load_mnist
>>> (x_train, y_train), (x_test, y_test) = load_mnist()  # doctest: +SKIP
>>> x_train.shape, y_train.dtype  # doctest: +SKIP
((60000, 28, 28), dtype('int64'))
"""

from .data.mnist import DatasetUnavailableError, load_fashion_mnist, load_mnist

__all__ = ["load_mnist", "load_fashion_mnist", "DatasetUnavailableError"]
