"""fit, evaluate and History: the training loop, with a tqdm progress bar and a per-epoch table."""

import json
import time
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from .backend import get_array_module, to_numpy
from .data.batching import minibatches
from .layers import BatchNorm


@dataclass
class History:
    """What a run of :func:`fit` measured.

    Attributes
    ----------
    step_loss : list of float
        Training loss of every step.
    train_loss : list of float
        Per epoch: mean training loss over its steps.
    val_loss, val_accuracy : list of float
        Per epoch, on the validation data (empty without validation).
    seconds : list of float
        Per epoch: wall time of the training steps (evaluation excluded).
    """

    step_loss: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def to_json(self, path):
        with open(path, "w") as f:
            json.dump(asdict(self), f, indent=1)

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            return cls(**json.load(f))


class Evaluation(NamedTuple):
    loss: float
    accuracy: float


def evaluate(model, loss, x, y, batch_size=1000):
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in eval mode.

    Each layer's train/eval mode is restored afterwards.
    """
    check_data("evaluate", x, y)
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


def check_data(where, x, y):
    if not hasattr(x, "shape") or not hasattr(y, "shape"):
        raise TypeError(f"{where}: expected arrays x and y, got {type(x).__name__} and {type(y).__name__}")
    if len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x)} examples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{where}: got no examples (x has shape {tuple(x.shape)})")


def fit(model, loss, optimizer, x, y, epochs, batch_size, validation=None, rng=None, progress=True,
        lr_schedule=None):
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
    """
    check_data("fit", x, y)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"fit: expected {name} to be a positive integer, got {value!r}")
    if x.dtype.kind != "f":
        raise TypeError(f"fit: expected floating-point features x, got dtype {x.dtype} (see tinynet.data.images_to_features)")
    params = model.parameters()
    xp = get_array_module(x)
    if params:
        x = xp.ascontiguousarray(x, dtype=params[0].data.dtype)
    rng = np.random.default_rng() if rng is None else rng
    history = History()
    table = EpochTable(validation is not None) if progress else None
    # a batch of one cannot be normalised: drop a trailing single example
    min_batch = 2 if any(isinstance(m, BatchNorm) for m in model.modules()) else 1
    for epoch in range(1, epochs + 1):
        model.train()
        if lr_schedule is not None:
            optimizer.lr = float(lr_schedule(epoch - 1))
        step_losses = []
        start = time.perf_counter()
        batches = minibatches(x, y, batch_size, rng, min_size=min_batch)
        total = -(-len(x) // batch_size)
        with tqdm(batches, total=total, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress, unit="batch") as bar:
            for step, (xb, yb) in enumerate(bar):
                step_loss = loss(model(xb), yb)
                optimizer.zero_grad()
                model.backward(loss.backward())
                optimizer.step()
                step_losses.append(step_loss)
                if progress and step % 50 == 0:
                    bar.set_postfix(loss=f"{float(step_loss):.4f}")
        seconds = time.perf_counter() - start
        losses = to_numpy(xp.stack([xp.asarray(s) for s in step_losses])).astype(float).tolist()
        history.step_loss.extend(losses)
        history.train_loss.append(float(np.mean(losses)))
        history.seconds.append(seconds)
        if validation is not None:
            val = evaluate(model, loss, *validation)
            history.val_loss.append(val.loss)
            history.val_accuracy.append(val.accuracy)
        if table is not None:
            table.row(epoch, history)
    return history


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
