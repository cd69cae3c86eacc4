"""BatchNorm over (N, C): forward, and backward in two forms — the paper's and the simplified one.

For one feature over a mini-batch of m values (Ioffe & Szegedy 2015, Alg. 1):
    mu = mean(x), var = mean((x - mu)**2)          (biased, centred first)
    xhat = (x - mu) / sqrt(var + eps),  y = gamma * xhat + beta
Backward, with dxhat = dy * gamma (docs/batchnorm.md derives both):
    paper:       dvar, then dmu, then dx, step by step as in the paper
    simplified:  dx = 1 / (m * sqrt(var + eps)) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
Conventions are PyTorch's BatchNorm1d: eps inside the root, momentum = weight of the new
batch statistic, running_var stores the *unbiased* variance, running stats start at 0 and 1.
"""

import numpy as np

from .. import kernels
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
    momentum : float
        Weight of the new batch statistic in the running averages.
    gradient : {"simplified", "paper"}
        Which backward form to use; both give the same gradient.
    dtype : numpy dtype
        dtype of gamma, beta and the running statistics.

    Shapes: x (N, C) -> y (N, C); gamma, beta, running_mean, running_var (C,).
    In training mode N must be at least 2; eval mode uses the running statistics.
    """

    buffers = ("running_mean", "running_var")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, gradient="simplified", dtype=np.float32):
        check_positive_int("BatchNorm", "num_features", num_features)
        if not eps > 0:
            raise ValueError(f"BatchNorm: expected eps > 0, got {eps!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"BatchNorm: expected 0 <= momentum <= 1, got {momentum!r}")
        if gradient not in GRADIENT_FORMS:
            raise ValueError(f"BatchNorm: expected gradient to be one of {GRADIENT_FORMS}, got {gradient!r}")
        self.num_features, self.eps, self.momentum, self.gradient = int(num_features), eps, momentum, gradient
        self.gamma = Parameter(np.ones(num_features, dtype), "gamma")
        self.beta = Parameter(np.zeros(num_features, dtype), "beta")
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)

    def forward(self, x):
        check_input(self, x, ndim=2, features=self.num_features, like=self.gamma.data)
        xp = get_array_module(x)
        if not self.training:
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
        # the fused kernels save (x, mean) where the code below saves xhat: only for our own backward,
        # not a subclass's that reads the layout below (a lab's stub)
        fusable = self.gradient == "simplified" and type(self).backward is BatchNorm.backward
        if fusable and (fused := kernels.fused("batchnorm_forward", x)) is not None:
            return fused(self, x)  # statistics, running averages and y in two kernels (C: one); saves x, not xhat
        xc, xhat = self._kept_arrays(x)  # (N, C) each, filled below
        mu = x.sum(axis=0) / m  # (C,) the mean; sum is one C call where mean adds Python around it
        xp.subtract(x, mu, out=xc)  # centred first: two passes, never E[x^2] - E[x]^2
        var = xp.einsum("nc,nc->c", xc, xc) / m  # (C,) mean of xc**2, biased: this is what normalises
        inv_std = 1 / xp.sqrt(var + self.eps)  # (C,)
        xp.multiply(xc, inv_std, out=xhat)
        # running averages in place; running_var stores the unbiased variance (PyTorch)
        self.running_mean *= 1 - self.momentum
        self.running_mean += self.momentum * mu
        self.running_var *= 1 - self.momentum
        self.running_var += (self.momentum * m / (m - 1)) * var
        self.save_for_backward(True, xhat, inv_std, xc)
        y = xhat * self.gamma.data  # (N, C)
        y += self.beta.data  # in place: no second (N, C) temporary
        return y

    def backward(self, dy):
        batch_stats, *kept = self.saved()
        if batch_stats == "fused":  # the forward's kernels kept x and its mean; xhat is recomputed
            x, mean, inv_std = kept
            check_grad(self, dy, x.shape)
            return kernels.function("batchnorm_backward", x)(self, dy, x, mean, inv_std)  # the same formula
        xhat, inv_std, xc = kept
        check_grad(self, dy, xhat.shape)
        xp, gamma = get_array_module(dy), self.gamma.data
        dgamma = xp.einsum("nc,nc->c", dy, xhat)  # (C,) sum of dy * xhat, with no (N, C) temporary
        dbeta = dy.sum(axis=0)  # (C,)
        self.gamma.grad += dgamma
        self.beta.grad += dbeta
        if not batch_stats:  # eval: the statistics are constants, y is affine in x
            return dy * (gamma * inv_std)
        if self.gradient == "paper":
            return self._backward_paper(dy * gamma, xc, inv_std)
        # simplified form with dxhat = dy * gamma, gamma and 1/m moved inside the bracket:
        #   dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))
        # its two means are the sums dbeta and dgamma above over m: no new (N, C) reduction
        m = dy.shape[0]
        dx = xhat * (dgamma / m)  # (N, C)
        xp.subtract(dy, dx, out=dx)  # dx is ours: in place from here on
        dx -= dbeta / m
        dx *= gamma * inv_std
        return dx

    def _kept_arrays(self, x):
        """Two arrays shaped like ``x`` for xc and xhat, kept from one training step to the next.

        Both live only until backward. Fresh (N, C) arrays every step would cost page faults:
        glibc returns large freed blocks to the OS, so a new one arrives as untouched pages.
        """
        kept = self.__dict__.get("_kept")
        if kept is None or kept[0].shape != x.shape or kept[0].dtype != x.dtype or type(kept[0]) is not type(x):
            xp = get_array_module(x)
            kept = self._kept = (xp.empty_like(x), xp.empty_like(x))
        return kept

    @staticmethod
    def _backward_paper(dxhat, xc, inv_std):
        """The paper's chain rule, one intermediate at a time. dxhat, xc (N, C); inv_std (C,)."""
        m = dxhat.shape[0]
        dvar = (dxhat * xc).sum(axis=0) * -0.5 * inv_std**3  # (C,)  dl/dvar
        dmu = (dxhat * -inv_std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)  # (C,)  dl/dmu
        return dxhat * inv_std + dvar * (2 * xc / m) + dmu / m  # (N, C)  dl/dx

    def extra_repr(self):
        defaults = {"eps": 1e-5, "momentum": 0.1, "gradient": "simplified"}
        changed = [f"{k}={getattr(self, k)!r}" for k, v in defaults.items() if getattr(self, k) != v]
        return ", ".join([str(self.num_features), *changed])
