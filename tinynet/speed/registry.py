"""The one place fused implementations plug in: a table keyed by (exact class, backend).

A fused implementation is a class whose constructor takes the layer (loss, optimizer) it
speeds up and whose methods replace that object's own, on that one instance, when a user
opts in with :func:`tinynet.speed.accelerate`::

    @register(ReLU, "numpy")
    class CpuReLU(Fused):
        def forward(self, x): ...
        def backward(self, dy): ...

The key is the exact class: a subclass (a lab's student layer, a user's variant) is never
looked up under its parent, so it always runs its own forward and backward.
"""

import contextlib
import threading

FUSED = {}  # (class, backend) -> implementation class


def register(cls, backend):
    """Class decorator: the decorated class speeds up exact instances of ``cls`` on ``backend``."""
    if backend not in ("numpy", "cupy"):
        raise ValueError(f"speed.register: expected backend 'numpy' or 'cupy', got {backend!r}")

    def decorate(implementation):
        FUSED[cls, backend] = implementation
        return implementation

    return decorate


class Fused:
    """Base of the fused implementations: holds the object it speeds up, and its plain methods.

    ``self.plain`` is the class the object belongs to: ``self.plain.forward(self.layer, x)``
    runs the readable code, which a fused method falls back to for arrays its kernel cannot
    take (another dtype, eval mode, a setting it does not cover).
    """

    methods = ("forward", "backward")  # the methods this implementation replaces

    def __init__(self, owner):
        self.layer = owner
        self.plain = type(owner)

    def usable(self):
        """False when this implementation cannot run here at all (no compiler, no GPU kernels)."""
        return True

    def plain_saved(self, saved):
        """What the plain forward would have saved, from what this implementation's forward saved
        (its tag removed): handed to the plain backward when it runs after a fused forward (the
        object restored, or a ``dy`` the kernel does not take). The default: the same values."""
        return saved

    def owns_pending(self):
        """True when the pending forward of the object was this implementation's (its save is tagged with it)."""
        saved = self.layer.__dict__.get("_saved")
        return bool(saved) and saved[0] is self

    def hand_over(self):
        """Turn a pending save of this implementation's forward into the plain layout, for the plain
        backward that runs instead (after :func:`tinynet.speed.restore`, or for a ``dy`` it does not take)."""
        if self.owns_pending():
            self.layer._saved = tuple(self.plain_saved(self.layer._saved[1:]))


class _State(threading.local):
    capture_depth = 0  # > 0 while cuda_graph records a training step


_state = _State()


def capturing():
    """True while a training step is being recorded as a CUDA graph (see :mod:`.cuda_graph`).

    Code that would read a value back to the host (a sync) or copy from the host must not
    run then: the recording would not contain it, or would fail.
    """
    return _state.capture_depth > 0


@contextlib.contextmanager
def capture_scope():
    """Mark this thread as recording a CUDA graph (used by :mod:`.cuda_graph` only)."""
    _state.capture_depth += 1
    try:
        yield
    finally:
        _state.capture_depth -= 1
