"""A new layer from scratch: Swish with a learned slope, proven with gradcheck, trained on MNIST.

Run from the repository root, with tinynet installed (`make train` creates .venv and installs it;
MNIST is fetched into the cache on first use):

    .venv/bin/python examples/custom_layer.py               # gradcheck, then one epoch on MNIST
    .venv/bin/python examples/custom_layer.py --epochs 3

docs/extending.md walks through this file line by line.
"""

import argparse

import numpy as np

import tinynet as tn
from tinynet.backend import get_array_module
from tinynet.data.batching import images_to_features
from tinynet.layer import check_grad, check_input


class Swish(tn.Layer):
    """y = x * sigmoid(beta * x), with a learned beta per feature (Ramachandran et al., 2017).

    Parameters
    ----------
    num_features : int
        C, the size of the feature axis: one beta per feature.
    beta : float
        Initial value of every beta (1.0 makes it the SiLU).
    dtype : numpy dtype
        dtype of beta; inputs must match it.

    Shapes: x (N, C) -> y (N, C); beta (C,).
    """

    def __init__(self, num_features, beta=1.0, dtype=np.float32):
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"Swish: expected num_features to be a positive integer, got {num_features!r}")
        self.num_features = int(num_features)
        self.beta = tn.Parameter(np.full(self.num_features, beta, dtype), "beta")

    def forward(self, x):
        check_input(self, x, ndim=2, features=self.num_features, like=self.beta.data)
        xp = get_array_module(x)
        z = self.beta.data * x  # (N, C)
        e = xp.exp(-xp.abs(z))  # (N, C) in (0, 1]: exp of a non-positive number never overflows
        s = xp.where(z >= 0, 1 / (1 + e), e / (1 + e))  # (N, C) sigmoid(z)
        self.save_for_backward(x, s)  # s is needed by backward and costs an exp to recompute
        return x * s

    def backward(self, dy):
        x, s = self.saved()
        check_grad(self, dy, x.shape)
        dz = dy * x * s * (1 - s)  # (N, C) dL/dz, z = beta * x
        self.beta.grad += (dz * x).sum(axis=0)  # (C,) dz/dbeta = x, summed over the batch
        return dy * s + dz * self.beta.data  # (N, C) the direct term plus dz/dx = beta

    def extra_repr(self):
        return str(self.num_features)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training data (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights and the batch order (default 0)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    # 1. Prove the backward right: float64 central differences for x and for beta.
    tn.gradcheck(Swish(5, beta=0.7), rng.standard_normal((4, 5)))
    print("gradcheck: Swish's dx and beta.grad agree with central differences")

    # 2. Use it like any built-in layer.
    (x_train, y_train), (x_test, y_test) = tn.datasets.load_mnist()
    x_train, x_test = images_to_features(x_train), images_to_features(x_test)
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    swish = Swish(256)
    model = tn.Sequential(
        tn.Linear(784, 256, bias=False, rng=rng), tn.BatchNorm(256), swish, tn.Linear(256, 10, rng=rng),
    )
    print(model.summary())
    loss = tn.SoftmaxCrossEntropy()
    optimizer = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tn.fit(model, loss, optimizer, x_train, y_train, epochs=args.epochs, batch_size=128, rng=rng)
    result = tn.evaluate(model, loss, x_test, y_test)
    beta = swish.beta.data
    print(f"test accuracy {100 * result.accuracy:.2f}% after {args.epochs} epoch(s); "
          f"learned beta: mean {beta.mean():.3f}, min {beta.min():.3f}, max {beta.max():.3f} (started at 1)")


if __name__ == "__main__":
    main()
