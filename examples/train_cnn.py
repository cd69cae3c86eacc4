"""Train a LeNet-style CNN with BatchNorm on MNIST: >= 99 % test accuracy in 5 epochs on a CPU.

Run from the repository root, with tinynet installed (`make train` creates .venv and installs it):

    .venv/bin/python examples/train_cnn.py

(``python -m tinynet train --model cnn`` trains the same network, built by ``tinynet.models.cnn``;
add ``--dataset fashion`` for Fashion-MNIST.) The layers are written out here so you can see the
shapes go from images to logits:

    (N, 1, 28, 28) -> Conv 5x5, pad 2 -> (N, 16, 28, 28) -> pool -> (N, 16, 14, 14)
                   -> Conv 5x5        -> (N, 32, 10, 10) -> pool -> (N, 32, 5, 5)
                   -> Flatten -> (N, 800) -> Linear -> (N, 128) -> Linear -> (N, 10)
"""

import numpy as np

import tinynet as tn
from tinynet.data import images_to_nchw
from tinynet.data.batching import split_validation


def main(epochs=5, batch_size=128, seed=0):
    (x_train, y_train), (x_test, y_test) = tn.datasets.load_mnist()
    x_train, x_test = images_to_nchw(x_train), images_to_nchw(x_test)  # float32 (N, 1, 28, 28) in [0, 1]
    (x_train, y_train), validation = split_validation(x_train, y_train, 5000)

    rng = np.random.default_rng(seed)  # weights and batch order both come from here
    model = tn.Sequential(  # fit skips the first Conv2d's dL/dx (col2im): it reads the data
        tn.Conv2d(1, 16, 5, padding=2, bias=False, rng=rng), tn.BatchNorm2d(16), tn.ReLU(), tn.MaxPool2d(2),
        tn.Conv2d(16, 32, 5, bias=False, rng=rng), tn.BatchNorm2d(32), tn.ReLU(), tn.MaxPool2d(2),
        tn.Flatten(),
        tn.Linear(32 * 5 * 5, 128, bias=False, rng=rng), tn.BatchNorm(128), tn.ReLU(),
        tn.Linear(128, 10, rng=rng),
    )

    loss = tn.SoftmaxCrossEntropy()
    optimizer = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = tn.optim.cosine_schedule(0.05, epochs)  # the lr falls to near 0 by the last epoch
    history = tn.fit(model, loss, optimizer, x_train, y_train, epochs, batch_size,
                     validation=validation, rng=rng, lr_schedule=schedule)
    print(model.summary())  # after training: the output shape of every layer is known

    test = tn.evaluate(model, loss, x_test, y_test)
    print(f"test accuracy {100 * test.accuracy:.2f}% after {epochs} epochs "
          f"({np.mean(history.seconds):.2f} s/epoch)")


if __name__ == "__main__":
    main()
