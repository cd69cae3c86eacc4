"""Where one CPU training step goes: tinynet's parts beside PyTorch's operators, per step.

Run:  make profile                                          (installs the `bench` extra, torch==2.13.0)
  or: python benchmarks/step_profile.py                      (tinynet, and PyTorch when installed)
      python benchmarks/step_profile.py --hidden 1024 --batch 1024 --steps 40

Trains 784-H-H-10 with BatchNorm (SGD, momentum 0.9) on MNIST batches, both frameworks over the
same batches with the same threads, and prints microseconds per step for each part: the matrix
products (tinynet's Linear layers), BatchNorm, ReLU, the loss, the optimizer, the NaN check, the
batch gather, and the rest. tinynet's parts are timed by wrapping each call; PyTorch's by its
profiler (operator self time, an optimizer's operators counted as the optimizer). Both ways add
a little per call, so the parts sum to more than the plain step, printed last for both.
"""

import argparse
import collections
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("matrix products", "BatchNorm", "ReLU", "loss", "optimizer", "NaN check", "batch gather", "rest")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=256, help="hidden width H (default 256)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--steps", type=int, default=300, help="timed steps per framework (default 300)")
    p.add_argument("--threads", type=int, default=2, help="BLAS threads and torch threads (default 2)")
    p.add_argument("--fast", action="store_true", help="profile tinynet with the opt-in kernels (tinynet.speed)")
    p.add_argument("--repeats", type=int, default=3,
                   help="measurements per framework, taken in turns; the table gives the medians (default 3)")
    args = p.parse_args(argv)
    if min(args.hidden, args.batch, args.steps, args.threads, args.repeats) < 1 or args.batch < 2:
        p.error("--hidden, --steps, --threads and --repeats must be >= 1, --batch >= 2")
    return args


ARGS = parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)  # read when the libraries load
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import tinynet as tn  # noqa: E402
from tinynet.data.batching import images_to_features  # noqa: E402
from tinynet.nonfinite import finite_step  # noqa: E402
from tinynet.train import BlasThreads, first_layer_skips_input_gradient  # noqa: E402


IDLE_S = 0.5  # before each framework's turn: the other library's worker threads spin for ~0.2 s


def tinynet_parts(x, y, batches):
    """Microseconds per step of each part, and of the unwrapped step, for tinynet."""
    time.sleep(IDLE_S)
    model = tn.mlp((784, ARGS.hidden, ARGS.hidden, 10), rng=np.random.default_rng(0))
    loss, optimizer = tn.SoftmaxCrossEntropy(), tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if ARGS.fast:
        import tinynet.speed

        tinynet.speed.accelerate(model, loss, optimizer)
    # as fit runs: the first Linear skips dL/dx of the data, BLAS threads chosen by problem size
    first_layer_skips_input_gradient(model).__enter__()
    BlasThreads(x).__enter__()

    def step(rows, check=finite_step, gather=lambda rows: (x[rows], y[rows])):
        xb, yb = gather(rows)
        value = loss(model.forward(xb), yb)
        optimizer.zero_grad()
        model.backward(loss.backward())
        check(np, value, optimizer.params)
        optimizer.step()

    plain = time_steps(step, batches)
    spent = collections.Counter()

    def timed(part, f):
        def wrapper(*args):
            start = time.perf_counter()
            result = f(*args)
            spent[part] += time.perf_counter() - start
            return result
        return wrapper

    kinds = {tn.Linear: "matrix products", tn.BatchNorm: "BatchNorm", tn.ReLU: "ReLU"}
    for layer in model.modules():
        if type(layer) in kinds:
            layer.forward = timed(kinds[type(layer)], layer.forward)
            layer.backward = timed(kinds[type(layer)], layer.backward)
    loss.forward, loss.backward = timed("loss", loss.forward), timed("loss", loss.backward)
    optimizer.step, optimizer.zero_grad = timed("optimizer", optimizer.step), timed("optimizer", optimizer.zero_grad)
    check, gather = timed("NaN check", finite_step), timed("batch gather", lambda rows: (x[rows], y[rows]))
    whole = time_steps(lambda rows: step(rows, check, gather), batches, after_warm_up=spent.clear)
    return per_step(spent, whole, len(batches)), plain * 1e6


def torch_parts(torch, x, y, batches):
    """The same for PyTorch: operator self times from its profiler, grouped into the parts."""
    time.sleep(IDLE_S)
    from gpu_check import torch_mlp  # the same network in PyTorch; benchmarks/ is this script's folder

    nn = torch.nn
    model = torch_mlp(nn, ARGS.hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def step(rows):
        rows = torch.from_numpy(rows)
        value = nn.functional.cross_entropy(model(x[rows]), y[rows])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()

    plain = time_steps(step, batches)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for rows in batches:
            step(rows)
        whole = (time.perf_counter() - start) / len(batches)
    spent = collections.Counter()
    for event in prof.events():
        top = event
        while top.cpu_parent is not None:
            top = top.cpu_parent
        part = "optimizer" if top.name.startswith("Optimizer.") else torch_part(event.name)
        if part is not None:
            spent[part] += event.self_cpu_time_total / 1e6
    return per_step(spent, whole, len(batches)), plain * 1e6


def torch_part(name):
    """The part an ATen operator belongs to, or None (then it counts as the rest)."""
    for part, words in (("matrix products", ("aten::mm", "aten::addmm")), ("BatchNorm", ("batch_norm",)),
                        ("ReLU", ("relu", "clamp_min", "threshold")), ("loss", ("softmax", "nll_loss")),
                        ("batch gather", ("aten::index",))):
        if any(w in name for w in words):
            return part
    return None


def time_steps(step, batches, after_warm_up=lambda: None):
    """Seconds per step over ``batches``, after 20 warm-up steps."""
    for rows in batches[:20]:
        step(rows)
    after_warm_up()
    start = time.perf_counter()
    for rows in batches:
        step(rows)
    return (time.perf_counter() - start) / len(batches)


def per_step(spent, seconds_per_step, steps):
    """{part: microseconds per step}; the rest is the step's time that no part took."""
    parts = {part: spent[part] / steps * 1e6 for part in PARTS[:-1]}
    parts["rest"] = seconds_per_step * 1e6 - sum(parts.values())
    return parts


def main():
    (images, labels), _ = tn.datasets.load_mnist()
    x, y = images_to_features(images), labels
    rng = np.random.default_rng(1)
    order = rng.permutation(len(x))
    batches = [order[i:i + ARGS.batch] for i in range(0, min(len(x), ARGS.steps * ARGS.batch) - ARGS.batch + 1, ARGS.batch)]
    profilers = {"tinynet": lambda: tinynet_parts(x, y, batches)}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(ARGS.threads)
        profilers["PyTorch"] = lambda: torch_parts(torch, x, y, batches)
    runs = collections.defaultdict(list)
    for _ in range(ARGS.repeats):  # in turns, so a slow spell of the machine hits both
        for name, profiler in profilers.items():
            runs[name].append(profiler())
    columns = {name: ({part: float(np.median([r[0][part] for r in rs])) for part in PARTS},
                      float(np.median([r[1] for r in rs]))) for name, rs in runs.items()}
    print(f"(hidden, batch) = ({ARGS.hidden}, {ARGS.batch}), {len(batches)} steps, {ARGS.threads} threads; "
          f"microseconds per step, medians of {ARGS.repeats}; tinynet {'with the opt-in kernels (--fast)' if ARGS.fast else 'plain (the default)'}")
    print("| part | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for part in PARTS:
        print(f"| {part} | " + " | ".join(f"{parts[part]:.0f}" for parts, _ in columns.values()) + " |")
    print("| sum of the parts (timed) | " + " | ".join(f"{sum(p.values()):.0f}" for p, _ in columns.values()) + " |")
    print("| plain step (not timed by parts) | " + " | ".join(f"{plain:.0f}" for _, plain in columns.values()) + " |")


if __name__ == "__main__":
    main()
