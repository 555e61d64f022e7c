# `make run` and `make test` set everything up on a fresh machine (Python 3.10+ and a package index).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lt_bench-installed

.PHONY: install run test test-heavy faults lint bench data clean

# Re-installs whenever pyproject.toml or the pinned versions change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m lt_bench $(ARGS)

# the suite (heavy and faults cases left out by pyproject's addopts) on two workers of one thread each
# (tests/conftest.py); one kind: make test PYTEST_ARGS=tests/unit; serially: PYTEST_WORKERS=0
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# the end-to-end cases beyond the suite's 10-minute budget (more methods through eval, more DDP/resume runs)
test-heavy: $(STAMP)
	$(BIN)/python -m pytest -m heavy $(PYTEST_ARGS)

# kill -9 / SIGTERM / stuck-rank / full-disk cases with real processes; prints what each case measured
faults: $(STAMP)
	$(BIN)/python -m pytest -m faults -s $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check lt_bench tests benchmarks examples scripts
	$(BIN)/ruff format --check lt_bench tests benchmarks examples scripts

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench $(ARGS)

# The full Fashion-MNIST (60,000 + 10,000 images) for the README's real-data tables.
FASHION := /usr/share/datasets/fashion-mnist
data:
	@if [ -d $(FASHION) ]; then echo "Fashion-MNIST is in $(FASHION)"; \
	elif command -v apt-get >/dev/null; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "no apt-get here: put the four Fashion-MNIST idx files (train-images-idx3-ubyte.gz ...) in a folder" \
		"and pass dataset.root=FOLDER (layout: docs/datasets.md)"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache outputs/*/ multirun
