"""fit / evaluate / History, the train CLI end to end, and one epoch on the real MNIST."""

import json
import subprocess
import sys

import numpy as np
import pytest

import tinynet as tn
from tinynet import cli
from tinynet.commands import train as train_command
from tinynet.data.batching import images_to_features, minibatches


def blobs(rng, n=600, classes=3, dim=8):
    """Three well-separated Gaussian clusters: any working MLP reaches ~100 %."""
    centres = rng.standard_normal((classes, dim)) * 4
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.standard_normal((n, dim))).astype(np.float32)
    return x, y


def test_fit_learns_and_history_records_everything(tmp_path, rng):
    x, y = blobs(rng)
    model = tn.mlp([8, 16, 3], rng=rng)
    loss = tn.SoftmaxCrossEntropy()
    history = tn.fit(model, loss, tn.SGD(model.parameters(), lr=0.1, momentum=0.9), x[:500], y[:500],
                     epochs=3, batch_size=32, validation=(x[500:], y[500:]), rng=rng, progress=False)
    assert len(history.step_loss) == 3 * 16  # ceil(500 / 32) steps per epoch
    assert len(history.train_loss) == len(history.val_loss) == len(history.val_accuracy) == len(history.seconds) == 3
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_accuracy[-1] >= 0.95
    result = tn.evaluate(model, loss, x[500:], y[500:], batch_size=33)
    assert result.accuracy == pytest.approx(history.val_accuracy[-1])
    assert all(layer.training for layer in model.modules())  # evaluate restored the mode
    history.to_json(tmp_path / "h.json")
    assert json.loads((tmp_path / "h.json").read_text())["val_accuracy"] == history.val_accuracy
    assert tn.History.from_json(tmp_path / "h.json") == history


def test_fit_is_reproducible_with_a_seed():
    runs = []
    for _ in range(2):
        rng = np.random.default_rng(3)
        x, y = blobs(rng)
        model = tn.mlp([8, 16, 3], rng=rng)
        runs.append(tn.fit(model, tn.SoftmaxCrossEntropy(), tn.Adam(model.parameters()), x, y, 2, 50, rng=rng, progress=False))
    assert runs[0].step_loss == runs[1].step_loss


def test_fit_drops_a_trailing_batch_of_one_with_batchnorm(rng):
    x, y = blobs(rng, n=65)
    model = tn.mlp([8, 4, 3], rng=rng)
    with pytest.warns(UserWarning, match="65 examples in batches of 32 leave a last batch of one"):
        history = tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 32, rng=rng,
                         progress=False)
    assert len(history.step_loss) == 2


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(epochs=0), ValueError, "fit: expected epochs to be a positive integer, got 0"),
        (dict(batch_size=2.5), ValueError, "fit: expected batch_size to be a positive integer, got 2.5"),
        (dict(y=np.zeros(3, np.int64)), ValueError, "fit: x has 10 examples but y has 3"),
        (dict(x=np.zeros((10, 8), np.uint8)), TypeError, "fit: expected floating-point features x, got dtype uint8"),
    ],
)
def test_fit_refuses_bad_arguments(rng, kwargs, error, message):
    model = tn.mlp([8, 3], rng=rng)
    args = dict(x=np.zeros((10, 8), np.float32), y=np.zeros(10, np.int64), epochs=1, batch_size=4)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), progress=False, **args)


def test_minibatches_cover_every_example_once(rng):
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    batches = list(minibatches(x, y, 4, rng=rng))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate([b[1] for b in batches])) == list(range(10))
    assert all(b[0].flags.c_contiguous for b in batches)
    np.testing.assert_array_equal(np.concatenate([b[0][:, 0] for b in batches]), np.concatenate([b[1] for b in batches]))


def test_images_to_features():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    features = images_to_features(images)
    assert features.dtype == np.float32 and features.shape == (1, 4)
    np.testing.assert_allclose(features, [[0.0, 1.0, 0.2, 0.4]])


def fake_mnist(root=None):
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (10, 28, 28))

    def make(n):
        y = rng.integers(0, 10, n)
        x = np.clip(centres[y] + rng.integers(-40, 40, (n, 28, 28)), 0, 255).astype(np.uint8)
        return x, y

    return make(1200), make(300)


def test_cli_train_end_to_end_on_synthetic_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(train_command.LOADERS, "mnist", fake_mnist)
    save = tmp_path / "run"
    code = cli.main(["train", "--epochs", "2", "--hidden", "32", "--val-size", "200", "--seed", "1",
                     "--bn-gradient", "paper", "--save", str(save)])
    assert code == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "BatchNorm(32, gradient='paper')" in out
    assert "epoch  train loss   val loss   val acc  seconds" in out
    assert lines[-1].startswith("test accuracy ")
    accuracy = float(lines[-1].split()[2].rstrip("%"))
    assert accuracy > 90
    weights = np.load(save.with_suffix(".npz"))
    assert "1.running_var" in weights.files and weights["0.weight"].shape == (784, 32)
    history = json.loads(save.with_suffix(".json").read_text())
    assert len(history["val_accuracy"]) == 2


def test_cli_train_without_batchnorm_and_with_adam(monkeypatch, capsys):
    monkeypatch.setitem(train_command.LOADERS, "mnist", fake_mnist)
    assert cli.main(["train", "--epochs", "1", "--hidden", "16,16", "--no-batchnorm", "--optimizer", "adam", "--val-size", "100", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "BatchNorm" not in out and out.startswith("test accuracy")


def test_cli_reports_bad_options_clearly(capsys):
    assert cli.main(["train", "--hidden", "256,abc"]) == 2
    assert "--hidden: expected comma-separated widths such as 256,256, got '256,abc'" in capsys.readouterr().err


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "tinynet", "train", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in ("--epochs", "--batch-size", "--lr", "--optimizer", "--hidden", "--no-batchnorm", "--bn-gradient", "--seed", "--dataset", "--save", "--backend"):
        assert option in result.stdout


def test_one_epoch_on_real_mnist_reaches_96_percent():
    (x_train, y_train), (x_test, y_test) = tn.datasets.load_mnist()
    x_train, x_test = images_to_features(x_train), images_to_features(x_test)
    rng = np.random.default_rng(0)
    model = tn.mlp([784, 256, 256, 10], rng=rng)
    loss = tn.SoftmaxCrossEntropy()
    tn.fit(model, loss, tn.SGD(model.parameters(), lr=0.05, momentum=0.9), x_train, y_train, 1, 128, rng=rng, progress=False)
    assert tn.evaluate(model, loss, x_test, y_test).accuracy >= 0.96


def test_fit_applies_the_lr_schedule_each_epoch(rng):
    x, y = blobs(rng, n=64)
    model = tn.mlp([8, 3], rng=rng)
    optimizer = tn.SGD(model.parameters(), lr=1.0)
    seen = []

    def schedule(epoch):
        seen.append(epoch)
        return 0.1 / (epoch + 1)

    tn.fit(model, tn.SoftmaxCrossEntropy(), optimizer, x, y, 3, 32, rng=rng, progress=False, lr_schedule=schedule)
    assert seen == [0, 1, 2] and optimizer.lr == pytest.approx(0.1 / 3)


def test_cli_refuses_an_unknown_backend_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("TINYNET_BACKEND", "gpu")
    assert cli.main(["train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "TINYNET_BACKEND" in err and "'gpu'" in err


def test_fit_refuses_out_of_range_training_labels_at_the_first_step(rng):
    x, y = blobs(rng, n=64)
    y[5] = 7
    model = tn.mlp([8, 4, 3], rng=rng)
    with pytest.raises(ValueError, match=r"SoftmaxCrossEntropy: expected labels in \[0, 3\), got values from 0 to 7"):
        tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 32, rng=rng, progress=False)
