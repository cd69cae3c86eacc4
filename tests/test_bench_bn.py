"""Tests for ``python -m tinynet bench-bn``: sizes parsing, the agreement check, the table.

Only tiny sizes and a few repeats: the point is that the benchmark measures what it says,
not how fast anything is.
"""

import numpy as np
import pytest

from tinynet.cli import main
from tinynet.commands import bench_bn
from tinynet.layers import BatchNorm


def test_parse_sizes():
    assert bench_bn.parse_sizes("60x100,4096X4096") == [(60, 100), (4096, 4096)]
    for bad in ("60", "60x", "ax3", "1x10", "8x0"):
        with pytest.raises(ValueError, match="bench-bn: expected"):
            bench_bn.parse_sizes(bad)


def test_time_backward_times_both_forms_and_they_agree(xp):
    result = bench_bn.time_backward(32, 7, xp, np.float64, repeat=3, warmup=1, rng=np.random.default_rng(0))
    assert result["paper"] > 0 and result["simplified"] > 0
    assert result["scale"] > 0 and result["max_abs_diff"] <= 1e-10 * result["scale"]


def test_plain_forms_only_by_default_and_the_c_kernel_with_fast(capsys):
    plain = bench_bn.time_backward(32, 7, np, np.float64, repeat=3, warmup=1, rng=np.random.default_rng(0))
    assert set(plain) == {"paper", "simplified", "max_abs_diff", "scale"}  # the code a student reads, nothing else
    from tinynet.speed import cpu

    result = bench_bn.time_backward(32, 7, np, np.float64, repeat=3, warmup=1, rng=np.random.default_rng(0), fast=True)
    built = cpu.library() is not None
    assert ("fused" in result) == built
    if built:  # the C backward is held to the same agreement as the two plain forms
        assert result["fused"] > 0 and result["max_abs_diff"] <= 1e-10 * result["scale"]
        assert main(["bench-bn", "--backend", "numpy", "--sizes", "8x3", "--repeat", "2", "--warmup", "0", "--fast"]) == 0
        assert "fused (ms)" in capsys.readouterr().out


def test_command_prints_one_row_per_size(capsys):
    assert main(["bench-bn", "--backend", "numpy", "--sizes", "8x3,16x5", "--repeat", "3", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[:2] for row in rows] == [["8", "3"], ["16", "5"]]
    for row in rows:
        paper, simplified, ratio = (float(v) for v in row[2:5])
        assert ratio == pytest.approx(paper / simplified, rel=0.02, abs=0.01)
        assert row[5] == ("simplified" if ratio > 1 else "paper")
    assert "BatchNorm backward on numpy, float32" in out and "All forms agree" in out


def test_without_backend_every_available_backend_is_timed(capsys, monkeypatch):
    monkeypatch.delenv("TINYNET_BACKEND", raising=False)
    asked, backends_to_time = [], bench_bn.backends_to_time
    monkeypatch.setattr(bench_bn, "backends_to_time", lambda b: asked.append(b) or ["numpy"])
    assert main(["bench-bn", "--sizes", "4x2", "--repeat", "1", "--warmup", "0", "--dtype", "float64"]) == 0
    assert asked == ["auto"] and "on numpy, float64" in capsys.readouterr().out
    monkeypatch.setattr(bench_bn, "cupy_available", lambda: True)
    assert backends_to_time("auto") == ["numpy", "cupy"]
    monkeypatch.setattr(bench_bn, "cupy_available", lambda: False)
    assert backends_to_time("auto") == ["numpy"]
    assert backends_to_time("cupy") == ["cupy"]


def test_a_wrong_backward_is_reported(capsys, monkeypatch):
    right = BatchNorm._backward_paper

    def off_by_a_bit(dxhat, xc, inv_std):
        return right(dxhat, xc, inv_std) * 1.01

    monkeypatch.setattr(BatchNorm, "_backward_paper", staticmethod(off_by_a_bit))
    assert main(["bench-bn", "--backend", "numpy", "--sizes", "8x3", "--repeat", "2", "--warmup", "0"]) == 2
    captured = capsys.readouterr()
    assert "DISAGREE" in captured.out and "disagree" in captured.err


def test_bad_options_are_refused(capsys):
    assert main(["bench-bn", "--backend", "numpy", "--repeat", "0"]) == 2
    assert "--repeat >= 1" in capsys.readouterr().err
    assert main(["bench-bn", "--backend", "numpy", "--sizes", "60by100"]) == 2
    assert "expected sizes like" in capsys.readouterr().err
