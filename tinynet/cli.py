"""The command line: ``python -m tinynet <command>`` (or ``tinynet <command>``).

Each command is a module in ``tinynet/commands/`` with ``add_arguments(parser)``
and ``run(args)``, and a docstring whose first line is its help text.
"""

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .backend import default_backend


def build_parser():
    parser = argparse.ArgumentParser(prog="tinynet", description="tinynet: train and compare small networks.")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        name = info.name.replace("_", "-")
        help_line = (module.__doc__ or "").strip().splitlines()[0]
        command = sub.add_parser(name, help=help_line, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_argument(
            "--backend", choices=["numpy", "cupy"], default=None,
            help="array backend (default: $TINYNET_BACKEND or numpy)",
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def parse_args(argv=None):
    """Parse a command line; a missing ``--backend`` becomes ``$TINYNET_BACKEND`` (checked) or numpy."""
    args = build_parser().parse_args(argv)
    if args.backend is None:  # resolved here: argparse does not check a default against choices
        args.backend = default_backend()
    return args


def main(argv=None):
    try:
        args = parse_args(argv)
    except ValueError as exc:
        print(f"tinynet: error: {exc}", file=sys.stderr)
        return 2
    try:
        return args.run(args) or 0
    except (ValueError, TypeError, RuntimeError, ModuleNotFoundError) as exc:  # ModuleNotFoundError: an optional extra
        print(f"tinynet {args.command}: error: {exc}", file=sys.stderr)
        return 2
