"""The C kernels for NumPy arrays (tinynet/speed/cpu.py) against the plain NumPy code.

Each layer runs once accelerated (``tinynet.speed.accelerate``: the C kernels, where a C compiler
is found) and once as built (the plain code, the reference); the two must agree: bit for bit
where the kernel rounds as the plain code does (ReLU, SGD, Adam), to a few ulps where it sums in
double (BatchNorm, the loss).
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet as tn
from tinynet import speed
from tinynet.nonfinite import finite_step
from tinynet.speed import cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_kernels = pytest.mark.skipif(cpu.library() is None, reason=f"no C kernels: {speed.cpu_status()}")
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
SHAPES = [(2, 3), (37, 45), (128, 256)]  # tiny, ragged (no vector width divides 45), MNIST's


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def both(run):
    """``run(fast)`` with the objects accelerated, then plain: (kernels' result, plain result)."""
    return run(True), run(False)


def accelerated(obj, fast=True):
    """``obj`` (a layer, loss or optimizer) given its C implementation when ``fast``; it must get
    one, or the test would compare the plain code with itself."""
    if fast:
        kind = "model" if isinstance(obj, tn.Layer) else "optimizer" if isinstance(obj, tn.optim.Optimizer) else "loss"
        report = speed.accelerate(**{kind: obj})
        assert [o for _, o, _ in report] == [obj], f"nothing accelerated {type(obj).__name__}"
    return obj


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler on this machine")
@pytest.mark.skipif(os.environ.get("TINYNET_CPU_KERNELS") == "0", reason="switched off by TINYNET_CPU_KERNELS=0")
def test_kernels_are_built_where_a_compiler_is_found():
    assert cpu.library() is not None, speed.cpu_status()
    status = speed.cpu_status()
    assert status.startswith("on: BatchNorm, ReLU, the loss, SGD, Adam and the NaN check in C (built with "), status


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_relu_equals_plain_bit_for_bit(rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[:4] = [np.nan, -np.inf, np.inf, -0.0]
    dy = rng.standard_normal(shape).astype(dtype)
    dy.flat[4] = np.nan

    def run(fast):
        relu = accelerated(tn.ReLU(), fast)
        return relu.forward(x), relu.backward(dy)

    (y, dx), (y_plain, dx_plain) = both(run)
    np.testing.assert_array_equal(y, y_plain)  # NaN stays NaN; -inf becomes 0
    np.testing.assert_array_equal(dx, dx_plain)
    assert y.dtype == dx.dtype == dtype


@needs_kernels
def test_relu_backward_keeps_the_dtype_of_dy_as_the_plain_code_does(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    dy = rng.standard_normal((4, 6))  # float64 from upstream

    def run(fast):
        relu = accelerated(tn.ReLU(), fast)
        relu.forward(x)
        return relu.backward(dy)

    dx, dx_plain = both(run)
    assert dx.dtype == dx_plain.dtype == np.float64
    np.testing.assert_array_equal(dx, dx_plain)


def batchnorm_step(x, dy, zero_first, dtype, fast):
    """One training forward and backward of a BatchNorm with uneven gamma, beta and running stats;
    without ``zero_first`` the gradients already hold a value the backward must add to."""
    c = x.shape[1]
    bn = accelerated(tn.BatchNorm(c, momentum=0.2, dtype=dtype), fast)
    bn.gamma.data[:] = np.linspace(0.5, 1.5, c)
    bn.beta.data[:] = np.linspace(-0.2, 0.3, c)
    bn.running_mean[:] = np.linspace(-1, 1, c)
    bn.running_var[:] = np.linspace(0.5, 2, c)
    y = bn.forward(x)
    if zero_first:
        bn.zero_grad()
    else:
        bn.gamma.grad[...] = 0.25
        bn.beta.grad[...] = -0.5
    dx = bn.backward(dy)
    return [a.copy() for a in (y, dx, bn.gamma.grad, bn.beta.grad, bn.running_mean, bn.running_var)]


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("zero_first", [True, False])
def test_batchnorm_equals_plain(rng, dtype, shape, zero_first):
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    fast, plain = both(lambda fast: batchnorm_step(x, dy, zero_first, dtype, fast))
    for name, a, b in zip(("y", "dx", "dgamma", "dbeta", "running_mean", "running_var"), fast, plain):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, b, **TOL[dtype], err_msg=name)


@needs_kernels
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(1, 70), st.sampled_from([1e-3, 1.0, 1e3]),
       st.sampled_from([0.0, 5.0, -300.0]))
def test_batchnorm_equals_plain_over_random_shapes_scales_and_offsets(seed, n, c, scale, offset):
    """float64, where the plain code is exact enough to be the judge: a large offset against a
    small spread is where a one-pass variance would fail."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c)) * scale + offset
    dy = rng.standard_normal((n, c))
    fast, plain = both(lambda fast: batchnorm_step(x, dy, True, np.float64, fast))
    for name, a, b in zip(("y", "dx", "dgamma", "dbeta", "running_mean", "running_var"), fast, plain):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * (1 + np.abs(b).max()), err_msg=name)


@needs_kernels
def test_batchnorm_kernel_updates_running_stats_kept_in_an_unusual_array(rng):
    """Running statistics that are a strided view: the kernel updates a copy and writes it back."""
    x = rng.standard_normal((16, 5)).astype(np.float32)

    def run(fast):
        bn = accelerated(tn.BatchNorm(5), fast)
        bn.running_mean = np.zeros(10, np.float32)[::2]
        bn.forward(x)
        return bn.running_mean.copy()

    fast, plain = both(run)
    np.testing.assert_allclose(fast, plain, rtol=1e-6)
    assert np.abs(fast).max() > 0.01  # it moved


@needs_kernels
def test_batchnorm_subclass_with_its_own_backward_gets_the_plain_saved_layout(rng):
    """A lab's stub overrides backward and reads (batch_stats, xhat, inv_std, xc): accelerate must
    not give it the kernel, whose forward saves (x, mean, inv_std) instead."""

    class MyBatchNorm(tn.BatchNorm):
        def backward(self, dy):
            batch_stats, xhat, inv_std, xc = self.saved()
            return dy * inv_std

    x = rng.standard_normal((8, 3)).astype(np.float32)
    bn = MyBatchNorm(3)
    assert speed.accelerate(tn.Sequential(bn)) == [] and "forward" not in vars(bn)
    bn.forward(x)
    batch_stats, xhat, inv_std, xc = bn.saved()
    assert batch_stats is True
    np.testing.assert_allclose(xhat.mean(axis=0), 0, atol=1e-6)


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (128, 10), (33, 7)])
def test_softmax_cross_entropy_equals_plain(rng, dtype, shape):
    logits = (rng.standard_normal(shape) * 30).astype(dtype)  # large: the row shift matters
    labels = rng.integers(0, shape[1], shape[0])

    def run(fast):
        crit = accelerated(tn.SoftmaxCrossEntropy(), fast)
        value = crit(logits, labels)
        return value, crit.backward(0.5)

    (value, grad), (value_plain, grad_plain) = both(run)
    assert type(value) is type(value_plain) and grad.dtype == dtype
    np.testing.assert_allclose(value, value_plain, **TOL[dtype])
    np.testing.assert_allclose(grad, grad_plain, **TOL[dtype])


@needs_kernels
@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.9, False, 0.0), (0.9, True, 1e-3), (0.0, False, 0.0),
                                                              (0.0, False, 5e-4)])
def test_sgd_equals_plain_bit_for_bit(rng, momentum, nesterov, weight_decay):
    shapes = [(7, 5), (5,), (300,)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]

    def run(fast):
        params = [tn.Parameter(a.copy()) for a in start]
        opt = accelerated(tn.SGD(params, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay), fast)
        for step in grads:
            opt.zero_grad()
            for p, g in zip(params, step):
                p.grad += g
            opt.step()
        return [p.data.copy() for p in params] + [s.get("momentum_buffer", np.zeros(0)).copy() for s in opt.state]

    for a, b in zip(*both(run)):
        np.testing.assert_array_equal(a, b)


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_equals_plain_bit_for_bit(rng, dtype, weight_decay):
    shapes = [(7, 5), (300,)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) * 10.0**k for s in shapes] for k in (-3, 0, 2, -1)]

    def run(fast):
        params = [tn.Parameter(a.copy()) for a in start]
        opt = accelerated(tn.Adam(params, lr=0.01, weight_decay=weight_decay), fast)
        for step in grads:
            opt.zero_grad()
            for p, g in zip(params, step):
                p.grad += g
            opt.step()
        return [p.data.copy() for p in params] + [s[k].copy() for s in opt.state for k in ("m", "v")]

    for a, b in zip(*both(run)):
        np.testing.assert_array_equal(a, b)


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None])
def test_nonfinite_check_finds_each_kind(dtype, bad):
    params = [tn.Parameter(np.ones(s, dtype)) for s in ((3, 4), (37,))]
    for p in params:
        p.grad[...] = np.finfo(dtype).max  # finite, however large: g . g would overflow, this check does not
    if bad is not None:
        params[1].grad[36] = bad
    loss = dtype(1.0)
    from tinynet.speed import cpu_ops

    with np.errstate(over="ignore"):  # the plain check's g . g overflows, then looks closer
        fast, plain = cpu_ops.all_finite(loss, params), finite_step(np, loss, params)
        assert not finite_step(np, dtype(np.nan), params) and not cpu_ops.all_finite(dtype(np.nan), params)
    assert fast == plain == (bad is None)


@needs_kernels
def test_training_with_kernels_follows_the_plain_run(rng):
    """Five SGD steps of a BatchNorm MLP: the losses and weights of the two runs agree."""
    x = rng.standard_normal((64, 20)).astype(np.float32)
    y = rng.integers(0, 10, 64)

    def run(fast):
        model = tn.mlp([20, 32, 32, 10], rng=np.random.default_rng(1))
        crit, opt = tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
        history = tn.fit(model, crit, opt, x, y, 5, 16, rng=np.random.default_rng(2), progress=False, fast=fast)
        if fast:  # every BatchNorm, ReLU, the loss and SGD ran the C kernels
            assert type(vars(crit).get("_speed")).__name__ == "CpuSoftmaxCrossEntropy"
            assert "update" in vars(opt) and all("forward" in vars(m) for m in model.modules()
                                                  if type(m) in (tn.BatchNorm, tn.ReLU))
        return history.step_loss, [p.data.copy() for p in model.parameters()]

    (losses, weights), (losses_plain, weights_plain) = both(run)
    np.testing.assert_allclose(losses, losses_plain, rtol=1e-4)
    for a, b in zip(weights, weights_plain):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def run_python(code, **env):
    env = {**{k: v for k, v in os.environ.items() if k != "TINYNET_CPU_KERNELS"}, "PYTHONPATH": ROOT, **env}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


TRAIN_AND_REPORT = """
import numpy as np, tinynet as tn, tinynet.speed as speed
x = np.random.default_rng(0).standard_normal((32, 6)).astype(np.float32)
model = tn.mlp([6, 8, 3], rng=np.random.default_rng(1))
loss, opt = tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1)
report = speed.accelerate(model, loss, opt)
h = tn.fit(model, loss, opt, x, np.arange(32) % 3, 2, 8, rng=np.random.default_rng(2), progress=False, fast=True)
print(len(report) == 0, np.isfinite(h.train_loss).all())
print(speed.cpu_status())
"""


def test_switched_off_by_the_environment_accelerate_binds_nothing_and_the_plain_code_trains():
    out = run_python(TRAIN_AND_REPORT, TINYNET_CPU_KERNELS="0").splitlines()
    assert out[0] == "True True"
    assert out[1] == "off (TINYNET_CPU_KERNELS=0): plain NumPy code"


def test_without_a_compiler_accelerate_binds_nothing_and_the_plain_code_trains(tmp_path):
    out = run_python(TRAIN_AND_REPORT, CC=str(tmp_path / "no-such-cc"), TINYNET_KERNEL_CACHE=str(tmp_path)).splitlines()
    assert out[0] == "True True"
    assert out[1].startswith("off (") and "no-such-cc" in out[1]
    assert not list(tmp_path.glob("*.so"))


@needs_kernels
def test_a_cache_folder_that_cannot_be_written_still_gives_the_kernels(tmp_path):
    """A read-only home: the library is built into a private temporary folder instead."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = run_python(TRAIN_AND_REPORT, TINYNET_KERNEL_CACHE=str(blocker / "kernels"), TMPDIR=str(tmp_path)).splitlines()
    assert out[0] == "False True"  # the kernels were used, and training went fine
    assert out[1].startswith("on: ")
