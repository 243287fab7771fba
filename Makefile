# The two commands a newcomer needs: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench bench-engine clean docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/conveyor run examples/pipeline.yaml --db .conveyor-example.db --fresh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	sh scripts/ensure-chromium.sh
	sh scripts/ensure-axe.sh
	sh scripts/ensure-docker-compose.sh
	sh scripts/ensure-promtool.sh
	sh scripts/ensure-containers.sh
	$(BIN)/pytest

# The documentation site (docs/, mkdocs.yml) into build/site, the generated pages first.
docs: $(STAMP)
	$(BIN)/python scripts/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Benchmarks are not tests: the peers they measure (Huey, Celery, procrastinate, pgqueuer) come with
# the `bench` extra, for them only. BENCH_POSTGRES is where Conveyor, procrastinate and pgqueuer
# each get a schema of their own.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_POSTGRES ?= postgresql://127.0.0.1:5432/test
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks --postgres $(BENCH_POSTGRES) $(BENCH_ARGS)

bench-engine: $(STAMP)
	$(BIN)/python benchmarks/engine_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .conveyor-example.db*
