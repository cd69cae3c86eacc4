"""The PyTorch bridge: the same model in tinynet and in PyTorch, weights and running statistics included.

    torch_model = tinynet.to_torch(model)       # a torch.nn.Module computing what model computes
    model = tinynet.from_torch(torch_model)     # and back, for the layers tinynet has

Loaded on first use (``tinynet.to_torch``); PyTorch is an optional extra (``pip install torch``).
The one difference that matters is Linear's weight: tinynet stores it as (in, out) so that
``y = x @ W``, PyTorch as (out, in) with ``y = x @ W.T``; the bridge transposes it, and
``load_state_dict`` refuses a PyTorch state dict rather than load it transposed. Everything else
keeps its layout; BatchNorm's and LayerNorm's ``gamma`` and ``beta`` are PyTorch's ``weight`` and
``bias``. Names line up: layer i of a Sequential or Graph is submodule ``str(i)`` on both sides
(docs/pytorch.md).
"""

import numpy as np

from .backend import to_numpy
from .graph import Graph, Sequential
from .layer import Layer
from .layers import BatchNorm, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .layers.batchnorm2d import BatchNorm2d
from .layers.conv import Conv2d
from .layers.dropout import Dropout
from .layers.gelu import GELU
from .layers.layernorm import LayerNorm
from .layers.merge import Add
from .layers.pooling import AvgPool2d, Flatten, MaxPool2d
from .layers.softmax import Softmax


def _torch(where):
    try:
        import torch
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"{where} needs PyTorch, an optional extra: pip install torch") from None
    return torch


def _tensor(torch, array):
    """A torch tensor holding a copy of ``array`` (NumPy or CuPy), on the CPU, in its dtype."""
    return torch.from_numpy(np.array(to_numpy(array), copy=True))


def _array(tensor, dtype=None):
    """A NumPy copy of a torch tensor (in ``dtype`` when given)."""
    value = tensor.detach().cpu().numpy().copy()
    return value if dtype is None else value.astype(dtype)


# -- tinynet -> PyTorch ------------------------------------------------------------------------------
def to_torch(model):
    """Build the ``torch.nn.Module`` that computes what ``model`` computes, with copies of its weights.

    Parameters
    ----------
    model : Layer
        A Sequential (becomes ``torch.nn.Sequential``), a Graph (becomes a module that runs the
        same DAG in node order, submodule ``str(i)`` for layer i) or one built-in layer: Linear,
        ReLU, Sigmoid, Tanh, LeakyReLU, GELU, Softmax, Dropout, BatchNorm (-> BatchNorm1d),
        BatchNorm2d, Conv2d, MaxPool2d, AvgPool2d, Flatten, LayerNorm, Add.

    Returns
    -------
    torch.nn.Module
        On the CPU, in the dtype of the model's parameters, in the model's train/eval mode;
        BatchNorm's running statistics, momentum (None too), eps and batch count come along.
        The weights are copies: training one side leaves the other as it was.

    Raises
    ------
    TypeError
        For a layer PyTorch has no equivalent of (a layer of your own), naming it.
    """
    torch = _torch("tinynet.to_torch")
    if not isinstance(model, Layer):
        raise TypeError(f"tinynet.to_torch: expected a tinynet Layer (Sequential, Graph, ...), got {type(model).__name__}")
    module = _to_torch_module(torch, model)
    module.train(model.training)
    for layer, sub in zip(model.modules(), module.modules()):  # each layer's own mode (a frozen BatchNorm)
        sub.training = layer.training
    return module


def _to_torch_module(torch, layer):
    nn = torch.nn
    if isinstance(layer, Sequential) and type(layer) is Sequential:
        return nn.Sequential(*[_to_torch_module(torch, node.layer) for node in layer.nodes])
    if isinstance(layer, Graph):
        return _torch_graph_class(torch)(layer, [_to_torch_module(torch, node.layer) for node in layer.nodes])
    kind = type(layer)
    simple = {ReLU: nn.ReLU, Sigmoid: nn.Sigmoid, Tanh: nn.Tanh, Flatten: nn.Flatten}
    if kind in simple:
        return simple[kind]()
    if kind is LeakyReLU:
        return nn.LeakyReLU(layer.negative_slope)
    if kind is GELU:
        return nn.GELU(approximate=layer.approximate)
    if kind is Softmax:
        return nn.Softmax(dim=layer.axis)
    if kind is Dropout:
        return nn.Dropout(layer.p)
    if kind is Add:
        return _torch_add_class(torch)()
    if kind in (MaxPool2d, AvgPool2d):
        return (nn.MaxPool2d if kind is MaxPool2d else nn.AvgPool2d)(layer.kernel_size, layer.stride)
    with torch.no_grad():
        if kind is Linear:
            w = layer.weight.data
            out = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=_dtype(torch, w))
            out.weight.copy_(_tensor(torch, w).T)  # (in, out) -> PyTorch's (out, in)
            if layer.bias is not None:
                out.bias.copy_(_tensor(torch, layer.bias.data))
            return out
        if kind is Conv2d:
            w = layer.weight.data  # (O, C, kh, kw) on both sides
            out = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                            bias=layer.bias is not None, dtype=_dtype(torch, w))
            out.weight.copy_(_tensor(torch, w))
            if layer.bias is not None:
                out.bias.copy_(_tensor(torch, layer.bias.data))
            return out
        if kind in (BatchNorm, BatchNorm2d):
            make = nn.BatchNorm1d if kind is BatchNorm else nn.BatchNorm2d
            out = make(layer.num_features, eps=layer.eps, momentum=layer.momentum, dtype=_dtype(torch, layer.gamma.data))
            out.weight.copy_(_tensor(torch, layer.gamma.data))
            out.bias.copy_(_tensor(torch, layer.beta.data))
            out.running_mean.copy_(_tensor(torch, layer.running_mean))
            out.running_var.copy_(_tensor(torch, layer.running_var))
            out.num_batches_tracked.fill_(int(to_numpy(layer.num_batches_tracked)))
            return out
        if kind is LayerNorm:
            out = nn.LayerNorm(layer.normalized_shape, eps=layer.eps, dtype=_dtype(torch, layer.gamma.data))
            out.weight.copy_(_tensor(torch, layer.gamma.data))
            out.bias.copy_(_tensor(torch, layer.beta.data))
            return out
    raise TypeError(
        f"tinynet.to_torch: {layer.name_for_errors()} has no PyTorch equivalent here (the bridge knows the built-in "
        f"layers: {', '.join(sorted(c.__name__ for c in BUILT_IN))}; a subclass or a layer of your own needs its own "
        "torch.nn.Module)"
    )


def _dtype(torch, array):
    return getattr(torch, np.dtype(array.dtype).name)


_CLASSES = {}


def _torch_graph_class(torch):
    """``TinynetGraph(torch.nn.Module)``: runs a tinynet Graph's DAG in node order (made once, on first use)."""
    if "graph" not in _CLASSES:

        class TinynetGraph(torch.nn.Module):
            """A tinynet Graph as a torch module: submodule ``str(i)`` is layer i; ``wiring[i]`` names
            the nodes it reads (``"in0"`` for the first input, ``j`` for layer j's output)."""

            def __init__(self, graph, modules):
                super().__init__()
                for i, module in enumerate(modules):
                    self.add_module(str(i), module)
                self.num_inputs = len(graph.inputs)
                self.wiring = [tuple(n.index for n in node.inputs) for node in graph.nodes]
                self.output_node = None if graph._output is None else graph._output.index

            def forward(self, *xs):
                if len(xs) != self.num_inputs:
                    raise ValueError(f"TinynetGraph: expected {self.num_inputs} input tensor(s), got {len(xs)}")
                values = {f"in{i}": x for i, x in enumerate(xs)}
                for i, sources in enumerate(self.wiring):
                    values[i] = getattr(self, str(i))(*[values[s] for s in sources])
                return values[self.output_node]

        _CLASSES["graph"] = TinynetGraph
    return _CLASSES["graph"]


def _torch_add_class(torch):
    """``Add(torch.nn.Module)``: the sum of its inputs (PyTorch writes ``a + b`` in forward instead)."""
    if "add" not in _CLASSES:

        class Add(torch.nn.Module):
            def forward(self, *xs):
                if len(xs) < 2 or any(x.shape != xs[0].shape for x in xs):
                    raise ValueError(f"Add: expected two or more inputs of one shape, got {[tuple(x.shape) for x in xs]}")
                total = xs[0] + xs[1]
                for x in xs[2:]:
                    total = total + x
                return total

        _CLASSES["add"] = Add
    return _CLASSES["add"]


BUILT_IN = (Linear, ReLU, Sigmoid, Tanh, LeakyReLU, GELU, Softmax, Dropout, BatchNorm, BatchNorm2d, Conv2d,
            MaxPool2d, AvgPool2d, Flatten, LayerNorm, Add, Sequential, Graph)


# -- PyTorch -> tinynet ------------------------------------------------------------------------------
def from_torch(module, dtype=None):
    """Build the tinynet model that computes what ``module`` computes, with copies of its weights.

    Parameters
    ----------
    module : torch.nn.Module
        A ``torch.nn.Sequential`` of supported layers (nested ones too), a graph made by
        :func:`to_torch`, or one supported layer: Linear, ReLU, Sigmoid, Tanh, LeakyReLU, GELU,
        Softmax, Dropout, BatchNorm1d and BatchNorm2d (affine, with running statistics), Conv2d
        (no groups or dilation, zero padding given as numbers), MaxPool2d and AvgPool2d (no
        padding, floor mode), Flatten (from dim 1), LayerNorm (with weight and bias).
    dtype : numpy dtype, optional
        dtype of the tinynet parameters; by default each keeps its tensor's dtype.

    Returns
    -------
    Layer
        A Sequential, Graph or layer on NumPy in ``module``'s train/eval mode. Linear weights
        are transposed to tinynet's (in, out).

    Raises
    ------
    TypeError
        For a module tinynet has no layer for, or a setting it does not implement, naming both.
    """
    torch = _torch("tinynet.from_torch")
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"tinynet.from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    layer = _from_torch_module(torch, module, dtype, "module")
    for sub, mine in zip(module.modules(), layer.modules()):
        mine.training = sub.training
    return layer


def _refuse(where, module, why):
    raise TypeError(f"tinynet.from_torch: {where} ({type(module).__name__}) {why}")


def _from_torch_module(torch, m, dtype, where):
    nn = torch.nn
    kind = type(m)
    if kind is nn.Sequential:
        return Sequential(*[_from_torch_module(torch, child, dtype, f"{where}.{name}") for name, child in m.named_children()])
    if kind is _CLASSES.get("graph"):
        graph = Graph()
        nodes = {f"in{i}": graph.input() for i in range(m.num_inputs)}
        for i, sources in enumerate(m.wiring):
            nodes[i] = graph.add(_from_torch_module(torch, getattr(m, str(i)), dtype, f"{where}.{i}"),
                                 *[nodes[s] for s in sources])
        if m.output_node is not None:
            graph.output(nodes[m.output_node])
        return graph
    if kind is _CLASSES.get("add"):
        return Add()
    simple = {nn.ReLU: ReLU, nn.Sigmoid: Sigmoid, nn.Tanh: Tanh}
    if kind in simple:
        return simple[kind]()
    if kind is nn.LeakyReLU:
        return LeakyReLU(m.negative_slope)
    if kind is nn.GELU:
        return GELU(m.approximate)
    if kind is nn.Softmax:
        if m.dim is None:
            _refuse(where, m, "has dim=None (an implicit axis); give Softmax(dim=...)")
        return Softmax(m.dim)
    if kind is nn.Dropout:
        return Dropout(m.p)
    if kind is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            _refuse(where, m, f"flattens dims {m.start_dim}..{m.end_dim}; tinynet's Flatten keeps dim 0 and flattens the rest")
        return Flatten()
    if kind in (nn.MaxPool2d, nn.AvgPool2d):
        pad = m.padding if isinstance(m.padding, tuple) else (m.padding, m.padding)
        dilation = getattr(m, "dilation", 1)
        if any(pad) or m.ceil_mode or dilation not in (1, (1, 1)) or getattr(m, "divisor_override", None) is not None:
            _refuse(where, m, "uses padding, ceil_mode, dilation or divisor_override, which tinynet's pooling does not have")
        return (MaxPool2d if kind is nn.MaxPool2d else AvgPool2d)(m.kernel_size, m.stride)
    if kind is nn.Linear:
        out = Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=_np_dtype(m.weight, dtype))
        out.weight.data = _array(m.weight.T, out.weight.data.dtype)  # PyTorch's (out, in) -> (in, out)
        if m.bias is not None:
            out.bias.data = _array(m.bias, out.bias.data.dtype)
        return _fresh_grads(out)
    if kind is nn.Conv2d:
        if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
            _refuse(where, m, "uses groups, dilation, a padding mode or padding='same'/'valid', which tinynet's Conv2d "
                    "does not have")
        out = Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=m.bias is not None,
                     dtype=_np_dtype(m.weight, dtype))
        out.weight.data = _array(m.weight, out.weight.data.dtype)
        if m.bias is not None:
            out.bias.data = _array(m.bias, out.bias.data.dtype)
        return _fresh_grads(out)
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        if not m.affine or not m.track_running_stats:
            _refuse(where, m, "has affine=False or track_running_stats=False; tinynet's BatchNorm always has gamma, "
                    "beta and running statistics")
        make = BatchNorm if kind is nn.BatchNorm1d else BatchNorm2d
        out = make(m.num_features, eps=m.eps, momentum=m.momentum, dtype=_np_dtype(m.weight, dtype))
        out.gamma.data = _array(m.weight, out.gamma.data.dtype)
        out.beta.data = _array(m.bias, out.beta.data.dtype)
        out.running_mean = _array(m.running_mean, out.running_mean.dtype)
        out.running_var = _array(m.running_var, out.running_var.dtype)
        out.num_batches_tracked = np.array(int(m.num_batches_tracked), np.int64)
        return _fresh_grads(out)
    if kind is nn.LayerNorm:
        if not m.elementwise_affine or getattr(m, "bias", None) is None:
            _refuse(where, m, "has no weight or bias; tinynet's LayerNorm always has gamma and beta")
        out = LayerNorm(m.normalized_shape, eps=m.eps, dtype=_np_dtype(m.weight, dtype))
        out.gamma.data = _array(m.weight, out.gamma.data.dtype)
        out.beta.data = _array(m.bias, out.beta.data.dtype)
        return _fresh_grads(out)
    _refuse(where, m, "has no tinynet layer; from_torch knows nn.Sequential and Linear, ReLU, Sigmoid, Tanh, LeakyReLU, "
            "GELU, Softmax, Dropout, BatchNorm1d, BatchNorm2d, Conv2d, MaxPool2d, AvgPool2d, Flatten, LayerNorm")


def _np_dtype(tensor, dtype):
    if dtype is not None:
        return np.dtype(dtype)
    return np.dtype(str(tensor.dtype).replace("torch.", ""))


def _fresh_grads(layer):
    for _, p in layer.named_parameters():
        p.grad = np.zeros_like(p.data)
    return layer
