# The two entry points of the README: `make demo` (the main job) and `make test`.
# Both create .venv and install opd into it first; nothing else is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; on these machines it lies on local disk. Set TORCH_SPEC to pick another build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-fast lint bench bench-sandbox docker chromium vllm clean

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

# A Docker Engine, `docker compose` and the sandbox images (idempotent; see scripts/ensure-docker.sh).
# In CI (CI set) a failure stops the run; elsewhere the Docker tests then skip and say why.
docker: $(VENV)/.installed
	scripts/ensure-docker.sh $(BIN)/python || [ -z "$$CI" ]

# Debian's Chromium for the viewer's browser tests (idempotent; see scripts/ensure-chromium.sh). As with Docker,
# a failure stops a CI run and elsewhere only makes the browser tests skip, saying why.
chromium:
	scripts/ensure-chromium.sh || [ -z "$$CI" ]

# vLLM (CPU build) in its own venv, as users deploy it beside the trainer: the inference-engine tests (tests/engines)
# start servers from it. Built once (a few GB, several minutes) and cached outside the checkout, so that a fresh
# clone on the same machine reuses it; see scripts/ensure-vllm.sh. VLLM_VENV picks another place.
VLLM_VENV ?= $(HOME)/.cache/opd/venv-vllm
vllm:
	scripts/ensure-vllm.sh $(VLLM_VENV) >/dev/null || [ -z "$$CI" ]

# Test services: the Docker Engine above and a throwaway PostgreSQL server (installed from Debian's packages
# if missing). If one cannot start, its tests skip on a developer machine and fail in CI (CI=true), never silently.
test: $(VENV)/.installed docker chromium vllm
	$(BIN)/ruff check opd tests benchmarks
	OPD_REAL_MODELS="$$(scripts/ensure-real-tokenizers.sh $(BIN)/python)" OPD_VLLM_PYTHON="$(VLLM_VENV)/bin/python" \
	OPD_TEST_POSTGRES_URL="$$(scripts/ensure-postgres.sh)" $(BIN)/python -m pytest

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow and not docker and not postgres and not browser"

lint: $(VENV)/.installed
	$(BIN)/ruff check opd tests benchmarks

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/env_step.py
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/viewer.py

bench-sandbox: docker
	$(BIN)/python benchmarks/sandbox.py

clean:
	rm -rf $(VENV) .pytest_cache  # the cached vLLM venv stays: rm -rf $(VLLM_VENV)
