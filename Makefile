# Chatsite: `make run` to use it, `make test` to check it. See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQUIREMENTS := $(wildcard requirements*.txt)
BOOTSTRAP_PYTHON := $(shell command -v python3.11 2>/dev/null || command -v python3)
# pip's harmless notes about find-links/index locations that do not exist on this machine.
PIP_NOISE := Location '.*' is ignored
ARGS ?=

.PHONY: help run test bench venv browser clean

help:
	@echo "make run      start Chatsite at http://127.0.0.1:8000/ (Ctrl+C stops everything)"
	@echo "make test     run the test suite (ARGS=\"-k name\" passes options to pytest)"
	@echo "make check-anthropic  with ANTHROPIC_API_KEY set: a few small requests per enabled model, pass/fail each"
	@echo "make bench    run the streaming benchmark"
	@echo "make bench-cost  what a 200-turn conversation costs: full history, trim+summary, Chatsite"
	@echo "make bench-faults  break PostgreSQL, Redis and Anthropic on purpose; print what was lost"
	@echo "make venv     create/update .venv from requirements*.txt"
	@echo "make browser  install Debian chromium for the browser tests (if missing)"
	@echo "make clean    remove caches and run-time leftovers (keeps var/ database and secrets)"

run: venv
	$(PY) scripts/devserver.py

test: venv browser
	$(PY) scripts/runtests.py $(ARGS)

bench: venv
	$(PY) bench/streams.py $(ARGS)

.PHONY: check-anthropic
check-anthropic: venv
	$(PY) scripts/check_anthropic.py $(ARGS)

.PHONY: bench-cost
bench-cost: venv
	$(PY) bench/cost.py $(ARGS)

.PHONY: bench-faults
bench-faults: venv
	$(PY) bench/faults.py $(ARGS)

venv: $(STAMP)

# Re-runs only when a requirements file is newer than the stamp.
$(STAMP): $(REQUIREMENTS)
	@if [ ! -x $(PY) ]; then \
		echo "Creating $(VENV) with $(BOOTSTRAP_PYTHON)"; \
		$(BOOTSTRAP_PYTHON) -m venv $(VENV); \
	fi
	@echo "Installing requirements-dev.txt into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 \
		| { grep -v "$(PIP_NOISE)" || true; }
	@touch $@

browser:
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; \
	else \
		echo "Chromium is missing and this user cannot install it. Run as root:"; \
		echo "    apt-get update && apt-get install -y chromium chromium-driver"; \
		exit 1; \
	fi; \
	echo "Installing Debian chromium + chromium-driver for the browser tests"; \
	$$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium chromium-driver >/dev/null

clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache staticfiles var/redis var/celerybeat-schedule* var/test-*.sqlite3*
