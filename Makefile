# pimsync developer tasks. `make demo` and `make test` set themselves up on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format bench clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install pimsync with its dev extras

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pimsync needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP) ## Run a real sync against the bundled mock PIM on loopback
	$(BIN)/python -m pimsync.testing.demo

test: $(STAMP) ## Run the test suite on SQLite and a throwaway PostgreSQL (no benchmarks)
	@scripts/ensure-postgres
	$(BIN)/pytest

lint: $(STAMP) ## ruff check, ruff format --check, mypy --strict src
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy --strict src

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

bench: $(STAMP) ## Run the benchmarks, write bench/REPORT.md (sizes: tests/bench/harness.py)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@scripts/ensure-postgres
	$(BIN)/pytest -m bench tests/bench -p no:cacheprovider -o addopts="" -o timeout=7200 -o faulthandler_timeout=0 -s

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
