# authrelay: every target creates or refreshes .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The oldest supported releases (the lower bounds in pyproject.toml), in their own venv.
# The benchmark smoke tests run on the newest releases only: their hand-written peer app
# (Authlib + Starlette's BaseHTTPMiddleware) fails on Starlette 0.37.
MIN_VENV := .venv-min
MIN_STAMP := $(MIN_VENV)/.installed
MINIMUM := constraints/minimum.txt
MIN_NAMES = $(shell sed -n 's/==.*//p' $(MINIMUM) | paste -sd'|')
# On CI (CI=true) every install takes the newest releases the bounds allow.
UPGRADE ?= $(if $(CI),--upgrade --upgrade-strategy eager,)

.PHONY: venv test venv-minimum test-minimum demo bench lint format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(UPGRADE) -e '.[dev]'
	@touch $(STAMP)

$(MIN_STAMP): pyproject.toml $(MINIMUM)
	@test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet -c $(MINIMUM) -e '.[dev]'
	@touch $(MIN_STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

venv-minimum: $(MIN_STAMP)

test-minimum: $(MIN_STAMP)
	@$(MIN_VENV)/bin/python -m pip freeze | grep -iE '^($(MIN_NAMES))==' | paste -sd' '
	$(MIN_VENV)/bin/python -m pytest -q --ignore=tests/benchmarks $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/authrelay demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy --strict src/

format: $(STAMP)
	$(BIN)/ruff format src tests examples benchmarks
	$(BIN)/ruff check --fix src tests examples benchmarks

clean:
	rm -rf $(VENV) $(MIN_VENV) .pytest_cache .mypy_cache .ruff_cache
