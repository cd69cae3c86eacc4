"""Where a training step's GPU time goes: tinynet-cupy against PyTorch CUDA eager, phase by phase.

Run on a GPU machine, from the repository root:

    PYTHONPATH=. python3 benchmarks/gpu_profile.py                        # (4096, 4096), 20 steps
    PYTHONPATH=. python3 benchmarks/gpu_profile.py --config 1024x1024 --steps 50

The model is gpu_check.py's (784-H-H-10 with BatchNorm, SGD momentum 0.9, float32). CUDA events
recorded between the phases of each step (the batch gather, each layer's forward, the loss,
zero_grad, the backward, the optimizer step) give each phase's GPU time; the tables show medians
over the steps after a few warm-up steps, in milliseconds. tinynet runs its opt-in fused kernels (tinynet.speed), eagerly
(no CUDA graph), its layers one by one as ``Sequential`` runs them. PyTorch's backward is one call,
so its phases are coarser; the second table puts both in the same five groups. Synthetic data:
the timing does not depend on the values. Prints the tables and, when $OUT is set, writes them to
$OUT/gpu-profile-HIDDENxBATCH.md as well.

Two more views of the same steps, unmarked: ``issue vs done`` runs a row of steps without
synchronising and reports how long Python took to issue them against how long the GPU took to
finish them (issue close to done means the host waited, or could not launch fast enough), and
``--kernels`` lists the GPU kernels of a few steps of each framework with their total time, from
PyTorch's profiler (CUPTI sees every kernel of the process, CuPy's included).
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("gather", "forward", "loss forward", "backward", "zero_grad", "optimizer")


class Marks:
    """Named CUDA events through one step; ``finish`` turns them into per-phase milliseconds."""

    def __init__(self, new_event, elapsed_ms, synchronize):
        self.new_event, self.elapsed_ms, self.synchronize = new_event, elapsed_ms, synchronize
        self.times = {}  # phase -> [ms per kept step]

    def start(self):
        self.events = [("start", self._record())]

    def mark(self, phase):
        self.events.append((phase, self._record()))

    def _record(self):
        event = self.new_event()
        event.record()
        return event

    def finish(self, keep):
        self.synchronize()
        if keep:
            for (_, before), (phase, after) in zip(self.events, self.events[1:]):
                self.times.setdefault(phase, []).append(self.elapsed_ms(before, after))

    def medians(self):
        return {phase: statistics.median(ms) for phase, ms in self.times.items()}


def group_of(phase):
    """The group a phase belongs to, for the side-by-side table."""
    if phase.startswith("forward"):
        return "forward"
    if phase.startswith("backward") or phase == "loss backward":
        return "backward"
    return {"SGD step": "optimizer"}.get(phase, phase)


def tinynet_setup(hidden, examples, features, classes):
    """Synthetic data on the GPU and the MLP, loss and SGD, as fit sets them up:
    ``(rng, x, y, model, loss, optimizer, skip_data_gradient)``."""
    import cupy
    import numpy as np

    import tinynet as tn
    import tinynet.speed
    from tinynet.train import first_layer_skips_input_gradient

    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.random((examples, features), dtype=np.float32))
    y = cupy.asarray(rng.integers(0, classes, examples))
    model = tn.mlp([features, hidden, hidden, classes], rng=rng).to("cupy")
    loss = tn.SoftmaxCrossEntropy()
    optimizer = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tinynet.speed.accelerate(model, loss, optimizer)  # the opt-in, as fit(fast=True)
    return rng, x, y, model, loss, optimizer, first_layer_skips_input_gradient(model)


def torch_setup(hidden, examples, features, classes):
    """The same in PyTorch: ``(x, y, model, criterion, optimizer)`` on the GPU."""
    import torch
    from gpu_check import torch_mlp  # benchmarks/ is on sys.path (main puts it there)

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = torch_mlp(torch.nn, hidden, features, classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.rand(examples, features, device=device)
    y = torch.randint(0, classes, (examples,), device=device)
    return x, y, model, torch.nn.CrossEntropyLoss(), optimizer


def profile_tinynet(hidden, batch, steps, warmup=3, examples=60000, features=784, classes=10):
    """Per-phase medians (ms) of tinynet's eager fused training step on CuPy."""
    import cupy

    rng, x, y, model, loss, optimizer, skip_data_gradient = tinynet_setup(hidden, examples, features, classes)
    skip_data_gradient.__enter__()  # for the whole profile, as in fit
    layers = [node.layer for node in model.nodes]  # a chain: each layer's output is the next one's input
    marks = Marks(cupy.cuda.Event, cupy.cuda.get_elapsed_time, cupy.cuda.runtime.deviceSynchronize)
    for step in range(warmup + steps):
        rows = cupy.asarray(rng.permutation(examples)[:batch])
        marks.start()
        h, yb = x[rows], y[rows]
        marks.mark("gather")
        for i, layer in enumerate(layers):
            h = layer.forward(h)
            marks.mark(f"forward {i} {type(layer).__name__}")
        loss.forward(h, yb)
        marks.mark("loss forward")
        optimizer.zero_grad()
        marks.mark("zero_grad")
        d = loss.backward()
        marks.mark("loss backward")
        for i in reversed(range(len(layers))):
            d = layers[i].backward(d)
            marks.mark(f"backward {i} {type(layers[i]).__name__}")
        optimizer.step()
        marks.mark("SGD step")
        marks.finish(keep=step >= warmup)
    return marks.medians()


def profile_torch(hidden, batch, steps, warmup=3, examples=60000, features=784, classes=10):
    """Per-phase medians (ms) of the same step in PyTorch, eager."""
    import torch

    x, y, model, criterion, optimizer = torch_setup(hidden, examples, features, classes)
    device = x.device
    marks = Marks(lambda: torch.cuda.Event(enable_timing=True), lambda a, b: a.elapsed_time(b), torch.cuda.synchronize)
    for step in range(warmup + steps):
        rows = torch.randperm(examples, device=device)[:batch]
        marks.start()
        h, yb = x[rows], y[rows]
        marks.mark("gather")
        optimizer.zero_grad(set_to_none=True)
        marks.mark("zero_grad")
        for i, layer in enumerate(model):
            h = layer(h)
            marks.mark(f"forward {i} {type(layer).__name__}")
        value = criterion(h, yb)
        marks.mark("loss forward")
        value.backward()
        marks.mark("backward (loss and all layers)")
        optimizer.step()
        marks.mark("SGD step")
        marks.finish(keep=step >= warmup)
    return marks.medians()


def tinynet_step(hidden, batch, examples=60000, features=784, classes=10):
    """tinynet's eager fused step as fit runs it, ``step()``, and the synchronise function."""
    import cupy

    from tinynet.train import training_step

    rng, x, y, model, loss, optimizer, skip_data_gradient = tinynet_setup(hidden, examples, features, classes)
    skip_data_gradient.__enter__()  # for the whole profile, as in fit
    train_step = training_step(model, loss, optimizer)
    order = cupy.asarray(rng.permutation(examples))
    starts = range(0, examples - batch + 1, batch)

    def step(i):
        rows = order[starts[i % len(starts)] : starts[i % len(starts)] + batch]
        return train_step(x[rows], y[rows])

    return step, cupy.cuda.runtime.deviceSynchronize


def torch_step(hidden, batch, examples=60000, features=784, classes=10):
    """The same step in PyTorch, eager, as gpu_check times it."""
    import torch

    x, y, model, criterion, optimizer = torch_setup(hidden, examples, features, classes)
    order = torch.randperm(examples, device=x.device)
    starts = range(0, examples - batch + 1, batch)

    def step(i):
        rows = order[starts[i % len(starts)] : starts[i % len(starts)] + batch]
        optimizer.zero_grad(set_to_none=True)
        value = criterion(model(x[rows]), y[rows])
        value.backward()
        optimizer.step()
        return value.detach()

    return step, torch.cuda.synchronize


def issue_vs_done(step, synchronize, steps, warmup=3):
    """Milliseconds per step: host time to issue ``steps`` steps, and time until the GPU finished them."""
    import time

    for i in range(warmup):
        step(i)
    synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    issued = time.perf_counter()
    synchronize()
    done = time.perf_counter()
    return 1e3 * (issued - start) / steps, 1e3 * (done - start) / steps


def kernel_table(step, synchronize, steps=5, rows=25):
    """The GPU kernels of ``steps`` steps, summed by name, from torch.profiler (markdown-ish text)."""
    from torch.profiler import ProfilerActivity, profile

    for i in range(3):
        step(i)
    synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            step(i)
        synchronize()
    averages = prof.key_averages()
    for key in ("self_device_time_total", "self_cuda_time_total", "device_time_total", "cuda_time_total"):
        try:
            return averages.table(sort_by=key, row_limit=rows, max_name_column_width=60)
        except Exception:  # the key's name changed between PyTorch versions
            continue
    return averages.table(row_limit=rows)


def tables(results):
    """Markdown: every phase of each framework, then both side by side in the same groups."""
    lines = []
    for name, phases in results.items():
        total = sum(phases.values())
        lines += [f"**{name}**: {total:.3f} ms per step (sum of the phase medians)", "",
                  "| phase | ms | share |", "|---|---|---|"]
        lines += [f"| {phase} | {ms:.3f} | {100 * ms / total:.1f} % |" for phase, ms in phases.items()]
        lines.append("")
    grouped = {name: {g: 0.0 for g in GROUPS} for name in results}
    for name, phases in results.items():
        for phase, ms in phases.items():
            grouped[name][group_of(phase)] += ms
    names = list(results)
    lines += ["| group | " + " | ".join(f"{n} ms" for n in names) + (" | ratio |" if len(names) == 2 else " |"),
              "|---|" + "---|" * (len(names) + (len(names) == 2))]
    for group in (*GROUPS, "step"):
        values = [sum(grouped[n].values()) if group == "step" else grouped[n][group] for n in names]
        cells = [f"{v:.3f}" for v in values]
        if len(names) == 2:
            cells.append(f"{values[0] / values[1]:.2f}" if values[1] > 0 else "—")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class Report:
    """Sections printed as they come and the file rewritten after each, so a crash keeps what was measured."""

    def __init__(self, path):
        self.path, self.text = path, ""

    def add(self, section):
        print(section, flush=True)
        self.text += section + "\n"
        if self.path is not None:
            self.path.write_text(self.text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="4096x4096", help="HIDDENxBATCH (default 4096x4096)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps after 3 warm-up steps (default 20)")
    parser.add_argument("--kernels", action="store_true", help="also list each framework's GPU kernels (torch.profiler)")
    args = parser.parse_args(argv)
    try:
        hidden, batch = (int(v) for v in args.config.lower().split("x"))
    except ValueError:
        parser.error(f"--config: expected HIDDENxBATCH such as 4096x4096, got {args.config!r}")
    if hidden < 1 or batch < 2 or args.steps < 1:
        parser.error("--config needs hidden >= 1 and batch >= 2, --steps >= 1")
    sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]  # tinynet, and gpu_check beside this file
    results = {"tinynet": profile_tinynet(hidden, batch, args.steps)}
    try:
        results["PyTorch"] = profile_torch(hidden, batch, args.steps)
    except Exception as exc:  # no torch, or no CUDA for it: tinynet's phases alone
        print(f"PyTorch not profiled: {type(exc).__name__}: {exc}", file=sys.stderr)
    report = Report(Path(os.environ["OUT"], f"gpu-profile-{hidden}x{batch}.md") if os.environ.get("OUT") else None)
    report.add(f"# GPU time per phase of one training step, (hidden, batch) = ({hidden}, {batch}), "
               f"median of {args.steps} steps\n\n" + tables(results))
    steppers = {"tinynet": tinynet_step}
    if "PyTorch" in results:
        steppers["PyTorch"] = torch_step
    made = {name: make(hidden, batch) for name, make in steppers.items()}
    rows = ["## Issue vs done, ms per step over a row of unsynchronised steps", "",
            "| framework | issued | done |", "|---|---|---|"]
    for name, (step, synchronize) in made.items():
        issued, done = issue_vs_done(step, synchronize, max(args.steps, 30))
        rows.append(f"| {name} | {issued:.3f} | {done:.3f} |")
    report.add("\n".join(rows) + "\n")
    for name, (step, synchronize) in made.items() if args.kernels else ():
        try:
            report.add(f"## GPU kernels of 5 steps, {name}\n\n```\n{kernel_table(step, synchronize)}\n```\n")
        except Exception as exc:  # no CUPTI, or a profiler API that moved
            report.add(f"(kernel table for {name} failed: {type(exc).__name__}: {exc})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
