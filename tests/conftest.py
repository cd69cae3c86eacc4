"""Shared fixtures: every test that takes ``xp`` runs once per available array backend."""

import os

import numpy as np
import pytest
from hypothesis import settings

# CI runs the property tests on a fixed sequence of examples (HYPOTHESIS_PROFILE=ci in .ci/run),
# so a landing never hangs on a rare draw; locally every run explores new ones
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

from tinynet.backend import cupy_available


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module of the backend under test: numpy, or cupy where a GPU exists."""
    if request.param == "cupy":
        if not cupy_available():
            pytest.skip("cupy backend: CuPy or a GPU is not available here")
        import cupy

        return cupy
    return np


@pytest.fixture
def backend(xp):
    """The backend name matching ``xp``: "numpy" or "cupy"."""
    return "cupy" if xp is not np else "numpy"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# -- the speed opt-in: ``pytest --fast`` (make test ARGS=--fast) -----------------------------------


def pytest_addoption(parser):
    parser.addoption(
        "--fast", action="store_true", default=False,
        help="run the suite on the speed opt-in: every built-in layer, loss and optimizer with a fused "
             "implementation (tinynet.speed.registry.FUSED) is accelerated when it is made, and again "
             "when it moves to another backend",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "plain_path(reason): asserts the default plain path; skipped under --fast")
    if config.getoption("--fast"):
        config._tinynet_unwrap = accelerate_on_construction()


def pytest_unconfigure(config):
    unwrap = getattr(config, "_tinynet_unwrap", None)
    if unwrap is not None:
        unwrap()


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--fast"):
        return
    for item in items:
        marker = item.get_closest_marker("plain_path")
        if marker is not None:
            reason = marker.args[0] if marker.args else "asserts the default plain path"
            item.add_marker(pytest.mark.skip(reason=f"--fast: {reason}"))


def accelerate_on_construction():
    """Wrap ``__init__`` of every class with a registered implementation so that each new instance
    of exactly that class (not a subclass) goes through ``tinynet.speed.accelerate``, and
    ``Layer.to`` / ``Optimizer.to`` so that a moved object gets its new backend's implementation
    (unless a test restored it with ``tinynet.speed.restore``, to have a plain one).
    Returns the function that undoes the wrapping."""
    import functools
    import weakref

    import tinynet.speed as speed
    from tinynet.layer import Layer
    from tinynet.optim import Optimizer
    from tinynet.speed.registry import FUSED

    accelerated = weakref.WeakKeyDictionary()  # object -> True while it should run the fused code

    def accelerate(obj, backend=None):
        kind = "model" if isinstance(obj, Layer) else "optimizer" if isinstance(obj, Optimizer) else "loss"
        accelerated[obj] = True
        speed.accelerate(**{kind: obj}, backend=backend)

    originals = []

    def wrap(owner, name, make):
        original = getattr(owner, name)  # perhaps inherited (ReLU has no __init__ of its own)
        originals.append((owner, name, vars(owner).get(name)))
        setattr(owner, name, functools.wraps(original)(make(original)))

    for cls in sorted({cls for cls, _ in FUSED}, key=lambda c: c.__qualname__):
        def make_init(original, cls=cls):
            def __init__(self, *args, **kwargs):
                original(self, *args, **kwargs)
                if type(self) is cls:  # a subclass keeps its own code, as with accelerate
                    accelerate(self)
            return __init__
        wrap(cls, "__init__", make_init)

    def make_to(original):
        def to(self, backend):
            moved = original(self, backend)
            for obj in self.modules() if isinstance(self, Layer) else [self]:
                if accelerated.get(obj):
                    accelerate(obj, backend)
            return moved
        return to

    def make_restore(original):
        def restore(model=None, loss=None, optimizer=None):
            for _, obj in speed._targets(model, loss, optimizer):
                if obj in accelerated:
                    accelerated[obj] = False
            return original(model, loss, optimizer)
        return restore

    wrap(Layer, "to", make_to)
    wrap(Optimizer, "to", make_to)
    wrap(speed, "restore", make_restore)

    def unwrap():
        for owner, name, original in reversed(originals):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)

    return unwrap


# -- why tests were skipped ----------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter):
    """After the run, the skip reasons grouped with a count each (``make test`` said only "99 skipped")."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    terminalreporter.write_sep("-", f"{len(skipped)} skipped, by reason")
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{count:>5}  {reason}")
