"""Lab 1 graded items: Linear and ReLU. Expected values are computed here with plain NumPy."""

import numpy as np

import tinynet as tn
from tinynet.grading import Checks, Fail, expect_close, expect_dtype, need

CHECKS = Checks(1, "Linear and ReLU, forward and backward")

N, IN, OUT = 5, 4, 3  # in != out, so a transposed weight cannot pass by accident


def linear(sub, seed=0, bias=True, dtype=np.float64):
    """The student's Linear with known weights: returns (layer, W, b)."""
    rng = np.random.default_rng(seed)
    layer = need(sub, "Linear")(IN, OUT, bias=bias, rng=rng, dtype=dtype)
    W = rng.standard_normal((IN, OUT)).astype(dtype)
    b = rng.standard_normal(OUT).astype(dtype)
    layer.weight.data = W.copy()
    if bias:
        layer.bias.data = b.copy()
    return layer, W, b


def batch(seed, shape, dtype=np.float64):
    x = np.random.default_rng(seed).standard_normal(shape)
    x[np.abs(x) < 0.05] += 0.1  # keep ReLU's kink away from every entry
    return x.astype(dtype)


@CHECKS.item("Linear.forward: y = x @ weight + bias")
def linear_forward(sub):
    layer, W, b = linear(sub)
    for m in (N, 1):
        x = batch(1, (m, IN))
        x_before = x.copy()
        y = layer(x)
        if not np.array_equal(x, x_before):
            raise Fail("Linear.forward changed its input x", "input_modified")
        expect_close(f"y for a batch of {m}", y, x @ W + b, mistakes={"missing_bias": x @ W})
    layer, W, _ = linear(sub, bias=False)
    x = batch(2, (N, IN))
    expect_close("y of Linear(bias=False)", layer(x), x @ W)


@CHECKS.item("Linear.backward: dx = dy @ weight.T")
def linear_backward_dx(sub):
    layer, W, _ = linear(sub)
    x, dy = batch(3, (N, IN)), batch(4, (N, OUT))
    layer(x)
    expect_close("dx", layer.backward(dy), dy @ W.T, batch=N)


@CHECKS.item("Linear.backward: weight.grad = x.T @ dy, bias.grad = dy.sum(axis=0)")
def linear_backward_params(sub):
    layer, _, _ = linear(sub)
    layer.zero_grad()
    x, dy = batch(5, (N, IN)), batch(6, (N, OUT))
    layer(x)
    layer.backward(dy)
    expect_close("weight.grad", layer.weight.grad, x.T @ dy, batch=N,
                 mistakes={"sum_over_batch": x[:1].T @ dy[:1]})
    expect_close("bias.grad", layer.bias.grad, dy.sum(axis=0), batch=N,
                 mistakes={"sum_over_batch": dy[0]})


@CHECKS.item("Linear.backward adds into .grad (+=), it does not overwrite it")
def linear_accumulates(sub):
    layer, _, _ = linear(sub)
    before_w, before_b = np.full((IN, OUT), 0.5), np.full(OUT, -0.25)
    layer.weight.grad = before_w.copy()  # as if an earlier backward had left these
    layer.bias.grad = before_b.copy()
    x, dy = batch(7, (N, IN)), batch(8, (N, OUT))
    layer(x)
    layer.backward(dy)
    expect_close("weight.grad after a backward on top of an earlier gradient", layer.weight.grad, before_w + x.T @ dy,
                 mistakes={"grad_overwritten": x.T @ dy})
    expect_close("bias.grad after a backward on top of an earlier gradient", layer.bias.grad, before_b + dy.sum(axis=0),
                 mistakes={"grad_overwritten": dy.sum(axis=0)})


@CHECKS.item("ReLU: y = max(x, 0), dx = dy * (x > 0), x left unchanged")
def relu(sub):
    layer = need(sub, "ReLU")()
    x, dy = batch(9, (N, IN)), batch(10, (N, IN))
    x_before = x.copy()
    y = layer(x)
    if not np.array_equal(x, x_before):
        raise Fail("ReLU.forward changed its input x", "input_modified")
    expect_close("y", y, np.maximum(x_before, 0))
    expect_close("dx", layer.backward(dy), dy * (x_before > 0), mistakes={"relu_times_output": dy * np.maximum(x_before, 0)})


@CHECKS.item("float32 in, float32 out: y, dx and the gradients keep the dtype")
def dtypes(sub):
    layer, _, _ = linear(sub, dtype=np.float32)
    x, dy = batch(11, (N, IN), np.float32), batch(12, (N, OUT), np.float32)
    expect_dtype("Linear y", layer(x), np.float32)
    expect_dtype("Linear dx", layer.backward(dy), np.float32)
    expect_dtype("Linear weight.grad", layer.weight.grad, np.float32)
    expect_dtype("Linear bias.grad", layer.bias.grad, np.float32)
    relu = need(sub, "ReLU")()
    expect_dtype("ReLU y", relu(x), np.float32)
    expect_dtype("ReLU dx", relu.backward(x), np.float32)


@CHECKS.item("tinynet.gradcheck passes on your Linear and your ReLU")
def gradcheck(sub):
    checked = []
    for name, layer, x in (
        ("Linear", linear(sub, seed=13)[0], batch(14, (N, IN))),
        ("ReLU", need(sub, "ReLU")(), batch(15, (N, IN))),
    ):
        try:
            tn.gradcheck(layer, x)
        except AssertionError as exc:
            raise Fail(str(exc)) from None  # it names the layer and the worst entry
        checked.append(name)
    return "gradcheck compared every analytic gradient with float64 central differences: " + ", ".join(checked)
