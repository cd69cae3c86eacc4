"""The speed opt-in (tinynet.speed) plugs in from outside, at one place, and only when asked.

- accelerate binds fused implementations to instances of exactly the registered classes; a
  subclass (a lab's student layer) keeps its own forward and backward; restore undoes it;
- a fused object falls back to the plain code for arrays and settings its kernel does not
  take, with the plain numbers;
- fit(fast=True) follows the plain fit;
- without the opt-in nothing of it runs: no module of the speed ring or of the applications
  is loaded, no shared object is built or loaded, and a traced training step runs only the
  core's files.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinynet as tn
from tinynet import speed
from tinynet.speed import cpu
from tinynet.train import training_step

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tinynet"
needs_kernels = pytest.mark.skipif(cpu.library() is None, reason=f"no C kernels: {speed.cpu_status()}")


def plain(*objects):
    """The objects running their classes' own code (under ``--fast`` they were accelerated when made)."""
    for obj in objects:
        speed.restore(obj) if isinstance(obj, tn.Layer) else speed.restore(loss=obj, optimizer=obj)
    return objects[0] if len(objects) == 1 else objects


def bound(obj):
    """The fused implementation bound to ``obj``, or None."""
    return vars(obj).get("_speed")


def blobs(rng, n=120, dim=10, classes=3):
    centres = rng.standard_normal((classes, dim)) * 3
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, dim))).astype(np.float32), y


# -- binding ------------------------------------------------------------------------------------


class LabBatchNorm(tn.BatchNorm):
    """A lab's student layer: the paper's backward, written by hand from the plain saved layout."""

    backward_calls = 0

    def backward(self, dy):
        LabBatchNorm.backward_calls += 1
        batch_stats, xhat, inv_std, xc = self.saved()
        m = dy.shape[0]
        dxhat = dy * self.gamma.data
        self.gamma.grad += (dy * xhat).sum(axis=0)
        self.beta.grad += dy.sum(axis=0)
        dvar = (dxhat * xc).sum(axis=0) * -0.5 * inv_std**3
        dmu = (dxhat * -inv_std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)
        return dxhat * inv_std + dvar * 2 * xc / m + dmu / m


class MyReLU(tn.ReLU):
    def forward(self, x):
        return super().forward(x) * 1.0


@pytest.mark.parametrize("backend", ["numpy", "cupy"])  # binding needs no GPU: the CuPy kernels load when run
def test_accelerate_binds_exact_classes_only_and_restore_undoes_it(rng, backend):
    if backend == "numpy" and cpu.library() is None:
        pytest.skip(f"no C kernels: {speed.cpu_status()}")
    model = plain(tn.Sequential(tn.Linear(10, 8, rng=rng), LabBatchNorm(8), MyReLU(), tn.BatchNorm(8), tn.ReLU(),
                                tn.Linear(8, 3, rng=rng)))
    loss, opt = plain(tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1))
    report = speed.accelerate(model, loss, opt, backend=backend)
    layers = list(model)
    expected = [layers[3], layers[4]] + ([layers[0], layers[5]] if backend == "cupy" else [])
    assert {id(o) for _, o, _ in report} == {id(o) for o in expected + [loss, opt]}
    for name, obj, implementation in report:
        assert speed.FUSED[type(obj), backend] is implementation
        assert isinstance(bound(obj), implementation)
        for method in implementation.methods:
            assert getattr(obj, method).__self__ is bound(obj)  # this instance's method is the fused one
    assert ("3", layers[3]) in [(name, obj) for name, obj, _ in report]  # named as model.children() names them
    for sub in (layers[1], layers[2]):  # the subclasses run their own code
        assert bound(sub) is None and "forward" not in vars(sub) and "backward" not in vars(sub)
    assert type(layers[1]).backward is LabBatchNorm.backward
    text = str(report)
    assert len(text.splitlines()) == len(report)
    assert f"BatchNorm            -> {'Cpu' if backend == 'numpy' else 'Cupy'}BatchNorm" in text
    assert "LabBatchNorm" not in text and "MyReLU" not in text
    speed.restore(model, loss, opt)
    for obj in [*layers, loss, opt]:
        assert bound(obj) is None and not {"forward", "backward", "update", "step"} & set(vars(obj))
    assert str(speed.accelerate(tn.Sequential(MyReLU()), backend=backend)).startswith("speed: nothing to accelerate")


@needs_kernels
def test_a_lab_subclass_runs_its_own_backward_in_an_accelerated_model(rng):
    x, y = blobs(rng)

    def run(fast):
        model = plain(tn.Sequential(tn.Linear(10, 8, rng=np.random.default_rng(1)), LabBatchNorm(8), tn.ReLU(),
                                    tn.Linear(8, 3, rng=np.random.default_rng(2))))
        loss, opt = plain(tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1))
        before = LabBatchNorm.backward_calls
        history = tn.fit(model, loss, opt, x, y, 1, 40, rng=np.random.default_rng(3), progress=False, fast=fast)
        assert LabBatchNorm.backward_calls - before == 3  # 120 / 40 steps, each through the student's backward
        return history.step_loss

    np.testing.assert_allclose(run(True), run(False), rtol=1e-5)


def test_accelerate_refuses_an_unknown_backend_and_register_checks_its_key():
    with pytest.raises(ValueError, match="speed.accelerate: expected backend 'numpy' or 'cupy', got 'tpu'"):
        speed.accelerate(tn.ReLU(), backend="tpu")
    with pytest.raises(ValueError, match="speed.register: expected backend 'numpy' or 'cupy', got 'gpu'"):
        speed.register(tn.ReLU, "gpu")


def test_a_registered_implementation_is_used_for_its_exact_class_only(rng, monkeypatch):
    """The one place things plug in: a user's implementation for a class of theirs."""

    class Doubler(tn.Layer):
        def forward(self, x):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

    class Half(Doubler):
        pass

    monkeypatch.setattr(speed.registry, "FUSED", dict(speed.registry.FUSED))
    monkeypatch.setattr(speed, "FUSED", speed.registry.FUSED)

    @speed.register(Doubler, "numpy")
    class FusedDoubler(speed.Fused):
        def forward(self, x):
            return np.multiply(x, 2) + 100  # visibly not the plain code

        def backward(self, dy):
            return self.plain.backward(self.layer, dy)

    import tinynet.speed as module

    assert module.FUSED[Doubler, "numpy"] is FusedDoubler
    model = tn.Sequential(Doubler(), Half())
    report = speed.accelerate(model)
    assert [type(o) for _, o, _ in report] == [Doubler]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(model.forward(x), 2 * (2 * x + 100))
    speed.restore(model)
    np.testing.assert_array_equal(model.forward(x), 4 * x)


# -- a fused object meets what its kernel does not take: the plain code, the plain numbers ------


def twin(make):
    """(accelerated object, plain object), both from ``make()``; the first must really be accelerated."""
    fast, slow = make(), plain(make())
    kind = "model" if isinstance(fast, tn.Layer) else "optimizer" if isinstance(fast, tn.optim.Optimizer) else "loss"
    assert speed.accelerate(**{kind: fast}), f"nothing accelerated {type(fast).__name__}"
    return fast, slow


def assert_plain_layout(layer):
    saved = layer.__dict__.get("_saved")
    assert saved is not None and not isinstance(saved[0], speed.Fused), "the fused kernel ran"


@needs_kernels
@pytest.mark.parametrize("case", ["float16", "eval", "paper", "momentum None", "batch of one in eval", "3-D input"])
def test_fused_batchnorm_falls_back_to_the_plain_code_bit_for_bit(rng, case):
    dtype = np.float16 if case == "float16" else np.float32
    options = {"paper": dict(gradient="paper"), "momentum None": dict(momentum=None)}.get(case, {})
    shape = (1, 6) if case == "batch of one in eval" else (16, 6)

    def make():
        bn = tn.BatchNorm(6, dtype=dtype, **options)
        bn.running_mean[:] = np.linspace(-1, 1, 6)
        if case in ("eval", "batch of one in eval"):
            bn.eval()
        return bn

    fast, slow = twin(make)
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    if case == "3-D input":
        x, dy = x.reshape(2, 8, 6), dy.reshape(2, 8, 6)
        for bn in (fast, slow):
            with pytest.raises(ValueError, match=r"BatchNorm: expected a 2-D input, got shape \(2, 8, 6\)"):
                bn(x)
        return
    y_fast, y_slow = fast(x), slow(x)
    assert_plain_layout(fast)
    dx_fast, dx_slow = fast.backward(dy), slow.backward(dy)
    for a, b in [(y_fast, y_slow), (dx_fast, dx_slow), (fast.gamma.grad, slow.gamma.grad),
                 (fast.running_mean, slow.running_mean), (fast.running_var, slow.running_var)]:
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert fast.num_batches_tracked == slow.num_batches_tracked


@needs_kernels
@pytest.mark.parametrize("case", ["float16", "non-contiguous", "float64 dy"])
def test_fused_relu_and_batchnorm_on_unusual_arrays_give_the_plain_numbers(rng, case):
    """float16: the plain code runs. A strided view: the kernel reads a contiguous copy. A dy of
    another dtype: the result has the plain code's promoted dtype."""
    dtype = np.float16 if case == "float16" else np.float32
    wide = (rng.standard_normal((16, 12)) * 2).astype(dtype)
    x = wide[:, ::2] if case == "non-contiguous" else np.ascontiguousarray(wide[:, :6])
    dy = rng.standard_normal((16, 6)).astype(np.float64 if case == "float64 dy" else dtype)
    for make in (tn.ReLU, lambda: tn.BatchNorm(6, dtype=dtype)):
        fast, slow = twin(make)
        y_fast, y_slow = fast(x), slow(x)
        if case == "float16":
            assert_plain_layout(fast)
        dx_fast, dx_slow = fast.backward(dy), slow.backward(dy)
        assert y_fast.dtype == y_slow.dtype and dx_fast.dtype == dx_slow.dtype
        tol = dict(rtol=0, atol=0) if case == "float16" or make is tn.ReLU else dict(rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(y_fast, y_slow, **tol)
        np.testing.assert_allclose(dx_fast, dx_slow, **tol)


@needs_kernels
@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("case", ["float16", "non-contiguous", "grad of another dtype"])
def test_fused_optimizers_on_unusual_arrays_give_the_plain_numbers(rng, optimizer, case):
    dtype = np.float16 if case == "float16" else np.float32
    start = rng.standard_normal((6, 4)).astype(dtype)
    grads = [rng.standard_normal((6, 4)).astype(np.float64 if case == "grad of another dtype" else dtype)
             for _ in range(3)]

    def make():
        data = np.asfortranarray(start) if case == "non-contiguous" else start.copy()
        p = tn.Parameter(data.T.copy().T if case == "non-contiguous" else data)
        kind = dict(momentum=0.9, weight_decay=1e-3) if optimizer == "SGD" else dict(weight_decay=1e-3)
        return getattr(tn, optimizer)([p], lr=0.1, **kind)

    fast, slow = twin(make)
    for opt in (fast, slow):
        for g in grads:
            opt.zero_grad()
            p = opt.params[0]
            if case == "grad of another dtype":
                p.grad = g.copy()
            else:
                p.grad += g
            opt.step()
    np.testing.assert_array_equal(fast.params[0].data, slow.params[0].data)
    assert fast.params[0].data.dtype == dtype


@needs_kernels
def test_fused_loss_falls_back_for_float16_logits_and_an_array_dloss(rng):
    logits = (rng.standard_normal((8, 5)) * 3).astype(np.float16)
    labels = rng.integers(0, 5, 8)
    fast, slow = twin(tn.SoftmaxCrossEntropy)
    np.testing.assert_array_equal(fast(logits, labels), slow(logits, labels))
    np.testing.assert_array_equal(fast.backward(), slow.backward())
    logits = logits.astype(np.float32)
    fast(logits, labels), slow(logits, labels)
    np.testing.assert_allclose(fast.backward(np.float32(0.5)), slow.backward(np.float32(0.5)), rtol=2e-6, atol=1e-7)
    with pytest.raises(ValueError, match="SoftmaxCrossEntropy: expected labels in \\[0, 5\\), got values from 0 to 7"):
        fast(logits, np.arange(8))


@needs_kernels
@pytest.mark.parametrize("between", ["restore", "accelerate again", "evaluate"])
def test_what_happens_between_a_fused_forward_and_its_backward_changes_no_gradient(rng, between):
    """The fused BatchNorm and ReLU save their own layout: restored (or re-bound) before the
    backward, the plain backward must get the plain layout; evaluate() in between keeps it."""
    x, y = blobs(rng, n=32)
    grads = []
    for fast in (True, False):
        model = plain(tn.Sequential(tn.Linear(10, 8, rng=np.random.default_rng(1)), tn.BatchNorm(8), tn.ReLU(),
                                    tn.Linear(8, 3, rng=np.random.default_rng(2))))
        loss = plain(tn.SoftmaxCrossEntropy())
        if fast:
            assert len(speed.accelerate(model, loss)) == 3
        value = loss(model.forward(x), y)
        if fast and between == "restore":
            speed.restore(model, loss)
        elif fast and between == "accelerate again":
            speed.accelerate(model, loss)
        elif between == "evaluate":
            tn.evaluate(model, loss, x, y)
        model.backward(loss.backward())
        grads.append([float(value)] + [p.grad.copy() for p in model.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# -- fit(fast=True) -------------------------------------------------------------------------------


@needs_kernels
def test_fit_fast_is_bit_identical_where_the_kernels_round_as_the_plain_code(rng):
    """ReLU and SGD's update round exactly as the plain code: a Linear-ReLU MLP with MSELoss
    (no fused loss) trains to the same bits."""
    x = rng.standard_normal((96, 10)).astype(np.float32)
    target = rng.standard_normal((96, 3)).astype(np.float32)
    runs = []
    for fast in (True, False):
        model = plain(tn.Sequential(tn.Linear(10, 16, rng=np.random.default_rng(1)), tn.ReLU(),
                                    tn.Linear(16, 3, rng=np.random.default_rng(2))))
        loss, opt = plain(tn.MSELoss(), tn.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True))
        if fast:
            assert [type(o) for _, o, _ in speed.accelerate(model, loss, opt)] == [tn.ReLU, tn.SGD]
        order = np.random.default_rng(3)
        step = training_step(model, loss, opt)
        losses = [float(step(x[rows], target[rows])) for rows in np.split(order.permutation(96), 6)]
        runs.append((losses, [p.data.copy() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


@needs_kernels
@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_fit_fast_follows_the_plain_fit(rng, optimizer):
    x, y = blobs(rng, n=200)
    val = blobs(np.random.default_rng(9), n=50)
    runs = []
    for fast in (True, False):
        model = plain(tn.mlp([10, 32, 32, 3], rng=np.random.default_rng(1)))
        loss = plain(tn.SoftmaxCrossEntropy())
        opt = plain(tn.SGD(model.parameters(), lr=0.1, momentum=0.9) if optimizer == "SGD"
                    else tn.Adam(model.parameters(), lr=1e-2))
        history = tn.fit(model, loss, opt, x, y, 3, 32, validation=val, rng=np.random.default_rng(2), progress=False,
                         fast=fast)
        assert (bound(loss) is not None) is fast and (bound(opt) is not None) is fast  # they stay accelerated
        runs.append((history, [p.data.copy() for p in model.parameters()]))
    (fast_history, fast_weights), (plain_history, plain_weights) = runs
    np.testing.assert_allclose(fast_history.step_loss, plain_history.step_loss, rtol=1e-4)
    np.testing.assert_allclose(fast_history.val_loss, plain_history.val_loss, rtol=1e-4)
    for a, b in zip(fast_weights, plain_weights):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert fast_history.step_loss != plain_history.step_loss  # the kernels did run (they sum in double)


def test_fit_refuses_cuda_graph_without_fast(rng):
    x, y = blobs(rng, n=16)
    model = tn.mlp([10, 4, 3], rng=rng)
    with pytest.raises(ValueError, match="fit: cuda_graph=True is part of the speed opt-in; pass fast=True as well"):
        tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 8, progress=False,
               cuda_graph=True)
    with pytest.raises(TypeError, match="fit: expected fast to be True or False, got 'yes'"):
        tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 8, fast="yes")


def test_fit_fast_says_what_it_accelerated(rng, capsys):
    x, y = blobs(rng, n=16)
    model = plain(tn.mlp([10, 4, 3], rng=rng))
    loss, opt = plain(tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1))
    tn.fit(model, loss, opt, x, y, 1, 8, progress=True, fast=True)
    expected = 0 if cpu.library() is None else 5  # BatchNorm, ReLU, the loss, SGD, fit's NaN guard
    assert f"fast path (tinynet.speed): {expected} objects accelerated" in capsys.readouterr().out


# -- without the opt-in, none of it runs -------------------------------------------------------------


def run_child(code, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TINYNET_")}
    environment.update(PYTHONPATH=str(ROOT), **env)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=environment,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


DEFAULT_FIT = """
import json, sys
import numpy as np
import tinynet as tn
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 6)).astype(np.float32)
model = tn.Sequential(tn.Linear(6, 8, rng=rng), tn.BatchNorm(8), tn.ReLU(), tn.Linear(8, 3, rng=rng))
loss, opt = tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
history = tn.fit(model, loss, opt, x, np.arange(64) % 3, 2, 16, rng=rng, progress=False, validation=(x, np.arange(64) % 3))
assert np.isfinite(history.train_loss).all()
with open("/proc/self/maps") as f:
    maps = sorted({line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6})
print(json.dumps({"modules": sorted(sys.modules), "maps": maps}))
"""


def test_import_and_a_default_fit_load_no_speed_or_application_module():
    modules = run_child(DEFAULT_FIT)["modules"]
    assert "tinynet.train" in modules and "tinynet.layers.batchnorm" in modules  # the child did train
    rings = ("tinynet.speed", "tinynet.grading", "tinynet.commands", "tinynet.study", "tinynet.cli", "tinynet.labs")
    loaded = [m for m in modules if m in rings or m.startswith(tuple(r + "." for r in rings))]
    assert loaded == []


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps (Linux)")
def test_a_default_fit_builds_and_loads_no_shared_object(tmp_path):
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    child = run_child(DEFAULT_FIT, HOME=str(home), TMPDIR=str(temp), XDG_CACHE_HOME=str(home / ".cache"))
    assert list(home.rglob("*")) == [] and list(temp.rglob("*")) == []  # nothing built or cached
    assert "tinynet.speed.cpu" not in child["modules"]
    libraries = [path for path in child["maps"] if ".so" in Path(path).name]
    assert libraries  # the child's maps were read: Python's and NumPy's own libraries are there
    ours = [path for path in libraries if "tinynet" in path or path.startswith((str(tmp_path), str(PACKAGE)))]
    assert ours == []
    # the reference for "nothing of ours": the same fit opted in does load the C kernels
    if cpu.library() is not None:
        fast = run_child(DEFAULT_FIT.replace("progress=False", "progress=False, fast=True"), HOME=str(home),
                         TMPDIR=str(temp), XDG_CACHE_HOME=str(home / ".cache"))
        assert [path for path in fast["maps"] if str(home) in path and "tinynet" in path]


CORE_FILES = {"layer.py", "losses.py", "optim.py", "graph.py", "train.py", "backend.py", "nonfinite.py"}


@pytest.mark.plain_path("traces the plain training step, which --fast replaces")
def test_a_traced_default_training_step_runs_only_the_core(rng):
    from tinynet.history import History
    from tinynet.nonfinite import NonFiniteGuard

    x, y = blobs(rng, n=32)
    model = tn.Sequential(tn.Linear(10, 16, rng=rng), tn.BatchNorm(16), tn.ReLU(), tn.Linear(16, 3, rng=rng))
    loss, opt = tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    guard = NonFiniteGuard(model, loss, model.parameters(), History(), None)  # as a default fit checks each step
    step = training_step(model, loss, opt, guard)
    files = set()

    def profile(frame, event, arg):
        if event == "call":
            files.add(frame.f_code.co_filename)

    for _ in range(2):  # the second step has momentum buffers: SGD's whole rule
        sys.setprofile(profile)
        try:
            step(x, y)
        finally:
            sys.setprofile(None)
    ours = {Path(f).resolve().relative_to(PACKAGE).as_posix() for f in files
            if Path(f).resolve().is_relative_to(PACKAGE)}
    assert not [f for f in ours if f.startswith("speed/")]
    outside = sorted(f for f in ours if f not in CORE_FILES and not (f.startswith("layers/") and f.count("/") == 1))
    assert outside == []
    # what must have run: every layer's file, the loss, the optimizer, the NaN check
    assert {"layers/linear.py", "layers/batchnorm.py", "layers/activations.py", "losses.py", "optim.py",
            "nonfinite.py", "layer.py", "graph.py"} <= ours


def test_fit_fast_checks_gradients_with_the_kernel_and_still_names_the_bad_layer(rng):
    if cpu.library() is None:
        pytest.skip("no C compiler here: nothing to accelerate")
    from tinynet.nonfinite import NonFiniteGuard

    x, y = blobs(rng, n=64)
    model = tn.mlp([10, 4, 3], rng=rng)
    opt = tn.SGD(model.parameters(), lr=1e30)  # the first update overflows
    calls = []
    real = NonFiniteGuard.check

    def spy(self, *args):  # the plain check runs only when the kernel saw a non-finite value
        calls.append(1)
        return real(self, *args)

    NonFiniteGuard.check = spy
    try:
        with pytest.raises(tn.NonFiniteError, match=r"fit: step 2 \(epoch 1\)") as caught, np.errstate(all="ignore"):
            tn.fit(model, tn.SoftmaxCrossEntropy(), opt, x, y, 1, 32, rng=rng, progress=False, fast=True)
    finally:
        NonFiniteGuard.check = real
    assert calls == [1]  # step 1 passed the kernel alone; step 2 went to the plain check, which raised
    assert "Linear" in caught.value.where or "BatchNorm" in caught.value.where or "loss" in caught.value.where
