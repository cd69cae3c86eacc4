"""The PyTorch bridge: to_torch / from_torch give the same model on both sides, and a PyTorch
state_dict is refused by load_state_dict instead of being loaded transposed."""

import sys

import numpy as np
import pytest

import tinynet as tn
from tinynet.layers import Add, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, GELU, LayerNorm, MaxPool2d, Softmax


def test_without_torch_the_bridge_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(ModuleNotFoundError, match="pip install torch"):
        tn.to_torch(tn.Sequential(tn.ReLU()))
    with pytest.raises(ModuleNotFoundError, match="pip install torch"):
        tn.from_torch(object())


torch = pytest.importorskip("torch")
F64 = np.float64


def mlp(r, momentum=0.1):
    return tn.Sequential(tn.Linear(6, 8, rng=r, dtype=F64), tn.BatchNorm(8, momentum=momentum, dtype=F64), tn.ReLU(),
                         tn.Linear(8, 8, rng=r, dtype=F64), tn.Tanh(), tn.Linear(8, 3, rng=r, dtype=F64))


def residual(r):
    g = tn.Graph()
    x = g.input()
    h = g.add(tn.Linear(6, 8, rng=r, dtype=F64), x)
    a = g.add(tn.BatchNorm(8, momentum=None, dtype=F64), h)
    b = g.add(GELU(), a)
    c = g.add(tn.Linear(8, 8, rng=r, dtype=F64), b)
    s = g.add(Add(), c, h)  # h fans out
    n = g.add(LayerNorm(8, dtype=F64), s)
    e = g.add(tn.LeakyReLU(0.2), n)
    g.output(g.add(tn.Linear(8, 3, rng=r, dtype=F64), e))
    return g


def cnn(r):
    return tn.Sequential(Conv2d(2, 4, 3, padding=1, rng=r, dtype=F64), BatchNorm2d(4, dtype=F64), tn.ReLU(),
                         MaxPool2d(2), Conv2d(4, 4, 3, stride=1, rng=r, dtype=F64, bias=False), tn.Sigmoid(),
                         AvgPool2d(2, stride=1), Flatten(), tn.Linear(4, 3, rng=r, dtype=F64),
                         tn.Sequential(Dropout(0.0), GELU(approximate="tanh")))


MODELS = {"mlp": (mlp, (16, 6)), "residual graph": (residual, (16, 6)), "cnn": (cnn, (8, 2, 8, 8))}


def torch_out(module, x):
    return module(torch.from_numpy(x)).detach().numpy()


def as_tinynet_state(module):
    """A torch module's weights in tinynet's names and layouts (through from_torch)."""
    return tn.from_torch(module).state_dict()


def assert_same_state(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


@pytest.mark.parametrize("name", MODELS)
def test_to_torch_outputs_agree_in_train_and_eval_mode_and_running_statistics_follow(name):
    make, shape = MODELS[name]
    r = np.random.default_rng(0)
    model = make(r)
    module = tn.to_torch(model)
    assert module.training and next(module.parameters()).dtype == torch.float64
    for _ in range(2):  # train mode: batch statistics, running statistics move on both sides
        x = r.standard_normal(shape)
        y = model.forward(x)
        np.testing.assert_allclose(torch_out(module, x), y, rtol=0, atol=1e-6)
        model.backward(np.ones_like(y))  # a training forward is followed by its backward
    assert_same_state(as_tinynet_state(module), model.state_dict())
    model.eval(), module.eval()
    x = r.standard_normal(shape)
    np.testing.assert_allclose(torch_out(module, x), model.forward(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_one_sgd_step_on_each_side_agrees(name):
    make, shape = MODELS[name]
    r = np.random.default_rng(1)
    model = make(r)
    module = tn.to_torch(model)
    x, y = r.standard_normal(shape), r.integers(0, 3, shape[0])
    opt = tn.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    topt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    loss = tn.SoftmaxCrossEntropy()
    for _ in range(2):  # the second step uses the momentum buffers
        value = loss(model.forward(x), y)
        opt.zero_grad()
        model.backward(loss.backward())
        opt.step()
        topt.zero_grad()
        tvalue = torch.nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(y))
        tvalue.backward()
        topt.step()
        assert abs(float(value) - tvalue.item()) < 1e-6
    assert_same_state(as_tinynet_state(module), model.state_dict())


def test_from_torch_builds_the_same_model_from_pytorch_modules():
    torch.manual_seed(0)
    nn = torch.nn
    module = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3, momentum=None), nn.LeakyReLU(),
                           nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 5), nn.BatchNorm1d(5, eps=1e-3),
                           nn.GELU(), nn.LayerNorm(5), nn.Linear(5, 4), nn.Softmax(dim=1)).double()
    model = tn.from_torch(module)
    assert isinstance(model, tn.Sequential) and len(model) == 11
    assert model[1].momentum is None and model[6].eps == 1e-3 and model[0].weight.data.dtype == np.float64
    x = np.random.default_rng(2).standard_normal((6, 1, 4, 4))
    np.testing.assert_allclose(model.forward(x), torch_out(module, x), rtol=0, atol=1e-6)  # train mode
    module.eval()
    model = tn.from_torch(module)
    assert not any(m.training for m in model.modules())
    np.testing.assert_allclose(model.forward(x), torch_out(module, x), rtol=0, atol=1e-6)
    assert tn.from_torch(module, dtype=np.float32)[0].weight.data.dtype == np.float32


def test_round_trip_keeps_graph_wiring_modes_and_batchnorm_settings():
    r = np.random.default_rng(3)
    model = residual(r)
    x = r.standard_normal((5, 6))
    model.forward(x)  # one training forward: num_batches_tracked 1, running statistics moved
    model.backward(np.ones((5, 3)))
    model.nodes[1].layer.eval()  # one frozen BatchNorm in a training model
    module = tn.to_torch(model)
    assert module.training and not getattr(module, "1").training
    assert int(getattr(module, "1").num_batches_tracked) == 1 and getattr(module, "1").momentum is None
    back = tn.from_torch(module)
    assert [type(n.layer) for n in back.nodes] == [type(n.layer) for n in model.nodes]
    assert [[i.index for i in n.inputs] for n in back.nodes] == [[i.index for i in n.inputs] for n in model.nodes]
    assert back.training and not back.nodes[1].layer.training
    assert_same_state(back.state_dict(), model.state_dict(), atol=0)
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


def test_weights_are_copies():
    model = tn.Sequential(tn.Linear(3, 2, rng=np.random.default_rng(0)))
    module = tn.to_torch(model)
    with torch.no_grad():
        module[0].weight.add_(1)
    assert not np.allclose(model[0].weight.data.T, module[0].weight.detach().numpy())


def test_a_model_trained_in_tinynet_gives_the_same_test_accuracy_in_pytorch_to_the_last_example():
    r = np.random.default_rng(4)
    centres = r.standard_normal((4, 20)).astype(np.float32) * 1.5
    y = r.integers(0, 4, 1200)
    x = (centres[y] + r.standard_normal((1200, 20))).astype(np.float32)
    model = tn.Sequential(tn.Linear(20, 32, rng=r), tn.BatchNorm(32), tn.ReLU(), tn.Linear(32, 4, rng=r))
    tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1, momentum=0.9), x[:1000], y[:1000],
           epochs=3, batch_size=50, rng=r, progress=False)
    accuracy = tn.evaluate(model, tn.SoftmaxCrossEntropy(), x[1000:], y[1000:]).accuracy
    module = tn.to_torch(model.eval())
    with torch.no_grad():
        predicted = module(torch.from_numpy(x[1000:])).argmax(dim=1).numpy()
    np.testing.assert_array_equal(predicted, model.forward(x[1000:]).argmax(axis=1))
    assert (predicted == y[1000:]).mean() == accuracy and accuracy > 0.8


def test_to_torch_refuses_a_layer_pytorch_has_no_equivalent_for():
    class Double(tn.Layer):
        def forward(self, x):
            return 2 * x

    with pytest.raises(TypeError, match="Double.*no PyTorch equivalent"):
        tn.to_torch(tn.Sequential(tn.ReLU(), Double()))
    with pytest.raises(TypeError, match=r"expected a tinynet Layer .*got Module"):
        tn.to_torch(torch.nn.Module())


def test_from_torch_refuses_modules_and_settings_tinynet_does_not_have():
    nn = torch.nn
    with pytest.raises(TypeError, match=r"module\.1 \(Conv1d\) has no tinynet layer"):
        tn.from_torch(nn.Sequential(nn.ReLU(), nn.Conv1d(1, 1, 3)))
    with pytest.raises(TypeError, match="groups"):
        tn.from_torch(nn.Conv2d(2, 2, 3, groups=2))
    with pytest.raises(TypeError, match="affine=False"):
        tn.from_torch(nn.BatchNorm1d(3, affine=False))
    with pytest.raises(TypeError, match="padding"):
        tn.from_torch(nn.MaxPool2d(2, padding=1))
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got ndarray"):
        tn.from_torch(np.zeros(3))


def test_load_state_dict_refuses_torch_tensors_pointing_to_from_torch():
    model = tn.Sequential(tn.Linear(4, 4), tn.BatchNorm(4), tn.ReLU(), tn.Linear(4, 4))  # square: shapes cannot tell
    before = model.state_dict()
    state = tn.to_torch(model).state_dict()
    with pytest.raises(TypeError, match="torch tensors.*from_torch"):
        model.load_state_dict(state)
    assert_same_state(model.state_dict(), before, atol=0)


def test_load_state_dict_refuses_a_pytorch_state_dict_converted_to_numpy():
    model = tn.Sequential(tn.Linear(4, 4), tn.BatchNorm(4), tn.ReLU(), tn.Linear(4, 4))
    state = {k: v.numpy() for k, v in tn.to_torch(model).state_dict().items()}
    with pytest.raises(ValueError, match="num_batches_tracked.*looks like a PyTorch state_dict.*from_torch"):
        model.load_state_dict(state)
    # a non-square Linear: the (out, in) shape is the tell
    model = tn.Sequential(tn.Linear(5, 3))
    state = {k: v.numpy() for k, v in tn.to_torch(model).state_dict().items()}
    with pytest.raises(ValueError, match=r"0\.weight: model has \(5, 3\), state has \(3, 5\).*from_torch"):
        model.load_state_dict(state)
    # an ordinary mismatch is not blamed on PyTorch
    with pytest.raises(ValueError) as caught:
        tn.Sequential(tn.Linear(5, 4)).load_state_dict(tn.Sequential(tn.Linear(5, 3)).state_dict())
    assert "PyTorch" not in str(caught.value)
