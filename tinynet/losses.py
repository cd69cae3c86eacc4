"""SoftmaxCrossEntropy: softmax and the negative log-likelihood, fused and numerically stable."""

from .backend import backend_name, get_array_module
from .layer import check_input


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer class labels.

    ``loss = crit(logits, labels)``; ``dlogits = crit.backward()``.

    Shapes: logits (N, C) floating, labels (N,) integers in [0, C) -> loss, a 0-d value.
    The gradient is (softmax(logits) - onehot(labels)) / N, shape (N, C).
    Stable for any finite logits: the log-sum-exp is taken after subtracting the row maximum.
    """

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def name_for_errors(self):
        return "SoftmaxCrossEntropy"

    def forward(self, logits, labels):
        check_input(self, logits, ndim=2)
        self._check_labels(logits, labels)
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
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"SoftmaxCrossEntropy: expected labels in [0, {classes}), got values from {low} to {high}"
            )


class MSELoss:
    """Mean squared error over every element, PyTorch's MSELoss (reduction "mean").

    ``loss = crit(pred, target)``; ``dpred = crit.backward()``.

    Shapes: pred and target of one shape, floating -> loss, a 0-d value, mean((pred - target)**2).
    The gradient is 2 * (pred - target) / pred.size, pred's shape. Shapes must match exactly:
    PyTorch broadcasts (with a warning), tinynet refuses, since an (N, 1) prediction against an
    (N,) target would silently compare every prediction with every target.
    """

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def name_for_errors(self):
        return "MSELoss"

    def forward(self, pred, target):
        check_input(self, pred)
        if not hasattr(target, "dtype") or not hasattr(target, "shape"):
            raise TypeError(f"MSELoss: expected target as a floating-point array, got {type(target).__name__}")
        if target.dtype.kind != "f":
            raise TypeError(f"MSELoss: expected a floating-point target, got dtype {target.dtype} "
                            "(for class labels use SoftmaxCrossEntropy)")
        if tuple(target.shape) != tuple(pred.shape):
            raise ValueError(f"MSELoss: expected target of the prediction's shape {tuple(pred.shape)}, "
                             f"got {tuple(target.shape)} (no broadcasting: reshape one of them)")
        if backend_name(target) != backend_name(pred):
            raise TypeError(f"MSELoss: pred is a {backend_name(pred)} array but target is a "
                            f"{backend_name(target)} array; move both to one backend")
        diff = pred - target  # pred's shape
        self._saved = diff
        return (diff * diff).sum() / diff.size

    def backward(self, dloss=1.0):
        """Return dL/dpred, pred's shape; ``dloss`` scales it (the upstream gradient)."""
        if getattr(dloss, "ndim", 0) != 0:
            raise ValueError(f"MSELoss: backward expected a scalar dloss (the loss is a 0-d value), "
                             f"got shape {tuple(dloss.shape)}")
        diff = self.__dict__.pop("_saved", None)
        if diff is None:
            raise RuntimeError("MSELoss: backward called without a forward before it (or twice)")
        return diff * (2 * dloss / diff.size)
