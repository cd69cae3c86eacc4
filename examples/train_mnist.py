"""Train the default MLP (784-256-256-10 with BatchNorm) on MNIST in a page of library calls.

Run from the repository root, with tinynet installed (`make train` creates .venv and installs it):

    .venv/bin/python examples/train_mnist.py
"""

import numpy as np

import tinynet as tn
from tinynet.data.batching import images_to_features, split_validation


def main(epochs=8, batch_size=128, seed=0):
    (x_train, y_train), (x_test, y_test) = tn.datasets.load_mnist()
    x_train, x_test = images_to_features(x_train), images_to_features(x_test)  # float32 (N, 784) in [0, 1]
    (x_train, y_train), validation = split_validation(x_train, y_train, 5000)

    rng = np.random.default_rng(seed)  # weights and batch order both come from here
    model = tn.Sequential(
        tn.Linear(784, 256, bias=False, rng=rng), tn.BatchNorm(256), tn.ReLU(),
        tn.Linear(256, 256, bias=False, rng=rng), tn.BatchNorm(256), tn.ReLU(),
        tn.Linear(256, 10, rng=rng),
    )
    print(model.summary())

    loss = tn.SoftmaxCrossEntropy()
    optimizer = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = tn.optim.cosine_schedule(0.05, epochs)  # the lr falls to near 0 by the last epoch
    history = tn.fit(model, loss, optimizer, x_train, y_train, epochs, batch_size,
                     validation=validation, rng=rng, lr_schedule=schedule)

    test = tn.evaluate(model, loss, x_test, y_test)
    print(f"test accuracy {100 * test.accuracy:.2f}% after {epochs} epochs "
          f"({np.mean(history.seconds):.2f} s/epoch)")


if __name__ == "__main__":
    main()
