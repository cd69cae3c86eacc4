"""Conv2d, MaxPool2d, AvgPool2d, Flatten and BatchNorm2d (issue 16): gradcheck in float64 on each
backend, and PyTorch parity to 1e-6 in float64 (the parity tests skip where torch is missing)."""

import numpy as np
import pytest

import tinynet as tn
from parity import check_against_torch, randn

CONVS = [  # (C, O, kernel, stride, padding, input H, W)
    (1, 2, 3, 1, 0, 5, 5),
    (3, 4, 3, 2, 1, 7, 6),
    (2, 3, (2, 3), (2, 1), (1, 0), 6, 7),
    (2, 2, 5, 1, 2, 6, 6),
]


@pytest.mark.parametrize("c, o, k, s, p, h, w", CONVS)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_gradcheck(xp, backend, rng, c, o, k, s, p, h, w, bias):
    layer = tn.Conv2d(c, o, k, stride=s, padding=p, bias=bias, rng=rng, dtype=np.float64).to(backend)
    assert tn.gradcheck(layer, randn(xp, rng, 2, c, h, w))


@pytest.mark.parametrize("c, o, k, s, p, h, w", CONVS)
def test_conv2d_matches_pytorch(xp, backend, rng, c, o, k, s, p, h, w):
    torch = pytest.importorskip("torch")
    layer = tn.Conv2d(c, o, k, stride=s, padding=p, rng=rng, dtype=np.float64).to(backend)
    layer.bias.data[...] = xp.asarray(rng.standard_normal(o))  # a bias that is not zero
    check_against_torch(layer, randn(xp, rng, 3, c, h, w),
                        lambda x, wt, b: torch.nn.functional.conv2d(x, wt, b, stride=s, padding=p),
                        [layer.weight, layer.bias])


def test_conv2d_by_hand_is_a_cross_correlation(xp, backend):
    """No flipped kernel: one 2x2 kernel on a 3x3 image, every output written out."""
    layer = tn.Conv2d(1, 1, 2, bias=False, dtype=np.float64).to(backend)
    layer.weight.data[...] = xp.asarray([[[[1.0, 2.0], [3.0, 4.0]]]])
    x = xp.asarray(np.arange(9.0).reshape(1, 1, 3, 3))
    y = tn.to_numpy(layer(x))
    expected = [[0 + 2 + 9 + 16, 1 + 4 + 12 + 20], [3 + 8 + 18 + 28, 4 + 10 + 21 + 32]]
    np.testing.assert_array_equal(y[0, 0], expected)


def test_conv2d_adds_into_gradients_and_leaves_inputs_alone(xp, backend, rng):
    layer = tn.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64).to(backend)
    x, dy = randn(xp, rng, 2, 2, 4, 4), randn(xp, rng, 2, 3, 4, 4)
    x_before, dy_before = x.copy(), dy.copy()
    layer(x)
    layer.backward(dy)
    once = tn.to_numpy(layer.weight.grad).copy(), tn.to_numpy(layer.bias.grad).copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(tn.to_numpy(layer.weight.grad), 2 * once[0], rtol=1e-12)
    np.testing.assert_allclose(tn.to_numpy(layer.bias.grad), 2 * once[1], rtol=1e-12)
    np.testing.assert_array_equal(tn.to_numpy(x), tn.to_numpy(x_before))
    np.testing.assert_array_equal(tn.to_numpy(dy), tn.to_numpy(dy_before))


def test_conv2d_without_input_grad_skips_dx(rng):
    layer = tn.Conv2d(1, 2, 3, rng=rng, dtype=np.float64)
    layer.input_grad = False
    x = rng.standard_normal((2, 1, 5, 5))
    layer(x)
    assert layer.backward(rng.standard_normal((2, 2, 3, 3))) is None
    assert np.abs(layer.weight.grad).sum() > 0


def test_conv2d_refuses_bad_input(rng):
    layer = tn.Conv2d(3, 4, 3, rng=rng)
    with pytest.raises(ValueError, match=r"Conv2d: expected input of shape \(N, 3, \*, \*\), 3 on axis 1, the channels, got shape \(2, 1, 8, 8\)"):
        layer(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d: expected a 4-D input, got shape \(2, 3\)"):
        layer(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="Conv2d: input of size 2 .* smaller than the kernel size 3"):
        layer(np.zeros((1, 3, 2, 8), np.float32))
    with pytest.raises(TypeError, match="Conv2d: input dtype float64 does not match"):
        layer(np.zeros((1, 3, 8, 8)))
    layer(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d: backward expected dy of the output's shape \(1, 4, 6, 6\)"):
        layer.backward(np.zeros((1, 4, 6), np.float32))
    with pytest.raises(ValueError, match="Conv2d: expected kernel_size to be a positive integer or a pair"):
        tn.Conv2d(3, 4, 0)
    with pytest.raises(ValueError, match="Conv2d: expected padding to be a non-negative integer"):
        tn.Conv2d(3, 4, 3, padding=-1)


def test_conv2d_init_uses_the_conv_fan_in():
    w = tn.Conv2d(64, 128, 3, rng=np.random.default_rng(0)).weight.data  # fan_in = 64 * 3 * 3
    assert w.shape == (128, 64, 3, 3)
    assert abs(float(w.std()) - np.sqrt(2 / 576)) < 0.002


POOLS = [(2, None, 6, 6), (3, 2, 7, 8), ((2, 3), (1, 2), 5, 7), (3, 1, 5, 5)]


@pytest.mark.parametrize("k, s, h, w", POOLS)
@pytest.mark.parametrize("layer_class", ["MaxPool2d", "AvgPool2d"])
def test_pool_gradcheck(xp, rng, k, s, h, w, layer_class):
    layer = getattr(tn, layer_class)(k, stride=s)
    assert tn.gradcheck(layer, randn(xp, rng, 2, 3, h, w))


@pytest.mark.parametrize("k, s, h, w", POOLS)
def test_pool_matches_pytorch(xp, rng, k, s, h, w):
    torch = pytest.importorskip("torch")
    x = randn(xp, rng, 2, 3, h, w)
    f = torch.nn.functional
    check_against_torch(tn.MaxPool2d(k, stride=s), x, lambda t: f.max_pool2d(t, k, stride=s or k))
    check_against_torch(tn.AvgPool2d(k, stride=s), x, lambda t: f.avg_pool2d(t, k, stride=s or k))


def test_maxpool_ties_route_the_gradient_to_the_first_maximum(xp):
    """A constant image: every element ties; PyTorch sends dy to the window's first element only."""
    torch = pytest.importorskip("torch")
    x = xp.ones((1, 1, 4, 4))
    layer = tn.MaxPool2d(2)
    layer(x)
    dx = tn.to_numpy(layer.backward(xp.asarray(np.arange(1.0, 5.0).reshape(1, 1, 2, 2))))
    xt = torch.ones((1, 1, 4, 4), dtype=torch.float64, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, 2).backward(torch.arange(1.0, 5.0, dtype=torch.float64).reshape(1, 1, 2, 2))
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    assert dx.sum() == 10 and np.count_nonzero(dx) == 4  # one element per window, not all four


def test_pool_and_flatten_refuse_bad_input():
    with pytest.raises(ValueError, match=r"MaxPool2d: expected a 4-D input, got shape \(2, 8\)"):
        tn.MaxPool2d(2)(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="AvgPool2d: input of size 1 .* smaller than the kernel size 2"):
        tn.AvgPool2d(2)(np.zeros((2, 1, 1, 8), np.float32))
    with pytest.raises(ValueError, match="MaxPool2d: expected stride to be a positive integer"):
        tn.MaxPool2d(2, stride=0)
    with pytest.raises(TypeError, match="Flatten: expected a floating-point array"):
        tn.Flatten()(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="Flatten: expected an input with a batch axis"):
        tn.Flatten()(np.zeros(3, np.float32))
    layer = tn.Flatten()
    layer(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"Flatten: backward expected dy of the output's shape \(2, 60\)"):
        layer.backward(np.zeros((2, 3, 4, 5), np.float32))


def test_flatten_matches_pytorch_order(xp, rng):
    torch = pytest.importorskip("torch")
    y = check_against_torch(tn.Flatten(), randn(xp, rng, 2, 3, 4, 5), torch.nn.Flatten())
    assert y.shape == (2, 60)
    assert tn.gradcheck(tn.Flatten(), randn(xp, rng, 2, 3, 2, 2))


@pytest.mark.parametrize("gradient", ["simplified", "paper"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 2, 3, 3), (1, 2, 2, 1)])
def test_batchnorm2d_gradcheck(xp, backend, rng, gradient, shape):
    layer = tn.BatchNorm2d(shape[1], gradient=gradient, dtype=np.float64).to(backend)
    layer.gamma.data[...] = xp.asarray(rng.uniform(0.5, 2, shape[1]))
    layer.beta.data[...] = xp.asarray(rng.standard_normal(shape[1]))
    assert tn.gradcheck(layer, randn(xp, rng, *shape, scale=2) + 1)
    layer.running_var[...] = xp.asarray(rng.uniform(0.5, 2, shape[1]))
    assert tn.gradcheck(layer.eval(), randn(xp, rng, *shape))


@pytest.mark.parametrize("gradient", ["simplified", "paper"])
def test_batchnorm2d_matches_pytorch(xp, backend, rng, gradient):
    torch = pytest.importorskip("torch")
    c = 3
    layer = tn.BatchNorm2d(c, gradient=gradient, dtype=np.float64).to(backend)
    layer.gamma.data[...] = xp.asarray(rng.uniform(0.5, 2, c))
    layer.beta.data[...] = xp.asarray(rng.standard_normal(c))
    running_mean, running_var = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)

    def torch_bn(x, gamma, beta):
        return torch.nn.functional.batch_norm(x, running_mean, running_var, gamma, beta, training=True,
                                              momentum=0.1, eps=1e-5)

    for _ in range(3):  # the running statistics move alike over several batches
        check_against_torch(layer, randn(xp, rng, 4, c, 5, 3, scale=3) + 2, torch_bn, [layer.gamma, layer.beta])
    np.testing.assert_allclose(tn.to_numpy(layer.running_mean), running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(tn.to_numpy(layer.running_var), running_var.numpy(), rtol=1e-12)
    layer.eval()
    check_against_torch(layer, randn(xp, rng, 2, c, 3, 3), lambda x, g, b: torch.nn.functional.batch_norm(
        x, running_mean, running_var, g, b, training=False, eps=1e-5), [layer.gamma, layer.beta])


def test_batchnorm2d_refuses_bad_input():
    layer = tn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected input of shape \(N, 3, \*, \*\)"):
        layer(np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="BatchNorm2d: training needs at least 2 values per channel"):
        layer(np.zeros((1, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match="BatchNorm2d: expected gradient to be one of"):
        tn.BatchNorm2d(3, gradient="fast")
    assert tn.BatchNorm2d(3, gradient="paper").extra_repr() == "3, gradient='paper'"


def test_cnn_trains_on_a_small_problem_and_summary_shows_4d_shapes():
    """The cnn builder wires up (shapes through the net) and learns: 64 images of two classes."""
    rng = np.random.default_rng(0)
    model = tn.cnn(image_shape=(1, 12, 12), classes=2, channels=(4, 8), hidden=16, rng=rng)
    x = rng.standard_normal((64, 1, 12, 12)).astype(np.float32)
    y = (x[:, 0, :6].sum(axis=(1, 2)) > x[:, 0, 6:].sum(axis=(1, 2))).astype(np.int64)
    loss, opt = tn.SoftmaxCrossEntropy(), tn.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(30):
        model.zero_grad()
        value = float(loss(model(x), y))
        first = value if first is None else first
        model.backward(loss.backward())
        opt.step()
    assert value < 0.5 * first
    summary = model.summary()
    assert "(N, 4, 12, 12)" in summary and "(N, 8, 1, 1)" in summary and "(N, 8)" in summary
