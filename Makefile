# Workbench: `make run` starts the whole service, `make test` runs lint and the test suite.
# Both first run `setup`, which is idempotent and works on a fresh Debian machine.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VENV_PY := $(VENV)/bin/python
RUFF := $(VENV)/bin/ruff
MYPY := $(VENV)/bin/mypy
LINT_IMPORTS := $(VENV)/bin/lint-imports
PYTEST := $(VENV)/bin/pytest
# The browser workbench's JavaScript, type-checked (// @ts-check, JSDoc) by TypeScript from npm.
TSC := node_modules/.bin/tsc
TSC_PROJECT := workbench/static/workbench
HONCHO := $(VENV)/bin/honcho
PROCFILE ?= Procfile
VAR_DIR := var
PYTEST_ARGS ?=
# Test processes (pytest-xdist), a whole file each: the integration and browser tests mostly
# wait on their services, and each process starts its own stack (Redis, Celery, Daphne,
# database), so two side by side take about half the time on two cores. 0: one process.
PYTEST_WORKERS ?= 2
PYTEST_XDIST = -n $(PYTEST_WORKERS) --dist loadfile
BENCH_ARGS ?=

# Stamps: reinstall only when the dependency manifest is newer than the last install.
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.workbench-installed

# The sandbox-agent platform binary (node_modules/.bin/sandbox-agent is a node wrapper).
NODE_PLATFORM := linux-$(shell uname -m | sed -e 's/^x86_64$$/x64/' -e 's/^aarch64$$/arm64/')
AGENT_BIN := node_modules/@sandbox-agent/cli-$(NODE_PLATFORM)/bin/sandbox-agent

# System tools `setup` installs with apt when they are missing.
REDIS_SERVER ?= redis-server
# The browser tests (tests/e2e) drive Debian's chromium; `playwright install` is never used.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo)
APT ?= $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: help setup system-deps agent-bin run test test-postgres postgres bench lint fmt

help:
	@echo "make run    set up, migrate, create the demo user, start redis/web/worker/beat"
	@echo "make test   set up, ruff check, pytest (extra arguments: PYTEST_ARGS='-k foo')"
	@echo "make test-postgres   the suite but the browser tests on a throwaway PostgreSQL cluster"
	@echo "make bench  the service benchmark on SQLite and PostgreSQL (~10 min; docs/benchmarks.md)"
	@echo "make lint   ruff, mypy, the import layers (lint-imports) and tsc on the browser's JavaScript"
	@echo "make fmt    ruff format and ruff check --fix"
	@echo "make setup  install system packages, the venv and node_modules (idempotent)"

setup: system-deps $(PY_STAMP) agent-bin

# apt-get update is slow, so it runs only when something is actually missing.
system-deps:
	@missing=""; \
	command -v $(REDIS_SERVER) >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v git >/dev/null 2>&1 || missing="$$missing git"; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	[ -x $(CHROMIUM) ] || missing="$$missing chromium"; \
	if [ ! -x $(VENV_PY) ]; then \
	  command -v $(PYTHON) >/dev/null 2>&1 || missing="$$missing python3"; \
	  $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  $(APT) update && $(APT) install -y --no-install-recommends $$missing; \
	fi

$(VENV_PY): | system-deps
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install --disable-pip-version-check -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json $(wildcard package-lock.json) | system-deps
	npm install --no-audit --no-fund
	touch $@

# npm may skip the package's postinstall chmod (install-scripts policy), so do it here.
agent-bin: $(NODE_STAMP)
	@test -f $(AGENT_BIN) || { echo "error: $(AGENT_BIN) is missing after npm install" >&2; exit 1; }
	@chmod +x $(AGENT_BIN)

run: setup
	mkdir -p $(VAR_DIR)
	$(VENV_PY) manage.py migrate --noinput
	$(VENV_PY) manage.py bootstrap_demo --base-url http://127.0.0.1:$${WORKBENCH_PORT:-8000}
	$(HONCHO) start -f $(PROCFILE)

test: setup
	mkdir -p $(VAR_DIR)
	$(RUFF) check .
	$(MYPY)
	$(LINT_IMPORTS) --no-cache
	$(TSC) --noEmit -p $(TSC_PROJECT)
	$(PYTEST) $(PYTEST_XDIST) $(PYTEST_ARGS)

# The suite again on a throwaway PostgreSQL cluster (scripts/with-postgres.sh), but for the
# browser tests (tests/e2e): they drive the same API and stream, whose behaviour on
# PostgreSQL the unit and integration tests cover, and running them twice took CI past its
# 30 minutes. PG_PYTEST_ARGS='' runs them here too.
PG_PYTEST_ARGS ?= -m "not e2e"
test-postgres: setup postgres
	mkdir -p $(VAR_DIR)
	scripts/with-postgres.sh $(PYTEST) $(PYTEST_XDIST) $(PG_PYTEST_ARGS) $(PYTEST_ARGS)

postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "Installing PostgreSQL"; \
	  $(APT) update && $(APT) install -y --no-install-recommends postgresql; }

# The service benchmark: real Daphne, Celery, Redis and sandbox-agent processes on SQLite and
# on a throwaway PostgreSQL cluster; writes docs/benchmarks.md. BENCH_ARGS='--db sqlite',
# '--smoke' (every scenario at tiny sizes), '--write ""' (print only).
bench: setup postgres
	mkdir -p $(VAR_DIR)
	$(VENV_PY) bench/service.py $(BENCH_ARGS)

lint: $(PY_STAMP) $(NODE_STAMP)
	$(RUFF) check .
	$(RUFF) format --check .
	$(MYPY)
	$(LINT_IMPORTS) --no-cache
	$(TSC) --noEmit -p $(TSC_PROJECT)

fmt: $(PY_STAMP)
	$(RUFF) format .
	$(RUFF) check --fix .
