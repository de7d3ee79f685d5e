# The two commands of the README. Each sets itself up on a fresh machine: a venv, pip, and npm for Azurite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help demo test deps typecheck browser
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

# The status page's browser test needs Debian's chromium and chromium-driver (CI runs as root on Debian).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; }

deps: $(VENV)/.installed node_modules/.installed browser

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
