# The two commands of the README: `make render` (install + render the dev stack) and `make test` (install + the
# whole suite: lint, format, types, tests). CI runs `make test` through .ci/run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev

.PHONY: install render test lint types pytest mutation clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e ./gateway_image -e '.[dev]'

render: install
	$(BIN)/llm-serving render $(STACK)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

types:
	$(BIN)/mypy infra components tests gateway_image/llm_gateway conftest.py

pytest:
	$(BIN)/python -m pytest -q

test: install
	bash scripts/install-test-tools.sh
	$(MAKE) lint types pytest

# Mutation testing of the pure core (mutmut), by hand like a benchmark: minutes, not part of `make test`.
# MODULE=sse runs one (capacity balancing routing proxy accounting sse semantic config); JOBS=2 runs mutants
# in parallel. Figures and the review of the survivors: docs/testing.md.
MODULE ?=
JOBS ?= 1
mutation:
	$(BIN)/python bench/mutation.py --jobs $(JOBS) $(MODULE)

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
