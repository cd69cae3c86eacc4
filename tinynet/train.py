"""fit, evaluate and History: the training loop, with a tqdm progress bar and a per-epoch table."""

import contextlib
import os
import time
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from .backend import backend_name, get_array_module, synchronize, to_numpy
from .checkpoint import load, save
from .data.batching import minibatches
from .graph import Graph
from .history import History
from .layer import Layer, check_finite, check_positive_int, check_rng
from .layers import BatchNorm, Linear
from .losses import SoftmaxCrossEntropy
from .nonfinite import finite_step, stop_nonfinite, stop_nonfinite_epoch


class Evaluation(NamedTuple):
    loss: float
    accuracy: float


def evaluate(model, loss, x, y, batch_size=1000):
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in eval mode.

    Each layer's train/eval mode is restored afterwards.
    """
    check_parts("evaluate", model, loss)
    check_data("evaluate", x, y)
    check_positive_int("evaluate", "batch_size", batch_size)
    check_finite("evaluate", x, "x")
    modes = [(layer, layer.training) for layer in model.modules()]
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for xb, yb in minibatches(x, y, batch_size):
            logits = model(xb)
            total_loss += float(loss(logits, yb)) * len(xb)
            correct += int((logits.argmax(axis=1) == yb).sum())
    finally:
        for layer, mode in modes:
            layer.training = mode
    return Evaluation(total_loss / len(x), correct / len(x))


def check_parts(where, model, loss, optimizer=False):
    """Refuse a model, loss or optimizer of the wrong kind before any data is touched (False: no optimizer to check)."""
    if not isinstance(model, Layer):
        raise TypeError(f"{where}: expected model to be a tinynet Layer (Sequential, Graph, ...), got {type(model).__name__}")
    if isinstance(loss, type) or not callable(getattr(loss, "backward", None)):
        got = f"the class {loss.__name__}; call it to make one" if isinstance(loss, type) else type(loss).__name__
        raise TypeError(f"{where}: expected a loss object such as tinynet.SoftmaxCrossEntropy(), got {got}")
    if optimizer is not False and not (callable(getattr(optimizer, "step", None)) and hasattr(optimizer, "zero_grad")):
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


def fit(model, loss, optimizer, x, y, epochs, batch_size, validation=None, rng=None, progress=True,
        lr_schedule=None, checkpoint=None, resume=False, detect_nonfinite=True, cuda_graph=False):
    """Train ``model`` with mini-batch gradient descent; return a :class:`History`.

    Parameters
    ----------
    model : Layer
        Usually a Graph or Sequential producing logits (N, C).
    loss : SoftmaxCrossEntropy
    optimizer : Optimizer
        Built on ``model.parameters()``.
    x, y : ndarray
        Features (N, D), floating, and integer labels (N,). Features are cast once
        to the dtype of the model's parameters.
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
        the first run (a generator shared by Dropout and fit must be shared again). Without
        the file, start from scratch.
    detect_nonfinite : bool
        After each backward, check the loss and every gradient (a flag per step, one device
        sync on a GPU); at the first NaN or Inf, repeat the step layer by layer and raise
        :class:`NonFiniteError` naming the step and the first non-finite output or gradient,
        with the parameters as they were before that step. With ``cuda_graph=True`` the
        check reads the epoch's losses once at its end instead (a per-step read would undo
        the graph's gain): it names the first non-finite step, but the parameters are those
        after the epoch.
    cuda_graph : bool
        On CuPy, record the whole step (forward, loss, backward, SGD update) as a CUDA graph
        once and replay it for every batch of that shape: one launch per step instead of
        dozens (see :mod:`tinynet.cuda_graph`). Same arithmetic as the eager step. Needs SGD
        and no Dropout; a changed learning rate (``lr_schedule``) triggers a new capture.

    The model's parameters decide the backend: pass x and y on it (``tinynet.to_device``);
    the whole dataset then stays on the GPU and every batch is sliced there. The optimizer's
    state is moved to the parameters' backend at the start (``optimizer.to``), so
    ``model.to("cupy")`` before ``fit`` is enough.

    Raises
    ------
    NonFiniteError
        See ``detect_nonfinite``.
    """
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
        check_finite("fit", validation[0], "validation x")
    check_checkpoint_options(checkpoint, resume)
    params = model.parameters()
    if not isinstance(cuda_graph, bool):
        raise TypeError(f"fit: expected cuda_graph to be True or False, got {cuda_graph!r}")
    if backend_name(x) != backend_name(y):
        raise TypeError(f"fit: x is a {backend_name(x)} array but y is a {backend_name(y)} array; "
                        "move both with tinynet.to_device(a, backend)")
    if params and hasattr(optimizer, "to"):
        optimizer.to(backend_name(params[0].data))  # its state follows the parameters
    xp = get_array_module(x)
    if params:
        x = xp.ascontiguousarray(x, dtype=params[0].data.dtype)
    check_finite("fit", x, "x")  # once here, so the steps call model.forward and skip the scan
    rng = np.random.default_rng() if rng is None else rng
    history, first_epoch = History(), 1
    if resume and os.path.exists(checkpoint):
        saved = load(checkpoint, model, optimizer, rng=rng)
        if saved.epoch is None or saved.history is None:
            raise ValueError(f"fit: {checkpoint} was not written by fit (it has no epoch or history); cannot resume from it")
        history, first_epoch = saved.history, saved.epoch + 1
        if progress:
            tqdm.write(f"resuming from {checkpoint} after epoch {saved.epoch}")
    table = EpochTable(validation is not None) if progress else None
    # a batch of one cannot be normalised: drop a trailing single example
    min_batch = 2 if any(isinstance(m, BatchNorm) for m in model.modules()) else 1
    skip_data_gradient = SkipInputGradient(data_readers(model))
    labels_checked = LabelRangeKnown(loss, y)  # one read of the labels' range for the whole run
    captured = None
    if cuda_graph:
        from .cuda_graph import CapturedStep

        captured = CapturedStep(model, loss, optimizer, whole_step(model, loss, optimizer, skip_data_gradient))
    for epoch in range(first_epoch, epochs + 1):
        model.train()
        if lr_schedule is not None:
            optimizer.lr = float(lr_schedule(epoch - 1))
        step_losses = []
        start = time.perf_counter()
        batches = minibatches(x, y, batch_size, rng, min_size=min_batch)
        total = -(-len(x) // batch_size)
        with labels_checked, tqdm(batches, total=total, desc=f"epoch {epoch}/{epochs}", leave=False,
                                              disable=not progress, unit="batch") as bar:
            for step, (xb, yb) in enumerate(bar):
                if captured is not None:  # the whole step replayed from a CUDA graph
                    step_losses.append(captured(xb, yb))
                    continue
                step_loss = loss(model.forward(xb), yb)
                optimizer.zero_grad()
                with skip_data_gradient:  # nothing uses dL/dx of the data: skip the first layer's
                    model.backward(loss.backward())  # largest product, as PyTorch does
                if detect_nonfinite and not finite_step(xp, step_loss, params):
                    stop_nonfinite(model, loss, xb, yb, epoch, len(history.step_loss) + step + 1,
                                   history, step_losses + [step_loss], checkpoint)
                optimizer.step()
                step_losses.append(step_loss)
                if progress and step % 50 == 0:
                    bar.set_postfix(loss=f"{float(step_loss):.4f}")
        synchronize(x)  # GPU work is asynchronous: the epoch ends when the GPU is done
        seconds = time.perf_counter() - start
        losses = to_numpy(xp.stack([xp.asarray(s) for s in step_losses])).astype(float).tolist()
        if captured is not None and detect_nonfinite and not np.all(np.isfinite(losses)):
            stop_nonfinite_epoch(epoch, history, losses)
        history.step_loss.extend(losses)
        history.train_loss.append(float(np.mean(losses)))
        history.seconds.append(seconds)
        if validation is not None:
            val = evaluate(model, loss, *validation)
            history.val_loss.append(val.loss)
            history.val_accuracy.append(val.accuracy)
        if table is not None:
            table.row(epoch, history)
        if checkpoint is not None:
            save(checkpoint, model, optimizer, history, rng=rng, epoch=epoch)
    return history


def check_checkpoint_options(checkpoint, resume):
    """Refuse bad checkpoint options before training, not after the first epoch."""
    if checkpoint is None:
        if resume:
            raise ValueError("fit: resume=True needs checkpoint=path (the file to resume from)")
        return
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"fit: expected checkpoint to be a file path, got {type(checkpoint).__name__}")
    folder = os.path.dirname(os.path.abspath(checkpoint))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"fit: the folder of checkpoint {os.fspath(checkpoint)} does not exist: {folder}")


def whole_step(model, loss, optimizer, *contexts):
    """The eager training step as one function, ``step(xb, yb) -> loss`` (what cuda_graph=True captures)."""

    def step(xb, yb):
        value = loss(model.forward(xb), yb)
        optimizer.zero_grad()
        with contextlib.ExitStack() as stack:
            for context in contexts:
                stack.enter_context(context)
            model.backward(loss.backward())
        optimizer.step()
        return value

    return step


def data_readers(model):
    """The Linear layers that alone read one of ``model``'s inputs: their dL/dx goes nowhere in fit."""
    if isinstance(model, Linear):
        return [model]
    readers = []
    for source in model.inputs if isinstance(model, Graph) else ():
        users = [node for node in model.nodes if source in node.inputs]
        # one user reading it once: its None gradient then meets no other one to be summed with
        if len(users) == 1 and users[0].inputs == (source,) and isinstance(users[0].layer, Linear):
            readers.append(users[0].layer)
    return readers


class LabelRangeKnown:
    """``with LabelRangeKnown(loss, y):`` a SoftmaxCrossEntropy knows the range of ``y``'s labels.

    The range is read once, when this is made; inside the block the loss's per-step range check
    then reads nothing back from the device. Validation and test labels run outside the block and
    are checked batch by batch as usual.
    """

    def __init__(self, loss, y):
        self.loss = loss if isinstance(loss, SoftmaxCrossEntropy) else None
        self.label_range = (int(y.min()), int(y.max())) if self.loss is not None else None

    def __enter__(self):
        if self.loss is not None:
            self.loss.known_label_range = self.label_range

    def __exit__(self, *exc):
        if self.loss is not None:
            self.loss.known_label_range = None


class SkipInputGradient:
    """``with SkipInputGradient(layers):`` those Linear layers' backward skips dL/dx (returns None)."""

    def __init__(self, layers):
        self.layers = layers

    def __enter__(self):
        self.before = [layer.input_grad for layer in self.layers]
        for layer in self.layers:
            layer.input_grad = False

    def __exit__(self, *exc):
        for layer, value in zip(self.layers, self.before):
            layer.input_grad = value


class EpochTable:
    """Prints the per-epoch table under the progress bar."""

    def __init__(self, with_validation):
        self.with_validation = with_validation
        head = f"{'epoch':>5}  {'train loss':>10}"
        if with_validation:
            head += f"  {'val loss':>9}  {'val acc':>8}"
        self.head = head + f"  {'seconds':>7}"
        self.printed_head = False

    def row(self, epoch, history):
        if not self.printed_head:
            tqdm.write(self.head)
            tqdm.write("-" * len(self.head))
            self.printed_head = True
        line = f"{epoch:>5}  {history.train_loss[-1]:>10.4f}"
        if self.with_validation:
            line += f"  {history.val_loss[-1]:>9.4f}  {100 * history.val_accuracy[-1]:>7.2f}%"
        tqdm.write(line + f"  {history.seconds[-1]:>7.2f}")
