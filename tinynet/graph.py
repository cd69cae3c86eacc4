"""Graph: a DAG of layers, run forward in insertion order and backward in reverse.

    g = Graph()
    x = g.input()
    h = g.add(Linear(784, 256), x)
    a = g.add(ReLU(), h)
    y = g.add(Add(), a, h)          # h fans out: its gradient is the sum of both uses
    g.output(y)

Inputs of a node must exist before it is added, so insertion order is a topological order.
"""

import importlib

from .layer import Layer, check_finite


class EvalModeWarning(UserWarning):
    """A model with BatchNorm or Dropout ran forward in training mode with no backward after it."""


class Node:
    """A place in a Graph: an input, or a layer applied to earlier nodes."""

    __slots__ = ("graph", "index", "layer", "inputs", "shape")

    def __init__(self, graph, index, layer=None, inputs=()):
        self.graph, self.index, self.layer, self.inputs = graph, index, layer, tuple(inputs)
        self.shape = None  # output shape, known after the first forward

    def __repr__(self):
        what = "input" if self.layer is None else repr(self.layer)
        return f"Node({self.index}: {what})"


class Graph(Layer):
    """A model as a directed acyclic graph of layers; itself a Layer, so graphs nest.

    Parameter and buffer names are qualified by the layer's position among the
    graph's layers: ``0.weight``, ``1.running_var``.
    """

    def __init__(self):
        self._inputs = []  # input nodes, in the order forward takes its arguments
        self._layer_nodes = []  # layer nodes, in insertion (= topological) order
        self._output = None

    # -- building ------------------------------------------------------------
    def input(self):
        """Add an input node and return it; ``forward`` takes one array per input."""
        node = Node(self, f"in{len(self._inputs)}")
        self._inputs.append(node)
        return node

    def add(self, layer, *inputs):
        """Apply ``layer`` to the outputs of ``inputs`` (nodes of this graph); return the new node."""
        if not isinstance(layer, Layer):
            got = f"the class {layer.__name__}; call it to make one" if isinstance(layer, type) else type(layer).__name__
            raise TypeError(f"Graph.add: expected a Layer, got {got}")
        if layer is self or any(n.layer is layer for n in self._layer_nodes):
            raise ValueError(f"Graph.add: {layer!r} is already in this graph; create a new instance to use it twice")
        if not inputs:
            raise ValueError(f"Graph.add: {layer!r} needs at least one input node, got none")
        for node in inputs:
            if not isinstance(node, Node):
                raise TypeError(f"Graph.add: inputs must be nodes returned by input() or add(), got {type(node).__name__}")
            if node.graph is not self:
                raise ValueError(f"Graph.add: {node!r} belongs to another graph")
        node = Node(self, len(self._layer_nodes), layer, inputs)
        layer._graph_position = node.index  # only for error messages
        self._layer_nodes.append(node)
        return node

    def output(self, node):
        """Mark ``node`` as the graph's output; return it."""
        if not isinstance(node, Node) or node.graph is not self:
            raise ValueError(f"Graph.output: expected a node of this graph, got {node!r}")
        self._output = node
        return node

    @property
    def inputs(self):
        """The input nodes, in the order ``forward`` takes its arrays."""
        return tuple(self._inputs)

    @property
    def nodes(self):
        """The layer nodes, in insertion order, which is a topological order."""
        return tuple(self._layer_nodes)

    def children(self):
        for node in self._layer_nodes:
            yield str(node.index), node.layer

    # -- running ---------------------------------------------------------------
    # the inputs of a training-mode forward whose backward has not come yet (the layers cache
    # them anyway; holding them also keeps their ids from being reused)
    _unbacked_inputs = None

    def __call__(self, *xs):
        # a NaN scan is a pass over the data: it runs where data enters a model, not in every
        # layer; fit and evaluate scan their whole data once and call forward directly
        for i, x in enumerate(xs):
            check_finite(self.name_for_errors(), x, f"input {i}" if len(xs) > 1 else "input")
        return self.forward(*xs)

    def forward(self, *xs):
        if self._output is None:
            raise RuntimeError("Graph: no output set; call g.output(node) before running the graph")
        if len(xs) != len(self._inputs):
            raise ValueError(f"{self.name_for_errors()}: expected {len(self._inputs)} input array(s), got {len(xs)}")
        # a new training forward that drops the previous one's cache: that output was used, not trained
        # on (gradcheck repeats a forward on the same arrays, which is not evaluation)
        # and the first training forward after fit returned (fit sets the flag; train() and eval() clear it)
        previous, after_fit = self._unbacked_inputs, self.training and self.__dict__.pop("_fit_ended", False)
        if after_fit or (self.training and previous is not None and any(a is not b for a, b in zip(previous, xs))):
            importlib.import_module("tinynet.diagnose").warn_eval_mode_forgotten(self, after_fit)
        values = dict(zip(self._inputs, xs))
        for node in self._layer_nodes:
            out = node.layer(*[values[i] for i in node.inputs])
            node.shape = tuple(out.shape)
            values[node] = out
        self._unbacked_inputs = xs if self.training else None
        return values[self._output]

    def backward(self, dy):
        if self._output is None:
            raise RuntimeError("Graph: no output set; call g.output(node) before running the graph")
        self._unbacked_inputs = None
        grads = {self._output: dy}
        for node in reversed(self._layer_nodes):
            g = grads.pop(node, None)
            if g is None:  # nothing downstream of this node reaches the output
                continue
            dxs = node.layer.backward(g)
            if len(node.inputs) == 1:
                dxs = (dxs,)
            for source, dx in zip(node.inputs, dxs):
                # fan-out: a node used several times receives the sum (never += : dx may be shared)
                grads[source] = grads[source] + dx if source in grads else dx
        dx_inputs = tuple(grads.get(node) for node in self._inputs)
        return dx_inputs[0] if len(dx_inputs) == 1 else dx_inputs

    # -- describing (the text is made in tinynet/graph_text.py, loaded when asked for) --------------
    def summary(self, input_shape=None):
        """Return a table: each layer, the nodes it reads (fan-in), the nodes that read it
        (fan-out; ``out`` for the graph's output), its output shape, its parameter count.

        Output shapes are known after a first forward, or at once with ``input_shape``: the
        shape of one example, without the batch axis (``(784,)``, ``(1, 28, 28)``; a list of
        them for several inputs), which runs one eval-mode forward on zeros and changes nothing.
        """
        from .graph_text import summary

        return summary(self, input_shape)

    def to_dot(self):
        """Return the graph as Graphviz DOT text: an ellipse per input, a box per layer (with its
        output shape once a forward has run), an arrow per use, so fan-out and fan-in show.

        Render it with Graphviz: ``dot -Tsvg model.dot -o model.svg``.
        """
        from .graph_text import to_dot

        return to_dot(self)

    def extra_repr(self):
        return f"{len(self._layer_nodes)} layers"


class Sequential(Graph):
    """A chain of layers: ``Sequential(Linear(784, 256), ReLU(), Linear(256, 10))``."""

    def __init__(self, *layers):
        super().__init__()
        node = self.input()
        for layer in layers:
            node = self.add(layer, node)
        self.output(node)

    def __len__(self):
        return len(self._layer_nodes)

    def __getitem__(self, index):
        return self._layer_nodes[index].layer
