"""Lab 2: softmax cross-entropy, numerically stable.

Fill in forward and backward, then grade your work:

    python -m tinynet lab 2          (from the folder that holds this lab's folder)

Shapes: logits (N, C) floating, labels (N,) integers in [0, C) -> loss, a number;
backward() -> dlogits (N, C). Read 02_softmax_cross_entropy/README.md first.
"""

from tinynet.backend import get_array_module


class SoftmaxCrossEntropy:
    """Mean over the batch of -log softmax(logits)[label]; ``backward()`` returns dL/dlogits."""

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def forward(self, logits, labels):
        xp = get_array_module(logits)  # numpy or cupy: use xp.exp, xp.log, xp.arange, ...
        # TODO: the mean loss, stable for any finite logits (no overflow, no log(0));
        #       keep what backward needs in self (e.g. the probabilities and the labels)
        raise NotImplementedError("Lab 2: SoftmaxCrossEntropy.forward")

    def backward(self, dloss=1.0):
        """Return dL/dlogits (N, C), times dloss (the upstream gradient of the loss)."""
        # TODO: (softmax(logits) - onehot(labels)) / N, times dloss
        raise NotImplementedError("Lab 2: SoftmaxCrossEntropy.backward")
