"""tinynet's CNN against PyTorch on the CPU: the same network, same weights, same batches, in turns.

Run:  python benchmarks/bench_cnn.py                 (needs the `bench` extra: torch==2.13.0)
  or: make bench-cnn ARGS='--rounds 5 --threads 1'

The network is ``tinynet.models.cnn`` (issue 16): Conv 16 5x5 pad 2 -> BatchNorm2d -> ReLU -> pool,
Conv 32 5x5 -> BatchNorm2d -> ReLU -> pool, Flatten, Linear 800-128 -> BatchNorm -> ReLU -> Linear
128-10, trained with SGD (momentum 0.9) on MNIST, and its twin in PyTorch 2.13 built from the same
initial weights. Each round is one epoch per trainer over the *same* shuffled batches, cut into
blocks that the trainers take in turns (the order alternating), so load from other processes hits
all alike. The trainers: ``tinynet`` (the plain layers), ``tinynet-fast`` (after
``tinynet.speed.accelerate``, the opt-in fused implementations) and ``torch``. Neither framework
computes the gradient of the data: the first Conv2d has ``input_grad = False``, the torch input
no ``requires_grad``. It prints the median seconds per epoch and the ratio to PyTorch's.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="epochs per trainer (default 3)")
    p.add_argument("--blocks", type=int, default=6, help="blocks per epoch, taken in turns (default 6)")
    p.add_argument("--threads", type=int, default=2, help="BLAS threads for NumPy and torch.set_num_threads (default 2)")
    p.add_argument("--batch-size", type=int, default=128, help="examples per step (default 128)")
    p.add_argument("--train-size", type=int, default=60000, help="training examples per epoch (default 60000)")
    p.add_argument("--trainers", default="tinynet,tinynet-fast,torch",
                   help="which to run, of tinynet, tinynet-fast, torch (default all three)")
    p.add_argument("--save", metavar="BASE", default=None, help="also write BASE.json")
    p.add_argument("--data-dir", default=None, help="MNIST cache (default $TINYNET_DATA or ~/.cache/tinynet)")
    args = p.parse_args(argv)
    if min(args.rounds, args.blocks, args.threads, args.batch_size) < 1 or args.train_size < args.batch_size:
        p.error("--rounds, --blocks, --threads, --batch-size must be >= 1 and --train-size >= --batch-size")
    args.trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    if not args.trainers or not set(args.trainers) <= {"tinynet", "tinynet-fast", "torch"}:
        p.error(f"--trainers: expected some of tinynet, tinynet-fast, torch, got {args.trainers}")
    return args


ARGS = parse_args()
# BLAS and OpenMP read their thread counts when they load: set them before numpy or torch is imported
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
sys.path.insert(0, ROOT)  # the tinynet of this checkout, also when it is not installed

import numpy as np  # noqa: E402

import tinynet as tn  # noqa: E402
from tinynet.data import images_to_nchw  # noqa: E402
from tinynet.train import keep_freed_memory  # noqa: E402

LR, MOMENTUM, SEED = 0.05, 0.9, 0
IDLE_S = 0.5  # seconds of idle before each timed block: the other library's worker threads spin a while


class TinynetTrainer:
    def __init__(self, model, fast):
        self.model = model
        self.model[0].input_grad = False  # the data's gradient: nobody needs it
        self.loss = tn.SoftmaxCrossEntropy()
        self.optimizer = tn.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        self.report = None
        if fast:
            import tinynet.speed
            import tinynet.speed.conv  # noqa: F401  (registers Conv2d, BatchNorm2d, MaxPool2d)

            self.report = tinynet.speed.accelerate(self.model, self.loss, self.optimizer)

    def step(self, x, y):
        self.model.zero_grad()
        value = self.loss(self.model(x), y)
        self.model.backward(self.loss.backward())
        self.optimizer.step()
        return float(value)


class TorchTrainer:
    def __init__(self, torch, model):
        """The twin of the tinynet ``model`` (a ``tinynet.models.cnn``), starting from its weights."""
        nn = torch.nn
        self.torch = torch
        convs = [layer for layer in model if isinstance(layer, tn.Conv2d)]
        linears = [layer for layer in model if isinstance(layer, tn.Linear)]
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(800, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10),
        )
        with torch.no_grad():
            for mine, theirs in zip(convs, [self.net[0], self.net[4]]):
                theirs.weight.copy_(torch.from_numpy(mine.weight.data))  # both (out, in, kh, kw)
            for mine, theirs in zip(linears, [self.net[9], self.net[12]]):
                theirs.weight.copy_(torch.from_numpy(mine.weight.data.T.copy()))  # tinynet (in, out), torch (out, in)
            self.net[12].bias.copy_(torch.from_numpy(linears[1].bias.data))
        self.loss = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)

    def step(self, x, y):
        self.optimizer.zero_grad()
        value = self.loss(self.net(self.torch.from_numpy(x)), self.torch.from_numpy(y))
        value.backward()
        self.optimizer.step()
        return value.item()


def make_trainers():
    trainers = {}
    torch = None
    if "torch" in ARGS.trainers:
        try:
            import torch
        except ImportError:
            print("torch is not installed (pip install -e '.[bench]'): timing tinynet only")
        else:
            torch.set_num_threads(ARGS.threads)
    for name in ARGS.trainers:
        model = tn.cnn(rng=np.random.default_rng(SEED))  # the same initial weights for every trainer
        if name.startswith("tinynet"):
            trainers[name] = TinynetTrainer(model, fast=name == "tinynet-fast")
            if trainers[name].report is not None:
                print(trainers[name].report)
        elif torch is not None:
            trainers[name] = TorchTrainer(torch, model)
    return trainers


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"numpy": np.__version__, "python": platform.python_version()}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": ARGS.threads, **versions}


def main():
    keep_freed_memory()  # as tinynet.fit does (glibc keeps freed blocks for reuse); the whole process, torch too
    (x, y), _ = tn.datasets.load_mnist(ARGS.data_dir)
    x, y = images_to_nchw(x[:ARGS.train_size]), y[:ARGS.train_size].astype(np.int64)
    trainers = make_trainers()
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores; {ARGS.threads} threads each; numpy {info['numpy']}, "
          f"torch {info.get('torch', '-')}; {ARGS.train_size} examples, batch {ARGS.batch_size}")
    for trainer in trainers.values():  # warm-up: allocators, thread pools, compiled kernels
        for _ in range(3):
            trainer.step(x[:ARGS.batch_size], y[:ARGS.batch_size])
    names = list(trainers)
    seconds = {name: [] for name in names}
    losses = {name: [] for name in names}
    batch = ARGS.batch_size
    for r in range(ARGS.rounds):
        order = np.random.default_rng(SEED + r).permutation(len(x))
        starts = list(range(0, len(x) - batch + 1, batch))  # whole batches only
        blocks = np.array_split(np.array(starts), ARGS.blocks)
        spent = dict.fromkeys(names, 0.0)
        for b, block in enumerate(blocks):
            turn = names if (r + b) % 2 == 0 else names[::-1]  # who goes first alternates
            for name in turn:
                step = trainers[name].step
                time.sleep(IDLE_S)  # not timed: lets the previous trainer's threads go idle
                t0 = time.perf_counter()
                for start in block:
                    rows = order[start:start + batch]
                    value = step(x[rows], y[rows])
                spent[name] += time.perf_counter() - t0
                if b == len(blocks) - 1:
                    losses[name].append(value)
        for name in names:
            seconds[name].append(spent[name])
        print(f"round {r + 1}: " + ", ".join(f"{n} {spent[n]:.1f} s (last loss {losses[n][-1]:.4f})" for n in names))
    median = {name: statistics.median(s) for name, s in seconds.items()}
    print()
    print(f"{'trainer':<14} {'s/epoch (median)':>17} {'vs torch':>9}")
    for name in names:
        ratio = f"{median[name] / median['torch']:.2f}x" if "torch" in median else "-"
        print(f"{name:<14} {median[name]:>17.2f} {ratio:>9}")
    if ARGS.save:
        with open(ARGS.save + ".json", "w") as f:
            json.dump({"machine": info, "args": {k: v for k, v in vars(ARGS).items() if k != "save"},
                       "seconds": seconds, "median": median, "last_loss": losses}, f, indent=1)


if __name__ == "__main__":
    main()
