# streamrec: the two commands (README) and their parts.
#   make demo   install into .venv, start the local broker, run the main job
#   make test   install into .venv, start the local broker, run every test, stop what it started
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pip's HTTP cache is not used by this registry mirror, so wheels are kept in a
# wheelhouse of our own: a rerun or a fresh .venv installs without downloading.
WHEELHOUSE ?= $(HOME)/.cache/streamrec/wheels
KAFKA := deploy/kafka/kafka.sh
# Tests get a broker of their own, beside any broker on the default port.
TEST_KAFKA_PORT ?= 19092
TEST_KAFKA_DATA ?= $(HOME)/.cache/streamrec/test-broker
PYTEST_ARGS ?=

.PHONY: help install deploy-tools demo demo-stop test broker-start broker-stop broker-status clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@mkdir -p $(WHEELHOUSE)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip download -q -d $(WHEELHOUSE) --find-links $(WHEELHOUSE) '.[dev]'
	$(PY) -m pip install -q --find-links $(WHEELHOUSE) -e '.[dev]'
	@rm -f $(WHEELHOUSE)/streamrec-*
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install streamrec with its dependencies

deploy-tools:  ## Debian's prometheus/promtool, docker-compose and chromium + chromium-driver for the deployment and browser tests (they skip without them)
	@deploy/prometheus/install.sh

broker-start:  ## start the local Kafka broker (127.0.0.1:9092)
	$(KAFKA) start

broker-stop:  ## stop the local Kafka broker
	$(KAFKA) stop

broker-status:
	$(KAFKA) status

demo: install  ## the main job: a live worker, a trained model and fresh recommendations, on the local broker; the worker and the dashboard keep running
	@started=0; \
	if ! $(KAFKA) status >/dev/null 2>&1; then $(KAFKA) start; started=1; fi; \
	rc=0; STREAMREC_KAFKA_BOOTSTRAP=127.0.0.1:$${STREAMREC_KAFKA_PORT:-9092} $(VENV)/bin/streamrec demo || rc=$$?; \
	echo "broker still running on 127.0.0.1:$${STREAMREC_KAFKA_PORT:-9092}: 'make broker-stop' stops it"; \
	exit $$rc

demo-stop:  ## stop the worker and the dashboard that 'make demo' left running
	$(VENV)/bin/streamrec demo --stop

test: install deploy-tools  ## every test, against a broker started (and stopped) for the run
	@export STREAMREC_KAFKA_PORT=$(TEST_KAFKA_PORT) STREAMREC_KAFKA_DATA_DIR=$(TEST_KAFKA_DATA); \
	started=0; \
	if ! $(KAFKA) status >/dev/null 2>&1; then $(KAFKA) start; started=1; fi; \
	rc=0; STREAMREC_KAFKA_BOOTSTRAP=127.0.0.1:$(TEST_KAFKA_PORT) $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$started = 1 ]; then $(KAFKA) stop; fi; \
	exit $$rc

clean:  ## remove local state (not the venv, not the jar and wheel caches)
	rm -rf var .pytest_cache
