"""Cases that used to give a wrong number without an error (issue: the pure core).

Each test here failed on the layout with lazy gradient zeroing, flat optimizer packing and
kernels chosen inside the layers.
"""

import numpy as np
import pytest

import tinynet as tn


def tied_model(rng):
    """Two Linear layers sharing one weight Parameter (weight tying)."""
    first, second = tn.Linear(4, 4, bias=False, rng=rng, dtype=np.float64), tn.Linear(4, 4, rng=rng, dtype=np.float64)
    second.weight = first.weight
    return tn.Sequential(first, tn.Tanh(), second), first.weight


def test_a_shared_parameter_is_listed_counted_and_stepped_once(rng):
    model, shared = tied_model(rng)
    params = model.parameters()
    assert sum(p is shared for p in params) == 1
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "2.bias"]
    assert "total parameters: 20" in model.summary()  # 16 + 4, not 16 + 16 + 4
    before = shared.data.copy()
    shared.grad[...] = 1.0
    tn.SGD(params, lr=0.5).step()
    np.testing.assert_allclose(shared.data, before - 0.5)  # once: not before - 1.0
    state = model.state_dict()  # saved under both names, as PyTorch saves tied weights
    assert set(state) == {"0.weight", "2.weight", "2.bias"}


def test_an_optimizer_refuses_a_parameter_listed_twice(rng):
    model, shared = tied_model(rng)
    with pytest.raises(ValueError, match="SGD: a Parameter appears twice in the list"):
        tn.SGD([shared, shared], lr=0.1)


def test_tied_weights_get_the_sum_of_both_gradients(rng):
    model, shared = tied_model(rng)
    x = rng.standard_normal((5, 4))
    tn.gradcheck(model, x)  # checks the shared weight's gradient: both uses add into it


class KeepsItsWeight(tn.Layer):
    """A custom layer that keeps a reference to its weight array, as students write them."""

    def __init__(self, rng):
        self.weight = tn.Parameter(rng.standard_normal((3, 2)).astype(np.float32) * 0.1, "weight")
        self.w = self.weight.data  # the same array

    def forward(self, x):
        self.save_for_backward(x)
        return x @ self.w

    def backward(self, dy):
        (x,) = self.saved()
        self.weight.grad += x.T @ dy
        return dy @ self.w.T


def test_a_layer_that_keeps_a_reference_to_its_weight_trains(rng):
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = tn.Sequential(KeepsItsWeight(rng))
    history = tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.5), x, y, 5, 16,
                     rng=rng, progress=False)
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]  # it learns: the loss is not frozen
    assert model[0].w is model[0].weight.data


class AssignsItsGradient(tn.Linear):
    """Linear with the classic slip: ``=`` where a gradient must be added."""

    def backward(self, dy):
        (x,) = self.saved()
        self.weight.grad = x.T @ dy
        self.bias.grad = dy.sum(axis=0)
        return dy @ self.weight.data.T


def test_gradcheck_catches_an_assigned_parameter_gradient(rng):
    layer = AssignsItsGradient(4, 3, rng=rng, dtype=np.float64)
    with pytest.raises(AssertionError, match=r"gradcheck\(AssignsItsGradient\): gradient of (weight|bias).* is wrong.*"
                                             r"must be added with \+=, not assigned with ="):
        tn.gradcheck(layer, rng.standard_normal((5, 4)))


class MutatesDy(tn.ReLU):
    def backward(self, dy):
        (y,) = self.saved()
        dy *= y > 0  # in place: the caller's dy changes
        return dy


class MutatesInput(tn.Layer):
    def forward(self, x):
        x *= 2  # in place: the caller's x changes
        self.save_for_backward()
        return x

    def backward(self, dy):
        self.saved()
        return 2 * dy


def test_gradcheck_catches_a_backward_that_modifies_dy(rng):
    with pytest.raises(AssertionError, match=r"gradcheck\(MutatesDy\): backward modified dy in place"):
        tn.gradcheck(MutatesDy(), rng.standard_normal((4, 5)))


def test_gradcheck_catches_a_forward_that_modifies_its_input(rng):
    with pytest.raises(AssertionError, match=r"gradcheck\(MutatesInput\): forward modified its input in place"):
        tn.gradcheck(MutatesInput(), rng.standard_normal((4, 5)))


def test_gradcheck_handles_non_contiguous_inputs_and_parameters(rng):
    x = rng.standard_normal((6, 4)).T  # (4, 6), a transposed view
    assert not x.flags.c_contiguous
    layer = tn.Linear(6, 3, rng=rng, dtype=np.float64)
    layer.weight.data = np.asfortranarray(layer.weight.data)  # a parameter in another layout
    assert tn.gradcheck(layer, x)
    assert tn.gradcheck(tn.BatchNorm(6, dtype=np.float64), x)
    assert tn.gradcheck(tn.Tanh(), x[:, ::2])  # a strided slice


def test_evaluate_between_the_loss_and_backward_leaves_the_gradient_intact(rng):
    x = rng.standard_normal((32, 5)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    model = tn.mlp([5, 8, 3], rng=rng)
    loss = tn.SoftmaxCrossEntropy()

    def gradients(evaluate_in_between):
        model.zero_grad()
        loss(model(x[:16]), y[:16])
        if evaluate_in_between:
            tn.evaluate(model, loss, x[16:], y[16:])  # logging a validation loss mid-step
        model.backward(loss.backward())
        return [p.grad.copy() for p in model.parameters()]

    plain, with_evaluate = gradients(False), gradients(True)
    for a, b in zip(plain, with_evaluate):
        np.testing.assert_array_equal(a, b)
    assert all(layer.training for layer in model.modules())


def test_batchnorm_momentum_none_is_a_cumulative_average(rng):
    layer = tn.BatchNorm(3, momentum=None, dtype=np.float64)
    batches = [rng.standard_normal((8, 3)) * (i + 1) + i for i in range(4)]
    for b in batches:
        layer(b)
    # PyTorch: with momentum=None the running statistics are the plain mean of the batch statistics
    # (starting values 0 and 1 get weight 1 - 1/1 = 0 at the first batch)
    np.testing.assert_allclose(layer.running_mean, np.mean([b.mean(0) for b in batches], axis=0))
    np.testing.assert_allclose(layer.running_var, np.mean([b.var(0, ddof=1) for b in batches], axis=0))
    assert int(layer.num_batches_tracked) == 4
    assert "num_batches_tracked" in layer.state_dict()  # the count decides the average: it is saved


def test_batchnorm_momentum_none_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    ours, theirs = tn.BatchNorm(3, momentum=None, dtype=np.float64), torch.nn.BatchNorm1d(3, momentum=None).double()
    for i in range(3):
        b = rng.standard_normal((6, 3)) * (i + 2)
        ours(b)
        theirs(torch.from_numpy(b))
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)


def test_fit_casts_validation_data_as_it_casts_training_data(rng):
    x = rng.standard_normal((64, 5))  # float64 data for a float32 model
    y = rng.integers(0, 3, 64)
    model = tn.mlp([5, 8, 3], rng=rng)
    history = tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 16,
                     validation=(x[:20], y[:20]), rng=rng, progress=False)
    assert len(history.val_accuracy) == 1 and np.isfinite(history.val_loss[0])
