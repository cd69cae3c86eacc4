"""Checkpoints: tinynet.save/load round trips, crash safety (SIGKILL mid-save), damaged files,
fit(checkpoint=..., resume=True) ending bit-identical to an uninterrupted run, and fit
stopping at the first non-finite step without harming the checkpoint."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import tinynet as tn

ROOT = Path(__file__).resolve().parent.parent


def blobs(rng, n=240, features=6, classes=3):
    centres = rng.standard_normal((classes, features)) * 2
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.standard_normal((n, features))).astype(np.float32)
    return x, y


def build(seed=0, optimizer="sgd"):
    """Everything a training script builds, from one seed: data, model (BN + Dropout), optimizer, rng.

    The rng is shared by the weights, Dropout and fit's shuffling, as in the README.
    """
    rng = np.random.default_rng(seed)
    x, y = blobs(rng)
    model = tn.Sequential(
        tn.Linear(6, 16, bias=False, rng=rng), tn.BatchNorm(16), tn.ReLU(), tn.Dropout(0.2, rng=rng),
        tn.Linear(16, 3, rng=rng),
    )
    if optimizer == "sgd":
        opt = tn.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    else:
        opt = tn.Adam(model.parameters(), lr=0.01)
    return rng, x, y, model, opt


def same_history(a, b):
    """Equal bit for bit, except the wall-clock seconds."""
    a, b = asdict(a), asdict(b)
    a.pop("seconds"), b.pop("seconds")
    return a == b


def same_arrays(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def same_optimizer(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.get("t") == sb.get("t") and all(same_arrays(p, q) for p, q in zip(sa["state"], sb["state"]))


# -- save and load ---------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_round_trip_restores_model_optimizer_history_and_generators(tmp_path, optimizer):
    rng, x, y, model, opt = build(0, optimizer)
    history = tn.fit(model, tn.SoftmaxCrossEntropy(), opt, x, y, 2, 32, rng=rng, progress=False)
    tn.save(tmp_path / "run.npz", model, opt, history, rng=rng, epoch=2)

    rng2, _, _, model2, opt2 = build(5, optimizer)  # other weights, other generator states
    info = tn.load(tmp_path / "run.npz", model2, opt2, rng=rng2)
    assert same_arrays(model.state_dict(), model2.state_dict())
    assert same_optimizer(opt, opt2)
    assert info.history == history and info.epoch == 2 and info.format == 1
    assert info.summary == model.summary()
    assert rng2.random() == rng.random()
    assert model2[3].rng.random() == model[3].rng.random()  # Dropout's generator


def model_after_one_step():
    """A small MLP and its SGD after one step: the momentum buffers hold something to save."""
    model = tn.mlp([4, 8, 3], rng=np.random.default_rng(0))
    opt = tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad[...] = 1
    opt.step()
    return model, opt


def test_load_puts_arrays_in_the_models_dtype_and_leaves_hyperparameters(tmp_path):
    model, opt = model_after_one_step()
    tn.save(tmp_path / "run.npz", model, opt)
    model64 = tn.mlp([4, 8, 3], dtype=np.float64)
    opt64 = tn.SGD(model64.parameters(), lr=0.01, momentum=0.9)
    assert tn.load(tmp_path / "run.npz", model64, opt64).history is None
    assert all(p.data.dtype == np.float64 for p in model64.parameters())
    assert all(s["momentum_buffer"].dtype == np.float64 for s in opt64.state)
    assert opt64.lr == 0.01  # a resumed run may change the learning rate
    np.testing.assert_array_equal(model64[0].weight.data, model[0].weight.data.astype(np.float64))


def test_load_without_optimizer_reads_weights_only(tmp_path):
    rng, x, y, model, opt = build()
    tn.save(tmp_path / "run.npz", model, opt)
    _, _, _, model2, _ = build(3)
    info = tn.load(tmp_path / "run.npz", model2)
    assert same_arrays(model.state_dict(), model2.state_dict())
    assert info.epoch is None and info.history is None


def test_different_architecture_names_keys_and_shows_both_summaries(tmp_path):
    model = tn.mlp([4, 8, 3])
    tn.save(tmp_path / "run.npz", model)
    other = tn.mlp([4, 8, 8, 3])
    before = other.state_dict()
    with pytest.raises(ValueError) as err:
        tn.load(tmp_path / "run.npz", other)
    message = str(err.value)
    assert "missing keys ['4.beta', '4.gamma', '4.running_mean', '4.running_var', '6.bias', '6.weight']" in message
    assert "wrong shapes: 3.weight: model has (8, 8), checkpoint has (8, 3)" in message
    assert message.count("total parameters") == 2  # both summaries
    assert same_arrays(before, other.state_dict())


def test_a_dropout_generator_in_one_model_only_is_a_mismatch(tmp_path):
    tn.save(tmp_path / "run.npz", tn.Sequential(tn.Linear(4, 3), tn.ReLU()))
    with pytest.raises(ValueError, match=r"missing keys \['1.rng'\]"):
        tn.load(tmp_path / "run.npz", tn.Sequential(tn.Linear(4, 3), tn.Dropout(0.5)))


def test_optimizer_state_mismatch_changes_nothing(tmp_path):
    model = tn.mlp([4, 8, 3], rng=np.random.default_rng(0))
    opt = tn.Adam(model.parameters())
    for p in model.parameters():
        p.grad[...] = 1
    opt.step()
    tn.save(tmp_path / "run.npz", model, opt)
    fresh = tn.mlp([4, 8, 3], rng=np.random.default_rng(1))
    fewer = tn.Adam(fresh.parameters()[:2])
    before = fresh.state_dict()
    with pytest.raises(ValueError, match="the state is for 5 parameters, this optimizer has 2"):
        tn.load(tmp_path / "run.npz", fresh, fewer)
    assert same_arrays(before, fresh.state_dict()) and fewer.t == 0 and fewer.state == [{}, {}]


def test_save_leaves_no_temporary_file_and_keeps_the_umask(tmp_path):
    tn.save(tmp_path / "run.npz", tn.mlp([4, 3]))
    tn.save(tmp_path / "run.npz", tn.mlp([4, 3]))
    assert os.listdir(tmp_path) == ["run.npz"]
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "run.npz").st_mode & 0o777 == 0o666 & ~mask


def test_a_failing_write_keeps_the_old_checkpoint_and_cleans_up(tmp_path, monkeypatch):
    model = tn.mlp([4, 3], rng=np.random.default_rng(0))
    tn.save(tmp_path / "run.npz", model)
    old = (tmp_path / "run.npz").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tn.save(tmp_path / "run.npz", tn.mlp([4, 3], rng=np.random.default_rng(1)))
    assert os.listdir(tmp_path) == ["run.npz"]
    assert (tmp_path / "run.npz").read_bytes() == old


def test_every_damaged_byte_is_refused_or_harmless(tmp_path):
    """Flip bytes all over a checkpoint: load must raise ValueError or give exactly the saved state."""
    model, opt = model_after_one_step()
    tn.save(tmp_path / "good.npz", model, opt, tn.History(step_loss=[1.0, 0.5], train_loss=[0.75]))
    data = (tmp_path / "good.npz").read_bytes()
    refused = 0
    for i in range(0, len(data), 7):
        damaged = bytearray(data)
        damaged[i] ^= 0x5A
        (tmp_path / "bad.npz").write_bytes(damaged)
        model2 = tn.mlp([4, 8, 3], rng=np.random.default_rng(1))
        opt2 = tn.SGD(model2.parameters(), lr=0.1, momentum=0.9)
        try:
            info = tn.load(tmp_path / "bad.npz", model2, opt2)
        except ValueError:
            refused += 1
            continue
        # a flip in zip metadata that does not matter (a timestamp): everything must be exact
        assert same_arrays(model.state_dict(), model2.state_dict()), i
        assert same_optimizer(opt, opt2), i
        assert info.history.step_loss == [1.0, 0.5], i
    assert refused > 0.7 * len(range(0, len(data), 7))


def test_cut_short_files_are_refused(tmp_path):
    tn.save(tmp_path / "good.npz", tn.mlp([4, 8, 3]))
    data = (tmp_path / "good.npz").read_bytes()
    for size in (0, 1, 30, len(data) // 2, len(data) - 1):
        (tmp_path / "short.npz").write_bytes(data[:size])
        with pytest.raises(ValueError, match="short.npz is not a readable tinynet checkpoint"):
            tn.load(tmp_path / "short.npz", tn.mlp([4, 8, 3]))


# -- SIGKILL while saving -----------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import tinynet as tn

    path, mode = sys.argv[1], sys.argv[2]

    def model(value, width):
        m = tn.mlp([width, width, 3])
        for p in m.parameters():
            p.data[...] = value
        return m

    tn.save(path, model(1.0, 8))  # the old checkpoint
    print("old saved", flush=True)
    if mode == "loop":  # save big checkpoints over and over until killed
        i = 0
        while True:
            i += 1
            tn.save(path, model(float(i), 700))
    real_savez = np.savez

    def stall(f, **arrays):  # write part of the new file, then hang: the kill lands mid-write
        import io
        buffer = io.BytesIO()
        real_savez(buffer, **arrays)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        print("mid-write", flush=True)
        time.sleep(60)

    def stall_before_rename(fd):
        print("mid-write", flush=True)
        time.sleep(60)

    if mode == "data":
        np.savez = stall
    else:
        import os
        os.fsync = stall_before_rename
    tn.save(path, model(2.0, 8))
    """
)


def start_writer(tmp_path, mode):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "run.npz"), mode],
        stdout=subprocess.PIPE, text=True, env=env,
    )


def values_of(path, width):
    model = tn.mlp([width, width, 3])
    tn.load(path, model)
    return {float(v) for p in model.parameters() for v in np.unique(p.data)}


@pytest.mark.parametrize("mode", ["data", "before-rename"])
def test_sigkill_mid_save_leaves_the_old_checkpoint(tmp_path, mode):
    writer = start_writer(tmp_path, mode)
    try:
        assert writer.stdout.readline().strip() == "old saved"
        assert writer.stdout.readline().strip() == "mid-write"
        temporary = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        assert len(temporary) == 1 and (tmp_path / temporary[0]).stat().st_size > 0  # the new file, half done
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        writer.kill()
        writer.stdout.close()
    assert values_of(tmp_path / "run.npz", 8) == {1.0}  # the old checkpoint, whole


def test_sigkill_at_random_moments_of_repeated_saves(tmp_path):
    """A writer saves ~2 MB checkpoints in a loop; killed at any moment, the file loads whole."""
    delays = np.random.default_rng(0).uniform(0.05, 0.4, size=4)
    seen = set()
    for delay in delays:
        writer = start_writer(tmp_path, "loop")
        try:
            assert writer.stdout.readline().strip() == "old saved"
            time.sleep(delay)
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=30)
        finally:
            writer.kill()
            writer.stdout.close()
        try:
            values = values_of(tmp_path / "run.npz", 700)
        except ValueError:  # killed before the first big save: the old, small checkpoint is there
            values = values_of(tmp_path / "run.npz", 8)
        assert len(values) == 1  # one whole save, never a mix of two
        seen |= values
        for name in os.listdir(tmp_path):  # leftovers of the killed write, as documented
            if name.endswith(".tmp"):
                os.unlink(tmp_path / name)
    assert len(seen) > 1


# -- fit(checkpoint=..., resume=True) -------------------------------------------------------


class Interrupt(Exception):
    pass


class CrashingLoss(tn.SoftmaxCrossEntropy):
    """Raises on call number ``at``: a crash in the middle of an epoch."""

    def __init__(self, at):
        self.calls, self.at = 0, at

    def forward(self, logits, labels):
        self.calls += 1
        if self.calls == self.at:
            raise Interrupt
        return super().forward(logits, labels)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.plain_path("its crashing loss is a subclass, which --fast leaves plain, against an accelerated run")
def test_resume_after_a_crash_is_bit_identical_to_an_uninterrupted_run(tmp_path, optimizer):
    epochs, steps_per_epoch = 5, 8  # 240 examples, batch 30
    schedule = tn.optim.cosine_schedule(0.05, epochs) if optimizer == "sgd" else None
    val = blobs(np.random.default_rng(9), n=50)

    rng, x, y, model, opt = build(0, optimizer)
    straight = tn.fit(model, tn.SoftmaxCrossEntropy(), opt, x, y, epochs, 30, validation=val, rng=rng,
                      progress=False, lr_schedule=schedule)

    path = tmp_path / "run.npz"
    rng, x, y, crashed, crashed_opt = build(0, optimizer)
    with pytest.raises(Interrupt):  # dies in the middle of epoch 3
        tn.fit(crashed, CrashingLoss(at=2 * steps_per_epoch + 4), crashed_opt, x, y, epochs, 30, validation=val, rng=rng,
               progress=False, lr_schedule=schedule, checkpoint=path)
    assert tn.load(path, build(1, optimizer)[3]).epoch == 2

    rng, x, y, resumed, opt2 = build(0, optimizer)  # the script is started again
    history = tn.fit(resumed, tn.SoftmaxCrossEntropy(), opt2, x, y, epochs, 30, validation=val, rng=rng,
                     progress=False, lr_schedule=schedule, checkpoint=path, resume=True)
    assert same_history(history, straight)
    assert len(history.train_loss) == epochs and len(history.step_loss) == epochs * steps_per_epoch
    assert same_arrays(resumed.state_dict(), model.state_dict())
    assert same_optimizer(opt2, opt)
    assert tn.load(path, build(1, optimizer)[3]).epoch == epochs


def test_resume_without_a_file_starts_fresh_and_a_finished_run_does_nothing(tmp_path):
    path = tmp_path / "run.npz"
    rng, x, y, model, opt = build()
    first = tn.fit(model, tn.SoftmaxCrossEntropy(), opt, x, y, 2, 30, rng=rng, progress=False, checkpoint=path, resume=True)
    rng, x, y, model2, opt2 = build()
    straight = tn.fit(model2, tn.SoftmaxCrossEntropy(), opt2, x, y, 2, 30, rng=rng, progress=False)
    assert same_history(first, straight)

    rng, x, y, model3, opt3 = build(4)
    again = tn.fit(model3, CrashingLoss(at=1), opt3, x, y, 2, 30, rng=rng, progress=False, checkpoint=path, resume=True)
    assert again == first  # loaded, nothing left to train: the crashing loss was never called
    assert same_arrays(model3.state_dict(), model.state_dict())


@pytest.mark.plain_path("compares with a child process that trains on the plain code")
def test_resume_after_sigkill_during_fit(tmp_path):
    """A training process killed by SIGKILL after epoch 2 resumes to the uninterrupted result."""
    path = tmp_path / "run.npz"
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_checkpoint import build
        import tinynet as tn
        rng, x, y, model, opt = build(0)
        tn.fit(model, tn.SoftmaxCrossEntropy(), opt, x, y, 10000, 30, rng=rng, progress=False,
               checkpoint={str(path)!r})
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    trainer = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 60
        epoch = None
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                epoch = tn.load(path, build(1)[3]).epoch
            except (FileNotFoundError, ValueError):
                continue
            if epoch >= 2:
                break
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(timeout=30)
    finally:
        trainer.kill()
    reached = tn.load(path, build(1)[3]).epoch
    assert reached >= 2, epoch
    total = reached + 2
    rng, x, y, model, opt = build(0)
    history = tn.fit(model, tn.SoftmaxCrossEntropy(), opt, x, y, total, 30, rng=rng, progress=False,
                     checkpoint=path, resume=True)
    rng, x, y, model2, opt2 = build(0)
    straight = tn.fit(model2, tn.SoftmaxCrossEntropy(), opt2, x, y, total, 30, rng=rng, progress=False)
    assert same_history(history, straight)
    assert same_arrays(model.state_dict(), model2.state_dict())


def test_resume_refuses_a_checkpoint_that_fit_did_not_write(tmp_path):
    rng, x, y, model, opt = build()
    tn.save(tmp_path / "weights.npz", model, opt)
    with pytest.raises(ValueError, match="holds no generator state"):
        tn.fit(model, tn.SoftmaxCrossEntropy(), opt, x, y, 2, 30, rng=rng, progress=False,
               checkpoint=tmp_path / "weights.npz", resume=True)


# -- fit stops at the first non-finite loss or gradient ------------------------------------


def overflowing_run(tmp_path, checkpoint=True):
    rng = np.random.default_rng(0)
    x, y = blobs(rng)
    model = tn.mlp([6, 16, 16, 3], rng=rng)
    opt = tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = tn.SoftmaxCrossEntropy()
    path = tmp_path / "run.npz" if checkpoint else None
    tn.fit(model, loss, opt, x, y, 2, 30, rng=rng, progress=False, checkpoint=path)
    return rng, x, y, model, opt, loss, path


def test_nonfinite_stop_names_step_and_layer_and_keeps_the_state(tmp_path):
    rng, x, y, model, opt, loss, path = overflowing_run(tmp_path)
    saved = path.read_bytes()
    # make step 4 of epoch 3 overflow in the second Linear: its weight is huge from then on
    calls = {"n": 0}
    forward = model[3].forward

    def poisoned(h):
        calls["n"] += 1
        if calls["n"] == 4:
            model[3].weight.data *= np.float32(1e38)
        return forward(h)

    model[3].forward = poisoned
    before = {}

    class Snapshot(tn.SoftmaxCrossEntropy):
        def forward(self, logits, labels):
            before.update(model.state_dict())  # parameters and statistics before this step's update
            return super().forward(logits, labels)

    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(tn.NonFiniteError) as err:
        tn.fit(model, Snapshot(), opt, x, y, 5, 30, rng=rng, progress=False, checkpoint=path, resume=True)
    e = err.value
    assert (e.step, e.epoch) == (2 * 8 + 4, 3)
    assert e.where == "the output of Linear (layer 3)"  # its weight is finite, its product overflows
    assert str(e).startswith("fit: step 20 (epoch 3) gave a non-finite loss")
    assert f"{path} holds the run after epoch 2" in str(e)
    assert len(e.history.train_loss) == 2 and len(e.history.step_loss) == 2 * 8 + 4
    assert np.isfinite(e.history.step_loss[:-1]).all() and not np.isfinite(e.history.step_loss[-1])
    after = model.state_dict()
    # no update from the failed step; BatchNorm's statistics are those its forward left,
    # the layer-by-layer repeat did not move them again
    assert all(np.array_equal(before[k], after[k]) for k in before if "running" not in k)
    assert path.read_bytes() == saved  # the checkpoint of epoch 2 is untouched


def test_nonfinite_gradient_with_a_finite_loss_names_the_gradient(tmp_path):
    rng, x, y, model, opt, loss, _ = overflowing_run(tmp_path, checkpoint=False)
    backward = model[4].backward

    def overflowing_backward(dy):
        dx = backward(dy)
        model[4].gamma.grad[0] = np.inf
        return dx

    model[4].backward = overflowing_backward
    with pytest.raises(tn.NonFiniteError) as err:
        tn.fit(model, loss, opt, x, y, 1, 30, rng=rng, progress=False)
    assert err.value.step == 1
    assert err.value.where == "the gradient of gamma in BatchNorm (layer 4)"
    assert "gave a non-finite gradient (the loss was" in str(err.value)


def test_nonfinite_inside_a_nested_graph_names_both(tmp_path):
    rng = np.random.default_rng(0)
    x, y = blobs(rng)
    inner = tn.Sequential(tn.Linear(16, 16, rng=rng), tn.Tanh())
    model = tn.Sequential(tn.Linear(6, 16, rng=rng), tn.ReLU(), inner, tn.Linear(16, 3, rng=rng))
    inner[0].weight.data[2, 5] = np.nan
    with pytest.raises(tn.NonFiniteError) as err:
        tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 30, rng=rng, progress=False)
    assert err.value.where.startswith("the output of Linear (layer 0) in Sequential (layer 2) (whose weight")


def test_detect_nonfinite_false_trains_on(tmp_path):
    rng, x, y, model, opt, loss, _ = overflowing_run(tmp_path, checkpoint=False)
    model[0].weight.data[0, 0] = np.inf
    with np.errstate(over="ignore", invalid="ignore"):
        history = tn.fit(model, loss, opt, x, y, 1, 30, rng=rng, progress=False, detect_nonfinite=False)
    assert np.isnan(history.train_loss[0])
