"""BatchNorm2d: the BatchNorm of layers/batchnorm.py per channel of an NCHW input, over N, H and W.

Each channel is one feature whose mini-batch is all its N * H * W values, so m = N * H * W in
every formula of the 1-D layer (docs/batchnorm.md), and its statistics and parameters are (C,)
arrays broadcast as (C, 1, 1) against (N, C, H, W). Both backward forms are here, as there:
    paper:       dvar, then dmu, then dx, step by step as in the paper
    simplified:  dx = 1 / (m * sqrt(var + eps)) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
with each sum over N, H and W. Conventions are PyTorch's BatchNorm2d (the 1-D layer's).
"""

import numpy as np

from ..backend import get_array_module
from ..layer import check_grad, check_input
from .batchnorm import BatchNorm


def per_channel(v):
    """(C,) -> (C, 1, 1): broadcasts against (N, C, H, W) along the channel axis."""
    return v[:, None, None]


def channel_sum(a, b=None):
    """sum over N, H, W of ``a`` (or of ``a * b`` without making it): (N, C, H, W) -> (C,)."""
    xp = get_array_module(a)
    return xp.einsum("nchw->c", a) if b is None else xp.einsum("nchw,nchw->c", a, b)


class BatchNorm2d(BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, per channel over N, H and W.

    Parameters are those of :class:`tinynet.BatchNorm` (``num_features`` is C, the channels):
    eps, momentum (None: a cumulative average), gradient ("simplified" or "paper"), dtype.

    Shapes: x (N, C, H, W) -> y (N, C, H, W); gamma, beta, running_mean, running_var (C,)
    (PyTorch calls gamma and beta ``weight`` and ``bias``). In training mode N * H * W must be at
    least 2; eval mode uses the running statistics.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, gradient="simplified", dtype=np.float32):
        try:
            super().__init__(num_features, eps, momentum, gradient, dtype)
        except ValueError as error:  # the 1-D layer's checks, under this layer's name
            raise ValueError(str(error).replace("BatchNorm:", "BatchNorm2d:", 1)) from None

    def forward(self, x):
        check_input(self, x, ndim=4, features=self.num_features, axis=1, like=self.gamma.data)
        xp = get_array_module(x)
        gamma, beta = per_channel(self.gamma.data), per_channel(self.beta.data)
        if not self.training:  # eval: the running statistics, constants for backward
            inv_std = 1 / xp.sqrt(self.running_var + self.eps)  # (C,)
            xhat = (x - per_channel(self.running_mean)) * per_channel(inv_std)  # (N, C, H, W)
            self.save_for_backward(False, xhat, inv_std, None)
            return gamma * xhat + beta
        n, _, h, w = x.shape
        m = n * h * w  # values per channel
        if m < 2:
            raise ValueError(
                f"{self.name_for_errors()}: training needs at least 2 values per channel (N * H * W) to compute a "
                f"variance, got shape {tuple(x.shape)}; use a larger batch or call .eval()"
            )
        mu = channel_sum(x) / m  # (C,)
        xc = x - per_channel(mu)  # (N, C, H, W) centred first: two passes, never E[x^2] - E[x]^2
        var = channel_sum(xc, xc) / m  # (C,) biased: this one normalises
        inv_std = 1 / xp.sqrt(var + self.eps)  # (C,)
        xhat = xc * per_channel(inv_std)  # (N, C, H, W)
        self._update_running_statistics(mu, var, m)
        self.save_for_backward(True, xhat, inv_std, xc)
        y = xhat * gamma  # (N, C, H, W)
        y += beta  # in place: y is ours, no second (N, C, H, W) temporary
        return y

    def backward(self, dy):
        batch_stats, xhat, inv_std, xc = self.saved()
        check_grad(self, dy, xhat.shape)
        gamma = self.gamma.data
        dgamma = channel_sum(dy, xhat)  # (C,)
        dbeta = channel_sum(dy)  # (C,)
        self.gamma.grad += dgamma
        self.beta.grad += dbeta
        if not batch_stats:  # eval: the statistics are constants, y is affine in x
            return dy * per_channel(gamma * inv_std)
        n, _, h, w = dy.shape
        m = n * h * w
        if self.gradient == "paper":
            dxhat = dy * per_channel(gamma)  # (N, C, H, W)
            dvar = channel_sum(dxhat, xc) * -0.5 * inv_std**3  # (C,)  dl/dvar
            dmu = -inv_std * channel_sum(dxhat) + dvar * (-2 * channel_sum(xc) / m)  # (C,)  dl/dmu
            return dxhat * per_channel(inv_std) + per_channel(dvar) * (2 * xc / m) + per_channel(dmu / m)
        # the simplified form; its two sums are the ones just taken, times gamma:
        # sum(dxhat) = gamma * dbeta, sum(dxhat * xhat) = gamma * dgamma, so with gamma taken out
        #   dx = gamma * inv_std * (dy - dbeta / m - xhat * dgamma / m)
        # computed in one (N, C, H, W) array, each step in place
        dx = xhat * per_channel(dgamma / m)
        dx -= dy  # now -(dy - xhat * dgamma / m)
        dx += per_channel(dbeta / m)
        dx *= per_channel(-gamma * inv_std)
        return dx
