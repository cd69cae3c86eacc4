"""Lab 6: a residual network built as a tinynet.Graph, trained on MNIST.

Fill in build_model and train_step, then grade your work:

    python -m tinynet lab 6          (from the folder that holds this lab's folder)

The grader trains your model for a few hundred steps on an MNIST subset (it needs the
MNIST cache: `make train` once, or python -c "import tinynet; tinynet.datasets.load_mnist()").
Read 06_residual_mnist/README.md first.
"""

import tinynet as tn


def build_model(rng):
    """A residual MLP as a tn.Graph: (N, 784) float32 images -> (N, 10) logits.

    At least one skip connection: a node whose output feeds a block of layers AND an
    Add that sums the block's output with it. rng: a numpy Generator for the weights.
    """
    g = tn.Graph()
    x = g.input()
    # TODO: h = g.add(tn.Linear(784, 128, rng=rng), x); ... a block on h ...; s = g.add(tn.Add(), block_out, h)
    #       ...; g.output(g.add(tn.Linear(128, 10, rng=rng), ...)); return g
    raise NotImplementedError("Lab 6: build_model")


def train_step(model, loss, optimizer, xb, yb):
    """One step of mini-batch gradient descent on (xb, yb); return the loss before the update, as a float."""
    # TODO: forward, loss, zero the gradients, backward, optimizer step
    raise NotImplementedError("Lab 6: train_step")
