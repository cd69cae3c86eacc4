"""Training runs of a comparison: the same net with and without BatchNorm, step by step.

Both nets of a pair start from the same weights (every Linear weight is shared; the
BatchNorm net's hidden Linears have no bias, BatchNorm's beta takes its place) and
see the same batches in the same order. At every evaluation a run records the test
loss and accuracy and the 15th, 50th and 85th percentiles, over the test set, of the
input to one fixed unit's activation in the last hidden layer (Ioffe & Szegedy 2015,
Figure 1 b, c).
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..backend import get_array_module, to_numpy
from ..data.batching import minibatches
from ..graph import Sequential
from ..init import normal
from ..layers import Linear, ReLU, Sigmoid, Tanh
from ..losses import SoftmaxCrossEntropy
from ..models import mlp
from ..optim import SGD
from ..train import BlasThreads, first_layer_skips_input_gradient

PERCENTILES = (15, 50, 85)
ACTIVATION_LAYERS = (Sigmoid, ReLU, Tanh)


@dataclass
class RunResult:
    """What one training run measured, one entry per evaluation (step 0 included).

    Attributes
    ----------
    phase : str
        ``"main"`` for the pair of Figure 1, ``"sweep"`` for the learning-rate sweep.
    batchnorm : bool
    lr : float
    step : list of int
        Steps at which the run was evaluated.
    test_loss, test_accuracy : list of float
    train_loss : list of float
        Mean training loss over the steps since the previous evaluation (nan at step 0).
    p15, p50, p85 : list of float
        Percentiles of the probed activation input over the test set.
    train_seconds : list of float
        Wall time spent in training steps so far (evaluations excluded).
    wall_seconds : float
        Wall time of the whole run, evaluations included.
    diverged_at : int or None
        Step at which a loss stopped being finite; the run stopped there.
    """

    phase: str
    batchnorm: bool
    lr: float
    step: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    p15: list = field(default_factory=list)
    p50: list = field(default_factory=list)
    p85: list = field(default_factory=list)
    train_seconds: list = field(default_factory=list)
    wall_seconds: float = 0.0
    diverged_at: int | None = None

    @property
    def name(self):
        return "batchnorm" if self.batchnorm else "plain"

    def steps_to(self, accuracy):
        """First evaluated step whose test accuracy is at least ``accuracy``; None if never."""
        for step, value in zip(self.step, self.test_accuracy):
            if value >= accuracy:
                return step
        return None

    @property
    def final_accuracy(self):
        return self.test_accuracy[-1]


@dataclass
class StudyResult:
    """The main pair of runs, the sweep runs, and the total wall time."""

    config: object
    main: list
    sweep: list
    wall_seconds: float
    data_info: dict

    @property
    def runs(self):
        return self.main + self.sweep


def build_pair(config, in_features, classes, dtype=np.float32):
    """The plain net and the BatchNorm net of ``config``, with identical Linear weights.

    Returns
    -------
    (Sequential, Sequential)
        ``[Linear -> act] * len(hidden) -> Linear`` and
        ``[Linear(bias=False) -> BatchNorm -> act] * len(hidden) -> Linear``.
    """
    sizes = [in_features, *config.hidden, classes]
    init = "he" if config.init_std is None else normal(config.init_std)
    weights_seed, _ = np.random.SeedSequence(config.seed).spawn(2)
    plain = mlp(sizes, batchnorm=False, activation=config.activation, init=init,
                rng=np.random.default_rng(weights_seed), dtype=dtype)
    bn = mlp(sizes, batchnorm=True, activation=config.activation, init=init, bn_gradient=config.bn_gradient,
             rng=np.random.default_rng(weights_seed), dtype=dtype)
    # Same seed gives the same draws today; copying makes "same initial weights" hold by construction.
    for source, target in zip(linears(plain), linears(bn)):
        target.weight.data[...] = source.weight.data
    return plain, bn


def linears(model):
    return [layer for layer in model.modules() if isinstance(layer, Linear)]


def batch_stream(x, y, batch_size, seed):
    """Endless shuffled full batches ``(xb, yb)``: a new permutation from ``seed``'s generator each epoch."""
    if len(x) < batch_size:
        raise ValueError(f"compare: batch_size {batch_size} is larger than the {len(x)} training examples")
    rng = np.random.default_rng(seed)
    while True:
        # full batches only, so that every step of every run sees exactly batch_size examples
        yield from minibatches(x, y, batch_size, rng, min_size=batch_size)


def probe_index(model):
    """Index in ``model`` of the last activation layer: its input is what Figure 1 (b, c) tracks."""
    if not isinstance(model, Sequential):
        raise TypeError(f"compare: expected a Sequential model (it is run layer by layer), got {type(model).__name__}")
    for i in reversed(range(len(model))):
        if isinstance(model[i], ACTIVATION_LAYERS):
            return i
    raise ValueError("compare: the model has no activation layer whose input could be recorded")


def evaluate_with_probe(model, loss, x, y, probe, unit, chunk=2000):
    """Test loss, accuracy and the percentiles of ``model[probe]``'s input at ``unit``, in eval mode.

    Parameters
    ----------
    model : Sequential
    loss : SoftmaxCrossEntropy
    x, y : ndarray
        Features (N, D) and integer labels (N,).
    probe : int
        Index of the layer whose input is recorded.
    unit : int
        Column of that input (one unit of the layer).

    Returns
    -------
    (loss, accuracy, (p15, p50, p85)) : floats
    """
    modes = [(layer, layer.training) for layer in model.modules()]
    model.eval()
    xp = get_array_module(x)
    total_loss, correct, probed = 0.0, 0, []
    try:
        for start in range(0, len(x), chunk):
            h, yb = x[start : start + chunk], y[start : start + chunk]
            for i in range(len(model)):
                if i == probe:
                    probed.append(h[:, unit].copy())  # (chunk,)
                h = model[i](h)
            total_loss += float(loss(h, yb)) * len(yb)
            correct += int((h.argmax(axis=1) == yb).sum())
    finally:
        for layer, mode in modes:
            layer.training = mode
    values = to_numpy(xp.concatenate(probed)).astype(np.float64)
    if np.all(np.isfinite(values)):
        percentiles = tuple(float(p) for p in np.percentile(values, PERCENTILES))
    else:
        percentiles = (math.nan,) * len(PERCENTILES)
    return total_loss / len(x), correct / len(x), percentiles


def train_run(model, data, config, phase, batchnorm, progress=True):
    """Train ``model`` with SGD for ``config.steps`` steps, evaluating every ``config.eval_every``.

    Parameters
    ----------
    model : Sequential
    data : tuple
        ``(x_train, y_train, x_test, y_test)``: float features (N, D) of the model's dtype, int labels (N,).
    config : StudyConfig
    phase : str
        Label stored in the result (``"main"`` or ``"sweep"``).
    batchnorm : bool
        Stored in the result.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    RunResult
    """
    x_train, y_train, x_test, y_test = data
    loss = SoftmaxCrossEntropy()
    optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    probe = probe_index(model)
    result = RunResult(phase, batchnorm, config.lr)
    began = time.perf_counter()

    def record(step, train_loss, train_seconds):
        test_loss, accuracy, (p15, p50, p85) = evaluate_with_probe(model, loss, x_test, y_test, probe, config.probe_unit)
        for name, value in (("step", step), ("test_loss", test_loss), ("test_accuracy", accuracy),
                            ("train_loss", train_loss), ("p15", p15), ("p50", p50), ("p85", p85),
                            ("train_seconds", train_seconds)):
            getattr(result, name).append(value)
        return math.isfinite(test_loss) and (step == 0 or math.isfinite(train_loss))

    record(0, math.nan, 0.0)
    _, batch_seed = np.random.SeedSequence(config.seed).spawn(2)
    batches = batch_stream(x_train, y_train, config.batch_size, batch_seed)
    label = f"{phase} {result.name} lr={config.lr:g}"
    train_seconds, loss_sum, count = 0.0, 0.0, 0
    model.train()
    # nothing uses dL/dx of the data: the first Linear skips that product, in both runs alike (as fit does)
    with first_layer_skips_input_gradient(model), BlasThreads(x_train) as threads, \
            tqdm(total=config.steps, desc=label, disable=not progress, leave=False, unit="step") as bar:
        threads.adjust()  # BLAS threads: every core, unless other processes are busy
        start = time.perf_counter()
        for step in range(1, config.steps + 1):
            xb, yb = next(batches)
            value = loss(model.forward(xb), yb)  # forward: run_study scanned the data for NaN once
            optimizer.zero_grad()
            model.backward(loss.backward())
            optimizer.step()
            loss_sum = loss_sum + value  # stays on the device: no synchronisation per step
            count += 1
            if step % config.eval_every and step != config.steps:
                continue
            mean_loss = float(loss_sum) / count  # float() waits for the device: the timing is honest
            train_seconds += time.perf_counter() - start
            finite = record(step, mean_loss, train_seconds)
            bar.update(count)
            bar.set_postfix(acc=f"{result.test_accuracy[-1]:.4f}")
            loss_sum, count = 0.0, 0
            if not finite:
                result.diverged_at = step
                break
            threads.adjust()  # BLAS threads: every core, unless other processes took some meanwhile
            start = time.perf_counter()
    result.wall_seconds = time.perf_counter() - began
    return result


def run_study(config, data, progress=True, log=print):
    """Run the main pair at ``config.lr`` and, for each ``config.sweep_lrs``, a shorter pair.

    Parameters
    ----------
    config : StudyConfig
    data : tuple
        ``(x_train, y_train, x_test, y_test)``: float32 features (N, D), integer labels (N,),
        NumPy or CuPy arrays (the models follow the data's backend).
    progress : bool
        Show progress bars.
    log : callable
        Receives one line per finished run.

    Returns
    -------
    StudyResult
    """
    x_train, y_train, x_test, y_test = data
    for name, a in (("x_train", x_train), ("x_test", x_test)):
        if getattr(a, "ndim", None) != 2 or a.dtype != np.float32:
            raise TypeError(f"compare: expected {name} as float32 features (N, D), got "
                            f"{getattr(a, 'dtype', type(a).__name__)} of shape {getattr(a, 'shape', None)}")
    for name, a in (("y_train", y_train), ("y_test", y_test)):
        if getattr(a, "ndim", None) != 1 or a.dtype.kind not in "iu":
            raise TypeError(f"compare: expected {name} as integer labels (N,), got {getattr(a, 'dtype', type(a).__name__)}")
    if x_train.shape[1] != x_test.shape[1] or len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"compare: inconsistent data shapes {x_train.shape}, {y_train.shape}, {x_test.shape}, {y_test.shape}")
    xp = get_array_module(x_train)
    if not (bool(xp.isfinite(x_train).all()) and bool(xp.isfinite(x_test).all())):
        raise ValueError("compare: the features contain NaN or infinite values")
    backend = "cupy" if xp is not np else "numpy"
    classes = int(max(int(y_train.max()), int(y_test.max()))) + 1
    began = time.perf_counter()

    def pair(phase, cfg):
        runs = []
        for model, batchnorm in zip(build_pair(cfg, x_train.shape[1], classes), (False, True)):
            run = train_run(model.to(backend), data, cfg, phase, batchnorm, progress)
            runs.append(run)
            log(summary_line(run, cfg.targets))
        return runs

    main = pair("main", config)
    sweep = []
    for lr in config.sweep_lrs:
        sweep += pair("sweep", config.with_lr(lr, config.sweep_steps))
    info = dict(backend=backend, train_examples=len(x_train), test_examples=len(x_test),
                features=int(x_train.shape[1]), classes=classes)
    return StudyResult(config, main, sweep, time.perf_counter() - began, info)


def summary_line(run, targets):
    """One line per finished run: final accuracy, when each target was reached, wall time."""
    reached = ", ".join(f"{100 * t:g}% at {fmt_step(run.steps_to(t))}" for t in targets)
    status = f"; diverged at step {run.diverged_at}" if run.diverged_at is not None else ""
    return (f"{run.phase:5} {run.name:9} lr={run.lr:<6g} final test accuracy {100 * run.final_accuracy:.2f}% "
            f"({reached}) in {run.wall_seconds:.1f} s{status}")


def fmt_step(step):
    return "not reached" if step is None else f"step {step}"
