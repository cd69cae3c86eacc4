"""Graph.to_dot (Graphviz DOT text) and the wiring columns of Graph.summary."""

import re

import numpy as np
import pytest

import tinynet as tn

NODE = re.compile(r'^  (\w+) \[label="((?:[^"\\]|\\.)*)"(, shape=ellipse)?\];$')
EDGE = re.compile(r"^  (\w+) -> (\w+);$")


def parse(dot):
    """Nodes {id: label} and edges [(from, to)] of to_dot's output; fail on any other line."""
    lines = dot.splitlines()
    assert lines[0] == "digraph tinynet {" and lines[-1] == "}" and dot.endswith("\n")
    nodes, edges = {}, []
    for line in lines[2:-1]:
        if m := NODE.match(line):
            assert m.group(1) not in nodes, f"node {m.group(1)} declared twice"
            nodes[m.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), m.group(2))
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
        else:
            pytest.fail(f"not a node or edge statement: {line!r}")
    for a, b in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} names an undeclared node"
    return nodes, edges


def residual(rng):
    g = tn.Graph()
    x = g.input()
    h = g.add(tn.Linear(3, 4, rng=rng, dtype=np.float64), x)
    r = g.add(tn.ReLU(), h)
    s = g.add(tn.Add(), r, h)  # h fans out to ReLU and Add; Add fans in
    g.output(g.add(tn.Linear(4, 2, rng=rng, dtype=np.float64), s))
    return g


def test_dot_has_a_node_per_layer_and_an_edge_per_use(rng):
    nodes, edges = parse(residual(rng).to_dot())
    assert nodes == {"in0": "input 0", "n0": "0: Linear(3, 4)", "n1": "1: ReLU()", "n2": "2: Add()",
                     "n3": "3: Linear(4, 2)", "output": "output"}
    assert sorted(edges) == sorted([("in0", "n0"), ("n0", "n1"), ("n1", "n2"), ("n0", "n2"),
                                    ("n2", "n3"), ("n3", "output")])
    fan_out = [a for a, _ in edges].count("n0")
    fan_in = [b for _, b in edges].count("n2")
    assert fan_out == 2 and fan_in == 2


def test_dot_labels_gain_output_shapes_after_a_forward(rng):
    g = residual(rng)
    g(rng.standard_normal((5, 3)))
    nodes, _ = parse(g.to_dot())
    assert nodes["n0"] == "0: Linear(3, 4)\n(N, 4)" and nodes["n3"] == "3: Linear(4, 2)\n(N, 2)"


def test_dot_escapes_quotes_and_backslashes():
    class Odd(tn.Layer):
        def forward(self, x):
            return x

        def __repr__(self):
            return 'Odd("a\\b")'

    nodes, _ = parse(tn.Sequential(Odd(), tn.BatchNorm(2, gradient="paper")).to_dot())
    assert nodes["n0"] == '0: Odd("a\\b")' and nodes["n1"] == "1: BatchNorm(2, gradient='paper')"


def test_dot_of_a_node_used_twice_by_one_layer_two_inputs_and_no_output():
    g = tn.Graph()
    a, b = g.input(), g.input()
    s = g.add(tn.Add(), a, b)
    g.add(tn.Add(), s, s)
    nodes, edges = parse(g.to_dot())
    assert "output" not in nodes and nodes["in1"] == "input 1"
    assert sorted(edges) == sorted([("in0", "n0"), ("in1", "n0"), ("n0", "n1"), ("n0", "n1")])


def test_a_nested_graph_is_one_box(rng):
    inner = tn.Sequential(tn.Linear(3, 3, rng=rng), tn.ReLU())
    nodes, edges = parse(tn.Sequential(inner, tn.Linear(3, 1, rng=rng)).to_dot())
    assert nodes["n0"] == "0: Sequential(2 layers)" and ("n0", "n1") in edges


def test_summary_shows_fan_out_and_the_output(rng):
    g = residual(rng)
    rows = {line.split()[0]: line for line in g.summary().splitlines()[2:-1]}
    header = g.summary().splitlines()[0].split("  ")
    assert [h.strip() for h in header if h.strip()] == ["#", "layer", "inputs", "used by", "output shape", "params"]
    assert re.search(r"Linear\(3, 4\)\s+in0\s+1, 2\s", rows["0"])  # read by ReLU and Add: fan-out
    assert re.search(r"Add\(\)\s+1, 0\s+3\s", rows["2"])  # reads ReLU and Linear: fan-in
    assert re.search(r"Linear\(4, 2\)\s+2\s+out\s", rows["3"])
    assert re.search(r"Input\s+0$", rows["in0"])
