"""Matrix products through our own cuBLAS handle (ctypes), which a CUDA graph can capture.

CuPy's ``a @ b`` refuses to run while a stream is being captured ("calling cuBLAS API
during stream capture is currently unsupported": its binding calls ``cublasSetStream`` on
every call, and that call refuses). cuBLAS itself captures fine, so this module opens
the same ``libcublas`` that CuPy loaded, creates a handle of its own, binds it to a stream
*before* any capture starts and calls ``cublasSgemm_v2`` / ``cublasDgemm_v2`` directly.
It also lets the GEMM write the weight gradient itself: beta = 0 right after ``zero_grad``,
beta = 1 to add to it, instead of a product followed by an addition.

Row-major ``C = A @ B`` is, read as column-major memory, ``C^T = B^T @ A^T``: cuBLAS gets
B first. A C-contiguous operand is passed as is ("N"), an F-contiguous one (a transposed
view such as ``x.T``) as "T" with the other leading dimension.
"""

import ctypes
import os
import threading
import warnings

import cupy
import numpy as np

from .registry import capturing

WORKSPACE_BYTES = 32 << 20  # cuBLAS's recommendation for Hopper; given explicitly so capture never allocates
_OP_N, _OP_T = 0, 1
_STATUS = {1: "NOT_INITIALIZED", 3: "ALLOC_FAILED", 7: "INVALID_VALUE", 8: "ARCH_MISMATCH",
           11: "MAPPING_ERROR", 13: "EXECUTION_FAILED", 14: "INTERNAL_ERROR", 15: "NOT_SUPPORTED"}


class CublasUnavailableError(RuntimeError):
    """libcublas could not be opened through ctypes (CuPy itself may still work)."""


def _candidate_paths():
    """Paths of libcublas already mapped into this process (CuPy's), then plain sonames."""
    from cupy_backends.cuda.libs import cublas  # noqa: F401  -- makes CuPy load its libcublas

    seen = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if "/" in line else ""
                if os.path.basename(path).startswith("libcublas.so") and path not in seen:
                    seen.append(path)
    except OSError:  # no /proc (not Linux): fall back to the loader's search
        pass
    return seen + ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]


def _open_library():
    errors = []
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
            lib.cublasSgemm_v2  # noqa: B018  -- the symbol must be there
            return lib
        except (OSError, AttributeError) as exc:
            errors.append(f"{path}: {exc}")
    raise CublasUnavailableError("could not open libcublas through ctypes: " + "; ".join(errors))


def _declare(lib):
    vp, i = ctypes.c_void_p, ctypes.c_int
    lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
    lib.cublasSetStream_v2.argtypes = [vp, vp]
    for name in ("cublasSgemm_v2", "cublasDgemm_v2"):
        getattr(lib, name).argtypes = [vp, i, i, i, i, i, vp, vp, i, vp, i, vp, vp, i]
    if hasattr(lib, "cublasSetWorkspace_v2"):
        lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
    for name in ("cublasCreate_v2", "cublasSetStream_v2", "cublasSgemm_v2", "cublasDgemm_v2"):
        getattr(lib, name).restype = ctypes.c_int


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"cuBLAS {what} failed: CUBLAS_STATUS_{_STATUS.get(status, status)}")


class _Handle:
    """One cuBLAS handle per device, bound to one stream at a time, with its own workspace."""

    def __init__(self, lib):
        self.lib = lib
        self.handle = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)
        self.stream = None  # the CuPy stream the handle is bound to

    def bind(self, stream):
        """Bind to ``stream`` (no-op if bound already). Never during a capture."""
        if self.stream is not None and self.stream.ptr == stream.ptr:
            return
        if capturing():
            raise RuntimeError(
                "cuBLAS: a CUDA graph is being captured on a stream the handle was not bound to; "
                "run one eager step on the capture stream first (tinynet.cuda_graph does)"
            )
        if self.stream is not None:
            # work still queued on the old stream may use the workspace: order the new stream after it
            stream.wait_event(self.stream.record())
        _check(self.lib.cublasSetStream_v2(self.handle, stream.ptr), "cublasSetStream")
        if hasattr(self.lib, "cublasSetWorkspace_v2"):  # setStream resets the workspace to cuBLAS's own pool
            _check(self.lib.cublasSetWorkspace_v2(self.handle, self.workspace.data.ptr, WORKSPACE_BYTES),
                   "cublasSetWorkspace")
        self.stream = stream


_lock = threading.Lock()
_lib = None
_handles = {}


def handle():
    """The handle of the current device, bound to the current CuPy stream."""
    global _lib
    device = cupy.cuda.runtime.getDevice()
    h = _handles.get(device)
    if h is None:
        with _lock:
            if _lib is None:
                lib = _open_library()
                _declare(lib)
                _lib = lib
            h = _handles.get(device) or _Handle(_lib)
            _handles[device] = h
    h.bind(cupy.cuda.get_current_stream())
    return h


_checked = {}  # device -> None if our handle works and agrees with CuPy's matmul, else the reason


def problem():
    """None if our cuBLAS handle works on this device, else why not (checked once per device).

    The check opens the handle and compares its products with CuPy's ``a @ b`` for every
    operand layout, in float32 and float64, plain and accumulating. If it fails, ``gemm``
    falls back to CuPy's matmul (with a warning) and CUDA graphs are unavailable.
    """
    device = cupy.cuda.runtime.getDevice()
    if device not in _checked:
        if capturing():
            raise RuntimeError("cuBLAS: the handle must be checked before a capture (run one eager step first)")
        _checked[device] = _self_check()
        if _checked[device] is not None:
            warnings.warn(f"tinynet: {_checked[device]}; Linear falls back to CuPy's matmul and "
                          "fit(cuda_graph=True) is unavailable", RuntimeWarning, stacklevel=3)
    return _checked[device]


def available():
    """True if our own cuBLAS handle works (needed by CUDA-graph capture)."""
    return problem() is None


def _self_check():
    try:
        handle()
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            a = cupy.asarray(rng.standard_normal((5, 3)).astype(dtype))
            b = cupy.asarray(rng.standard_normal((3, 4)).astype(dtype))
            want = cupy.asnumpy(a @ b).astype(np.float64)
            for left in (a, cupy.asfortranarray(a)):
                for right in (b, cupy.asfortranarray(b)):
                    got = _ctypes_gemm(left, right)
                    if not np.allclose(cupy.asnumpy(got), want, rtol=1e-5, atol=1e-5):
                        return f"tinynet's own cuBLAS handle gives wrong products ({left.flags.f_contiguous=}, " \
                               f"{right.flags.f_contiguous=}, {dtype.__name__})"
            out = cupy.ones((5, 4), dtype)
            _ctypes_gemm(a, b, out, 1.0)
            if not np.allclose(cupy.asnumpy(out), want + 1, rtol=1e-5, atol=1e-5):
                return f"tinynet's own cuBLAS handle does not accumulate (beta = 1) correctly ({dtype.__name__})"
    except Exception as exc:  # a library that does not open, a symbol missing, a cuBLAS error
        return f"tinynet's own cuBLAS handle is unusable ({type(exc).__name__}: {exc})"
    return None


def _operand(a):
    """(array, op, leading dimension) for a row-major operand, see the module docstring."""
    if a.flags.c_contiguous:
        return a, _OP_N, a.shape[1]
    if a.flags.f_contiguous:
        return a, _OP_T, a.shape[0]
    a = cupy.ascontiguousarray(a)
    return a, _OP_N, a.shape[1]


def gemm(a, b, out=None, beta=0.0):
    """``out = a @ b + beta * out`` for 2-D float32 or float64 CuPy arrays.

    Parameters
    ----------
    a : cupy.ndarray, shape (M, K)
    b : cupy.ndarray, shape (K, N)
        Either may be a transposed view (``x.T``); other strides are copied first.
    out : cupy.ndarray, shape (M, N), optional
        C-contiguous, same dtype; written in place. A new array if omitted.
    beta : float
        0 overwrites ``out``, 1 accumulates into it.

    Returns
    -------
    cupy.ndarray, shape (M, N)
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm: expected (M, K) @ (K, N), got {tuple(a.shape)} @ {tuple(b.shape)}")
    if a.dtype != b.dtype or a.dtype.name not in ("float32", "float64"):
        raise TypeError(f"gemm: expected two float32 or two float64 arrays, got {a.dtype} and {b.dtype}")
    m, n = a.shape[0], b.shape[1]
    if out is not None and (out.shape != (m, n) or out.dtype != a.dtype or not out.flags.c_contiguous):
        raise ValueError(f"gemm: out must be a C-contiguous {a.dtype} array of shape {(m, n)}, "
                         f"got {out.dtype} {tuple(out.shape)}")
    if problem() is not None:  # CuPy's own product: fine eagerly, refused inside a capture
        product = a @ b
        if out is None:
            return product
        if beta:
            out *= beta
            out += product
        else:
            out[...] = product
        return out
    return _ctypes_gemm(a, b, out, beta)


def _ctypes_gemm(a, b, out=None, beta=0.0):
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out, beta = cupy.empty((m, n), a.dtype), 0.0
    a, op_a, lda = _operand(a)
    b, op_b, ldb = _operand(b)
    h = handle()
    scalar = ctypes.c_float if a.dtype.name == "float32" else ctypes.c_double
    alpha_value, beta_value = scalar(1.0), scalar(beta)  # host pointer mode: read at the call
    function = h.lib.cublasSgemm_v2 if a.dtype.name == "float32" else h.lib.cublasDgemm_v2
    status = function(h.handle, op_b, op_a, n, m, k, ctypes.addressof(alpha_value),
                      b.data.ptr, ldb, a.data.ptr, lda, ctypes.addressof(beta_value), out.data.ptr, n)
    _check(status, "gemm")
    return out
