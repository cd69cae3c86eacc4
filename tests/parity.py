"""Helpers for the PyTorch-parity tests of the layers of issue 16 (tests/test_conv.py and siblings)."""

import numpy as np

import tinynet as tn


def randn(xp, rng, *shape, scale=1.0):
    return xp.asarray(rng.standard_normal(shape) * scale)


def check_against_torch(layer, x, torch_fn, params=(), atol=1e-6, rtol=1e-6, seed=0):
    """Run ``layer`` on float64 ``x`` and ``torch_fn(x, *params)`` on the same values; compare
    the output, dL/dx and each parameter's gradient for one random upstream gradient.

    ``params`` are the layer's Parameters in the order ``torch_fn`` takes them as tensors.
    Returns the output (NumPy), so a caller can check more.
    """
    import torch

    y = layer(x)
    r = np.random.default_rng(seed).standard_normal(tuple(y.shape))
    for p in params:
        p.zero_grad()
    dx = layer.backward(get_array_module_of(x).asarray(r))
    xt = torch.tensor(tn.to_numpy(x), dtype=torch.float64, requires_grad=True)
    pts = [torch.tensor(tn.to_numpy(p.data), dtype=torch.float64, requires_grad=True) for p in params]
    yt = torch_fn(xt, *pts)
    yt.backward(torch.tensor(r))
    np.testing.assert_allclose(tn.to_numpy(y), yt.detach().numpy(), atol=atol, rtol=rtol, err_msg="output")
    np.testing.assert_allclose(tn.to_numpy(dx), xt.grad.numpy(), atol=atol, rtol=rtol, err_msg="dL/dx")
    for p, pt in zip(params, pts):
        np.testing.assert_allclose(tn.to_numpy(p.grad), pt.grad.numpy(), atol=atol, rtol=rtol, err_msg=p.name)
    return tn.to_numpy(y)


def get_array_module_of(x):
    return tn.get_array_module(x)
