"""Lab 3: BatchNorm forward, and its backward in the paper's step-by-step form.

Fill in forward and backward, then grade your work:

    python -m tinynet lab 3          (from the folder that holds this lab's folder)

Shapes: x, y, dy, dx (N, C); gamma, beta, running_mean, running_var (C,).
Read 03_batchnorm_paper/README.md first: it has the formulas.
"""

import numpy as np

from tinynet import Layer, Parameter
from tinynet.backend import get_array_module
from tinynet.layer import check_input


class BatchNorm(Layer):
    """Batch normalisation per feature, PyTorch's BatchNorm1d conventions. The constructor is given."""

    buffers = ("running_mean", "running_var")  # saved by state_dict, not trained

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.gamma = Parameter(np.ones(num_features, dtype), "gamma")
        self.beta = Parameter(np.zeros(num_features, dtype), "beta")
        self.running_mean = np.zeros(num_features, dtype)  # starts at 0
        self.running_var = np.ones(num_features, dtype)  # starts at 1, never 0

    def forward(self, x):
        check_input(self, x, ndim=2, features=self.num_features, like=self.gamma.data)
        xp = get_array_module(x)
        if not self.training:
            # TODO (eval): normalise with running_mean and running_var; leave them unchanged
            raise NotImplementedError("Lab 3: BatchNorm.forward in eval mode")
        # TODO (training): refuse a batch of one (ValueError); mu, biased var (centre first),
        #   xhat = (x - mu) / sqrt(var + eps), y = gamma * xhat + beta;
        #   update the running averages (running_var gets the UNBIASED variance);
        #   save what backward needs with self.save_for_backward(...)
        raise NotImplementedError("Lab 3: BatchNorm.forward in training mode")

    def backward(self, dy):
        # TODO: gamma.grad += sum(dy * xhat); beta.grad += sum(dy);
        #   training: dxhat, then dvar, then dmu, then dx (the paper's Algorithm 1 backward);
        #     keep the two intermediates for the grader: self.dvar, self.dmu = dvar, dmu  (each (C,))
        #   eval: dx = dy * gamma / sqrt(running_var + eps)
        raise NotImplementedError("Lab 3: BatchNorm.backward")
