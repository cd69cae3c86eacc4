"""Lab 5 graded items: any new layer, proven with gradcheck and held to the Layer contract."""

import numpy as np

import tinynet as tn
from tinynet.grading import Checks, Fail, as_array, expect_close, expect_dtype, need

CHECKS = Checks(5, "A new layer of your choice, proven with gradcheck")

N, D = 5, 6


def built(sub, seed=0):
    layer = need(sub, "build")(np.random.default_rng(seed))
    if not isinstance(layer, tn.Layer):
        raise Fail(f"build() should return a tinynet Layer, got {type(layer).__name__}")
    return layer


def batch(seed, dtype=np.float64, m=N):
    x = np.random.default_rng(seed).standard_normal((m, D))
    x += np.where(x >= 0, 0.2, -0.2)  # no entry near 0, where ReLU-like layers have a kink
    return x.astype(dtype)


def run(layer, x, dy_seed):
    y = layer(x)
    dy = np.random.default_rng(dy_seed).standard_normal(np.shape(y)).astype(y.dtype)
    return y, dy, layer.backward(dy)


@CHECKS.item("build(rng) returns a Layer whose forward and backward run on (N, 6) arrays")
def runs(sub):
    layer = built(sub)
    for m in (N, 2):  # 2, not 1: a BatchNorm-like layer may rightly refuse a batch of one
        y, _, dx = run(layer, batch(1, np.float32, m), 2)
        as_array("y", y)
        if np.shape(y)[0] != m:
            raise Fail(f"y has shape {np.shape(y)} for a batch of {m}: the batch axis must stay first and keep its size")
        if np.shape(as_array("dx", dx)) != (m, D):
            raise Fail(f"dx has shape {np.shape(dx)}, expected the input's shape {(m, D)}")
    return f"graded layer: {layer!r}"


@CHECKS.item("tinynet.gradcheck passes: the input and every parameter, in float64")
def gradcheck(sub):
    layer = built(sub, seed=3)
    try:
        tn.gradcheck(layer, batch(4))
    except AssertionError as exc:
        raise Fail(str(exc)) from None
    names = [name for name, _ in layer.named_parameters()]
    return "checked: input" + "".join(f", {n}" for n in names)


@CHECKS.item("parameter gradients are added into .grad (+=)")
def accumulates(sub):
    layer = built(sub, seed=5)
    x = batch(6, np.float32)
    layer.zero_grad()
    run(layer, x, 7)
    params = [(name, p, np.array(p.grad, dtype=np.float64)) for name, p in layer.named_parameters()]
    if not params:
        return "your layer has no parameters: nothing to accumulate"
    for _, p, _ in params:
        p.grad = np.full(p.grad.shape, 0.5, dtype=p.grad.dtype)
    run(layer, x, 7)
    for name, p, once in params:
        expect_close(f"{name}.grad after a backward on top of 0.5", p.grad, 0.5 + once, rtol=1e-5, atol=1e-6,
                     mistakes={"grad_overwritten": once})


@CHECKS.item("float32 stays float32, and forward leaves its input unchanged")
def dtypes(sub):
    layer = built(sub, seed=8)
    x = batch(9, np.float32)
    x_before = x.copy()
    y, dy, dx = run(layer, x, 10)
    if not np.array_equal(x, x_before):
        raise Fail("forward changed its input x", "input_modified")
    expect_dtype("y", y, np.float32)
    expect_dtype("dx", dx, np.float32)
    for name, p in layer.named_parameters():
        expect_dtype(f"{name}.grad", p.grad, np.float32)


@CHECKS.item("an integer input is refused with TypeError naming the layer")
def refuses(sub):
    layer = built(sub, seed=11)
    layer(batch(12, np.float32))  # a proper input must work first
    try:
        layer(np.ones((N, D), dtype=np.int64))
    except TypeError as exc:
        if type(layer).__name__ not in str(exc):
            raise Fail(f"the TypeError should name the layer ({type(layer).__name__}); it says: {exc}",
                       "refuse_bad_input") from None
        return
    except Exception as exc:
        raise Fail(f"an integer input raised {type(exc).__name__}: {exc}; expected TypeError", "refuse_bad_input") from None
    raise Fail("an integer input was accepted", "refuse_bad_input")
