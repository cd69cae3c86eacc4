"""Time BatchNorm's two backward forms (the paper's chain rule and the simplified closed form).

Example: python -m tinynet bench-bn --sizes 60x100,1024x1024,4096x4096 --repeat 30

Backward only: one forward, then each timed call re-installs the same saved values
and runs backward. The two forms alternate call by call (so a change in machine load
hits both alike), after warm-up calls; the median is reported, and on CuPy every
call is synchronised. Without --backend, times NumPy, and CuPy too where a GPU is found.
Both forms run as the plain NumPy-API code that a student reads. With --fast a third column
times the opt-in fused kernels (tinynet.speed) of the simplified form: CuPy's on a GPU, the C
kernels on NumPy where a C compiler is found.
"""

import os
import statistics
import time

import numpy as np

from ..backend import cupy_available, require_cupy
from ..layers import BatchNorm

AUTO = "auto"
DEFAULT_SIZES = "60x100,256x256,1024x1024,4096x1024,4096x4096"


def parse_sizes(text):
    """``"60x100,4096x4096"`` -> ``[(60, 100), (4096, 4096)]``."""
    sizes = []
    for item in text.split(","):
        try:
            n, c = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"bench-bn: expected sizes like 60x100,4096x4096 (N x C), got {item!r}") from None
        if n < 2 or c < 1:
            raise ValueError(f"bench-bn: expected N >= 2 (a batch to normalise) and C >= 1, got {item!r}")
        sizes.append((n, c))
    return sizes


def add_arguments(p):
    # "auto" when neither --backend nor $TINYNET_BACKEND names one: time every backend available
    p.set_defaults(backend=os.environ.get("TINYNET_BACKEND") or AUTO)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"N x C pairs, comma-separated (default {DEFAULT_SIZES})")
    p.add_argument("--repeat", type=int, default=20, help="timed calls per form and size (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per form first (default 3)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="also time the opt-in fused kernels (tinynet.speed)")


def backends_to_time(backend):
    """``[backend]``, or for "auto" NumPy and, where a GPU is found, CuPy."""
    if backend == AUTO:
        return ["numpy"] + (["cupy"] if cupy_available() else [])
    return [backend]


def synchronize(xp):
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def variants(xp, fast=False):
    """What is timed: (label, BatchNorm gradient form, accelerated?).

    Both forms run as the plain NumPy-API code that the docs derive; with ``fast`` the
    simplified form is also timed accelerated (tinynet.speed): CuPy's kernels, or on NumPy
    the C kernels where they could be built.
    """
    plain = [("paper", "paper", False), ("simplified", "simplified", False)]
    if not fast:
        return plain
    from ..speed import cpu

    has_fused = xp is not np or cpu.library() is not None
    return plain + [("fused", "simplified", True)] if has_fused else plain


def time_backward(n, c, xp, dtype, repeat, warmup, rng, fast=False):
    """Median seconds of one backward call of each variant at (N, C), and how far they disagree.

    Returns
    -------
    dict
        ``{label: seconds}`` for each of :func:`variants`, plus ``"max_abs_diff"`` (largest
        |dx - dx_simplified| over the variants) and ``"scale"`` (largest |dx_simplified|).
    """
    x = xp.asarray(rng.standard_normal((n, c)) * 3 + 1, dtype=dtype)
    dy = xp.asarray(rng.standard_normal((n, c)), dtype=dtype)
    gamma = xp.asarray(rng.uniform(0.5, 1.5, c), dtype=dtype)  # not 1, so that a gamma slip would show
    backend = "numpy" if xp is np else "cupy"
    layers, caches, outputs, times = {}, {}, {}, {}
    for label, form, fused in variants(xp, fast):
        layer = BatchNorm(c, gradient=form, dtype=dtype).to(backend)
        layer.gamma.data[...] = gamma
        if fused:
            from ..speed import accelerate

            accelerate(layer)
        layer(x)
        caches[label] = layer.saved()  # what forward kept: re-installed before every timed backward
        layers[label], times[label] = layer, []
    order = [v[0] for v in variants(xp, fast)]
    for i in range(warmup + repeat):
        for label in order[i % len(order):] + order[: i % len(order)]:  # rotate who goes first
            layer = layers[label]
            layer.save_for_backward(*caches[label])
            synchronize(xp)
            start = time.perf_counter()
            dx = layer.backward(dy)
            synchronize(xp)
            if i >= warmup:
                times[label].append(time.perf_counter() - start)
            outputs[label] = dx
    result = {label: statistics.median(t) for label, t in times.items()}
    reference = outputs["simplified"]
    result["max_abs_diff"] = max(float(xp.abs(dx - reference).max()) for dx in outputs.values())
    result["scale"] = float(xp.abs(reference).max())
    return result


def run(args):
    sizes = parse_sizes(args.sizes)
    if args.repeat < 1 or args.warmup < 0:
        raise ValueError(f"bench-bn: expected --repeat >= 1 and --warmup >= 0, got {args.repeat} and {args.warmup}")
    backends = backends_to_time(args.backend)
    dtype = np.dtype(args.dtype)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10  # relative to the largest |dx|
    disagree = []
    for backend in backends:
        xp = require_cupy() if backend == "cupy" else np
        load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
        print(f"\nBatchNorm backward on {backend}, {args.dtype}: median of {args.repeat} calls after "
              f"{args.warmup} warm-up calls{load}")
        fused = any(on for _, _, on in variants(xp, args.fast))
        head = (f"{'N':>6} {'C':>6}  {'paper (ms)':>11}  {'simplified (ms)':>15}  {'paper/simplified':>16}  {'faster':>10}"
                + (f"  {'fused (ms)':>10}  {'paper/fused':>11}" if fused else "") + f"  {'max |diff| / max |dx|':>21}")
        print(head)
        print("-" * len(head))
        rng = np.random.default_rng(args.seed)
        for n, c in sizes:
            r = time_backward(n, c, xp, dtype, args.repeat, args.warmup, rng, args.fast)
            ratio = r["paper"] / r["simplified"]
            relative = r["max_abs_diff"] / max(r["scale"], np.finfo(dtype).tiny)
            faster = "simplified" if ratio > 1 else "paper"
            flag = "" if relative <= tolerance else "  DISAGREE"
            if flag:
                disagree.append((backend, n, c, relative))
            line = (f"{n:>6} {c:>6}  {1e3 * r['paper']:>11.4f}  {1e3 * r['simplified']:>15.4f}  {ratio:>16.2f}  "
                    f"{faster:>10}")
            if fused:
                line += f"  {1e3 * r['fused']:>10.4f}  {r['paper'] / r['fused']:>11.2f}"
            print(line + f"  {relative:>21.1e}{flag}")
    if disagree:
        raise RuntimeError(f"the two backward forms disagree beyond {tolerance:g} (relative): {disagree}")
    print(f"\nAll forms agree everywhere (relative difference <= {tolerance:g}); "
          "paper/simplified > 1 means the simplified form is faster.")
