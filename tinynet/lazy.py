"""Names a package resolves on first use (PEP 562): what one training step does not read is not loaded."""

import importlib
import sys


def on_first_use(package, table):
    """``(__getattr__, __dir__)`` for the module ``package``: ``table`` maps each name to the module that
    defines it, relative to ``package`` or absolute (None: the name is a submodule itself); the first
    use imports it and keeps it."""

    def __getattr__(name):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f".{name}" if table[name] is None else table[name], package)
        value = module if table[name] is None else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
