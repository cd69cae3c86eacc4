"""float32 end to end: a whole training step in float32 makes no float64 array anywhere.

A float64 temporary costs twice the memory traffic and a cast back, and it hides easily
(``x * np.float64(0.1)`` promotes, ``x * 0.1`` does not). The check here does not trust
the layer boundaries alone: every array of the step is a :class:`Float64Spy`, an ndarray
that records the dtype of every ufunc result (``+``, ``@``, ``.sum()``, ``exp``, in-place
ops ...) and every NumPy function result (``einsum``, ``stack`` ...) computed from it.
"""

import numpy as np
import pytest

import tinynet as tn


class Float64Spy(np.ndarray):
    """An ndarray whose ufunc and function results stay spies, their dtypes noted in ``made``."""

    made = []  # (operation, dtype) of every floating-point result

    @staticmethod
    def _plain(value):
        if isinstance(value, Float64Spy):
            return value.view(np.ndarray)
        if isinstance(value, (tuple, list)):
            return type(value)(Float64Spy._plain(v) for v in value)
        if isinstance(value, dict):  # keyword arguments: out= may be a spy
            return {k: Float64Spy._plain(v) for k, v in value.items()}
        return value

    @staticmethod
    def _note(name, result):
        if isinstance(result, (tuple, list)):
            return type(result)(Float64Spy._note(name, r) for r in result)
        if isinstance(result, (np.ndarray, np.generic)):
            if result.dtype.kind == "f":
                Float64Spy.made.append((name, result.dtype))
            if isinstance(result, np.ndarray) and not isinstance(result, Float64Spy):
                return result.view(Float64Spy)
        return result

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = self._plain(out)
        result = getattr(ufunc, method)(*self._plain(inputs), **kwargs)
        self._note(f"{ufunc.__name__}.{method}", result)
        if out is not None:  # in place: hand back the caller's own arrays
            return out[0] if len(out) == 1 else out
        return self._note(f"{ufunc.__name__}.{method}", result)

    def __array_function__(self, func, types, args, kwargs):
        result = func(*self._plain(args), **self._plain(kwargs))
        return self._note(func.__name__, result)


def spy(a):
    return np.asarray(a).view(Float64Spy)


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((96, 12)).astype(np.float32)
    y = rng.integers(0, 4, 96)
    return x, y


def model_and_parts(activation, bn_gradient, optimizer):
    rng = np.random.default_rng(0)
    model = tn.mlp([12, 16, 16, 4], activation=activation, bn_gradient=bn_gradient, rng=rng)
    for p in model.parameters():
        p.data, p.grad = spy(p.data), spy(p.grad)
    for _, owner, attr in model.named_buffers():
        setattr(owner, attr, spy(getattr(owner, attr)))
    if optimizer == "sgd":
        opt = tn.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True)
    else:
        opt = tn.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    return model, tn.SoftmaxCrossEntropy(), opt


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("bn_gradient", ["simplified", "paper"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_whole_fit_step_makes_no_float64_array(data, activation, bn_gradient, optimizer):
    model, loss, opt = model_and_parts(activation, bn_gradient, optimizer)
    Float64Spy.made.clear()
    tn.fit(model, loss, opt, spy(data[0]), data[1], epochs=1, batch_size=32,
           rng=np.random.default_rng(1), progress=False)
    made = list(Float64Spy.made)
    assert len(made) > 100, "the spy saw too little of the step to mean anything"
    promoted = sorted({name for name, dtype in made if dtype != np.float32})
    assert not promoted, f"operations that made a non-float32 array: {promoted}"
    # and what the step leaves behind: parameters, gradients, optimizer state, running statistics
    for p in model.parameters():
        assert p.data.dtype == p.grad.dtype == np.float32, p.name
    for state in opt.state:
        assert all(v.dtype == np.float32 for v in state.values() if hasattr(v, "dtype"))
    for name, owner, attr in model.named_buffers():
        assert getattr(owner, attr).dtype == np.float32, name


def test_the_spy_catches_a_promotion():
    Float64Spy.made.clear()
    a = spy(np.ones(3, np.float32))
    _ = a * np.float64(2.0)  # a float64 NumPy scalar promotes (a Python float would not)
    _ = np.einsum("i,i->", a, a.astype(np.float64))
    assert ("multiply.__call__", np.float64) in Float64Spy.made
    assert ("einsum", np.float64) in Float64Spy.made


def test_each_layer_output_and_gradient_is_float32(data):
    """The same at the boundaries, by hand: the values a student prints while debugging."""
    rng = np.random.default_rng(0)
    model = tn.mlp([12, 16, 16, 4], rng=rng)
    h = data[0][:32]
    outputs = []
    for _, layer in model.children():
        h = layer(h)
        outputs.append(h)
    loss = tn.SoftmaxCrossEntropy()
    value = loss(h, data[1][:32])
    grad = loss.backward()
    grads = [grad]
    for _, layer in reversed(list(model.children())):
        grad = layer.backward(grad)
        grads.append(grad)
    assert value.dtype == np.float32
    assert all(a.dtype == np.float32 for a in outputs + grads)
