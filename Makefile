# The two commands of the README: `make demo` and `make test`. Both install the locked tool
# chain first (uv, then the exact package set in uv.lock) when it is missing. Bytecode is compiled
# at install: with PYTHONDONTWRITEBYTECODE set (as on this machine and in the image) every Python
# process (each Airflow task, each dbt run) otherwise compiled the stack again, about 9 s of its start.
PERSONS ?= 20000
SEED ?= 1
OUT ?= ltceval-out
UV_VERSION := 0.13.9
# pytest-xdist workers for `make test` (tests/conftest.py keeps modules that share a run together)
TEST_WORKERS ?= 2
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: setup demo test test-fast benchmark

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	@$(UV) sync --frozen --python 3.11 --quiet --compile-bytecode

demo: setup
	$(UV) run --frozen ltceval run --persons $(PERSONS) --seed $(SEED) --out $(OUT)

test: setup
	$(UV) run --frozen pytest -n $(TEST_WORKERS) --durations=25

test-fast: setup
	$(UV) run --frozen pytest -m "not slow"

benchmark: setup
	$(UV) run --frozen python benchmarks/synthetic_generator.py
