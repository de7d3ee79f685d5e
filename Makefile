# The two commands of the README. Each sets itself up on a fresh machine: a venv, pip, and npm for Azurite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help demo test deps typecheck
.DEFAULT_GOAL := help

help:
	@echo "make demo   run the sync end to end on local Azurite and the emulators, with demo data"
	@echo "make test   lint, format check, typecheck and the whole test suite (starts Azurite and the emulators itself)"
	@echo "make typecheck  mypy: the product strictly (sync/, function_app.py), then emulators/ and bench/ (looser)"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node_modules/.installed

demo: deps
	$(PY) -m sync demo

test: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory typecheck
	$(PY) -m pytest -n 2 --dist loadfile

# Settings in pyproject.toml [tool.mypy]: the first run checks its `files` (the product), the second the rest.
typecheck: deps
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy emulators bench
