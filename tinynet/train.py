"""fit and evaluate: the training loop, with a tqdm progress bar and a per-epoch table.

The loop is the README's hand-written step (:func:`training_step`) repeated over shuffled
mini-batches; everything around it — validation, the progress display, the NaN guard,
checkpoints, the BLAS thread count — is one call each.
"""

import contextlib
import ctypes
import functools
import importlib
import os
import time
import warnings
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .backend import backend_name, get_array_module, synchronize, to_numpy
from .data.batching import minibatches
from .graph import Graph
from .history import History
from .layer import Layer, check_finite, check_positive_int, check_rng
from .layers import BatchNorm
from .nonfinite import NonFiniteGuard


class Evaluation(NamedTuple):
    loss: float
    accuracy: float


def training_step(model, loss, optimizer, guard=None):
    """``step(xb, yb) -> loss value``: one step of gradient descent, as the README writes it by hand."""

    def step(xb, yb):
        value = loss(model.forward(xb), yb)  # forward, not model(xb): fit scanned the data for NaN once
        optimizer.zero_grad()
        model.backward(loss.backward())
        if guard is not None:
            guard.check(value, xb, yb)  # a NaN or Inf stops here, before the update spreads it
        optimizer.step()
        return value

    return step


def fit(model, loss, optimizer, x, y, epochs, batch_size, validation=None, rng=None, progress=True,
        lr_schedule=None, checkpoint=None, resume=False, detect_nonfinite=True, fast=False, cuda_graph=False,
        inspect_every=None):
    """Train ``model`` with mini-batch gradient descent; return a :class:`History`.

    Parameters
    ----------
    model : Layer
        Usually a Graph or Sequential producing logits (N, C).
    loss : SoftmaxCrossEntropy
    optimizer : Optimizer
        Built on ``model.parameters()``.
    x, y : ndarray
        Features (N, ...), floating, and integer labels (N,). Features (and validation
        features) are cast once to the dtype of the model's parameters.
    epochs, batch_size : int
    validation : tuple (x_val, y_val), optional
        Evaluated after each epoch.
    rng : numpy.random.Generator, optional
        Shuffles the data each epoch; fixed seed, fixed batches.
    progress : bool
        Show a tqdm bar and print a row of the per-epoch table after each epoch.
    lr_schedule : callable, optional
        ``lr_schedule(epoch) -> lr`` (epoch counted from 0), set on the optimizer
        before each epoch; see :func:`tinynet.optim.cosine_schedule`.
    checkpoint : str or os.PathLike, optional
        After each epoch, save model, optimizer, history, the state of ``rng`` and the
        epoch reached there (atomically, see :func:`tinynet.save`).
    resume : bool
        With ``checkpoint``: if the file exists, load it and continue after the epoch it
        reached; the run then ends bit-identical to an uninterrupted one (on NumPy; History's
        ``seconds`` are wall times and differ) when model, optimizer and rng are built as in
        the first run. Without the file, start from scratch.
    detect_nonfinite : bool
        After each backward, check the loss and every gradient; at the first NaN or Inf,
        repeat the step layer by layer and raise :class:`NonFiniteError` naming the step and
        the first non-finite output or gradient, with the parameters as they were before
        that step.
    fast : bool
        Opt into :mod:`tinynet.speed`: fused kernels (C on NumPy, CUDA on CuPy) replace the
        plain code of the built-in layers, the loss and the optimizer, for this model
        (see :func:`tinynet.speed.accelerate`; they stay in place after fit returns).
    cuda_graph : bool
        With ``fast=True`` on CuPy: record the whole step as a CUDA graph once and replay it
        (see :mod:`tinynet.speed.cuda_graph`); the NaN check then reads the losses once per epoch.
    inspect_every : int, optional
        Every ``inspect_every``-th step (the first included), record per-layer statistics —
        output mean and std, dead ReLUs, saturated sigmoids, gradient and weight norms, update
        ratios — into ``history.layer_stats`` (see :mod:`tinynet.layer_stats`; plot them with
        :mod:`tinynet.plots`). None (the default) records nothing and costs nothing.

    The model's parameters decide the backend: pass x and y on it (``tinynet.to_device``).
    The optimizer's state is moved to the parameters' backend at the start.
    """
    check_fit_arguments(model, loss, optimizer, x, y, epochs, batch_size, validation, rng, checkpoint, resume,
                        fast, cuda_graph)
    params = model.parameters()
    dtype = params[0].data.dtype if params else x.dtype
    optimizer.to(backend_name(params[0].data if params else x))  # its state follows the parameters
    x = get_array_module(x).ascontiguousarray(x, dtype=dtype)
    if validation is not None:
        validation = (get_array_module(validation[0]).ascontiguousarray(validation[0], dtype=dtype), validation[1])
    check_finite("fit", x, "x")  # once here, so the steps call model.forward and skip the scan
    rng = np.random.default_rng() if rng is None else rng
    history, first_epoch = History(), 1
    if resume and os.path.exists(checkpoint):
        from .checkpoint import resume_fit

        history, first_epoch = resume_fit(checkpoint, model, optimizer, rng, progress)
    guard = NonFiniteGuard(model, loss, params, history, checkpoint) if detect_nonfinite else None
    step = training_step(model, loss, optimizer, None if cuda_graph else guard)
    if fast:  # the one place the core reaches the speed ring, and only when asked
        speed = importlib.import_module("tinynet.speed")
        step = speed.fit_step(model, loss, optimizer, step, cuda_graph, progress, guard)
    if inspect_every is not None:  # per-layer statistics, read around the step it wraps
        step = importlib.import_module("tinynet.layer_stats").recording_step(model, step, history, inspect_every, cuda_graph)
    display = Progress(progress, validation is not None, epochs)
    # a batch of one cannot be normalised: drop a trailing single example, and say so once
    min_batch = 2 if any(isinstance(m, BatchNorm) for m in model.modules()) else 1
    if min_batch == 2 and len(x) % batch_size == 1:
        warnings.warn(f"fit: {len(x)} examples in batches of {batch_size} leave a last batch of one, which BatchNorm "
                      "cannot normalise; it is left out of every epoch (a different batch_size keeps it)", stacklevel=2)
    keep_freed_memory()
    with BlasThreads(x) as threads, first_layer_skips_input_gradient(model):
        for epoch in range(first_epoch, epochs + 1):
            threads.adjust()  # every core, unless other processes took some during the last epoch
            model.train()
            if lr_schedule is not None:
                optimizer.lr = float(lr_schedule(epoch - 1))
            losses = []
            if guard is not None:
                guard.start_epoch(epoch, losses)
            start = time.perf_counter()
            for xb, yb in display.bar(minibatches(x, y, batch_size, rng, min_size=min_batch), epoch, -(-len(x) // batch_size)):
                losses.append(step(xb, yb))
            synchronize(x)  # GPU work is asynchronous: the epoch ends when the GPU is done
            record_epoch(history, losses, time.perf_counter() - start, guard if cuda_graph else None)
            if validation is not None:
                val = evaluate(model, loss, *validation)
                history.val_loss.append(val.loss)
                history.val_accuracy.append(val.accuracy)
            display.row(epoch, history)
            if checkpoint is not None:
                from .checkpoint import save

                save(checkpoint, model, optimizer, history, rng=rng, epoch=epoch)
    model._fit_ended = True  # the next training-mode forward outside fit is warned about (Graph.forward)
    return history


def evaluate(model, loss, x, y, batch_size=1000):
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in eval mode.

    Each layer's train/eval mode is restored afterwards, and so is what a training forward
    left for its backward: evaluating between a loss and its ``backward()`` changes nothing.
    """
    check_parts("evaluate", model, loss)
    check_data("evaluate", x, y)
    check_positive_int("evaluate", "batch_size", batch_size)
    check_finite("evaluate", x, "x")
    total_loss, correct = 0.0, 0
    with pending_backward_kept(model, loss):
        model.eval()
        for xb, yb in minibatches(x, y, batch_size):
            logits = model(xb)
            total_loss += float(loss(logits, yb)) * len(xb)
            correct += int((logits.argmax(axis=1) == yb).sum())
    return Evaluation(total_loss / len(x), correct / len(x))


# -- the calls fit makes ------------------------------------------------------------------------
def record_epoch(history, losses, seconds, guard=None):
    """Append the epoch's step losses, their mean and its time to ``history``."""
    losses = to_numpy(get_array_module(*losses).stack([get_array_module(s).asarray(s) for s in losses]))
    losses = losses.astype(float).tolist()
    if guard is not None:  # a CUDA graph's losses are read once per epoch
        guard.check_epoch(losses)
    history.step_loss.extend(losses)
    history.train_loss.append(float(np.mean(losses)))
    history.seconds.append(seconds)


@contextlib.contextmanager
def pending_backward_kept(model, loss):
    """Restore every layer's and the loss's attributes after the block: each layer's mode, and what a
    training forward saved for its backward, survive the other forwards run inside (evaluate)."""
    kept = [(obj, dict(vars(obj))) for obj in (*model.modules(), loss) if hasattr(obj, "__dict__")]
    try:
        yield
    finally:
        for obj, attributes in kept:
            vars(obj).clear()
            vars(obj).update(attributes)


@contextlib.contextmanager
def first_layer_skips_input_gradient(model):
    """A layer that alone reads the model's input has no one to pass dL/dx to in fit. Layers that can
    skip it say so with an ``input_grad`` flag (Linear, Conv2d: their largest product, or col2im);
    fit turns it off for the fit, as PyTorch skips the gradient of data."""
    readers = [model] if hasattr(type(model), "input_grad") else []
    for source in model.inputs if isinstance(model, Graph) else ():
        users = [node for node in model.nodes if source in node.inputs]
        if len(users) == 1 and users[0].inputs == (source,) and hasattr(type(users[0].layer), "input_grad"):
            readers.append(users[0].layer)
    before = [layer.input_grad for layer in readers]
    for layer in readers:
        layer.input_grad = False
    try:
        yield
    finally:
        for layer, value in zip(readers, before):
            layer.input_grad = value


class BlasThreads:
    """NumPy's BLAS threads, chosen again before each epoch: every core but those that other processes
    kept busy lately (read from /proc/stat; elsewhere, every core).

    OpenBLAS wakes one spinning thread per core for every product: beside one busy process, two
    threads made a step of the default MLP 8-24x slower, while on a quiet machine they are 1.1-1.7x
    faster than one (benchmarks/README.md). ``with BlasThreads(x) as threads:``, then
    ``threads.adjust()`` between epochs.
    """

    def __init__(self, x):
        self.on, self.limit, self.mark = backend_name(x) == "numpy" and os.path.exists("/proc/stat"), None, None

    def __enter__(self):
        return self

    def adjust(self):
        if self.on:
            if self.mark is None and time.perf_counter() - MACHINE[0] > 10:  # nothing seen lately: look
                self.mark = cpu_seconds()
                time.sleep(0.1)
            self.measure()
            self.limit = threadpool_limits(max(1, round(os.cpu_count() - MACHINE[1])), user_api="blas")

    def measure(self):
        """Other processes' CPU seconds per second since the last mark, into MACHINE; release the limit."""
        now = cpu_seconds()
        if self.mark is not None and now[2] - self.mark[2] >= 0.1:
            MACHINE[:] = now[2], ((now[0] - self.mark[0]) - (now[1] - self.mark[1])) / (now[2] - self.mark[2])
        self.mark = now
        if self.limit is not None:
            self.limit.restore_original_limits()
            self.limit = None

    def __exit__(self, *exc):
        if self.on:
            self.measure()  # what the next fit of this process starts from


# (when, cores busy elsewhere): what fit last measured of this machine, shared by every fit of the
# process so that a run of short fits need not look again (a measurement of the machine, no model state)
MACHINE = [float("-inf"), 0.0]


@functools.cache  # a setting of the process: once is enough
def keep_freed_memory():
    """Ask glibc to keep freed blocks of up to 32 MB for reuse instead of giving each back to the system.

    Every step allocates fresh arrays of the same sizes; handed back and faulted in again, large ones
    cost a (1024, 1024) epoch 38 % (benchmarks/README.md). Process-wide and harmless elsewhere
    (a no-op without glibc); the price is up to 256 MB of freed memory kept by the process.
    """
    mallopt = getattr(ctypes.CDLL(None) if os.name == "posix" else None, "mallopt", None)  # glibc only
    if mallopt is not None:
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks under 32 MB come from the heap, not mmap
        mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: free heap kept up to 256 MB


def cpu_seconds():
    """(CPU seconds every process on this machine has used, those this process has used, wall seconds)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]  # the "cpu" line: user nice system idle iowait ...
    mine = os.times()
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), mine.user + mine.system, time.perf_counter()


class Progress:
    """The progress bar during an epoch and the per-epoch table after it (both off with progress=False)."""

    def __init__(self, enabled, with_validation, epochs):
        self.enabled, self.with_validation, self.epochs, self.printed_head = enabled, with_validation, epochs, False

    def bar(self, batches, epoch, total):
        # disable=None: no bar when stderr is not a terminal (piped, a log file), where its carriage
        # returns would run into the table's lines; the table is printed either way
        return tqdm(batches, total=total, desc=f"epoch {epoch}/{self.epochs}", leave=False,
                    disable=None if self.enabled else True, unit="batch")

    def row(self, epoch, history):
        if not self.enabled:
            return
        if not self.printed_head:
            validation = f"  {'val loss':>9}  {'val acc':>8}" if self.with_validation else ""
            head = f"{'epoch':>5}  {'train loss':>10}{validation}  {'seconds':>7}"
            tqdm.write(head + "\n" + "-" * len(head))
            self.printed_head = True
        line = f"{epoch:>5}  {history.train_loss[-1]:>10.4f}"
        if self.with_validation:
            line += f"  {history.val_loss[-1]:>9.4f}  {100 * history.val_accuracy[-1]:>7.2f}%"
        tqdm.write(line + f"  {history.seconds[-1]:>7.2f}")


# -- argument checks -------------------------------------------------------------------------------
def check_fit_arguments(model, loss, optimizer, x, y, epochs, batch_size, validation, rng, checkpoint, resume,
                        fast, cuda_graph):
    """Refuse bad arguments to fit before any data is touched."""
    check_parts("fit", model, loss, optimizer)
    check_data("fit", x, y)
    check_positive_int("fit", "epochs", epochs)
    check_positive_int("fit", "batch_size", batch_size)
    if x.dtype.kind != "f":
        raise TypeError(f"fit: expected floating-point features x, got dtype {x.dtype} (see tinynet.data.images_to_features)")
    check_rng("fit", rng)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError(f"fit: expected validation as a pair (x_val, y_val), got {type(validation).__name__}")
        check_data("fit (validation)", *validation)
        if validation[0].dtype.kind != "f":
            raise TypeError(f"fit: expected floating-point validation features, got dtype {validation[0].dtype}")
        check_finite("fit", validation[0], "validation x")
    if checkpoint is not None or resume:
        importlib.import_module("tinynet.checkpoint").check_fit_options(checkpoint, resume)
    for name, value in (("fast", fast), ("cuda_graph", cuda_graph)):
        if not isinstance(value, bool):
            raise TypeError(f"fit: expected {name} to be True or False, got {value!r}")
    if cuda_graph and not fast:
        raise ValueError("fit: cuda_graph=True is part of the speed opt-in; pass fast=True as well")
    if backend_name(x) != backend_name(y):
        raise TypeError(f"fit: x is a {backend_name(x)} array but y is a {backend_name(y)} array; "
                        "move both with tinynet.to_device(a, backend)")


def check_parts(where, model, loss, optimizer=False):
    """Refuse a model, loss or optimizer of the wrong kind before any data is touched (False: no optimizer to check)."""
    if not isinstance(model, Layer):
        raise TypeError(f"{where}: expected model to be a tinynet Layer (Sequential, Graph, ...), got {type(model).__name__}")
    if isinstance(loss, type) or not callable(getattr(loss, "backward", None)):
        got = f"the class {loss.__name__}; call it to make one" if isinstance(loss, type) else type(loss).__name__
        raise TypeError(f"{where}: expected a loss object such as tinynet.SoftmaxCrossEntropy(), got {got}")
    if optimizer is not False and not (callable(getattr(optimizer, "step", None)) and hasattr(optimizer, "zero_grad")
                                       and hasattr(optimizer, "to")):
        raise TypeError(
            f"{where}: expected an optimizer such as tinynet.SGD(model.parameters(), lr=0.1), got {type(optimizer).__name__}"
        )


def check_data(where, x, y):
    if not hasattr(x, "shape") or not hasattr(y, "shape"):
        raise TypeError(f"{where}: expected arrays x and y, got {type(x).__name__} and {type(y).__name__}")
    if len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x)} examples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{where}: got no examples (x has shape {tuple(x.shape)})")
