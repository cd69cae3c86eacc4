"""Lab 1, the student's side: builds the student's Linear and ReLU and runs them on the grader's inputs.

Runs in the student's process, where tinynet's own Linear and ReLU are unavailable. It returns
what the layers returned; it knows no expected values.
"""

import numpy as np

from tinynet_lab_kit import drive, forwards, need, own

BLOCK = ["Linear", "ReLU"]


def make_linear(sub, in_features, out_features, bias, dtype):
    cls = need(sub, "Linear")
    own(cls, "forward", "backward")
    return cls(in_features, out_features, bias=bias, rng=np.random.default_rng(0), dtype=np.dtype(dtype))


def make_relu(sub):
    cls = need(sub, "ReLU")
    own(cls, "forward", "backward")
    return cls()


def linear(sub, config, x, dy=None, params=None, grads=None):
    return drive(make_linear(sub, **config), x, dy, params, grads)


def linear_forwards(sub, config, points):
    return forwards(lambda: make_linear(sub, **config), points)


def relu(sub, config, x, dy=None, params=None, grads=None):
    return drive(make_relu(sub), x, dy)


def relu_forwards(sub, config, points):
    return forwards(lambda: make_relu(sub), points)
