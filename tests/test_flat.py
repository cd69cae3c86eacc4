"""Optimizers on the CPU pack their parameters into one flat array (tinynet/flat.py).

The packed step must change no number against the per-parameter one, must keep working when
something replaces the arrays (load_state_dict, model.to, a new optimizer), and must not pack
what cannot be packed (tied weights, mixed dtypes).
"""

import numpy as np
import pytest

import tinynet as tn
from tinynet.nonfinite import finite_step, gradient_arrays

OPTIMIZERS = {
    "sgd": lambda params, flat: tn.SGD(params, lr=0.1, momentum=0.9, flat=flat),
    "nesterov+decay": lambda params, flat: tn.SGD(params, lr=0.1, momentum=0.9, nesterov=True,
                                                  weight_decay=1e-3, flat=flat),
    "plain sgd": lambda params, flat: tn.SGD(params, lr=0.1, flat=flat),
    "adam": lambda params, flat: tn.Adam(params, lr=1e-2, weight_decay=1e-3, flat=flat),
}


def data(rng, n=64):
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def train(make_optimizer, flat, steps=5, model=None, optimizer=None):
    rng = np.random.default_rng(0)
    model = model or tn.mlp([6, 8, 8, 3], rng=np.random.default_rng(1))
    optimizer = optimizer or make_optimizer(model.parameters(), flat)
    loss = tn.SoftmaxCrossEntropy()
    for _ in range(steps):
        x, y = data(rng, 16)
        loss(model.forward(x), y)
        optimizer.zero_grad()
        model.backward(loss.backward())
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_packed_step_equals_the_per_parameter_step_bit_for_bit(name):
    packed, opt_packed = train(OPTIMIZERS[name], flat=True)
    plain, opt_plain = train(OPTIMIZERS[name], flat=False)
    assert opt_packed.flat is not None and opt_plain.flat is None
    for a, b in zip(packed.parameters(), plain.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.grad, b.grad)
    for a, b in zip(opt_packed.state_dict()["state"], opt_plain.state_dict()["state"]):
        assert a.keys() == b.keys() and bool(a) == (name != "plain sgd")  # per parameter, as unpacked
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_packing_makes_views_and_keeps_values_shapes_and_names():
    model = tn.mlp([6, 8, 3], rng=np.random.default_rng(1))
    before = [(p.name, p.data.copy(), p.data.shape) for p in model.parameters()]
    opt = tn.SGD(model.parameters(), lr=0.1)
    assert opt.flat is None and all(p.data.base is None for p in model.parameters())  # not before a step
    opt.step()  # zero gradients: packs, moves nothing
    flat = opt.flat
    assert flat.data.shape == (sum(b[1].size for b in before),) and flat.data.dtype == np.float32
    for p, (name, values, shape) in zip(model.parameters(), before):
        assert p.name == name and p.data.shape == shape and p.grad.shape == shape
        np.testing.assert_array_equal(p.data, values)
        assert np.shares_memory(p.data, flat.data) and np.shares_memory(p.grad, flat.grad)


def test_a_gradient_no_backward_reached_is_zero_in_the_packed_step():
    """zero_grad only owes zeros; the packed step must not apply the stale gradient."""
    used, unused = tn.Parameter(np.ones(3, np.float32), "used"), tn.Parameter(np.ones(2, np.float32), "unused")
    opt = tn.SGD([used, unused], lr=0.5)
    used.grad[...] = 1.0
    unused.grad[...] = 1.0
    opt.step()
    opt.zero_grad()
    used.accumulate(np.multiply, np.ones(3, np.float32), 2.0)  # only `used` gets a new gradient
    opt.step()
    np.testing.assert_array_equal(used.data, [1 - 0.5 - 1.0] * 3)
    np.testing.assert_array_equal(unused.data, [0.5, 0.5])


def test_replaced_arrays_are_packed_again_and_trained():
    """load_state_dict assigns new arrays: the next step packs them, and the model trains on."""
    model, opt = train(OPTIMIZERS["sgd"], flat=True, steps=2)
    reference, opt_ref = train(OPTIMIZERS["sgd"], flat=False, steps=2)
    saved_model, saved_opt = model.state_dict(), opt.state_dict()
    old_flat = opt.flat
    model.load_state_dict(saved_model)  # new arrays for every p.data
    opt.load_state_dict(saved_opt)  # new arrays for every momentum buffer
    assert not old_flat.intact()
    train(None, True, steps=3, model=model, optimizer=opt)
    train(None, False, steps=3, model=reference, optimizer=opt_ref)
    assert opt.flat is not old_flat and opt.flat.intact()
    for a, b in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_a_second_optimizer_over_the_same_parameters_takes_them_over():
    model, first = train(OPTIMIZERS["sgd"], flat=True, steps=1)
    second = tn.SGD(model.parameters(), lr=0.1)
    values = [p.data.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad[...] = 1.0
    second.step()
    assert second.flat is not None and not first.flat.intact()
    for p, v in zip(model.parameters(), values):
        np.testing.assert_allclose(p.data, v - 0.1, rtol=1e-6)


def test_tied_weights_and_mixed_dtypes_are_not_packed_and_still_train():
    shared = np.ones(4, np.float32)
    a, b = tn.Parameter(shared, "a"), tn.Parameter(shared[::-1], "b")  # one memory, two parameters
    opt = tn.SGD([a, b], lr=0.25)
    a.grad[...] = 1.0
    b.grad[...] = 1.0
    opt.step()
    assert opt.flat is None and np.shares_memory(a.data, b.data)
    np.testing.assert_array_equal(shared, 0.5)  # both updates went to the one array
    for params in ([tn.Parameter(np.ones(2, np.float32)), tn.Parameter(np.ones(2, np.float64))],
                   [tn.Parameter(np.ones(2, np.float32))] * 2):  # mixed dtypes; one parameter twice
        opt = tn.SGD(params, lr=0.1)
        opt.step()
        assert opt.flat is None


def test_flat_must_be_a_bool():
    with pytest.raises(TypeError, match=r"SGD: expected flat to be True or False, got 'yes'"):
        tn.SGD(tn.mlp([2, 3]).parameters(), lr=0.1, flat="yes")


def test_the_nan_check_reads_the_packed_gradient_once_and_still_finds_a_nan():
    model = tn.mlp([6, 8, 3], rng=np.random.default_rng(1))
    packed = tn.SGD(model.parameters(), lr=0.1)
    packed.step()
    assert len(gradient_arrays(model.parameters())) == 1
    other = tn.mlp([6, 8, 3], rng=np.random.default_rng(1))
    plain = tn.SGD(other.parameters(), lr=0.1, flat=False)
    assert len(gradient_arrays(other.parameters())) == len(other.parameters())
    loss_value = np.float32(0.5)
    for params in (packed.params, plain.params):
        assert finite_step(np, loss_value, params)
        params[-1].grad[0] = np.nan
        assert not finite_step(np, loss_value, params)
        params[-1].grad[0] = 0.0
    # a parameter outside the optimizer: the check reads each gradient, the packed ones included
    extra = [tn.Parameter(np.ones(2, np.float32))] + packed.params
    assert len(gradient_arrays(extra)) == len(extra)
    extra[0].grad[1] = np.inf
    assert not finite_step(np, loss_value, extra)


def test_state_an_update_replaces_is_seen_per_parameter():
    """An optimizer whose rule assigns a new state array each step (not in place) stays right."""

    class Averaging(tn.optim.Optimizer):
        def update(self, data, grad, state):
            state["mean_grad"] = 0.5 * state.get("mean_grad", grad) + 0.5 * grad  # a new array
            data -= self.lr * state["mean_grad"]

    runs = []
    for flat in (True, False):
        p = [tn.Parameter(np.ones(3, np.float32), "a"), tn.Parameter(np.ones(2, np.float32), "b")]
        opt = Averaging(p, lr=0.1, flat=flat)
        for step in range(3):
            for q in p:
                q.grad[...] = step + 1.0
            opt.step()
        runs.append(([q.data.copy() for q in p], opt.state_dict()["state"]))
    (data_a, state_a), (data_b, state_b) = runs
    for a, b in zip(data_a, data_b):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(state_a, state_b):
        np.testing.assert_array_equal(a["mean_grad"], b["mean_grad"])


def test_unpackable_arrays_are_tried_once_until_one_is_replaced(monkeypatch):
    """Tied weights cannot be packed; the pairwise memory check is not repeated every step."""
    from tinynet.flat import FlatParameters

    calls = []
    original = FlatParameters.pack.__func__
    monkeypatch.setattr(FlatParameters, "pack", classmethod(lambda cls, params: calls.append(1) or original(cls, params)))
    shared = np.ones(4, np.float32)
    a, b = tn.Parameter(shared, "a"), tn.Parameter(shared[::-1], "b")
    opt = tn.SGD([a, b], lr=0.1)
    for _ in range(3):
        opt.step()
    assert opt.flat is None and len(calls) == 1
    b.data = np.ones(4, np.float32)  # untied: now they can be packed
    opt.step()
    assert opt.flat is not None and len(calls) == 2
    np.testing.assert_allclose(b.data, 1.0)  # zero gradients: the step moved nothing
