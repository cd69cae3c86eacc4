"""The text views of a Graph: its summary table and its Graphviz DOT source."""


def summary(graph, input_shape=None):
    """Return a table: each layer, the nodes it reads (fan-in), the nodes that read it
    (fan-out; ``out`` for the graph's output), its output shape, its parameter count
    (``Graph.summary``; ``input_shape`` is described there)."""
    if input_shape is not None:
        trace_shapes(graph, input_shape)
    users = _users(graph)
    rows = [("#", "layer", "inputs", "used by", "output shape", "params")]
    for node in graph._inputs:
        rows.append((node.index, "Input", "", users[node], "", ""))
    total, seen = 0, set()  # a Parameter shared by two layers counts once, where it first appears
    for node in graph._layer_nodes:
        own = [p for _, p in node.layer.named_parameters() if id(p) not in seen]
        seen.update(id(p) for p in own)
        count = sum(int(p.data.size) for p in own)
        total += count
        rows.append((str(node.index), repr(node.layer), ", ".join(str(i.index) for i in node.inputs),
                     users[node], _shape_text(node), f"{count:,}"))
    widths = [max(len(str(r[c])) for r in rows) for c in range(6)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"total parameters: {total:,}" + ("" if graph._output is None else f"; output: node {graph._output.index}"))
    if any(node.shape is None for node in graph._layer_nodes):
        lines.append("output shapes are known after a first forward, or now with summary(input_shape=...): "
                     "the shape of one example, e.g. (784,)")
    return "\n".join(lines)


def trace_shapes(graph, input_shape):
    """Run one eval-mode forward on zeros (a batch of 2) to learn every node's output shape; every
    layer's attributes (mode, running statistics, what a forward saved for backward) are restored."""
    several = isinstance(input_shape, (tuple, list)) and input_shape and isinstance(input_shape[0], (tuple, list))
    shapes = list(input_shape) if several else [input_shape]
    if len(shapes) != len(graph._inputs) or not all(
            isinstance(s, (tuple, list)) and all(isinstance(d, int) and d > 0 for d in s) for s in shapes):
        raise ValueError(f"{graph.name_for_errors()}.summary: expected input_shape as the shape of one example "
                         f"without the batch axis, e.g. (784,), one per input ({len(graph._inputs)}), got {input_shape!r}")
    import numpy as np

    from .backend import get_array_module

    params = graph.parameters()
    like = params[0].data if params else np.zeros(0, np.float32)
    xp = get_array_module(like)
    kept = [(layer, dict(vars(layer))) for layer in graph.modules()]
    try:
        graph.eval()
        graph.forward(*[xp.zeros((2, *s), like.dtype) for s in shapes])
    finally:
        for layer, attributes in kept:
            vars(layer).clear()
            vars(layer).update(attributes)


def _users(graph):
    """{node: "i, j"}: the layer nodes that read each node, and "out" for the output."""
    users = {node: [] for node in graph._inputs + graph._layer_nodes}
    for node in graph._layer_nodes:
        for source in node.inputs:
            users[source].append(str(node.index))
    if graph._output is not None:
        users[graph._output].append("out")
    return {node: ", ".join(names) for node, names in users.items()}


def to_dot(graph):
    """Return the graph as Graphviz DOT text: an ellipse per input, a box per layer (with its
    output shape once a forward has run), an arrow per use, so fan-out and fan-in show.

    Render it with Graphviz: ``dot -Tsvg model.dot -o model.svg``.
    """
    lines = ["digraph tinynet {", '  node [shape=box, fontname="Helvetica"];']
    for node in graph._inputs:
        lines.append(f'  {node.index} [label="input {node.index[2:]}", shape=ellipse];')
    for node in graph._layer_nodes:
        shape = "" if node.shape is None else "\\n" + _dot_escape(_shape_text(node))
        lines.append(f'  n{node.index} [label="{node.index}: {_dot_escape(repr(node.layer))}{shape}"];')
    for node in graph._layer_nodes:
        for source in node.inputs:
            lines.append(f"  {_dot_id(source)} -> n{node.index};")
    if graph._output is not None:
        lines.append('  output [label="output", shape=ellipse];')
        lines.append(f"  {_dot_id(graph._output)} -> output;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _shape_text(node):
    """``(N, 256)``: the output shape with the batch axis named, ``?`` before the first forward."""
    return "?" if node.shape is None else str(("N",) + node.shape[1:]).replace("'", "")


def _dot_id(node):
    return node.index if node.layer is None else f"n{node.index}"


def _dot_escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')
