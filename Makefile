# fraudstream developer tasks. `make test` is what CI (.ci/run) runs.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST := $(VENV)/bin/pytest
LOCK := requirements.lock
STAMP := $(VENV)/.installed
DEV_KAFKA := ./dev/kafka

# The test broker runs on its own ports so it never collides with a dev broker on 9092.
TEST_KAFKA_PORT ?= 39092
TEST_KAFKA_CONTROLLER_PORT ?= 39093
BENCH_KAFKA_PORT ?= 39192
BENCH_KAFKA_CONTROLLER_PORT ?= 39193
PYTEST_ARGS ?=

.PHONY: help venv lock kafka-jars lint-imports test test-all test-unit broker-start broker-stop broker-status \
	broker-logs bench demo clean

help:
	@echo "make venv          create $(VENV) ($(PYTHON)) and install fraudstream[test,bench,confluent] pinned by $(LOCK)"
	@echo "make lock          rewrite $(LOCK) from the installed venv"
	@echo "make kafka-jars    fetch and cache the Kafka broker jars (Maven)"
	@echo "make lint-imports  check the layering contracts in pyproject.toml (part of make test)"
	@echo "make test          layering, docstring examples, unit + integration tests against a real broker on $(TEST_KAFKA_PORT)"
	@echo "make test-all      make test, with every daemon proof run on both Kafka clients"
	@echo "make test-unit     layering, docstring examples and unit tests (no broker)"
	@echo "make broker-start  start the development broker on 127.0.0.1:9092 (also broker-stop,"
	@echo "                   broker-status, broker-logs)"
	@echo "make bench         run bench/*.py against a broker on $(BENCH_KAFKA_PORT)"
	@echo "make demo          run 'fraudstream demo'"

venv: $(STAMP)

# Reinstalls only when pyproject.toml or the lock changed since the last install.
$(STAMP): pyproject.toml $(wildcard $(LOCK))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade-strategy only-if-needed \
		$(if $(wildcard $(LOCK)),-c $(LOCK)) -e '.[test,bench,confluent]'
	@touch $@

lock: venv
	$(PIP) freeze --exclude-editable > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	@touch $(STAMP)
	@echo "wrote $(LOCK) ($$(wc -l < $(LOCK)) packages)"

kafka-jars:
	$(DEV_KAFKA) jars

# Imports follow the layers (cli > daemon > monitoring > models > features > ...): the
# contracts are in pyproject.toml, [tool.importlinter].
lint-imports: venv
	$(VENV)/bin/lint-imports --no-logo

# The broker is stopped however pytest ends (failure, Ctrl-C): the EXIT trap runs
# `dev/kafka stop`, and the recipe exits with pytest's status.
test: venv kafka-jars lint-imports
	@trap '$(DEV_KAFKA) stop --port $(TEST_KAFKA_PORT) --controller-port $(TEST_KAFKA_CONTROLLER_PORT)' EXIT; \
	trap 'exit 130' INT TERM; \
	bootstrap=$$($(DEV_KAFKA) start --port $(TEST_KAFKA_PORT) --controller-port $(TEST_KAFKA_CONTROLLER_PORT)) || exit $$?; \
	FRAUDSTREAM_TEST_BOOTSTRAP=$$bootstrap $(PYTEST) fraudstream tests/unit tests/integration $(PYTEST_ARGS)

# The slowest daemon proofs run on one Kafka client each in `make test`; here on both.
test-all: export FRAUDSTREAM_TEST_ALL_CLIENTS = 1
test-all: test

test-unit: venv lint-imports
	$(PYTEST) fraudstream tests/unit $(PYTEST_ARGS)

broker-start:
	$(DEV_KAFKA) start

broker-stop:
	$(DEV_KAFKA) stop

broker-status:
	$(DEV_KAFKA) status

broker-logs:
	$(DEV_KAFKA) logs

# Benchmarks print figures and write bench/results/; they read the broker address
# from FRAUDSTREAM_BENCH_BOOTSTRAP when they need Kafka.
bench: venv kafka-jars
	@shopt -s nullglob; scripts=(bench/*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no benchmarks in bench/ yet"; exit 0; fi; \
	trap '$(DEV_KAFKA) stop --port $(BENCH_KAFKA_PORT) --controller-port $(BENCH_KAFKA_CONTROLLER_PORT)' EXIT; \
	trap 'exit 130' INT TERM; \
	bootstrap=$$($(DEV_KAFKA) start --port $(BENCH_KAFKA_PORT) --controller-port $(BENCH_KAFKA_CONTROLLER_PORT)) || exit $$?; \
	status=0; \
	for script in "$${scripts[@]}"; do \
		echo "== $$script"; \
		FRAUDSTREAM_BENCH_BOOTSTRAP=$$bootstrap $(PY) "$$script" || status=1; \
	done; \
	exit $$status

demo: venv
	$(VENV)/bin/fraudstream demo

clean:
	rm -rf .pytest_cache .import_linter_cache .dev-kafka build dist bench/results
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
