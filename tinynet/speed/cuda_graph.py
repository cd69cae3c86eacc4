"""The whole training step captured as a CUDA graph and replayed: one launch per step.

Used by ``fit(..., fast=True, cuda_graph=True)``. On a GPU a small model's step is launch-bound: the
forward, the loss, the backward and the SGD update are some thirty kernels of a few
microseconds each, and launching each from Python costs more than running it. CUDA can
record the kernels a stream receives (stream capture) into a graph and launch the whole
graph at once; the graph keeps every kernel's arguments, pointers included. So:

1. The first full-size step runs as usual (it creates the momentum buffers, compiles the
   kernels, builds their pointer tables).
2. The second runs on our capture stream with our private memory pool, which leaves that
   pool holding exactly the blocks one step needs.
3. The same Python step — the very layer code of eager training — is then run once while the
   stream is captured, with static input buffers ``x_static``, ``y_static``: nothing
   executes, the graph records what would. Its temporaries come from the private pool, so no
   eager array can later land in memory the graph writes; its output (the loss) stays ours.
4. Every further step with that shape copies its batch into the static buffers, launches
   the graph and copies the graph's loss into a log: three device operations.

A step of another shape (the last, smaller batch of an epoch) runs eagerly. Anything the
graph baked in that can change — a Python scalar such as the learning rate, a parameter or
buffer replaced by a new array — is compared before each launch, and the step is captured
again when it changed (a cosine schedule recaptures once per epoch).

Limits, checked up front: SGD only (Adam's bias correction changes every step and would be
frozen), no Dropout (its masks must change every step), the model accelerated
(:func:`tinynet.speed.accelerate`: CuPy's own matrix product refuses to run during a
capture; ours, in :mod:`.blas`, does not).
"""

from ..layers import Dropout, Linear
from ..optim import SGD
from .registry import capture_scope

LOG_SIZE = 1024  # loss slots per log array


def check_capturable(model, optimizer, where="fit"):
    """Refuse, with the reason, a model and optimizer whose step a graph cannot replay faithfully."""
    if not isinstance(optimizer, SGD):
        raise ValueError(
            f"{where}: cuda_graph=True supports SGD only, got {type(optimizer).__name__}: its per-step "
            "bias correction would be frozen into the graph; use cuda_graph=False"
        )
    if any(isinstance(m, Dropout) for m in model.modules()):
        raise ValueError(
            f"{where}: cuda_graph=True cannot replay Dropout (its mask must change every step); "
            "use cuda_graph=False"
        )
    params = model.parameters()
    if not params or not type(params[0].data).__module__.startswith("cupy"):
        raise ValueError(
            f"{where}: cuda_graph=True needs the model on the GPU: call model.to('cupy') and pass x and y "
            "as CuPy arrays (tinynet.to_device(x, 'cupy'))"
        )
    if any(type(m) is Linear and "forward" not in vars(m) for m in model.modules()):
        raise ValueError(f"{where}: cuda_graph=True needs the fused kernels: call tinynet.speed.accelerate(model, "
                         "loss, optimizer) first (fit(..., fast=True) does)")
    from . import blas

    if blas.problem() is not None:
        raise RuntimeError(f"{where}: cuda_graph=True needs tinynet's own cuBLAS handle, but {blas.problem()}")


class CapturedStep:
    """``step(xb, yb) -> loss``: one training step, replayed from a CUDA graph when it can be.

    Parameters
    ----------
    model, loss, optimizer
        As for ``fit``; the model's parameters must be CuPy arrays and the optimizer SGD.
    train_step : callable
        ``train_step(xb, yb) -> loss``, the eager step (forward, loss, zero_grad, backward,
        optimizer step). It is what gets captured, so graph and eager run the same code.

    Returns of ``step``: a 0-d CuPy array holding that step's loss (for replays, a slot of a
    log that later steps do not overwrite).
    """

    def __init__(self, model, loss, optimizer, train_step):
        check_capturable(model, optimizer)
        import cupy

        self.cupy = cupy
        self.model, self.loss, self.optimizer, self.train_step = model, loss, optimizer, train_step
        self.stream = cupy.cuda.Stream(non_blocking=True)  # capture cannot happen on the legacy stream
        self.pool = cupy.cuda.MemoryPool()  # the graph's own memory: nothing eager is ever put there
        self.key = None  # shapes and dtypes of the batch the graph takes
        self.warm_steps = 0
        self.graph = self.output = self.signature = None
        self.inputs = None  # (x_static, y_static)
        self.log, self.log_used = None, 0
        self.captures = 0  # how often the step was captured (recaptures included)

    # -- the step --------------------------------------------------------------
    def __call__(self, xb, yb):
        key = (xb.shape, xb.dtype, yb.shape, yb.dtype)
        if self.key is None:
            self.key = key
        if key != self.key:  # the smaller last batch of an epoch
            return self.train_step(xb, yb)
        if self.warm_steps == 0:
            self.warm_steps = 1
            return self.train_step(xb, yb)
        if self.warm_steps == 1:
            self.warm_steps = 2
            return self._on_capture_stream(lambda: self.train_step(xb, yb))
        signature = self._signature()
        if self.graph is None or signature != self.signature:
            self._capture(signature)
        return self._replay(xb, yb)

    def _on_capture_stream(self, run):
        """Run ``run()`` on the capture stream with the private pool, ordered after and before
        the caller's stream."""
        cupy = self.cupy
        caller = cupy.cuda.get_current_stream()
        self.stream.wait_event(caller.record())
        try:
            with self.stream, cupy.cuda.using_allocator(self.pool.malloc):
                return run()
        finally:
            caller.wait_event(self.stream.record())

    def _capture(self, signature):
        cupy = self.cupy
        cupy.cuda.runtime.deviceSynchronize()  # nothing in flight may touch what is recorded
        if self.inputs is None:
            shape_x, dtype_x, shape_y, dtype_y = self.key
            self.inputs = (cupy.zeros(shape_x, dtype_x), cupy.zeros(shape_y, dtype_y))
        self.graph = self.output = None  # the old graph's blocks go back to the private pool
        x_static, y_static = self.inputs
        from . import blas

        with self.stream:
            blas.handle()  # bind our cuBLAS handle to the capture stream while binding is allowed
        with self.stream, cupy.cuda.using_allocator(self.pool.malloc), capture_scope():
            self.stream.begin_capture()
            try:
                output = self.train_step(x_static, y_static)
            except BaseException as exc:
                try:
                    self.stream.end_capture()
                except Exception:  # an invalidated capture may refuse to end; the error above is the news
                    pass
                raise RuntimeError(
                    f"fit: could not capture the training step as a CUDA graph ({type(exc).__name__}: {exc}); "
                    "a layer may read values back to the host or copy from it, which a capture forbids; "
                    "train with cuda_graph=False"
                ) from exc
            graph = self.stream.end_capture()
        graph.upload(self.stream)  # instantiate now, not at the first launch
        self.stream.synchronize()
        self.graph, self.output, self.signature = graph, output, signature
        self.captures += 1

    def _replay(self, xb, yb):
        cupy = self.cupy
        stream = cupy.cuda.get_current_stream()
        x_static, y_static = self.inputs
        for static, batch in ((x_static, xb), (y_static, yb)):
            batch = cupy.ascontiguousarray(batch)
            static.data.copy_from_device_async(batch.data, batch.nbytes, stream)
        self.graph.launch(stream)
        return self._record(self.output, stream)

    def _record(self, value, stream):
        """Copy the graph's loss (rewritten by the next launch) into a log slot; return the slot."""
        cupy = self.cupy
        if self.log is None or self.log_used == len(self.log) or self.log.dtype != value.dtype:
            self.log, self.log_used = cupy.empty(LOG_SIZE, value.dtype), 0
        slot = self.log[self.log_used]
        self.log_used += 1
        slot.data.copy_from_device_async(value.data, value.nbytes, stream)
        return slot

    # -- what the graph baked in -------------------------------------------------
    def _signature(self):
        """Everything a replay would silently reuse: the addresses of every array the step
        touches, and the Python scalars of every layer and of the optimizer."""
        arrays = []
        for p in self.optimizer.params:
            arrays += [p.data, p.grad]
        arrays += [getattr(owner, attr) for _, owner, attr in self.model.named_buffers()]
        for state in self.optimizer.state:
            arrays += [v for v in state.values() if hasattr(v, "data")]
        scalars = [
            tuple((k, v) for k, v in vars(obj).items() if isinstance(v, (bool, int, float, str)))
            for obj in (*self.model.modules(), self.optimizer)
        ]
        return tuple(a.data.ptr for a in arrays), tuple(scalars)
