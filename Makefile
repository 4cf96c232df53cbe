# moocassets — two commands: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-batch test test-fast lint bench bench-io bench-extract bench-pipeline bench-risk bench-scale clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	@touch $(STAMP)

## Build the environment, start the simulator, fill every table for every course, serve the UI.
## Ctrl-C, `kill` or closing the terminal stops it and everything it started.
## Options: make demo DEMO_ARGS="--ui-port 3001 --sim-port 8766 --courses 5 --learners 100"
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/python -m moocassets.demo --ui $(DEMO_ARGS)

## The same without the UI; exits when the tables are filled.
demo-batch: $(STAMP)
	$(BIN)/python -m moocassets.demo $(DEMO_ARGS)

## Build the environment and run the whole test suite (MariaDB tests need MOOCASSETS_TEST_DATABASE_URL
## or the local server; under CI=true an unreachable server is a failure, otherwise a skip).
test: $(STAMP)
	$(BIN)/ruff check moocassets moocassets_tests benchmarks
	$(BIN)/pytest  # includes `dagster definitions validate` (test_definitions.py)

test-fast: $(STAMP)
	$(BIN)/pytest -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff check moocassets moocassets_tests benchmarks

## All benchmarks (about 15 minutes; each prints its baseline measured in the same run).
bench: bench-io bench-extract bench-risk bench-pipeline

bench-io: $(STAMP)
	$(BIN)/python -m benchmarks.io_bulk_load

bench-extract: $(STAMP)
	$(BIN)/python -m benchmarks.extract_latency

bench-pipeline: $(STAMP)
	$(BIN)/python -m benchmarks.pipeline

bench-risk: $(STAMP)
	$(BIN)/python -m benchmarks.risk_evaluation

## One run per course: in-process executor vs Celery with 1 and 2 workers (RabbitMQ, MariaDB).
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale_out

clean:
	rm -rf $(VENV) .dagster_home .pytest_cache .ruff_cache
