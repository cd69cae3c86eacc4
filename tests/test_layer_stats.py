"""Looking inside a run: fit(..., inspect_every=k) records per-layer statistics into History,
changes nothing about the training, and tinynet.plots draws them (and the curves)."""

import inspect
import json
import sys

import numpy as np
import pytest

import tinynet as tn
from tinynet.layer_stats import recording_step


def blobs(rng, n=200, features=8, classes=3):
    centres = rng.standard_normal((classes, features)) * 2
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, features))).astype(np.float32), y


def model_and_data(seed=0):
    r = np.random.default_rng(seed)
    x, y = blobs(r)
    model = tn.Sequential(tn.Linear(8, 16, rng=r), tn.BatchNorm(16), tn.ReLU(), tn.Linear(16, 8, rng=r),
                          tn.Sigmoid(), tn.Linear(8, 8, rng=r), tn.Tanh(), tn.Linear(8, 3, rng=r))
    return r, model, x, y


def train(inspect_every, momentum=0.9, epochs=2, seed=0):
    r, model, x, y = model_and_data(seed)
    history = tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1, momentum=momentum), x, y,
                     epochs, 40, rng=r, progress=False, inspect_every=inspect_every, validation=(x[:50], y[:50]))
    return model, history


def test_recorded_every_k_steps_per_layer_and_training_unchanged():
    plain_model, plain = train(None)
    model, history = train(3)
    assert history.step_loss == plain.step_loss  # recording reads, never changes the run
    assert all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(), plain_model.state_dict().values()))
    stats = history.layer_stats
    assert stats["step"] == list(range(0, 10, 3))  # 2 epochs of 5 steps: steps 0, 3, 6, 9
    assert list(stats["layers"]) == ["0 Linear", "1 BatchNorm", "2 ReLU", "3 Linear", "4 Sigmoid", "5 Linear",
                                     "6 Tanh", "7 Linear"]
    layers = stats["layers"]
    assert set(layers["0 Linear"]) == {"act_mean", "act_std", "grad_norm", "weight_norm", "update_ratio"}
    assert set(layers["2 ReLU"]) == {"act_mean", "act_std", "zero_frac"}
    assert set(layers["4 Sigmoid"]) == set(layers["6 Tanh"]) == {"act_mean", "act_std", "saturated_frac"}
    assert all(len(v) == 4 for values in layers.values() for v in values.values())
    assert abs(layers["1 BatchNorm"]["act_mean"][0]) < 1e-6 and abs(layers["1 BatchNorm"]["act_std"][0] - 1) < 1e-3
    assert all(0 <= f <= 1 for f in layers["2 ReLU"]["zero_frac"])
    # the recording wrappers (plain functions) are gone; under --fast the speed ring's bound methods stay
    assert not any(inspect.isfunction(vars(m).get("forward")) for m in model.modules())
    assert plain.layer_stats == {}


def test_values_are_what_they_say_at_the_first_step():
    r, model, x, y = model_and_data(1)
    loss, lr = tn.SoftmaxCrossEntropy(), 0.1
    history = tn.History()
    step = recording_step(model, tn.train.training_step(model, loss, tn.SGD(model.parameters(), lr=lr)), history, 1)
    weights = [p.data.copy() for p in model[0].parameters()]
    xb, yb = x[:40], y[:40]
    expected_out = xb @ model[0].weight.data + model[0].bias.data
    step(xb, yb)
    row = {k: v[0] for k, v in history.layer_stats["layers"]["0 Linear"].items()}
    grads = [p.grad for p in model[0].parameters()]
    grad_norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    weight_norm = np.sqrt(sum((w.astype(np.float64) ** 2).sum() for w in weights))
    assert row["act_mean"] == pytest.approx(float(expected_out.mean()), rel=1e-5)
    assert row["act_std"] == pytest.approx(float(expected_out.std()), rel=1e-5)
    assert row["grad_norm"] == pytest.approx(grad_norm, rel=1e-6)
    assert row["weight_norm"] == pytest.approx(weight_norm, rel=1e-6)
    assert row["update_ratio"] == pytest.approx(lr * grad_norm / weight_norm, rel=1e-4)  # plain SGD: dw = -lr * g


def test_history_with_statistics_round_trips_json_and_prints_short(tmp_path):
    _, history = train(2)
    history.to_json(tmp_path / "h.json")
    again = tn.History.from_json(tmp_path / "h.json")
    assert again.layer_stats == json.loads(json.dumps(history.layer_stats))
    text = repr(history)
    assert text.startswith("History: 2 epochs, 10 steps")
    assert "train loss" in text and "val acc" in text and "layer statistics at 5 steps (0 to 8) of 8 layers" in text
    assert len(text.splitlines()) <= 7 and str(history.step_loss[3]) not in text
    assert repr(tn.History()) == "History(empty: no epoch has run)"


def test_a_resumed_run_goes_on_counting_steps(tmp_path):
    r, model, x, y = model_and_data(2)
    args = (tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y)
    tn.fit(model, *args, 1, 40, rng=r, progress=False, checkpoint=tmp_path / "c.npz", inspect_every=2)
    history = tn.fit(model, *args, 2, 40, rng=r, progress=False, checkpoint=tmp_path / "c.npz", resume=True,
                     inspect_every=2)
    assert history.layer_stats["step"] == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("value, error", [(0, ValueError), (2.5, ValueError), (True, ValueError)])
def test_inspect_every_refuses_bad_values(value, error):
    with pytest.raises(error, match="fit: expected inspect_every to be a positive integer"):
        train(value)


def test_inspect_every_refuses_a_cuda_graph():
    _, model, _, _ = model_and_data()
    with pytest.raises(ValueError, match="inspect_every .* without cuda_graph=True"):
        recording_step(model, lambda xb, yb: 0.0, tn.History(), 10, cuda_graph=True)


# -- plots ----------------------------------------------------------------------------------------------
def test_plots_say_how_to_install_matplotlib(monkeypatch, tmp_path, capsys):
    from tinynet import cli, plots

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    _, history = train(2)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'tinynet\[plot\]' \(from a clone: pip install -e"):
        plots.training_curves(history)
    # the command says it before loading any data or training
    assert cli.main(["train", "--plot", str(tmp_path), "--data-dir", str(tmp_path / "none")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_save_run_plots_writes_the_curves_and_the_statistics(tmp_path):
    pytest.importorskip("matplotlib")
    from tinynet.plots import layer_statistics, save_run_plots, training_curves

    _, history = train(2)
    paths = save_run_plots(history, tmp_path / "run")
    assert [p.rsplit("/", 1)[-1] for p in map(str, paths)] == ["curves.png", "layers.png"]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    fig = layer_statistics(history)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == 6 and "update / weight norm per step" in titles
    assert len(training_curves(history).axes) == 2
    _, no_stats = train(None)
    assert [str(p).rsplit("/", 1)[-1] for p in save_run_plots(no_stats, tmp_path / "plain")] == ["curves.png"]
    with pytest.raises(ValueError, match="inspect_every=50"):
        layer_statistics(no_stats)
    with pytest.raises(ValueError, match="no epoch yet"):
        training_curves(tn.History())
    with pytest.raises(TypeError, match="expected the History that tinynet.fit returns, got dict"):
        training_curves({})
