"""The course-lab grader: runs a lab's checks on a student's file, offline, with hints.

A lab is a folder ``labs/NN_name/`` holding ``student.py`` (stubs that raise
``NotImplementedError("Lab N: ...")``), ``checks.py`` (the graded items) and
``reference.py`` (tinynet's own code plugged into the student's names). A check
is a function of the submission (the imported student module, or any object with
the same attributes) that returns normally to pass, or raises :class:`Fail`
naming what is wrong and, where the wrong value matches a classic mistake, which
one: ``expect_close`` compares against the right answer and against the answers
the classic mistakes give, so the hint names the mistake, not just the symptom.

    python -m tinynet lab 3                 grade labs/03_*/student.py
    python -m tinynet lab --selfcheck       every reference passes, every untouched stub fails
"""

import importlib.util
import linecache
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backend import to_numpy

# The hints, keyed by the mistake they recognise. Each says what the numbers showed and the fix.
HINTS = {
    "missing_1_over_m": (
        "The values are m times too large (m = batch size). The loss is a mean over the batch, so a "
        "1/m belongs in the gradient exactly once: SoftmaxCrossEntropy.backward divides by N, and the "
        "simplified BatchNorm dx starts with 1 / (m * sqrt(var + eps))."
    ),
    "extra_1_over_m": (
        "The values are m times too small (m = batch size): a 1/m too many. A parameter's gradient is "
        "a *sum* over the batch (dy.sum(axis=0)), not a mean: the 1/m of the mean loss is already inside dy."
    ),
    "eps_outside_sqrt": (
        "xhat = (x - mu) / (sqrt(var) + eps) puts eps outside the square root; it belongs inside: "
        "xhat = (x - mu) / sqrt(var + eps) (the paper and PyTorch; the seed derivation has this slip)."
    ),
    "biased_running_var": (
        "running_var received the biased batch variance (divided by m). Normalise with the biased one, "
        "but store the unbiased one, var * m / (m - 1), in running_var (PyTorch's convention): eval mode "
        "then uses an estimate of the population variance."
    ),
    "batch_of_one": (
        "A batch of one went through BatchNorm in training mode. With m = 1 the variance is 0, xhat is 0, "
        "the output is beta and dx is 0 whatever x is: nothing is learned, m / (m - 1) divides by zero, and "
        "a gradient check at m = 1 cannot fail. Raise ValueError for m < 2 in training (eval mode is fine)."
    ),
    "grad_overwritten": (
        "The parameter's .grad was overwritten, not accumulated: what it held before backward is gone. "
        "Write p.grad += ... (never p.grad = ...): a parameter used twice, or two backward passes before a "
        "step, must receive the sum; optimizer.zero_grad() is what clears it."
    ),
    "unstable_softmax": (
        "exp overflowed on large logits (exp(1000) is inf; in float32 exp(89) already is), giving inf or "
        "nan. Subtract each row's maximum first: softmax(z) = softmax(z - max(z)), and compute "
        "log(sum(exp(z))) as max(z) + log(sum(exp(z - max(z))))."
    ),
    "log_of_softmax": (
        "The loss is inf for a label whose probability underflows to 0: log(softmax(z)) takes log(0). "
        "Compute the log-probability directly, log p_y = (z_y - max) - log(sum(exp(z - max))), never the log of "
        "a probability."
    ),
    "sum_over_batch": (
        "Right for a batch of one, wrong for a batch of several: a parameter's gradient sums the "
        "contributions of every example, dy.sum(axis=0) and x.T @ dy, not dy[0] or one row."
    ),
    "transposed": (
        "You got the transpose. Shapes: x (N, in), weight (in, out), dy (N, out): weight.grad = x.T @ dy "
        "is (in, out) and dx = dy @ weight.T is (N, in)."
    ),
    "sign_flipped": "The values have the wrong sign: check each minus sign (the gradient of -log p_y is p - onehot).",
    "missing_bias": "y matches x @ weight without the bias: add bias (shape (out,), broadcast over the batch).",
    "relu_times_output": (
        "dx = dy * y multiplies by the ReLU output itself. ReLU's derivative is 1 where x > 0 and 0 "
        "elsewhere: dx = dy * (x > 0) (or dy * (y > 0))."
    ),
    "input_modified": (
        "forward changed its input array in place (x[x < 0] = 0 or x *= ...). The caller may still need x "
        "(a node that fans out feeds it to other layers): build a new array, e.g. xp.maximum(x, 0)."
    ),
    "dtype_changed": (
        "float32 went in and another dtype came out. Keep the input's dtype: a float64 constant array, "
        "np.zeros without dtype=x.dtype or np.array(..., dtype=float) silently upcasts."
    ),
    "unbiased_normalisation": (
        "xhat was normalised with the unbiased variance (divided by m - 1). Normalise with the biased "
        "one, mean((x - mu)**2); only running_var stores the unbiased one."
    ),
    "gamma_times_x": "y = gamma * x + beta skips the normalisation: y = gamma * xhat + beta.",
    "naive_variance": (
        "The variance is wrong in float32 for data with a large mean and small spread: E[x^2] - E[x]^2 "
        "cancels catastrophically. Centre first, var = mean((x - mu)**2) (two passes)."
    ),
    "momentum_reversed": (
        "The running averages weight the old value by momentum. PyTorch's convention (and tinynet's): "
        "momentum is the weight of the new batch statistic, running = (1 - momentum) * running + momentum * batch."
    ),
    "running_not_updated": (
        "running_mean / running_var did not change in training: update them on every training forward "
        "(eval mode uses them)."
    ),
    "eval_uses_batch_stats": (
        "Eval mode normalised with the batch's own statistics. In eval mode use running_mean and "
        "running_var, and leave them unchanged."
    ),
    "eval_updates_running": "Eval mode changed running_mean / running_var: only training forwards update them.",
    "eps_twice": "eps was added twice in eval mode (running_var already plus eps, then eps again): add it once.",
    "eval_backward": (
        "In eval mode mean and variance are constants, so y is affine in x: dx = dy * gamma / sqrt(running_var + eps). "
        "The batch-statistics formula applies only in training mode."
    ),
    "stats_as_constants": (
        "dx treats the batch mean and variance as constants (dy * gamma / sqrt(var + eps)). In training they "
        "depend on x: add the dl/dvar and dl/dmu terms (the paper's Algorithm 1 backward)."
    ),
    "missing_dmu": "dx lacks the dl/dmu term: dx = dxhat * inv_std + dvar * 2 (x - mu) / m + dmu / m.",
    "missing_dvar": (
        "dx lacks the dl/dvar contribution: dvar = sum(dxhat * (x - mu)) * -1/2 * (var + eps)^(-3/2), and it "
        "enters both dmu (through mean(-2 (x - mu))) and dx (through 2 (x - mu) / m)."
    ),
    "sums_over_dy": (
        "The sums use dy where they need dxhat = dy * gamma (the check uses gamma != 1): "
        "dx = 1 / (m * sqrt(var + eps)) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))."
    ),
    "not_zeroed": (
        "Gradients piled up across steps: the second step used the sum of both steps' gradients. Call "
        "optimizer.zero_grad() (or model.zero_grad()) before model.backward in every step."
    ),
    "zeroed_after_backward": (
        "The gradients were zero when optimizer.step() ran: zero_grad() was called between backward and "
        "step. The order is forward, loss, zero_grad, backward, step."
    ),
    "no_skip_connection": (
        "No skip connection found: a residual block needs a node whose output feeds both the block and an "
        "Add that joins the block's output back, e.g. h = g.add(Linear..., x); s = g.add(Add(), g.add(f, h), h)."
    ),
    "refuse_bad_input": (
        "A layer refuses input it cannot take with TypeError (wrong dtype or not an array) or ValueError "
        "(wrong shape), naming the layer; tinynet.layer.check_input(self, x) does that for you."
    ),
    "not_finite": "The result contains inf or nan: look for an overflow, a division by zero or log(0).",
    "shape_mismatch": (
        "Two arrays whose shapes do not fit met in a product or a sum. Write each array's shape next to "
        "its line (x (N, in), weight (in, out), dy (N, out), ...): usually a transpose or an axis= is missing."
    ),
}


class Fail(Exception):
    """A graded item failed: ``message`` says what was wrong, ``hint`` (a key of :data:`HINTS`) why."""

    def __init__(self, message, hint=None):
        if hint is not None and hint not in HINTS:
            raise ValueError(f"Fail: unknown hint {hint!r}; expected one of {sorted(HINTS)}")
        super().__init__(message)
        self.message, self.hint = message, hint


# --------------------------------------------------------------------------- items and results
@dataclass
class Item:
    """One graded item: ``check(submission)`` returns (optionally a line of info) or raises."""

    key: str
    title: str
    check: object


class Checks:
    """The graded items of one lab, in the order they are graded.

    Parameters
    ----------
    number : int
        The lab's number (the stubs' messages start with ``"Lab {number}:"``).
    title : str
        The lab's title, printed above its report.
    """

    def __init__(self, number, title):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"Checks: expected a positive lab number, got {number!r}")
        self.number, self.title, self.items = number, str(title), []

    def item(self, title):
        """Decorator: register ``check(submission)`` as the next graded item, titled ``title``."""

        def register(check):
            self.items.append(Item(check.__name__, title, check))
            return check

        return register


PASS, FAIL, TODO = "PASS", "FAIL", "TODO"


@dataclass
class Result:
    """How one item went: ``status`` is PASS, FAIL, or TODO (a stub still raises NotImplementedError)."""

    key: str
    title: str
    status: str
    message: str = ""
    hint: str = None
    info: str = ""
    seconds: float = 0.0

    @property
    def passed(self):
        return self.status == PASS


@dataclass
class Report:
    """The grade of one submission: one :class:`Result` per item, in order."""

    number: int
    title: str
    source: str
    results: list = field(default_factory=list)

    @property
    def passed(self):
        return bool(self.results) and all(r.passed for r in self.results)

    def result(self, key):
        """The result of the item whose check function is named ``key``."""
        for r in self.results:
            if r.key == key:
                return r
        raise KeyError(f"Report: lab {self.number} has no graded item {key!r}; items: {[r.key for r in self.results]}")

    def format(self):
        """The report as text: a line per item, then what failed and why, then the score."""
        lines = [f"Lab {self.number}: {self.title}", f"grading {self.source}", ""]
        shown = {}  # a failure met again (one bug breaks several items) is printed once
        for i, r in enumerate(self.results, 1):
            lines.append(f"  {i}. {r.status}  {r.title}")
            if not r.passed and r.status == FAIL and (r.message, r.hint) in shown:
                lines.append(f"        the same failure as item {shown[r.message, r.hint]} above")
                continue
            shown.setdefault((r.message, r.hint), i)
            detail = r.info if r.passed else r.message
            for text in detail.splitlines():
                lines.append(f"        {text}")
            if r.hint:
                lines.append(_wrap(f"hint: {HINTS[r.hint]}", "        ", "              "))
        done = sum(r.passed for r in self.results)
        lines.append("")
        lines.append(f"{done}/{len(self.results)} items pass" + (" -- lab complete." if self.passed else "."))
        return "\n".join(lines)


def _wrap(text, first, rest, width=100):
    words, lines, line = text.split(), [], first
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = rest
        line += word + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def run_checks(checks, submission, source="submission", only=None):
    """Grade ``submission`` (a module or any object with the lab's names) on every item of ``checks``.

    Parameters
    ----------
    checks : Checks
    submission : object
        The student's module, the reference module, or a stand-in built by a test.
    source : str
        What was graded, for the report's header (a path).
    only : iterable of str, optional
        Grade only the items whose check functions have these names.

    Returns
    -------
    Report
    """
    if not isinstance(checks, Checks):
        raise TypeError(f"run_checks: expected a Checks object, got {type(checks).__name__}")
    items = checks.items
    if only is not None:
        only = set(only)
        unknown = only - {i.key for i in items}
        if unknown:
            raise ValueError(f"run_checks: lab {checks.number} has no items {sorted(unknown)}; it has {[i.key for i in items]}")
        items = [i for i in items if i.key in only]
    report = Report(checks.number, checks.title, str(source))
    student_file = getattr(submission, "__file__", None)
    for item in items:
        start = time.perf_counter()
        try:
            with np.errstate(all="ignore"):  # overflow shows up as inf/nan in the values, and gets its hint
                info = item.check(submission)
            result = Result(item.key, item.title, PASS, info=info or "")
        except Fail as fail:
            result = Result(item.key, item.title, FAIL, fail.message, fail.hint)
        except NotImplementedError as exc:
            result = Result(item.key, item.title, TODO, f"not implemented yet: {exc}")
        except Exception as exc:  # the student's code crashed: say where
            result = Result(item.key, item.title, FAIL, _describe_crash(exc, student_file), _crash_hint(exc))
        result.seconds = time.perf_counter() - start
        report.results.append(result)
    return report


def _describe_crash(exc, student_file):
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if student_file and os.path.abspath(f.filename) == os.path.abspath(student_file)]
    where = mine[-1] if mine else (frames[-1] if frames else None)
    text = f"{type(exc).__name__}: {exc}"
    if where is not None:
        line = (where.line or linecache.getline(where.filename, where.lineno)).strip()
        text += f"\n  at {os.path.basename(where.filename)}, line {where.lineno}, in {where.name}: {line}"
    return text


def _crash_hint(exc):
    text = str(exc)
    shapes = isinstance(exc, ValueError) and any(w in text for w in ("matmul", "broadcast", "not aligned"))
    return "shape_mismatch" if shapes else None


# --------------------------------------------------------------------------- comparing values
def as_array(what, value):
    """``value`` as a float64 NumPy array, or a Fail saying it is not an array of numbers."""
    if value is None:
        raise Fail(f"{what}: got None, expected an array (did a method forget to return?)")
    try:
        return np.asarray(to_numpy(value), dtype=np.float64)
    except (TypeError, ValueError):
        raise Fail(f"{what}: expected an array of numbers, got {type(value).__name__}") from None


def is_close(got, want, rtol=1e-6, atol=1e-9):
    """True when two arrays have one shape and agree entrywise within ``atol + rtol * |want|``."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= atol + rtol * np.abs(want)))


def expect_close(what, got, want, mistakes=None, batch=None, rtol=1e-6, atol=1e-9, nonfinite_hint="not_finite"):
    """Pass when ``got`` matches ``want``; otherwise raise a Fail naming the mistake it matches.

    Parameters
    ----------
    what : str
        The quantity, as the student knows it (``"dx"``, ``"weight.grad"``).
    got : array-like
        The student's value (NumPy or CuPy array, or a number).
    want : array-like
        The right value.
    mistakes : dict or list of (str, array) pairs, optional
        ``{hint_key: wrong_value}``: what each classic mistake would give here. The first one
        that ``got`` matches becomes the hint.
    batch : int, optional
        The batch size m: a result m times too large or too small is then named.
    rtol, atol : float
        Tolerance of the comparisons.
    nonfinite_hint : str
        Hint for a result containing inf or nan.
    """
    got, want = as_array(what, got), as_array(what, want)
    mistakes = list(mistakes.items() if isinstance(mistakes, dict) else mistakes or ())
    if got.shape != want.shape:
        for hint, wrong in mistakes:
            if is_close(got, wrong, rtol, atol):
                raise Fail(f"{what}: expected shape {want.shape}, got {got.shape}", hint)
        if got.shape == want.T.shape and want.ndim == 2:
            raise Fail(f"{what}: expected shape {want.shape}, got {got.shape}", "transposed")
        raise Fail(f"{what}: expected shape {want.shape}, got {got.shape}")
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))[0] if got.ndim else ()
        raise Fail(f"{what} contains inf or nan (first at index {list(bad)}: {got[tuple(bad)]})", nonfinite_hint)
    if is_close(got, want, rtol, atol):
        return
    for hint, wrong in mistakes:
        if is_close(got, wrong, rtol, atol):
            raise Fail(f"{what} is wrong. {_worst(got, want)}", hint)
    hint = _scale_hint(got, want, batch, rtol, atol)
    if hint is None and want.ndim == 2 and want.shape[0] == want.shape[1] and is_close(got, want.T, rtol, atol):
        hint = "transposed"
    raise Fail(f"{what} is wrong. {_worst(got, want)}", hint)


def _worst(got, want):
    index = np.unravel_index(int(np.argmax(np.abs(got - want))), got.shape) if got.ndim else ()
    where = f" at index {[int(i) for i in index]}" if got.ndim else ""
    return f"Largest difference{where}: expected {want[index]:.6g}, got {got[index]:.6g}."


def _scale_hint(got, want, batch, rtol, atol):
    """Name a result that is the right one times m, 1/m or -1."""
    norm = float(np.sum(want * want))
    if norm == 0:
        return None
    c = float(np.sum(got * want)) / norm  # least-squares factor: got ~ c * want
    if not is_close(got, c * want, 1e-4, atol):
        return None
    if batch and batch > 1 and abs(c - batch) < 1e-3 * batch:
        return "missing_1_over_m"
    if batch and batch > 1 and abs(c * batch - 1) < 1e-3:
        return "extra_1_over_m"
    if abs(c + 1) < 1e-3:
        return "sign_flipped"
    return None


def numeric_gradient(f, x, eps=1e-6):
    """Central differences of the scalar ``f(x)`` at the float64 array ``x`` (the math, not a layer's backward)."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        up = f(x)
        flat[i] = original - eps
        down = f(x)
        flat[i] = original
        gflat[i] = (up - down) / (2 * eps)
    return grad


def need(submission, name):
    """The attribute ``name`` of the submission, or a Fail saying the file must define it."""
    value = getattr(submission, name, None)
    if value is None:
        raise Fail(f"the file defines no {name!r}; keep the names the stub gives")
    return value


def expect_dtype(what, value, dtype):
    if getattr(value, "dtype", None) != np.dtype(dtype):
        raise Fail(f"{what}: expected dtype {np.dtype(dtype)}, got {getattr(value, 'dtype', type(value).__name__)}",
                   "dtype_changed")


def skip_connections(graph):
    """The skip connections of a Graph: ``(join, source)`` node pairs where ``source`` feeds the
    multi-input node ``join`` directly and also through another of ``join``'s inputs."""
    from .graph import Graph

    if not isinstance(graph, Graph):
        raise TypeError(f"skip_connections: expected a tinynet Graph, got {type(graph).__name__}")

    def ancestors(node, seen):
        for source in node.inputs:
            if source not in seen:
                seen.add(source)
                ancestors(source, seen)
        return seen

    found = []
    for node in graph.nodes:
        for source in node.inputs:
            others = [i for i in node.inputs if i is not source and i.layer is not None]
            if any(source in ancestors(other, set()) for other in others):
                found.append((node, source))
    return found


# --------------------------------------------------------------------------- finding and loading labs
@dataclass
class Lab:
    """A lab folder: its number, name and the paths of its three files."""

    number: int
    name: str
    directory: Path

    @property
    def student(self):
        return self.directory / "student.py"

    @property
    def reference(self):
        return self.directory / "reference.py"

    def checks_module(self):
        """Import the lab's ``checks.py`` afresh (its settings, such as lab 6's STEPS, can then be changed)."""
        return load_module(self.directory / "checks.py", f"tinynet_lab{self.number:02d}_checks")

    def checks(self):
        """Import the lab's ``checks.py`` and return its ``CHECKS``."""
        module = self.checks_module()
        checks = getattr(module, "CHECKS", None)
        if not isinstance(checks, Checks) or checks.number != self.number:
            raise RuntimeError(f"{self.directory / 'checks.py'}: expected CHECKS = Checks({self.number}, ...)")
        return checks


def default_labs_dir():
    """``$TINYNET_LABS``, else ``./labs``, else the ``labs/`` next to the tinynet package (a source checkout)."""
    if os.environ.get("TINYNET_LABS"):
        return Path(os.environ["TINYNET_LABS"])
    here = Path.cwd() / "labs"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "labs"


def find_labs(labs_dir=None):
    """The labs in ``labs_dir`` (folders named ``NN_name`` holding a checks.py), by number."""
    root = Path(labs_dir) if labs_dir is not None else default_labs_dir()
    if not root.is_dir():
        raise ValueError(f"labs: no labs folder at {root}; run from the tinynet checkout or pass --labs-dir")
    labs = []
    for d in sorted(root.iterdir()):
        prefix, _, name = d.name.partition("_")
        if d.is_dir() and prefix.isdigit() and (d / "checks.py").is_file():
            labs.append(Lab(int(prefix), name, d))
    return labs


def get_lab(number, labs_dir=None):
    labs = find_labs(labs_dir)
    for lab in labs:
        if lab.number == number:
            return lab
    raise ValueError(f"lab: expected a lab number in {[lab.number for lab in labs]}, got {number!r}")


def load_module(path, name):
    """Import the Python file at ``path`` under the module name ``name`` (fresh each time)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"lab: no such file {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ValueError(f"lab: expected a Python file (.py), got {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def grade(number, file=None, reference=False, labs_dir=None, only=None):
    """Grade lab ``number``: the student's file (default ``labs/NN_name/student.py``) or the reference.

    A file that cannot be imported gives a report with a single failed item saying why.
    """
    lab = get_lab(number, labs_dir)
    checks = lab.checks()
    path = lab.reference if reference else Path(file) if file is not None else lab.student
    if not path.is_file():
        raise ValueError(f"lab {number}: no such file {path}")
    if path.suffix != ".py":
        raise ValueError(f"lab {number}: expected a Python file (.py), got {path}")
    try:
        module = load_module(path, f"tinynet_lab{number:02d}_{'reference' if reference else 'student'}")
    except Exception as exc:  # a syntax error or a crash at import: report it as the one failed item
        report = Report(checks.number, checks.title, str(path))
        report.results.append(Result("import", f"{path.name} imports", FAIL, _describe_crash(exc, str(path))))
        return report
    return run_checks(checks, module, source=str(path), only=only)


def selfcheck(labs_dir=None, out=print):
    """Every lab's reference must pass every item and its untouched stubs must fail every item
    with ``NotImplementedError("Lab N: ...")``. Return True when all labs behave so."""
    ok = True
    for lab in find_labs(labs_dir):
        ref = grade(lab.number, reference=True, labs_dir=labs_dir)
        stub = grade(lab.number, labs_dir=labs_dir)
        ref_bad = [r for r in ref.results if not r.passed]
        stub_bad = [r for r in stub.results
                    if r.status != TODO or not r.message.startswith(f"not implemented yet: Lab {lab.number}:")]
        seconds = sum(r.seconds for r in ref.results)
        out(f"lab {lab.number} {lab.name}: reference {len(ref.results) - len(ref_bad)}/{len(ref.results)} pass "
            f"({seconds:.1f} s), stubs {len(stub.results) - len(stub_bad)}/{len(stub.results)} fail as stubs")
        for r in ref_bad:
            out(f"  reference fails {r.title}: {r.message}")
        for r in stub_bad:
            out(f"  stub item {r.title!r} did not fail with NotImplementedError('Lab {lab.number}: ...'): "
                f"{r.status} {r.message}".rstrip())
        if stub_bad and any(r.status == PASS for r in stub.results):
            out(f"  ({lab.student} looks filled in: the selfcheck expects a clean checkout)")
        ok = ok and not ref_bad and not stub_bad
    return ok
