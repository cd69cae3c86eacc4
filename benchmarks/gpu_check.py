"""One run on a GPU machine: the tests on CuPy, MNIST to >= 98 %, and tinynet-cupy against PyTorch.

Run (from the repository root, on a machine with an NVIDIA GPU, CuPy and optionally torch):

    make gpu-check                                  # = PYTHONPATH=. python3 benchmarks/gpu_check.py

Nothing is installed: it uses the python3 it is run with, numpy, cupy, and pytest and torch
when they import. MNIST comes from $TINYNET_DATA, else ./data, else ~/.cache/tinynet; on a
machine without network, carry it (docs/gpu.md): ``python3 benchmarks/gpu_check.py
--pack-data data`` writes the four gzipped files (11 MB) into data/mnist/.

Stages, each guarded (a failure is reported and the next stage runs), the report rewritten
after each one to benchmarks/results/gpu-<date>.md and, when $OUT is set, to $OUT:

1. environment: card, driver, CUDA, versions;
2. tests: ``pytest -m gpu`` (every test's CuPy case, the fused kernels, the CUDA graph);
3. training: ``python -m tinynet train --backend cupy`` (the default MLP, 8 epochs) must reach
   98 % test accuracy; then the same with ``fit(fast=True, cuda_graph=True)``;
4. speed: the MLP 784-H-H-10 with BatchNorm, SGD momentum 0.9, float32, for (H, batch) =
   (256, 128), (1024, 1024), (4096, 4096): seconds per epoch over 60000 images after a
   warm-up epoch, median of the timed epochs, for PyTorch CUDA eager and tinynet-cupy plain
   (the NumPy-API code as is, the default), fast (the opt-in kernels of tinynet.speed) and fast + CUDA graph.

Exit status 0 when the tests pass and the accuracy is reached; speed is reported, not gated.
"""

import argparse
import datetime
import gzip
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [(256, 128), (1024, 1024), (4096, 4096)]
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class Report:
    """The markdown report, rewritten in full after every stage so a cut-off run leaves what it had."""

    def __init__(self, paths):
        self.paths, self.sections, self.failures = paths, [], []

    def add(self, title, body, ok=True):
        self.sections.append(f"## {title}\n\n{body.rstrip()}\n")
        if not ok:
            self.failures.append(title)
        self.write()
        print(f"\n== {title} ==\n{body.rstrip()}\n", flush=True)

    def write(self):
        head = (f"# GPU check, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}\n\n"
                f"Command: `make gpu-check` (benchmarks/gpu_check.py). "
                f"Result so far: {'FAILED: ' + ', '.join(self.failures) if self.failures else 'all checks passed'}.\n\n")
        text = head + "\n".join(self.sections)
        for path in self.paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            except OSError as exc:
                print(f"(could not write {path}: {exc})", file=sys.stderr)


def stage(report, title, function, *args):
    """Run one stage; an exception becomes a failed section with its traceback."""
    start = time.perf_counter()
    try:
        body, ok = function(*args)
    except Exception:
        body, ok = "```\n" + traceback.format_exc()[-4000:] + "```", False
    report.add(f"{title} ({time.perf_counter() - start:.0f} s)", body, ok)
    return ok


def run_logged(command, log_path, timeout, env=None):
    """Run a command, its output to a log; return (exit code or 'timeout', output)."""
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})})
        output, code = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        code = "timeout"
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(output)
    return code, output


# -- 1. environment -------------------------------------------------------------------------


def environment():
    import cupy
    import numpy as np

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    lines = [
        f"- GPU: {name}, {props['multiProcessorCount']} multiprocessors, {props['totalGlobalMem'] / 2**30:.0f} GiB",
        f"- CUDA driver {cupy.cuda.runtime.driverGetVersion()}, runtime {cupy.cuda.runtime.runtimeGetVersion()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, cupy {cupy.__version__}",
    ]
    try:
        import torch

        lines.append(f"- torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    except Exception as exc:
        lines.append(f"- torch: not importable ({type(exc).__name__}: {exc})")
    try:
        import pytest

        lines.append(f"- pytest {pytest.__version__}")
    except Exception:
        lines.append("- pytest: not importable (the test stage is skipped)")
    from tinynet.speed import blas

    lines.append(f"- tinynet's own cuBLAS handle (Linear's products, needed by CUDA graphs): "
                 f"{'works, agrees with CuPy' if blas.available() else 'NO: ' + str(blas.problem())}")
    return "\n".join(lines), True


# -- 2. tests ---------------------------------------------------------------------------------


def tests(out_dir, timeout):
    try:
        import pytest  # noqa: F401
    except Exception:
        return "pytest is not importable here: skipped (nothing can be installed).", True
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"]
    code, output = run_logged(command, out_dir / "gpu-pytest.log", timeout)
    tail = "\n".join(output.strip().splitlines()[-25:])
    summary = f"`{' '.join(command[2:])}` exited {code}; full log: gpu-pytest.log\n\n```\n{tail}\n```"
    return summary, code == 0


# -- 3. training --------------------------------------------------------------------------------


def train_cli(data_dir, out_dir, timeout):
    command = [sys.executable, "-m", "tinynet", "train", "--backend", "cupy", "--quiet"]
    env = {"TINYNET_DATA": str(data_dir)} if data_dir else {}
    code, output = run_logged(command, out_dir / "gpu-train.log", timeout, env)
    match = re.search(r"test accuracy ([\d.]+)%.*?([\d.]+) s/epoch", output)
    if code != 0 or not match:
        return f"`python -m tinynet train --backend cupy` exited {code}:\n\n```\n{output[-3000:]}\n```", False
    accuracy = float(match.group(1))
    return (f"`python -m tinynet train --backend cupy --quiet` (784-256-256-10, BatchNorm, SGD 0.9, cosine lr, "
            f"8 epochs): **test accuracy {accuracy:.2f} %** (goal >= 98 %), {match.group(2)} s/epoch\n\n"
            f"```\n{output.strip()[-600:]}\n```"), accuracy >= 98.0


def train_graph(data_dir, out_dir, timeout):
    """The training with cuda_graph=True, in a child process (a GPU hang cannot stop the check)."""
    result = worker("train-graph", data_dir, out_dir, timeout, [])
    if "accuracy" not in result:
        return f"no result: {result.get('error', 'the worker died or timed out')}", False
    return (f"`fit(..., cuda_graph=True)`, same model and schedule (one capture per epoch): **test accuracy "
            f"{100 * result['accuracy']:.2f} %** (goal >= 98 %), median {result['median']:.3f} s/epoch, "
            f"first epoch {result['first']:.3f} s (warm-up and capture)"), result["accuracy"] >= 0.98


def worker(name, data_dir, out_dir, timeout, extra):
    """Run ``gpu_check.py --worker name`` in a child process; return the JSON it left (partial after a timeout)."""
    path = out_dir / f"gpu-{name}.json"
    if path.exists():
        path.unlink()
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--json", str(path)] + extra
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    code, output = run_logged(command, out_dir / f"gpu-{name}.log", timeout)
    result = json.loads(path.read_text()) if path.exists() else {}
    if code != 0:
        result.setdefault("error", f"exited {code}: {output.strip()[-1500:]}")
    return result


def train_graph_worker(data_dir, save):
    import numpy as np

    import tinynet as tn
    from tinynet.data.batching import images_to_features, split_validation

    (x, y), (x_test, y_test) = tn.datasets.load_mnist(data_dir)
    x, x_test = images_to_features(x), images_to_features(x_test)
    (x, y), _ = split_validation(x, y, 5000)  # as the CLI does
    rng = np.random.default_rng(0)
    model = tn.mlp([784, 256, 256, 10], rng=rng).to("cupy")
    opt = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = tn.SoftmaxCrossEntropy()
    history = tn.fit(model, loss, opt, tn.to_device(x, "cupy"), tn.to_device(y, "cupy"), 8, 128, rng=rng,
                     progress=False, lr_schedule=tn.optim.cosine_schedule(0.05, 8), fast=True, cuda_graph=True)
    result = tn.evaluate(model, loss, tn.to_device(x_test, "cupy"), tn.to_device(y_test, "cupy"))
    save({"accuracy": result.accuracy, "median": statistics.median(history.seconds[1:]), "first": history.seconds[0]})


# -- 4. speed ---------------------------------------------------------------------------------


def mnist_or_synthetic(data_dir):
    """60000 training images as float32 features in [0, 1] and int64 labels, on the host."""
    import numpy as np

    try:
        import tinynet as tn
        from tinynet.data.batching import images_to_features

        (x, y), _ = tn.datasets.load_mnist(data_dir)
        return images_to_features(x), y.astype(np.int64), "MNIST"
    except Exception as exc:  # timing does not depend on the values
        rng = np.random.default_rng(0)
        x = rng.random((60000, 784), dtype=np.float32)
        return x, rng.integers(0, 10, 60000), f"synthetic data (MNIST unavailable: {type(exc).__name__})"


def time_tinynet(x, y, hidden, batch, epochs, fused=True, cuda_graph=False):
    """Seconds of each epoch (fit synchronises the GPU before reading the clock)."""
    import numpy as np

    import tinynet as tn

    rng = np.random.default_rng(0)
    model = tn.mlp([784, hidden, hidden, 10], rng=rng).to("cupy")
    opt = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = tn.fit(model, tn.SoftmaxCrossEntropy(), opt, x, y, epochs, batch, rng=rng, progress=False,
                     detect_nonfinite=False, fast=fused, cuda_graph=cuda_graph)
    return history.seconds


def torch_mlp(nn, hidden, features=784, classes=10):
    """tinynet.mlp's network in PyTorch: [Linear(bias=False) -> BatchNorm1d -> ReLU] twice, then Linear."""
    return nn.Sequential(
        nn.Linear(features, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, classes),
    )


def time_torch(x_np, y_np, hidden, batch, epochs):
    """The same model, data and batching in PyTorch, eager; seconds of each epoch."""
    import torch

    torch.manual_seed(0)
    device = torch.device("cuda")
    nn = torch.nn
    model = torch_mlp(nn, hidden).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    x, y = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)
    n, seconds = len(x), []
    for _ in range(epochs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(n, device=device)
        losses = []
        for i in range(0, n, batch):
            rows = order[i : i + batch]
            if len(rows) < 2:  # BatchNorm needs two examples, as tinynet's fit drops a batch of one
                break
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(x[rows]), y[rows])
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        torch.stack(losses)
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def launch_costs():
    """Microseconds per launch from Python: a CuPy elementwise op, a fused kernel, a graph replay."""
    import cupy
    import numpy as np

    import tinynet as tn
    import tinynet.speed
    from tinynet.speed import activations

    def per_call(function, repeat=2000):
        function()
        cupy.cuda.runtime.deviceSynchronize()
        start = time.perf_counter()
        for _ in range(repeat):
            function()
        cupy.cuda.runtime.deviceSynchronize()
        return 1e6 * (time.perf_counter() - start) / repeat

    a = cupy.ones(1024, cupy.float32)
    x = cupy.asarray(np.random.default_rng(0).random((128, 784), dtype=np.float32))
    model = tn.mlp([784, 256, 256, 10], rng=np.random.default_rng(0)).to("cupy")
    tinynet.speed.accelerate(model)
    return {
        "cupy a += 1": per_call(lambda: a.__iadd__(1)),
        "fused relu_backward": per_call(lambda: activations.relu_backward(a, a)),
        "forward of the (256, 128) MLP, eager fused": per_call(lambda: model.forward(x), 200),
    }


def speed_worker(data_dir, epochs, budget, save):
    import cupy

    x_host, y_host, source = mnist_or_synthetic(data_dir)
    x, y = cupy.asarray(x_host), cupy.asarray(y_host)
    try:
        import torch

        have_torch = torch.cuda.is_available()
    except Exception:
        have_torch = False
    variants = [("tinynet plain", dict(fused=False)), ("tinynet fused", dict(fused=True)),
                ("tinynet fused + CUDA graph", dict(fused=True, cuda_graph=True))]
    results, notes, start = {}, [], time.perf_counter()
    for hidden, batch in CONFIGS:
        row = results[f"{hidden},{batch}"] = {}
        if have_torch:
            row["PyTorch eager"] = time_torch(x_host, y_host, hidden, batch, 1 + epochs)
        for name, options in variants:
            if time.perf_counter() - start > budget:
                notes.append(f"({hidden}, {batch}) {name}: skipped, the time budget of {budget} s was spent")
                continue
            try:
                row[name] = time_tinynet(x, y, hidden, batch, 1 + epochs, **options)
            except Exception as exc:
                notes.append(f"({hidden}, {batch}) {name}: {type(exc).__name__}: {exc}")
                notes.append("```\n" + traceback.format_exc()[-1500:] + "```")
            save({"results": results, "source": source, "notes": notes, "have_torch": have_torch})
        cupy.get_default_memory_pool().free_all_blocks()
    save({"results": results, "source": source, "notes": notes, "have_torch": have_torch,
          "launch_us": launch_costs(), "done": True})


def speed_table(data_dir, out_dir, epochs, budget, timeout):
    """The speed worker in a child process; the table from whatever it measured."""
    data = worker("speed", data_dir, out_dir, timeout, ["--epochs", str(epochs), "--speed-budget", str(budget)])
    results, notes = data.get("results", {}), list(data.get("notes", []))
    source, have_torch = data.get("source", "?"), data.get("have_torch", False)
    if not data.get("done"):
        notes.append(f"the speed worker did not finish: {data.get('error', 'no error text')}")
    names = (["PyTorch eager"] if have_torch else []) + ["tinynet plain", "tinynet fused", "tinynet fused + CUDA graph"]
    head = "| (hidden, batch) | " + " | ".join(names)
    if have_torch:
        head += " | fused / PyTorch | graph / PyTorch"
    lines = [head + " |", "|" + "---|" * (head.count("|"))]
    goals = []
    for config, row in results.items():
        medians = {n: statistics.median(row[n][1:]) for n in names if n in row and len(row[n]) > 1}
        cells = [f"{medians[n]:.4f}" if n in medians else "—" for n in names]
        if have_torch and "PyTorch eager" in medians:
            base = medians["PyTorch eager"]
            for n, goal in (("tinynet fused", 1.0), ("tinynet fused + CUDA graph", 0.5 if config == "256,128" else 1.0)):
                ratio = medians[n] / base if n in medians else None
                cells.append("—" if ratio is None else f"{ratio:.2f}×")
                if ratio is not None:
                    goals.append(f"- ({config}) {n}: {ratio:.2f}× PyTorch eager, goal <= {goal}× — "
                                 f"{'met' if ratio <= goal else 'NOT met'}")
        cells += ["—"] * (head.count("|") - 1 - len(cells))  # no PyTorch: no ratios
        lines.append(f"| ({config}) | " + " | ".join(cells) + " |")
    costs = data.get("launch_us", {})
    body = (f"Seconds per epoch over {source} (60000 images, the last batch kept), median of {epochs} epochs "
            f"after one warm-up epoch; SGD momentum 0.9, float32, BatchNorm, no per-step checks "
            f"(fit(detect_nonfinite=False); PyTorch does none either).\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(goals) + "\n\nLaunch costs from Python (µs per call): "
            + ", ".join(f"{k} {v:.1f}" for k, v in costs.items()) + "\n\nAll epoch times: gpu-speed.json\n"
            + ("\n" + "\n".join(notes) if notes else ""))
    return body, not notes


# -- carrying MNIST to a machine without network ------------------------------------------------


def pack_data(target):
    """Write gzipped copies of the cached MNIST files into ``target/mnist`` (to carry them)."""
    import tinynet as tn
    from tinynet.data.mnist import data_home

    tn.datasets.load_mnist()  # fills and checks the cache
    source = data_home() / "mnist"
    folder = Path(target) / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        with open(source / name, "rb") as raw, gzip.open(folder / f"{name}.gz", "wb", compresslevel=6) as packed:
            shutil.copyfileobj(raw, packed)
    size = sum((folder / f"{n}.gz").stat().st_size for n in MNIST_FILES)
    print(f"wrote {len(MNIST_FILES)} files, {size / 2**20:.1f} MiB, to {folder}")


def find_data(explicit):
    if explicit:
        return Path(explicit)
    if os.environ.get("TINYNET_DATA"):
        return Path(os.environ["TINYNET_DATA"])
    if (ROOT / "data" / "mnist").is_dir():
        return ROOT / "data"
    return None  # the loader's default cache


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST cache (default $TINYNET_DATA, ./data, ~/.cache/tinynet)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per variant after the warm-up (default 5)")
    parser.add_argument("--skip", default="", help="comma-separated stages to skip: tests,train,speed")
    parser.add_argument("--test-timeout", type=int, default=240)
    parser.add_argument("--speed-budget", type=int, default=180, help="seconds after which further variants are skipped")
    parser.add_argument("--pack-data", metavar="DIR", help="only write gzipped MNIST into DIR/mnist (to carry it) and exit")
    parser.add_argument("--worker", choices=["speed", "train-graph"], help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pack_data:
        pack_data(args.pack_data)
        return 0
    sys.path.insert(0, str(ROOT))
    if args.worker:
        def save(data):
            Path(args.json).write_text(json.dumps(data, indent=1))

        if args.worker == "speed":
            speed_worker(args.data_dir, args.epochs, args.speed_budget, save)
        else:
            train_graph_worker(args.data_dir, save)
        return 0
    date = datetime.date.today().isoformat()
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "results"
    paths = [ROOT / "benchmarks" / "results" / f"gpu-{date}.md"]
    if os.environ.get("OUT"):
        paths.append(out_dir / f"gpu-{date}.md")
    report = Report(paths)
    skip = set(filter(None, args.skip.split(",")))
    data_dir = find_data(args.data_dir)
    if not stage(report, "Environment", environment):
        print("no usable GPU or CuPy: stopping", file=sys.stderr)
        return 1
    if "tests" not in skip:
        stage(report, "Tests on CuPy", tests, out_dir, args.test_timeout)
    if "train" not in skip:
        stage(report, "Training the default MLP (CLI, eager)", train_cli, data_dir, out_dir, 300)
    if "speed" not in skip:
        stage(report, "Speed: tinynet-cupy and PyTorch CUDA eager", speed_table, data_dir, out_dir, args.epochs,
              args.speed_budget, args.speed_budget + 120)
    if "train" not in skip:
        stage(report, "Training the default MLP (fit with cuda_graph=True)", train_graph, data_dir, out_dir, 240)
    # the whole report last: the end of the output is what a remote run shows
    print("\n" + "=" * 70 + "\n" + paths[-1].read_text() if paths[-1].exists() else "")
    print(f"GPU check: {'FAILED: ' + ', '.join(report.failures) if report.failures else 'passed'}; "
          f"report: {', '.join(str(p) for p in paths)}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
