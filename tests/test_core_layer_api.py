"""The Parameter/Layer contract: names, state_dict round trip, strict load, user subclasses."""

import numpy as np
import pytest

import tinynet as tn


def test_parameter_keeps_dtype_and_starts_with_zero_grad():
    p = tn.Parameter(np.ones((2, 3), np.float64), name="w")
    assert p.data.dtype == np.float64 and p.grad.shape == (2, 3) and not p.grad.any() and p.name == "w"
    with pytest.raises(TypeError, match="Parameter w: expected a floating-point array, got dtype int64"):
        tn.Parameter(np.ones(3, np.int64), name="w")


def test_assigning_parameter_data_replaces_the_weight(rng):
    layer = tn.Linear(2, 2, rng=rng)
    layer.weight.data = np.eye(2, dtype=np.float32) * 3
    layer.bias.data = np.zeros(2, np.float32)
    np.testing.assert_array_equal(layer(np.ones((1, 2), np.float32)), [[3.0, 3.0]])


def test_state_dict_round_trip_and_host_copies(rng):
    model = tn.mlp([4, 5, 3], rng=rng)
    model(rng.standard_normal((8, 4)).astype(np.float32))  # move the running statistics
    state = model.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert "1.running_var" in state and "1.gamma" in state and "0.weight" in state
    state["0.weight"][...] = 0  # a copy: the model is untouched
    assert model.parameters()[0].data.any()
    other = tn.mlp([4, 5, 3], rng=np.random.default_rng(99))
    other.load_state_dict(model.state_dict())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(other.eval()(x), model.eval()(x))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("1.running_var"), r"missing keys \['1.running_var'\]"),
        (lambda s: s.update(extra=np.zeros(1)), r"unexpected keys \['extra'\]"),
        (lambda s: s.update({"0.weight": np.zeros((5, 4))}), r"wrong shapes: 0.weight: model has \(4, 5\), state has \(5, 4\)"),
    ],
)
def test_load_state_dict_is_strict_and_leaves_the_model_unchanged(rng, change, message):
    model = tn.mlp([4, 5, 3], rng=rng)
    before = model.state_dict()
    state = tn.mlp([4, 5, 3], rng=np.random.default_rng(5)).state_dict()
    change(state)
    with pytest.raises(ValueError, match=message):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_a_subclass_with_only_forward_and_backward_works(rng):
    class Double(tn.Layer):
        def forward(self, x):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

    layer = Double()
    assert layer.training and layer.parameters() == [] and layer.state_dict() == {}
    assert layer.eval() is layer and not layer.training
    assert tn.gradcheck(layer.train(), rng.standard_normal((3, 2)))
    model = tn.Sequential(tn.Linear(2, 2, rng=rng), Double())
    model(np.ones((2, 2), np.float32))
    assert model.backward(np.ones((2, 2), np.float32)).shape == (2, 2)
    assert [p.name for p in model.parameters()] == ["0.weight", "0.bias"]


def test_a_subclass_with_its_own_parameters_is_trainable(rng):
    class Scale(tn.Layer):
        def __init__(self, n):
            self.scale = tn.Parameter(np.ones(n, np.float32), "scale")

        def forward(self, x):
            self.save_for_backward(x)
            return x * self.scale.data

        def backward(self, dy):
            (x,) = self.saved()
            self.scale.grad += (dy * x).sum(axis=0)
            return dy * self.scale.data

    model = tn.Sequential(tn.Linear(3, 3, rng=rng), Scale(3))
    assert [p.name for p in model.parameters()] == ["0.weight", "0.bias", "1.scale"]
    assert tn.gradcheck(Scale(3), rng.standard_normal((4, 3)))


def test_unknown_attributes_raise_instead_of_returning_none():
    with pytest.raises(AttributeError):
        tn.ReLU().weight
