"""Train an MLP or a CNN on MNIST (or Fashion-MNIST) and report test accuracy.

Example: python -m tinynet train --epochs 8 --hidden 256,256
         python -m tinynet train --model cnn            (5 epochs, LeNet-style with BatchNorm)
"""

import os
import time

import numpy as np

from ..backend import to_device
from ..data.batching import images_to_features, images_to_nchw, split_validation
from ..datasets import load_fashion_mnist, load_mnist
from ..losses import SoftmaxCrossEntropy
from ..models import cnn, mlp
from ..optim import SGD, Adam
from ..schedules import cosine_schedule
from ..train import evaluate, fit

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "fashion": load_fashion_mnist}  # fashion: short name


def hidden_sizes(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--hidden: expected comma-separated widths such as 256,256, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise ValueError(f"--hidden: widths must be positive, got {text!r}")
    return sizes


def add_arguments(p):
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                   help="mlp: Linear layers on (N, 784); cnn: tinynet.models.cnn on (N, 1, 28, 28) (default mlp)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training data (default 8 for mlp, 5 for cnn)")
    p.add_argument("--batch-size", type=int, default=128, help="examples per step (default 128)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 0.05 for sgd, 0.001 for adam)")
    p.add_argument("--constant-lr", action="store_true", help="keep the learning rate fixed (default: cosine decay over the epochs)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd has momentum 0.9 (default sgd)")
    p.add_argument("--hidden", default="256,256", help="mlp: hidden widths, comma-separated (default 256,256)")
    p.add_argument("--no-batchnorm", action="store_true", help="leave BatchNorm out")
    p.add_argument("--bn-gradient", choices=["simplified", "paper"], default="simplified",
                   help="BatchNorm backward form (default simplified)")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights and the batch order (default 0)")
    p.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    p.add_argument("--val-size", type=int, default=5000, help="training examples held out for validation (default 5000)")
    p.add_argument("--data-dir", default=None, help="dataset cache (default $TINYNET_DATA or ~/.cache/tinynet)")
    p.add_argument("--save", metavar="PATH", default=None, help="write weights to PATH.npz and history to PATH.json")
    p.add_argument("--plot", metavar="DIR", default=None,
                   help="write DIR/curves.png (loss and accuracy per epoch) and DIR/layers.png (per-layer statistics); "
                        "needs matplotlib: pip install 'tinynet[plot]' (from a clone: pip install -e '.[plot]')")
    p.add_argument("--inspect-every", type=int, default=None, metavar="K",
                   help="record per-layer statistics every K steps into the history (default 50 with --plot)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table, only the final line")
    p.add_argument("--fast", action="store_true",
                   help="opt into tinynet.speed: fused kernels (C on the CPU, CUDA on a GPU) replace the plain code")


def describe_path(args):
    """One line saying which code trains: the plain layers, or the opt-in fused kernels."""
    if not args.fast:
        return f"plain {'NumPy' if args.backend == 'numpy' else 'CuPy'} code of tinynet/layers (--fast opts into fused kernels)"
    if args.backend == "numpy":
        from ..speed import cpu_status

        return f"fast (tinynet.speed), C kernels {cpu_status()}"
    return "fast (tinynet.speed): CUDA kernels and tinynet's cuBLAS calls"


def run(args):
    hidden = hidden_sizes(args.hidden)
    if args.plot is not None:  # before the data and the training, not after them
        from ..plots import require_matplotlib

        require_matplotlib("--plot")
        if args.inspect_every is None:
            args.inspect_every = 50
    if args.epochs is None:
        args.epochs = 5 if args.model == "cnn" else 8
    (x_train, y_train), (x_test, y_test) = LOADERS[args.dataset](args.data_dir)
    to_inputs = images_to_nchw if args.model == "cnn" else images_to_features  # (N, 1, 28, 28) or (N, 784)
    x_train, x_test = to_inputs(x_train), to_inputs(x_test)
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    (x_train, y_train), validation = split_validation(x_train, y_train, args.val_size)
    if args.backend != "numpy":
        x_train, y_train, x_test, y_test = (to_device(a, args.backend) for a in (x_train, y_train, x_test, y_test))
        validation = tuple(to_device(a, args.backend) for a in validation)
    if args.val_size == 0:
        validation = None

    rng = np.random.default_rng(args.seed)
    classes = int(y_train.max()) + 1
    if args.model == "cnn":
        model = cnn(x_train.shape[1:], classes, batchnorm=not args.no_batchnorm, bn_gradient=args.bn_gradient,
                    rng=rng).to(args.backend)
    else:
        model = mlp([x_train.shape[1], *hidden, classes], batchnorm=not args.no_batchnorm,
                    bn_gradient=args.bn_gradient, rng=rng).to(args.backend)
    loss = SoftmaxCrossEntropy()
    if args.optimizer == "sgd":
        optimizer = SGD(model.parameters(), lr=0.05 if args.lr is None else args.lr, momentum=0.9)
    else:
        optimizer = Adam(model.parameters(), lr=1e-3 if args.lr is None else args.lr)

    if not args.quiet:
        print(model.summary())
        print(f"{args.dataset}: {len(x_train)} training, {0 if validation is None else len(validation[0])} "
              f"validation, {len(x_test)} test examples; backend {args.backend}")
        print(f"path: {describe_path(args)}")
        print()
    schedule = None if args.constant_lr else cosine_schedule(optimizer.lr, args.epochs)
    start = time.perf_counter()
    history = fit(model, loss, optimizer, x_train, y_train, args.epochs, args.batch_size,
                  validation=validation, rng=rng, progress=not args.quiet, lr_schedule=schedule, fast=args.fast,
                  inspect_every=args.inspect_every)
    test = evaluate(model, loss, x_test, y_test)
    if args.save:
        base = args.save[:-4] if args.save.endswith(".npz") else args.save
        os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
        np.savez(base + ".npz", **model.state_dict())
        history.to_json(base + ".json")
        print(f"saved {base}.npz and {base}.json")
    if args.plot is not None:
        from ..plots import save_run_plots

        print("wrote " + " and ".join(save_run_plots(history, args.plot)))
    print(f"test accuracy {100 * test.accuracy:.2f}%  (test loss {test.loss:.4f}, {args.epochs} epochs, "
          f"{sum(history.seconds) / len(history.seconds):.2f} s/epoch, {time.perf_counter() - start:.1f} s in all)")
