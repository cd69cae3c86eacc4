"""Tests for the BatchNorm study (tinynet.study) and ``python -m tinynet compare``.

Everything runs on small synthetic data (a few hundred 8x8 "images" of 4 classes), so
no MNIST is needed and each test takes about a second.
"""

import csv
import json
import sys

import numpy as np
import pytest

from tinynet import Linear, Sigmoid
from tinynet.cli import main
from tinynet.commands import compare as compare_command
from tinynet.layers import BatchNorm
from tinynet.study import StudyConfig, build_pair, evaluate_with_probe, run_study
from tinynet.study.outputs import COLUMNS
from tinynet.study.runs import RunResult, batch_stream, probe_index

CLASSES = 4


def synthetic_images(n, rng, templates):
    """uint8 images (n, 8, 8): a class template plus noise; labels (n,)."""
    labels = rng.integers(0, CLASSES, n)
    images = templates[labels] + rng.normal(0, 40, (n, 8, 8))
    return np.clip(images, 0, 255).astype(np.uint8), labels


def fake_loader(root=None):
    rng = np.random.default_rng(7)
    templates = rng.uniform(0, 255, (CLASSES, 8, 8))
    return synthetic_images(600, rng, templates), synthetic_images(200, rng, templates)


def features(images):
    return (images.reshape(len(images), -1) / 255).astype(np.float32)


@pytest.fixture
def data():
    (x_train, y_train), (x_test, y_test) = fake_loader()
    return features(x_train), y_train.astype(np.int64), features(x_test), y_test.astype(np.int64)


def small_config(**changes):
    settings = dict(hidden=(16, 12), steps=60, eval_every=20, batch_size=20, lr=0.5, init_std=0.5, sweep_lrs=(),
                    sweep_steps=20)
    settings.update(changes)
    return StudyConfig.from_preset("paper", **settings)


CLI_ARGS = ["compare", "--hidden", "16,12", "--steps", "60", "--eval-every", "20", "--batch-size", "20",
            "--lr", "0.5", "--sweep-lr", "2,8", "--sweep-steps", "20", "--quiet"]


@pytest.fixture
def fake_mnist(monkeypatch):
    monkeypatch.setitem(compare_command.LOADERS, "mnist", fake_loader)


# ------------------------------------------------------------------ the library


def test_pair_shares_initial_weights_and_differs_only_by_batchnorm():
    plain, bn = build_pair(StudyConfig.from_preset("paper"), 784, 10)
    plain_linears = [m for m in plain.modules() if isinstance(m, Linear)]
    bn_linears = [m for m in bn.modules() if isinstance(m, Linear)]
    assert [l.weight.shape for l in plain_linears] == [(784, 100), (100, 100), (100, 100), (100, 10)]
    for a, b in zip(plain_linears, bn_linears):
        np.testing.assert_array_equal(a.weight.data, b.weight.data)
        assert a.weight.data is not b.weight.data  # shared values, not a shared array
    assert 0.09 < plain_linears[0].weight.data.std() < 0.11  # N(0, 0.1^2)
    assert [l.bias is None for l in bn_linears] == [True, True, True, False]
    assert sum(isinstance(m, BatchNorm) for m in bn.modules()) == 3
    assert sum(isinstance(m, Sigmoid) for m in plain.modules()) == 3


def test_batch_stream_repeats_the_same_order_for_the_same_seed(data):
    x, y = data[0], data[1]
    first = [yb.copy() for _, (_, yb) in zip(range(70), batch_stream(x, y, 20, 3))]
    again = [yb.copy() for _, (_, yb) in zip(range(70), batch_stream(x, y, 20, 3))]
    other = [yb.copy() for _, (_, yb) in zip(range(70), batch_stream(x, y, 20, 4))]
    assert all(len(b) == 20 for b in first)  # 600 / 20: 30 batches an epoch, 70 crosses two epochs
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_probe_records_the_input_of_the_last_activation(data):
    _, _, x_test, y_test = data
    plain, bn = build_pair(small_config(), x_test.shape[1], CLASSES)
    bn.train()
    for model in (plain, bn):
        probe = probe_index(model)
        assert isinstance(model[probe], Sigmoid) and probe == len(model) - 2
        loss, accuracy, percentiles = evaluate_with_probe(model, _loss(), x_test, y_test, probe, unit=3, chunk=64)
        model.eval()
        h = x_test
        for i in range(probe):
            h = model[i](h)
        np.testing.assert_allclose(percentiles, np.percentile(h[:, 3], [15, 50, 85]), rtol=1e-6)
        logits = model[probe + 1](model[probe](h))
        assert accuracy == pytest.approx(float((logits.argmax(axis=1) == y_test).mean()))
        assert loss == pytest.approx(float(_loss()(logits, y_test)), rel=1e-5)
    assert bn.training is False and all(m.training for m in bn.modules()) is False


def _loss():
    from tinynet import SoftmaxCrossEntropy

    return SoftmaxCrossEntropy()


def test_evaluation_restores_training_mode(data):
    _, bn = build_pair(small_config(), data[0].shape[1], CLASSES)
    bn.train()
    evaluate_with_probe(bn, _loss(), data[2], data[3], probe_index(bn), 0)
    assert all(m.training for m in bn.modules())


def test_study_trains_both_nets_and_records_every_evaluation(data):
    lines = []
    result = run_study(small_config(sweep_lrs=(2.0,)), data, progress=False, log=lines.append)
    assert [(r.phase, r.batchnorm, r.lr) for r in result.runs] == [
        ("main", False, 0.5), ("main", True, 0.5), ("sweep", False, 2.0), ("sweep", True, 2.0)]
    for run in result.main:
        assert run.step == [0, 20, 40, 60]
        assert run.test_accuracy[-1] > run.test_accuracy[0] + 0.3  # it learned the 4 templates
        assert np.isnan(run.train_loss[0]) and all(np.isfinite(run.train_loss[1:]))
        assert all(a <= b <= c for a, b, c in zip(run.p15, run.p50, run.p85))
        assert run.train_seconds == sorted(run.train_seconds) and run.wall_seconds >= run.train_seconds[-1]
    # a short sweep run is evaluated at least 10 times: every 2 of its 20 steps
    assert [r.step for r in result.sweep] == [list(range(0, 21, 2))] * 2
    # the same initial weights: at step 0 the BatchNorm net (running statistics 0 and 1, gamma 1, beta 0)
    # computes what the plain net computes, up to the factor 1 / sqrt(1 + eps)
    starts = [r.test_accuracy[0] for r in result.runs]
    assert starts == [starts[0]] * 4
    np.testing.assert_allclose(result.main[1].p50[0], result.main[0].p50[0], rtol=1e-4)
    assert len(lines) == 4 and "main  plain" in lines[0] and "final test accuracy" in lines[0]


def test_batchnorm_rescues_the_small_initialisation(data):
    # Figure 1's point in miniature: with N(0, 0.1^2) weights the plain sigmoid net is stuck near
    # chance for these 60 steps while the BatchNorm net, from the same weights and batches, learns
    result = run_study(small_config(init_std=0.1), data, progress=False, log=lambda s: None)
    plain, bn = result.main
    assert plain.final_accuracy < 0.5 < 0.9 < bn.final_accuracy
    assert bn.steps_to(0.9) is not None and plain.steps_to(0.9) is None


def test_study_runs_on_the_data_backend(data, xp, backend):
    # the models follow the data; on CuPy the curves match NumPy's up to float32 rounding
    device = tuple(xp.asarray(a) for a in data)
    config = small_config(steps=20, eval_every=10)
    on_device = run_study(config, device, progress=False, log=lambda s: None)
    on_host = run_study(config, data, progress=False, log=lambda s: None)
    assert on_device.data_info["backend"] == backend
    for a, b in zip(on_device.runs, on_host.runs):
        assert a.step == b.step == [0, 10, 20]
        np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=1e-3)
        np.testing.assert_allclose(a.p50, b.p50, rtol=1e-3, atol=1e-4)


def test_study_is_reproducible(data):
    a = run_study(small_config(steps=20), data, progress=False, log=lambda s: None)
    b = run_study(small_config(steps=20), data, progress=False, log=lambda s: None)
    for ra, rb in zip(a.runs, b.runs):
        assert ra.test_loss == rb.test_loss and ra.p50 == rb.p50


def test_steps_to_finds_the_first_crossing():
    run = RunResult("main", True, 0.1, step=[0, 10, 20, 30], test_accuracy=[0.1, 0.96, 0.94, 0.975])
    assert run.steps_to(0.95) == 10
    assert run.steps_to(0.97) == 30
    assert run.steps_to(0.99) is None


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_divergence_stops_the_run(data):
    # ReLU net at an absurd learning rate: the BatchNorm net's activations overflow within 10 steps
    config = StudyConfig.from_preset("mlp", hidden=(16,), steps=200, eval_every=10, batch_size=20, lr=1e6,
                                     init_std=1.0, sweep_lrs=())
    result = run_study(config, data, progress=False, log=lambda s: None)
    bn = result.main[1]
    assert bn.diverged_at == 10 and bn.step == [0, 10]
    assert not np.isfinite(bn.test_loss[-1]) or not np.isfinite(bn.train_loss[-1])


@pytest.mark.parametrize("changes, message", [
    (dict(steps=0), "steps"),
    (dict(eval_every=-1), "eval_every"),
    (dict(lr=-0.1), "learning rates"),
    (dict(sweep_lrs=(0.1, float("inf"))), "learning rates"),
    (dict(batch_size=1), "at least 2"),
    (dict(hidden=(16, 0)), "hidden"),
    (dict(init_std=0.0), "init_std"),
    (dict(probe_unit=12), "probe_unit"),
    (dict(momentum=1.5), "momentum"),
    (dict(activation="gelu"), "activation"),
])
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=f"compare: .*{message}"):
        small_config(**changes)


def test_unknown_preset_and_bad_data_are_refused(data):
    with pytest.raises(ValueError, match="preset"):
        StudyConfig.from_preset("resnet")
    x_train, y_train, x_test, y_test = data
    with pytest.raises(TypeError, match="x_train as float32"):
        run_study(small_config(), (x_train.astype(np.float64), y_train, x_test, y_test), progress=False)
    with pytest.raises(TypeError, match="y_test as integer labels"):
        run_study(small_config(), (x_train, y_train, x_test, y_test.astype(np.float32)), progress=False)
    with pytest.raises(ValueError, match="batch_size 20 is larger than the 10"):
        run_study(small_config(), (x_train[:10], y_train[:10], x_test, y_test), progress=False)


# ------------------------------------------------------------------ the command


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_command_writes_data_report_and_plots(tmp_path, fake_mnist, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "study"
    assert main([*CLI_ARGS, "--out", str(out)]) == 0
    rows = read_csv(out / "curves.csv")
    assert tuple(rows[0]) == COLUMNS
    runs = {(r["phase"], r["run"], r["lr"]) for r in rows}
    assert runs == {("main", "plain", "0.5"), ("main", "batchnorm", "0.5"), ("sweep", "plain", "2"),
                    ("sweep", "batchnorm", "2"), ("sweep", "plain", "8"), ("sweep", "batchnorm", "8")}
    main_plain = [r for r in rows if r["phase"] == "main" and r["run"] == "plain"]
    assert [int(r["step"]) for r in main_plain] == [0, 20, 40, 60]
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)

    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["steps"] == 60 and results["settings"]["sweep_lrs"] == [2.0, 8.0]
    assert results["data"]["dataset"] == "mnist" and results["data"]["train_examples"] == 600
    assert len(results["runs"]) == 6 and set(results["runs"][0]["steps_to"]) == {"0.95", "0.97"}
    assert results["runs"][1]["test_accuracy"] == [float(r["test_accuracy"]) for r in rows
                                                   if r["phase"] == "main" and r["run"] == "batchnorm"]

    report = (out / "report.md").read_text()
    for needle in ("steps to 95 %", "steps to 97 %", "final test accuracy", "wall time",
                   "Learning-rate sweep", "--preset paper", "figure1.png", "lr_sweep.png", "SGD, lr 0.5"):
        assert needle in report
    for name in ("figure1.png", "lr_sweep.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def test_compare_without_matplotlib_still_writes_the_data(tmp_path, fake_mnist, monkeypatch, capsys):
    # a None entry in sys.modules makes "import matplotlib..." raise ImportError, as if it were not installed
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "study"
    assert main([*CLI_ARGS, "--sweep-lr", "none", "--limit-train", "300", "--limit-test", "50", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "matplotlib is not installed" in said and "tinynet[plot]" in said
    assert sorted(p.name for p in out.iterdir()) == ["curves.csv", "report.md", "results.json"]
    assert "matplotlib is not installed" in (out / "report.md").read_text()
    assert {r["phase"] for r in read_csv(out / "curves.csv")} == {"main"}
    data = json.loads((out / "results.json").read_text())["data"]
    assert (data["train_examples"], data["test_examples"]) == (300, 50)


def test_compare_command_refuses_bad_options(tmp_path, fake_mnist, capsys):
    assert main(["compare", "--steps", "0", "--out", str(tmp_path), "--quiet"]) == 2
    assert "expected steps to be a positive integer" in capsys.readouterr().err
    assert main(["compare", "--limit-train", "0", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--limit-train" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--sweep-lr", "0.1,fast"])
    assert "--sweep-lr: expected comma-separated numbers" in capsys.readouterr().err
