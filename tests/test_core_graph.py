"""Graph and Sequential: wiring, fan-out/fan-in gradients, names, summary, refusals."""

import numpy as np
import pytest

import tinynet as tn


def residual_graph(rng, backend="numpy"):
    g = tn.Graph()
    x = g.input()
    h = g.add(tn.Linear(3, 4, rng=rng, dtype=np.float64), x)
    r = g.add(tn.ReLU(), h)
    s = g.add(tn.Add(), r, h)  # h feeds ReLU and Add
    g.output(s)
    return g.to(backend)


def test_fan_out_receives_the_sum_of_gradients(xp, backend, rng):
    g = residual_graph(rng, backend)
    x = xp.asarray(rng.standard_normal((5, 3)))
    dy = xp.asarray(rng.standard_normal((5, 4)))
    lin = next(layer for _, layer in g.children())
    h = x @ lin.weight.data + lin.bias.data
    np.testing.assert_allclose(tn.to_numpy(g(x)), tn.to_numpy(xp.maximum(h, 0) + h))
    dx = g.backward(dy)
    dh = dy * (h > 0) + dy  # through ReLU, plus straight into Add
    np.testing.assert_allclose(tn.to_numpy(dx), tn.to_numpy(dh @ lin.weight.data.T), rtol=1e-12)
    np.testing.assert_allclose(tn.to_numpy(lin.weight.grad), tn.to_numpy(x.T @ dh), rtol=1e-12)
    np.testing.assert_allclose(tn.to_numpy(lin.bias.grad), tn.to_numpy(dh.sum(0)), rtol=1e-12)


def test_graph_gradchecks_as_a_layer(xp, backend, rng):
    g = tn.Graph()
    x = g.input()
    a = g.add(tn.Linear(4, 5, rng=rng, dtype=np.float64), x)
    b = g.add(tn.BatchNorm(5, dtype=np.float64), a)
    c = g.add(tn.Tanh(), b)
    d = g.add(tn.Linear(4, 5, rng=rng, dtype=np.float64), x)  # x fans out too
    g.output(g.add(tn.Add(), c, d, a))  # fan-in of three
    assert tn.gradcheck(g.to(backend), xp.asarray(rng.standard_normal((6, 4))))


def test_two_inputs(rng):
    g = tn.Graph()
    a, b = g.input(), g.input()
    g.output(g.add(tn.Add(), a, b))
    x1, x2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    np.testing.assert_allclose(g(x1, x2), x1 + x2)
    d1, d2 = g.backward(np.ones((2, 3)))
    np.testing.assert_array_equal(d1, np.ones((2, 3)))
    np.testing.assert_array_equal(d2, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Graph: expected 2 input array\(s\), got 1"):
        g(x1)


def test_sequential_names_parameters_by_position(rng):
    model = tn.Sequential(tn.Linear(4, 3, rng=rng), tn.ReLU(), tn.BatchNorm(3), tn.Linear(3, 2, rng=rng))
    names = [p.name for p in model.parameters()]
    assert names == ["0.weight", "0.bias", "2.gamma", "2.beta", "3.weight", "3.bias"]
    assert list(model.state_dict()) == names[:4] + ["2.running_mean", "2.running_var"] + names[4:]
    assert len(model) == 4 and isinstance(model[2], tn.BatchNorm)


def test_nested_graphs_qualify_names(rng):
    inner = tn.Sequential(tn.Linear(2, 2, rng=rng), tn.BatchNorm(2))
    outer = tn.Sequential(tn.Linear(2, 2, rng=rng), inner)
    assert [p.name for p in outer.parameters()] == ["0.weight", "0.bias", "1.0.weight", "1.0.bias", "1.1.gamma", "1.1.beta"]
    assert "1.1.running_var" in outer.state_dict()


def test_train_and_eval_reach_every_layer(rng):
    model = tn.Sequential(tn.Linear(2, 2, rng=rng), tn.Sequential(tn.BatchNorm(2), tn.Dropout(0.5)))
    assert model.eval() is model
    assert not any(layer.training for layer in model.modules())
    model.train()
    assert all(layer.training for layer in model.modules())
    model[1][0].eval()  # per layer: no global flag
    assert model[0].training and not model[1][0].training and model[1][1].training


def test_summary_shows_layers_wiring_shapes_and_counts(rng):
    g = residual_graph(rng)
    text = g.summary()
    assert "Linear(3, 4)" in text and "ReLU()" in text and "Add()" in text
    assert "?" in text  # shapes unknown before the first forward
    g(rng.standard_normal((5, 3)))
    text = g.summary()
    assert "(N, 4)" in text and "?" not in text
    assert "16" in text  # 3 * 4 + 4 parameters
    add_row = next(line for line in text.splitlines() if "Add()" in line)
    assert "1, 0" in add_row  # Add reads nodes 1 (ReLU) and 0 (Linear)


def test_refuses_the_same_layer_twice_and_foreign_nodes(rng):
    relu = tn.ReLU()
    g = tn.Graph()
    x = g.input()
    g.add(relu, x)
    with pytest.raises(ValueError, match="already in this graph"):
        g.add(relu, x)
    other = tn.Graph()
    y = other.input()
    with pytest.raises(ValueError, match="belongs to another graph"):
        g.add(tn.ReLU(), y)
    with pytest.raises(TypeError, match="Graph.add: expected a Layer, got function"):
        g.add(lambda v: v, x)
    with pytest.raises(ValueError, match="needs at least one input node"):
        g.add(tn.ReLU())
    with pytest.raises(ValueError, match="Graph.output: expected a node of this graph"):
        g.output(y)


def test_errors_inside_a_graph_name_the_position(rng):
    model = tn.Sequential(tn.Linear(4, 3, rng=rng), tn.ReLU(), tn.Linear(5, 2, rng=rng))
    with pytest.raises(ValueError, match=r"Linear \(layer 2\): expected input of shape \(N, 5\), got shape \(6, 3\)"):
        model(np.zeros((6, 4), np.float32))


def test_a_dead_branch_gets_no_gradient_and_does_not_break_backward(rng):
    g = tn.Graph()
    x = g.input()
    used = g.add(tn.Linear(3, 2, rng=rng, dtype=np.float64), x)
    g.add(tn.Linear(3, 2, rng=rng, dtype=np.float64), x)  # not on the way to the output
    g.output(used)
    g(rng.standard_normal((4, 3)))
    assert g.backward(np.ones((4, 2))).shape == (4, 3)


def test_inputs_and_nodes_are_public_and_read_only(rng):
    g = residual_graph(rng)
    assert len(g.inputs) == 1 and [n.index for n in g.nodes] == [0, 1, 2]
    assert g.nodes[2].inputs == (g.nodes[1], g.nodes[0])
    assert isinstance(g.nodes, tuple)  # a copy: editing it cannot rewire the graph
