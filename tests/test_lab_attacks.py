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
HANGS = {"lab1_infinite_loop.py", "lab1_hang_in_forward.py", "lab7_hang.py"}
# a flawed but honest file: it passes the items its flaw does not touch
PARTIAL = {"lab1_bias_first_five.py": {"linear_backward_params"},
           "lab1_mutates_dy.py": {"linear_backward_dx", "relu"},
           "lab1_float16.py": {"linear_forward", "linear_backward_dx", "linear_backward_params", "relu"},
           "lab1_os_exit.py": {"linear_backward_dx", "linear_backward_params", "relu", "gradcheck"},
           "lab5_identity_named_leaky.py": {"forward", "backward"},
           "lab6_lookup_table.py": {"gradient", "trains"},
           "lab7_pool_grad_to_all.py": {"maxpool", "gradcheck"},
           "lab7_pixel_loops.py": {"speed"}}


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


def attack(name):
    return Path(__file__).parent / "labs_attacks" / name


def test_lab7_tinynets_conv_is_refused_for_the_reason_that_applies():
    """Imported, subclassed or loaded from disk, tinynet's Conv2d and MaxPool2d do not serve lab 7."""
    reasons = {"lab7_tinynet_imports.py": "tinynet's Conv2d is not available while grading lab 7",
               "lab7_subclass_tinynet.py": "tinynet's Conv2d is not available while grading lab 7",
               "lab7_importlib.py": "is not allowed while grading",
               "lab7_subclass_original.py": "tinynet's Conv2d.forward is not available while grading lab 7"}
    for name, reason in reasons.items():
        report = grading.grade(7, file=attack(name))
        assert report.score == 0 and reason in report.results[0].message, (name, report.format())


def test_lab7_pooling_gradient_to_every_element_gets_its_hint():
    report = grading.grade(7, file=attack("lab7_pool_grad_to_all.py"))
    assert report.result("maxpool").hint == "pool_grad_to_all", report.format()
    assert report.result("conv_forward").passed and report.result("conv_backward_dx").passed


def test_lab4_a_class_without_backward_is_told_to_define_it():
    result = grading.grade(4, file=attack("lab4_no_backward.py")).result("backward_dx")
    assert not result.passed
    assert "does not define backward" in result.message and "probes" not in result.message, result.message
    assert "asks your BatchNorm class to define backward itself" in result.message, result.message


def test_lab7_sys_exit_and_a_hang_fail_for_what_they_did(monkeypatch):
    report = grading.grade(7, file=attack("lab7_sys_exit.py"))
    assert report.score == 0 and all("sys.exit(0)" in r.message for r in report.results), report.format()
    monkeypatch.setenv("TINYNET_LAB_TIME_SCALE", "0.2")
    report = grading.grade(7, file=attack("lab7_hang.py"), only=["conv_forward", "maxpool"])
    assert report.score == 0 and all("timed out" in r.message for r in report.results), report.format()
