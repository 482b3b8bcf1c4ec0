# Pulse: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install kafka-jars ops-deps bench-tools demo test test-unit bench proto clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The Apache Kafka broker jars (Maven Central) used by integration tests and benchmarks.
kafka-jars: install
	$(BIN)/python -m tests.kafka_broker fetch

# Prometheus and promtool (Debian's `prometheus` package) for tests/ops: a real Prometheus
# scrapes Pulse there. Installed only when missing (needs root or sudo, like CI has).
ops-deps:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else echo "make ops-deps: installing Debian's prometheus package needs root or sudo" >&2; exit 1; fi; \
	  echo "installing Debian's prometheus package (prometheus, promtool) for tests/ops"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi
	@promtool --version 2>&1 | head -1

# ghz, a Go gRPC load generator, for `python -m bench.bench_recommendations --client go`
# (benchmarks only; needs Go and the Go module proxy). Version: bench/go_client.py.
GHZ_VERSION := $(shell sed -n 's/^GHZ_VERSION = "\(.*\)"/\1/p' bench/go_client.py)
bench-tools:
	GOBIN=$(CURDIR)/build/bin go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
	@$(CURDIR)/build/bin/ghz --version

demo: install
	$(BIN)/pulse demo

test: install kafka-jars ops-deps
	$(BIN)/python -m pytest

test-unit: install ops-deps
	$(BIN)/python -m pytest -m "not kafka"

bench: install kafka-jars
	$(BIN)/python -m bench.run_all

proto: install
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) .cache pulse-data
