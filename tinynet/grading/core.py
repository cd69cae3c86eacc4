"""The course-lab grader: the verdict is made here, in the parent process, never in the student's.

A lab is a folder ``NN_name/`` holding ``README.md`` and ``student.py`` (the handout),
``reference.py`` (a model solution), ``probes.py`` (student-side: drives the student's classes
on given inputs and returns what came out) and ``checks.py`` (grader-side: the graded items,
each building fresh inputs, asking the student's process to run a probe on them, and comparing
the arrays that come back with the grader's own answer).

Grading a file:

1. a seed is drawn (or given with ``--seed``) and printed; each item draws its inputs from it;
2. the student's file is imported in a separate process (:mod:`tinynet.grading.child`), in which
   the tinynet code the lab asks the student to write is unavailable;
3. each item runs under a time limit, and the whole lab under another; a hang or a crash fails
   that item, names it, and the next item runs in a fresh process;
4. the report is made and printed here, from the arrays the student's process returned.
"""

import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import child as wire
from .compare import Fail
from .hints import HINTS

PASS, FAIL, TODO = "PASS", "FAIL", "TODO"
CHILD = Path(wire.__file__).resolve()
LABS_ROOT = Path(__file__).resolve().parent.parent / "labs"  # shipped inside the package
IMPORT_TIMEOUT = 15.0  # starting Python, NumPy, tinynet and importing the student's file
TIME_SCALE_ENV = "TINYNET_LAB_TIME_SCALE"  # a slow machine can stretch every limit: 2 doubles them


def time_scale():
    try:
        scale = float(os.environ.get(TIME_SCALE_ENV, "1"))
    except ValueError:
        raise ValueError(f"{TIME_SCALE_ENV}: expected a number, got {os.environ[TIME_SCALE_ENV]!r}") from None
    if not scale > 0:
        raise ValueError(f"{TIME_SCALE_ENV}: expected a positive number, got {scale}")
    return scale


class Todo(Exception):
    """The student's code still raises NotImplementedError (a stub)."""


class ChildLost(Exception):
    """The student's process hung, died, or sent something unreadable; it has been stopped."""


# --------------------------------------------------------------------------- items
@dataclass
class Item:
    """One graded item: ``check(student)`` returns (optionally a line of info) or raises Fail."""

    key: str
    title: str
    check: object
    timeout: float = 10.0
    points: float = 1.0


class Checks:
    """The graded items of one lab, in order.

    Parameters
    ----------
    number : int
        The lab's number (the stubs' messages start with ``"Lab {number}:"``).
    title : str
        The lab's title, printed above its report.
    time_limit : float
        Seconds for the whole lab; items not started by then fail as not graded.
    probes : str or Path, optional
        The student-side file of probes for these items; default ``probes.py`` beside the
        checks file (set when the checks file is loaded).
    """

    def __init__(self, number, title, time_limit=60.0, probes=None):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"Checks: expected a positive lab number, got {number!r}")
        self.number, self.title, self.items = number, str(title), []
        self.time_limit, self.probes = float(time_limit), probes

    def item(self, title, timeout=10.0, points=1.0):
        """Decorator: register ``check(student)`` as the next graded item, titled ``title``."""

        def register(check):
            self.items.append(Item(check.__name__, title, check, float(timeout), float(points)))
            return check

        return register


# --------------------------------------------------------------------------- results
@dataclass
class Result:
    """How one item went: PASS, FAIL, or TODO (a stub still raises NotImplementedError)."""

    key: str
    title: str
    status: str
    message: str = ""
    hint: str = None
    info: str = ""
    seconds: float = 0.0
    points: float = 1.0

    @property
    def passed(self):
        return self.status == PASS

    @property
    def score(self):
        return self.points if self.passed else 0.0


@dataclass
class Report:
    """The grade of one submission: one :class:`Result` per item, in order."""

    number: int
    title: str
    source: str
    seed: int = None
    results: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self):
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def score(self):
        return sum(r.score for r in self.results)

    @property
    def max_score(self):
        return sum(r.points for r in self.results)

    def result(self, key):
        """The result of the item whose check function is named ``key``."""
        for r in self.results:
            if r.key == key:
                return r
        raise KeyError(f"Report: lab {self.number} has no graded item {key!r}; items: {[r.key for r in self.results]}")

    def item_text(self, r, shown=None):
        """What the report says under one item (its info, or what failed and the hint)."""
        lines = []
        detail = r.info if r.passed else r.message
        lines += [f"        {text}" for text in detail.splitlines()]
        if r.hint:
            lines.append(_wrap(f"hint: {HINTS[r.hint]}", "        ", "              "))
        return lines

    def format(self):
        """The report as text: a line per item, then what failed and why, then the score."""
        lines = [f"Lab {self.number}: {self.title}", f"grading {self.source}"]
        if self.seed is not None:
            lines.append(f"inputs drawn with seed {self.seed} (--seed {self.seed} repeats this run)")
        lines.append("")
        shown = {}  # a failure met again (one bug breaks several items) is printed once
        for i, r in enumerate(self.results, 1):
            lines.append(f"  {i}. {r.status}  {r.title}")
            if not r.passed and (r.message, r.hint) in shown:
                lines.append(f"        the same failure as item {shown[r.message, r.hint]} above")
                continue
            if not r.passed:
                shown.setdefault((r.message, r.hint), i)
            lines += self.item_text(r)
        done = sum(r.passed for r in self.results)
        lines.append("")
        lines.append(f"{done}/{len(self.results)} items pass" + (" -- lab complete." if self.passed else "."))
        return "\n".join(lines)

    def gradescope_tests(self):
        """The items as Gradescope test cases (name, score, max_score, status, output)."""
        tests = []
        for i, r in enumerate(self.results, 1):
            output = "\n".join(line.strip() for line in self.item_text(r))
            tests.append({"name": f"Lab {self.number}, item {i}: {r.title}", "number": f"{self.number}.{i}",
                          "score": r.score, "max_score": r.points,
                          "status": "passed" if r.passed else "failed",
                          "output": f"{r.status}\n{output}".rstrip()})
        return tests


def gradescope_results(reports):
    """Gradescope's results.json for one or several reports: the tests and the total score."""
    tests = [t for report in reports for t in report.gradescope_tests()]
    seeds = ", ".join(f"lab {r.number}: seed {r.seed}" for r in reports if r.seed is not None)
    return {"score": sum(r.score for r in reports), "max_score": sum(r.max_score for r in reports),
            "execution_time": round(sum(r.seconds for r in reports), 3),
            "output": f"Graded by tinynet's lab grader; inputs drawn with {seeds}." if seeds else "Graded by tinynet.",
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def _wrap(text, first, rest, width=100):
    words, lines, line = text.split(), [], first
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = rest
        line += word + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- the student, as an item sees it
class Student:
    """What a graded item sees of the submission: ``run(probe, **inputs)`` and its own ``rng``."""

    def __init__(self, runner, key, rng, deadline):
        self._runner, self._key, self.rng, self._deadline = runner, key, rng, deadline

    def run(self, name, **args):
        """Run the probe ``name`` on ``args`` in the student's process; return its arrays.

        Raises Todo for a stub, Fail when the student's code crashed or was refused, ChildLost
        when the process hung or died.
        """
        response = self._runner.call(self._key, name, args, self._deadline)
        status = response.get("status")
        if status == "ok":
            return response.get("value")
        message = str(response.get("message", ""))
        if status == "todo":
            raise Todo(message)
        if status in ("crash", "refused"):
            hint = response.get("hint")
            raise Fail(message, hint if hint in HINTS else None)
        raise ChildLost(f"the grader could not run {name!r}: {message}")


def _check_response(response):
    if not isinstance(response, dict) or response.get("status") not in ("ok", "todo", "crash", "refused", "error",
                                                                         "ready"):
        raise wire.ProtocolError("not a response")
    return response


class LocalRunner:
    """Runs probes in this process on a module or namespace (tests only: no isolation, no blocking)."""

    def __init__(self, submission, probes):
        self.submission, self.probes = submission, probes

    def start(self, deadline):
        return {"status": "ready"}

    def call(self, key, name, args, deadline):
        args = wire.decode(wire.encode(args))
        response = wire.dispatch(self.probes[key], name, self.submission, args)
        return _check_response(wire.decode(wire.encode(response)))

    def stop(self):
        pass


class ChildRunner:
    """The student's file imported in a fresh Python process that the grader can time out and kill."""

    def __init__(self, lab_number, student, probes, protected_files=(), protected_write=()):
        self.lab_number, self.student, self.probes = lab_number, Path(student).resolve(), probes
        self.protected_files, self.protected_write = list(protected_files), list(protected_write)
        self.proc = self.r = self.w = self.out = None

    def start(self, deadline):
        r_req, w_req = os.pipe()
        r_resp, w_resp = os.pipe()
        self.out = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")  # one BLAS thread: timings comparable, and fair on a shared machine
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), str(r_req), str(w_resp)], pass_fds=(r_req, w_resp),
                stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        finally:
            os.close(r_req)
            os.close(w_resp)
        self.w, self.r = w_req, r_resp
        os.set_blocking(self.w, False)
        self._send({"sys_path": [p for p in sys.path if p], "lab": self.lab_number, "student": str(self.student),
                    "probes": {k: str(v) for k, v in self.probes.items()},
                    "protected_dirs": [], "protected_files": [str(p) for p in self.protected_files],
                    "protected_write": [str(p) for p in self.protected_write]}, deadline, "starting")
        return self._recv(deadline, "importing your file")

    def call(self, key, name, args, deadline):
        self._send({"op": "call", "probes": key, "name": name, "args": args}, deadline, name)
        return self._recv(deadline, name)

    def _send(self, value, deadline, what):
        data = wire.encode(value)
        view = memoryview(wire.struct.pack("<Q", len(data)) + data)
        try:
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([], [self.w], [], remaining)[1]:
                    raise TimeoutError
                view = view[os.write(self.w, view):]
        except TimeoutError:
            raise self._lost(f"timed out ({what})") from None
        except (BrokenPipeError, OSError):
            raise self._lost(f"your program ended before the grader could send the inputs ({what})") from None

    def _recv(self, deadline, what):
        def wait():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.r], [], [], remaining)[0]:
                raise TimeoutError

        try:
            return _check_response(wire.recv(self.r, wait))
        except TimeoutError:
            raise self._lost(f"timed out: your code was still running when the time limit was reached ({what})") \
                from None
        except EOFError:
            raise self._lost(f"your program ended while being graded ({what})") from None
        except wire.ProtocolError as exc:
            raise self._lost(f"your program sent the grader something it cannot read ({exc})") from None

    def _lost(self, message):
        code = self.stop()
        if code not in (None, 0, -signal.SIGKILL):
            message += f"; exit code {code}"
        tail = self.output_tail()
        if tail:
            message += "\nthe last lines your program printed:\n" + "\n".join(f"| {line}" for line in tail)
        return ChildLost(message)

    def output_tail(self, lines=12):
        if self.out is None or self.out.closed:
            return []
        try:
            self.out.seek(0)
            text = self.out.read()[-4000:].decode(errors="replace")
        except (OSError, ValueError):
            return []
        return [line[:200] for line in text.splitlines()[-lines:]]

    def stop(self):
        """End the student's process (and anything it started); return its exit code."""
        code = None
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        for fd in (self.r, self.w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.r = self.w = None
        return code

    def close(self):
        self.stop()
        if self.out is not None:
            self.out.close()


# --------------------------------------------------------------------------- grading
def new_seed():
    return secrets.randbelow(2**31)


def run_items(checks_list, runner_factory, source, seed=None, only=None, student_file=None):
    """Grade with a runner: every item of every Checks in ``checks_list`` (the lab's, then extras)."""
    first = checks_list[0]
    seed = new_seed() if seed is None else int(seed)
    scale = time_scale()
    items = [(checks, item) for checks in checks_list for item in checks.items]
    if only is not None:
        only = set(only)
        unknown = only - {item.key for _, item in items}
        if unknown:
            raise ValueError(f"lab {first.number} has no items {sorted(unknown)}; it has {[i.key for _, i in items]}")
        items = [(c, i) for c, i in items if i.key in only]
    report = Report(first.number, first.title, str(source), seed)
    started = time.monotonic()
    lab_deadline = started + first.time_limit * scale
    runner, broken = None, None  # broken: why the file cannot be graded at all (it did not import)
    try:
        for checks, item in items:
            t0 = time.monotonic()
            result = Result(item.key, item.title, FAIL, points=item.points)
            if broken is not None:
                result.status, result.message, result.hint = broken
            elif t0 >= lab_deadline:
                result.message = (f"not graded: the lab's time limit ({first.time_limit * scale:.0f} s) ran out "
                                  "before this item")
            else:
                try:
                    if runner is None:
                        runner = runner_factory()
                        try:
                            response = runner.start(min(time.monotonic() + IMPORT_TIMEOUT * scale, lab_deadline))
                        except ChildLost as lost:
                            response = {"status": "crash", "message": f"importing your file failed: {lost}"}
                        if response["status"] != "ready":
                            hint = response.get("hint") if response.get("hint") in HINTS else None
                            broken = (TODO if response["status"] == "todo" else FAIL, str(response.get("message", "")),
                                      hint)
                            runner.stop()
                            runner = None
                            result.status, result.message, result.hint = broken
                            raise _Done
                    deadline = min(time.monotonic() + item.timeout * scale, lab_deadline)
                    rng = np.random.default_rng([seed, zlib.crc32(item.key.encode())])
                    info = item.check(Student(runner, checks.key, rng, deadline))
                    result.status, result.info = PASS, str(info or "")
                except _Done:
                    pass
                except Fail as fail:
                    result.message, result.hint = fail.message, fail.hint
                except Todo as todo:
                    result.status, result.message = TODO, f"not implemented yet: {todo}"
                except ChildLost as lost:
                    result.message = str(lost)
                    runner = None  # the next item starts a fresh process
                except Exception as exc:  # a value of an unexpected kind reached the grader's comparison
                    result.message = f"the grader could not use what your code returned: {type(exc).__name__}: {exc}"
            result.seconds = time.monotonic() - t0
            report.results.append(result)
    finally:
        if runner is not None:
            runner.stop()
    report.seconds = time.monotonic() - started
    return report


class _Done(Exception):
    pass


def run_checks(checks, submission, source="submission", only=None, seed=None, extra=()):
    """Grade ``submission`` (a module or a namespace with the lab's names) in this process.

    For tests of the checks themselves: no separate process and nothing blocked. Grading a
    student's file is :func:`grade`.
    """
    if not isinstance(checks, Checks):
        raise TypeError(f"run_checks: expected a Checks object, got {type(checks).__name__}")
    checks_list = [checks, *extra]
    probes = {c.key: c.probes_module() for c in checks_list}
    return run_items(checks_list, lambda: LocalRunner(submission, probes), source, seed, only)


# --------------------------------------------------------------------------- finding labs
@dataclass
class Lab:
    """A lab folder: its number, name and files."""

    number: int
    name: str
    directory: Path

    @property
    def student(self):
        return self.directory / "student.py"

    @property
    def reference(self):
        return self.directory / "reference.py"

    @property
    def folder(self):
        return self.directory.name

    def checks_module(self):
        """Import the lab's ``checks.py`` afresh (its settings, such as lab 6's STEPS, can then be changed)."""
        return load_module(self.directory / "checks.py", f"tinynet_lab{self.number:02d}_checks")

    def checks(self, module=None):
        """The lab's ``CHECKS``, its probes file set."""
        return checks_from(module or self.checks_module(), self.directory / "checks.py", self.number)


def checks_from(module, path, number=None):
    checks = getattr(module, "CHECKS", None)
    if not isinstance(checks, Checks) or (number is not None and checks.number != number):
        want = f"Checks({number}, ...)" if number is not None else "Checks(N, ...)"
        raise ValueError(f"{path}: expected CHECKS = {want}")
    probes = Path(path).resolve().parent / (checks.probes or "probes.py")
    if not probes.is_file():
        raise ValueError(f"{path}: its probes file {probes} does not exist")
    checks.probes, checks.key = probes, f"{checks.number}_{zlib.crc32(str(probes).encode()):08x}"
    checks.probes_module = lambda: load_module(probes, f"tinynet_lab{checks.number:02d}_probes_{checks.key}")
    return checks


def default_labs_dir():
    """``$TINYNET_LABS`` when set, else the labs shipped inside the tinynet package."""
    return Path(os.environ["TINYNET_LABS"]) if os.environ.get("TINYNET_LABS") else LABS_ROOT


def find_labs(labs_dir=None):
    """The labs in ``labs_dir`` (folders named ``NN_name`` holding a checks.py), by number."""
    root = Path(labs_dir) if labs_dir is not None else default_labs_dir()
    if not root.is_dir():
        raise ValueError(f"labs: no labs folder at {root}")
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
    import importlib.util

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


def student_file(lab, cwd=None):
    """The file a plain ``python -m tinynet lab N`` grades: the handout's copy in the current folder
    (``NN_name/student.py`` or ``labs/NN_name/student.py``), else the lab's own stub."""
    cwd = Path.cwd() if cwd is None else Path(cwd)
    for candidate in (cwd / lab.folder / "student.py", cwd / "labs" / lab.folder / "student.py"):
        if candidate.is_file():
            return candidate
    return lab.student


def protected_files(labs_dir=None):
    """What the student's process may not open: the grader's own code and every lab's checks and
    reference (the student's file itself is always allowed)."""
    files = [p for p in Path(__file__).resolve().parent.glob("*.py") if p.name != "child.py"]
    roots = {LABS_ROOT, default_labs_dir()} | ({Path(labs_dir)} if labs_dir else set())
    for root in roots:
        if Path(root).is_dir():
            files += list(Path(root).glob("*/checks.py")) + list(Path(root).glob("*/reference.py"))
    return [p.resolve() for p in files]


def grade(number, file=None, reference=False, labs_dir=None, only=None, seed=None, extra_checks=(),
          protected_write=()):
    """Grade lab ``number`` in a separate process: the student's file (default: see
    :func:`student_file`) or the lab's reference.

    Parameters
    ----------
    extra_checks : list of paths
        Instructors' checks files (``CHECKS = Checks(number, ...)``, probes beside them),
        graded after the lab's own items.
    protected_write : list of paths
        Files the student's process may not open (the results file being written).
    """
    lab = get_lab(number, labs_dir)
    checks_list = [lab.checks()]
    for i, path in enumerate(extra_checks):
        module = load_module(path, f"tinynet_lab{number:02d}_extra_checks_{i}")
        checks_list.append(checks_from(module, path, number))
    path = lab.reference if reference else Path(file) if file is not None else student_file(lab)
    if not path.is_file():
        raise ValueError(f"lab {number}: no such file {path}")
    if path.suffix != ".py":
        raise ValueError(f"lab {number}: expected a Python file (.py), got {path}")
    probes = {c.key: c.probes for c in checks_list}
    protected = protected_files(labs_dir) + [Path(p).resolve() for p in extra_checks]

    def factory():
        return ChildRunner(number, path, probes, protected, protected_write)

    return run_items(checks_list, factory, path, seed, only)


def selfcheck(labs_dir=None, out=print, seed=None):
    """Every lab's reference must pass every item and its untouched stub must fail every item
    with ``NotImplementedError("Lab N: ...")``. Return True when all labs behave so."""
    ok = True
    for lab in find_labs(labs_dir):
        ref = grade(lab.number, reference=True, labs_dir=labs_dir, seed=seed)
        stub = grade(lab.number, file=lab.student, labs_dir=labs_dir, seed=seed)
        ref_bad = [r for r in ref.results if not r.passed]
        stub_bad = [r for r in stub.results
                    if r.status != TODO or not r.message.startswith(f"not implemented yet: Lab {lab.number}:")]
        out(f"lab {lab.number} {lab.name}: reference {len(ref.results) - len(ref_bad)}/{len(ref.results)} pass "
            f"({ref.seconds:.1f} s, seed {ref.seed}), stubs {len(stub.results) - len(stub_bad)}/{len(stub.results)} "
            "fail as stubs")
        for r in ref_bad:
            out(f"  reference fails {r.title}: {r.message}")
        for r in stub_bad:
            out(f"  stub item {r.title!r} did not fail with NotImplementedError('Lab {lab.number}: ...'): "
                f"{r.status} {r.message}".rstrip())
        if stub_bad and any(r.status == PASS for r in stub.results):
            out(f"  ({lab.student} looks filled in: the selfcheck expects a clean checkout)")
        ok = ok and not ref_bad and not stub_bad
    return ok


def handout(directory, labs_dir=None):
    """Write a student handout to ``directory``: the labs' README and student.py files, nothing else.

    Returns the paths written. Refuses a folder that exists and is not empty.
    """
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(f"lab handout: {directory} exists and is not an empty folder; choose a new one")
    written = []
    root = Path(labs_dir) if labs_dir is not None else default_labs_dir()
    directory.mkdir(parents=True, exist_ok=True)
    intro = root / "HANDOUT.md"
    if intro.is_file():
        shutil.copyfile(intro, directory / "README.md")
        written.append(directory / "README.md")
    for lab in find_labs(labs_dir):
        target = directory / lab.folder
        target.mkdir()
        for name in ("README.md", "student.py"):
            if (lab.directory / name).is_file():
                shutil.copyfile(lab.directory / name, target / name)
                written.append(target / name)
    return written
