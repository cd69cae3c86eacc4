"""Lab 1 graded items: Linear and ReLU. Runs in the grader's process only.

Each item draws fresh inputs (batch sizes 2, odd and large; several feature counts; float64 and
float32), has the student's process run its layers on them, and compares what comes back with
plain NumPy computed here from the untouched inputs.
"""

import numpy as np

from tinynet.grading import Checks, Fail, expect_close, expect_dtype, expect_unchanged, gradient_check

CHECKS = Checks(1, "Linear and ReLU, forward and backward", time_limit=60)


def batches(rng):
    """(m, dtype) cases: a batch of 2, an odd one, a large one in float32."""
    return [(2, np.float64), (int(rng.choice([3, 5, 7, 9, 11, 13])), np.float64),
            (int(rng.integers(100, 300)), np.float32)]


def linear_case(rng, m, dtype, bias=True):
    """Inputs for one Linear run: config, x, weight, bias, dy (in != out, so a transpose shows)."""
    n_in = int(rng.integers(2, 12))
    n_out = int(rng.choice([k for k in range(2, 12) if k != n_in]))
    x = rng.standard_normal((m, n_in)).astype(dtype)
    params = {"weight": rng.standard_normal((n_in, n_out)).astype(dtype)}
    if bias:
        params["bias"] = rng.standard_normal(n_out).astype(dtype)
    dy = rng.standard_normal((m, n_out)).astype(dtype)
    config = {"in_features": n_in, "out_features": n_out, "bias": bias, "dtype": np.dtype(dtype).name}
    return config, x, params, dy


def relu_input(rng, shape, dtype=np.float64):
    x = rng.standard_normal(shape)
    x += np.where(x >= 0, 0.1, -0.1)  # keep ReLU's kink away from every entry
    return x.astype(dtype)


def f64(a):
    return np.asarray(a, dtype=np.float64)


@CHECKS.item("Linear.forward: y = x @ weight + bias; x left unchanged")
def linear_forward(student):
    rng = student.rng
    cases = [(m, dt, True) for m, dt in batches(rng)] + [(int(rng.integers(3, 9)), np.float64, False)]
    for m, dtype, bias in cases:
        config, x, params, _ = linear_case(rng, m, dtype, bias)
        out = student.run("linear", config=config, x=x.copy(), params=params)
        expect_unchanged("x (Linear.forward's input)", out["x"], x)
        want = f64(x) @ f64(params["weight"])
        what = f"y for a batch of {m} ({np.dtype(dtype).name}{'' if bias else ', bias=False'})"
        expect_close(what, out["y"], want + f64(params["bias"]) if bias else want,
                     mistakes={"missing_bias": want} if bias else None)


@CHECKS.item("Linear.backward: dx = dy @ weight.T; dy left unchanged")
def linear_backward_dx(student):
    for m, dtype in batches(student.rng):
        config, x, params, dy = linear_case(student.rng, m, dtype)
        out = student.run("linear", config=config, x=x, params=params, dy=dy.copy())
        expect_unchanged("dy (Linear.backward's input)", out["dy"], dy, "dy_modified")
        expect_close(f"dx for a batch of {m}", out["dx"], f64(dy) @ f64(params["weight"]).T, batch=m)


@CHECKS.item("Linear.backward: weight.grad = x.T @ dy, bias.grad = dy.sum(axis=0)")
def linear_backward_params(student):
    for m, dtype in batches(student.rng):
        config, x, params, dy = linear_case(student.rng, m, dtype)
        out = student.run("linear", config=config, x=x, params=params, dy=dy)
        x64, dy64 = f64(x), f64(dy)
        expect_close(f"weight.grad for a batch of {m}", out["grads"]["weight"], x64.T @ dy64, batch=m,
                     mistakes={"sum_over_batch": x64[:1].T @ dy64[:1]})
        expect_close(f"bias.grad for a batch of {m}", out["grads"]["bias"], dy64.sum(axis=0), batch=m,
                     mistakes={"sum_over_batch": dy64[0]})


@CHECKS.item("Linear.backward adds into .grad (+=), it does not overwrite it")
def linear_accumulates(student):
    rng = student.rng
    config, x, params, dy = linear_case(rng, int(rng.choice([5, 7, 9])), np.float64)
    before = {"weight": rng.standard_normal(params["weight"].shape), "bias": rng.standard_normal(params["bias"].shape)}
    out = student.run("linear", config=config, x=x, params=params, dy=dy,
                      grads={k: v.copy() for k, v in before.items()})  # as if an earlier backward had left these
    dw, db = x.T @ dy, dy.sum(axis=0)
    expect_close("weight.grad after a backward on top of an earlier gradient", out["grads"]["weight"],
                 before["weight"] + dw, mistakes={"grad_overwritten": dw})
    expect_close("bias.grad after a backward on top of an earlier gradient", out["grads"]["bias"],
                 before["bias"] + db, mistakes={"grad_overwritten": db})


@CHECKS.item("ReLU: y = max(x, 0), dx = dy * (x > 0); x and dy left unchanged")
def relu(student):
    rng = student.rng
    for m, dtype in batches(rng):
        x = relu_input(rng, (m, int(rng.integers(2, 10))), dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        out = student.run("relu", config={}, x=x.copy(), dy=dy.copy())
        expect_unchanged("x (ReLU.forward's input)", out["x"], x)
        expect_unchanged("dy (ReLU.backward's input)", out["dy"], dy, "dy_modified")
        expect_close(f"ReLU y for a batch of {m}", out["y"], np.maximum(f64(x), 0))
        expect_close(f"ReLU dx for a batch of {m}", out["dx"], f64(dy) * (x > 0),
                     mistakes={"relu_times_output": f64(dy) * np.maximum(f64(x), 0)})


@CHECKS.item("float32 in, float32 out: y, dx and the gradients keep the dtype")
def dtypes(student):
    rng = student.rng
    config, x, params, dy = linear_case(rng, int(rng.choice([5, 7])), np.float32)
    out = student.run("linear", config=config, x=x, params=params, dy=dy)
    expect_dtype("Linear y", out["y"], np.float32)
    expect_dtype("Linear dx", out["dx"], np.float32)
    expect_dtype("Linear weight.grad", out["grads"]["weight"], np.float32)
    expect_dtype("Linear bias.grad", out["grads"]["bias"], np.float32)
    x = relu_input(rng, (5, 4), np.float32)
    out = student.run("relu", config={}, x=x, dy=x.copy())
    expect_dtype("ReLU y", out["y"], np.float32)
    expect_dtype("ReLU dx", out["dx"], np.float32)


@CHECKS.item("gradcheck: your backward agrees with central differences of your forward (float64)")
def gradcheck(student):
    rng = student.rng
    config, x, params, _ = linear_case(rng, 3, np.float64)
    r = rng.standard_normal((3, config["out_features"]))
    checked = gradient_check(student, "linear", "linear_forwards", config, x, params, r, "Linear")
    x = relu_input(rng, (3, 4))
    gradient_check(student, "relu", "relu_forwards", {}, x, {}, rng.standard_normal(x.shape), "ReLU")
    return "checked with float64 central differences: Linear (" + ", ".join(checked) + "), ReLU (input)"
