"""LayerNorm: normalise each example over its last axes, with a learned per-element scale and shift.

For one example's m = prod(normalized_shape) values (Ba, Kiros & Hinton 2016):
    mu = mean(x), var = mean((x - mu)**2) (biased), xhat = (x - mu) / sqrt(var + eps)
    y = gamma * xhat + beta          (gamma, beta of shape normalized_shape)
Backward is BatchNorm's simplified form with the roles of the axes swapped (the sums run over
the normalised axes of one example, not over the batch), dxhat = dy * gamma:
    dx = 1 / (m * sqrt(var + eps)) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
    dgamma = sum over the leading axes of dy * xhat,  dbeta = sum over the leading axes of dy
The statistics are the example's own, so train and eval mode behave alike and N = 1 is fine.
"""

import numpy as np

from ..backend import get_array_module
from ..layer import Layer, Parameter, check_grad, check_input


class LayerNorm(Layer):
    """Layer normalisation over the last ``len(normalized_shape)`` axes, as PyTorch's LayerNorm.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape to normalise over: ``64`` for (N, 64) or (N, T, 64) inputs,
        ``(C, H, W)`` for a whole image.
    eps : float
        Added to the variance inside the square root (PyTorch's default 1e-5).
    dtype : numpy dtype
        dtype of gamma and beta.

    Shapes: x (..., *normalized_shape) -> y of the same shape; gamma (ones) and beta (zeros) of
    shape normalized_shape (PyTorch calls them ``weight`` and ``bias``).
    """

    def __init__(self, normalized_shape, eps=1e-5, dtype=np.float32):
        shape = tuple(normalized_shape) if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
        if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
            raise ValueError(f"LayerNorm: expected normalized_shape as a positive int or a tuple of them, "
                             f"got {normalized_shape!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"LayerNorm: expected eps > 0, got {eps!r}")
        self.normalized_shape, self.eps = tuple(int(s) for s in shape), eps
        self.gamma = Parameter(np.ones(self.normalized_shape, dtype), "gamma")
        self.beta = Parameter(np.zeros(self.normalized_shape, dtype), "beta")

    def _axes(self):
        return tuple(range(-len(self.normalized_shape), 0))  # the normalised (trailing) axes

    def forward(self, x):
        check_input(self, x, like=self.gamma.data)
        k = len(self.normalized_shape)
        if x.ndim <= k or tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"{self.name_for_errors()}: expected input of shape (N, ..., "
                             f"{', '.join(map(str, self.normalized_shape))}), got shape {tuple(x.shape)}")
        xp = get_array_module(x)
        axes = self._axes()
        mu = x.mean(axis=axes, keepdims=True)  # (N, ..., 1, ..., 1)
        xc = x - mu  # centred first, as BatchNorm
        var = (xc * xc).mean(axis=axes, keepdims=True)  # biased
        inv_std = 1 / xp.sqrt(var + self.eps)  # (N, ..., 1, ..., 1)
        xhat = xc * inv_std  # x's shape
        self.save_for_backward(xhat, inv_std)
        return self.gamma.data * xhat + self.beta.data

    def backward(self, dy):
        xhat, inv_std = self.saved()
        check_grad(self, dy, xhat.shape)
        axes = self._axes()
        leading = tuple(range(dy.ndim - len(self.normalized_shape)))  # the batch axes
        self.gamma.grad += (dy * xhat).sum(axis=leading)  # normalized_shape
        self.beta.grad += dy.sum(axis=leading)  # normalized_shape
        dxhat = dy * self.gamma.data  # x's shape
        m = int(np.prod(self.normalized_shape))
        return inv_std / m * (m * dxhat - dxhat.sum(axis=axes, keepdims=True)
                              - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True))

    def extra_repr(self):
        shape = self.normalized_shape
        return (str(shape[0]) if len(shape) == 1 else str(shape)) + ("" if self.eps == 1e-5 else f", eps={self.eps!r}")
