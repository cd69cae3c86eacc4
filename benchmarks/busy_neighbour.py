"""The default training path beside one busy process: how much slower does an epoch get?

Run:  python benchmarks/busy_neighbour.py                 (after make bench or make test: .venv has tinynet)
      python benchmarks/busy_neighbour.py --rounds 5 --configs 256x128,100x60

For each (hidden, batch) configuration it trains the MNIST MLP with ``tinynet.fit`` as a user calls it
(the plain path, BLAS threads chosen by fit before each epoch), alternately on a quiet machine and
with one other CPU-bound process spinning beside it (a Python busy loop, started before the run and
stopped after it), ``--epochs`` epochs each time, and prints the median epoch times and their ratio
busy / quiet. fit chooses its threads from what other processes used during the previous epoch (the
first epoch goes by the load average), so the epochs after the first are the ones that show the
choice; they are what the medians take. ``--blas-threads N`` forces N BLAS threads instead
(threadpoolctl), to see what fit's choice buys. The load average is printed.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import tinynet as tn  # noqa: E402
from tinynet.data.batching import images_to_features  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="256x128,100x60", help="HIDDENxBATCH pairs (default 256x128,100x60)")
    p.add_argument("--rounds", type=int, default=2, help="quiet and busy runs per configuration (default 2)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is left out (default 3)")
    p.add_argument("--train-size", type=int, default=60000, help="examples per epoch (default 60000)")
    p.add_argument("--blas-threads", type=int, default=None, help="force this many BLAS threads (default: fit's choice)")
    args = p.parse_args(argv)
    args.configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",") if c.strip()]
    return args


def epoch_seconds(x, y, hidden, batch, seed, epochs):
    """Seconds of each epoch after the first."""
    model = tn.mlp([784, hidden, hidden, 10], rng=np.random.default_rng(seed))
    optimizer = tn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = tn.fit(model, tn.SoftmaxCrossEntropy(), optimizer, x, y, epochs, batch,
                     rng=np.random.default_rng(seed), progress=False)
    return history.seconds[1:]


def main():
    args = parse_args()
    (images, labels), _ = tn.datasets.load_mnist()
    x, y = images_to_features(images)[: args.train_size], labels[: args.train_size].astype(np.int64)
    print(f"load average before: {os.getloadavg()[0]:.2f}; BLAS threads: "
          f"{args.blas_threads if args.blas_threads else 'as fit chooses'}; {os.cpu_count()} logical CPUs")
    limit = threadpool_limits(args.blas_threads, user_api="blas") if args.blas_threads else None
    for hidden, batch in args.configs:
        epoch_seconds(x[: 20 * batch], y[: 20 * batch], hidden, batch, 0, 1)  # warm up
        quiet, busy = [], []
        for r in range(args.rounds):
            time.sleep(0.5)
            quiet += epoch_seconds(x, y, hidden, batch, r, args.epochs)
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                time.sleep(0.5)  # let it take its core
                busy += epoch_seconds(x, y, hidden, batch, r, args.epochs)
            finally:
                spinner.kill()
                spinner.wait()
        q, b = statistics.median(quiet), statistics.median(busy)
        print(f"(hidden, batch) = ({hidden}, {batch}): quiet {q:.2f} s/epoch, beside a busy process {b:.2f} s/epoch, "
              f"ratio {b / q:.2f}   (quiet {', '.join(f'{v:.2f}' for v in quiet)}; busy {', '.join(f'{v:.2f}' for v in busy)})")
    if limit is not None:
        limit.restore_original_limits()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
