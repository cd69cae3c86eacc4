# tinynet: `make train` trains the default MLP on MNIST, `make test` runs the test suite.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: train test clean help

help:
	@echo "make train   create .venv, install tinynet, fetch MNIST, train the default MLP with BatchNorm"
	@echo "make test    install the test dependencies and run the test suite"
	@echo "make compare train with and without BatchNorm (Ioffe & Szegedy's Figure 1): plots and report in runs/compare"
	@echo "make lab N=1 grade course lab 1 (labs/01_*/student.py) offline, with hints; labs-selfcheck checks all labs"
	@echo "make bench   tinynet vs PyTorch CPU on the MNIST MLP: s/epoch, ratio, GFLOP/s, peak RSS (installs torch==2.13.0)"
	@echo "make bench-cnn  the LeNet-style CNN: tinynet plain and --fast vs PyTorch CPU, s/epoch and ratios"
	@echo "make profile where a CPU training step goes: tinynet's parts beside PyTorch's operators, us per step"
	@echo "make gpu-check  on a GPU machine: tests on CuPy, MNIST to 98 %, tinynet-cupy vs PyTorch (docs/gpu.md)"
	@echo "             (pass options with ARGS=..., e.g. make train ARGS='--epochs 3 --no-batchnorm')"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# with --plot in ARGS, matplotlib (the `plot` extra) is installed first
train: $(VENV)/.installed $(if $(findstring --plot,$(ARGS)),$(VENV)/.installed-plot)
	$(PY) -m tinynet train $(ARGS)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# compare: train the Figure 1 network with and without BatchNorm; plots, data and report in runs/compare
.PHONY: compare

$(VENV)/.installed-plot: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[plot]'
	touch $@

# One BLAS thread unless you say otherwise: the matrices of a batch of 60 gain nothing from two, and
# on a shared 2-core machine two threads per process ran 4-10x slower (measured)
compare: $(VENV)/.installed-plot
	OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m tinynet compare $(ARGS)

# lab: grade one course lab offline (make lab N=3); labs-selfcheck: every lab's reference passes,
# its untouched stubs fail, each planted classic mistake gets its hint (tests/test_labs.py), and
# every attack file in tests/labs_attacks/ is refused (tests/test_lab_attacks.py)
.PHONY: lab labs-selfcheck

lab: $(VENV)/.installed
	$(PY) -m tinynet lab $(N) $(ARGS)

labs-selfcheck: $(VENV)/.installed-test
	$(PY) -m tinynet lab --selfcheck
	$(PY) -m pytest -q tests/test_labs.py tests/test_lab_attacks.py

# gpu-check: on a GPU machine, with only what is installed there (no venv, no pip): the test suite
# on CuPy, the default MLP to 98 % on MNIST, tinynet-cupy against PyTorch CUDA eager; the report
# goes to benchmarks/results/gpu-<date>.md (and $OUT when set). See docs/gpu.md.
.PHONY: gpu-check

GPU_PYTHON ?= python3

gpu-check:
	PYTHONPATH=. $(GPU_PYTHON) benchmarks/gpu_check.py $(ARGS)

# bench: tinynet against PyTorch CPU on the MNIST MLP, (256, 128) and (1024, 1024), alternated
# rounds, GEMM peak and peak RSS (benchmarks/README.md). Installs the `bench` extra (torch==2.13.0).
# profile: where one training step goes, tinynet's parts beside PyTorch's operators (step_profile.py)
.PHONY: bench profile

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/bench_cpu.py $(ARGS)

# bench-cnn: tinynet's CNN (plain, and the opt-in tinynet.speed) against PyTorch CPU, same weights and
# batches, alternated rounds (benchmarks/README.md, "The CNN"). Installs the `bench` extra.
.PHONY: bench-cnn
bench-cnn: $(VENV)/.installed-bench
	$(PY) benchmarks/bench_cnn.py $(ARGS)

profile: $(VENV)/.installed-bench
	$(PY) benchmarks/step_profile.py $(ARGS)
