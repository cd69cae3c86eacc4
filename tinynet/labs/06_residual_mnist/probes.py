"""Lab 6, the student's side: builds the student's Graph, runs the student's train_step, trains.

Evaluation images come from the grader at the end (a random, slightly perturbed subset of the
MNIST test set); their labels never enter this process.
"""

import warnings

import numpy as np

import tinynet as tn
from tinynet.data.batching import images_to_features, minibatches
from tinynet_lab_kit import Refused, need

TRAINED = {}


def model(sub, seed):
    g = need(sub, "build_model")(np.random.default_rng(seed))
    if not isinstance(g, tn.Graph):
        raise Refused(f"build_model should return a tinynet Graph, got {type(g).__name__}")
    return g


def shapes(sub, images):
    g = model(sub, 0).eval()  # eval: shapes only
    return {"shapes": [list(np.shape(g(x))) for x in images], "summary": g.summary()}


def graph(sub):
    g = model(sub, 1)
    return [{"index": n.index, "inputs": [i.index for i in n.inputs],
             "layer": None if n.layer is None else type(n.layer).__name__} for n in g.nodes]


def _float64(g):
    params = [p for _, p in g.named_parameters()]
    for p in params:
        p.data, p.grad = p.data.astype(np.float64), np.zeros(p.data.shape)
    for _, owner, attr in g.named_buffers():
        setattr(owner, attr, getattr(owner, attr).astype(np.float64))
    return params


def param_shapes(sub, seed):
    return [list(p.data.shape) for p in _float64(model(sub, seed))]


def directional(sub, seed, x, r, vx, vps, eps):
    """sum(r * model(x)) moved by +-eps along (vx, vps), and the model's backward at x."""
    g = model(sub, seed)
    params = _float64(g)
    if len(vps) != len(params):
        raise Refused("the model's parameters changed between two builds: keep build_model deterministic")

    def f(t):
        originals = [p.data for p in params]
        for p, v in zip(params, vps):
            p.data = p.data + t * v
        try:
            return float((r * g(x + t * vx)).sum())
        finally:
            for p, data in zip(params, originals):
                p.data = data

    with warnings.catch_warnings():  # forwards without a backward are the point of a numerical check
        warnings.simplefilter("ignore")
        values = [f(0.0), f(0.0), f(eps), f(-eps)]
        g(x)
        dx = g.backward(r)
    return {"f": values, "dx": dx, "grads": [p.grad for p in params]}


class RecordingSGD(tn.SGD):
    """SGD that remembers the gradients it saw at each step."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.seen = []

    def step(self):
        self.seen.append([np.array(p.grad, dtype=np.float64) for p in self.params])
        super().step()


def train_step(sub, seed, xb, yb, stale):
    step = need(sub, "train_step")
    g = model(sub, seed)
    loss = tn.SoftmaxCrossEntropy()
    g.zero_grad()  # the gradient this batch should give, the known way
    want_loss = float(loss(g(xb), yb))
    g.backward(loss.backward())
    want = [np.array(p.grad, dtype=np.float64) for p in g.parameters()]
    optimizer = RecordingSGD(g.parameters(), lr=0.01)
    for p in g.parameters():
        p.grad = np.full(p.grad.shape, stale, dtype=p.grad.dtype)  # stale gradients from an earlier step
    got_loss = step(g, loss, optimizer, xb, yb)
    try:
        got_loss = float(got_loss)
    except (TypeError, ValueError):
        got_loss = None
    return {"seen": optimizer.seen, "want": want, "want_loss": want_loss, "loss": got_loss,
            "names": [p.name for p in optimizer.params]}


def train(sub, indices, steps, batch, lr, momentum, seed):
    (x_train, y_train), _ = tn.datasets.load_mnist()
    x = images_to_features(x_train[indices])
    y = y_train[indices].astype(np.int64)
    rng = np.random.default_rng(seed)
    g = model(sub, seed)
    loss, step = tn.SoftmaxCrossEntropy(), need(sub, "train_step")
    optimizer = tn.SGD(g.parameters(), lr=lr, momentum=momentum)
    g.train()
    losses = []
    while len(losses) < steps:
        for xb, yb in minibatches(x, y, batch, rng, min_size=batch):
            losses.append(float(step(g, loss, optimizer, xb, yb)))
            if len(losses) == steps:
                break
    TRAINED["model"] = g
    return {"losses": losses}


def predict(sub, images):
    g = TRAINED.get("model")
    if g is None:
        raise Refused("no trained model")
    g.eval()
    return {"logits": g(images)}
