"""tinynet against PyTorch on the CPU: the MNIST MLP trained side by side, same batches, same threads.

Run:  make bench                                    (installs the `bench` extra, torch==2.13.0)
  or: python benchmarks/bench_cpu.py --rounds 5 --save benchmarks/results/my-machine

For each (hidden, batch) configuration it trains 784-hidden-hidden-10 with BatchNorm (SGD, momentum
0.9) on the 60000 MNIST training images. One round is one epoch of each trainer over the *same*
shuffled batches, starting from the *same* weights, cut into blocks of the data that the trainers
train in turns (the order rotating), so load from other processes hits them alike. The trainers:
``tinynet`` (the default ``tinynet.fit``: the plain code a student reads), ``tinynet-fast``
(``fit(..., fast=True)``: the opt-in C kernels of tinynet.speed) and ``torch`` (PyTorch eager). It
prints the median seconds per epoch, each tinynet's ratio to PyTorch, the GFLOP/s of the whole
training step against the float32 GEMM peak measured in the same run, and the peak RSS of one
training run per framework, each in a subprocess of its own. PyTorch is optional: without it only
tinynet is timed.

``--threads`` caps the BLAS threads of every trainer (PyTorch's too); within the cap tinynet's fit
chooses its own count by problem size, as it does for a user.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="256x128,1024x1024",
                   help="comma-separated HIDDENxBATCH pairs (default 256x128,1024x1024)")
    p.add_argument("--rounds", type=int, default=7, help="epochs per framework and configuration, each taken in turns by blocks (default 7)")
    p.add_argument("--blocks", type=int, default=3,
                   help="each round's epoch is cut into this many blocks of the data, the two frameworks taking "
                        "turns block by block (default 3)")
    p.add_argument("--threads", type=int, default=2, help="BLAS threads for NumPy and torch.set_num_threads (default 2)")
    p.add_argument("--train-size", type=int, default=60000, help="training examples per epoch (default 60000)")
    p.add_argument("--frameworks", default="tinynet,tinynet-fast,torch",
                   help="which to run (default tinynet,tinynet-fast,torch)")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--save", metavar="BASE", default=None, help="also write BASE.json and BASE.txt")
    p.add_argument("--data-dir", default=None, help="MNIST cache (default $TINYNET_DATA or ~/.cache/tinynet)")
    p.add_argument("--child", choices=["tinynet", "torch", "cli"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds < 1 or args.threads < 1 or args.blocks < 1 or args.train_size < 2:
        p.error("--rounds, --blocks and --threads must be >= 1 and --train-size >= 2")
    text = args.configs
    try:
        args.configs = [tuple(int(v) for v in c.lower().split("x")) for c in text.split(",") if c.strip()]
    except ValueError:
        args.configs = []
    if not args.configs or any(len(c) != 2 or min(c) < 1 for c in args.configs):
        p.error(f"--configs: expected HIDDENxBATCH pairs such as 256x128,1024x1024, got {text!r}")
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    if not set(args.frameworks) <= {"tinynet", "tinynet-fast", "torch"}:
        p.error(f"--frameworks: expected some of tinynet, tinynet-fast, torch, got {args.frameworks}")
    return args


ARGS = parse_args()
# BLAS and OpenMP read their thread counts when they load: set them before numpy or torch is imported
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
sys.path.insert(0, ROOT)  # the tinynet of this checkout, also when it is not installed

import numpy as np  # noqa: E402

import tinynet as tn  # noqa: E402
from tinynet.data.batching import images_to_features  # noqa: E402

LR, MOMENTUM, SEED = 0.05, 0.9, 0
IDLE_S = 0.5  # seconds of idle before each timed block


def import_torch():
    """torch, with ``threads`` intra-op threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(ARGS.threads)
    return torch


def load_data(size):
    (x, y), (x_test, y_test) = tn.datasets.load_mnist(ARGS.data_dir)
    x, x_test = images_to_features(x[:size]), images_to_features(x_test)
    return (x, y[:size].astype(np.int64)), (x_test, y_test.astype(np.int64))


def matmul_flops(sizes, examples):
    """Matrix-product FLOPs of one epoch: forward, dW, and dx of every layer but the first.

    The first layer's dx is the gradient of the data, which neither framework needs.
    """
    pairs = list(zip(sizes[:-1], sizes[1:]))
    per_example = sum(2 * a * b for a, b in pairs) * 3 - 2 * pairs[0][0] * pairs[0][1]
    return per_example * examples


def block_bounds(n, batch, blocks):
    """``blocks`` contiguous (start, stop) row ranges covering n rows, cut at multiples of ``batch``.

    Each block is trained as a small epoch (its rows shuffled by fit): the same batches an epoch
    would see when blocks == 1, while taking turns per block keeps the two frameworks' epochs
    within a second of each other, so a slowdown from outside that lasts seconds hits both.
    """
    size = -(-n // blocks // batch) * batch  # rows per block, a whole number of batches
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def gemm_peak(torch=None, n=2048, repeats=5):
    """Best-of-``repeats`` float32 GFLOP/s of an n x n x n product in NumPy (and torch, if given)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    products = {"numpy": lambda: a @ b}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        products["torch"] = lambda: ta @ tb
    peaks = {}
    for name, product in products.items():
        product()
        best = min(timed(product) for _ in range(repeats))
        peaks[name] = 2 * n**3 / best / 1e9
    return peaks


def timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


# -- the two trainers: same model, same weights, same batches ----------------------------------------


class TinynetTrainer:
    def __init__(self, sizes, batch, fast=False):
        self.model = tn.mlp(sizes, rng=np.random.default_rng(SEED))
        self.loss = tn.SoftmaxCrossEntropy()
        self.optimizer = tn.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.batch, self.fast = batch, fast

    def epoch(self, x, y, seed):
        """Train one epoch, shuffled by ``seed``; return (seconds, mean training loss)."""
        rng = np.random.default_rng(seed)
        history = tn.fit(self.model, self.loss, self.optimizer, x, y, 1, self.batch, rng=rng, progress=False,
                         fast=self.fast)
        return history.seconds[0], history.train_loss[0]

    def accuracy(self, x, y):
        return tn.evaluate(self.model, self.loss, x, y).accuracy


class TorchTrainer:
    """The same MLP in PyTorch (BatchNorm1d's conventions are tinynet's), eager mode, its defaults."""

    def __init__(self, torch, sizes, batch, weights_from):
        from gpu_check import torch_mlp  # the network gpu_check and the profiles build; benchmarks/ is on sys.path

        nn = torch.nn
        features, hidden, _, classes = sizes  # 784-H-H-10, as every configuration here
        self.model = torch_mlp(nn, hidden, features, classes)
        # start from tinynet's initial weights: both runs then train the same network
        linears = [m for m in self.model if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for linear, tiny in zip(linears, [m for m in weights_from.modules() if isinstance(m, tn.Linear)]):
                linear.weight.copy_(torch.from_numpy(tiny.weight.data.T))  # torch stores (out, in)
                if linear.bias is not None:
                    linear.bias.copy_(torch.from_numpy(tiny.bias.data))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.torch, self.batch = torch, batch

    def epoch(self, x, y, seed):
        """Train one epoch over the batches ``tinynet.fit`` draws from ``seed``; return (seconds, loss)."""
        torch, cross_entropy = self.torch, self.torch.nn.functional.cross_entropy
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        self.model.train()
        start = time.perf_counter()
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
        losses = []
        for i in range(0, len(x), self.batch):
            if len(x) - i < 2:  # BatchNorm cannot take a batch of one (fit drops it too)
                break
            rows = order[i : i + self.batch]
            loss = cross_entropy(self.model(x[rows]), y[rows])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
        seconds = time.perf_counter() - start
        return seconds, float(torch.stack(losses).mean())

    def accuracy(self, x, y):
        torch = self.torch
        self.model.eval()
        with torch.no_grad():
            logits = self.model(torch.from_numpy(x))
        return float((logits.argmax(1) == torch.from_numpy(y)).double().mean())


# -- peak RSS, one subprocess per framework ----------------------------------------------------------


def child_main():
    """Train the default MLP (256, 128) for one epoch and evaluate it; print the peak RSS as JSON.

    ``--child cli`` runs ``python -m tinynet train --epochs 1 --quiet`` in this process instead:
    what a student runs, validation and test evaluation included.
    """
    if ARGS.child == "cli":
        from tinynet.cli import main as tinynet_main

        tinynet_main(["train", "--epochs", "1", "--quiet"] + (["--data-dir", ARGS.data_dir] if ARGS.data_dir else []))
    else:
        (x, y), (x_test, y_test) = load_data(ARGS.train_size)
        tiny = TinynetTrainer([784, 256, 256, 10], 128)
        torch = import_torch() if ARGS.child == "torch" else None
        trainer = tiny if torch is None else TorchTrainer(torch, [784, 256, 256, 10], 128, tiny.model)
        trainer.epoch(x, y, SEED)
        trainer.accuracy(x_test, y_test)
    print(json.dumps({"peak_rss_mib": peak_rss_mib()}))


def peak_rss_mib():
    """Peak resident memory of this process, imports and data included.

    Linux's VmHWM belongs to this process's own address space. ru_maxrss would not do: exec
    keeps the larger peak of the parent it was forked from (here, the benchmark with torch loaded).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def measure_rss():
    """Peak RSS (MiB) of one run per framework, each alone in a fresh interpreter."""
    me = [sys.executable, os.path.abspath(__file__), "--threads", str(ARGS.threads), "--train-size", str(ARGS.train_size)]
    if ARGS.data_dir:
        me += ["--data-dir", ARGS.data_dir]
    children = {"tinynet": "tinynet", "torch": "torch", "tinynet train CLI": "cli"}
    if "tinynet" not in ARGS.frameworks:
        del children["tinynet"], children["tinynet train CLI"]
    if "torch" not in ARGS.frameworks or import_torch() is None:
        del children["torch"]
    rss = {}
    for name, child in children.items():
        done = subprocess.run(me + ["--child", child], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"the {name} RSS run failed:\n{done.stderr}")
        rss[name] = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]
    return rss


# -- the report ----------------------------------------------------------------------------------------


def machine():
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_name(),
        "threads": ARGS.threads,
        # the opt-in C kernels (tinynet.speed.cpu): built or not; only tinynet-fast uses them
        "cpu_kernels": cpu_status() if "tinynet-fast" in ARGS.frameworks else "not used",
    }


def cpu_status():
    from tinynet.speed import cpu_status

    return cpu_status()


def blas_name():
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info['name']} {info['version']}"
    except Exception:  # older NumPy: no dict form
        return "unknown"


def main():
    if ARGS.child:
        return child_main()
    torch = import_torch() if "torch" in ARGS.frameworks else None
    if "torch" in ARGS.frameworks and torch is None:
        print("PyTorch is not installed: timing tinynet alone (make bench installs torch==2.13.0)\n")
    info = machine()
    info["torch"] = None if torch is None else torch.__version__
    print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; Python {info['python']}, NumPy "
          f"{info['numpy']} ({info['blas']}), torch {info['torch']}; {ARGS.threads} threads each")
    print(f"tinynet-fast's C kernels: {info['cpu_kernels']}")
    print(f"load average before: {os.getloadavg()[0]:.2f}\n")
    (x, y), (x_test, y_test) = load_data(ARGS.train_size)
    results = {"machine": info, "load_before": os.getloadavg(), "configs": [], "gemm_peaks": []}

    for hidden, batch in ARGS.configs:
        sizes = [x.shape[1], hidden, hidden, 10]
        peaks = gemm_peak(torch)
        results["gemm_peaks"].append(peaks)  # updated in place after every round
        ref = TinynetTrainer(sizes, batch)  # every trainer starts from these weights
        trainers = {"tinynet": ref, "tinynet-fast": TinynetTrainer(sizes, batch, fast=True),
                    "torch": torch and TorchTrainer(torch, sizes, batch, ref.model)}
        trainers = {k: v for k, v in trainers.items() if v is not None and k in ARGS.frameworks}
        for trainer in trainers.values():  # warm up thread pools and allocators: a few batches each
            trainer.epoch(x[: 8 * batch], y[: 8 * batch], SEED)
        print(f"(hidden, batch) = ({hidden}, {batch}): GEMM peak " +
              ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()) + " GFLOP/s (2048^3 float32, best of 5; measured again after every round)")
        rounds = []
        bounds = block_bounds(len(x), batch, ARGS.blocks)
        for r in range(ARGS.rounds):
            row = {"load": os.getloadavg()[0], **{name: [0.0, 0.0] for name in trainers}}  # seconds, loss
            for b, (start, stop) in enumerate(bounds):
                shift = (r + b) % len(trainers)  # who goes first rotates
                names = list(trainers)[shift:] + list(trainers)[:shift]
                for name in names:
                    # idle first: the other library's worker threads spin for a while after their last
                    # job (OpenBLAS ~0.1 s, OpenMP up to 0.2 s) and would steal the cores from this block
                    time.sleep(IDLE_S)
                    seconds, loss = trainers[name].epoch(x[start:stop], y[start:stop], SEED + 1 + r * len(bounds) + b)
                    row[name][0] += seconds
                    row[name][1] += loss * (stop - start) / len(x)
            rounds.append(row)
            # the peak again after every round, the best kept: a slow spell during one measurement
            # would otherwise inflate the step's share of the peak
            for name, value in gemm_peak(torch, repeats=3).items():
                peaks[name] = max(peaks[name], value)
            print(f"  round {r + 1}: " + "   ".join(
                f"{k} {row[k][0]:.3f} s (loss {row[k][1]:.4f})" for k in trainers) + f"   load {row['load']:.2f}")
        print("  GEMM peak, best over the rounds: " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()) + " GFLOP/s")
        flops = matmul_flops(sizes, len(x))
        entry = {"hidden": hidden, "batch": batch, "gflop_per_epoch": flops / 1e9, "rounds": rounds}
        for name in trainers:
            entry[f"{name}_median_s"] = statistics.median(row[name][0] for row in rounds)
            entry[f"{name}_gflops"] = flops / entry[f"{name}_median_s"] / 1e9
        for name in ("tinynet", "tinynet-fast"):
            if name in trainers:
                entry[f"{name}_peak_fraction"] = entry[f"{name}_gflops"] / max(peaks.values())
            if name in trainers and "torch" in trainers:
                entry[f"{name}_ratio"] = statistics.median(row[name][0] / row["torch"][0] for row in rounds)
        results["configs"].append(entry)
        print()

    if not ARGS.no_rss:
        results["rss_mib"] = measure_rss()
    results["load_after"] = os.getloadavg()
    report = render(results)
    print(report)
    if ARGS.save:
        os.makedirs(os.path.dirname(os.path.abspath(ARGS.save)), exist_ok=True)
        with open(ARGS.save + ".json", "w") as f:
            json.dump(results, f, indent=1)
        with open(ARGS.save + ".txt", "w") as f:
            f.write(report + "\n")
        print(f"wrote {ARGS.save}.json and {ARGS.save}.txt")


def render(results):
    """The results as a Markdown table and two lines of context."""
    lines = ["| (hidden, batch) | tinynet s/epoch | tinynet --fast s/epoch | PyTorch s/epoch | ratio plain | ratio fast "
             "| tinynet GFLOP/s | % of GEMM peak |",
             "|---|---|---|---|---|---|---|---|"]
    for e in results["configs"]:
        cells = [f"({e['hidden']}, {e['batch']})"]
        for key, fmt, scale in (("tinynet_median_s", ".3f", 1), ("tinynet-fast_median_s", ".3f", 1),
                                ("torch_median_s", ".3f", 1), ("tinynet_ratio", ".2f", 1),
                                ("tinynet-fast_ratio", ".2f", 1), ("tinynet_gflops", ".0f", 1),
                                ("tinynet_peak_fraction", ".0f", 100)):
            cells.append(format(scale * e[key], fmt) if key in e else "-")
        lines.append("| " + " | ".join(cells) + " |")
    peak = max(max(p.values()) for p in results["gemm_peaks"])
    lines.append(f"\nmedians of {ARGS.rounds} rounds of one epoch each, the frameworks taking turns in "
                 f"{ARGS.blocks} blocks per epoch (ratio: median of the per-round ratios); GEMM peak "
                 f"{peak:.0f} GFLOP/s (best 2048^3 float32 product in this run, measured before and after every round); {ARGS.threads} threads each; "
                 f"load average {results['load_before'][0]:.2f} before, {results['load_after'][0]:.2f} after; "
                 f"tinynet-fast's C kernels {results['machine']['cpu_kernels'].split(':')[0]}")
    if "rss_mib" in results:
        lines.append(f"peak RSS, one fresh process each (default MLP (256, 128), one epoch of {ARGS.train_size} images; "
                     "the CLI: python -m tinynet train --epochs 1): " +
                     ", ".join(f"{k} {v:.0f} MiB" for k, v in results["rss_mib"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
