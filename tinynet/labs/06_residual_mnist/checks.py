"""Lab 6 graded items: a residual Graph, a training step, and a short training run on MNIST.

Runs in the grader's process only. The training run takes a random subset of the training
images, and the accuracy is measured here, on a random subset of the test images drawn at
grading time and perturbed slightly (so no lookup of stored images can pass): the student's
process returns logits, the labels stay here.
"""

import numpy as np

import tinynet as tn
from tinynet.data.batching import images_to_features
from tinynet.grading import Checks, Fail, expect_close, skip_connections

CHECKS = Checks(6, "A residual network as a Graph, trained on MNIST", time_limit=90)

TRAIN_SIZE, TEST_SIZE = 10_000, 1_000
STEPS, BATCH, LR, MOMENTUM = 200, 64, 0.05, 0.9
THRESHOLD = 0.85
NOISE = 0.02  # std of the perturbation added to the test images (pixels in [0, 1])


def images(rng, m):
    return rng.random((m, 784)).astype(np.float32)


@CHECKS.item("build_model(rng) returns a Graph from (N, 784) float32 to (N, 10) logits")
def shapes(student):
    sizes = [2, int(student.rng.choice([3, 5, 7, 9])), int(student.rng.integers(30, 100))]
    out = student.run("shapes", images=[images(student.rng, m) for m in sizes])
    for m, shape in zip(sizes, out["shapes"]):
        if tuple(shape) != (m, 10):
            raise Fail(f"the output for a batch of {m} has shape {tuple(shape)}, expected {(m, 10)}")
    return str(out["summary"])


@CHECKS.item("the graph has a skip connection: a node feeds a block and an Add after it")
def residual(student):
    nodes = student.run("graph")
    skips = skip_connections(nodes)
    if not skips:
        raise Fail("no node of the graph reaches a multi-input node both directly and through other layers",
                   "no_skip_connection")
    names = {n["index"]: n["layer"] for n in nodes}
    return "; ".join(f"node {source} skips ahead to node {join} ({names[join]})" for join, source in skips)


@CHECKS.item("the model's backward matches a float64 directional derivative (input and all parameters)")
def gradient(student):
    rng, seed = student.rng, int(student.rng.integers(2**31))
    shapes = student.run("param_shapes", seed=seed)
    m = int(rng.choice([6, 7, 8]))
    x, r = rng.random((m, 784)), rng.standard_normal((m, 10))
    vx, vps = rng.standard_normal(x.shape), [rng.standard_normal(tuple(s)) for s in shapes]
    norm = np.sqrt((vx**2).sum() + sum((v**2).sum() for v in vps))  # a unit direction and a tiny step:
    vx, vps = vx / norm, [v / norm for v in vps]  # no ReLU kink is crossed in between
    eps = 1e-6
    out = student.run("directional", seed=seed, x=x, r=r, vx=vx, vps=vps, eps=eps)
    f0, f0_again, up, down = out["f"]
    if f0 != f0_again:
        raise Fail("two forwards of the same input differ: keep the model deterministic (no Dropout) for grading")
    numeric = (up - down) / (2 * eps)
    if not abs(numeric) > 1e-8:
        raise Fail("the model's output does not change when its input and parameters do")
    grads = out["grads"]
    analytic = float((np.asarray(out["dx"]) * vx).sum()) + sum(float((np.asarray(g) * v).sum())
                                                               for g, v in zip(grads, vps))
    expect_close("the directional derivative of sum(r * model(x))", analytic, numeric, rtol=1e-4, atol=1e-6)
    return f"analytic {analytic:.8g}, numeric {numeric:.8g}"


@CHECKS.item("train_step: forward, loss, zero_grad, backward, step; returns the loss")
def train_step(student):
    rng = student.rng
    m = int(rng.choice([16, 31, 32, 33]))
    out = student.run("train_step", seed=int(rng.integers(2**31)), xb=images(rng, m), yb=rng.integers(0, 10, m),
                      stale=0.5)
    if len(out["seen"]) != 1:
        raise Fail(f"train_step called optimizer.step() {len(out['seen'])} times; expected once")
    for name, seen, right in zip(out["names"], out["seen"][0], out["want"]):
        right = np.asarray(right)
        expect_close(f"{name}.grad when optimizer.step() ran", seen, right, rtol=1e-4, atol=1e-6,
                     mistakes=[("not_zeroed", right + 0.5), ("zeroed_after_backward", np.zeros_like(right))])
    if out["loss"] is None:
        raise Fail("train_step should return the loss as a number")
    expect_close("the loss train_step returned", out["loss"], out["want_loss"], rtol=1e-5, atol=1e-6)


@CHECKS.item(f"trains on MNIST: at least {THRESHOLD:.0%} on {TEST_SIZE:,} test images drawn at grading time, "
             f"after {STEPS} steps", timeout=60)
def trains(student):
    try:
        (_, _), (x_test, y_test) = tn.datasets.load_mnist()
    except Exception as exc:
        raise Fail(f"could not load MNIST ({exc}); fetch it once with `make train` or "
                   "python -c \"import tinynet; tinynet.datasets.load_mnist()\"") from None
    rng = student.rng
    train_idx = np.sort(rng.choice(60_000, TRAIN_SIZE, replace=False))
    test_idx = rng.choice(len(x_test), TEST_SIZE, replace=False)
    x = images_to_features(x_test[test_idx])
    x = np.clip(x + NOISE * rng.standard_normal(x.shape).astype(np.float32), 0, 1).astype(np.float32)
    y = y_test[test_idx].astype(np.int64)
    out = student.run("train", indices=train_idx, steps=STEPS, batch=BATCH, lr=LR, momentum=MOMENTUM,
                      seed=int(rng.integers(2**31)))
    losses = np.asarray(out["losses"], dtype=np.float64)
    logits = np.asarray(student.run("predict", images=x)["logits"], dtype=np.float64)
    if logits.shape != (TEST_SIZE, 10):
        raise Fail(f"the trained model gave logits of shape {logits.shape} for {TEST_SIZE} images")
    accuracy = float((logits.argmax(axis=1) == y).mean())
    summary = (f"test accuracy {accuracy:.1%} on {TEST_SIZE:,} random test images; training loss "
               f"{np.mean(losses[:20]):.3f} over the first 20 steps, {np.mean(losses[-20:]):.3f} over the last 20")
    if len(losses) != STEPS or not np.isfinite(losses).all() or not accuracy >= THRESHOLD:
        raise Fail(f"{summary}; expected at least {THRESHOLD:.0%} (SGD lr {LR}, momentum {MOMENTUM}, batch {BATCH})")
    return summary
