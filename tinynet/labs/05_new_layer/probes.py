"""Lab 5, the student's side: builds the student's layer, sets the grader's hyperparameters, runs it.

The layer's class must be named after one of CHOICES; tinynet's own layers of those names (if
any) are unavailable in this process.
"""

import numpy as np

from tinynet_lab_kit import Refused, drive, forwards, need, own, param_dict

# name -> the hyperparameter attributes the grader sets (PyTorch's names)
CHOICES = {"LeakyReLU": ["negative_slope"], "ELU": ["alpha"], "CELU": ["alpha"], "SELU": [], "Softplus": ["beta"],
           "SiLU": [], "Swish": ["beta"], "Mish": [], "GELU": [], "PReLU": [], "LayerNorm": ["eps"]}
BLOCK = list(CHOICES)


def built(sub, attrs=None):
    layer = need(sub, "build")(np.random.default_rng(0))
    name = type(layer).__name__
    if name not in CHOICES:
        raise Refused(f"build() returned a {name}: lab 5 grades one of {', '.join(CHOICES)} (name your class after "
                      "the one you chose)")
    own(type(layer), "forward", "backward")
    for attr, value in (attrs or {}).items():
        if not hasattr(layer, attr):
            raise Refused(f"your {name} has no attribute {attr!r}: keep the hyperparameter there (PyTorch's name), "
                          "and read it in forward and backward")
        setattr(layer, attr, value)
    return layer


def describe(sub):
    layer = built(sub)
    return {"name": type(layer).__name__, "params": {n: list(p.data.shape) for n, p in param_dict(layer).items()},
            "approximate": str(getattr(layer, "approximate", "none"))}


def run(sub, config, x, dy=None, params=None, grads=None):
    return drive(built(sub, config), x, dy, params, grads)


def run_forwards(sub, config, points):
    return forwards(lambda: built(sub, config), points)


def refuses(sub, config, x, bad):
    layer = built(sub, config)
    layer(x)
    try:
        layer(bad)
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)[:300], "name": type(layer).__name__}
    return {"raised": None, "message": "", "name": type(layer).__name__}
