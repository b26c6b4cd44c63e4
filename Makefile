# The README's two commands: `make run` (the local stack) and `make test`.
# Both create .venv and install everything from a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench bench-orders bench-waiting bench-renewals chaos ui-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# `make run WORKERS=2` runs two worker processes; SANDBOX_FAULTS=... turns provider faults on.
WORKERS ?= 1

run: install
	$(PY) devstack.py --workers $(WORKERS)

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -ra

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Benchmarks print their figures; they are not tests (pytest never collects benchmarks/).
# `make bench` runs orders, waiting and renewals (each its own stack) and prints issue 11's goals
# beside the figures, its last line one JSON object; at the issue's sizes it takes ~40 min.
# A quick run: make bench BENCH_ARGS="--waiting 1000 --charges 1000"
BENCH_ARGS ?=
RENEWAL_CHARGES ?= 10000
WAITING_ORDERS ?= 10000

bench: install
	$(PY) benchmarks/all.py $(BENCH_ARGS)

bench-orders: install
	$(PY) benchmarks/orders.py

bench-waiting: install
	$(PY) benchmarks/waiting.py --orders $(WAITING_ORDERS)

bench-renewals: install
	$(PY) benchmarks/renewals.py --charges $(RENEWAL_CHARGES)

# The chaos benchmark: its own stack (own ports, own data dir) with provider faults, two
# workers killed now and then, Temporal restarted once. Exits non-zero on anything lost or
# duplicated.
CHAOS_ORDERS ?= 200

chaos: install
	$(PY) benchmarks/chaos.py --orders $(CHAOS_ORDERS)

# The Temporal Web UI checked in headless Chromium (Debian's package; when it is missing, run as
# root this installs it with apt-get, otherwise it prints the command). A stack of its own on free
# ports (TEMPORAL_ADDRESS, TEMPORAL_UI_PORT, ... pick them), or UI_CHECK_ARGS=--running for the
# `make run` stack. Screenshots in .data/ui-check/.
UI_CHECK_ARGS ?=

ui-check: install
	$(PY) tools/ui_check.py --install-chromium $(UI_CHECK_ARGS)

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache *.egg-info
