# The two commands of the README: `make render` (install + render the dev stack) and `make test` (install + the
# whole suite: lint, format, types, tests). CI runs `make test` through .ci/run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev

.PHONY: install render test lint types pytest clean

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

types:
	$(BIN)/mypy infra components tests gateway_image/llm_gateway

pytest:
	$(BIN)/python -m pytest -q

test: install
	bash scripts/install-test-tools.sh
	$(MAKE) lint types pytest

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
