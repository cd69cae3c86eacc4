"""Grade a course lab offline: pass/fail per item, with hints for the classic mistakes.

Examples:
  python -m tinynet lab 1                    grade labs/01_*/student.py   (or: make lab N=1)
  python -m tinynet lab 3 --file mine.py     grade another file against lab 3
  python -m tinynet lab --list                the labs, in order
  python -m tinynet lab --selfcheck          for teachers and CI: every reference passes,
                                             every untouched stub fails   (make labs-selfcheck)
Grading runs on NumPy; lab 6 needs the MNIST cache (make train fetches it).
"""

import os

from .. import grading


def add_arguments(p):
    p.add_argument("number", nargs="?", type=int, help="the lab to grade (1-6)")
    p.add_argument("--file", default=None, help="grade this file instead of the lab's student.py")
    p.add_argument("--reference", action="store_true", help="grade the lab's reference.py (tinynet's own code)")
    p.add_argument("--list", action="store_true", help="list the labs")
    p.add_argument("--selfcheck", action="store_true",
                   help="grade every lab's reference (must pass) and untouched stubs (must fail)")
    p.add_argument("--labs-dir", default=None, help="the labs folder (default $TINYNET_LABS, ./labs, or the checkout's)")


def run(args):
    if args.backend != "numpy":
        raise ValueError(f"lab: grading runs on NumPy; got --backend {args.backend}")
    if args.selfcheck or args.list:
        if args.number is not None or args.file or args.reference:
            raise ValueError("lab: --list and --selfcheck take no lab number, --file or --reference")
        if args.list:
            for lab in grading.find_labs(args.labs_dir):
                print(f"{lab.number}  {lab.name:<26} {_shown(lab.directory)}")
            return 0
        return 0 if grading.selfcheck(args.labs_dir) else 1
    if args.number is None:
        raise ValueError("lab: which lab? e.g. python -m tinynet lab 1 (or make lab N=1); --list lists them")
    if args.file and args.reference:
        raise ValueError("lab: give --file or --reference, not both")
    report = grading.grade(args.number, file=args.file, reference=args.reference, labs_dir=args.labs_dir)
    report.source = _shown(report.source)
    print(report.format())
    return 0 if report.passed else 1


def _shown(path):
    """A path relative to the current folder when it lies below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
