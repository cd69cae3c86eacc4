"""Lab 5 graded items: a layer chosen from a list, checked against the grader's own formula.

Runs in the grader's process only. The grader sets the layer's hyperparameters and parameters to
values it draws, computes the forward with its own formula, and the expected gradients as float64
central differences of that formula; it also checks the student's backward against central
differences of the student's own forward (what tinynet.gradcheck does).
"""

import math

import numpy as np

from tinynet.grading import (Checks, Fail, expect_close, expect_dtype, expect_unchanged, gradient_check,
                             numeric_gradient)

CHECKS = Checks(5, "A new layer from the list, checked against the grader's formula and with gradcheck",
                time_limit=60)

D = 6
_erf = np.vectorize(math.erf)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def softplus(v, beta=1.0):
    return np.logaddexp(0, beta * v) / beta


def formula(name, x, h, p):
    """The grader's forward for each choice, float64. h: hyperparameters, p: parameters."""
    if name == "LeakyReLU":
        return np.where(x > 0, x, h["negative_slope"] * x)
    if name == "ELU":
        return np.where(x > 0, x, h["alpha"] * np.expm1(np.minimum(x, 0)))
    if name == "CELU":
        return np.where(x > 0, x, h["alpha"] * np.expm1(np.minimum(x, 0) / h["alpha"]))
    if name == "SELU":
        alpha, scale = 1.6732632423543772, 1.0507009873554805
        return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
    if name == "Softplus":
        return softplus(x, h["beta"])
    if name == "SiLU":
        return x * sigmoid(x)
    if name == "Swish":
        return x * sigmoid(h["beta"] * x)
    if name == "Mish":
        return x * np.tanh(softplus(x))
    if name == "GELU":
        if h["approximate"] == "tanh":
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if name == "PReLU":
        return np.where(x > 0, x, p["weight"] * x)
    if name == "LayerNorm":
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + h["eps"]) * p["weight"] + p["bias"]
    raise ValueError(name)


def setting(student):
    """What the student chose, and the hyperparameters and parameters the grader draws for it."""
    info = student.run("describe")
    name, rng = info["name"], student.rng
    attrs = {"LeakyReLU": {"negative_slope": rng.uniform(0.05, 0.3)}, "ELU": {"alpha": rng.uniform(0.5, 2.0)},
             "CELU": {"alpha": rng.uniform(0.5, 2.0)}, "Softplus": {"beta": rng.uniform(0.5, 2.0)},
             "Swish": {"beta": rng.uniform(0.5, 2.0)}, "LayerNorm": {"eps": rng.uniform(1e-3, 1e-1)}}.get(name, {})
    attrs = {k: float(v) for k, v in attrs.items()}
    hyper = dict(attrs, approximate=info["approximate"])
    if name == "GELU" and hyper["approximate"] not in ("none", "tanh"):
        raise Fail(f"GELU.approximate is {hyper['approximate']!r}; expected 'none' or 'tanh' (PyTorch's)")
    want = {"PReLU": {"weight"}, "LayerNorm": {"weight", "bias"}}.get(name, set())
    if set(info["params"]) != want:
        raise Fail(f"your {name} has parameters {sorted(info['params'])}; expected {sorted(want)} (PyTorch's names)")
    params = {n: rng.uniform(0.05, 0.5, tuple(shape)) if name == "PReLU" else rng.standard_normal(tuple(shape))
              for n, shape in info["params"].items()}
    for n, shape in info["params"].items():
        ok = tuple(shape) in ((D,),) or (name == "PReLU" and tuple(shape) == (1,))
        if not ok:
            raise Fail(f"{name}.{n} has shape {tuple(shape)}; expected {(D,)}" + (" or (1,)" if name == "PReLU" else ""))
    return name, attrs, hyper, params


def batch(rng, m, dtype=np.float64):
    x = 2 * rng.standard_normal((m, D))
    x += np.where(x >= 0, 0.1, -0.1)  # no entry near 0, where ReLU-like layers have a kink
    return x.astype(dtype)


def sizes(rng):
    return [2, int(rng.choice([3, 5, 7, 9])), int(rng.integers(50, 150))]


def described(name, attrs, params):
    extra = ", ".join(f"{k}={v:.4g}" for k, v in attrs.items())
    return f"{name}({extra})" + (f" with parameters {', '.join(params)}" if params else "")


@CHECKS.item("build(rng) returns a layer from the list, with its own forward and backward, for (N, 6) arrays")
def runs(student):
    name, attrs, _, params = setting(student)
    for m in sizes(student.rng):
        x = batch(student.rng, m)
        out = student.run("run", config=attrs, x=x, params=params, dy=np.ones((m, D)))
        if np.shape(out["y"]) != (m, D) or np.shape(out["dx"]) != (m, D):
            raise Fail(f"for a batch of {m}: y has shape {np.shape(out['y'])} and dx {np.shape(out['dx'])}; "
                       f"expected both {(m, D)}")
    return f"graded layer: {described(name, attrs, params)}"


@CHECKS.item("forward matches the grader's formula (float64 and float32); x left unchanged")
def forward(student):
    name, attrs, hyper, params = setting(student)
    for m, dtype in [(m, np.float64) for m in sizes(student.rng)] + [(40, np.float32)]:
        x = batch(student.rng, m, dtype)
        out = student.run("run", config=attrs, x=x.copy(), params={k: v.astype(dtype) for k, v in params.items()})
        expect_unchanged("x (forward's input)", out["x"], x)
        p64 = {k: v.astype(dtype).astype(np.float64) for k, v in params.items()}
        expect_close(f"{name} y for a batch of {m} ({np.dtype(dtype).name})", out["y"],
                     formula(name, x.astype(np.float64), hyper, p64), rtol=1e-6, atol=1e-9)


@CHECKS.item("backward matches central differences of the grader's formula (dx and parameters); dy unchanged")
def backward(student):
    name, attrs, hyper, params = setting(student)
    for m in sizes(student.rng)[:2] + [int(student.rng.integers(12, 30))]:
        x, dy = batch(student.rng, m), student.rng.standard_normal((m, D))
        out = student.run("run", config=attrs, x=x, params=params, dy=dy.copy())
        expect_unchanged("dy (backward's input)", out["dy"], dy, "dy_modified")
        dx = numeric_gradient(lambda v: float((dy * formula(name, v, hyper, params)).sum()), x)
        expect_close(f"{name} dx for a batch of {m}", out["dx"], dx, batch=m, rtol=1e-5, atol=1e-7)
        for pname, value in params.items():
            want = numeric_gradient(lambda v: float((dy * formula(name, x, hyper, dict(params, **{pname: v}))).sum()),
                                    value)
            expect_close(f"{pname}.grad for a batch of {m}", out["grads"][pname], want, batch=m, rtol=1e-5, atol=1e-7)


@CHECKS.item("gradcheck: your backward agrees with central differences of your forward (float64)")
def gradcheck(student):
    name, attrs, _, params = setting(student)
    x = batch(student.rng, 3)
    checked = gradient_check(student, "run", "run_forwards", attrs, x, params, student.rng.standard_normal(x.shape),
                             name)
    return "checked: " + ", ".join(checked)


@CHECKS.item("parameter gradients are added into .grad (+=)")
def accumulates(student):
    name, attrs, _, params = setting(student)
    x, dy = batch(student.rng, 7), student.rng.standard_normal((7, D))
    once = student.run("run", config=attrs, x=x, params=params, dy=dy)["grads"]
    if not params:
        return f"{name} has no parameters: nothing to accumulate"
    before = {k: student.rng.standard_normal(v.shape) for k, v in params.items()}
    out = student.run("run", config=attrs, x=x, params=params, dy=dy, grads={k: v.copy() for k, v in before.items()})
    for pname in params:
        expect_close(f"{pname}.grad after a backward on top of an earlier gradient", out["grads"][pname],
                     before[pname] + once[pname], mistakes={"grad_overwritten": once[pname]})


@CHECKS.item("float32 stays float32: y, dx and the parameter gradients")
def dtypes(student):
    _, attrs, _, params = setting(student)
    x = batch(student.rng, 9, np.float32)
    out = student.run("run", config=attrs, x=x, params={k: v.astype(np.float32) for k, v in params.items()},
                      dy=np.ones_like(x))
    expect_dtype("y", out["y"], np.float32)
    expect_dtype("dx", out["dx"], np.float32)
    for pname, grad in out["grads"].items():
        expect_dtype(f"{pname}.grad", grad, np.float32)


@CHECKS.item("an integer input is refused with TypeError naming the layer")
def refuses(student):
    _, attrs, _, params = setting(student)
    out = student.run("refuses", config=attrs, x=batch(student.rng, 5, np.float32),
                      bad=np.ones((5, D), dtype=np.int64))
    if out["raised"] is None:
        raise Fail("an integer input was accepted", "refuse_bad_input")
    if out["raised"] != "TypeError":
        raise Fail(f"an integer input raised {out['raised']}: {out['message']}; expected TypeError", "refuse_bad_input")
    if out["name"] not in out["message"]:
        raise Fail(f"the TypeError should name the layer ({out['name']}); it says: {out['message']}",
                   "refuse_bad_input")
