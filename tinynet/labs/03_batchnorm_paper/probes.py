"""Lab 3, the student's side: builds the student's BatchNorm and runs it on the grader's inputs.

tinynet's own BatchNorm is unavailable in this process (lab 4's probes reuse these functions).
"""

import numpy as np

from tinynet_lab_kit import drive, need, own

BLOCK = ["BatchNorm"]


def make(sub, num_features, eps, momentum, dtype):
    cls = need(sub, "BatchNorm")
    own(cls, "forward", "backward")
    return cls(num_features, eps=eps, momentum=momentum, dtype=np.dtype(dtype))


def with_running(layer, running):
    if running is not None:
        layer.running_mean, layer.running_var = running["mean"], running["var"]
    return layer


def bn(sub, config, x, dy=None, params=None, grads=None, train=True, running=None):
    layer = with_running(make(sub, **config), running)
    out = drive(layer, x, dy, params, grads, train)
    out.update(running_mean=layer.running_mean, running_var=layer.running_var)
    if dy is not None:
        out.update(dvar=getattr(layer, "dvar", None), dmu=getattr(layer, "dmu", None))
    return out


def bn_steps(sub, config, xs):
    """Training forwards on each batch in turn; the running statistics after them."""
    layer = make(sub, **config).train()
    for x in xs:
        layer(x)
    return {"running_mean": layer.running_mean, "running_var": layer.running_var}


def bn_batch_of_one(sub, config, x, one):
    """A proper batch, then a batch of one, in training mode: what the second one raised."""
    layer = make(sub, **config).train()
    layer(x)
    try:
        layer(one)
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)[:300]}
    return {"raised": None, "message": ""}
