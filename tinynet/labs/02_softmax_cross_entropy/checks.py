"""Lab 2 graded items: softmax cross-entropy. Runs in the grader's process only.

The expected loss and gradient are computed here in float64, the log-sum-exp way, from the
untouched logits.
"""

import numpy as np

from tinynet.grading import Checks, expect_close, expect_dtype, expect_unchanged

CHECKS = Checks(2, "Softmax cross-entropy, numerically stable", time_limit=60)


def oracle(z, labels):
    """Loss and gradient in float64, the log-sum-exp way."""
    z = np.asarray(z, dtype=np.float64)
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    n = len(z)
    p = np.exp(z - lse[:, None])
    onehot = np.eye(z.shape[1])[labels]
    return (lse - z[np.arange(n), labels]).mean(), (p - onehot) / n


def ordinary(rng, n, dtype=np.float64):
    c = int(rng.integers(3, 12))
    return (2 * rng.standard_normal((n, c))).astype(dtype), rng.integers(0, c, n)


def sizes(rng):
    return [2, int(rng.choice([3, 5, 7, 9, 11])), int(rng.integers(100, 400))]


def overflow(rng):
    """Logits near +1000 (exp overflows); once shifted by the row maximum, nothing underflows."""
    n = int(rng.choice([3, 5, 7]))
    z = 1000.0 - 3 * rng.random((n, 4))
    return z, rng.integers(0, 4, n)


def underflow(rng):
    """A label whose probability is about e^-1000: 0 as a float, so log(softmax) is -inf."""
    n = int(rng.choice([3, 5, 7]))
    z = rng.standard_normal((n, 4))
    labels = rng.integers(0, 4, n)
    z[np.arange(n), labels] = -1000.0 - rng.random(n)
    return z, labels


@CHECKS.item("forward: the mean over the batch of -log softmax(logits)[label]; logits left unchanged")
def loss(student):
    for n in sizes(student.rng):
        z, y = ordinary(student.rng, n)
        out = student.run("loss", z=z.copy(), labels=y)
        expect_unchanged("logits", out["z"], z)
        expect_close(f"loss of a batch of {n}", out["loss"], oracle(z, y)[0], batch=n)


@CHECKS.item("forward is stable: logits of +-1000 give the exact, finite loss")
def stable_loss(student):
    z, y = overflow(student.rng)
    expect_close("loss for logits near 1000", student.run("loss", z=z, labels=y)["loss"], oracle(z, y)[0],
                 nonfinite_hint="unstable_softmax")
    z, y = underflow(student.rng)
    expect_close("loss for labels of probability e^-1000", student.run("loss", z=z, labels=y)["loss"],
                 oracle(z, y)[0], nonfinite_hint="log_of_softmax")


@CHECKS.item("backward: dlogits = (softmax(logits) - onehot(labels)) / N, times dloss")
def gradient(student):
    for n in sizes(student.rng):
        z, y = ordinary(student.rng, n)
        expect_close(f"dlogits for a batch of {n}", student.run("loss", z=z, labels=y, dloss=1.0)["dz"],
                     oracle(z, y)[1], batch=n)
    z, y = ordinary(student.rng, 6)
    dloss = float(student.rng.uniform(0.2, 3.0))
    expect_close(f"dlogits with dloss = {dloss:.3f}", student.run("loss", z=z, labels=y, dloss=dloss)["dz"],
                 dloss * oracle(z, y)[1], batch=6)


@CHECKS.item("backward is stable: logits of +-1000 give the exact, finite gradient")
def stable_gradient(student):
    for z, y in (overflow(student.rng), underflow(student.rng)):
        expect_close("dlogits for logits of +-1000", student.run("loss", z=z, labels=y, dloss=1.0)["dz"],
                     oracle(z, y)[1], batch=len(z), nonfinite_hint="unstable_softmax")


@CHECKS.item("float32 logits give a float32 gradient, right to float32 precision")
def dtypes(student):
    n = int(student.rng.integers(50, 200))
    z, y = ordinary(student.rng, n, np.float32)
    grad = student.run("loss", z=z, labels=y, dloss=1.0)["dz"]
    expect_dtype("dlogits", grad, np.float32)
    expect_close("dlogits in float32", grad, oracle(z, y)[1], batch=n)
