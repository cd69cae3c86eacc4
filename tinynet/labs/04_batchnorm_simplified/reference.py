"""Lab 4 reference: tinynet's own BatchNorm with its simplified backward, and a timing of both forms.

``make labs-selfcheck`` grades this file: every item must pass.
"""

import time

import numpy as np

import tinynet as tn


class BatchNorm(tn.BatchNorm):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__(num_features, eps, momentum, gradient="simplified", dtype=dtype)


def time_backward(m, c, repeats=20, rng=None):
    rng = np.random.default_rng(0) if rng is None else rng
    x = rng.standard_normal((m, c)).astype(np.float32)
    dy = rng.standard_normal((m, c)).astype(np.float32)
    seconds = {}
    for form, layer in (("paper", tn.BatchNorm(c, gradient="paper")), ("simplified", BatchNorm(c))):
        best = float("inf")
        for _ in range(repeats):
            layer(x)
            start = time.perf_counter()
            layer.backward(dy)
            best = min(best, time.perf_counter() - start)
        seconds[form] = best
    return seconds
