"""Fused CPU kernels in C, opted into: BatchNorm, ReLU, the softmax cross-entropy, SGD and Adam, one pass or two each.

The plain NumPy code in ``tinynet/layers`` is what runs by default and what a student reads. NumPy
runs each ``-``, ``*`` or ``.sum()`` as its own pass over memory, so BatchNorm costs six passes
and a dozen calls each way, where one loop in C needs two or three (``benchmarks/README.md``
measures it: at batch 128 these parts were 40 % of a step, and the reason tinynet trailed
PyTorch's compiled kernels there). The C below does the plain code's arithmetic, rounding
where it rounds (``-ffp-contract=off``: no fused multiply-add), except that column sums and the
loss are accumulated in double, as the CuPy kernels do:

====================  ===========================================  ==============
kernel                plain code (reference)                       passes over x
====================  ===========================================  ==============
relu_forward          ``np.maximum(x, 0)`` (NaN stays NaN)          1
relu_backward         ``dy * (y > 0)``                             1
bn_forward            mean, centred variance, y = xhat*gamma+beta  3 (no xhat kept)
bn_backward           the simplified form, xhat recomputed         2
softmax_ce_forward    loss and probabilities, row by row           1
softmax_ce_backward   ``(probs - onehot) * dloss / N`` in place    1
sgd_update            ``SGD.update`` (momentum, Nesterov, decay)   1 instead of 4
any_nonfinite         fit's NaN/Inf check of the gradients         1
adam_update           ``Adam.update``                              1 instead of 10
====================  ===========================================  ==============

They are compiled on first use with the system's C compiler (``$CC``, else ``cc``) into a
cache folder (``$TINYNET_KERNEL_CACHE``, else ``~/.cache/tinynet/kernels``; a private temporary
folder where that cannot be written) and loaded with ctypes: no package to install. Without a compiler, or with ``TINYNET_CPU_KERNELS=0`` in the
environment, :func:`library` returns None and :func:`tinynet.speed.accelerate` binds no C
kernel: every layer runs its plain NumPy code; :func:`status` says which. Nothing here is built
or loaded unless a user opts in (``fit(..., fast=True)``, ``--fast``, ``accelerate``). Each kernel is tested equal to the plain code in
``tests/test_cpu_kernels.py``.
"""

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile


# The body is compiled twice: T = float with names ending _f32, T = double with _f64.
BODY = r"""
// ReLU. x < 0 is false for NaN, so NaN stays NaN, as in np.maximum(x, 0)
void NAME(relu_forward)(const T* restrict x, T* restrict y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; ++i) y[i] = x[i] < (T)0 ? (T)0 : x[i];
}

void NAME(relu_backward)(const T* restrict y, const T* restrict dy, T* restrict dx, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; ++i) dx[i] = dy[i] * (T)(y[i] > (T)0);  // a product: NaN in dy stays NaN
}

// BatchNorm's training forward over x (n, c), row-major. Loops run along rows, so the inner
// loop walks c neighbouring columns and vectorises. stats receives mean (c) then inv_std (c).
// Returns 0, or -1 when the 2c doubles of scratch cannot be had.
int NAME(bn_forward)(const T* restrict x, ptrdiff_t n, ptrdiff_t c, const T* restrict gamma, const T* restrict beta,
                     T eps, T keep, T new_mean, T new_var, T* restrict stats, T* restrict running_mean,
                     T* restrict running_var, T* restrict y) {
    double* restrict mu = malloc(2 * c * sizeof(double));
    if (!mu) return -1;
    double* restrict m2 = mu + c;
    T* restrict mean = stats;
    T* restrict inv_std = stats + c;
    for (ptrdiff_t j = 0; j < c; ++j) mu[j] = m2[j] = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i)
        for (ptrdiff_t j = 0; j < c; ++j) mu[j] += (double)x[i * c + j];
    for (ptrdiff_t j = 0; j < c; ++j) mu[j] /= (double)n;
    for (ptrdiff_t i = 0; i < n; ++i)  // centred first: two passes, never E[x^2] - E[x]^2
        for (ptrdiff_t j = 0; j < c; ++j) {
            const double d = (double)x[i * c + j] - mu[j];
            m2[j] += d * d;
        }
    for (ptrdiff_t j = 0; j < c; ++j) {
        const double var = m2[j] / (double)n;  // biased: this one normalises
        mean[j] = (T)mu[j];
        inv_std[j] = (T)(1.0 / sqrt(var + (double)eps));
        running_mean[j] = running_mean[j] * keep + new_mean * (T)mu[j];
        running_var[j] = running_var[j] * keep + new_var * (T)var;  // new_var = momentum * n / (n - 1)
    }
    free(mu);
    for (ptrdiff_t i = 0; i < n; ++i)
        for (ptrdiff_t j = 0; j < c; ++j) {
            const T xhat = (x[i * c + j] - mean[j]) * inv_std[j];  // rounded as the plain code rounds
            y[i * c + j] = xhat * gamma[j] + beta[j];
        }
    return 0;
}

// BatchNorm's simplified backward, xhat recomputed from x, mean and inv_std:
//   dx = k1 * dy - k2 - xhat * k3,  k1 = gamma * inv_std, k2 = k1 * dbeta / n, k3 = k1 * dgamma / n
// dgamma and dbeta are added into the gradients, or written (write_* = 1) into scratch the caller adds.
int NAME(bn_backward)(const T* restrict dy, const T* restrict x, ptrdiff_t n, ptrdiff_t c, const T* restrict mean,
                      const T* restrict inv_std, const T* restrict gamma, T* restrict dgamma, T* restrict dbeta,
                      int write_gamma, int write_beta, T* restrict dx) {
    double* restrict sum_dy = malloc(2 * c * sizeof(double) + 3 * c * sizeof(T));
    if (!sum_dy) return -1;
    double* restrict sum_dy_xhat = sum_dy + c;
    T* restrict k = (T*)(sum_dy + 2 * c);
    for (ptrdiff_t j = 0; j < c; ++j) sum_dy[j] = sum_dy_xhat[j] = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i)
        for (ptrdiff_t j = 0; j < c; ++j) {
            const T g = dy[i * c + j], xhat = (x[i * c + j] - mean[j]) * inv_std[j];
            sum_dy[j] += (double)g;
            sum_dy_xhat[j] += (double)(g * xhat);
        }
    for (ptrdiff_t j = 0; j < c; ++j) {
        const T db = (T)sum_dy[j], dg = (T)sum_dy_xhat[j], k1 = gamma[j] * inv_std[j];
        dbeta[j] = write_beta ? db : dbeta[j] + db;
        dgamma[j] = write_gamma ? dg : dgamma[j] + dg;
        k[j] = k1;
        k[c + j] = k1 * db / (T)n;
        k[2 * c + j] = k1 * dg / (T)n;
    }
    for (ptrdiff_t i = 0; i < n; ++i)
        for (ptrdiff_t j = 0; j < c; ++j) {
            const T xhat = (x[i * c + j] - mean[j]) * inv_std[j];
            dx[i * c + j] = k[j] * dy[i * c + j] - k[c + j] - xhat * k[2 * c + j];
        }
    free(sum_dy);
    return 0;
}

// Softmax cross-entropy over logits (n, c): writes the probabilities, returns the mean loss.
// Each row is shifted by its maximum first, so exp never overflows.
double NAME(softmax_ce_forward)(const T* restrict logits, const int64_t* restrict labels, ptrdiff_t n, ptrdiff_t c,
                                T* restrict probs) {
    double total = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) {
        const T* row = logits + i * c;
        T* p = probs + i * c;
        T top = row[0], sum = (T)0;
        for (ptrdiff_t j = 1; j < c; ++j) top = row[j] > top ? row[j] : top;
        for (ptrdiff_t j = 0; j < c; ++j) sum += p[j] = EXP(row[j] - top);
        total += (double)LOG(sum) - (double)(row[labels[i]] - top);
        for (ptrdiff_t j = 0; j < c; ++j) p[j] /= sum;
    }
    return total / (double)n;
}

void NAME(softmax_ce_backward)(T* restrict probs, const int64_t* restrict labels, ptrdiff_t n, ptrdiff_t c, T scale) {
    for (ptrdiff_t i = 0; i < n; ++i) probs[i * c + labels[i]] -= (T)1;
    for (ptrdiff_t i = 0; i < n * c; ++i) probs[i] *= scale;
}

// 1 when an element is NaN or Inf: its exponent bits all set. An integer OR, which vectorises
// where a floating-point sum would not (its order is fixed without -ffast-math).
int NAME(any_nonfinite)(const UINT* restrict bits, ptrdiff_t n) {
    UINT found = 0;
    for (ptrdiff_t i = 0; i < n; ++i) found |= (UINT)((bits[i] & EXPONENT) == EXPONENT);
    return found != 0;
}

// SGD, PyTorch's rule, one pass: g = grad + wd * p; b = momentum * b + g;
// g = nesterov ? g + momentum * b : b; p -= lr * g. Needs the momentum buffer made (when momentum > 0).
void NAME(sgd_update)(T* restrict p, const T* restrict grad, T* restrict buf, ptrdiff_t n,
                      T lr, T momentum, T weight_decay, int nesterov) {
    for (ptrdiff_t i = 0; i < n; ++i) {
        T g = grad[i];
        if (weight_decay != (T)0) g = g + weight_decay * p[i];
        if (momentum != (T)0) {
            const T b = buf[i] * momentum + g;
            buf[i] = b;
            g = nesterov ? g + momentum * b : b;
        }
        p[i] = p[i] - lr * g;
    }
}

// Adam, the plain code's rule and roundings: m = b1 * m + c1 * g; v = b2 * v + c2 * (g * g);
// p -= step_size * m / (sqrt(v) / root_correction + eps), with c1 = 1 - b1, c2 = 1 - b2.
void NAME(adam_update)(T* restrict p, const T* restrict grad, T* restrict m, T* restrict v, ptrdiff_t n,
                       T b1, T c1, T b2, T c2, T step_size, T root_correction, T eps, T weight_decay) {
    for (ptrdiff_t i = 0; i < n; ++i) {
        T g = grad[i];
        if (weight_decay != (T)0) g = g + weight_decay * p[i];
        const T mi = m[i] * b1 + c1 * g, vi = v[i] * b2 + c2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] - step_size * mi / (SQRT(vi) / root_correction + eps);
    }
}
"""

SOURCE = "\n".join([
    "#include <math.h>", "#include <stddef.h>", "#include <stdint.h>", "#include <stdlib.h>",
    "#define T float", "#define NAME(f) f##_f32", "#define EXP expf", "#define LOG logf", "#define SQRT sqrtf",
    "#define UINT uint32_t", "#define EXPONENT 0x7f800000u", BODY,
    "#undef T", "#undef NAME", "#undef EXP", "#undef LOG", "#undef SQRT", "#undef UINT", "#undef EXPONENT",
    "#define T double", "#define NAME(f) f##_f64", "#define EXP exp", "#define LOG log", "#define SQRT sqrt",
    "#define UINT uint64_t", "#define EXPONENT 0x7ff0000000000000ull", BODY,
])
FLAGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC"]  # no errno: sqrt vectorises
NATIVE = ["-march=native"]  # tried first; a compiler that refuses it builds without

_P = ctypes.c_void_p
_L, _I, _D = ctypes.c_ssize_t, ctypes.c_int, ctypes.c_double  # _L: ptrdiff_t
# kernel -> (argument types, with "T" for a scalar of the array dtype; result type)
SIGNATURES = {
    "relu_forward": ([_P, _P, _L], None),
    "relu_backward": ([_P, _P, _P, _L], None),
    "bn_forward": ([_P, _L, _L, _P, _P, "T", "T", "T", "T", _P, _P, _P, _P], _I),
    "bn_backward": ([_P, _P, _L, _L, _P, _P, _P, _P, _P, _I, _I, _P], _I),
    "softmax_ce_forward": ([_P, _P, _L, _L, _P], _D),
    "softmax_ce_backward": ([_P, _P, _L, _L, "T"], None),
    "sgd_update": ([_P, _P, _P, _L, "T", "T", "T", _I], None),
    "any_nonfinite": ([_P, _L], _I),
    "adam_update": ([_P, _P, _P, _P, _L] + ["T"] * 8, None),
}

_library = None
_status = "not built yet"


def library():
    """The loaded kernels as ``{(name, dtype char): ctypes function}``, or None when they cannot
    be had (no compiler, a failed build, ``TINYNET_CPU_KERNELS=0``); built once per process."""
    global _library, _status
    if _library is None:
        if os.environ.get("TINYNET_CPU_KERNELS", "1") == "0":
            _library, _status = False, "off (TINYNET_CPU_KERNELS=0): plain NumPy code"
        else:
            try:
                path, compiler = _build()
                _library = _load(path)
                _status = f"on: BatchNorm, ReLU, the loss, SGD, Adam and the NaN check in C (built with {compiler})"
            except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                _library, _status = False, f"off ({err}): plain NumPy code"
    return _library or None


def status():
    """A line saying whether the CPU kernels are in use, and if not, why."""
    library()
    return _status


def _build(source_text=None, stem="tinynet-cpu"):
    """Compile C source (default: SOURCE) into the cache folder unless a library built from it is
    there: (its path, the compiler's name). Also builds the 4-D layers' kernels (speed/conv.py)."""
    source_text = SOURCE if source_text is None else source_text
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        raise RuntimeError("no C compiler found (set CC)")
    key = hashlib.sha256("\0".join([source_text, compiler, *FLAGS, *NATIVE, platform.machine(), _cpu_name(),
                                     sys.platform]).encode()).hexdigest()[:16]
    folder = os.environ.get("TINYNET_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tinynet",
                                                                     "kernels")
    path = os.path.join(folder, f"{stem}-{key}.so")
    name = os.path.basename(compiler)
    if os.path.exists(path):
        return path, name
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "kernels.c")
        with open(source, "w") as f:
            f.write(source_text)
        built = os.path.join(tmp, "kernels.so")
        for extra in (NATIVE, []):
            done = subprocess.run([compiler, *FLAGS, *extra, "-o", built, source, "-lm"],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"{compiler} failed: {done.stderr.strip()[:300]}")
        try:
            os.makedirs(folder, exist_ok=True)
            partial = f"{path}.{os.getpid()}.tmp"
            shutil.copyfile(built, partial)
            os.replace(partial, path)  # atomic: another process never loads half a file
        except OSError:  # a cache we cannot write (read-only home): a private folder, for this process
            path = os.path.join(tempfile.mkdtemp(prefix="tinynet-kernels-"), os.path.basename(path))
            shutil.copyfile(built, path)
    return path, name


def _cpu_name():
    """The processor's model name and instruction-set flags, part of the cache key: code built with
    -march=native runs only there (a home folder shared by several machines keeps one build each)."""
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0].splitlines()  # the first processor's block
        return "\n".join(line for line in first if line.startswith(("model name", "flags")))
    except OSError:
        return platform.processor()


def _load(path, signatures=None):
    """The library at ``path`` as ``{(name, dtype char): ctypes function}`` for each of ``signatures``
    (default: SIGNATURES), in float32 (``_f32``) and float64 (``_f64``)."""
    lib = ctypes.CDLL(path)
    table = {}
    for name, (args, result) in (SIGNATURES if signatures is None else signatures).items():
        for char, suffix, scalar in (("f", "f32", ctypes.c_float), ("d", "f64", ctypes.c_double)):
            fn = getattr(lib, f"{name}_{suffix}")
            fn.argtypes = [scalar if a == "T" else a for a in args]
            fn.restype = result
            table[name, char] = fn
    return table
