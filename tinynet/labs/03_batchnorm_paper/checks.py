"""Lab 3 graded items: BatchNorm forward and the paper's step-by-step backward.

Runs in the grader's process only. Expected values are computed here in float64 from the
untouched inputs. Lab 4's checks reuse the formulas below.
"""

import numpy as np

from tinynet.grading import Checks, Fail, expect_close, expect_dtype, expect_unchanged, is_close

CHECKS = Checks(3, "BatchNorm forward, and backward in the paper's step-by-step form", time_limit=60)


def sizes(rng):
    return [2, int(rng.choice([3, 5, 7, 9, 11])), int(rng.integers(64, 200))]


def case(rng, m, dtype=np.float64, scale=0.3, offset=1.0):
    """config, x, params (gamma far from 1, beta far from 0), dy: for one batch of m rows."""
    c = int(rng.integers(2, 9))
    eps = float(rng.uniform(0.05, 0.2))  # large on purpose: with var ~ 0.1, eps inside and outside the root differ
    x = offset + scale * rng.standard_normal((m, c)) * rng.uniform(0.5, 1.5, c)
    params = {"gamma": 1.5 + 0.5 * rng.standard_normal(c), "beta": rng.standard_normal(c)}
    dy = rng.standard_normal((m, c))
    config = {"num_features": c, "eps": eps, "momentum": float(rng.uniform(0.05, 0.5)), "dtype": np.dtype(dtype).name}
    cast = {k: v.astype(dtype) for k, v in params.items()}
    return config, x.astype(dtype), cast, dy.astype(dtype)


def f64(a):
    return np.asarray(a, dtype=np.float64)


def stats(x):
    x = f64(x)
    mu = x.mean(axis=0)
    return mu, ((x - mu) ** 2).mean(axis=0)


def normalise(x, gamma, beta, eps):
    """The right training-mode forward."""
    mu, var = stats(x)
    return f64(gamma) * (f64(x) - mu) / np.sqrt(var + eps) + f64(beta)


def dx_parts(x, dy, gamma, eps):
    """The paper's backward, step by step, in float64: dxhat, xc, inv_std, dvar, dmu, dx."""
    x, dy, gamma = f64(x), f64(dy), f64(gamma)
    m = len(x)
    mu, var = stats(x)
    xc, inv_std = x - mu, 1 / np.sqrt(var + eps)
    dxhat = dy * gamma
    dvar = (dxhat * xc).sum(axis=0) * -0.5 * inv_std**3
    dmu = (-dxhat * inv_std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)
    dx = dxhat * inv_std + dvar * 2 * xc / m + dmu / m
    return dxhat, xc, inv_std, dvar, dmu, dx


def dx_mistakes(x, dy, gamma, eps):
    """What dx comes out as under each classic mistake of the training-mode backward."""
    m = len(x)
    dxhat, xc, inv_std, dvar, dmu, _ = dx_parts(x, dy, gamma, eps)
    xhat, dy = xc * inv_std, f64(dy)
    return {
        "stats_as_constants": dxhat * inv_std,
        "missing_dmu": dxhat * inv_std + dvar * 2 * xc / m,
        "missing_dvar": dxhat * inv_std + (-dxhat * inv_std).sum(axis=0) / m,
        "missing_1_over_m": dxhat * inv_std + dvar * 2 * xc + dmu,
        "sums_over_dy": inv_std / m * (m * dxhat - dy.sum(axis=0) - xhat * (dy * xhat).sum(axis=0)),
    }


def forward_first(out, x, params, eps):
    """Stop a backward item with a pointer when the forward it builds on is already wrong."""
    if not is_close(out["y"], normalise(x, params["gamma"], params["beta"], eps), 1e-4, 1e-6):
        raise Fail("the forward output is already wrong (see the forward items): backward is graded "
                   "on top of a right forward, so fix forward first")


def check_backward_dx(student, probe="bn", intermediates=True):
    for m in sizes(student.rng):
        config, x, params, dy = case(student.rng, m)
        out = student.run(probe, config=config, x=x, params=params, dy=dy.copy())
        forward_first(out, x, params, config["eps"])
        expect_unchanged("dy (backward's input)", out["dy"], dy, "dy_modified")
        _, _, _, dvar, dmu, dx = dx_parts(x, dy, params["gamma"], config["eps"])
        expect_close(f"dx for a batch of {m}", out["dx"], dx, batch=m, rtol=1e-6, atol=1e-9,
                     mistakes=dx_mistakes(x, dy, params["gamma"], config["eps"]))
        if intermediates:
            if out.get("dvar") is None or out.get("dmu") is None:
                raise Fail("your backward did not keep its intermediates: set self.dvar = dvar and self.dmu = dmu "
                           "(each of shape (C,)) in the training-mode backward")
            expect_close(f"dvar for a batch of {m}", out["dvar"], dvar, batch=m, rtol=1e-6, atol=1e-9)
            expect_close(f"dmu for a batch of {m}", out["dmu"], dmu, batch=m, rtol=1e-6, atol=1e-9)


def check_backward_params(student, probe="bn"):
    """gamma.grad and beta.grad: the right sums, added to what was there."""
    m = int(student.rng.choice([5, 7, 9]))
    config, x, params, dy = case(student.rng, m)
    c = config["num_features"]
    before = {"gamma": student.rng.standard_normal(c), "beta": student.rng.standard_normal(c)}
    out = student.run(probe, config=config, x=x, params=params, dy=dy, grads={k: v.copy() for k, v in before.items()})
    forward_first(out, x, params, config["eps"])
    mu, var = stats(x)
    xhat = (x - mu) / np.sqrt(var + config["eps"])
    dgamma, dbeta = (dy * xhat).sum(axis=0), dy.sum(axis=0)
    bg, bb = before["gamma"], before["beta"]
    expect_close("gamma.grad", out["grads"]["gamma"], bg + dgamma,
                 mistakes={"grad_overwritten": dgamma, "extra_1_over_m": bg + dgamma / m,
                           "sum_over_batch": bg + dy[0] * xhat[0]})
    expect_close("beta.grad", out["grads"]["beta"], bb + dbeta,
                 mistakes={"grad_overwritten": dbeta, "extra_1_over_m": bb + dbeta / m, "sum_over_batch": bb + dy[0]})


def eval_case(rng, m):
    config, x, params, dy = case(rng, m)
    c = config["num_features"]
    running = {"mean": rng.standard_normal(c), "var": rng.uniform(0.05, 2.0, c)}
    return config, x, params, dy, running


def check_backward_eval(student, probe="bn"):
    """Eval mode: y is affine in x, dx = dy * gamma / sqrt(running_var + eps)."""
    config, x, params, dy, running = eval_case(student.rng, int(student.rng.choice([5, 7, 9])))
    out = student.run(probe, config=config, x=x, params=params, dy=dy, train=False, running=running)
    eps, gamma, m = config["eps"], params["gamma"], len(x)
    inv = 1 / np.sqrt(running["var"] + eps)
    if not is_close(out["y"], gamma * (x - running["mean"]) * inv + params["beta"], 1e-6, 1e-9):
        raise Fail("the eval-mode forward is already wrong (see the forward items): fix it first")
    xhat, dxhat = (x - running["mean"]) * inv, dy * gamma
    with_running_stats = inv / m * (m * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    batch_formula = dx_parts(x, dy, gamma, eps)[-1]
    expect_close("dx in eval mode", out["dx"], dy * gamma * inv,
                 mistakes=[("eval_backward", with_running_stats), ("eval_backward", batch_formula)])


def check_dtypes(student, probe="bn"):
    m = int(student.rng.integers(20, 100))
    config, x, params, dy = case(student.rng, m, np.float32)
    out = student.run(probe, config=config, x=x, params=params, dy=dy)
    expect_dtype("y", out["y"], np.float32)
    expect_dtype("dx", out["dx"], np.float32)
    expect_dtype("gamma.grad", out["grads"]["gamma"], np.float32)
    expect_dtype("running_mean", out["running_mean"], np.float32)
    expect_dtype("running_var", out["running_var"], np.float32)
    expect_close("dx in float32", out["dx"], dx_parts(x, dy, params["gamma"], config["eps"])[-1], batch=m)
    config, x, params, dy, running = eval_case(student.rng, 5)
    config["dtype"] = "float32"
    out = student.run(probe, config=config, x=x.astype(np.float32), train=False,
                      params={k: v.astype(np.float32) for k, v in params.items()},
                      running={k: v.astype(np.float32) for k, v in running.items()})
    expect_dtype("y in eval mode", out["y"], np.float32)


@CHECKS.item("forward (training): y = gamma * (x - mu) / sqrt(var + eps) + beta, biased var; x left unchanged")
def forward_train(student):
    for m in sizes(student.rng):
        config, x, params, _ = case(student.rng, m)
        out = student.run("bn", config=config, x=x.copy(), params=params)
        expect_unchanged("x (forward's input)", out["x"], x)
        eps, gamma, beta = config["eps"], params["gamma"], params["beta"]
        mu, var = stats(x)
        expect_close(f"y for a batch of {m}", out["y"], normalise(x, gamma, beta, eps), batch=m, mistakes={
            "eps_outside_sqrt": gamma * (x - mu) / (np.sqrt(var) + eps) + beta,
            "unbiased_normalisation": gamma * (x - mu) / np.sqrt(var * m / (m - 1) + eps) + beta,
            "gamma_times_x": gamma * x + beta,
        })
    # float32 data with a large mean and small spread: E[x^2] - E[x]^2 loses every digit
    config, x, params, _ = case(student.rng, 64, np.float32, scale=0.1, offset=300.0)
    config["eps"] = 1e-5
    params = {"gamma": np.ones(config["num_features"], np.float32), "beta": np.zeros(config["num_features"], np.float32)}
    out = student.run("bn", config=config, x=x, params=params)
    try:
        expect_close("y for float32 data of mean 300 and spread 0.1", out["y"], normalise(x, 1.0, 0.0, 1e-5),
                     rtol=1e-3, atol=2e-3)
    except Fail as fail:  # right in float64 above, wrong here: the variance formula cancels
        raise Fail(fail.message, "naive_variance") from None


@CHECKS.item("running statistics: momentum weighs the new batch, running_var gets the unbiased var")
def running_stats(student):
    rng = student.rng
    config, _, _, _ = case(rng, 2)
    c, momentum = config["num_features"], config["momentum"]
    ms = [int(rng.choice([5, 7, 9])), 2, int(rng.integers(20, 60))]  # m / (m - 1) differs between steps
    xs = [case(rng, m)[1][:, :1].repeat(c, axis=1) * rng.uniform(0.5, 2, c) + rng.standard_normal(c) for m in ms]
    out = student.run("bn_steps", config=config, xs=xs)
    right_mean, right_var = np.zeros(c), np.ones(c)
    biased_var, rev_mean, rev_var = np.ones(c), np.zeros(c), np.ones(c)
    for x, m in zip(xs, ms):
        mu, var = stats(x)
        right_mean = (1 - momentum) * right_mean + momentum * mu
        right_var = (1 - momentum) * right_var + momentum * var * m / (m - 1)
        biased_var = (1 - momentum) * biased_var + momentum * var
        rev_mean = momentum * rev_mean + (1 - momentum) * mu
        rev_var = momentum * rev_var + (1 - momentum) * var * m / (m - 1)
    expect_close(f"running_mean after {len(xs)} batches", out["running_mean"], right_mean,
                 mistakes={"running_not_updated": np.zeros(c), "momentum_reversed": rev_mean})
    expect_close(f"running_var after {len(xs)} batches", out["running_var"], right_var,
                 mistakes={"running_not_updated": np.ones(c), "biased_running_var": biased_var,
                           "momentum_reversed": rev_var})


@CHECKS.item("forward (eval): normalises with running_mean and running_var, and leaves them unchanged")
def forward_eval(student):
    for m in (int(student.rng.choice([5, 7, 9])), 1):  # a batch of one is fine in eval mode
        config, x, params, _, running = eval_case(student.rng, m)
        out = student.run("bn", config=config, x=x.copy(), params=params, train=False,
                          running={k: v.copy() for k, v in running.items()})
        expect_unchanged("x (forward's input)", out["x"], x)
        eps, gamma, beta = config["eps"], params["gamma"], params["beta"]
        want = gamma * (x - running["mean"]) / np.sqrt(running["var"] + eps) + beta
        mistakes = {"eps_twice": gamma * (x - running["mean"]) / np.sqrt(running["var"] + 2 * eps) + beta}
        if m > 1:
            mistakes["eval_uses_batch_stats"] = normalise(x, gamma, beta, eps)
        expect_close(f"y in eval mode for a batch of {m}", out["y"], want, mistakes=mistakes)
        if not (np.array_equal(out["running_mean"], running["mean"])
                and np.array_equal(out["running_var"], running["var"])):
            raise Fail("running_mean or running_var changed during an eval-mode forward", "eval_updates_running")


@CHECKS.item("a batch of one in training mode raises ValueError")
def batch_of_one(student):
    config, x, _, _ = case(student.rng, 5)
    out = student.run("bn_batch_of_one", config=config, x=x, one=x[:1].copy())
    if out["raised"] is None:
        raise Fail("a batch of one in training mode was accepted", "batch_of_one")
    if out["raised"] != "ValueError":
        raise Fail(f"a batch of one raised {out['raised']}: {out['message']}; expected ValueError", "batch_of_one")


@CHECKS.item("backward (training): dvar, then dmu, then dx (the paper's Algorithm 1); dy left unchanged")
def backward_dx(student):
    check_backward_dx(student)


@CHECKS.item("backward: gamma.grad += sum(dy * xhat), beta.grad += sum(dy)")
def backward_params(student):
    check_backward_params(student)


@CHECKS.item("backward (eval): dx = dy * gamma / sqrt(running_var + eps)")
def backward_eval(student):
    check_backward_eval(student)


@CHECKS.item("float32 in, float32 out: y, dx, gradients and running statistics keep the dtype")
def dtypes(student):
    check_dtypes(student)
