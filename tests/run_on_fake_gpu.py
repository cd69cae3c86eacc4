"""Run tests with tests/fake_cupy.py standing in for CuPy, on a machine without a GPU.

    python tests/run_on_fake_gpu.py -q -m gpu -k "not fake" tests

runs every test's CuPy case (the ``xp`` fixture's "cupy", and the tests marked ``gpu``) with
NumPy arrays posing as CuPy's and the CUDA kernels run on the CPU: a dry run of what
``make gpu-check`` runs on a GPU, minus speed, cuBLAS and GPU rounding (see fake_cupy.py).
Needs g++. Arguments are pytest's.
"""

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import fake_cupy  # noqa: E402
import pytest  # noqa: E402

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as build, fake_cupy.installed(build):
        sys.exit(pytest.main(["-p", "no:cacheprovider"] + sys.argv[1:]))
