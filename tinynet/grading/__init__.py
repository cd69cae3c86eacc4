"""The course-lab grader (an application on top of tinynet; the core never imports it).

    python -m tinynet lab 3                 grade the student's file for lab 3
    python -m tinynet lab --selfcheck       every reference passes, every untouched stub fails

The student's code runs in a separate process (:mod:`tinynet.grading.child`); the items,
the expected values and the report live here (:mod:`tinynet.grading.core`,
:mod:`tinynet.grading.compare`). A lab's ``checks.py`` imports what it needs from this package.
"""

from .compare import (Fail, as_array, expect_close, expect_dtype, expect_unchanged, gradient_check, is_close,
                      numeric_gradient,
                      skip_connections, tolerance)
from .core import (FAIL, PASS, TODO, Checks, ChildLost, Item, Lab, Report, Result, Student, Todo, default_labs_dir,
                   find_labs, get_lab, gradescope_results, grade, handout, load_module, run_checks, selfcheck,
                   student_file)
from .hints import HINTS

__all__ = [
    "Checks", "Item", "Fail", "Todo", "ChildLost", "Student", "Result", "Report", "Lab", "HINTS",
    "PASS", "FAIL", "TODO", "grade", "run_checks", "selfcheck", "handout", "gradescope_results",
    "find_labs", "get_lab", "default_labs_dir", "student_file", "load_module",
    "expect_close", "expect_dtype", "expect_unchanged", "gradient_check", "is_close", "as_array", "numeric_gradient",
    "skip_connections", "tolerance",
]
