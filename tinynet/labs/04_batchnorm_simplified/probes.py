"""Lab 4, the student's side: the student's BatchNorm.backward (simplified form), and timings.

The student's class subclasses tinynet.BatchNorm and keeps its forward. In this process
tinynet's BatchNorm.backward refuses to serve the student's class (it still runs for a plain
``tinynet.BatchNorm(c, gradient="paper")``, the timing baseline), and the student's backward is
handed ``xc = None``: the simplified form needs only xhat and inv_std.
"""

import time

import numpy as np

import tinynet as tn
from tinynet_lab_kit import LabBlocked, Refused, need, own, param_dict

PAPER_BACKWARD = tn.BatchNorm.backward  # tinynet's plain code, the baseline the grader times
CALLS = {"tinynet": 0}


def setup():
    """In the student's process only: tinynet's backward serves tinynet's own paper-form layer alone."""

    def backward(self, dy):
        if type(self) is not tn.BatchNorm or self.gradient != "paper":
            raise LabBlocked("tinynet's BatchNorm.backward is not available to your class while grading lab 4: "
                             "the lab asks you to write the simplified backward yourself")
        CALLS["tinynet"] += 1
        return PAPER_BACKWARD(self, dy)

    tn.BatchNorm.backward = backward


def make(sub, num_features, eps, momentum, dtype):
    cls = need(sub, "BatchNorm")
    own(cls, "backward")
    return cls(num_features, eps=eps, momentum=momentum, dtype=np.dtype(dtype))


def withhold_xc(layer):
    """What tinynet's forward saved, with xc replaced by None (the simplified form does not need it)."""
    saved = layer.saved()
    if saved[0]:
        saved = (saved[0], saved[1], saved[2], None)
    layer.save_for_backward(*saved)


def bn(sub, config, x, dy=None, params=None, grads=None, train=True, running=None):
    layer = make(sub, **config)
    if running is not None:
        layer.running_mean, layer.running_var = running["mean"], running["var"]
    ps = param_dict(layer)
    for name, value in (params or {}).items():
        ps[name].data = value
    for name, p in ps.items():
        p.grad = grads[name] if grads and name in grads else np.zeros_like(p.data)
    layer.train(bool(train))
    y = layer(x)
    out = {"y": y, "x": x, "running_mean": layer.running_mean, "running_var": layer.running_var}
    if dy is not None:
        withhold_xc(layer)
        before = CALLS["tinynet"]
        dx = layer.backward(dy)
        if CALLS["tinynet"] != before:
            raise Refused("your backward called tinynet's BatchNorm.backward: lab 4 asks you to write it yourself")
        out.update(dx=dx, dy=dy, grads={n: p.grad for n, p in ps.items()})
    return out


def timing(sub, m, c, repeats):
    """The grader's timing: the student's backward and tinynet's paper form, interleaved, fastest of each."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, c)).astype(np.float32)
    dy = rng.standard_normal((m, c)).astype(np.float32)
    mine, paper = make(sub, c, 1e-5, 0.1, "float32"), tn.BatchNorm(c, gradient="paper")
    best = {"paper": float("inf"), "simplified": float("inf")}
    total = 0.0
    for _ in range(repeats):
        for form, layer in (("paper", paper), ("simplified", mine)):
            layer(x)
            if form == "simplified":
                withhold_xc(layer)
            start = time.perf_counter()
            if form == "paper":
                PAPER_BACKWARD(layer, dy)
            else:
                layer.backward(dy)
            seconds = time.perf_counter() - start
            best[form], total = min(best[form], seconds), total + seconds
    return {"paper": best["paper"], "simplified": best["simplified"], "total": total}


def student_timing(sub, m, c, repeats):
    """The student's time_backward, with both backwards counted (numbers not measured do not count)."""
    cls, time_backward = need(sub, "BatchNorm"), need(sub, "time_backward")
    own(cls, "backward")
    counts = {"mine": 0, "paper": 0}
    had_own, mine_backward, tinynet_backward = "backward" in vars(cls), cls.backward, tn.BatchNorm.backward

    def counted_mine(self, dy):
        counts["mine"] += 1
        return mine_backward(self, dy)

    def counted_paper(self, dy):
        if type(self) is tn.BatchNorm:
            counts["paper"] += 1
        return tinynet_backward(self, dy)

    cls.backward, tn.BatchNorm.backward = counted_mine, counted_paper
    try:
        start = time.perf_counter()
        result = time_backward(m, c, repeats=repeats, rng=np.random.default_rng(1))
        wall = time.perf_counter() - start
    finally:
        tn.BatchNorm.backward = tinynet_backward
        if had_own:
            cls.backward = mine_backward
        else:
            del cls.backward
    return {"result": result, "counts": counts, "wall": wall}
