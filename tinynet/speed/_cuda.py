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
    # C++17 named: the kernels use structured bindings, whatever NVRTC's default dialect is
    return cupy.RawModule(code=f"typedef {C_TYPES[dtype_name]} T;\n{source}", options=("--std=c++17", *options))


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


# Column reductions (a sum down each column of an (n, c) array): a 32 x 32 block owns 32
# columns. On a tall array that gives too few blocks: (4096, 4096) is 128 blocks for 132 SMs of
# an H200, each walking 4096 rows, far from memory bandwidth. So taller arrays are also cut into
# chunks of rows, one block per (32 columns, chunk), and a small second kernel adds the chunks'
# partial sums in a fixed order (deterministic: no atomics).
SPLIT_ROWS = 1024  # up to here one pass, one launch: small batches are launch-bound, not memory-bound
MIN_CHUNK_ROWS = 256  # each of a block's 32 thread rows gets at least 8 rows of its chunk
BLOCKS_PER_SM = 4  # enough blocks to fill the GPU (two 1024-thread blocks fit on an SM at once)


# CUDA source of the kernels that move four neighbouring elements per load or store (16 bytes of
# float, 32 of double): where every array allows it, one wide access instead of four.
FOUR = r"""
struct __align__(4 * sizeof(T)) Four { T v[4]; };
"""


def in_fours(*arrays, size=None):
    """True if the ``*_vec`` kernels may read these CuPy arrays four elements at a time: ``size``
    (default the first array's) divisible by 4 and every array aligned to four elements, as
    CuPy's own allocations are (a view may start anywhere)."""
    width = 4 * arrays[0].itemsize
    size = arrays[0].size if size is None else size
    return size % 4 == 0 and all(a.data.ptr % width == 0 for a in arrays)


# CUDA source both column reductions (kernels/batchnorm.py, kernels/linear.py) put in front of
# theirs: the step every one of their 32 x 32 blocks takes once it has walked its rows.
BLOCK_COLUMN_TOTAL = r"""
// Each thread brings s, its partial sum of column threadIdx.x (every 32nd row of the block's
// chunk); each gets back the column's total over the block's 32 thread rows, added in thread-row
// order. `part` ([32][33], padded against bank conflicts) and `total` ([32]) are the block's
// shared scratch, free again on return: ready for the next sum.
__device__ __forceinline__ double block_column_total(double s, double (*part)[33], double* total) {
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0) {
        double t = 0;
        for (int k = 0; k < 32; ++k) t += part[k][threadIdx.x];
        total[threadIdx.x] = t;
    }
    __syncthreads();
    return total[threadIdx.x];
}

// Where a 32 x 32 block of a column reduction works: column col (threadIdx.x's, of the block's 32)
// over rows first .. last-1 (blockIdx.y's chunk of `rows` rows; the last chunk may be shorter).
struct ColumnBlock { long long col, first, last; };
__device__ __forceinline__ ColumnBlock column_block(long long n, long long rows) {
    const long long first = (long long)blockIdx.y * rows;
    return {(long long)blockIdx.x * 32 + threadIdx.x, first, first + rows < n ? first + rows : n};
}

// The sum of column col of a (n, c, row-major) over rows first .. last-1, the block's chunk.
__device__ __forceinline__ double chunk_column_sum(const T* a, long long c, long long col, long long first,
                                                   long long last, double (*part)[33], double* total) {
    double s = 0;
    if (col < c)
        for (long long r = first + threadIdx.y; r < last; r += 32) s += (double)a[r * c + col];
    return block_column_total(s, part, total);
}
"""


def column_chunks(n, c, chunks=None):
    """(grid, block, rows) for the chunked column reductions: grid = (column blocks, chunks).

    Parameters
    ----------
    n, c : int
        The shape (n, c) of the array reduced down its columns.
    chunks : int, optional
        Chunks of rows wanted; by default 1 up to SPLIT_ROWS rows, else enough to give the GPU
        BLOCKS_PER_SM blocks per multiprocessor (at most one per MIN_CHUNK_ROWS rows).

    Returns
    -------
    grid : (int, int)
        ``(ceil(c / 32), number of chunks)``; no chunk is empty, the last may be shorter.
    block : (int, int)
        ``(32, 32)``.
    rows : int
        Rows per chunk, a multiple of 32 so that every thread row gets as many rows.
    """
    blocks = -(-c // 32)
    if chunks is None:
        chunks = 1
        if n > SPLIT_ROWS:
            target = BLOCKS_PER_SM * _multiprocessors(cupy.cuda.runtime.getDevice())
            chunks = min(-(-target // blocks), n // MIN_CHUNK_ROWS)
    rows = 32 * max(1, -(-n // (32 * max(1, chunks))))
    return (blocks, max(1, -(-n // rows))), (32, 32), rows


def partial_sums(chunks, sums, c):
    """Scratch (float64) for ``sums`` partial sums per chunk and column: ``(sums * chunks, c)``,
    or an empty array when one chunk finishes by itself.

    Allocated per call, like every other temporary of the fused functions: inside a captured
    CUDA graph it comes from the graph's private pool and is released within the step.
    """
    if chunks == 1:  # the common, launch-bound case: not even a new empty array
        return _no_partials(cupy.cuda.runtime.getDevice())
    return cupy.empty((sums * chunks, c), np.float64)


@functools.lru_cache(maxsize=None)
def _no_partials(device_id):
    return cupy.empty(0, np.float64)  # size 0: no memory behind it, so safe to keep across captures


def contiguous(*arrays):
    """The arrays, C-contiguous (a copy only where one is not)."""
    return tuple(a if a.flags.c_contiguous else cupy.ascontiguousarray(a) for a in arrays)


def scalar(dtype, value):
    """``value`` as a scalar of the kernel's T, so CuPy passes it with the right C type."""
    return np.dtype(dtype).type(value)
