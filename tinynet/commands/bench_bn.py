"""Time BatchNorm's two backward forms (the paper's chain rule and the simplified closed form).

Example: python -m tinynet bench-bn --sizes 60x100,1024x1024,4096x4096 --repeat 30

Backward only: one forward, then each timed call re-installs the same saved values
and runs backward. The two forms alternate call by call (so a change in machine load
hits both alike), after warm-up calls; the median is reported, and on CuPy every
call is synchronised. Without --backend, times NumPy, and CuPy too where a GPU is found.
"""

import os
import statistics
import time

import numpy as np

from ..backend import cupy_available, require_cupy
from ..layers import BatchNorm

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
    # None = "not given": time every available backend (see run)
    p.set_defaults(backend=os.environ.get("TINYNET_BACKEND"))
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"N x C pairs, comma-separated (default {DEFAULT_SIZES})")
    p.add_argument("--repeat", type=int, default=20, help="timed calls per form and size (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per form first (default 3)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0)


def synchronize(xp):
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def time_backward(n, c, xp, dtype, repeat, warmup, rng):
    """Median seconds of one backward call of each form at (N, C), and the forms' largest difference.

    Returns
    -------
    dict
        ``{"paper": seconds, "simplified": seconds, "max_abs_diff": float, "scale": float}``, where
        ``scale`` is the largest |dx| (to judge the difference against).
    """
    x = xp.asarray(rng.standard_normal((n, c)) * 3 + 1, dtype=dtype)
    dy = xp.asarray(rng.standard_normal((n, c)), dtype=dtype)
    gamma = xp.asarray(rng.uniform(0.5, 1.5, c), dtype=dtype)  # not 1, so that a gamma slip would show
    layers, caches, outputs = {}, {}, {}
    for form in ("paper", "simplified"):
        layer = BatchNorm(c, gradient=form, dtype=dtype).to("cupy" if xp is not np else "numpy")
        layer.gamma.data[...] = gamma
        layer(x)
        caches[form] = layer.saved()  # what forward kept: re-installed before every timed backward
        layers[form] = layer
    times = {"paper": [], "simplified": []}
    for i in range(warmup + repeat):
        for form in ("paper", "simplified") if i % 2 else ("simplified", "paper"):
            layer = layers[form]
            layer.save_for_backward(*caches[form])
            synchronize(xp)
            start = time.perf_counter()
            dx = layer.backward(dy)
            synchronize(xp)
            if i >= warmup:
                times[form].append(time.perf_counter() - start)
            outputs[form] = dx
    diff = float(xp.abs(outputs["paper"] - outputs["simplified"]).max())
    scale = float(xp.abs(outputs["simplified"]).max())
    return {"paper": statistics.median(times["paper"]), "simplified": statistics.median(times["simplified"]),
            "max_abs_diff": diff, "scale": scale}


def run(args):
    sizes = parse_sizes(args.sizes)
    if args.repeat < 1 or args.warmup < 0:
        raise ValueError(f"bench-bn: expected --repeat >= 1 and --warmup >= 0, got {args.repeat} and {args.warmup}")
    if args.backend is None:
        backends = ["numpy"] + (["cupy"] if cupy_available() else [])
    else:
        backends = [args.backend]
    dtype = np.dtype(args.dtype)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10  # relative to the largest |dx|
    disagree = []
    for backend in backends:
        xp = require_cupy() if backend == "cupy" else np
        load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
        print(f"\nBatchNorm backward on {backend}, {args.dtype}: median of {args.repeat} calls after "
              f"{args.warmup} warm-up calls{load}")
        head = (f"{'N':>6} {'C':>6}  {'paper (ms)':>11}  {'simplified (ms)':>15}  {'paper/simplified':>16}  "
                f"{'faster':>10}  {'max |diff| / max |dx|':>21}")
        print(head)
        print("-" * len(head))
        rng = np.random.default_rng(args.seed)
        for n, c in sizes:
            r = time_backward(n, c, xp, dtype, args.repeat, args.warmup, rng)
            ratio = r["paper"] / r["simplified"]
            relative = r["max_abs_diff"] / max(r["scale"], np.finfo(dtype).tiny)
            faster = "simplified" if ratio > 1 else "paper"
            flag = "" if relative <= tolerance else "  DISAGREE"
            if flag:
                disagree.append((backend, n, c, relative))
            print(f"{n:>6} {c:>6}  {1e3 * r['paper']:>11.4f}  {1e3 * r['simplified']:>15.4f}  {ratio:>16.2f}  "
                  f"{faster:>10}  {relative:>21.1e}{flag}")
    if disagree:
        raise RuntimeError(f"the two backward forms disagree beyond {tolerance:g} (relative): {disagree}")
    print(f"\nBoth forms agree everywhere (relative difference <= {tolerance:g}); "
          "paper/simplified > 1 means the simplified form is faster.")
