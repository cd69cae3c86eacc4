"""Lab 7, the student's side: builds the student's Conv2d and MaxPool2d and runs them on the grader's inputs.

Runs in the student's process, where tinynet's own Conv2d, MaxPool2d and AvgPool2d (and the
window helpers of its pooling and convolution files) are unavailable. It returns what the
layers returned; it knows no expected values.
"""

import numpy as np

import tinynet as tn
import tinynet.layers.conv as tinynet_conv  # loaded now, so the grader's stand-ins replace these names everywhere
import tinynet.layers.pooling as tinynet_pooling
from tinynet_lab_kit import LabBlocked, drive, forwards, need, own

BLOCK = ["Conv2d", "MaxPool2d", "AvgPool2d", "taps", "output_size"]


def setup():
    """In the student's process only: the lazily loaded names are bound before the stand-ins replace
    them, and the original classes (still reachable as Layer.__subclasses__()) lose their methods."""
    for name in ("Conv2d", "MaxPool2d", "AvgPool2d"):
        getattr(tn, name)
        getattr(tn.layers, name)

    def refusing(cls, method):
        def refuse(self, *args, **kwargs):
            raise LabBlocked(f"tinynet's {cls.__name__}.{method} is not available while grading lab 7: the lab asks "
                             f"you to write {cls.__name__}.{method} yourself")

        refuse.__name__ = method
        return refuse

    for cls in (tinynet_conv.Conv2d, tinynet_pooling.MaxPool2d, tinynet_pooling.AvgPool2d):
        for method in ("forward", "backward"):
            setattr(cls, method, refusing(cls, method))
    tinynet_conv.Conv2d._weight_matrix = refusing(tinynet_conv.Conv2d, "_weight_matrix")


def make_conv(sub, in_channels, out_channels, kernel_size, stride, padding, bias, dtype):
    cls = need(sub, "Conv2d")
    own(cls, "forward", "backward")
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias,
               rng=np.random.default_rng(0), dtype=np.dtype(dtype))


def make_maxpool(sub, kernel_size, stride):
    cls = need(sub, "MaxPool2d")
    own(cls, "forward", "backward")
    return cls(kernel_size) if stride is None else cls(kernel_size, stride=stride)


def conv(sub, config, x, dy=None, params=None, grads=None):
    return drive(make_conv(sub, **config), x, dy, params, grads)


def conv_forwards(sub, config, points):
    return forwards(lambda: make_conv(sub, **config), points)


def maxpool(sub, config, x, dy=None, params=None, grads=None):
    return drive(make_maxpool(sub, **config), x, dy)


def maxpool_forwards(sub, config, points):
    return forwards(lambda: make_maxpool(sub, **config), points)


def _baseline(x, weight, bias, dy, stride, padding):
    """The grader's own im2col forward and col2im backward (plain NumPy), the yardstick of the timing."""
    n, c, h, w = x.shape
    o, _, k, _ = weight.shape
    s, p = stride, padding
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    xpad = np.zeros((n, c, h + 2 * p, w + 2 * p), x.dtype)
    xpad[:, :, p:p + h, p:p + w] = x
    cols = np.empty((n, ho, wo, c, k, k), x.dtype)
    for a in range(k):
        for b in range(k):
            cols[..., a, b] = xpad[:, :, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s].transpose(0, 2, 3, 1)
    cols = cols.reshape(n * ho * wo, -1)
    wmat = weight.reshape(o, -1)
    y = (cols @ wmat.T + bias).reshape(n, ho, wo, o).transpose(0, 3, 1, 2)
    rows = dy.transpose(0, 2, 3, 1).reshape(-1, o)
    dweight = rows.T @ cols
    dcols = (rows @ wmat).reshape(n, ho, wo, c, k, k)
    dxpad = np.zeros_like(xpad)
    for a in range(k):
        for b in range(k):
            dxpad[:, :, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s] += dcols[..., a, b].transpose(0, 3, 1, 2)
    return y, dxpad[:, :, p:p + h, p:p + w], dweight, rows.sum(axis=0)


def timing(sub, config, x, params, dy, repeats):
    """The student's forward + backward and the grader's im2col, interleaved, fastest of each; and
    what the student's layer returned on the last run (the grader checks it)."""
    import time

    layer = make_conv(sub, **config)
    best = {"baseline": float("inf"), "yours": float("inf")}
    total, out = 0.0, None
    for _ in range(repeats):
        start = time.perf_counter()
        _baseline(x, params["weight"], params["bias"], dy, config["stride"], config["padding"])
        middle = time.perf_counter()
        out = drive(layer, x, dy, params)
        stop = time.perf_counter()
        best["baseline"], best["yours"] = min(best["baseline"], middle - start), min(best["yours"], stop - middle)
        total += stop - start
    return {"baseline": best["baseline"], "yours": best["yours"], "total": total, "y": out["y"], "dx": out["dx"]}
