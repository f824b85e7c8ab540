# fedsim: `make demo` runs the main demo, `make test` runs the tests. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all venv bench clean flwr-run

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch/torchvision through plain pip (takes the CPU-usable wheels the machine provides)
	$(BIN)/pip install --quiet "torch>=2.2,<=2.14.1" "torchvision>=0.17,<=0.29.1"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/fedsim demo --out runs/demo

# make test: the tests a developer waits for (no `slow` marker); make test-slow: the slow ones (real Ray
# simulations, a wheel install, multi-node Ray, long attacks); CI (.ci/run) runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.federation

clean:
	rm -rf runs .pytest_cache

# Flower's own CLI on the same presets: `make flwr-run CONFIG=configs/smoke.toml NODES=3`. FLWR_HOME stays in
# runs/.flwr, runtime dependency installation is off, and the local SuperLink that `flwr run` starts is stopped by
# its PID (fedsim/lab/flwr_native.py); the exit code is the run's.
CONFIG ?= configs/smoke.toml
NODES ?= 3
flwr-run: $(STAMP)
	$(BIN)/python -m fedsim.lab.flwr_native $(CONFIG) $(NODES) $(CURDIR)/runs/.flwr
