"""The attack suite: files written to get a passing grade without doing the lab. None may pass.

Each file in tests/labs_attacks/ is named ``labN_<what>.py`` and graded as lab N in a separate
process, as a student's file is. Cheats that hand the work elsewhere must score nothing; the
rest (right values with a flaw) must fail the item the flaw belongs to.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinynet import grading

ATTACKS = sorted((Path(__file__).parent / "labs_attacks").glob("lab*_*.py"))
HANGS = {"lab1_infinite_loop.py", "lab1_hang_in_forward.py"}
# a flawed but honest file: it passes the items its flaw does not touch
PARTIAL = {"lab1_bias_first_five.py": {"linear_backward_params"},
           "lab1_mutates_dy.py": {"linear_backward_dx", "relu"},
           "lab1_float16.py": {"linear_forward", "linear_backward_dx", "linear_backward_params", "relu"},
           "lab1_os_exit.py": {"linear_backward_dx", "linear_backward_params", "relu", "gradcheck"},
           "lab5_identity_named_leaky.py": {"forward", "backward"},
           "lab6_lookup_table.py": {"gradient", "trains"}}


def lab_of(path):
    return int(path.name[3:path.name.index("_")])


@pytest.mark.parametrize("path", ATTACKS, ids=[p.stem for p in ATTACKS])
def test_an_attack_does_not_pass(path, monkeypatch):
    if path.name in HANGS:
        monkeypatch.setenv("TINYNET_LAB_TIME_SCALE", "0.2")  # 2 s an item, 3 s to import: a hang still shows
    report = grading.grade(lab_of(path), file=path)
    assert not report.passed, report.format()
    if path.name in PARTIAL:
        failed = {r.key for r in report.results if not r.passed}
        assert PARTIAL[path.name] <= failed, report.format()
    else:
        assert report.score == 0, report.format()


def test_an_attack_through_the_command_line_exits_1_and_prints_no_pass(tmp_path):
    path = Path(__file__).parent / "labs_attacks" / "lab1_patch_grader.py"
    result = subprocess.run([sys.executable, "-m", "tinynet", "lab", "1", "--file", str(path)],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "lab complete" not in result.stdout and "PASS" not in result.stdout
    assert "0/7 items pass." in result.stdout
