# `make run` and `make test` set everything up on a fresh machine (Python 3.10+ and a package index).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lt_bench-installed

.PHONY: install run test lint bench clean

# Re-installs whenever pyproject.toml or the pinned versions change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m lt_bench $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check lt_bench tests benchmarks examples scripts
	$(BIN)/ruff format --check lt_bench tests benchmarks examples scripts

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache outputs/*/ multirun
