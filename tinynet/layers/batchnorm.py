"""BatchNorm over (N, C): forward, and backward in two forms — the paper's and the simplified one.

For one feature over a mini-batch of m values (Ioffe & Szegedy 2015, Alg. 1):
    mu = mean(x), var = mean((x - mu)**2)          (biased, centred first)
    xhat = (x - mu) / sqrt(var + eps),  y = gamma * xhat + beta
Backward, with dxhat = dy * gamma (docs/batchnorm.md derives both):
    paper:       dvar, then dmu, then dx, step by step as in the paper
    simplified:  dx = 1 / (m * sqrt(var + eps)) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
Conventions are PyTorch's BatchNorm1d: eps inside the root, momentum = weight of the new
batch statistic (None: a cumulative average), running_var stores the *unbiased* variance,
running stats start at 0 and 1.
"""

import numpy as np

from ..backend import get_array_module
from ..layer import Layer, Parameter, check_grad, check_input, check_positive_int

GRADIENT_FORMS = ("simplified", "paper")


class BatchNorm(Layer):
    """Batch normalisation of (N, C) inputs, per feature.

    Parameters
    ----------
    num_features : int
        C, the number of features.
    eps : float
        Added to the variance inside the square root.
    momentum : float or None
        Weight of the new batch statistic in the running averages; None averages every
        batch so far equally (weight 1 / num_batches_tracked), as PyTorch does.
    gradient : {"simplified", "paper"}
        Which backward form to use; both give the same gradient.
    dtype : numpy dtype
        dtype of gamma, beta and the running statistics.

    Shapes: x (N, C) -> y (N, C); gamma, beta, running_mean, running_var (C,).
    In training mode N must be at least 2; eval mode uses the running statistics.
    """

    buffers = ("running_mean", "running_var")
    differs_in_training = True

    def __init__(self, num_features, eps=1e-5, momentum=0.1, gradient="simplified", dtype=np.float32):
        check_positive_int("BatchNorm", "num_features", num_features)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"BatchNorm: expected eps > 0, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, (int, float))
                                     or not 0 <= momentum <= 1):
            raise ValueError(f"BatchNorm: expected 0 <= momentum <= 1, or None for a cumulative average, got {momentum!r}")
        if gradient not in GRADIENT_FORMS:
            raise ValueError(f"BatchNorm: expected gradient to be one of {GRADIENT_FORMS}, got {gradient!r}")
        self.num_features, self.eps, self.momentum, self.gradient = int(num_features), eps, momentum, gradient
        self.gamma = Parameter(np.ones(num_features, dtype), "gamma")
        self.beta = Parameter(np.zeros(num_features, dtype), "beta")
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)
        self.num_batches_tracked = np.zeros((), np.int64)  # training forwards so far
        if momentum is None:  # the count then decides the averages: save it too
            self.buffers = BatchNorm.buffers + ("num_batches_tracked",)

    def forward(self, x):
        check_input(self, x, ndim=2, features=self.num_features, like=self.gamma.data)
        xp = get_array_module(x)
        if not self.training:  # eval: the running statistics, constants for backward
            inv_std = 1 / xp.sqrt(self.running_var + self.eps)  # (C,)
            xhat = (x - self.running_mean) * inv_std  # (N, C)
            self.save_for_backward(False, xhat, inv_std, None)
            return self.gamma.data * xhat + self.beta.data
        m = x.shape[0]
        if m < 2:
            raise ValueError(
                f"BatchNorm: training needs a batch of at least 2 to compute a variance, got shape {tuple(x.shape)}; "
                "use a larger batch or call .eval()"
            )
        mu = x.mean(axis=0)  # (C,)
        xc = x - mu  # (N, C) centred first: two passes, never E[x^2] - E[x]^2
        var = (xc * xc).mean(axis=0)  # (C,) biased: this one normalises
        inv_std = 1 / xp.sqrt(var + self.eps)  # (C,)
        xhat = xc * inv_std  # (N, C)
        self._update_running_statistics(mu, var, m)
        self.save_for_backward(True, xhat, inv_std, xc)
        return self.gamma.data * xhat + self.beta.data  # (N, C)

    def backward(self, dy):
        batch_stats, xhat, inv_std, xc = self.saved()
        check_grad(self, dy, xhat.shape)
        gamma = self.gamma.data
        dgamma = (dy * xhat).sum(axis=0)  # (C,)
        dbeta = dy.sum(axis=0)  # (C,)
        self.gamma.grad += dgamma
        self.beta.grad += dbeta
        if not batch_stats:  # eval: the statistics are constants, y is affine in x
            return dy * (gamma * inv_std)
        if self.gradient == "paper":
            return self._backward_paper(dy * gamma, xc, inv_std)  # dxhat = dy * gamma
        # the simplified form, with gamma and 1/m taken into the bracket (docs/batchnorm.md, section 4):
        # its sums sum(dxhat) = gamma * dbeta and sum(dxhat * xhat) = gamma * dgamma are the ones just taken
        m = dy.shape[0]
        return gamma * inv_std * (dy - dbeta / m - xhat * (dgamma / m))  # (N, C)

    @staticmethod
    def _backward_paper(dxhat, xc, inv_std):
        """The paper's chain rule, one intermediate at a time. dxhat, xc (N, C); inv_std (C,)."""
        m = dxhat.shape[0]
        dvar = (dxhat * xc).sum(axis=0) * -0.5 * inv_std**3  # (C,)  dl/dvar
        dmu = (dxhat * -inv_std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)  # (C,)  dl/dmu
        return dxhat * inv_std + dvar * (2 * xc / m) + dmu / m  # (N, C)  dl/dx

    def _update_running_statistics(self, mu, var, m):
        """Move the running averages towards this batch's statistics, in place."""
        self.num_batches_tracked += 1
        weight = 1 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean *= 1 - weight
        self.running_mean += weight * mu
        self.running_var *= 1 - weight
        self.running_var += (weight * m / (m - 1)) * var  # stores the unbiased variance, as PyTorch

    def extra_repr(self):
        defaults = {"eps": 1e-5, "momentum": 0.1, "gradient": "simplified"}
        changed = [f"{k}={getattr(self, k)!r}" for k, v in defaults.items() if getattr(self, k) != v]
        return ", ".join([str(self.num_features), *changed])
