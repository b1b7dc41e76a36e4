# The two commands that matter: `make demo` and `make test`. Both install what
# is missing first (Python env, then the stack), so they work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CUSTODY := $(BIN)/custody
PYTEST := $(BIN)/pytest
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-stack venv install up down status logs test-unit test-sagas test-contracts \
        test-integration test-e2e test-redteam test-lifecycle lint typecheck fmt clean-stack

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

install: $(STAMP)
	$(CUSTODY) stack install

up: install
	$(CUSTODY) stack up

down:
	@if [ -x $(CUSTODY) ]; then $(CUSTODY) stack down; fi

status: $(STAMP)
	$(CUSTODY) stack status

logs: $(STAMP)
	$(CUSTODY) stack logs

demo: up
	$(CUSTODY) demo

# Every tier, in two lanes at once (decision 0034): the tiers that need no stack (lint,
# types, unit, sagas: CPU-bound, niced) beside the stack's tiers in their order (mostly
# waiting on blocks and timers). The lifecycle tier stops and restarts services, so it
# runs last in its lane. The fast lane's output is printed when both lanes are done.
test: up
	@rm -f .stack/test-fast.rc
	@( nice -n 10 $(MAKE) --no-print-directory test-fast > .stack/test-fast.log 2>&1; \
	   echo $$? > .stack/test-fast.rc ) & \
	$(MAKE) --no-print-directory test-stack; stack=$$?; wait; \
	echo "=== the lane beside the stack's: lint, typecheck, test-unit, test-sagas ==="; \
	cat .stack/test-fast.log; fast=$$(cat .stack/test-fast.rc 2>/dev/null || echo 1); \
	echo "make test: the stack's tiers exited $$stack, the others $$fast"; \
	test "$$stack" = 0 && test "$$fast" = 0

# The two lanes of `make test`, each runnable alone.
test-fast: lint typecheck test-unit test-sagas

test-stack: up test-contracts test-integration test-e2e test-redteam test-lifecycle

test-unit: $(STAMP)
	$(PYTEST) tests/unit

# The sagas' real workflows and activities over fakes, on Temporal's time-skipping test
# server (Java, from Maven Central on first use): no stack.
test-sagas: $(STAMP)
	$(PYTEST) tests/sagas

test-contracts: $(STAMP)
	$(PYTEST) tests/contracts

test-integration: $(STAMP)
	$(PYTEST) tests/integration -m "not lifecycle" --durations=10

# The platform's processes on the real stack, driven over HTTP and Kafka.
test-e2e: $(STAMP)
	$(PYTEST) tests/e2e --durations=25

# Attacks on the real signer, as a compromised worker would make them (issue 12).
test-redteam: $(STAMP)
	$(PYTEST) tests/redteam --durations=10

test-lifecycle: $(STAMP)
	$(PYTEST) tests/integration -m lifecycle

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean-stack: down
	rm -rf .stack
