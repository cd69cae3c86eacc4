"""tinynet.speed: fused implementations you opt into; the core never imports this package.

By default every layer runs the readable NumPy-API code in ``tinynet/layers``, on NumPy and
on CuPy alike. That code is correct everywhere and fast on a CPU; on a GPU it is
launch-bound (every ``+`` or ``.sum()`` is one CUDA kernel). This package holds what exists
only for speed — CUDA kernels, a cuBLAS wrapper, CUDA-graph capture, C kernels for NumPy
arrays and their compiler driver, a multi-tensor SGD update — and plugs it in from outside,
at one place::

    import tinynet.speed
    report = tinynet.speed.accelerate(model, loss, optimizer)   # or fit(..., fast=True)
    print(report)                                               # which object runs what
    tinynet.speed.restore(model, loss, optimizer)               # back to the plain code

:func:`accelerate` looks up each layer's *exact* class and backend in one table
(:data:`registry.FUSED`, filled by :mod:`.implementations`) and, where an implementation is
registered, replaces that instance's ``forward`` and ``backward`` (an optimizer's ``update``
or ``step``) with the fused ones. A subclass is never matched, so a student's or a user's
variant of a layer always runs its own code. docs/performance.md explains it, with one fused
kernel beside the plain code it replaces.
"""

from ..backend import backend_name
from . import conv, cpu, implementations  # noqa: F401  (registers the built-in implementations)
from .registry import FUSED, Fused, capturing, register

__all__ = ["accelerate", "restore", "fit_step", "register", "Fused", "FUSED", "capturing", "cpu_status"]


class Report(list):
    """What :func:`accelerate` did: ``[(name, object, implementation class), ...]``; prints as a table."""

    def __str__(self):
        if not self:
            return "speed: nothing to accelerate (no registered implementation for these classes and backend)"
        return "\n".join(f"speed: {name:<28} {type(obj).__name__:<20} -> {impl.__name__}" for name, obj, impl in self)


def _backend_of(model, optimizer):
    for owner in (model, optimizer):
        params = owner.parameters() if hasattr(owner, "parameters") and callable(owner.parameters) else \
            getattr(owner, "params", [])
        if params:
            return backend_name(params[0].data)
    return "numpy"


def _targets(model, loss, optimizer, also=()):
    named = [(type(obj).__name__, obj) for obj in also]
    if model is not None:
        named += [(name or type(model).__name__, layer) for name, layer in _named_modules(model)]
    if loss is not None:
        named.append(("loss", loss))
    if optimizer is not None:
        named.append(("optimizer", optimizer))
    return named


def _named_modules(layer, prefix=""):
    yield prefix, layer
    for name, child in layer.children():
        yield from _named_modules(child, f"{prefix}{name}." if prefix else f"{name}.")


def accelerate(model=None, loss=None, optimizer=None, backend=None, also=()):
    """Opt in: give every layer (and the loss, the optimizer) with a registered fused
    implementation for its exact class and backend that implementation; return a :class:`Report`.

    Parameters
    ----------
    model : Layer, optional
        Its layers, and itself, are looked up; a subclass of a built-in layer is not matched.
    loss, optimizer : optional
        Looked up the same way.
    backend : {"numpy", "cupy"}, optional
        Whose implementations to use; default: where the model's (else the optimizer's)
        parameters live, else "numpy". Move the model first, then accelerate: a fused
        method meeting arrays of another backend runs the plain code instead.

    also : sequence, optional
        Other objects to look up (fit passes its NaN guard, whose check has a fused version).

    Calling it again is harmless: an object already accelerated is re-bound.
    """
    backend = backend or _backend_of(model, optimizer)
    if backend not in ("numpy", "cupy"):
        raise ValueError(f"speed.accelerate: expected backend 'numpy' or 'cupy', got {backend!r}")
    report = Report()
    for name, obj in _targets(model, loss, optimizer, also):
        implementation = FUSED.get((type(obj), backend))
        if implementation is None:
            continue
        fused = implementation(obj)
        if not fused.usable():
            continue
        _unbind(obj)
        for method in implementation.methods:
            setattr(obj, method, getattr(fused, method))  # this instance only
        obj.__dict__["_speed"] = fused
        report.append((name.rstrip(".") or "model", obj, implementation))
    return report


def restore(model=None, loss=None, optimizer=None):
    """Undo :func:`accelerate`: every object runs its class's own (plain) methods again."""
    for _, obj in _targets(model, loss, optimizer):
        _unbind(obj)


def _unbind(obj):
    fused = obj.__dict__.pop("_speed", None)
    if fused is not None:
        for method in type(fused).methods:
            obj.__dict__.pop(method, None)
        fused.hand_over()  # a fused forward awaiting its backward: that backward now runs plain


def fit_step(model, loss, optimizer, step, cuda_graph=False, progress=False, guard=None):
    """What ``fit(..., fast=True)`` calls: accelerate (the NaN ``guard`` too), and return the step to
    run (``step`` itself, or with ``cuda_graph=True`` a :class:`.cuda_graph.CapturedStep` replaying it)."""
    report = accelerate(model, loss, optimizer, also=() if guard is None else (guard,))
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(f"fast path (tinynet.speed): {len(report)} objects accelerated")
    if not cuda_graph:
        return step
    from .cuda_graph import CapturedStep

    return CapturedStep(model, loss, optimizer, step)


def cpu_status():
    """A line saying whether the C kernels for NumPy arrays can be used here, and if not, why."""
    return cpu.status()
