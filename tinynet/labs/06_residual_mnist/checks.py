"""Lab 6 graded items: a residual Graph, a training step, and a short training run on MNIST.

The training run is kept short so grading takes seconds: STEPS steps of SGD on an MNIST
subset, then accuracy on the first TEST_SIZE test images. The reference network reaches
about 92-94% there (seeds 0-4); the bar is THRESHOLD.
"""

import warnings

import numpy as np

import tinynet as tn
from tinynet.data.batching import images_to_features, minibatches
from tinynet.grading import Checks, Fail, expect_close, need, skip_connections

CHECKS = Checks(6, "A residual network as a Graph, trained on MNIST")

TRAIN_SIZE, TEST_SIZE = 10_000, 1_000
STEPS, BATCH, LR, MOMENTUM = 200, 64, 0.05, 0.9
THRESHOLD = 0.85


def model(sub, seed=0):
    g = need(sub, "build_model")(np.random.default_rng(seed))
    if not isinstance(g, tn.Graph):
        raise Fail(f"build_model should return a tinynet Graph, got {type(g).__name__}")
    return g


def images(seed, m):
    return np.random.default_rng(seed).random((m, 784)).astype(np.float32)


@CHECKS.item("build_model(rng) returns a Graph from (N, 784) float32 to (N, 10) logits")
def shapes(sub):
    g = model(sub).eval()  # eval: shapes only, no training forwards left without their backward
    for m in (16, 2):
        y = g(images(1, m))
        if getattr(y, "shape", None) != (m, 10):
            raise Fail(f"the output for a batch of {m} has shape {getattr(y, 'shape', None)}, expected {(m, 10)}")
    return g.summary()


@CHECKS.item("the graph has a skip connection: a node feeds a block and an Add after it")
def residual(sub):
    g = model(sub)
    skips = skip_connections(g)
    if not skips:
        raise Fail("no node of the graph reaches a multi-input node both directly and through other layers",
                   "no_skip_connection")
    return "; ".join(f"node {source.index} skips ahead to node {join.index} ({join.layer!r})" for join, source in skips)


@CHECKS.item("the model's backward matches a float64 directional derivative (input and all parameters)")
def gradient(sub):
    g = model(sub, seed=2)
    params = [p for _, p in g.named_parameters()]
    for p in params:
        p.data, p.grad = p.data.astype(np.float64), np.zeros(p.data.shape)
    for _, owner, attr in g.named_buffers():
        setattr(owner, attr, getattr(owner, attr).astype(np.float64))
    rng = np.random.default_rng(3)
    x = rng.random((6, 784))
    r = rng.standard_normal((6, 10))
    vx, vps = rng.standard_normal(x.shape), [rng.standard_normal(p.data.shape) for p in params]

    def f(t):  # sum(r * model(x)) at the point moved by t along the random direction
        originals = [p.data for p in params]
        for p, v in zip(params, vps):
            p.data = p.data + t * v
        try:
            return float((r * g(x + t * vx)).sum())
        finally:
            for p, data in zip(params, originals):
                p.data = data

    eps = 1e-5
    with warnings.catch_warnings():  # forwards without a backward are the point of a numerical check
        warnings.simplefilter("ignore", tn.graph.EvalModeWarning)
        if f(0.0) != f(0.0):
            raise Fail("two forwards of the same input differ: keep the model deterministic (no Dropout) for grading")
        numeric = (f(eps) - f(-eps)) / (2 * eps)
        g(x)
        dx = g.backward(r)
    analytic = float((dx * vx).sum()) + sum(float((p.grad * v).sum()) for p, v in zip(params, vps))
    expect_close("the directional derivative of sum(r * model(x))", analytic, numeric, rtol=1e-5, atol=1e-6)
    return f"analytic {analytic:.8g}, numeric {numeric:.8g}"


class RecordingSGD(tn.SGD):
    """SGD that remembers the gradients it saw at each step."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.seen = []

    def step(self):
        self.seen.append([np.array(p.grad, dtype=np.float64) for p in self.params])
        super().step()


@CHECKS.item("train_step: forward, loss, zero_grad, backward, step; returns the loss")
def train_step(sub):
    step = need(sub, "train_step")
    g = model(sub, seed=4)
    loss = tn.SoftmaxCrossEntropy()
    xb, yb = images(5, 32), np.random.default_rng(6).integers(0, 10, 32)
    # the gradient this batch should give, computed the known way
    g.zero_grad()
    want_loss = float(loss(g(xb), yb))
    g.backward(loss.backward())
    want = [np.array(p.grad, dtype=np.float64) for p in g.parameters()]
    optimizer = RecordingSGD(g.parameters(), lr=0.01)
    for p in g.parameters():
        p.grad = np.full(p.grad.shape, 0.5, dtype=p.grad.dtype)  # stale gradients from an earlier step
    got_loss = step(g, loss, optimizer, xb, yb)
    if len(optimizer.seen) != 1:
        raise Fail(f"train_step called optimizer.step() {len(optimizer.seen)} times; expected once")
    for p, seen, right in zip(optimizer.params, optimizer.seen[0], want):
        expect_close(f"{p.name}.grad when optimizer.step() ran", seen, right, rtol=1e-4, atol=1e-6,
                     mistakes=[("not_zeroed", right + 0.5), ("zeroed_after_backward", np.zeros_like(right))])
    try:
        got_loss = float(got_loss)
    except (TypeError, ValueError):
        raise Fail(f"train_step should return the loss as a number, got {type(got_loss).__name__}") from None
    expect_close("the loss train_step returned", got_loss, want_loss, rtol=1e-5, atol=1e-6)


@CHECKS.item(f"trains on MNIST: at least {THRESHOLD:.0%} on {TEST_SIZE:,} test images after {STEPS} steps")
def trains(sub):
    try:
        (x_train, y_train), (x_test, y_test) = tn.datasets.load_mnist()
    except Exception as exc:
        raise Fail(f"could not load MNIST ({exc}); fetch it once with `make train` or "
                   "python -c \"import tinynet; tinynet.datasets.load_mnist()\"") from None
    x_train, y_train = images_to_features(x_train[:TRAIN_SIZE]), y_train[:TRAIN_SIZE].astype(np.int64)
    x_test, y_test = images_to_features(x_test[:TEST_SIZE]), y_test[:TEST_SIZE].astype(np.int64)
    rng = np.random.default_rng(0)
    g = model(sub, seed=0)
    loss, step = tn.SoftmaxCrossEntropy(), need(sub, "train_step")
    optimizer = tn.SGD(g.parameters(), lr=LR, momentum=MOMENTUM)
    g.train()
    losses, done = [], 0
    while done < STEPS:
        for xb, yb in minibatches(x_train, y_train, BATCH, rng, min_size=BATCH):
            losses.append(float(step(g, loss, optimizer, xb, yb)))
            done += 1
            if done == STEPS:
                break
    result = tn.evaluate(g, loss, x_test, y_test)
    summary = (f"test accuracy {result.accuracy:.1%} (test loss {result.loss:.3f}); training loss "
               f"{np.mean(losses[:20]):.3f} over the first 20 steps, {np.mean(losses[-20:]):.3f} over the last 20")
    if not np.isfinite(losses).all() or not result.accuracy >= THRESHOLD:
        raise Fail(f"{summary}; expected at least {THRESHOLD:.0%} (SGD lr {LR}, momentum {MOMENTUM}, batch {BATCH})")
    return summary
