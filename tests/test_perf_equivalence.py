"""The shortcuts of the hot path change no numbers: what each must keep true.

fit skips the gradient of the data (the first Linear's dx), minibatches gathers each shuffled
batch on its own, BatchNorm's simplified backward reuses the dgamma/dbeta sums, the fused
BatchNorm (tinynet.speed) recomputes xhat instead of keeping it. Each test pins what that must
not change.
"""

import numpy as np
import pytest

import tinynet as tn
from tinynet.data.batching import minibatches
from tinynet.train import first_layer_skips_input_gradient


def skipped(model):
    """The Linear layers fit tells to skip dL/dx (input_grad False) while it trains ``model``."""
    with first_layer_skips_input_gradient(model):
        return [m for m in model.modules() if isinstance(m, tn.Linear) and not m.input_grad]


def blobs(rng, n=200, dim=10, classes=3):
    centres = rng.standard_normal((classes, dim)) * 3
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, dim))).astype(np.float32), y


def test_fit_equals_a_hand_loop_that_computes_the_data_gradient():
    """Skipping dL/dx of the data changes no parameter, bit for bit."""
    x, y = blobs(np.random.default_rng(0))
    runs = []
    for by_hand in (False, True):
        model = tn.mlp([10, 16, 16, 3], rng=np.random.default_rng(1))
        loss, opt = tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if by_hand:
            for xb, yb in minibatches(x, y, 32, np.random.default_rng(2), min_size=2):
                loss(model.forward(xb), yb)
                opt.zero_grad()
                dx = model.backward(loss.backward())
                assert dx.shape == xb.shape  # the full backward, data gradient included
                opt.step()
        else:
            tn.fit(model, loss, opt, x, y, 1, 32, rng=np.random.default_rng(2), progress=False)
        runs.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_fit_skips_the_data_gradient_and_restores_the_layer(monkeypatch):
    x, y = blobs(np.random.default_rng(0), n=64)
    model = tn.mlp([10, 16, 3], rng=np.random.default_rng(1))
    first = model[0]
    returned = []
    backward = first.backward
    monkeypatch.setattr(first, "backward", lambda dy: returned.append(backward(dy)) or returned[-1])
    tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 16,
           rng=np.random.default_rng(2), progress=False)
    assert len(returned) == 4 and all(dx is None for dx in returned)
    assert first.input_grad is True  # outside fit, backward returns dL/dx again
    model.train()  # a training forward outside fit, said explicitly (no EvalModeWarning)
    tn.SoftmaxCrossEntropy()(model.forward(x[:8]), y[:8])
    assert model.backward(np.ones((8, 3), np.float32)).shape == (8, 10)


def test_an_input_that_fans_out_keeps_its_gradient():
    """A Linear sharing the input with another layer is not skipped: None cannot be summed."""
    rng = np.random.default_rng(0)
    g = tn.Graph()
    x_in = g.input()
    h = g.add(tn.Linear(10, 10, rng=rng), x_in)
    s = g.add(tn.Add(), h, x_in)  # the input is read twice
    g.output(g.add(tn.Linear(10, 3, rng=rng), g.add(tn.ReLU(), s)))
    assert skipped(g) == []
    x, y = blobs(rng, n=64)
    history = tn.fit(g, tn.SoftmaxCrossEntropy(), tn.SGD(g.parameters(), lr=0.05), x, y, 2, 16, rng=rng, progress=False)
    assert np.isfinite(history.train_loss).all()
    lone = tn.Linear(10, 3, rng=rng)
    assert skipped(lone) == [lone] and lone.input_grad  # set back after fit
    model = tn.mlp([10, 4, 3], rng=rng)
    assert [m.in_features for m in skipped(model)] == [10]


def test_minibatches_are_the_permute_then_slice_batches_and_contiguous():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 7)).astype(np.float32)
    y = np.arange(50)
    order = np.random.default_rng(5).permutation(50)
    expected = [(x[order][s : s + 16], y[order][s : s + 16]) for s in range(0, 50, 16)]
    got = list(minibatches(x, y, 16, np.random.default_rng(5)))
    assert len(got) == len(expected) == 4
    for (xb, yb), (xe, ye) in zip(got, expected):
        np.testing.assert_array_equal(xb, xe)
        np.testing.assert_array_equal(yb, ye)
        assert xb.flags.c_contiguous
    assert [len(b) for b, _ in minibatches(x, y, 16, np.random.default_rng(5), min_size=3)] == [16, 16, 16]


@pytest.mark.parametrize("gradient", ["simplified", "paper"])
@pytest.mark.parametrize("fast", [False, True])  # True: the C kernels (tinynet.speed), where they are built
def test_batchnorm_outputs_survive_later_steps_and_shape_changes(gradient, fast):
    """An output or gradient handed out is never overwritten by a later step."""
    rng = np.random.default_rng(0)
    bn = tn.BatchNorm(6, gradient=gradient)
    fresh = tn.BatchNorm(6, gradient=gradient)
    if fast:
        import tinynet.speed

        if not tinynet.speed.accelerate(bn):
            pytest.skip(f"no C kernels: {tinynet.speed.cpu_status()}")
        tinynet.speed.accelerate(fresh)
    x1, x2, x3 = (rng.standard_normal((n, 6)).astype(np.float32) for n in (8, 8, 5))
    y1 = bn(x1)
    dx1 = bn.backward(np.ones_like(y1))
    kept = (y1.copy(), dx1.copy())
    y2 = bn(x2)
    bn.backward(y2)
    np.testing.assert_array_equal(y1, kept[0])
    np.testing.assert_array_equal(dx1, kept[1])
    y3 = bn(x3)  # a smaller last batch: new arrays of the new shape
    dx3 = bn.backward(x3)
    # training-mode outputs depend on the batch and gamma, beta only: a fresh layer must agree
    np.testing.assert_array_equal(y3, fresh(x3))
    np.testing.assert_array_equal(dx3, fresh.backward(x3))


def test_simplified_backward_matches_the_seed_formula_in_float64():
    """dx = 1 / (m sqrt(var + eps)) (m dxhat - sum(dxhat) - xhat sum(dxhat xhat)), written out plainly."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 5)) * 3 + 1
    dy = rng.standard_normal((9, 5))
    bn = tn.BatchNorm(5, dtype=np.float64)
    bn.gamma.data = rng.standard_normal(5) + 1
    bn(x)
    dx = bn.backward(dy)
    m, eps = x.shape[0], bn.eps
    var = x.var(axis=0)
    xhat = (x - x.mean(axis=0)) / np.sqrt(var + eps)
    dxhat = dy * bn.gamma.data
    expected = (m * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (m * np.sqrt(var + eps))
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.gamma.grad, (dy * xhat).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.beta.grad, dy.sum(axis=0), rtol=1e-12)


def test_zero_grad_fills_the_gradient_in_place_and_backward_adds(rng):
    """zero_grad fills zeros into the array a reader holds; += adds; assigning replaces."""
    p = tn.Parameter(rng.standard_normal((3, 4)).astype(np.float32), "w")
    p.grad += 5
    held = p.grad
    p.zero_grad()
    assert p.grad is held and not held.any()
    p.grad += 1  # a hand-written backward that adds
    np.testing.assert_array_equal(p.grad, np.ones((3, 4)))
    p.grad = np.full((3, 4), 2, np.float32)  # assigning replaces
    np.testing.assert_array_equal(p.grad, np.full((3, 4), 2))


def test_a_layer_used_twice_between_zero_grads_sums_both_gradients(rng):
    """Both backwards add into the zeroed gradient: the sum."""
    layer = tn.Linear(4, 3, rng=rng, dtype=np.float64)
    x1, x2 = rng.standard_normal((5, 4)), rng.standard_normal((6, 4))
    dy1, dy2 = rng.standard_normal((5, 3)), rng.standard_normal((6, 3))
    layer.weight.grad += 100  # stale values that zero_grad must clear
    layer.zero_grad()
    layer(x1)
    layer.backward(dy1)
    layer(x2)
    layer.backward(dy2)
    np.testing.assert_allclose(layer.weight.grad, x1.T @ dy1 + x2.T @ dy2)
    np.testing.assert_allclose(layer.bias.grad, dy1.sum(0) + dy2.sum(0))
