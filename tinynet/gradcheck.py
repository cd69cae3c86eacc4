"""gradcheck: compare a layer's analytic gradients with float64 central differences."""

import numpy as np

from .backend import get_array_module, to_numpy
from .layer import Layer


def gradcheck(layer, x, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Check ``layer.backward`` against numerical derivatives, for the input and every parameter.

    The checked scalar is ``f = sum(r * layer(x))`` with ``r`` fixed and random: a
    constant upstream gradient would hide errors (for BatchNorm, sum(y) does not
    depend on x at all). Input and parameters are cast to float64 for the check;
    their dtypes and values, and the layer's buffers (BatchNorm's running
    statistics), are restored afterwards.

    Parameters
    ----------
    layer : Layer
        The layer to check, in the mode (train/eval) it is in.
    x : ndarray or tuple of ndarrays
        The input (a tuple for layers with several inputs, such as Add).
        BatchNorm in training mode needs a batch of at least 2.
    eps : float
        Step of the central difference (f(v + eps) - f(v - eps)) / (2 eps).
    atol, rtol : float
        An entry passes when |analytic - numeric| <= atol + rtol * |numeric|.
    seed : int
        Seed of the random projection r.

    Returns
    -------
    bool
        True when every entry passes.

    Raises
    ------
    AssertionError
        Naming the worst entry (which array, which index) with both values.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"gradcheck: expected a Layer, got {type(layer).__name__}")
    inputs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    for xi in inputs:
        if not hasattr(xi, "dtype") or xi.dtype.kind != "f":
            raise TypeError(f"gradcheck: expected floating-point input arrays, got {getattr(xi, 'dtype', type(xi).__name__)}")
    xp = get_array_module(*inputs)
    params = list(layer.named_parameters())
    buffers = list(layer.named_buffers())
    saved_params = [(p, p.data, p.grad) for _, p in params]
    saved_buffers = [(owner, attr, getattr(owner, attr)) for _, owner, attr in buffers]
    try:
        for p, data, _ in saved_params:
            p.data = data.astype(np.float64)
            p.grad = xp.zeros_like(p.data)
        inputs = tuple(xi.astype(np.float64) for xi in inputs)

        def restore_buffers():
            for owner, attr, value in saved_buffers:
                setattr(owner, attr, value.astype(np.float64) if value.dtype.kind == "f" else value.copy())

        restore_buffers()
        out = layer(*inputs)
        r = xp.asarray(np.random.default_rng(seed).standard_normal(tuple(out.shape)))
        dxs = layer.backward(r)
        dxs = dxs if isinstance(dxs, tuple) else (dxs,)

        def f():
            restore_buffers()  # forward in training mode moves running statistics
            return float((r * layer(*inputs)).sum())

        checks = [(f"input {i}" if len(inputs) > 1 else "input", xi, dxi) for i, (xi, dxi) in enumerate(zip(inputs, dxs))]
        checks += [(name, p.data, p.grad) for name, p in params]
        worst = None  # (excess over tolerance, name, index, analytic, numeric)
        for name, value, analytic in checks:
            if analytic is None or tuple(analytic.shape) != tuple(value.shape):
                raise AssertionError(
                    f"gradcheck({type(layer).__name__}): gradient of {name} has shape "
                    f"{None if analytic is None else tuple(analytic.shape)}, expected {tuple(value.shape)}"
                )
            numeric = _numeric_gradient(f, value, eps)
            analytic = to_numpy(analytic).astype(np.float64)
            excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
            i = int(np.argmax(excess)) if excess.size else 0
            if excess.size and (worst is None or excess.flat[i] > worst[0]):
                index = np.unravel_index(i, excess.shape)
                worst = (excess.flat[i], name, index, analytic.flat[i], numeric.flat[i])
    finally:
        for p, data, grad in saved_params:
            p.data, p.grad = data, grad
        for owner, attr, value in saved_buffers:
            setattr(owner, attr, value)
    if worst is not None and worst[0] > 0:
        _, name, index, a, n = worst
        raise AssertionError(
            f"gradcheck({type(layer).__name__}): gradient of {name}{[int(i) for i in index]} is wrong: "
            f"analytic {a:.8g}, numeric {n:.8g} (difference {abs(a - n):.3g} > atol {atol} + rtol {rtol} * |numeric|)"
        )
    return True


def _numeric_gradient(f, value, eps):
    """Central differences of the scalar f() with respect to each entry of ``value`` (changed in place)."""
    flat = value.reshape(-1)  # a view: writing it perturbs what the layer reads
    grad = np.empty(flat.size)
    for i in range(flat.size):
        original = float(flat[i])
        flat[i] = original + eps
        up = f()
        flat[i] = original - eps
        down = f()
        flat[i] = original
        grad[i] = (up - down) / (2 * eps)
    return grad.reshape(tuple(value.shape))
