"""LayerNorm, LeakyReLU, GELU and MSELoss (issue 16), and the helpers around the 4-D layers:
init fans from conv shapes, check_input's channel axis, images_to_nchw, summary of a 4-D model.
Gradcheck on each backend; PyTorch parity to 1e-6 in float64 (skipped where torch is missing)."""

import math

import numpy as np
import pytest

import tinynet as tn
from parity import check_against_torch, randn
from tinynet.data import images_to_nchw
from tinynet.layer import check_input
from tinynet.layers.gelu import erf


@pytest.mark.parametrize("shape, normalized", [((4, 6), 6), ((2, 3, 5), (5,)), ((2, 3, 4, 4), (3, 4, 4)), ((1, 7), 7)])
def test_layernorm_gradcheck_and_pytorch(xp, backend, rng, shape, normalized):
    layer = tn.LayerNorm(normalized, dtype=np.float64).to(backend)
    layer.gamma.data[...] = xp.asarray(rng.uniform(0.5, 2, layer.gamma.shape))
    layer.beta.data[...] = xp.asarray(rng.standard_normal(layer.beta.shape))
    x = randn(xp, rng, *shape, scale=3) + 1
    assert tn.gradcheck(layer, x)
    torch = pytest.importorskip("torch")
    check_against_torch(layer, x, lambda t, g, b: torch.nn.functional.layer_norm(t, layer.normalized_shape, g, b, 1e-5),
                        [layer.gamma, layer.beta])


def test_layernorm_refuses_bad_input():
    with pytest.raises(ValueError, match=r"LayerNorm: expected input of shape \(N, \.\.\., 4, 5\), got shape \(2, 5, 4\)"):
        tn.LayerNorm((4, 5))(np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match="LayerNorm: expected normalized_shape as a positive int"):
        tn.LayerNorm(0)
    with pytest.raises(TypeError, match="LayerNorm: input dtype float64 does not match"):
        tn.LayerNorm(3)(np.zeros((2, 3)))


@pytest.mark.parametrize("slope", [0.01, 0.2])
def test_leaky_relu_gradcheck_and_pytorch(xp, rng, slope):
    x = randn(xp, rng, 4, 5)
    x = x + xp.sign(x) * 0.1  # away from the kink at 0
    assert tn.gradcheck(tn.LeakyReLU(slope), x)
    torch = pytest.importorskip("torch")
    y = check_against_torch(tn.LeakyReLU(slope), x, lambda t: torch.nn.functional.leaky_relu(t, slope))
    assert (y < 0).any()


def test_leaky_relu_at_zero_takes_the_slope_as_pytorch(xp):
    layer = tn.LeakyReLU(0.1)
    layer(xp.zeros((1, 2)))
    np.testing.assert_array_equal(tn.to_numpy(layer.backward(xp.ones((1, 2)))), [[0.1, 0.1]])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradcheck_and_pytorch(xp, rng, approximate):
    x = randn(xp, rng, 3, 50, scale=3)
    assert tn.gradcheck(tn.GELU(approximate), x)
    torch = pytest.importorskip("torch")
    check_against_torch(tn.GELU(approximate), x, lambda t: torch.nn.functional.gelu(t, approximate=approximate),
                        atol=1e-10, rtol=1e-9)


def test_erf_is_accurate_over_the_whole_line(xp):
    xs = np.linspace(-9, 9, 3601)
    np.testing.assert_allclose(tn.to_numpy(erf(xp.asarray(xs))), [math.erf(v) for v in xs], atol=5e-15, rtol=0)


def test_activation_arguments_are_checked():
    with pytest.raises(ValueError, match="GELU: expected approximate to be one of"):
        tn.GELU("fast")
    with pytest.raises(TypeError, match="LeakyReLU: expected negative_slope to be a number"):
        tn.LeakyReLU("0.1")


def test_mse_loss_gradcheck_and_pytorch(xp, rng):
    pred, target = randn(xp, rng, 5, 3), randn(xp, rng, 5, 3)
    crit = tn.MSELoss()
    value = crit(pred, target)
    grad = crit.backward(2.0)
    eps, numeric = 1e-6, np.zeros((5, 3))
    for i in range(5):
        for j in range(3):
            step = xp.zeros((5, 3))
            step[i, j] = eps
            numeric[i, j] = 2.0 * (float(crit(pred + step, target)) - float(crit(pred - step, target))) / (2 * eps)
    np.testing.assert_allclose(tn.to_numpy(grad), numeric, atol=1e-8)
    torch = pytest.importorskip("torch")
    pt = torch.tensor(tn.to_numpy(pred), requires_grad=True)
    loss = torch.nn.functional.mse_loss(pt, torch.tensor(tn.to_numpy(target)))
    loss.backward(torch.tensor(2.0, dtype=torch.float64))
    assert abs(float(value) - loss.item()) < 1e-12
    np.testing.assert_allclose(tn.to_numpy(grad), pt.grad.numpy(), rtol=1e-12)


def test_mse_loss_refuses_what_would_broadcast():
    crit = tn.MSELoss()
    with pytest.raises(ValueError, match=r"MSELoss: expected target of the prediction's shape \(4, 1\), got \(4,\)"):
        crit(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(TypeError, match="MSELoss: expected a floating-point target, got dtype int64"):
        crit(np.zeros(4), np.zeros(4, np.int64))
    with pytest.raises(RuntimeError, match="MSELoss: backward called without a forward"):
        crit.backward()


def test_init_fans_follow_the_layout():
    assert tn.init.fans((784, 256)) == (784, 256)  # tinynet's Linear: (in, out)
    assert tn.init.fans((64, 3, 3, 3)) == (27, 576)  # Conv2d: (out, in, kh, kw)
    rng = np.random.default_rng(0)
    assert abs(float(tn.init.he((64, 3, 3, 3), rng).std()) - math.sqrt(2 / 27)) < 0.01  # 0.272, not 0.176
    bound = float(np.abs(tn.init.xavier((16, 8, 5, 5), rng)).max())
    assert math.sqrt(6 / (200 + 400)) * 0.95 < bound <= math.sqrt(6 / (200 + 400))
    with pytest.raises(ValueError, match="init: expected a weight shape of 2 or more axes"):
        tn.init.he((5,), rng)


def test_check_input_names_the_channel_axis():
    layer = tn.Conv2d(3, 4, 3)
    check_input(layer, np.zeros((2, 3, 5, 5), np.float32), ndim=4, features=3, axis=1)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, \*, \*\), 3 on axis 1, the channels"):
        check_input(layer, np.zeros((2, 5, 5, 3), np.float32), ndim=4, features=3, axis=1)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 5\), got shape \(2, 3\)"):  # the old form
        check_input(layer, np.zeros((2, 3), np.float32), features=5)


def test_images_to_nchw(xp):
    images = xp.asarray(np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256).astype(np.uint8)
    x = images_to_nchw(images)
    assert x.shape == (2, 1, 28, 28) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(tn.to_numpy(x[:, 0]), tn.to_numpy(images) / 255, rtol=1e-6)
    assert images_to_nchw(xp.zeros((2, 3, 4, 4), np.uint8)).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="images_to_nchw: expected an array of images"):
        images_to_nchw(xp.zeros((2, 784), np.uint8))


def test_summary_shows_4d_output_shapes(rng):
    model = tn.Sequential(tn.Conv2d(1, 4, 3, padding=1, rng=rng), tn.BatchNorm2d(4), tn.ReLU(), tn.MaxPool2d(2),
                          tn.Flatten(), tn.Linear(4 * 4 * 4, 3, rng=rng))
    assert "?" in model.summary()
    model(rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
    lines = model.summary().splitlines()
    rows = {line.split()[0]: line for line in lines[3:-1]}  # "0" .. "5": one row per layer
    assert "(N, 4, 8, 8)" in rows["0"] and "(N, 4, 8, 8)" in rows["1"] and "(N, 4, 4, 4)" in rows["3"]
    assert "(N, 64)" in rows["4"] and "(N, 3)" in rows["5"]
