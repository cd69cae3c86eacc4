"""Lab 3 graded items: BatchNorm forward and the paper's backward.

Expected values are computed here in float64 with plain NumPy; dx is checked against
central differences of the forward formula, so it never depends on the student's forward.
Lab 4's checks reuse the formulas below.
"""

import numpy as np

from tinynet.grading import Checks, Fail, expect_close, expect_dtype, is_close, need, numeric_gradient

CHECKS = Checks(3, "BatchNorm forward, and backward in the paper's step-by-step form")

M, C = 8, 3
EPS = 0.1  # large on purpose: with var ~ 0.1, eps inside and outside the root differ by ~10%


def batch(seed, m=M, scale=0.3, offset=1.0):
    rng = np.random.default_rng(seed)
    return offset + scale * rng.standard_normal((m, C)) * np.array([1.0, 0.6, 1.5])


def affine(seed):
    """gamma far from 1 and beta far from 0, so forgetting either shows."""
    rng = np.random.default_rng(seed)
    return 1.5 + 0.5 * rng.standard_normal(C), rng.standard_normal(C)


def stats(x):
    mu = x.mean(axis=0)
    return mu, ((x - mu) ** 2).mean(axis=0)


def normalise(x, gamma, beta, eps):
    """The right training-mode forward."""
    mu, var = stats(x)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def dx_parts(x, dy, gamma, eps):
    """The paper's backward, step by step: returns dxhat, xc, inv_std, dvar, dmu."""
    mu, var = stats(x)
    xc, inv_std = x - mu, 1 / np.sqrt(var + eps)
    dxhat = dy * gamma
    dvar = (dxhat * xc).sum(axis=0) * -0.5 * inv_std**3
    dmu = (-dxhat * inv_std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)
    return dxhat, xc, inv_std, dvar, dmu


def dx_mistakes(x, dy, gamma, eps):
    """What dx comes out as under each classic mistake of the training-mode backward."""
    m = len(x)
    dxhat, xc, inv_std, dvar, dmu = dx_parts(x, dy, gamma, eps)
    xhat = xc * inv_std
    return {
        "stats_as_constants": dxhat * inv_std,
        "missing_dmu": dxhat * inv_std + dvar * 2 * xc / m,
        "missing_dvar": dxhat * inv_std + (-dxhat * inv_std).sum(axis=0) / m,
        "missing_1_over_m": dxhat * inv_std + dvar * 2 * xc + dmu,
        "sums_over_dy": inv_std / m * (m * dxhat - dy.sum(axis=0) - xhat * (dy * xhat).sum(axis=0)),
    }


def expected_dx(x, dy, gamma, beta, eps):
    """dx from central differences of sum(dy * y(x)): the math, not anyone's backward."""
    return numeric_gradient(lambda v: float((dy * normalise(v, gamma, beta, eps)).sum()), x)


def layer_with(sub, gamma, beta, eps=EPS, momentum=0.1, dtype=np.float64):
    layer = need(sub, "BatchNorm")(C, eps=eps, momentum=momentum, dtype=dtype)
    layer.gamma.data = np.asarray(gamma, dtype).copy()
    layer.beta.data = np.asarray(beta, dtype).copy()
    return layer


def eval_layer(sub, seed):
    """The student's BatchNorm in eval mode with set running statistics: (layer, gamma, beta, rm, rv)."""
    gamma, beta = affine(seed)
    layer = layer_with(sub, gamma, beta)
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([0.2, 1.5, 0.05])
    layer.running_mean, layer.running_var = rm.copy(), rv.copy()
    layer.eval()
    return layer, gamma, beta, rm, rv


def forward_first(layer, x, want):
    """Run the forward a backward item needs; stop with a pointer if the forward itself is wrong."""
    if not is_close(layer(x), want, 1e-6, 1e-9):
        raise Fail("the forward output is already wrong (see the forward items): backward is graded "
                   "on top of a right forward, so fix forward first")


def check_backward_params(sub):
    """gamma.grad and beta.grad: the right sums, added to what was there."""
    gamma, beta = affine(5)
    layer = layer_with(sub, gamma, beta)
    before_g, before_b = np.full(C, 0.5), np.full(C, -0.25)
    layer.gamma.grad, layer.beta.grad = before_g.copy(), before_b.copy()
    x, dy = batch(6), np.random.default_rng(7).standard_normal((M, C))
    forward_first(layer, x, normalise(x, gamma, beta, EPS))
    layer.backward(dy)
    mu, var = stats(x)
    xhat = (x - mu) / np.sqrt(var + EPS)
    dgamma, dbeta = (dy * xhat).sum(axis=0), dy.sum(axis=0)
    expect_close("gamma.grad", layer.gamma.grad, before_g + dgamma,
                 mistakes={"grad_overwritten": dgamma, "extra_1_over_m": before_g + dgamma / M,
                           "sum_over_batch": before_g + dy[0] * xhat[0]})
    expect_close("beta.grad", layer.beta.grad, before_b + dbeta,
                 mistakes={"grad_overwritten": dbeta, "extra_1_over_m": before_b + dbeta / M,
                           "sum_over_batch": before_b + dy[0]})


def check_backward_eval(sub):
    """Eval mode: y is affine in x, dx = dy * gamma / sqrt(running_var + eps)."""
    layer, gamma, beta, rm, rv = eval_layer(sub, seed=8)
    x, dy = batch(9), np.random.default_rng(10).standard_normal((M, C))
    inv = 1 / np.sqrt(rv + EPS)
    forward_first(layer, x, gamma * (x - rm) * inv + beta)
    xhat = (x - rm) * inv
    dxhat = dy * gamma
    with_running_stats = inv / M * (M * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    batch_formula = expected_dx(x, dy, gamma, beta, EPS)
    # the training formula, with the running or with the batch statistics: both are wrong here
    expect_close("dx in eval mode", layer.backward(dy), dy * gamma * inv,
                 mistakes=[("eval_backward", with_running_stats), ("eval_backward", batch_formula)])


def check_dtypes(sub):
    layer = need(sub, "BatchNorm")(C)
    x = batch(11).astype(np.float32)
    y = layer(x)
    expect_dtype("y", y, np.float32)
    expect_dtype("dx", layer.backward(np.ones_like(x)), np.float32)
    expect_dtype("gamma.grad", layer.gamma.grad, np.float32)
    expect_dtype("running_mean", layer.running_mean, np.float32)
    expect_dtype("running_var", layer.running_var, np.float32)
    layer.eval()
    expect_dtype("y in eval mode", layer(x), np.float32)


@CHECKS.item("forward (training): y = gamma * (x - mu) / sqrt(var + eps) + beta, biased var")
def forward_train(sub):
    gamma, beta = affine(0)
    layer = layer_with(sub, gamma, beta)
    x = batch(1)
    x_before = x.copy()
    y = layer(x)
    if not np.array_equal(x, x_before):
        raise Fail("forward changed its input x", "input_modified")
    mu, var = stats(x)
    expect_close("y", y, normalise(x, gamma, beta, EPS), batch=M, mistakes={
        "eps_outside_sqrt": gamma * (x - mu) / (np.sqrt(var) + EPS) + beta,
        "unbiased_normalisation": gamma * (x - mu) / np.sqrt(var * M / (M - 1) + EPS) + beta,
        "gamma_times_x": gamma * x + beta,
    })
    # float32 data with a large mean and small spread: E[x^2] - E[x]^2 loses every digit
    layer32 = need(sub, "BatchNorm")(C)
    x32 = batch(2, m=64, scale=0.1, offset=300.0).astype(np.float32)
    try:
        expect_close("y for float32 data of mean 300 and spread 0.1", layer32(x32),
                     normalise(x32.astype(np.float64), 1.0, 0.0, 1e-5), rtol=1e-3, atol=2e-3)
    except Fail as fail:  # right in float64 above, wrong here: the variance formula cancels
        raise Fail(fail.message, "naive_variance") from None


@CHECKS.item("running statistics: momentum weighs the new batch, running_var gets the unbiased var")
def running_stats(sub):
    momentum = 0.3
    layer = layer_with(sub, *affine(3), momentum=momentum)
    right_mean, right_var = np.zeros(C), np.ones(C)
    biased_var, rev_mean, rev_var = np.ones(C), np.zeros(C), np.ones(C)
    for seed, m in ((4, M), (5, 5)):  # two batch sizes, so m / (m - 1) differs between steps
        x = batch(seed, m=m)
        layer(x)
        mu, var = stats(x)
        right_mean = (1 - momentum) * right_mean + momentum * mu
        right_var = (1 - momentum) * right_var + momentum * var * m / (m - 1)
        biased_var = (1 - momentum) * biased_var + momentum * var
        rev_mean = momentum * rev_mean + (1 - momentum) * mu
        rev_var = momentum * rev_var + (1 - momentum) * var * m / (m - 1)
    expect_close("running_mean after two batches", layer.running_mean, right_mean,
                 mistakes={"running_not_updated": np.zeros(C), "momentum_reversed": rev_mean})
    expect_close("running_var after two batches", layer.running_var, right_var,
                 mistakes={"running_not_updated": np.ones(C), "biased_running_var": biased_var,
                           "momentum_reversed": rev_var})


@CHECKS.item("forward (eval): normalises with running_mean and running_var, and leaves them unchanged")
def forward_eval(sub):
    layer, gamma, beta, rm, rv = eval_layer(sub, seed=6)
    x = batch(7)
    y = layer(x)
    expect_close("y in eval mode", y, gamma * (x - rm) / np.sqrt(rv + EPS) + beta, mistakes={
        "eval_uses_batch_stats": normalise(x, gamma, beta, EPS),
        "eps_twice": gamma * (x - rm) / np.sqrt(rv + 2 * EPS) + beta,
    })
    if not (np.array_equal(layer.running_mean, rm) and np.array_equal(layer.running_var, rv)):
        raise Fail("running_mean or running_var changed during an eval-mode forward", "eval_updates_running")
    one = layer(x[:1])  # a batch of one is fine in eval mode
    expect_close("y for a batch of one in eval mode", one, gamma * (x[:1] - rm) / np.sqrt(rv + EPS) + beta)


@CHECKS.item("a batch of one in training mode raises ValueError")
def batch_of_one(sub):
    layer = layer_with(sub, *affine(8))
    layer(batch(9))  # a proper batch must work
    try:
        layer(batch(10, m=1))
    except ValueError:
        return
    except Exception as exc:
        raise Fail(f"a batch of one raised {type(exc).__name__}: {exc}; expected ValueError", "batch_of_one") from None
    raise Fail("a batch of one in training mode was accepted", "batch_of_one")


@CHECKS.item("backward (training): dx, through dvar and dmu (the paper's Algorithm 1)")
def backward_dx(sub):
    gamma, beta = affine(11)
    for m, seed in ((M, 12), (2, 13)):  # m = 2, the smallest batch, has its own corner cases
        layer = layer_with(sub, gamma, beta)
        x, dy = batch(seed, m=m), np.random.default_rng(seed + 100).standard_normal((m, C))
        forward_first(layer, x, normalise(x, gamma, beta, EPS))
        expect_close(f"dx for a batch of {m}", layer.backward(dy), expected_dx(x, dy, gamma, beta, EPS),
                     batch=m, rtol=1e-5, atol=1e-7, mistakes=dx_mistakes(x, dy, gamma, EPS))


@CHECKS.item("backward: gamma.grad += sum(dy * xhat), beta.grad += sum(dy)")
def backward_params(sub):
    check_backward_params(sub)


@CHECKS.item("backward (eval): dx = dy * gamma / sqrt(running_var + eps)")
def backward_eval(sub):
    check_backward_eval(sub)


@CHECKS.item("float32 in, float32 out: y, dx, gradients and running statistics keep the dtype")
def dtypes(sub):
    check_dtypes(sub)
