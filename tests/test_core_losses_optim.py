"""SoftmaxCrossEntropy values, gradient and stability; SGD and Adam against hand-computed updates."""

import math

import numpy as np
import pytest

import tinynet as tn


def test_cross_entropy_value_and_gradient(xp):
    logits = xp.asarray([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = xp.asarray([2, 0])
    crit = tn.SoftmaxCrossEntropy()
    loss = float(crit(logits, labels))
    p0 = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    expected = (-np.log(p0[2]) + np.log(3.0)) / 2
    assert loss == pytest.approx(expected, rel=1e-12)
    grad = tn.to_numpy(crit.backward())
    np.testing.assert_allclose(grad, np.array([p0 - [0, 0, 1], [1 / 3 - 1, 1 / 3, 1 / 3]]) / 2, rtol=1e-12)


def test_cross_entropy_gradient_matches_central_differences(rng):
    logits = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, 5)
    crit = tn.SoftmaxCrossEntropy()
    crit(logits, labels)
    analytic = crit.backward()
    numeric = np.zeros_like(logits)
    for i in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric[i] = (float(crit(up, labels)) - float(crit(down, labels))) / 2e-6
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_finite_for_huge_logits(xp, dtype):
    logits = xp.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype=dtype)
    crit = tn.SoftmaxCrossEntropy()
    assert float(crit(logits, xp.asarray([0, 0]))) == pytest.approx(1e4, rel=1e-6)  # 2e4 and 0, averaged
    grad = crit.backward()
    assert bool(xp.isfinite(grad).all()) and grad.dtype == dtype


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (np.array([0, 3]), ValueError, r"expected labels in \[0, 3\), got values from 0 to 3"),
        (np.array([-1, 0]), ValueError, r"expected labels in \[0, 3\), got values from -1 to 0"),
        (np.array([0.0, 1.0]), ValueError, "expected integer class labels, got dtype float64"),
        (np.array([0, 1, 2]), ValueError, r"expected labels of shape \(2,\) to match logits \(2, 3\), got \(3,\)"),
        (np.eye(3)[:2].astype(np.int64), ValueError, r"expected labels of shape \(2,\)"),
        ([0, 1], TypeError, "expected labels as an integer array, got list"),
    ],
)
def test_cross_entropy_refuses_bad_labels(labels, error, message):
    with pytest.raises(error, match="SoftmaxCrossEntropy: " + message):
        tn.SoftmaxCrossEntropy()(np.zeros((2, 3)), labels)


def param(values):
    p = tn.Parameter(np.array(values, dtype=np.float64), "w")
    return p


def test_sgd_plain_and_weight_decay():
    p = param([1.0, -2.0])
    opt = tn.SGD([p], lr=0.1, weight_decay=0.5)
    p.grad = np.array([0.5, 1.0])
    opt.step()
    # g = grad + 0.5 * p = (1.0, 0.0); p = p - 0.1 * g
    np.testing.assert_allclose(p.data, [0.9, -2.0])


def test_sgd_momentum_and_nesterov_by_hand():
    grads = [np.array([1.0]), np.array([2.0]), np.array([-1.0])]
    for nesterov in (False, True):
        p = param([0.0])
        opt = tn.SGD([p], lr=0.1, momentum=0.9, nesterov=nesterov)
        expected, buf = 0.0, None
        for g in grads:
            p.grad = g.copy()
            opt.step()
            buf = g[0] if buf is None else 0.9 * buf + g[0]  # PyTorch: first step b = g
            expected -= 0.1 * (g[0] + 0.9 * buf if nesterov else buf)
            np.testing.assert_allclose(p.data, [expected], rtol=1e-12)


def test_adam_by_hand():
    p = param([1.0, 2.0])
    opt = tn.Adam([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    w = np.array([1.0, 2.0])
    m = v = np.zeros(2)
    for t, grad in enumerate([np.array([0.5, -1.0]), np.array([0.2, 0.3]), np.array([-0.4, 0.0])], start=1):
        p.grad = grad.copy()
        opt.step()
        g = grad + 0.1 * w
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        w = w - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8)
        np.testing.assert_allclose(p.data, w, rtol=1e-12)


def test_optimizers_keep_float32(rng):
    model = tn.Sequential(tn.Linear(3, 2, rng=rng))
    for opt in (tn.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4), tn.Adam(model.parameters(), weight_decay=1e-4)):
        for p in model.parameters():
            p.grad[...] = 1
        opt.step()
        opt.step()
        assert all(p.data.dtype == np.float32 for p in model.parameters())


def test_optimizer_zero_grad_and_reads_assigned_grad():
    p = param([1.0])
    opt = tn.SGD([p], lr=1.0)
    p.grad = np.array([3.0])  # a new array, not the one created with the Parameter
    opt.step()
    assert p.data[0] == -2.0
    opt.zero_grad()
    assert p.grad[0] == 0.0


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda p: tn.SGD(p, lr=-1), ValueError, "SGD: expected lr to be a finite number >= 0, got -1"),
        (lambda p: tn.SGD(p, lr=0.1, nesterov=True), ValueError, "SGD: nesterov=True needs a momentum > 0"),
        (lambda p: tn.SGD([], lr=0.1), ValueError, "SGD: got an empty parameter list"),
        (lambda p: tn.SGD([np.zeros(2)], lr=0.1), TypeError, r"SGD: expected Parameters \(model.parameters\(\)\), got ndarray"),
        (lambda p: tn.Adam(p, betas=(0.9, 1.0)), ValueError, "Adam: expected betas as two numbers in"),
        (lambda p: tn.Adam(p, lr=math.nan), ValueError, "Adam: expected lr to be a finite number >= 0, got nan"),
    ],
)
def test_optimizers_refuse_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make([param([1.0])])


def test_cosine_schedule_falls_from_lr_towards_zero():
    schedule = tn.optim.cosine_schedule(0.1, 4)
    rates = [schedule(e) for e in range(4)]
    assert rates == sorted(rates, reverse=True)
    assert rates[0] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 8)))
    assert 0 < rates[-1] < 0.01
    assert rates[1] + rates[2] == pytest.approx(0.1)  # symmetric about lr / 2
