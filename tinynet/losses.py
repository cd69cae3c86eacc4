"""SoftmaxCrossEntropy: softmax and the negative log-likelihood, fused and numerically stable."""

from . import kernels
from .backend import backend_name, get_array_module
from .layer import check_input


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer class labels.

    ``loss = crit(logits, labels)``; ``dlogits = crit.backward()``.

    Shapes: logits (N, C) floating, labels (N,) integers in [0, C) -> loss, a 0-d value.
    The gradient is (softmax(logits) - onehot(labels)) / N, shape (N, C).
    Stable for any finite logits: the log-sum-exp is taken after subtracting the row maximum.
    """

    # (low, high) of every label to come, when the caller has checked them all at once (fit does,
    # for its training labels): the range check then needs no read of the labels, which on a GPU
    # would stall the queue of kernels at every step
    known_label_range = None

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def name_for_errors(self):
        return "SoftmaxCrossEntropy"

    def forward(self, logits, labels):
        check_input(self, logits, ndim=2)
        self._check_labels(logits, labels)
        if (fused := kernels.fused("softmax_cross_entropy", logits)) is not None:
            return fused(self, logits, labels)  # loss and probabilities in one kernel (CuPy or C)
        xp = get_array_module(logits)
        n = logits.shape[0]
        rows = xp.arange(n)
        shifted = logits - logits.max(axis=1, keepdims=True)  # (N, C), each row's max is 0
        exp = xp.exp(shifted)  # (N, C), in (0, 1]: no overflow
        sum_exp = exp.sum(axis=1)  # (N,), >= 1: its log is finite
        loss = (xp.log(sum_exp) - shifted[rows, labels]).sum() / n  # the mean
        self._saved = (exp / sum_exp[:, None], labels)  # softmax probabilities
        return loss

    def backward(self, dloss=1.0):
        """Return dL/dlogits, shape (N, C); ``dloss`` scales it (the upstream gradient)."""
        if getattr(dloss, "ndim", 0) != 0:  # an (N,) or (N, C) dloss would broadcast silently
            raise ValueError(
                f"SoftmaxCrossEntropy: backward expected a scalar dloss (the loss is a 0-d value), "
                f"got shape {tuple(dloss.shape)}"
            )
        saved = self.__dict__.pop("_saved", None)
        if saved is None:
            raise RuntimeError("SoftmaxCrossEntropy: backward called without a forward before it (or twice)")
        probs, labels = saved
        fused = kernels.fused("softmax_cross_entropy_backward", probs)
        if fused is not None and isinstance(dloss, (int, float)):  # one kernel, in place
            return fused(probs, labels, dloss)
        xp = get_array_module(probs)
        n = probs.shape[0]
        probs[xp.arange(n), labels] -= 1  # probs is ours alone: reuse it as the gradient
        probs *= dloss / n  # in place: probs keeps its dtype
        return probs

    def _check_labels(self, logits, labels):
        if not hasattr(labels, "dtype") or not hasattr(labels, "shape"):
            raise TypeError(f"SoftmaxCrossEntropy: expected labels as an integer array, got {type(labels).__name__}")
        if labels.dtype.kind not in "iu":
            raise ValueError(
                f"SoftmaxCrossEntropy: expected integer class labels, got dtype {labels.dtype} "
                "(labels are class indices, not one-hot vectors or floats)"
            )
        n, classes = logits.shape
        if labels.shape != (n,):
            raise ValueError(
                f"SoftmaxCrossEntropy: expected labels of shape ({n},) to match logits {tuple(logits.shape)}, "
                f"got {tuple(labels.shape)}"
            )
        if backend_name(labels) != backend_name(logits):
            raise TypeError(
                f"SoftmaxCrossEntropy: logits are a {backend_name(logits)} array but labels are "
                f"a {backend_name(labels)} array; move both to one backend"
            )
        if kernels.capturing():  # recording a CUDA graph: no reads back to the host (the kernel guards)
            return
        if self.known_label_range is not None:
            low, high = self.known_label_range
        else:
            low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"SoftmaxCrossEntropy: expected labels in [0, {classes}), got values from {low} to {high}"
            )
