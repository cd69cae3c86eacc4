"""What every fused kernel needs: CUDA C compiled once per dtype, launch sizes, contiguity.

Each kernel file holds its CUDA C source as a string written for a type ``T``; ``kernel()``
compiles it with ``typedef float T;`` or ``typedef double T;`` in front (CuPy caches the
binary on disk too). All kernels use grid-stride loops, so any grid size is correct and the
sizes chosen here only matter for speed.
"""

import functools

import cupy
import numpy as np

C_TYPES = {"float32": "float", "float64": "double"}
ROW_THREADS = 256  # threads along a row in the row-blocked elementwise kernels


@functools.lru_cache(maxsize=None)
def _module(source, dtype_name, options):
    return cupy.RawModule(code=f"typedef {C_TYPES[dtype_name]} T;\n{source}", options=options)


@functools.lru_cache(maxsize=None)
def kernel(source, dtype, name, options=()):
    """The compiled ``__global__`` function ``name`` of ``source`` with T = dtype's C type."""
    dtype = np.dtype(dtype)
    if dtype.name not in C_TYPES:
        raise TypeError(f"fused kernel {name}: expected float32 or float64, got {dtype}")
    return _module(source, dtype.name, tuple(options)).get_function(name)


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_id):
    return cupy.cuda.Device(device_id).attributes["MultiProcessorCount"]


def flat_grid(n, threads=256):
    """Blocks for a grid-stride loop over n elements: enough to fill the GPU, no more."""
    limit = 8 * _multiprocessors(cupy.cuda.runtime.getDevice())
    return (max(1, min(-(-n // threads), limit)),)


def row_launch(n, c):
    """(grid, block) for the row-blocked kernels: a block walks rows, its threads walk a row's c entries."""
    threads = min(ROW_THREADS, 32 * -(-c // 32))
    return (max(1, min(n, 65535)),), (threads,)


def column_grid(c):
    """(grid, block) for the column reductions: 32 x 32 threads own 32 columns each."""
    return (-(-c // 32),), (32, 32)


def contiguous(*arrays):
    """The arrays, C-contiguous (a copy only where one is not)."""
    return tuple(a if a.flags.c_contiguous else cupy.ascontiguousarray(a) for a in arrays)


def scalar(dtype, value):
    """``value`` as a scalar of the kernel's T, so CuPy passes it with the right C type."""
    return np.dtype(dtype).type(value)
