"""BatchNorm: both backward forms, PyTorch's conventions, running statistics and eval mode."""

import numpy as np
import pytest

import tinynet as tn


def batchnorm64(backend, c, gradient="simplified", **kw):
    layer = tn.BatchNorm(c, gradient=gradient, dtype=np.float64, **kw).to(backend)
    rng = np.random.default_rng(7)
    xp = tn.get_array_module(layer.gamma.data)
    layer.gamma.data = xp.asarray(rng.uniform(0.5, 2.0, c))  # not 1 and 0: a wrong gamma/beta must show
    layer.beta.data = xp.asarray(rng.standard_normal(c))
    return layer


@pytest.mark.parametrize("gradient", ["simplified", "paper"])
@pytest.mark.parametrize("shape", [(2, 1), (3, 4), (16, 5), (60, 3)])
def test_gradcheck_both_forms(xp, backend, rng, gradient, shape):
    layer = batchnorm64(backend, shape[1], gradient)
    x = xp.asarray(rng.standard_normal(shape) * 3 + 1)
    assert tn.gradcheck(layer, x)


@pytest.mark.parametrize("gradient", ["simplified", "paper"])
def test_gradcheck_eval_mode_is_the_affine_backward(xp, backend, rng, gradient):
    layer = batchnorm64(backend, 4, gradient)
    layer.running_mean = xp.asarray(rng.standard_normal(4))
    layer.running_var = xp.asarray(rng.uniform(0.5, 2, 4))
    layer.eval()
    x = xp.asarray(rng.standard_normal((5, 4)))
    assert tn.gradcheck(layer, x)
    layer(x)
    dy = xp.asarray(rng.standard_normal((5, 4)))
    expected = dy * layer.gamma.data / xp.sqrt(layer.running_var + layer.eps)
    np.testing.assert_allclose(tn.to_numpy(layer.backward(dy)), tn.to_numpy(expected), rtol=1e-12)


def test_gradcheck_leaves_running_statistics_as_they_were(rng):
    layer = tn.BatchNorm(3)
    layer(rng.standard_normal((8, 3)).astype(np.float32))  # move them off 0 and 1
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    assert tn.gradcheck(layer, rng.standard_normal((6, 3)).astype(np.float32), atol=1e-4)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
        assert v.dtype == np.float32


def test_both_forms_agree_in_float64(xp, backend, rng):
    for shape in [(2, 3), (60, 100), (257, 33)]:
        x = xp.asarray(rng.standard_normal(shape) * rng.uniform(0.1, 10) + rng.uniform(-5, 5))
        dy = xp.asarray(rng.standard_normal(shape))
        grads = {}
        for form in ("simplified", "paper"):
            layer = batchnorm64(backend, shape[1], form)
            layer(x)
            grads[form] = (tn.to_numpy(layer.backward(dy)), tn.to_numpy(layer.gamma.grad), tn.to_numpy(layer.beta.grad))
        for a, b in zip(grads["simplified"], grads["paper"]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_forward_and_backward_match_hand_computed_values():
    # one feature, m = 3, x = (1, 2, 6): mu = 3, biased var = (4 + 1 + 9) / 3 = 14/3
    layer = tn.BatchNorm(1, eps=1e-5, dtype=np.float64)
    layer.gamma.data[:] = 2.0
    layer.beta.data[:] = 0.5
    x = np.array([[1.0], [2.0], [6.0]])
    s = np.sqrt(14 / 3 + 1e-5)
    xhat = np.array([-2.0, -1.0, 3.0]) / s
    np.testing.assert_allclose(layer(x)[:, 0], 2 * xhat + 0.5, rtol=1e-12)
    dy = np.array([[1.0], [0.0], [-1.0]])
    # simplified form written out: dxhat = 2 * dy; sum(dxhat) = 0; sum(dxhat * xhat) = 2 * (-2 - 3) / s
    dxhat = 2 * dy[:, 0]
    expected = (3 * dxhat - 0.0 - xhat * (2 * (-5) / s)) / (3 * s)
    dx = layer.backward(dy)[:, 0]
    np.testing.assert_allclose(dx, expected, rtol=1e-12)
    np.testing.assert_allclose(layer.gamma.grad, [xhat[0] - xhat[2]], rtol=1e-12)
    np.testing.assert_allclose(layer.beta.grad, [0.0], atol=1e-15)
    # running statistics: momentum 0.1, unbiased variance 14/2 = 7
    np.testing.assert_allclose(layer.running_mean, [0.1 * 3.0], rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, [0.9 * 1.0 + 0.1 * 7.0], rtol=1e-12)


def test_conventions_of_pytorch_batchnorm1d(rng):
    layer = tn.BatchNorm(4)
    np.testing.assert_array_equal(layer.running_mean, np.zeros(4, np.float32))
    np.testing.assert_array_equal(layer.running_var, np.ones(4, np.float32))  # not zeros
    x = (rng.standard_normal((32, 4)) * 3 + 2).astype(np.float32)
    y = layer(x)
    # normalised with the biased variance, eps inside the root
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.running_mean, 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-5)


def test_running_statistics_converge_and_eval_uses_them(rng):
    layer = tn.BatchNorm(3, momentum=0.1, dtype=np.float64)
    mean, std = np.array([1.0, -2.0, 5.0]), np.array([0.5, 2.0, 3.0])
    for _ in range(300):
        layer(rng.standard_normal((64, 3)) * std + mean)
    np.testing.assert_allclose(layer.running_mean, mean, atol=0.15)
    np.testing.assert_allclose(layer.running_var, std**2, rtol=0.15)
    layer.eval()
    x = rng.standard_normal((5, 3))
    before = layer.running_mean.copy()
    y = layer(x)
    np.testing.assert_allclose(y, (x - layer.running_mean) / np.sqrt(layer.running_var + 1e-5), rtol=1e-12)
    np.testing.assert_array_equal(layer.running_mean, before)  # eval does not update
    # eval mode accepts a batch of one: it needs no batch statistics
    assert layer(x[:1]).shape == (1, 3)


def test_variance_is_computed_in_two_passes_in_float32():
    # a large offset with a small spread: E[x^2] - E[x]^2 cancels catastrophically in float32
    x = (10000 + np.array([[0.0], [1.0], [2.0], [3.0]])).astype(np.float32)
    y = tn.BatchNorm(1)(x)
    expected = (np.array([0, 1, 2, 3]) - 1.5) / np.sqrt(1.25 + 1e-5)
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-4)


def test_float32_training_matches_float64_closely(rng):
    x = rng.standard_normal((128, 16))
    dy = rng.standard_normal((128, 16))
    out = {}
    for dtype in (np.float32, np.float64):
        layer = tn.BatchNorm(16, dtype=dtype)
        y = layer(x.astype(dtype))
        out[dtype] = (y, layer.backward(dy.astype(dtype)))
    for a, b in zip(out[np.float32], out[np.float64]):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_a_subclass_with_its_own_backward_gets_the_plain_saved_layout(xp, backend, rng):
    """A lab's stub subclasses BatchNorm, overrides backward and reads (batch_stats, xhat, inv_std,
    xc): the forward must then run the plain code on every backend, not a fused kernel (CuPy's or
    the C one), which saves (x, mean, inv_std) instead."""

    class StubBatchNorm(tn.BatchNorm):
        def backward(self, dy):
            batch_stats, xhat, inv_std, xc = self.saved()
            return dy * inv_std

    layer = StubBatchNorm(3, dtype=np.float64).to(backend)
    x = xp.asarray(rng.standard_normal((8, 3)) * 2 + 1)
    layer.forward(x)
    batch_stats, xhat, inv_std, xc = layer.saved()
    assert batch_stats is True
    np.testing.assert_allclose(tn.to_numpy(xhat).mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(tn.to_numpy(xc), tn.to_numpy(x - x.mean(axis=0)), atol=1e-12)
