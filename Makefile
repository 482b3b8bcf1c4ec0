# Pulse: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install kafka-jars demo test test-unit bench proto clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The Apache Kafka broker jars (Maven Central) used by integration tests and benchmarks.
kafka-jars: install
	$(BIN)/python -m tests.kafka_broker fetch

demo: install
	$(BIN)/pulse demo

test: install kafka-jars
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest -m "not kafka"

bench: install kafka-jars
	$(BIN)/python -m bench.run_all

proto: install
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) .cache pulse-data
