"""The fused CuPy kernels (tinynet/speed) against the plain code they replace.

Three kinds of test:
- the table: which classes have a fused implementation on CuPy, on any machine;
- the CUDA C of every kernel run on the CPU by tests/cuda_cpu.py (needs g++), checked
  against the plain NumPy code: indexing, reductions and formulas, without a GPU;
- on a GPU (skipped elsewhere; on tests/fake_cupy.py with tests/run_on_fake_gpu.py): every
  accelerated object (``tinynet.speed.accelerate``) against a plain one on the same CuPy
  arrays, cuBLAS through our handle, and a CUDA-graph-captured fit against an eager one.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import cuda_cpu
import tinynet as tn
from tinynet import speed
from tinynet.backend import cupy_available
from tinynet.speed.registry import FUSED

KERNELS = Path(tn.__file__).parent / "speed"
needs_gxx = pytest.mark.skipif(not cuda_cpu.available(), reason="the CPU emulation of the CUDA kernels needs g++")


# -- the table ------------------------------------------------------------------------


def test_cupy_implementations_cover_the_hot_classes_and_nothing_else():
    on_cupy = {cls for cls, backend in FUSED if backend == "cupy"}
    from tinynet.nonfinite import NonFiniteGuard

    assert on_cupy == {tn.ReLU, tn.BatchNorm, tn.Linear, tn.Dropout, tn.SoftmaxCrossEntropy, tn.SGD, NonFiniteGuard}
    for (cls, backend), implementation in FUSED.items():
        assert issubclass(implementation, speed.Fused)
        assert set(implementation.methods) <= set(dir(cls)), implementation  # it replaces methods the class has
    assert not speed.capturing()


# -- the CUDA C, run on the CPU -------------------------------------------------------


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cuda_cpu")


@pytest.fixture(scope="module")
def compiled(build_dir):
    """compiled(module_name, dtype) -> cuda_cpu.Module, each built once per test run."""
    cache = {}

    def get(name, dtype):
        key = (name, np.dtype(dtype).name)
        if key not in cache:
            cache[key] = cuda_cpu.Module(cuda_cpu.source_of(KERNELS / f"{name}.py"), dtype, build_dir)
        return cache[key]

    return get


DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def aligned_copy(a, alignment=64):
    """A copy of ``a`` whose data starts at a multiple of ``alignment`` bytes (as CuPy's allocations)."""
    raw = np.empty(a.nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 9), (1, 3), (200, 3)])  # 600 > 4 x 32 threads: the loop goes round
@pytest.mark.parametrize("vector", [False, True])  # True: the *_vec kernels, four elements per load
def test_relu_kernels(compiled, rng, dtype, shape, vector):
    if vector:
        shape = (shape[0], 4 * shape[1])  # a size divisible by 4
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0], x.flat[-1] = np.nan, -0.0  # NaN stays NaN, as in np.maximum
    x, y, dy, dx = (aligned_copy(a) for a in (x, np.full_like(x, -7), rng.standard_normal(shape).astype(dtype),
                                               np.full_like(x, np.nan)))
    module = compiled("activations", dtype)
    suffix, count = ("_vec", x.size // 4) if vector else ("", x.size)
    module.launch("relu_forward" + suffix, (2,), (16,), x, y, count)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    module.launch("relu_backward" + suffix, (2,), (16,), y, dy, dx, count)
    np.testing.assert_array_equal(dx, dy * (y > 0))


def plain_batchnorm(x, momentum=0.1, eps=1e-5):
    """The plain layer's training forward (NumPy): y, its saved xhat and inv_std, running stats."""
    bn = tn.BatchNorm(x.shape[1], momentum=momentum, eps=eps, dtype=x.dtype)
    speed.restore(bn)  # the plain code (under pytest --fast it was accelerated when made)
    bn.running_mean[:] = np.linspace(-1, 1, x.shape[1])
    bn.running_var[:] = np.linspace(0.5, 2, x.shape[1])
    bn.gamma.data[:] = np.linspace(0.5, 1.5, x.shape[1])
    bn.beta.data[:] = np.linspace(-0.2, 0.3, x.shape[1])
    start = (bn.running_mean.copy(), bn.running_var.copy())
    y = bn.forward(x)  # the plain NumPy code: nothing accelerated it
    return bn, y, start


def column_launch(n, c, rows):
    """(grid, rows) of a column reduction over chunks of ``rows`` rows (None: one chunk), as
    tinynet.speed._cuda.column_chunks gives them; the last chunk may be shorter."""
    rows = rows or n
    return (-(-c // 32), -(-n // rows)), rows


# rows=32 splits n into chunks (one block per 32 columns and chunk) and merges them: what a tall
# input gets on a GPU, here on small shapes; the last chunk is shorter
CHUNK_ROWS = [None, 32]


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (37, 45), (70, 64)])  # n and c below, across and at 32
@pytest.mark.parametrize("rows", CHUNK_ROWS)
def test_batchnorm_forward_kernels(compiled, rng, dtype, shape, rows):
    n, c = shape
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    bn, y_plain, (rm, rv) = plain_batchnorm(x)
    _, _, inv_std_plain, _ = bn.saved()
    module = compiled("batchnorm", dtype)
    mean, inv_std = np.full(c, np.nan, dtype), np.full(c, np.nan, dtype)
    rm, rv = rm.copy(), rv.copy()
    m = bn.momentum
    grid, rows = column_launch(n, c, rows)
    constants = (bn.eps, 1 - m, m, m * n / (n - 1))
    partial = np.full((2 * grid[1], c), np.nan)  # sums of each chunk, then centred sums of squares
    module.launch("bn_stats", grid, (32, 32), x, n, c, rows, *constants, mean, inv_std, rm, rv, partial)
    if grid[1] > 1:
        assert np.isnan(mean).all()  # the chunks only wrote their partial sums
        np.testing.assert_allclose(partial[: grid[1]].sum(0), x.astype(np.float64).sum(0), rtol=1e-12)
        module.launch("bn_stats_merge", (2,), (16,), partial, grid[1], n, c, rows, *constants, mean, inv_std, rm, rv)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), **TOL[dtype])
    np.testing.assert_allclose(inv_std, inv_std_plain, **TOL[dtype])
    np.testing.assert_allclose(rm, bn.running_mean, **TOL[dtype])
    np.testing.assert_allclose(rv, bn.running_var, **TOL[dtype])
    y = np.full_like(x, np.nan)
    # 8 threads walk a row of 45 or 64 columns in trips of 4 x 8: more than one trip, and a ragged end
    module.launch("bn_normalize", (3,), (8,), x, mean, inv_std, bn.gamma.data, bn.beta.data, y, n, c)
    np.testing.assert_allclose(y, y_plain, **TOL[dtype])
    if c % 4 == 0:  # the four-columns-at-a-time kernel, on aligned arrays, gives the same y
        arrays = [aligned_copy(a) for a in (x, mean, inv_std, bn.gamma.data, bn.beta.data, np.full_like(x, np.nan))]
        module.launch("bn_normalize_vec", (3,), (4,), *arrays, n, c // 4)  # 4 threads: 4 trips over 16 quads
        np.testing.assert_array_equal(arrays[-1], y)


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (37, 45), (70, 64)])
@pytest.mark.parametrize("rows", CHUNK_ROWS)
@pytest.mark.parametrize("overwrite", [False, True])  # True: sums written into fresh arrays, the old values never read
def test_batchnorm_backward_kernels(compiled, rng, dtype, shape, rows, overwrite):
    n, c = shape
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    bn, _, _ = plain_batchnorm(x)
    _, xhat, inv_std, _ = saved = bn.saved()
    bn.save_for_backward(*saved)
    mean = (x.astype(np.float64).sum(0) / n).astype(dtype)  # as bn_stats writes it; the kernels recompute xhat
    old = (0.0, 0.0) if overwrite else (0.25, -0.5)  # without overwrite the kernel adds, as the plain code
    bn.gamma.grad[:], bn.beta.grad[:] = old
    dx_plain = bn.backward(dy)
    gamma_grad, beta_grad = (np.full(c, np.nan if overwrite else v, dtype) for v in old)
    coef, dx = np.full(3 * c, np.nan, dtype), np.full_like(dy, np.nan)
    module = compiled("batchnorm", dtype)
    grid, rows = column_launch(n, c, rows)
    partial = np.full((2 * grid[1], c), np.nan)
    module.launch("bn_grad_sums", grid, (32, 32), dy, x, mean, bn.gamma.data, inv_std, n, c, rows, gamma_grad, beta_grad,
                  int(overwrite), int(overwrite), coef, partial)
    if grid[1] > 1:
        assert np.isnan(coef).all()  # nothing final yet
        np.testing.assert_array_equal(beta_grad, np.full(c, np.nan if overwrite else -0.5, dtype))
        module.launch("bn_grad_merge", (2,), (16,), partial, grid[1], n, c, bn.gamma.data, inv_std, gamma_grad,
                      beta_grad, int(overwrite), int(overwrite), coef)
    module.launch("bn_grad_x", (2,), (8,), dy, x, mean, inv_std, coef, dx, n, c)  # trips of 4 x 8 columns, as bn_normalize
    if c % 4 == 0:  # the four-columns-at-a-time kernel gives the same dx
        arrays = [aligned_copy(a) for a in (dy, x, mean, inv_std, coef, np.full_like(dy, np.nan))]
        module.launch("bn_grad_x_vec", (2,), (4,), *arrays, n, c // 4)
        np.testing.assert_array_equal(arrays[-1], dx)
    np.testing.assert_allclose(gamma_grad, bn.gamma.grad, **TOL[dtype])
    np.testing.assert_allclose(beta_grad, bn.beta.grad, **TOL[dtype])
    scale = np.abs(dy * bn.gamma.data * inv_std).max()  # dx is a difference of terms this large
    np.testing.assert_allclose(dx, dx_plain, rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10 * scale)


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", CHUNK_ROWS)
@pytest.mark.parametrize("overwrite", [False, True])
def test_column_sum_add_kernel(compiled, rng, dtype, rows, overwrite):
    a = rng.standard_normal((45, 70)).astype(dtype)
    out = np.full(70, np.nan, dtype) if overwrite else np.linspace(-1, 1, 70).astype(dtype)
    want = a.sum(0) if overwrite else out + a.sum(0)
    module = compiled("linear", dtype)
    grid, rows = column_launch(45, 70, rows)
    partial = np.full((grid[1], 70), np.nan)
    module.launch("column_sum_add", grid, (32, 32), a, 45, 70, rows, out, int(overwrite), partial)
    if grid[1] > 1:
        module.launch("column_sum_merge", (2,), (16,), partial, grid[1], 70, out, int(overwrite))
    np.testing.assert_allclose(out, want, **TOL[dtype])


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 5, 1500])  # 1500 > 1024 threads: some threads take two rows
@pytest.mark.parametrize("blocks", [1, 3])  # 3: each block sums its rows, softmax_ce_mean adds the blocks
def test_softmax_cross_entropy_kernels(compiled, rng, dtype, n, blocks):
    c = 10
    logits = (rng.standard_normal((n, c)) * 5).astype(dtype)
    logits[0, 3] = 80  # a large logit: the shift by the row maximum keeps exp finite
    labels = rng.integers(0, c, n).astype(np.int64)
    crit = tn.SoftmaxCrossEntropy()
    speed.restore(loss=crit)
    loss_plain = crit(logits, labels)
    probs_plain = crit._saved[0].copy()
    grad_plain = crit.backward(0.5)
    module = compiled("softmax_ce", dtype)
    probs, loss = np.full_like(logits, np.nan), np.full((), np.nan, dtype)
    partial = np.full(blocks, np.nan)
    module.launch("softmax_ce_forward", (blocks,), (1024 if blocks == 1 else 256,), logits, labels, n, c, probs, loss,
                  partial)
    if blocks > 1:
        assert np.isnan(loss)  # the blocks only wrote their sums
        np.testing.assert_allclose(partial.sum(), n * loss_plain, rtol=TOL[dtype]["rtol"])
        module.launch("softmax_ce_mean", (1,), (1,), partial, blocks, n, loss)
    np.testing.assert_allclose(loss, loss_plain, **TOL[dtype])
    np.testing.assert_allclose(probs, probs_plain, **TOL[dtype])
    module.launch("softmax_ce_backward", (2,), (32,), probs, labels, n, c, 0.5 / n)
    np.testing.assert_allclose(probs, grad_plain, **TOL[dtype])


@needs_gxx
def test_softmax_cross_entropy_kernel_turns_a_bad_label_into_nan(compiled):
    # inside a captured CUDA graph the host cannot check labels: the kernel must not read out of bounds
    logits = np.zeros((3, 4), np.float32)
    probs, loss = np.empty_like(logits), np.empty((), np.float32)
    compiled("softmax_ce", np.float32).launch("softmax_ce_forward", (1,), (1024,), logits,
                                              np.array([0, 4, 1], np.int64), 3, 4, probs, loss, np.empty(0))
    assert np.isnan(loss)


@needs_gxx
@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-3)])
def test_multi_tensor_sgd_kernel_is_the_plain_step_bit_for_bit(compiled, rng, momentum, nesterov, weight_decay):
    shapes = [(5, 7), (7,), (3, 2), (1,)]
    params = [tn.Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    plain = tn.SGD(params, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    speed.restore(optimizer=plain)
    datas = [p.data.copy() for p in params]
    bufs = [np.zeros_like(d) for d in datas]
    module = compiled("optim", np.float32)
    offsets = np.concatenate([[0], np.cumsum([d.size for d in datas])]).astype(np.int64)
    for _ in range(3):  # the first step makes the buffer, later ones update it
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.copy()
        plain.step()
        module.launch("sgd_multi", (1,), (4,), cuda_cpu.pointer_table(datas), cuda_cpu.pointer_table(grads),  # 49 elements in trips of 4 x 4: the last trip ragged
                      cuda_cpu.pointer_table(bufs if momentum else datas), offsets, len(datas),
                      0.05, momentum, weight_decay, int(nesterov))
        for p, d in zip(params, datas):
            np.testing.assert_array_equal(d, p.data)


# -- on a GPU: fused against plain on the same CuPy arrays -------------------------------


@pytest.fixture
def cp():
    if not cupy_available():
        pytest.skip("fused kernels: CuPy or a GPU is not available here")
    import cupy

    return cupy


def close(a, b, dtype, scale=1.0):
    tol = {np.dtype(np.float32): (1e-5, 1e-6), np.dtype(np.float64): (1e-11, 1e-12)}[np.dtype(dtype)]
    np.testing.assert_allclose(tn.to_numpy(a), tn.to_numpy(b), rtol=tol[0], atol=tol[1] * scale)


def accelerated(*objects):
    """The objects (layers, losses, optimizers) given their fused CuPy implementations; each
    must get one, or a test of fused against plain would compare the plain code with itself."""
    for obj in objects:
        kind = "model" if isinstance(obj, tn.Layer) else "optimizer" if isinstance(obj, tn.optim.Optimizer) else "loss"
        report = speed.accelerate(**{kind: obj}, backend="cupy")
        assert [o for _, o, _ in report] == [obj], f"nothing accelerated {type(obj).__name__}"
    return objects[0] if len(objects) == 1 else objects


def plain(*objects):
    """The objects running their classes' own code (under ``pytest --fast`` they were accelerated when made)."""
    for obj in objects:
        speed.restore(obj) if isinstance(obj, tn.Layer) else speed.restore(loss=obj, optimizer=obj)
    return objects[0] if len(objects) == 1 else objects


def twice(make, run):
    """``run(make(fused))`` with the objects accelerated and plain: (fused result, plain result)."""
    return run(make(True)), run(make(False))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (128, 256), (300, 45), (2500, 45)])  # 2500 rows: in chunks
def test_gpu_batchnorm_fused_equals_plain(cp, rng, dtype, shape):
    x = cp.asarray((rng.standard_normal(shape) * 3 + 1).astype(dtype))
    dy = cp.asarray(rng.standard_normal(shape).astype(dtype))

    def make(fused):
        bn = tn.BatchNorm(shape[1], dtype=dtype).to("cupy")
        bn.gamma.data[...] = cp.linspace(0.5, 1.5, shape[1], dtype=dtype)
        return accelerated(bn) if fused else plain(bn)

    def run(bn):
        y = bn(x)
        dx = bn.backward(dy)
        return y, dx, bn.gamma.grad, bn.beta.grad, bn.running_mean, bn.running_var

    host = tn.to_numpy(x).astype(np.float64)
    # dx is a difference of terms as large as dy * gamma * inv_std (nearly all of it for N = 2)
    dx_scale = float(abs(dy).max()) * 1.5 / np.sqrt(host.var(0).min() + 1e-5)
    for i, (f, p) in enumerate(zip(*twice(make, run))):
        close(f, p, dtype, scale=dx_scale if i == 1 else float(abs(p).max()))


@pytest.mark.gpu
def test_gpu_batchnorm_backward_after_restore_or_accelerate_in_between(cp, rng):
    """The fused forward saves x and the mean, not xhat: restored before its backward, the layer's
    plain backward must get the plain layout; accelerated after a plain forward, the fused
    backward must run the plain one. Either way the gradients are the plain ones."""
    x = cp.asarray(rng.standard_normal((64, 5)))
    dy = cp.asarray(rng.standard_normal((64, 5)))
    results = []
    for forward_fused in (True, False, None):  # None: plain throughout
        bn = plain(tn.BatchNorm(5, dtype=np.float64).to("cupy"))
        if forward_fused:
            accelerated(bn)
        bn(x)
        assert (type(bn._saved[0]).__name__ == "CupyBatchNorm") is bool(forward_fused)  # what forward kept
        if forward_fused:
            speed.restore(bn)
        elif forward_fused is False:
            accelerated(bn)
        results.append([tn.to_numpy(a) for a in (bn.backward(dy), bn.gamma.grad, bn.beta.grad)])
    for got in results[:2]:
        for a, b in zip(got, results[2]):
            close(a, b, np.float64, scale=10)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [64, 5000])  # 5000: the loss summed by blocks of rows, then merged
def test_gpu_relu_and_softmax_cross_entropy_fused_equal_plain(cp, rng, dtype, n):
    x = cp.asarray(rng.standard_normal((n, 10)).astype(dtype) * 4)
    labels = cp.asarray(rng.integers(0, 10, n))

    def make(fused):
        relu, crit = tn.ReLU(), tn.SoftmaxCrossEntropy()
        return accelerated(relu, crit) if fused else plain(relu, crit)

    def run(made):
        relu, crit = made
        h = relu(x)
        value = crit(h, labels)
        dh = crit.backward(0.7)
        return value, dh, relu.backward(dh)

    for f, p in zip(*twice(make, run)):
        close(f, p, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, offset", [((1001, 1003), 0), ((1000, 1004), 0), ((1000, 1004), 1)])
def test_gpu_relu_fused_equals_plain_on_large_arrays(cp, rng, dtype, shape, offset):
    """More elements than four per thread of the grid; an odd size and a view one element off
    the allocation's start take the scalar kernels, the rest the four-at-a-time ones."""
    size = shape[0] * shape[1]
    x = cp.asarray(rng.standard_normal(size + offset).astype(dtype))[offset:].reshape(shape)
    x[0, 0], x[-1, -1] = cp.nan, -0.0
    dy = cp.asarray(rng.standard_normal(size + offset).astype(dtype))[offset:].reshape(shape)

    def run(relu):
        return relu(x), relu.backward(dy)

    for f, p in zip(*twice(lambda fused: accelerated(tn.ReLU()) if fused else plain(tn.ReLU()), run)):
        np.testing.assert_array_equal(tn.to_numpy(f), tn.to_numpy(p))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gpu_linear_fused_equals_plain(cp, rng, dtype, bias):
    x_full = cp.asarray(rng.standard_normal((40, 60)).astype(dtype))
    x = x_full[:, 3:33]  # not contiguous: the GEMM wrapper must copy it
    dy = cp.asarray(rng.standard_normal((40, 20)).astype(dtype))

    def make(fused):
        layer = tn.Linear(30, 20, bias=bias, rng=np.random.default_rng(3), dtype=dtype).to("cupy")
        return accelerated(layer) if fused else plain(layer)

    def run(layer):
        layer.weight.grad[...] = 1  # backward adds into it
        y = layer(x)
        dx = layer.backward(dy)
        return (y, dx, layer.weight.grad) + ((layer.bias.grad,) if bias else ())

    for f, p in zip(*twice(make, run)):
        close(f, p, dtype, scale=30)
    layer = make(True)
    layer.input_grad = False
    layer(x)
    assert layer.backward(dy) is None


@pytest.mark.gpu
def test_gpu_column_reductions_split_tall_inputs_into_enough_blocks(cp, monkeypatch):
    from tinynet.speed import _cuda

    monkeypatch.setattr(_cuda, "_multiprocessors", lambda device: 132)  # an H200
    assert _cuda.column_chunks(128, 256) == ((8, 1), (32, 32), 128)  # small batches: one pass, as before
    assert _cuda.column_chunks(1024, 1024)[0] == (32, 1)
    grid, _, rows = _cuda.column_chunks(4096, 4096)
    assert grid == (128, 5) and grid[0] * grid[1] >= 4 * 132 and rows % 32 == 0
    for n, c, chunks in [(4096, 4096, None), (3000, 40, None), (200, 5, 3), (2, 3, 4), (1, 1, 1)]:
        grid, _, rows = _cuda.column_chunks(n, c, chunks)
        assert (grid[1] - 1) * rows < n <= grid[1] * rows  # every chunk holds rows
        assert chunks is None or grid[1] <= chunks


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_column_sum_of_a_tall_input_equals_the_plain_sum(cp, rng, dtype):
    from tinynet.speed import _cuda, linear

    a = cp.asarray(rng.standard_normal((3000, 40)).astype(dtype))
    assert _cuda.column_chunks(3000, 40)[0][1] > 1  # the chunked path, on any GPU
    out = cp.asarray(np.linspace(-1, 1, 40).astype(dtype))
    want = tn.to_numpy(out).astype(np.float64) + tn.to_numpy(a).astype(np.float64).sum(0)
    linear.column_sum_add(a, out)
    close(out, want, dtype, scale=60)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [64, 2500])  # 2500 rows: the column sums in chunks, then merged
@pytest.mark.parametrize("strided", [False, True])  # True: gradients the kernels cannot add into in place
def test_gpu_fused_backward_adds_into_the_gradients(cp, rng, batch, strided):
    """The fused Linear and BatchNorm backward add into p.grad as the plain ``+=`` does: a second
    backward without zero_grad doubles the first; also where a gradient is a strided view,
    which they add to through a temporary."""
    x = cp.asarray(rng.standard_normal((batch, 12)).astype(np.float64))
    dy = cp.asarray(rng.standard_normal((batch, 3)).astype(np.float64))

    def make(fused):
        model = tn.mlp([12, 16, 16, 3], rng=np.random.default_rng(0), dtype=np.float64).to("cupy")
        for p in model.parameters():
            if strided:
                p.grad = cp.zeros(p.data.shape[:-1] + (2 * p.data.shape[-1],))[..., ::2]  # every other column
            p.grad[...] = 0.5  # what was there is added to
        plain(model)
        if fused:
            fusable = [m for m in model.modules() if type(m) in (tn.Linear, tn.BatchNorm, tn.ReLU)]
            assert [o for _, o, _ in speed.accelerate(model)] == fusable and len(fusable) == 7
        return model

    def run(model):
        grads = []
        for _ in range(2):  # the second backward adds to the first
            model.forward(x)
            model.backward(dy)
            grads.append([tn.to_numpy(p.grad).copy() for p in model.parameters()])
        return grads

    fused_grads, plain_grads = twice(make, run)
    for fused_step, plain_step in zip(fused_grads, plain_grads):
        for f, p in zip(fused_step, plain_step):
            close(f, p, np.float64, scale=batch)
    for once, summed in zip(fused_grads[0], fused_grads[1]):
        close(summed - 0.5, 2 * (once - 0.5), np.float64, scale=batch)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_gemm_layouts_and_accumulation(cp, rng, dtype):
    from tinynet.speed import blas

    a = cp.asarray(rng.standard_normal((17, 9)).astype(dtype))
    b = cp.asarray(rng.standard_normal((9, 13)).astype(dtype))
    for left, right in [(a, b), (cp.asfortranarray(a), b), (a, cp.asfortranarray(b)), (a.T.copy().T, b.T.copy().T)]:
        close(blas.gemm(left, right), a @ b, dtype, scale=10)
    out = cp.ones((17, 13), dtype)
    blas.gemm(a, b, out=out, beta=1.0)
    close(out, a @ b + 1, dtype, scale=10)
    close(blas.gemm(a.T, a), a.T @ a, dtype, scale=10)  # (9, 17) @ (17, 9): a transposed view


@pytest.mark.gpu
@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-3)])
def test_gpu_sgd_fused_equal_plain(cp, rng, momentum, nesterov, weight_decay):
    shapes = [(30, 20), (20,), (7, 3)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[cp.asarray(rng.standard_normal(s).astype(np.float32)) for s in shapes] for _ in range(3)]

    def make(fused):
        params = [tn.Parameter(cp.asarray(d)) for d in start]
        opt = tn.SGD(params, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        return params, accelerated(opt) if fused else plain(opt)

    def run(made):
        params, opt = made
        for step in grads:
            opt.zero_grad()
            assert all(float(abs(p.grad).max()) == 0 for p in params)
            for p, g in zip(params, step):
                p.grad += g
            opt.step()
        return [p.data for p in params]

    for f, p in zip(*twice(make, run)):
        np.testing.assert_array_equal(tn.to_numpy(f), tn.to_numpy(p))  # compiled without FMA: bit for bit


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [True, False])  # True: the mask drawn on the GPU, seeded from the rng
def test_gpu_dropout_masks_come_from_the_layer_rng(cp, rng, fused):
    x = cp.ones((400, 300), cp.float32)

    def dropout(seed):
        layer = tn.Dropout(0.3, rng=np.random.default_rng(seed))
        return accelerated(layer) if fused else plain(layer)

    first = dropout(5)(x)
    again = dropout(5)(x)
    other = dropout(6)(x)
    assert bool((first == again).all()) and not bool((first == other).all())
    assert 0.28 < float((first == 0).mean()) < 0.32
    assert float(first.max()) == pytest.approx(1 / 0.7)


# -- on a GPU: the CUDA-graph-captured step -------------------------------------------------


def blobs(rng, n, classes=4, dim=20):
    centres = rng.standard_normal((classes, dim)) * 3
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, dim))).astype(np.float32), y


def train_on_gpu(cp, cuda_graph, epochs=3, schedule=None, n=1000, batch_size=64):
    x, y = blobs(np.random.default_rng(0), n)
    model = tn.mlp([20, 64, 64, 4], rng=np.random.default_rng(1)).to("cupy")
    opt = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = tn.fit(model, tn.SoftmaxCrossEntropy(), opt, cp.asarray(x), cp.asarray(y), epochs=epochs, batch_size=batch_size,
                     rng=np.random.default_rng(2), progress=False, lr_schedule=schedule, fast=True,
                     cuda_graph=cuda_graph)
    return history, model


@pytest.mark.gpu
def test_gpu_fit_with_a_cuda_graph_equals_eager_fit(cp):
    eager, eager_model = train_on_gpu(cp, cuda_graph=False)
    graphed, graphed_model = train_on_gpu(cp, cuda_graph=True)
    assert len(graphed.step_loss) == len(eager.step_loss) == 3 * 16  # 1000 = 15 * 64 + a batch of 40
    np.testing.assert_allclose(graphed.step_loss, eager.step_loss, rtol=1e-4, atol=1e-6)
    for (name, a), b in zip(eager_model.state_dict().items(), graphed_model.state_dict().values()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.gpu
def test_gpu_cuda_graph_replays_column_sums_done_in_chunks(cp):
    # batches of 2048 rows: BatchNorm's and the bias gradient's column sums go through chunks and
    # a merge kernel, with a scratch buffer allocated inside the captured step
    n = 4 * 2048  # warm-up, capture-stream step, then the captured step replayed twice
    eager, eager_model = train_on_gpu(cp, cuda_graph=False, epochs=1, n=n, batch_size=2048)
    graphed, graphed_model = train_on_gpu(cp, cuda_graph=True, epochs=1, n=n, batch_size=2048)
    np.testing.assert_allclose(graphed.step_loss, eager.step_loss, rtol=1e-4, atol=1e-6)
    for (name, a), b in zip(eager_model.state_dict().items(), graphed_model.state_dict().values()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.fixture
def captured_steps(monkeypatch):
    """The list of every tinynet.speed.cuda_graph.CapturedStep that fit makes during the test."""
    from tinynet.speed import cuda_graph

    made = []
    original = cuda_graph.CapturedStep.__init__

    def spy(self, *args):
        original(self, *args)
        made.append(self)

    monkeypatch.setattr(cuda_graph.CapturedStep, "__init__", spy)
    return made


@pytest.mark.gpu
def test_gpu_cuda_graph_is_captured_again_when_the_lr_changes(cp, captured_steps):
    made = captured_steps
    schedule = tn.optim.cosine_schedule(0.05, 3)
    graphed, _ = train_on_gpu(cp, cuda_graph=True, schedule=schedule)
    assert made[0].captures == 3  # one capture per learning rate
    eager, _ = train_on_gpu(cp, cuda_graph=False, schedule=schedule)
    np.testing.assert_allclose(graphed.step_loss, eager.step_loss, rtol=1e-4, atol=1e-6)


def test_cuda_graph_refuses_what_it_cannot_replay(rng):
    x, y = blobs(rng, 64)
    model = tn.mlp([20, 8, 4], rng=rng)
    fit = lambda m, opt: tn.fit(m, tn.SoftmaxCrossEntropy(), opt, x, y, 1, 32, progress=False, fast=True,  # noqa: E731
                                cuda_graph=True)
    with pytest.raises(ValueError, match="cuda_graph=True supports SGD only, got Adam"):
        fit(model, tn.Adam(model.parameters()))
    dropout = tn.Sequential(tn.Linear(20, 4, rng=rng), tn.Dropout(0.2, rng=rng))
    with pytest.raises(ValueError, match="cannot replay Dropout"):
        fit(dropout, tn.SGD(dropout.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"needs the model on the GPU: call model.to\('cupy'\)"):
        fit(model, tn.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="fit: expected cuda_graph to be True or False"):
        tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 32, cuda_graph="yes")
    with pytest.raises(ValueError, match="cuda_graph=True is part of the speed opt-in; pass fast=True as well"):
        tn.fit(model, tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.1), x, y, 1, 32, cuda_graph=True)


# -- without a GPU: the GPU code paths end to end on tests/fake_cupy.py ---------------------


@pytest.fixture
def fake_gpu(build_dir):
    """A stand-in cupy (NumPy arrays, the CUDA C run on the CPU, captures recorded and replayed)."""
    if not cuda_cpu.available():
        pytest.skip("the fake GPU runs the CUDA kernels on the CPU, which needs g++")
    import fake_cupy

    with fake_cupy.installed(build_dir) as cupy:
        yield cupy


def small_run(cp, cuda_graph=False, fused=True, schedule=None, epochs=2, backend="cupy"):
    x, y = blobs(np.random.default_rng(0), 300)
    model = tn.mlp([20, 16, 16, 4], rng=np.random.default_rng(1)).to(backend)
    opt, loss = tn.SGD(model.parameters(), lr=0.05, momentum=0.9), tn.SoftmaxCrossEntropy()
    if not fused:
        plain(model, loss, opt)
    if backend == "cupy":
        x, y = cp.asarray(x), cp.asarray(y)
    history = tn.fit(model, loss, opt, x, y, epochs=epochs, batch_size=64,
                     rng=np.random.default_rng(2), progress=False, lr_schedule=schedule, fast=fused,
                     cuda_graph=cuda_graph)
    return history, model


def assert_same_training(a, b, rtol=1e-5):
    (history_a, model_a), (history_b, model_b) = a, b
    np.testing.assert_allclose(history_a.step_loss, history_b.step_loss, rtol=rtol, atol=1e-7)
    for (name, pa), pb in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        np.testing.assert_allclose(pa, pb, rtol=rtol * 10, atol=1e-6, err_msg=name)


def test_fake_gpu_fused_training_equals_plain_and_numpy(fake_gpu):
    fused = small_run(fake_gpu)
    assert type(fused[1].parameters()[0].data).__module__ == "cupy"  # it really took the GPU paths
    assert_same_training(fused, small_run(fake_gpu, fused=False))
    assert_same_training(fused, small_run(fake_gpu, backend="numpy"))


def test_fake_gpu_cuda_graph_replays_the_eager_step(fake_gpu, captured_steps):
    made = captured_steps
    graphed = small_run(fake_gpu, cuda_graph=True, epochs=3)
    # 300 = 4 * 64 + 44: per epoch 4 full steps and a tail; 2 warm-up steps, then replays
    assert made[0].captures == 1 and made[0].graph.launches == 3 * 4 - 2
    assert_same_training(graphed, small_run(fake_gpu, epochs=3))
    schedule = tn.optim.cosine_schedule(0.05, 3)
    graphed = small_run(fake_gpu, cuda_graph=True, epochs=3, schedule=schedule)
    assert made[1].captures == 3  # a new learning rate each epoch: captured again
    assert_same_training(graphed, small_run(fake_gpu, epochs=3, schedule=schedule))


@needs_gxx
@pytest.mark.parametrize("bad", [None, "loss", "grad"])
def test_nonfinite_kernel_flags_a_nan_in_the_loss_or_any_gradient(compiled, rng, bad):
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (5,), (1,)]]
    loss = np.array(0.5, np.float32)
    if bad == "loss":
        loss[()] = np.inf
    elif bad == "grad":
        grads[1][3] = np.nan
    offsets = np.concatenate([[0], np.cumsum([g.size for g in grads])]).astype(np.int64)
    flag = np.zeros((), np.int32)
    compiled("optim", np.float32).launch("nonfinite_multi", (2,), (4,), cuda_cpu.pointer_table(grads), offsets, 3, loss, flag)
    assert int(flag) == (bad is not None)


def test_fake_gpu_a_broken_cublas_handle_falls_back_to_cupy_matmul(fake_gpu, monkeypatch):
    from tinynet.speed import blas

    monkeypatch.setattr(blas, "problem", blas.real_problem)  # the check runs, and fails: no cuBLAS here
    monkeypatch.setattr(blas, "gemm", blas.real_gemm)
    blas._checked.clear()
    with pytest.warns(RuntimeWarning, match="tinynet's own cuBLAS handle is unusable.*falls back to CuPy's matmul"):
        eager = small_run(fake_gpu)
    assert_same_training(eager, small_run(fake_gpu, backend="numpy"))
    with pytest.raises(RuntimeError, match="cuda_graph=True needs tinynet's own cuBLAS handle, but"):
        small_run(fake_gpu, cuda_graph=True)
    blas._checked.clear()


def test_fake_gpu_profile_names_every_phase_and_groups_them(fake_gpu):
    """benchmarks/gpu_profile.py, tinynet's half, on the fake GPU: every phase timed, groups add up."""
    spec = importlib.util.spec_from_file_location("gpu_profile", Path(__file__).parents[1] / "benchmarks" / "gpu_profile.py")
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    phases = profile.profile_tinynet(hidden=16, batch=32, steps=2, warmup=1, examples=96, features=12, classes=3)
    assert list(phases) == [
        "gather", "forward 0 Linear", "forward 1 BatchNorm", "forward 2 ReLU", "forward 3 Linear",
        "forward 4 BatchNorm", "forward 5 ReLU", "forward 6 Linear", "loss forward", "zero_grad", "loss backward",
        "backward 6 Linear", "backward 5 ReLU", "backward 4 BatchNorm", "backward 3 Linear", "backward 2 ReLU",
        "backward 1 BatchNorm", "backward 0 Linear", "SGD step",
    ]
    assert all(ms >= 0 for ms in phases.values())
    text = profile.tables({"tinynet": phases, "other": {"gather": 1.0, "forward 0": 2.0, "SGD step": 1.0}})
    step_row = [line for line in text.splitlines() if line.startswith("| step |")][0]
    assert step_row.endswith(f"| {sum(phases.values()):.3f} | 4.000 | {sum(phases.values()) / 4:.2f} |")


def test_fake_gpu_profile_unmarked_step_trains_and_is_timed(fake_gpu):
    """gpu_profile's unmarked tinynet step (what 'issue vs done' times) lowers the loss; done >= issued."""
    spec = importlib.util.spec_from_file_location("gpu_profile", Path(__file__).parents[1] / "benchmarks" / "gpu_profile.py")
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    step, synchronize = profile.tinynet_step(hidden=16, batch=32, examples=96, features=12, classes=3)
    first = float(step(0))
    for i in range(1, 30):
        last = float(step(i))
    assert last < first
    issued, done = profile.issue_vs_done(step, synchronize, steps=3, warmup=1)
    assert 0 < issued <= done
