"""Lab 4 graded items: BatchNorm's simplified backward, and a timing of both forms.

The formulas and the shared items (parameter gradients, eval mode, dtypes) are lab 3's.
"""

import math
from pathlib import Path

import numpy as np

import tinynet as tn
from tinynet.grading import Checks, Fail, expect_close, load_module, need

CHECKS = Checks(4, "BatchNorm backward in the simplified form, and timing the two forms")

lab3 = load_module(Path(__file__).resolve().parent.parent / "03_batchnorm_paper" / "checks.py", "tinynet_lab03_checks_for_lab04")


@CHECKS.item("backward (training): the simplified dx equals the numerical gradient")
def backward_dx(sub):
    gamma, beta = lab3.affine(21)
    for m, seed in ((lab3.M, 22), (2, 23)):
        layer = lab3.layer_with(sub, gamma, beta)
        x, dy = lab3.batch(seed, m=m), np.random.default_rng(seed + 100).standard_normal((m, lab3.C))
        lab3.forward_first(layer, x, lab3.normalise(x, gamma, beta, lab3.EPS))
        expect_close(f"dx for a batch of {m}", layer.backward(dy), lab3.expected_dx(x, dy, gamma, beta, lab3.EPS),
                     batch=m, rtol=1e-5, atol=1e-7, mistakes=lab3.dx_mistakes(x, dy, gamma, lab3.EPS))


@CHECKS.item("the simplified dx agrees with the paper form to 1e-9 (float64)")
def agrees_with_paper(sub):
    gamma, beta = lab3.affine(24)
    x, dy = lab3.batch(25, m=32), np.random.default_rng(26).standard_normal((32, lab3.C))
    mine = lab3.layer_with(sub, gamma, beta)
    paper = tn.BatchNorm(lab3.C, eps=lab3.EPS, gradient="paper", dtype=np.float64)
    paper.gamma.data, paper.beta.data = gamma.copy(), beta.copy()
    mine(x)
    paper(x)
    expect_close("dx against tinynet's paper form", mine.backward(dy), paper.backward(dy), batch=32,
                 rtol=1e-9, atol=1e-12, mistakes=lab3.dx_mistakes(x, dy, gamma, lab3.EPS))


@CHECKS.item("backward: gamma.grad += sum(dy * xhat), beta.grad += sum(dy)")
def backward_params(sub):
    lab3.check_backward_params(sub)


@CHECKS.item("backward (eval): dx = dy * gamma / sqrt(running_var + eps)")
def backward_eval(sub):
    lab3.check_backward_eval(sub)


@CHECKS.item("float32 in, float32 out: dx and the gradients keep the dtype")
def dtypes(sub):
    lab3.check_dtypes(sub)


@CHECKS.item("time_backward(m, c) returns seconds per backward for both forms")
def timing(sub):
    time_backward = need(sub, "time_backward")
    rows = []
    for m, c in ((128, 256), (1024, 256)):
        seconds = time_backward(m, c, repeats=10, rng=np.random.default_rng(0))
        if not isinstance(seconds, dict) or set(seconds) != {"paper", "simplified"}:
            raise Fail(f"time_backward should return {{'paper': seconds, 'simplified': seconds}}, got {seconds!r}")
        for form, value in seconds.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value < 10:
                raise Fail(f"time_backward: {form} took {value!r} seconds; expected a positive number of seconds "
                           "for one backward call (time.perf_counter() differences)")
        rows.append(f"m={m:>4}, C={c}: paper {1e6 * seconds['paper']:8.1f} us, simplified "
                    f"{1e6 * seconds['simplified']:8.1f} us  (paper / simplified = {seconds['paper'] / seconds['simplified']:.2f})")
    return "\n".join(rows)
