# The two entry points of the README: `make demo` (the main job) and `make test`.
# Both create .venv and install opd into it first; nothing else is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; on these machines it lies on local disk. Set TORCH_SPEC to pick another build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the project metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/opd demo

# Test services: a throwaway PostgreSQL server (installed from Debian's packages if missing). If it cannot
# start, its tests skip on a developer machine and fail in CI (where CI=true), never silently.
test: $(VENV)/.installed
	$(BIN)/ruff check opd tests benchmarks
	OPD_TEST_POSTGRES_URL="$$(scripts/ensure-postgres.sh)" $(BIN)/python -m pytest

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow and not docker and not postgres"

lint: $(VENV)/.installed
	$(BIN)/ruff check opd tests benchmarks

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/env_step.py
	$(BIN)/python benchmarks/store.py

clean:
	rm -rf $(VENV) .pytest_cache
