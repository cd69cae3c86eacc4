"""Lab 2 graded items: softmax cross-entropy. Expected values are computed here with plain NumPy."""

import numpy as np

from tinynet.grading import Checks, expect_close, expect_dtype, need

CHECKS = Checks(2, "Softmax cross-entropy, numerically stable")


def oracle(z, labels):
    """Loss and gradient in float64, the log-sum-exp way."""
    z = np.asarray(z, dtype=np.float64)
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    n = len(z)
    p = np.exp(z - lse[:, None])
    onehot = np.eye(z.shape[1])[labels]
    return (lse - z[np.arange(n), labels]).mean(), (p - onehot) / n


def ordinary(seed=0, n=6, c=4, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (2 * rng.standard_normal((n, c))).astype(dtype), rng.integers(0, c, n)


# exp(1000) overflows; once shifted by the row maximum, no probability underflows
OVERFLOW = (np.array([[1000.0, 999.0, 998.0], [-5.0, 1000.0, 0.0]]), np.array([0, 1]))
# label 1 in row 0 has probability e^-1000: 0 as a float, so log(softmax) is -inf
UNDERFLOW = (np.array([[0.0, -1000.0, 3.0], [1000.0, -1000.0, 0.0]]), np.array([1, 1]))


@CHECKS.item("forward: the mean over the batch of -log softmax(logits)[label]")
def loss(sub):
    crit = need(sub, "SoftmaxCrossEntropy")()
    for n in (6, 1):
        z, y = ordinary(n=n)
        expect_close(f"loss of a batch of {n}", crit(z, y), oracle(z, y)[0], batch=n)


@CHECKS.item("forward is stable: logits of +-1000 give the exact, finite loss")
def stable_loss(sub):
    crit = need(sub, "SoftmaxCrossEntropy")()
    z, y = OVERFLOW
    expect_close("loss for logits near 1000", crit(z.copy(), y), oracle(z, y)[0], nonfinite_hint="unstable_softmax")
    z, y = UNDERFLOW
    expect_close("loss for a label of probability e^-1000", crit(z.copy(), y), oracle(z, y)[0],
                 nonfinite_hint="log_of_softmax")


@CHECKS.item("backward: dlogits = (softmax(logits) - onehot(labels)) / N, times dloss")
def gradient(sub):
    crit = need(sub, "SoftmaxCrossEntropy")()
    z, y = ordinary(seed=1)
    crit(z, y)
    expect_close("dlogits", crit.backward(), oracle(z, y)[1], batch=len(z))
    z, y = ordinary(seed=2)
    crit(z, y)
    expect_close("dlogits with dloss = 0.5", crit.backward(0.5), 0.5 * oracle(z, y)[1], batch=len(z))


@CHECKS.item("backward is stable: logits of +-1000 give the exact, finite gradient")
def stable_gradient(sub):
    crit = need(sub, "SoftmaxCrossEntropy")()
    for z, y in (OVERFLOW, UNDERFLOW):
        crit(z.copy(), y)
        expect_close("dlogits for logits of +-1000", crit.backward(), oracle(z, y)[1], batch=len(z),
                     nonfinite_hint="unstable_softmax")


@CHECKS.item("float32 logits give a float32 gradient")
def dtypes(sub):
    crit = need(sub, "SoftmaxCrossEntropy")()
    z, y = ordinary(seed=3, dtype=np.float32)
    crit(z, y)
    grad = crit.backward()
    expect_dtype("dlogits", grad, np.float32)
    expect_close("dlogits in float32", grad, oracle(z, y)[1], rtol=1e-4, atol=1e-6)
