"""tinynet.speed.conv (opt-in): the C Conv2d, BatchNorm2d and MaxPool2d give the plain code's
values, fall back to it where they do not apply, and keep a pending backward intact."""

import numpy as np
import pytest

import tinynet as tn

speed = pytest.importorskip("tinynet.speed")
from tinynet.speed import conv as fast  # noqa: E402

pytestmark = pytest.mark.skipif(fast.library() is None, reason="no C compiler: the fused CPU kernels are off")


def run(layer, x, dy):
    """y, dx and every parameter gradient after one forward and backward from zero gradients."""
    layer.zero_grad()
    y = layer(x)
    dx = layer.backward(dy)
    return [y, dx] + [p.grad.copy() for p in layer.parameters()]


def assert_same(plain, fused, dtype):
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
    for a, b in zip(plain, fused):
        if a is None:
            assert b is None
            continue
        np.testing.assert_allclose(b, a, **tol)


def plain_and_fused(make, x_shape, dtype, seed=0):
    """Two copies of one layer, the second accelerated; an input and an upstream gradient."""
    rng = np.random.default_rng(seed)
    plain, fused = make(), make()
    fused.load_state_dict(plain.state_dict())
    report = speed.accelerate(fused)
    assert len(report) == 1
    x = rng.standard_normal(x_shape).astype(dtype)
    return plain, fused, x, rng


CONVS = [  # (C, O, kernel, stride, padding, H, W, bias)
    (1, 16, 5, 1, 2, 28, 28, False),
    (16, 32, 5, 1, 0, 14, 14, False),
    (3, 4, 3, 2, 1, 7, 6, True),
    (2, 3, (2, 3), (2, 1), (1, 0), 6, 7, True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c, o, k, s, p, h, w, bias", CONVS)
def test_conv2d_fused_equals_plain(dtype, c, o, k, s, p, h, w, bias):
    def make():
        return tn.Conv2d(c, o, k, stride=s, padding=p, bias=bias, rng=np.random.default_rng(1), dtype=dtype)

    plain, fused, x, rng = plain_and_fused(make, (4, c, h, w), dtype)
    dy = rng.standard_normal(plain(x).shape).astype(dtype)
    plain.saved()
    for _ in range(2):  # the second step reuses the scratch buffers
        assert_same(run(plain, x, dy), run(fused, x, dy), dtype)
    fused.input_grad = plain.input_grad = False
    assert_same(run(plain, x, dy), run(fused, x, dy), dtype)
    fused.input_grad = True
    if dtype == np.float64 and h * w <= 64:  # central differences cost two forwards per entry
        assert tn.gradcheck(fused, x[:2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8, 16, 28, 28), (3, 2, 5, 4)])
def test_batchnorm2d_fused_equals_plain(dtype, shape):
    def make():
        return tn.BatchNorm2d(shape[1], dtype=dtype)

    plain, fused, x, rng = plain_and_fused(make, shape, dtype)
    for layer in (plain, fused):
        layer.gamma.data[...] = np.linspace(0.5, 2, shape[1])
        layer.beta.data[...] = np.linspace(-1, 1, shape[1])
    x = 3 * x + 1
    dy = rng.standard_normal(shape).astype(dtype)
    assert_same(run(plain, x, dy), run(fused, x, dy), dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(fused.running_mean, plain.running_mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(fused.running_var, plain.running_var, rtol=tol, atol=tol)
    plain.eval(), fused.eval()  # eval mode: the plain code, in both
    assert_same(run(plain, x, dy), run(fused, x, dy), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, s, shape", [(2, None, (4, 3, 28, 28)), (3, 2, (2, 3, 7, 8)), ((2, 3), (1, 2), (2, 2, 5, 7))])
def test_maxpool_fused_equals_plain(dtype, k, s, shape):
    plain, fused, x, rng = plain_and_fused(lambda: tn.MaxPool2d(k, stride=s), shape, dtype)
    dy = rng.standard_normal(plain(x).shape).astype(dtype)
    plain.saved()
    assert_same(run(plain, x, dy), run(fused, x, dy), dtype)
    ties = np.ones(shape, dtype)  # every element ties: the first tap of each window gets dy
    assert_same(run(plain, ties, dy), run(fused, ties, dy), dtype)


def test_restore_between_forward_and_backward_hands_the_plain_layout_over():
    rng = np.random.default_rng(0)
    layers = [tn.Conv2d(3, 4, 3, padding=1, rng=rng, dtype=np.float64), tn.BatchNorm2d(3, dtype=np.float64),
              tn.MaxPool2d(2)]
    x = rng.standard_normal((2, 3, 6, 6))
    for layer in layers:
        plain_y = layer(x)
        dy = rng.standard_normal(plain_y.shape)
        expected = [layer.backward(dy)] + [p.grad.copy() for p in layer.parameters()]
        layer.zero_grad()
        speed.accelerate(layer)
        layer(x)
        speed.restore(layer)
        got = [layer.backward(dy)] + [p.grad.copy() for p in layer.parameters()]
        assert_same(expected, got, np.float64)


def test_an_eval_forward_between_leaves_the_pending_backward_alone():
    """fit's validation runs eval forwards while a training backward is pending: the kept
    scratch of the training forward must survive them."""
    rng = np.random.default_rng(0)
    plain = tn.Conv2d(2, 3, 3, rng=np.random.default_rng(1))
    fused = tn.Conv2d(2, 3, 3, rng=np.random.default_rng(1))
    speed.accelerate(fused)
    x, other = rng.standard_normal((2, 2, 5, 5)).astype(np.float32), rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    plain(x)
    plain_dx = plain.backward(dy)
    fused(x)
    pending = fused._saved
    fused.eval()
    fused(other)
    fused.train()
    fused._saved = pending  # as fit's pending_backward_kept puts it back
    np.testing.assert_allclose(fused.backward(dy), plain_dx, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(fused.weight.grad, plain.weight.grad, rtol=2e-5, atol=2e-5)


def test_the_cnn_trains_the_same_with_and_without_the_fast_path():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 1, 12, 12))
    y = rng.integers(0, 3, 32)
    losses = []
    for fast_path in (False, True):
        model = tn.cnn(image_shape=(1, 12, 12), classes=3, channels=(4, 8), hidden=16, rng=np.random.default_rng(0),
                       dtype=np.float64)
        loss, opt = tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if fast_path:
            kinds = {type(obj).__name__ for _, obj, _ in speed.accelerate(model, loss, opt)}
            assert {"Conv2d", "BatchNorm2d", "MaxPool2d"} <= kinds
        run_losses = []
        for _ in range(5):
            model.zero_grad()
            run_losses.append(float(loss(model(x), y)))
            model.backward(loss.backward())
            opt.step()
        losses.append(run_losses)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-10)


def test_an_output_the_caller_holds_is_never_reused():
    rng = np.random.default_rng(0)
    layers = [tn.Conv2d(2, 3, 3, rng=rng), tn.BatchNorm2d(2), tn.MaxPool2d(2)]
    for layer in layers:
        speed.accelerate(layer)
        x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
        held = layer(x)
        kept = held.copy()
        dy = np.ones_like(held)
        held_dx = layer.backward(dy)
        kept_dx = held_dx.copy()
        y2 = layer(2 * x + 1)  # a second step while the first step's arrays are still held
        layer.backward(np.ones_like(y2))
        np.testing.assert_array_equal(held, kept)
        np.testing.assert_array_equal(held_dx, kept_dx)
        del held, held_dx, y2
        first = layer(x)  # nothing holds the arrays now: the memory comes back
        layer.backward(np.ones_like(first))
        address = first.ctypes.data
        del first
        again = layer(x)
        layer.backward(np.ones_like(again))
        assert again.ctypes.data == address
