# The commands the README and CI use. Each sets up .venv first if pyproject.toml changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install, so the install re-runs only when pyproject.toml changes.
INSTALLED := $(VENV)/.installed

.PHONY: run test lint bench

## run: Postgres, Redis, a mail sink, migrations, demo data, API and worker until Ctrl-C
run: $(INSTALLED)
	$(BIN)/python -m devstack run $(ARGS)

## test: the test suite, on its own throwaway Postgres, Redis and SMTP sink (PYTEST_ARGS=...)
test: $(INSTALLED)
	$(BIN)/python -m devstack ensure-binaries
	$(BIN)/pytest $(PYTEST_ARGS)

## lint: ruff (lint and format) and mypy --strict
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: the load benchmark; writes docs/performance.md and charts (ARGS=--smoke, --soak-seconds 0)
bench: $(INSTALLED)
	$(BIN)/python -m bench $(ARGS)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@
