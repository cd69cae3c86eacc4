"""Grade a course lab: your code runs in its own process, the grader compares and reports.

Examples:
  python -m tinynet lab 1                    grade lab 1's student.py (the handout's copy in this
                                             folder if there is one, else the lab's stub)
  python -m tinynet lab 3 --file mine.py     grade another file against lab 3
  python -m tinynet lab 1 --seed 1234        repeat a run exactly (each run prints its seed)
  python -m tinynet lab --all                grade every lab
  python -m tinynet lab 2 --json results.json        also write Gradescope's results.json
  python -m tinynet lab handout DIR          write a student handout: READMEs and stubs only
  python -m tinynet lab --list               the labs, in order
  python -m tinynet lab --selfcheck          for teachers and CI: every reference passes,
                                             every untouched stub fails   (make labs-selfcheck)
Exit status: 0 when every graded item passes, 1 when some fail, 2 for a usage error.
Grading runs on NumPy; lab 6 needs the MNIST cache (make train fetches it).
"""

import json
import os
from pathlib import Path

from .. import grading


def add_arguments(p):
    p.add_argument("number", nargs="?", default=None,
                   help="the lab to grade (1-7), or `handout` followed by a folder")
    p.add_argument("folder", nargs="?", default=None, help="with `handout`: the folder to write")
    p.add_argument("--file", default=None, help="grade this file instead of the lab's student.py")
    p.add_argument("--reference", action="store_true", help="grade the lab's reference.py (a model solution)")
    p.add_argument("--all", action="store_true", help="grade every lab")
    p.add_argument("--seed", type=int, default=None, help="draw the inputs from this seed (default: a fresh one)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the result as Gradescope's results.json")
    p.add_argument("--checks", action="append", default=[], metavar="PATH",
                   help="an instructor's extra checks file (CHECKS = Checks(N, ...)), graded after the lab's items")
    p.add_argument("--list", action="store_true", help="list the labs")
    p.add_argument("--selfcheck", action="store_true",
                   help="grade every lab's reference (must pass) and untouched stub (must fail)")
    p.add_argument("--labs-dir", default=None, help="the labs folder (default $TINYNET_LABS, else the packaged labs)")


def run(args):
    if args.backend != "numpy":
        raise ValueError(f"lab: grading runs on NumPy; got --backend {args.backend}")
    if args.number == "handout":
        if args.folder is None or args.file or args.reference or args.all or args.list or args.selfcheck:
            raise ValueError("lab handout: expected one folder, e.g. python -m tinynet lab handout my_labs")
        written = grading.handout(args.folder, args.labs_dir)
        print(f"wrote {len(written)} files to {args.folder}: each lab's README.md and student.py "
              f"(grade one with: cd {args.folder} && python -m tinynet lab 1)")
        return 0
    if args.folder is not None:
        raise ValueError(f"lab: unexpected argument {args.folder!r}")
    number = None
    if args.number is not None:
        try:
            number = int(args.number)
        except ValueError:
            raise ValueError(f"lab: expected a lab number or `handout`, got {args.number!r}") from None
    modes = [args.selfcheck, args.list, args.all]
    if sum(modes) > 1 or (any(modes) and (number is not None or args.file or args.reference or args.checks)):
        raise ValueError("lab: --list, --selfcheck and --all take no lab number, --file, --reference or --checks")
    if args.list:
        for lab in grading.find_labs(args.labs_dir):
            print(f"{lab.number}  {lab.name:<26} {_shown(lab.directory)}")
        return 0
    if args.selfcheck:
        return 0 if grading.selfcheck(args.labs_dir, seed=args.seed) else 1
    protected = [Path(args.json).resolve()] if args.json else []
    if args.all:
        reports = []
        for lab in grading.find_labs(args.labs_dir):
            reports.append(_grade(lab.number, args, protected))
            print()
        passed = sum(r.passed for r in reports)
        print(f"{passed}/{len(reports)} labs complete; {_points(sum(r.score for r in reports))}/"
              f"{_points(sum(r.max_score for r in reports))} points")
    else:
        if number is None:
            raise ValueError("lab: which lab? e.g. python -m tinynet lab 1 (or make lab N=1); --list lists them")
        if args.file and args.reference:
            raise ValueError("lab: give --file or --reference, not both")
        reports = [_grade(number, args, protected)]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(grading.gradescope_results(reports), indent=2) + "\n")
    return 0 if all(r.passed for r in reports) else 1


def _grade(number, args, protected):
    report = grading.grade(number, file=args.file, reference=args.reference, labs_dir=args.labs_dir,
                           seed=args.seed, extra_checks=args.checks, protected_write=protected)
    report.source = _shown(report.source)
    print(report.format(), flush=True)
    return report


def _points(x):
    return f"{x:g}"


def _shown(path):
    """A path relative to the current folder when it lies below it."""
    path = str(path)
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
