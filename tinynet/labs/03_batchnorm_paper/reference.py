"""Lab 3 reference: a model solution, written in this file as a student would.

``make labs-selfcheck`` grades this file: every item must pass.
"""

import numpy as np

from tinynet import Layer, Parameter
from tinynet.backend import get_array_module
from tinynet.layer import check_input


class BatchNorm(Layer):
    buffers = ("running_mean", "running_var")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.gamma = Parameter(np.ones(num_features, dtype), "gamma")
        self.beta = Parameter(np.zeros(num_features, dtype), "beta")
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)

    def forward(self, x):
        check_input(self, x, ndim=2, features=self.num_features, like=self.gamma.data)
        xp = get_array_module(x)
        if not self.training:
            inv_std = 1 / xp.sqrt(self.running_var + self.eps)  # (C,)
            xhat = (x - self.running_mean) * inv_std
            self.save_for_backward(False, xhat, inv_std, None)
            return self.gamma.data * xhat + self.beta.data
        m = x.shape[0]
        if m < 2:
            raise ValueError(f"BatchNorm: training needs a batch of at least 2, got shape {tuple(x.shape)}")
        mu = x.mean(axis=0)  # (C,)
        xc = x - mu  # (N, C): centre first
        var = (xc * xc).mean(axis=0)  # (C,) biased
        inv_std = 1 / xp.sqrt(var + self.eps)  # (C,)
        xhat = xc * inv_std
        k = self.momentum
        self.running_mean = (1 - k) * self.running_mean + k * mu
        self.running_var = (1 - k) * self.running_var + k * var * (m / (m - 1))  # unbiased
        self.save_for_backward(True, xhat, inv_std, xc)
        return self.gamma.data * xhat + self.beta.data

    def backward(self, dy):
        batch_stats, xhat, inv_std, xc = self.saved()
        self.gamma.grad += (dy * xhat).sum(axis=0)
        self.beta.grad += dy.sum(axis=0)
        dxhat = dy * self.gamma.data  # (N, C)
        if not batch_stats:
            return dxhat * inv_std
        m = dy.shape[0]
        dvar = (dxhat * xc).sum(axis=0) * -0.5 * inv_std**3  # (C,)
        dmu = (dxhat * -inv_std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)  # (C,)
        self.dvar, self.dmu = dvar, dmu  # the grader checks the intermediates
        return dxhat * inv_std + dvar * (2 * xc / m) + dmu / m  # (N, C)
