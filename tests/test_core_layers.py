"""Every built-in layer: gradchecked in float64 on several shapes, values against hand computation."""

import numpy as np
import pytest

import tinynet as tn


def randn(xp, rng, *shape, scale=1.0):
    return xp.asarray(rng.standard_normal(shape) * scale)


SHAPES = [(2, 3), (5, 4), (16, 7)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(xp, backend, rng, shape, bias):
    layer = tn.Linear(shape[1], 3, bias=bias, rng=rng, dtype=np.float64).to(backend)
    assert tn.gradcheck(layer, randn(xp, rng, *shape))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layer_class", [tn.ReLU, tn.Sigmoid, tn.Tanh])
def test_activation_gradcheck(xp, rng, shape, layer_class):
    x = randn(xp, rng, *shape)
    if layer_class is tn.ReLU:  # keep away from the kink at 0, where the derivative jumps
        x = x + xp.sign(x) * 0.1
    assert tn.gradcheck(layer_class(), x)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_gradcheck(xp, rng, axis):
    assert tn.gradcheck(tn.Softmax(axis=axis), randn(xp, rng, 4, 5, scale=3))


def test_add_gradcheck_three_inputs(xp, rng):
    xs = tuple(randn(xp, rng, 3, 4) for _ in range(3))
    assert tn.gradcheck(tn.Add(), xs)


def test_dropout_gradcheck_eval_and_fixed_mask(xp, rng):
    assert tn.gradcheck(tn.Dropout(0.5).eval(), randn(xp, rng, 4, 6))
    # in training the mask is random per forward: check backward against the mask forward used
    layer = tn.Dropout(0.3, rng=np.random.default_rng(0))
    x = randn(xp, rng, 200, 50)
    y = layer(x)
    kept = y != 0
    np.testing.assert_allclose(tn.to_numpy(y[kept]), tn.to_numpy(x[kept] / 0.7), rtol=1e-12)
    dy = randn(xp, rng, 200, 50)
    dx = layer.backward(dy)
    np.testing.assert_allclose(tn.to_numpy(dx), tn.to_numpy(xp.where(kept, dy / 0.7, 0)), rtol=1e-12)
    assert 0.25 < 1 - float(kept.mean()) < 0.35


def test_gradcheck_catches_a_wrong_backward(rng):
    class WrongSquare(tn.Layer):
        def forward(self, x):
            self.save_for_backward(x)
            return x * x

        def backward(self, dy):
            (x,) = self.saved()
            return x * dy  # should be 2 * x * dy

    with pytest.raises(AssertionError, match=r"gradient of input\[.*analytic .* numeric"):
        tn.gradcheck(WrongSquare(), rng.standard_normal((3, 2)))


def test_gradcheck_catches_a_wrong_parameter_gradient(rng):
    class Scale(tn.Layer):
        def __init__(self):
            self.w = tn.Parameter(np.ones(3), "w")

        def forward(self, x):
            self.save_for_backward(x)
            return x * self.w.data

        def backward(self, dy):
            (x,) = self.saved()
            self.w.grad += (dy * x).sum(axis=0) * 1.01  # 1 % off
            return dy * self.w.data

    with pytest.raises(AssertionError, match=r"gradient of w\["):
        tn.gradcheck(Scale(), rng.standard_normal((4, 3)))


def test_gradcheck_restores_dtype_and_values(rng):
    layer = tn.Linear(4, 3, rng=rng)  # float32
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    x = rng.standard_normal((5, 4)).astype(np.float32)
    assert tn.gradcheck(layer, x, atol=1e-4)
    assert layer.weight.data.dtype == np.float32 and layer.weight.grad.dtype == np.float32
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert x.dtype == np.float32


def test_linear_values(xp):
    layer = tn.Linear(2, 2, dtype=np.float64)
    layer.weight.data = xp.asarray([[1.0, 2.0], [3.0, 4.0]])
    layer.bias.data = xp.asarray([0.5, -0.5])
    layer.weight.grad, layer.bias.grad = xp.zeros((2, 2)), xp.zeros(2)
    y = layer(xp.asarray([[1.0, 1.0]]))
    np.testing.assert_allclose(tn.to_numpy(y), [[4.5, 5.5]])
    dx = layer.backward(xp.asarray([[1.0, 0.0]]))
    np.testing.assert_allclose(tn.to_numpy(dx), [[1.0, 3.0]])
    np.testing.assert_allclose(tn.to_numpy(layer.weight.grad), [[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(tn.to_numpy(layer.bias.grad), [1.0, 0.0])


def test_backward_accumulates_parameter_gradients(rng):
    layer = tn.Linear(3, 2, rng=rng, dtype=np.float64)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer(x)
    layer.backward(dy)
    once = layer.weight.grad.copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, 2 * once)
    layer.zero_grad()
    assert not layer.weight.grad.any()


def test_activation_values(xp):
    x = xp.asarray([[-2.0, 0.0, 3.0]])
    np.testing.assert_allclose(tn.to_numpy(tn.ReLU()(x)), [[0.0, 0.0, 3.0]])
    np.testing.assert_allclose(tn.to_numpy(tn.Sigmoid()(x)), 1 / (1 + np.exp([[2.0, 0.0, -3.0]])))
    np.testing.assert_allclose(tn.to_numpy(tn.Tanh()(x)), np.tanh([[-2.0, 0.0, 3.0]]))


def test_sigmoid_is_finite_for_huge_inputs(xp):
    y = tn.Sigmoid()(xp.asarray([[-1e4, 1e4]], dtype=xp.float32))
    np.testing.assert_array_equal(tn.to_numpy(y), [[0.0, 1.0]])


def test_softmax_values_and_stability(xp):
    y = tn.Softmax()(xp.asarray([[1.0, 2.0, 3.0], [1e4, 0.0, -1e4]]))
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(tn.to_numpy(y[0]), e / e.sum())
    np.testing.assert_allclose(tn.to_numpy(y[1]), [1.0, 0.0, 0.0])
    assert bool(xp.isfinite(y).all())


def test_layers_compute_in_the_given_dtype(xp, backend, rng):
    for dtype in (np.float32, np.float64):
        x = randn(xp, rng, 4, 3).astype(dtype)
        for layer in (tn.Linear(3, 3, rng=rng, dtype=dtype).to(backend), tn.BatchNorm(3, dtype=dtype).to(backend),
                      tn.ReLU(), tn.Sigmoid(), tn.Tanh(), tn.Softmax(), tn.Dropout(0.5, rng=rng)):
            y = layer(x)
            assert y.dtype == dtype, layer
            assert layer.backward(xp.ones_like(y)).dtype == dtype, layer


@pytest.mark.parametrize(
    "make, x, error, message",
    [
        (lambda: tn.Linear(3, 2), np.zeros((4, 5), np.float32), ValueError, r"Linear: expected input of shape \(N, 3\), got shape \(4, 5\)"),
        (lambda: tn.Linear(3, 2), np.zeros(3, np.float32), ValueError, r"Linear: expected a 2-D input, got shape \(3,\)"),
        (lambda: tn.Linear(3, 2), np.zeros((4, 3), np.int64), TypeError, r"Linear: expected a floating-point array, got dtype int64"),
        (lambda: tn.Linear(3, 2), np.zeros((4, 3), np.float64), TypeError, r"Linear: input dtype float64 does not match"),
        (lambda: tn.Linear(3, 2), [[1.0, 2.0, 3.0]], TypeError, r"Linear: expected a NumPy or CuPy array, got list"),
        (lambda: tn.Linear(3, 2), np.zeros((0, 3), np.float32), ValueError, r"Linear: got an empty batch"),
        (lambda: tn.BatchNorm(3), np.zeros((4, 2), np.float32), ValueError, r"BatchNorm: expected input of shape \(N, 3\), got shape \(4, 2\)"),
        (lambda: tn.BatchNorm(3), np.zeros((1, 3), np.float32), ValueError, r"BatchNorm: training needs a batch of at least 2"),
        (lambda: tn.ReLU(), np.zeros((2, 2), np.uint8), TypeError, r"ReLU: expected a floating-point array, got dtype uint8"),
        (lambda: tn.Softmax(axis=2), np.zeros((2, 2)), ValueError, r"Softmax: axis 2 is out of range for an input of shape \(2, 2\)"),
    ],
)
def test_bad_inputs_name_the_layer_and_what_was_expected(make, x, error, message):
    with pytest.raises(error, match=message):
        make()(x)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: tn.Linear(0, 2), r"Linear: expected in_features to be a positive integer, got 0"),
        (lambda: tn.Linear(3, 2.5), r"Linear: expected out_features to be a positive integer, got 2.5"),
        (lambda: tn.Linear(3, 2, init="zeros"), r"init: expected one of .* got 'zeros'"),
        (lambda: tn.BatchNorm(4, gradient="fast"), r"BatchNorm: expected gradient to be one of \('simplified', 'paper'\), got 'fast'"),
        (lambda: tn.BatchNorm(0), r"BatchNorm: expected num_features to be a positive integer, got 0"),
        (lambda: tn.BatchNorm(4, momentum=1.5), r"BatchNorm: expected 0 <= momentum <= 1, or None for a cumulative average, got 1.5"),
        (lambda: tn.Dropout(1.0), r"Dropout: expected 0 <= p < 1, got 1.0"),
    ],
)
def test_bad_constructor_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_add_refuses_mismatched_shapes_instead_of_broadcasting():
    with pytest.raises(ValueError, match=r"Add: expected inputs of one shape, got \[\(4, 3\), \(1, 3\)\]"):
        tn.Add()(np.zeros((4, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="Add: expected two or more inputs, got 1"):
        tn.Add()(np.zeros((4, 3)))


def test_backward_before_forward_and_twice_raise(rng):
    layer = tn.ReLU()
    with pytest.raises(RuntimeError, match="ReLU: backward called without a forward"):
        layer.backward(np.ones((2, 2)))
    layer(rng.standard_normal((2, 2)))
    layer.backward(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="ReLU: backward called without a forward"):
        layer.backward(np.ones((2, 2)))
