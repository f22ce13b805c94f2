# The commands the README and CI use. Each sets up .venv first if the lock file changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every version a machine installs (runtime, dev and bench), with its hashes: what make and CI
# install. The Dockerfile installs the runtime part, the same versions, from RUNTIME_LOCK.
# Both are written by `make lock` from pyproject.toml (docs/decisions/0027-locked-installs.md).
LOCK := requirements.lock
RUNTIME_LOCK := requirements-runtime.lock
# uv installs the lock; INSTALLER=pip installs the same lock with pip alone, only slower.
INSTALLER ?= uv
# Touched after a successful install, so the install re-runs only when the lock or
# pyproject.toml changes.
INSTALLED := $(VENV)/.installed
UV := $(BIN)/uv
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command 'make lock'

.PHONY: run test lint bench lock

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

## lock: resolve the lock files again from pyproject.toml, keeping the versions they pin where
## pyproject.toml still allows them (ARGS=--upgrade: the newest of everything; then `make test`)
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra dev --extra bench $(LOCK_FLAGS) $(ARGS) -o $(LOCK)
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) --constraint $(LOCK) -o $(RUNTIME_LOCK)

# uv itself, at the version and hashes the lock gives it, installed with the venv's own pip.
$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sed -n '/^uv==/,/# via/p' $(LOCK) > $(VENV)/uv.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r $(VENV)/uv.txt

ifeq ($(INSTALLER),pip)
$(INSTALLED): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@
else
# sync: exactly the lock, removing what it does not list; then the project itself, whose
# dependencies the lock holds (check: a dependency added to pyproject.toml but not to the lock
# fails here, not in a test).
$(INSTALLED): $(LOCK) pyproject.toml | $(UV)
	$(UV) pip sync --quiet --python $(BIN)/python $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	$(UV) pip check --quiet --python $(BIN)/python
	touch $@
endif
