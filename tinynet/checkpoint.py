"""Checkpoints: a model, its optimizer and its history in one ``.npz`` file.

    tinynet.save("run.npz", model, optimizer, history)
    info = tinynet.load("run.npz", model, optimizer)     # info.history, info.epoch, info.summary

The file is written under a temporary name in the same folder, flushed to disk and
renamed over the old one: a crash mid-write, even SIGKILL, leaves the previous
checkpoint whole (at worst a stray ``.run.npz.*.tmp`` file stays behind). Everything is
stored as arrays and JSON text, so loading never unpickles anything.

Layout (format 1): ``format``, ``summary`` (the model's summary table), ``model/<name>``
(the state_dict), ``rng/model/<name>`` (generators held by layers, e.g. Dropout's),
``optimizer`` (JSON: type, hyperparameters, parameter names, step count) with
``optimizer/<i>/<key>`` (momentum buffers, Adam moments), ``history`` (JSON),
``rng/fit`` (the state of fit's shuffling generator), ``epoch`` (epochs completed) and
``checksum`` (sha256 over every other entry's name, dtype, shape and bytes: a damaged or
cut-short file is refused instead of loading wrong numbers).
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

from .layer import Layer
from .state import describe_mismatch
from .optim import Optimizer

FORMAT_VERSION = 1


def _read_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# the temporary file is created private (0600); the checkpoint gets the usual permissions
_FILE_MODE = 0o666 & ~_read_umask()


@dataclasses.dataclass
class Checkpoint:
    """What :func:`load` read besides the arrays it put into the model and optimizer.

    Attributes
    ----------
    history : History or None
        As saved, or None if saved without one.
    epoch : int or None
        Epochs completed (set by ``fit``), or None.
    summary : str
        The summary table of the model that was saved.
    format : int
        The file's format version.
    """

    history: object
    epoch: object
    summary: str
    format: int


def save(path, model, optimizer=None, history=None, *, rng=None, epoch=None):
    """Write a checkpoint atomically: the old file at ``path`` survives any crash mid-write.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write, used as given (no suffix is added; ``.npz`` is the convention).
    model : Layer
        Its parameters and buffers (``state_dict``) and the states of generators its layers
        hold (Dropout's) are saved, with its summary.
    optimizer : Optimizer, optional
        Built on ``model.parameters()``; its momentum buffers or moments and step count are saved.
    history : History, optional
    rng : numpy.random.Generator, optional
        Its state is saved (``fit`` saves the generator that shuffles the data).
    epoch : int, optional
        Epochs completed (``fit`` saves it).
    """
    from .history import History

    path = _check_path("tinynet.save", path)
    _check_model_and_optimizer("tinynet.save", model, optimizer)
    if history is not None and not isinstance(history, History):
        raise TypeError(f"tinynet.save: expected history to be a tinynet.History, got {type(history).__name__}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"tinynet.save: expected rng to be a numpy.random.Generator, got {type(rng).__name__}")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0):
        raise ValueError(f"tinynet.save: expected epoch to be an integer >= 0, got {epoch!r}")
    arrays = {"format": np.array(FORMAT_VERSION), "summary": np.array(_summary(model))}
    arrays.update({"model/" + name: value for name, value in model.state_dict().items()})
    arrays.update({"rng/model/" + name: _json(g.bit_generator.state) for name, g in _generators(model)})
    if optimizer is not None:
        state = optimizer.state_dict()
        arrays["optimizer"] = _json({k: v for k, v in state.items() if k != "state"})
        for i, per_parameter in enumerate(state["state"]):
            arrays.update({f"optimizer/{i}/{key}": value for key, value in per_parameter.items()})
    if history is not None:
        arrays["history"] = _json(dataclasses.asdict(history))
    if rng is not None:
        arrays["rng/fit"] = _json(rng.bit_generator.state)
    if epoch is not None:
        arrays["epoch"] = np.array(int(epoch))
    arrays["checksum"] = np.array(_checksum(arrays))
    _write_atomically(path, arrays)


def load(path, model, optimizer=None, *, rng=None):
    """Load a checkpoint into ``model`` (and ``optimizer``, ``rng``); all or nothing.

    Parameters
    ----------
    path : str or os.PathLike
    model : Layer
        Must have the saved architecture: the same parameter and buffer names and shapes.
        Arrays go to the backend and dtype of the model's own.
    optimizer : Optimizer, optional
        Receives the saved optimizer state; its hyperparameters stay its own.
    rng : numpy.random.Generator, optional
        Receives the saved generator state (what ``fit`` saved with ``rng=``).

    Returns
    -------
    Checkpoint
        The history, the epochs completed, the saved model summary and the format version.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not a tinynet checkpoint, cut short or damaged (its checksum does not match), a newer
        format, or a different architecture (listing the missing, unexpected and wrongly
        shaped keys, and both summaries); the model, optimizer and rng are then unchanged.
    """
    from .history import History

    path = _check_path("tinynet.load", path)
    _check_model_and_optimizer("tinynet.load", model, optimizer)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"tinynet.load: expected rng to be a numpy.random.Generator, got {type(rng).__name__}")
    arrays = _read(path)
    version = int(arrays["format"])
    summary = str(arrays.get("summary", ""))
    model_state = _with_prefix(arrays, "model/")
    saved_generators = {name: json.loads(str(v)) for name, v in _with_prefix(arrays, "rng/model/").items()}
    _check_architecture(path, model, model_state, saved_generators, summary)

    fit_rng_state = None
    if rng is not None:
        if "rng/fit" not in arrays:
            raise ValueError(f"tinynet.load: {path} holds no generator state (it was saved without rng=)")
        fit_rng_state = json.loads(str(arrays["rng/fit"]))
        _check_generator(path, "rng", rng, fit_rng_state)
    if optimizer is not None:
        if "optimizer" not in arrays:
            raise ValueError(f"tinynet.load: {path} holds no optimizer state (it was saved without optimizer=)")
        state = json.loads(str(arrays["optimizer"]))
        state["state"] = [_with_prefix(arrays, f"optimizer/{i}/") for i in range(len(state["parameters"]))]
        try:
            optimizer.load_state_dict(state)  # checks everything before it changes anything
        except ValueError as exc:
            raise ValueError(f"tinynet.load: {path}: {exc}") from None
    # from here nothing can fail: every shape and generator kind has been checked
    model.load_state_dict(model_state)
    for name, generator in _generators(model):
        generator.bit_generator.state = saved_generators[name]
    if fit_rng_state is not None:
        rng.bit_generator.state = fit_rng_state

    history = None
    if "history" in arrays:
        saved = json.loads(str(arrays["history"]))
        history = History(**{f.name: saved[f.name] for f in dataclasses.fields(History) if f.name in saved})
    epoch = int(arrays["epoch"]) if "epoch" in arrays else None
    return Checkpoint(history=history, epoch=epoch, summary=summary, format=version)


# -- helpers -------------------------------------------------------------------------


def _check_path(where, path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: expected a file path (str or pathlib.Path), got {type(path).__name__}")
    return os.fspath(path)


def _check_model_and_optimizer(where, model, optimizer):
    if not isinstance(model, Layer):
        raise TypeError(
            f"{where}: expected model to be a tinynet Layer (a Graph, Sequential, ...), got {type(model).__name__}"
        )
    if optimizer is None:
        return
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"{where}: expected optimizer to be a tinynet optimizer (SGD, Adam), got {type(optimizer).__name__}"
        )
    own = {id(p) for p in model.parameters()}
    foreign = [p.name for p in optimizer.params if id(p) not in own]
    if foreign:
        raise ValueError(
            f"{where}: the optimizer holds {len(foreign)} parameter(s) that are not this model's "
            f"(build it with optimizer(model.parameters(), ...)): {foreign[:5]}"
        )


def _summary(model):
    return model.summary() if hasattr(model, "summary") else repr(model)


def _json(obj):
    # generator states may hold arrays (MT19937's key): store them as lists
    return np.array(json.dumps(obj, default=lambda o: o.tolist()))


def _with_prefix(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix) and "/" not in k[len(prefix):]}


def _generators(layer, prefix=""):
    """Yield ``(name, Generator)`` for generators held by layers (Dropout's ``rng``), depth first."""
    for attr, value in vars(layer).items():
        if isinstance(value, np.random.Generator):
            yield prefix + attr, value
    for name, child in layer.children():
        yield from _generators(child, prefix + name + ".")


def _check_generator(path, name, generator, state):
    kind = type(generator.bit_generator).__name__
    if state.get("bit_generator") != kind:
        raise ValueError(
            f"tinynet.load: {path} saved a {state.get('bit_generator')} generator for {name}, "
            f"but the one given is {kind}"
        )


def _check_architecture(path, model, model_state, saved_generators, summary):
    """Raise with every mismatched key and both summaries, before anything is changed."""
    expected = {name: tuple(v.shape) for name, v in model.state_dict().items()}
    got = {name: tuple(v.shape) for name, v in model_state.items()}
    generators = dict(_generators(model))
    expected.update({name: "generator" for name in generators})
    got.update({name: "generator" for name in saved_generators})
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = [
        f"{name}: model has {expected[name]}, checkpoint has {got[name]}"
        for name in expected
        if name in got and expected[name] != got[name]
    ]
    kinds = {name: type(g.bit_generator).__name__ for name, g in generators.items()}
    wrong += [
        f"{name}: model has a {kind} generator, checkpoint has {saved_generators[name].get('bit_generator')}"
        for name, kind in kinds.items()
        if name in saved_generators and saved_generators[name].get("bit_generator") != kind
    ]
    if not (missing or unexpected or wrong):
        return
    raise ValueError(
        f"tinynet.load: {path} was saved from a different architecture: " + describe_mismatch(missing, unexpected, wrong)
        + f"\nThe checkpoint's model:\n{summary}\nThis model:\n{_summary(model)}"
    )


def _checksum(arrays):
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _read(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"tinynet.load: no checkpoint at {path}")
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        raise ValueError(
            f"tinynet.load: {path} is not a readable tinynet checkpoint (not an .npz archive: "
            "another kind of file, or one cut short)"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
    except (OSError, ValueError, EOFError, NotImplementedError, zipfile.BadZipFile) as exc:
        raise ValueError(f"tinynet.load: {path} is not a readable tinynet checkpoint ({exc})") from None
    if "format" not in arrays:
        raise ValueError(
            f"tinynet.load: {path} is an .npz archive but not a tinynet checkpoint (it has no format "
            "version); write checkpoints with tinynet.save"
        )
    version = int(arrays["format"])
    if version > FORMAT_VERSION:  # before the checksum: a later format may sum otherwise
        raise ValueError(
            f"tinynet.load: {path} has checkpoint format {version}, this tinynet reads up to "
            f"{FORMAT_VERSION}; upgrade tinynet"
        )
    # np.load checks no CRC, and a damaged zip directory can silently drop entries: compare
    # everything read with the checksum written
    saved = str(arrays.pop("checksum", ""))
    if saved != _checksum(arrays):
        raise ValueError(
            f"tinynet.load: {path} is damaged: its checksum does not match its contents "
            "(the file was changed or corrupted after tinynet.save wrote it)"
        )
    return arrays


def _write_atomically(path, arrays):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"tinynet.save: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never a mix
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable; not possible on every OS
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def check_fit_options(checkpoint, resume):
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


def resume_fit(checkpoint, model, optimizer, rng, progress):
    """For ``fit(..., resume=True)``: load a checkpoint written by fit; ``(history, first epoch to run)``."""
    saved = load(checkpoint, model, optimizer, rng=rng)
    if saved.epoch is None or saved.history is None:
        raise ValueError(f"fit: {checkpoint} was not written by fit (it has no epoch or history); cannot resume from it")
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(f"resuming from {checkpoint} after epoch {saved.epoch}")
    return saved.history, saved.epoch + 1
