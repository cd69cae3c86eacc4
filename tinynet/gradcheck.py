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

    Besides the values it catches three classic mistakes: a backward that assigns a
    parameter gradient (``=``) where it must add (``+=``: gradients start from random
    values here, not zeros), and a forward or backward that modifies its input or
    ``dy`` in place. Inputs and parameters of any memory layout (transposed, sliced)
    are perturbed where they are.

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
        Naming the worst entry (which array, which index) with both values, or the
        array a forward or backward modified.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"gradcheck: expected a Layer, got {type(layer).__name__}")
    inputs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    for xi in inputs:
        if not hasattr(xi, "dtype") or xi.dtype.kind != "f":
            raise TypeError(f"gradcheck: expected floating-point input arrays, got {getattr(xi, 'dtype', type(xi).__name__)}")
    name = type(layer).__name__
    xp = get_array_module(*inputs)
    params = list(layer.named_parameters())
    buffers = list(layer.named_buffers())
    saved_params = [(p, p.data, p.grad) for _, p in params]
    saved_buffers = [(owner, attr, getattr(owner, attr)) for _, owner, attr in buffers]
    noise = np.random.default_rng(seed)
    try:
        # float64 copies (a float64 parameter is used as it is, so a layer holding its array sees
        # the perturbations); gradients start from random values, not zeros: a backward that
        # writes p.grad = ... instead of adding to it is then caught
        start_grads = []
        for p, data, _ in saved_params:
            if data.dtype != np.float64:
                p.data = data.astype(np.float64)
            start = xp.asarray(noise.standard_normal(tuple(p.data.shape)))
            start_grads.append(start)
            p.grad = start.copy()
        inputs = tuple(xi.astype(np.float64) for xi in inputs)

        def restore_buffers():
            for owner, attr, value in saved_buffers:
                setattr(owner, attr, value.astype(np.float64) if value.dtype.kind == "f" else value.copy())

        restore_buffers()
        untouched = [xi.copy() for xi in inputs]
        out = layer(*inputs)
        _refuse_changed(name, "forward", "its input", inputs, untouched)
        r = xp.asarray(noise.standard_normal(tuple(out.shape)))
        dy = r.copy()
        dxs = layer.backward(dy)
        _refuse_changed(name, "backward", "dy", (dy,), (r,))
        dxs = dxs if isinstance(dxs, tuple) else (dxs,)

        def f():
            restore_buffers()  # forward in training mode moves running statistics
            return float((r * layer(*inputs)).sum())

        checks = [(f"input {i}" if len(inputs) > 1 else "input", xi, dxi) for i, (xi, dxi) in enumerate(zip(inputs, dxs))]
        checks += [(pname, p.data, None if p.grad is None else p.grad - start)
                   for (pname, p), start in zip(params, start_grads)]
        worst = None  # (excess over tolerance, name, index, analytic, numeric)
        for what, value, analytic in checks:
            if analytic is None or tuple(analytic.shape) != tuple(value.shape):
                raise AssertionError(
                    f"gradcheck({name}): gradient of {what} has shape "
                    f"{None if analytic is None else tuple(analytic.shape)}, expected {tuple(value.shape)}"
                )
            numeric = _numeric_gradient(f, value, eps)
            analytic = to_numpy(analytic).astype(np.float64)
            excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
            i = int(np.argmax(excess)) if excess.size else 0
            if excess.size and (worst is None or excess.flat[i] > worst[0]):
                index = np.unravel_index(i, excess.shape)
                worst = (excess.flat[i], what, index, analytic.flat[i], numeric.flat[i])
    finally:
        for p, data, grad in saved_params:
            p.data, p.grad = data, grad
        for owner, attr, value in saved_buffers:
            setattr(owner, attr, value)
    if worst is not None and worst[0] > 0:
        _, what, index, a, n = worst
        hint = " (a parameter gradient must be added with +=, not assigned with =)" if what in dict(params) else ""
        raise AssertionError(
            f"gradcheck({name}): gradient of {what}{[int(i) for i in index]} is wrong: "
            f"analytic {a:.8g}, numeric {n:.8g} (difference {abs(a - n):.3g} > atol {atol} + rtol {rtol} * |numeric|)"
            + hint
        )
    return True


def _refuse_changed(name, method, what, arrays, originals):
    """Raise when ``method`` changed an array it was given: in a graph the same array feeds other layers."""
    xp = get_array_module(*arrays)
    for a, original in zip(arrays, originals):
        if not bool(xp.array_equal(a, original, equal_nan=True)):
            raise AssertionError(
                f"gradcheck({name}): {method} modified {what} in place; it must leave it unchanged "
                "(compute into a new array: y = x * 2, not x *= 2), since other layers may read the same array"
            )


def _numeric_gradient(f, value, eps):
    """Central differences of the scalar f() with respect to each entry of ``value`` (changed in place,
    entry by entry, so any memory layout works)."""
    grad = np.empty(tuple(value.shape))
    for index in np.ndindex(*value.shape):
        original = float(value[index])
        value[index] = original + eps
        up = f()
        value[index] = original - eps
        down = f()
        value[index] = original
        grad[index] = (up - down) / (2 * eps)
    return grad
