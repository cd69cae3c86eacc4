"""Where arrays live: to/to_device, mixing backends, asking for cupy without it, the CLI's
--backend, and on a GPU the numpy-vs-cupy parity of training and gradchecks in float64."""

import sys
import types

import numpy as np
import pytest

import tinynet as tn
from tinynet import backend as backend_module
from tinynet import cli
from tinynet.backend import BackendUnavailableError, cupy_available
from tinynet.commands import train as train_command


class ForeignArray(np.ndarray):
    """A NumPy array whose type claims to be CuPy's: lets the mixing checks run without a GPU."""


ForeignArray.__module__ = "cupy._fake"


def foreign(a):
    return np.asarray(a).view(ForeignArray)


# -- to and to_device ---------------------------------------------------------------------


def test_to_device_round_trip_keeps_values_and_gives_the_asked_kind(xp, backend, rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    on = tn.to_device(a, backend)
    assert type(on).__module__.split(".")[0] == backend
    assert tn.to_device(on, backend) is on  # already there: no copy
    back = tn.to_device(on, "numpy")
    assert type(back) is np.ndarray and back.dtype == np.float32
    np.testing.assert_array_equal(back, a)


def test_model_to_moves_parameters_gradients_and_buffers_and_back(backend, rng):
    model = tn.mlp([5, 6, 3], rng=rng)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    model.forward(x)
    model.backward(np.ones((8, 3), np.float32))  # non-zero gradients and running statistics
    before = model.state_dict()
    grads = [p.grad.copy() for p in model.parameters()]
    assert model.to(backend) is model
    kinds = {type(p.data).__module__.split(".")[0] for p in model.parameters()}
    kinds |= {type(p.grad).__module__.split(".")[0] for p in model.parameters()}
    kinds |= {type(getattr(o, a)).__module__.split(".")[0] for _, o, a in model.named_buffers()}
    assert kinds == {backend}
    model.to("numpy")
    for (name, value), after in zip(before.items(), model.state_dict().values()):
        np.testing.assert_array_equal(after, value, err_msg=name)
    for g, p in zip(grads, model.parameters()):
        np.testing.assert_array_equal(p.grad, g)


def test_unknown_backend_names_are_refused_with_the_caller_named(rng):
    with pytest.raises(ValueError, match="to_device: expected backend 'numpy' or 'cupy', got 'gpu'"):
        tn.to_device(np.zeros(2), "gpu")
    with pytest.raises(ValueError, match="Linear.to: expected backend 'numpy' or 'cupy', got 'torch'"):
        tn.Linear(2, 2, rng=rng).to("torch")


# -- mixing kinds ---------------------------------------------------------------------------


@pytest.mark.parametrize("make, shape", [
    (lambda rng: tn.Linear(4, 3, rng=rng), (2, 4)),
    (lambda rng: tn.BatchNorm(4), (2, 4)),
])
def test_an_input_of_another_kind_names_the_layer_and_both_kinds(rng, make, shape):
    layer = make(rng)
    with pytest.raises(TypeError) as info:
        layer(foreign(np.zeros(shape, np.float32)))
    message = str(info.value)
    assert type(layer).__name__ in message and "cupy" in message and "numpy" in message
    assert "model.to('cupy')" in message  # and says how to fix it


def test_a_graph_names_the_position_of_the_layer_that_saw_the_other_kind(rng):
    model = tn.Sequential(tn.Linear(4, 4, rng=rng), tn.ReLU(), tn.Linear(4, 2, rng=rng))
    model[2].weight.data = foreign(model[2].weight.data)  # one layer left behind on "the GPU"
    with pytest.raises(TypeError, match=r"Linear \(layer 2\): input is a numpy array but the layer's parameters are cupy"):
        model.forward(np.zeros((3, 4), np.float32))


def test_fit_refuses_data_and_labels_of_two_kinds(rng):
    model = tn.mlp([4, 3], rng=rng)
    with pytest.raises(TypeError, match="fit: x is a cupy array but y is a numpy array"):
        tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1),
               foreign(np.zeros((4, 4), np.float32)), np.zeros(4, np.int64), 1, 2, progress=False)


def test_optimizer_state_left_on_another_kind_is_refused_with_the_fix(rng):
    p = tn.Parameter(np.ones(3, np.float32), "w")
    opt = tn.SGD([p], lr=0.1, momentum=0.9)
    p.grad[:] = 1
    opt.step()
    opt.state[0]["momentum_buffer"] = foreign(opt.state[0]["momentum_buffer"])
    with pytest.raises(TypeError, match=r"SGD: the momentum buffer of w is a cupy array but the parameter is a numpy array; call optimizer.to\('numpy'\)"):
        opt.step()


# -- asking for cupy where it cannot work ---------------------------------------------------


def test_missing_cupy_is_named_with_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ModuleNotFoundError
    with pytest.raises(BackendUnavailableError, match=r"CuPy is not installed: pip install 'tinynet\[cuda12\]'.*'tinynet\[cuda13\]'"):
        backend_module.require_cupy()
    assert not cupy_available()


def fake_cupy_module(device_count):
    def count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    runtime = types.SimpleNamespace(getDeviceCount=count)
    return types.SimpleNamespace(__version__="13.0", cuda=types.SimpleNamespace(runtime=runtime))


def test_cupy_without_a_usable_gpu_is_named_with_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy_module(RuntimeError("cudaErrorInsufficientDriver: driver too old")))
    with pytest.raises(BackendUnavailableError) as info:
        tn.to_device(np.zeros(2), "cupy")
    message = str(info.value)
    assert "CuPy 13.0 is installed, but no usable GPU was found (cudaErrorInsufficientDriver" in message
    assert "tinynet[cuda12]" in message
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy_module(0))
    with pytest.raises(BackendUnavailableError, match="the driver reports 0 GPUs"):
        backend_module.require_cupy()


@pytest.mark.skipif(cupy_available(), reason="this machine has a GPU")
def test_model_to_cupy_without_a_gpu_fails_and_leaves_the_model_on_numpy(rng):
    model = tn.mlp([3, 2], rng=rng)
    with pytest.raises(BackendUnavailableError, match="pip install"):
        model.to("cupy")
    assert all(type(p.data) is np.ndarray for p in model.parameters())


# -- the CLI ----------------------------------------------------------------------------------


def subparsers(parser):
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


@pytest.mark.parametrize("env, expected", [(None, "numpy"), ("cupy", "cupy"), ("numpy", "numpy")])
def test_every_command_takes_backend_defaulting_to_tinynet_backend(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv("TINYNET_BACKEND", raising=False)
    else:
        monkeypatch.setenv("TINYNET_BACKEND", env)
    commands = subparsers(cli.build_parser())
    assert "train" in commands
    for name, parser in commands.items():
        option = parser._option_string_actions.get("--backend")
        assert option is not None, f"{name} has no --backend"
        assert set(option.choices) == {"numpy", "cupy"}, name
    # a command may choose its own default (bench-bn times every backend when none is named)
    assert cli.parse_args(["train"]).backend == expected
    assert backend_module.default_backend() == expected


def test_default_backend_refuses_a_bad_environment_value(monkeypatch):
    monkeypatch.setenv("TINYNET_BACKEND", "gpu")
    with pytest.raises(ValueError, match="TINYNET_BACKEND: expected backend 'numpy' or 'cupy', got 'gpu'"):
        backend_module.default_backend()


def tiny_mnist(root=None):
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 10, n)
        x = np.zeros((n, 28, 28), np.uint8)
        x[np.arange(n), y, :] = 255  # the label is the bright row: learnable in one epoch
        return x, y

    return make(600), make(100)


@pytest.mark.parametrize("how", ["option", "environment"])
def test_cli_backend_cupy_trains_on_a_gpu_or_says_what_is_missing(monkeypatch, capsys, how):
    monkeypatch.setitem(train_command.LOADERS, "mnist", tiny_mnist)
    argv = ["train", "--epochs", "1", "--hidden", "16", "--val-size", "100", "--quiet"]
    if how == "option":
        argv += ["--backend", "cupy"]
    else:
        monkeypatch.setenv("TINYNET_BACKEND", "cupy")
    code = cli.main(argv)
    captured = capsys.readouterr()
    if cupy_available():
        assert code == 0 and captured.out.startswith("test accuracy")
    else:
        assert code == 2
        assert "tinynet train: error: backend 'cupy' asked for" in captured.err and "pip install" in captured.err


# -- on a GPU ----------------------------------------------------------------------------------


def test_batches_are_sliced_where_the_data_lives(xp, backend, rng):
    x = xp.asarray(rng.standard_normal((50, 3)).astype(np.float32))
    y = xp.asarray(rng.integers(0, 2, 50))
    for xb, yb in tn.data.batching.minibatches(x, y, 16, rng):
        assert type(xb).__module__.split(".")[0] == type(yb).__module__.split(".")[0] == backend


def blobs(rng, n=800, classes=4, dim=12):
    centres = rng.standard_normal((classes, dim)) * 2
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, dim))).astype(np.float32), y


@pytest.mark.gpu
def test_gpu_numpy_and_cupy_losses_agree_after_50_steps(rng):
    if not cupy_available():
        pytest.skip("cupy backend: CuPy or a GPU is not available here")
    x, y = blobs(np.random.default_rng(0))
    histories = {}
    for name in ("numpy", "cupy"):
        model = tn.mlp([12, 32, 32, 4], rng=np.random.default_rng(1)).to(name)
        opt = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
        histories[name] = tn.fit(model, tn.SoftmaxCrossEntropy(), opt, tn.to_device(x, name), tn.to_device(y, name),
                                 epochs=2, batch_size=32, rng=np.random.default_rng(2), progress=False)
    numpy_losses, cupy_losses = (np.array(histories[n].step_loss) for n in ("numpy", "cupy"))
    assert len(numpy_losses) == 50  # 800 / 32 = 25 steps an epoch
    np.testing.assert_allclose(cupy_losses, numpy_losses, rtol=1e-4)


@pytest.mark.gpu
def test_gpu_fit_moves_the_optimizer_state_with_the_model(rng):
    if not cupy_available():
        pytest.skip("cupy backend: CuPy or a GPU is not available here")
    import cupy

    x, y = blobs(np.random.default_rng(0), n=128)
    model = tn.mlp([12, 8, 4], rng=rng)
    opt = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = tn.SoftmaxCrossEntropy()
    tn.fit(model, loss, opt, x, y, 1, 32, progress=False)  # momentum buffers now on the host
    model.to("cupy")
    tn.fit(model, loss, opt, cupy.asarray(x), cupy.asarray(y), 1, 32, progress=False)
    assert all(type(s["momentum_buffer"]).__module__.startswith("cupy") for s in opt.state)


class LossAsLayer(tn.Layer):
    """SoftmaxCrossEntropy with fixed labels, as a Layer, so gradcheck can check it."""

    def __init__(self, labels):
        self.labels, self.loss = labels, tn.SoftmaxCrossEntropy()

    def forward(self, logits):
        return self.loss(logits, self.labels)

    def backward(self, dy):
        return self.loss.backward(float(dy))


@pytest.mark.parametrize("what", ["linear", "relu", "batchnorm", "batchnorm-paper", "mlp", "loss"])
def test_gradchecks_in_float64_on_every_backend(xp, backend, rng, what):
    x = xp.asarray(rng.standard_normal((6, 5)))
    if what == "linear":
        layer = tn.Linear(5, 3, rng=rng, dtype=np.float64)
    elif what == "relu":
        layer, x = tn.ReLU(), x + xp.sign(x) * 0.1  # away from the kink
    elif what.startswith("batchnorm"):
        layer = tn.BatchNorm(5, gradient="paper" if what.endswith("paper") else "simplified", dtype=np.float64)
    elif what == "mlp":
        layer = tn.mlp([5, 7, 7, 3], rng=rng, dtype=np.float64)
    else:
        layer = LossAsLayer(xp.asarray(rng.integers(0, 5, 6)))
    assert tn.gradcheck(layer.to(backend), x)
