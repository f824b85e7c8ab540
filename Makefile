# fedsim: `make demo` runs the main demo, `make test` runs the tests. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv bench clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not deployment"

bench: $(STAMP)
	$(BIN)/python benchmarks/federation.py

clean:
	rm -rf runs .pytest_cache
