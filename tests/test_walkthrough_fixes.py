"""The smaller things a new user met on a walk through the README (issue 17): each fixed, each checked."""

import warnings

import numpy as np
import pytest

import tinynet as tn
from tinynet.graph import EvalModeWarning


def blobs(rng, n=200, features=8, classes=3):
    centres = rng.standard_normal((classes, features)) * 2
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, features))).astype(np.float32), y


def fitted(n=200, batch_size=40, seed=0, **kwargs):
    r = np.random.default_rng(seed)
    x, y = blobs(r, n)
    model = tn.mlp([8, 16, 3], rng=r)
    tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 2, batch_size, rng=r,
           progress=False, **kwargs)
    return model, x, y


# -- summary(input_shape=...) ---------------------------------------------------------------------------
def test_summary_shows_shapes_before_any_forward_with_input_shape_and_changes_nothing():
    model = tn.mlp([784, 32, 10], rng=np.random.default_rng(0))
    before = model.summary()
    assert "?" in before and "summary(input_shape=...)" in before  # says why, and what to do
    state = model.state_dict()
    text = model.summary(input_shape=(784,))
    assert "(N, 32)" in text and "(N, 10)" in text and "?" not in text and "input_shape" not in text
    assert model.training and all(m.training for m in model.modules())
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in state.items())  # running statistics untouched
    assert int(model[1].num_batches_tracked) == 0


def test_summary_input_shape_keeps_a_pending_backward_and_takes_several_inputs():
    r = np.random.default_rng(1)
    model = tn.Sequential(tn.Linear(4, 3, rng=r), tn.BatchNorm(3))
    x = r.standard_normal((5, 4)).astype(np.float32)
    y = model.forward(x)
    model.summary(input_shape=(4,))
    model.backward(np.ones_like(y))  # the forward's saved values survived the summary's forward
    g = tn.Graph()
    a, b = g.input(), g.input()
    g.output(g.add(tn.Add(), g.add(tn.Linear(4, 6, rng=r), a), g.add(tn.Linear(2, 6, rng=r), b)))
    assert g.summary(input_shape=[(4,), (2,)]).count("(N, 6)") == 3
    conv = tn.Sequential(tn.Conv2d(1, 2, 3, rng=r), tn.Flatten())
    assert "(N, 2, 3, 3)" in conv.summary(input_shape=(1, 5, 5)) and "(N, 18)" in conv.summary()


@pytest.mark.parametrize("bad", [784, (784, "x"), [(4,), (2,)], (0,)])
def test_summary_refuses_a_bad_input_shape(bad):
    model = tn.mlp([784, 10])
    with pytest.raises(ValueError, match=r"Sequential\.summary: expected input_shape as the shape of one example"):
        model.summary(input_shape=bad)


# -- progress when piped ----------------------------------------------------------------------------------
def test_progress_keeps_the_table_on_its_own_lines_when_stderr_is_not_a_terminal(capsys):
    r = np.random.default_rng(2)
    x, y = blobs(r)
    model = tn.mlp([8, 16, 3], rng=r)
    tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 3, 40, rng=r, progress=True,
           validation=(x[:50], y[:50]))
    out, err = capsys.readouterr()  # pytest's captured streams are not terminals, like a pipe
    assert "\r" not in out + err and "batch/s" not in err
    lines = out.splitlines()
    assert lines[0].split() == ["epoch", "train", "loss", "val", "loss", "val", "acc", "seconds"]
    assert set(lines[1]) == {"-"}
    assert [line.split()[0] for line in lines[2:]] == ["1", "2", "3"]


# -- a dropped last batch of one ----------------------------------------------------------------------------
def test_a_dropped_batch_of_one_is_said_once():
    with pytest.warns(UserWarning, match="201 examples in batches of 40 leave a last batch of one") as caught:
        fitted(n=201)
    assert len([w for w in caught if "last batch of one" in str(w.message)]) == 1  # once, not once per epoch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted(n=200)  # no batch of one
        r = np.random.default_rng(0)
        x, y = blobs(r, 201)
        plain = tn.Sequential(tn.Linear(8, 3, rng=r))  # no BatchNorm: the batch of one is trained on
        history = tn.fit(plain, tn.SoftmaxCrossEntropy(), tn.SGD(plain.parameters(), lr=0.1), x, y, 1, 40, rng=r,
                         progress=False)
        assert len(history.step_loss) == 6


# -- forgetting eval() ------------------------------------------------------------------------------------
def test_forgetting_eval_after_fit_is_warned_at_the_first_forward_and_says_the_statistics_changed():
    model, x, _ = fitted()
    running = model[1].running_mean.copy()
    with pytest.warns(EvalModeWarning, match=r"forward ran in training mode after fit.*this forward changed the "
                                             r"running statistics .* model\.eval\(\) first") as caught:
        model(x[:50])  # the first forward on test data
    assert len(caught) == 1
    assert not np.array_equal(running, model[1].running_mean)  # what the warning says happened


def test_no_warning_for_evaluate_eval_or_an_explicit_train_after_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, x, y = fitted()
        tn.evaluate(model, tn.SoftmaxCrossEntropy(), x, y)
        model.eval()
        model(x[:50])
        model, x, y = fitted(seed=1)
        model.train()  # "I am training on": a hand-written loop after fit
        loss = tn.SoftmaxCrossEntropy()
        for start in (0, 40):
            loss(model(x[start:start + 40]), y[start:start + 40])
            model.backward(loss.backward())


def test_the_second_forward_rule_still_holds_without_fit_and_says_the_statistics_changed():
    r = np.random.default_rng(3)
    model = tn.mlp([8, 16, 3], rng=r)
    x, _ = blobs(r)
    model(x[:10])
    with pytest.warns(EvalModeWarning, match="ran again in training mode .* that forward changed the running statistics"):
        model(x[10:20])


def test_no_running_statistics_no_claim_about_them():
    r = np.random.default_rng(4)
    model = tn.Sequential(tn.Linear(8, 8, rng=r), tn.Dropout(0.5, rng=r), tn.Linear(8, 3, rng=r))
    x, y = blobs(r)
    tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 40, rng=r, progress=False)
    with pytest.warns(EvalModeWarning) as caught:
        model(x[:10])
    assert "Dropout" in str(caught[0].message) and "running statistics" not in str(caught[0].message)


# -- install hints ----------------------------------------------------------------------------------------
def test_the_cupy_install_hint_fits_an_installed_package_and_a_clone():
    from tinynet.gpu import INSTALL_HINT

    assert "pip install 'tinynet[cuda12]'" in INSTALL_HINT  # from PyPI
    assert "pip install -e '.[cuda12]'" in INSTALL_HINT  # from a clone
