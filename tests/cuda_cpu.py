"""Run tinynet's CUDA C kernels on the CPU, to test their logic where there is no GPU.

The blocks of a launch run one after another, so ``__shared__`` arrays can be plain
statics. A kernel without ``__syncthreads()`` runs its threads in turn; in one with it,
each CUDA thread is a coroutine (ucontext) on one OS thread, and ``__syncthreads()``
yields to a scheduler that runs every other thread of the block up to the same barrier. The kernel source is compiled unchanged (``typedef float T;`` in
front, as on the GPU) with g++. Only what tinynet's kernels use is emulated: dim3
indices, shared memory, block barriers, the math functions. Rounding differs from the GPU
(no fused multiply-add unless the compiler picks it, libm's exp), so results are compared
with a tolerance; indexing, reductions and formulas are what this checks.
"""

import ast
import ctypes
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

PRELUDE = r"""
#include <cmath>
#include <functional>
#include <ucontext.h>
#include <vector>
using namespace std;
struct dim3 { unsigned x = 1, y = 1, z = 1; };
dim3 threadIdx, blockIdx, blockDim, gridDim;
// The threads of a block are coroutines on one OS thread: __syncthreads() hands control back
// to the scheduler, which runs every other thread of the block up to the same barrier.
static ucontext_t scheduler;
static std::vector<ucontext_t> contexts;
static std::vector<char> done;
static unsigned running;
static std::function<void()> body;
inline void __syncthreads() { swapcontext(&contexts[running], &scheduler); }
#define __global__
#define __launch_bounds__(...)
#define __device__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
"""

LAUNCHER = r"""
static void trampoline() {
    body();
    done[running] = 1;  // returning resumes the scheduler (uc_link)
}

// A kernel without __syncthreads: its threads cannot see each other, so run them in turn.
template <typename... Params, typename... Args>
void launch_serial(void (*kernel)(Params...), unsigned gx, unsigned gy, unsigned bx, unsigned by, Args... args) {
    gridDim = {gx, gy, 1};
    blockDim = {bx, by, 1};
    for (unsigned j = 0; j < gy; ++j)
        for (unsigned i = 0; i < gx; ++i)
            for (unsigned ty = 0; ty < by; ++ty)
                for (unsigned tx = 0; tx < bx; ++tx) {
                    blockIdx = {i, j, 0};
                    threadIdx = {tx, ty, 0};
                    kernel(args...);
                }
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), unsigned gx, unsigned gy, unsigned bx, unsigned by, Args... args) {
    const size_t stack_size = 64 * 1024;
    const unsigned n = bx * by;
    static std::vector<char> stacks;
    stacks.resize(n * stack_size);
    contexts.resize(n);
    done.assign(n, 0);
    gridDim = {gx, gy, 1};
    blockDim = {bx, by, 1};
    body = [=] { kernel(args...); };
    for (unsigned j = 0; j < gy; ++j)
        for (unsigned i = 0; i < gx; ++i) {
            blockIdx = {i, j, 0};
            done.assign(n, 0);
            for (unsigned t = 0; t < n; ++t) {
                getcontext(&contexts[t]);
                contexts[t].uc_stack.ss_sp = stacks.data() + t * stack_size;
                contexts[t].uc_stack.ss_size = stack_size;
                contexts[t].uc_link = &scheduler;
                makecontext(&contexts[t], trampoline, 0);
            }
            for (bool left = true; left;) {  // one round: every thread up to its next barrier
                left = false;
                for (unsigned t = 0; t < n; ++t) {
                    if (done[t]) continue;
                    running = t;
                    threadIdx = {t % bx, t / bx, 0};
                    swapcontext(&scheduler, &contexts[t]);
                    left = left || !done[t];
                }
            }
        }
}
"""

SIGNATURE = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(([^)]*)\)', re.S)
C_SCALARS = {"long long": ctypes.c_longlong, "int": ctypes.c_int}


def available():
    """True if g++ is on PATH (and this is a POSIX system with ucontext)."""
    return shutil.which("g++") is not None


def source_of(module_path):
    """The ``SOURCE`` string of a kernel module, read without importing it (it imports CuPy).

    ``SOURCE`` may add up string literals and string constants of the module itself or of
    ``_cuda.py`` beside it (``SOURCE = BLOCK_COLUMN_TOTAL + r"..."``).
    """
    module_path = Path(module_path)
    constants = {}
    for path in (module_path.with_name("_cuda.py"), module_path):
        if path.exists():
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        constants[node.targets[0].id] = _string_value(node.value, constants)
                    except ValueError:
                        pass  # not a string constant
    if "SOURCE" in constants:
        return constants["SOURCE"]
    raise ValueError(f"{module_path}: no SOURCE string")


def _string_value(node, constants):
    """A string literal, a name of one already read, or a sum of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _string_value(node.left, constants) + _string_value(node.right, constants)
    raise ValueError("not a string constant")


DEVICE_FUNCTION = re.compile(r"__device__ (?:__forceinline__ )?[\w*& ]+?(\w+)\(")


def _barriers(source):
    """What a kernel body may contain that waits at a block barrier: ``__syncthreads`` itself,
    or a call to a ``__device__`` function of the source that waits (such a kernel needs
    threads that can pause: the coroutine launcher)."""
    names = DEVICE_FUNCTION.findall(source)
    pieces = DEVICE_FUNCTION.split(source)[2::2]  # the text after each device function's name
    bodies = {name: piece.split('extern "C"')[0] for name, piece in zip(names, pieces)}
    barriers = ["__syncthreads"]
    while True:  # a function that calls one that waits waits too
        more = [f"{name}(" for name, body in bodies.items()
                if f"{name}(" not in barriers and any(b in body for b in barriers)]
        if not more:
            return barriers
        barriers += more


def _parameters(text):
    """[(C type, name)] of a kernel's parameter list."""
    params = []
    for part in " ".join(text.split()).split(","):
        part = part.strip()
        name = re.findall(r"(\w+)\s*$", part)[0]
        params.append((part[: -len(name)].strip(), name))
    return params


class Module:
    """The kernels of one CUDA source, compiled for the CPU with T = ``dtype``."""

    def __init__(self, source, dtype, build_dir):
        self.dtype = np.dtype(dtype)
        c_type = {"float32": "float", "float64": "double"}[self.dtype.name]
        self.kernels = {name: _parameters(params) for name, params in SIGNATURE.findall(source)}
        bodies = dict(zip(self.kernels, SIGNATURE.split(source)[3::3]))  # the text after each signature
        wrappers = []
        barriers = _barriers(source)
        for name, params in self.kernels.items():
            declared = ", ".join(f"{t} {n}" for t, n in params)
            passed = ", ".join(n for _, n in params)
            waits = any(barrier in bodies[name] for barrier in barriers)
            launcher = "launch" if waits else "launch_serial"
            wrappers.append(
                f'extern "C" void run_{name}(unsigned gx, unsigned gy, unsigned bx, unsigned by, {declared}) '
                f"{{ {launcher}({name}, gx, gy, bx, by, {passed}); }}"
            )
        code = f"{PRELUDE}\ntypedef {c_type} T;\n{source}\n{LAUNCHER}\n" + "\n".join(wrappers) + "\n"
        digest = hashlib.sha256(code.encode()).hexdigest()[:16]
        build_dir = Path(build_dir)
        library = build_dir / f"kernels_{digest}.so"
        if not library.exists():
            cpp = build_dir / f"kernels_{digest}.cpp"
            cpp.write_text(code)
            subprocess.run(["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-o", str(library), str(cpp)],
                           check=True, capture_output=True, text=True)
        self.library = ctypes.CDLL(str(library))

    def _convert(self, c_type, value):
        if "*" in c_type:
            if not isinstance(value, np.ndarray) or not value.flags.c_contiguous:
                raise TypeError(f"expected a C-contiguous numpy array for {c_type}, got {type(value).__name__}")
            return ctypes.c_void_p(value.ctypes.data)
        if c_type in ("T", "const T"):
            return (ctypes.c_float if self.dtype.name == "float32" else ctypes.c_double)(value)
        return C_SCALARS[c_type.replace("const ", "")](value)

    def launch(self, name, grid, block, *args):
        """Run kernel ``name`` like ``kernel(grid, block, args)`` in CuPy; arrays are written in place."""
        params = self.kernels[name]
        if len(args) != len(params):
            raise TypeError(f"{name}: expected {len(params)} arguments, got {len(args)}")
        grid, block = (tuple(grid) + (1,))[:2], (tuple(block) + (1,))[:2]
        converted = [self._convert(t, a) for (t, _), a in zip(params, args)]
        getattr(self.library, f"run_{name}")(*(ctypes.c_uint(v) for v in grid + block), *converted)


def pointer_table(arrays):
    """A uint64 array of the arrays' addresses: what ``T* const*`` parameters take."""
    return np.array([a.ctypes.data for a in arrays], dtype=np.uint64)
