"""A stand-in "cupy" for machines without a GPU: NumPy arrays, CUDA kernels run on the CPU.

It is just enough of CuPy for tinynet's GPU code paths to run end to end where there is no
GPU, so that the Python around the kernels (argument order, pointer tables, the CUDA-graph
bookkeeping of tinynet.speed.cuda_graph) is exercised, not only the kernels themselves:

- ``ndarray`` is a NumPy array whose type says "cupy", with ``.data.ptr`` and ``.get()``;
- ``RawModule`` compiles the CUDA C with tests/cuda_cpu.py and runs it on the CPU;
- streams, events, memory pools and the allocator switch are inert;
- stream capture is emulated faithfully where it matters: while a stream captures, kernel
  launches, ufuncs, ``fill``, item assignment and device copies are *recorded* (with the very arrays they were given,
  as a CUDA graph keeps pointers) instead of run, ``zeros`` records its fill, and any read
  back to the host raises, as on a GPU. ``Graph.launch`` replays the record.

What it cannot show: GPU speed, real memory-pool reuse, cuBLAS, or GPU rounding.
"""

import contextlib
import sys
import time
import types

import numpy as np

import cuda_cpu

_recording = None  # a list while a stream captures


class _Pointer:
    def __init__(self, array):
        self.array = array
        self.ptr = array.ctypes.data

    def copy_from_device_async(self, src, size, stream=None):
        dst_array, src_array = self.array, src.array

        def copy():
            np.frombuffer(_bytes(dst_array), np.uint8, size)[...] = np.frombuffer(_bytes(src_array), np.uint8, size)

        _run_or_record(copy)


def _bytes(a):
    return np.ndarray(a.nbytes, np.uint8, buffer=np.asarray(a).data) if a.nbytes else np.empty(0, np.uint8)


def _run_or_record(action):
    if _recording is None:
        action()
    else:
        _recording.append(action)


class ndarray(np.ndarray):
    """A NumPy array posing as a CuPy one (``type(a).__module__ == "cupy"``)."""

    @property
    def data(self):
        return _Pointer(self)

    def get(self):
        _no_host_read("get()")
        return np.array(self, copy=True).view(np.ndarray)

    def __float__(self):
        _no_host_read("float()")
        return float(np.asarray(self).view(np.ndarray))

    def __int__(self):
        _no_host_read("int()")
        return int(np.asarray(self).view(np.ndarray))

    def __bool__(self):
        _no_host_read("bool()")
        return bool(np.asarray(self).view(np.ndarray))

    def fill(self, value):  # a kernel on a GPU (zero_grad's): recorded during a capture
        target = self.view(np.ndarray)
        _run_or_record(lambda: target.fill(value))

    def __setitem__(self, key, value):  # a kernel or a copy on a GPU: recorded during a capture
        target = self.view(np.ndarray)
        source = value.view(np.ndarray) if isinstance(value, ndarray) else value
        _run_or_record(lambda: target.__setitem__(key, source))

    def __getitem__(self, key):  # CuPy returns 0-d arrays where NumPy returns scalars
        key = key if isinstance(key, tuple) else (key,)
        if not any(k is Ellipsis for k in key):
            key = key + (Ellipsis,)
        return super().__getitem__(key)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        plain = [np.asarray(a).view(np.ndarray) if isinstance(a, ndarray) else a for a in inputs]
        if out is not None:
            outs = tuple(np.asarray(o).view(np.ndarray) for o in out)

            def run():
                getattr(ufunc, method)(*plain, out=outs, **kwargs)

            _run_or_record(run)
            return out[0] if len(out) == 1 else out
        result = getattr(ufunc, method)(*plain, **kwargs)  # allocates the output (its values are replayed)
        if not isinstance(result, np.ndarray):
            result = np.asarray(result)
        result = result.view(ndarray)
        if _recording is not None:
            target = np.asarray(result).view(np.ndarray)

            def replay():
                target[...] = getattr(ufunc, method)(*plain, **kwargs)

            _recording.append(replay)
        return result


ndarray.__module__ = "cupy"


def _no_host_read(what):
    if _recording is not None:
        raise RuntimeError(f"fake cupy: {what} reads a device value back while a stream is capturing")


def _wrap(value):
    if isinstance(value, np.ndarray) and not isinstance(value, ndarray):
        return value.view(ndarray)
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap(v) for v in value)
    return value


_ALLOCATIONS = {"empty", "empty_like", "ascontiguousarray"}  # no arithmetic: safe while capturing


def _numpy_function(name):
    function = getattr(np, name)
    if not callable(function) or isinstance(function, type):
        return function
    if isinstance(function, np.ufunc):  # fake arrays route it through ndarray.__array_ufunc__
        return lambda *args, **kwargs: _wrap(function(*args, **kwargs))

    def wrapped(*args, **kwargs):
        if _recording is not None and name not in _ALLOCATIONS:
            raise RuntimeError(f"fake cupy: numpy.{name} while capturing is not emulated (it would run now)")
        return _wrap(function(*args, **kwargs))

    return wrapped


def _zeros(shape, dtype=float):
    a = np.empty(shape, dtype).view(ndarray)
    target = np.asarray(a).view(np.ndarray)

    def fill():
        target[...] = 0

    target[...] = 0
    if _recording is not None:
        _recording.append(fill)
    return a


def _asarray(a, dtype=None, copy=False):
    """A copy "to the device", except for a fake array of the right dtype (as cupy.asarray)."""
    if isinstance(a, ndarray) and not copy and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    host = np.asarray(a).view(np.ndarray) if isinstance(a, ndarray) else a
    return np.array(host, dtype=dtype, copy=True).view(ndarray)


# -- cupy.cuda ---------------------------------------------------------------------------


class Event:
    """Work runs at once here, so an event's time is the host clock's when it is recorded."""

    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        pass


def get_elapsed_time(start, end):
    """Milliseconds between two recorded events, as cupy.cuda.get_elapsed_time."""
    return 1000 * (end.time - start.time)


class Stream:
    _current = None

    def __init__(self, null=False, non_blocking=False, ptr=None):
        self.ptr = 0 if null else id(self)
        self._previous = []

    def __enter__(self):
        self._previous.append(Stream._current)
        Stream._current = self
        return self

    def __exit__(self, *exc):
        Stream._current = self._previous.pop()

    def record(self, event=None):
        return event or Event()

    def wait_event(self, event):
        pass

    def synchronize(self):
        pass

    def begin_capture(self, mode=None):
        global _recording
        if self.ptr == 0:
            raise RuntimeError("fake cupy: cannot capture the null stream")
        if _recording is not None:
            raise RuntimeError("fake cupy: a capture is already running")
        _recording = []
        self._capturing = True

    def end_capture(self):
        global _recording
        graph, _recording = Graph(_recording), None
        return graph

    def is_capturing(self):
        return _recording is not None


Stream.null = Stream(null=True)
Stream._current = Stream.null


class Graph:
    def __init__(self, actions):
        self.actions = actions
        self.launches = 0

    def upload(self, stream=None):
        pass

    def launch(self, stream=None):
        if _recording is not None:
            raise RuntimeError("fake cupy: launching a graph inside a capture")
        self.launches += 1
        for action in self.actions:
            action()


class MemoryPool:
    def malloc(self, size):
        raise AssertionError("fake cupy: the pool is only passed to using_allocator")


class _Device:
    def __init__(self, device_id=0):
        self.id = device_id
        self.attributes = {"MultiProcessorCount": 4}


class _Function:
    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, grid, block, args, **kwargs):
        args = tuple(np.asarray(a).view(np.ndarray) if isinstance(a, ndarray) else a for a in args)
        _run_or_record(lambda: self.module.launch(self.name, grid, block, *args))


class RawModule:
    build_dir = None

    def __init__(self, code, options=()):
        first, source = code.split("\n", 1)
        dtype = {"typedef float T;": np.float32, "typedef double T;": np.float64}[first.strip()]
        self.module = cuda_cpu.Module(source, dtype, RawModule.build_dir)

    def get_function(self, name):
        if name not in self.module.kernels:
            raise AttributeError(f"fake cupy: no kernel {name}")
        return _Function(self.module, name)


class _Generator:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64):
        return self.rng.random(size, dtype=dtype).view(ndarray)


def _make_module():
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "fake"
    cupy.ndarray = ndarray
    cupy.RawModule = RawModule
    cupy.zeros = _zeros
    cupy.asarray = _asarray
    cupy.get_default_memory_pool = lambda: types.SimpleNamespace(free_all_blocks=lambda: None)
    cupy.array = lambda a, dtype=None: _asarray(a, dtype, copy=True)
    cupy.zeros_like = lambda a, dtype=None: _zeros(a.shape, dtype or a.dtype)
    cupy.__getattr__ = _numpy_function
    cuda = types.ModuleType("cupy.cuda")
    cuda.Stream, cuda.Event, cuda.Graph, cuda.MemoryPool, cuda.Device = Stream, Event, Graph, MemoryPool, _Device
    cuda.get_current_stream = lambda: Stream._current
    cuda.get_elapsed_time = get_elapsed_time
    cuda.using_allocator = lambda allocator=None: contextlib.nullcontext()
    runtime = types.SimpleNamespace(getDevice=lambda: 0, getDeviceCount=lambda: 1, deviceSynchronize=lambda: None)
    cuda.runtime = runtime
    cupy.cuda = cuda
    cupy.random = types.SimpleNamespace(default_rng=_Generator)
    return cupy


def _fake_gemm(a, b, out=None, beta=0.0):
    """tinynet.speed.blas.gemm on NumPy: out = a @ b + beta * out, recorded during a capture."""
    a_, b_ = np.asarray(a).view(np.ndarray), np.asarray(b).view(np.ndarray)
    if out is None:
        out, beta = np.empty((a.shape[0], b.shape[1]), a.dtype).view(ndarray), 0.0
    target = np.asarray(out).view(np.ndarray)

    def run():
        target[...] = a_ @ b_ + (beta * target if beta else 0)

    _run_or_record(run)
    return out


# the modules of tinynet.speed that import cupy when they are imported: imported afresh under the
# fake, and put back afterwards. The registry (its capture flag), the implementations (the table),
# cpu and cuda_graph import no cupy at import time and stay as they are.
GPU_MODULES = ("_cuda", "activations", "batchnorm", "blas", "dropout", "linear", "optim", "softmax_ce")


@contextlib.contextmanager
def installed(build_dir):
    """Within the block, ``import cupy`` gives the fake and tinynet's GPU paths use it."""
    import tinynet.speed as speed

    names = [f"tinynet.speed.{m}" for m in GPU_MODULES]
    RawModule.build_dir = build_dir
    saved = {name: sys.modules.pop(name) for name in ["cupy", *names] if name in sys.modules}
    submodules = {m: vars(speed).pop(m) for m in GPU_MODULES if m in vars(speed)}  # ``from . import blas`` reads
    sys.modules["cupy"] = _make_module()  # the package attribute: drop it so the imports are fresh
    try:
        from tinynet.speed import blas

        blas.real_gemm, blas.gemm = blas.gemm, _fake_gemm
        blas.handle = lambda: None
        blas.real_problem, blas.problem = blas.problem, lambda: None  # the real check would find no cuBLAS
        yield sys.modules["cupy"]
    finally:
        global _recording
        _recording = None
        for name in ["cupy", *names]:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        for m in GPU_MODULES:
            vars(speed).pop(m, None)  # imported under the fake
        vars(speed).update(submodules)  # the package attributes point at the real submodules again
