# Two entry points, both idempotent on a fresh machine: `make demo` and `make test`.
# The venv pins the local CPU build of torch for development and CI; the package itself
# accepts any torch >= 2.1 so GPU users keep their CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
DEMO_OUT ?= out/demo

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/tv3s demo --out $(DEMO_OUT) --overwrite

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/model.py
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) out
