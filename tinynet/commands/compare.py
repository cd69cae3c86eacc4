"""Train one network with and without BatchNorm and compare them (Ioffe & Szegedy 2015, Figure 1).

Example: python -m tinynet compare --preset paper --steps 50000 --out runs/compare

Both runs start from the same weights and see the same batches. Writes curves.csv,
results.json, report.md and, with matplotlib installed (pip install 'tinynet[plot]'),
figure1.png and lr_sweep.png into --out.
"""

import argparse
import os
import time

import numpy as np

from ..backend import to_device
from ..data.batching import images_to_features
from ..datasets import load_fashion_mnist, load_mnist
from ..study import PRESETS, StudyConfig, run_study
from ..study.outputs import write_data, write_report
from ..study.plots import write_plots

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "fashion": load_fashion_mnist}  # fashion: short name


def number_list(option):
    def parse(text):
        if text.strip().lower() == "none":
            return ()
        try:
            values = tuple(float(s) for s in text.split(",") if s.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: expected comma-separated numbers such as 0.5,2,8 "
                                             f"(or 'none'), got {text!r}") from None
        return values

    return parse


def width_list(text):
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden: expected comma-separated widths such as 100,100,100, got {text!r}") from None


def add_arguments(p):
    paper, mlp = PRESETS["paper"], PRESETS["mlp"]
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="paper: 784-100-100-100-10 sigmoid, batch 60, plain SGD lr 0.1 (Figure 1); "
                        "mlp: the 784-256-256-10 ReLU MLP of `tinynet train` (default paper)")
    p.add_argument("--steps", type=int, help=f"training steps of the main pair (default {paper['steps']} "
                   f"for paper, {mlp['steps']} for mlp; the paper ran 50000)")
    p.add_argument("--eval-every", type=int, help=f"steps between test evaluations (default {paper['eval_every']} "
                   f"for paper, {mlp['eval_every']} for mlp)")
    p.add_argument("--lr", type=float, help="learning rate of the main pair (default 0.1 for paper, 0.05 for mlp)")
    p.add_argument("--sweep-lr", type=number_list("--sweep-lr"),
                   help="learning rates of the sweep, comma-separated, or 'none' (default "
                        f"{','.join(f'{v:g}' for v in paper['sweep_lrs'])} for paper, "
                        f"{','.join(f'{v:g}' for v in mlp['sweep_lrs'])} for mlp)")
    p.add_argument("--sweep-steps", type=int, help=f"steps of each sweep run (default {paper['sweep_steps']} "
                   f"for paper, {mlp['sweep_steps']} for mlp)")
    p.add_argument("--init-std", type=float, help="initial weights N(0, std^2) (default 0.1 for paper; He init for mlp)")
    p.add_argument("--batch-size", type=int, help="examples per step (default 60 for paper, 128 for mlp)")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0 for paper, 0.9 for mlp)")
    p.add_argument("--hidden", type=width_list, help="hidden widths, comma-separated (default from the preset)")
    p.add_argument("--activation", choices=["sigmoid", "relu", "tanh"], help="(default from the preset)")
    p.add_argument("--bn-gradient", choices=["simplified", "paper"], default="simplified",
                   help="BatchNorm backward form (default simplified)")
    p.add_argument("--probe-unit", type=int, default=0,
                   help="unit of the last hidden layer whose activation input is tracked (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the batch order (default 0)")
    p.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    p.add_argument("--data-dir", default=None, help="dataset cache (default $TINYNET_DATA or ~/.cache/tinynet)")
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    # for tests and quick looks: train and test on the first N examples only
    p.add_argument("--limit-train", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--limit-test", type=int, default=None, help=argparse.SUPPRESS)


def load_data(args):
    (x_train, y_train), (x_test, y_test) = LOADERS[args.dataset](args.data_dir)
    for name in ("limit_train", "limit_test"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"compare: --{name.replace('_', '-')} must be a positive integer, got {value}")
    x_train, y_train = x_train[: args.limit_train], y_train[: args.limit_train]
    x_test, y_test = x_test[: args.limit_test], y_test[: args.limit_test]
    data = (images_to_features(x_train), y_train.astype(np.int64), images_to_features(x_test), y_test.astype(np.int64))
    return tuple(to_device(a, args.backend) for a in data)


def run(args):
    began = time.perf_counter()
    config = StudyConfig.from_preset(
        args.preset, steps=args.steps, eval_every=args.eval_every, lr=args.lr, sweep_lrs=args.sweep_lr,
        sweep_steps=args.sweep_steps, init_std=args.init_std, batch_size=args.batch_size, momentum=args.momentum,
        hidden=args.hidden, activation=args.activation, bn_gradient=args.bn_gradient, seed=args.seed,
        probe_unit=args.probe_unit,
    )
    data = load_data(args)
    print(f"{args.dataset}: {len(data[0])} training, {len(data[2])} test examples; backend {args.backend}; "
          f"writing to {args.out}")
    result = run_study(config, data, progress=not args.quiet)
    result.data_info["dataset"] = args.dataset
    files = write_data(result, args.out)
    note = None
    try:
        plots = write_plots(result, args.out)
    except ImportError as exc:
        plots = []
        note = (f"No plots: matplotlib is not installed ({exc}). Install it with pip install 'tinynet[plot]' "
                "(make compare does), then run the command again.")
        print(note)
    files += plots
    files.append(write_report(result, args.out, [os.path.basename(p) for p in plots], note))
    print("wrote " + ", ".join(files))
    print(f"done in {time.perf_counter() - began:.1f} s")
