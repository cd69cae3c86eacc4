"""Where a training step's GPU time goes: tinynet-cupy against PyTorch CUDA eager, phase by phase.

Run on a GPU machine, from the repository root:

    PYTHONPATH=. python3 benchmarks/gpu_profile.py                        # (4096, 4096), 20 steps
    PYTHONPATH=. python3 benchmarks/gpu_profile.py --config 1024x1024 --steps 50

The model is gpu_check.py's (784-H-H-10 with BatchNorm, SGD momentum 0.9, float32). CUDA events
recorded between the phases of each step (the batch gather, each layer's forward, the loss,
zero_grad, the backward, the optimizer step) give each phase's GPU time; the tables show medians
over the steps after a few warm-up steps, in milliseconds. tinynet runs its fused kernels, eagerly
(no CUDA graph), its layers one by one as ``Sequential`` runs them. PyTorch's backward is one call,
so its phases are coarser; the second table puts both in the same five groups. Synthetic data:
the timing does not depend on the values. Prints the tables and, when $OUT is set, writes them to
$OUT/gpu-profile.md as well.
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


def profile_tinynet(hidden, batch, steps, warmup=3, examples=60000, features=784, classes=10):
    """Per-phase medians (ms) of tinynet's eager fused training step on CuPy."""
    import cupy
    import numpy as np

    import tinynet as tn
    from tinynet.train import SkipInputGradient, data_readers

    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.random((examples, features), dtype=np.float32))
    y = cupy.asarray(rng.integers(0, classes, examples))
    model = tn.mlp([features, hidden, hidden, classes], rng=rng).to("cupy")
    layers = [node.layer for node in model.nodes]  # a chain: each layer's output is the next one's input
    loss = tn.SoftmaxCrossEntropy()
    loss.known_label_range = (0, classes - 1)  # as fit does: no read of the labels per step
    optimizer = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    skip_data_gradient = SkipInputGradient(data_readers(model))
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
        with skip_data_gradient:
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
    from gpu_check import torch_mlp  # benchmarks/ is on sys.path (main puts it there)

    device = torch.device("cuda")
    nn = torch.nn
    torch.manual_seed(0)
    model = torch_mlp(nn, hidden, features, classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    x = torch.rand(examples, features, device=device)
    y = torch.randint(0, classes, (examples,), device=device)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="4096x4096", help="HIDDENxBATCH (default 4096x4096)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps after 3 warm-up steps (default 20)")
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
    text = (f"# GPU time per phase of one training step, (hidden, batch) = ({hidden}, {batch}), "
            f"median of {args.steps} steps\n\n" + tables(results))
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu-profile.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
