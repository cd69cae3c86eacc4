"""Lab 4 graded items: BatchNorm's simplified backward, and a timing of both forms.

Runs in the grader's process only. The formulas and the shared items (parameter gradients,
eval mode, dtypes) are lab 3's. The student's backward receives xc = None, so only the
simplified form (xhat, inv_std) can pass; the grader times it against tinynet's plain paper
form in the student's process, and checks the student's own timing function for plausibility.
"""

import math
import time
from pathlib import Path

import numpy as np

from tinynet.grading import Checks, Fail, expect_close, load_module

CHECKS = Checks(4, "BatchNorm backward in the simplified form, and timing the two forms", time_limit=60)

lab3 = load_module(Path(__file__).resolve().parent.parent / "03_batchnorm_paper" / "checks.py",
                   "tinynet_lab03_checks_for_lab04")
SLOWER_LIMIT = 3.0  # the simplified backward may take at most this many times the paper form's time


def xc_hint(fail):
    """A crash on xc = None means the paper form was written."""
    if "NoneType" in fail.message:
        raise Fail(fail.message, "xc_withheld") from None
    raise fail


@CHECKS.item("backward (training): the simplified dx, from xhat and inv_std only; dy left unchanged")
def backward_dx(student):
    try:
        lab3.check_backward_dx(student, intermediates=False)
    except Fail as fail:
        xc_hint(fail)


@CHECKS.item("the simplified dx agrees with the paper form to 1e-9 (float64, a large batch)")
def agrees_with_paper(student):
    m = int(student.rng.integers(200, 500))
    config, x, params, dy = lab3.case(student.rng, m)
    try:
        out = student.run("bn", config=config, x=x, params=params, dy=dy)
    except Fail as fail:
        xc_hint(fail)
    want = lab3.dx_parts(x, dy, params["gamma"], config["eps"])[-1]
    expect_close("dx against the paper form", out["dx"], want, batch=m, rtol=1e-9, atol=1e-12,
                 mistakes=lab3.dx_mistakes(x, dy, params["gamma"], config["eps"]))


@CHECKS.item("backward: gamma.grad += sum(dy * xhat), beta.grad += sum(dy)")
def backward_params(student):
    lab3.check_backward_params(student)


@CHECKS.item("backward (eval): dx = dy * gamma / sqrt(running_var + eps)")
def backward_eval(student):
    lab3.check_backward_eval(student)


@CHECKS.item("float32 in, float32 out: dx and the gradients keep the dtype")
def dtypes(student):
    lab3.check_dtypes(student)


@CHECKS.item("timing: the grader times your backward against tinynet's paper form; time_backward is plausible",
             timeout=20)
def timing(student):
    m, c = 512, 256
    start = time.perf_counter()
    mine = student.run("timing", m=m, c=c, repeats=15)
    wall = time.perf_counter() - start
    paper, simplified = float(mine["paper"]), float(mine["simplified"])
    if not (0 < paper and 0 < simplified and float(mine["total"]) <= wall):
        raise Fail(f"the timings from your process are impossible ({paper!r}, {simplified!r} s per call, "
                   f"{float(mine['total']):.3f} s in all, in a call that took {wall:.3f} s)")
    row = (f"the grader's timing, m={m}, C={c}, float32: paper {1e6 * paper:.1f} us, simplified (yours) "
           f"{1e6 * simplified:.1f} us (paper / simplified = {paper / simplified:.2f})")
    if simplified > SLOWER_LIMIT * paper:
        raise Fail(f"{row}: your backward is more than {SLOWER_LIMIT:g}x slower than the paper form. The simplified "
                   "form takes a few whole-array operations: no Python loop over rows or features.")
    theirs = student.run("student_timing", m=128, c=64, repeats=5)
    result, counts = theirs["result"], theirs["counts"]
    if not isinstance(result, dict) or set(result) != {"paper", "simplified"}:
        raise Fail(f"time_backward should return {{'paper': seconds, 'simplified': seconds}}, got {result!r}")
    for form, value in result.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
                not 0 < value <= float(theirs["wall"]):
            raise Fail(f"time_backward: {form} took {value!r} seconds; expected a positive number of seconds per "
                       f"backward call, measured (the whole call took {float(theirs['wall']):.4f} s)")
    if counts["mine"] < 1 or counts["paper"] < 1:
        raise Fail(f"time_backward ran your backward {counts['mine']} times and tinynet's paper form "
                   f"{counts['paper']} times: it must time both (forward, start the clock, backward, stop), not "
                   "return numbers it did not measure")
    return (f"{row}\nyour time_backward (m=128, C=64): paper {1e6 * result['paper']:.1f} us, simplified "
            f"{1e6 * result['simplified']:.1f} us")
