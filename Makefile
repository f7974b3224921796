# Two commands do all the set-up on a fresh machine:
#   make up    - the whole system on this machine (NATS, catalog, runner, API)
#   make test  - ruff, mypy (make lint), then the test suite
#   make lint  - ruff over contracts/, services/, tests/ and bench/, mypy over the packages
#                (settings in pyproject.toml)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build that lies on this kind of machine; a looser
# pin would pull several GB of CUDA wheels.
TORCH ?= torch==2.13.0

.PHONY: up test lint install clean bench chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

up: install
	$(BIN)/mochi up

# Lint first: a lint or type error fails the run in about a minute, not after the whole suite.
test: install chromium lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ruff reads the code, the tests and the benchmarks. mypy checks only the packages
# ([tool.mypy] packages in pyproject.toml): the tests and bench scripts are untyped
# fixtures and helpers (tests/unit alone has a dozen errors), so ruff only there.
LINT_PATHS ?= contracts services tests bench
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy

# The web app's browser tests drive Debian's chromium, never a downloaded browser.
chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || echo "no /usr/bin/chromium: the browser tests will be skipped"

clean:
	rm -rf $(VENV) var .pytest_cache
