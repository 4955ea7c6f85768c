# One entry point for users and CI. `make study` and `make test` set up .venv/ when it is
# missing or older than the pins, then do their job.
PYTHON ?= python3
VENV := .venv
# The device of the last set-up (cpu or cuda) stays until another is asked for with DEVICE=...
DEVICE ?= $(or $(patsubst $(VENV)/.setup-%,%,$(firstword $(wildcard $(VENV)/.setup-*))),cpu)
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-$(DEVICE)
PINS := requirements/lock.txt requirements/$(DEVICE).txt requirements/torchrec.txt pyproject.toml

.PHONY: help setup test browser study lab clean-data

help:
	@echo "make study [PROFILE=quick|paper|full|tiny] [WEIGHTS=file.yaml] [ARGS='-p NAME VALUE']"
	@echo "                      the whole study (set-up included); report: _build/html/index.html"
	@echo "make test             the test suite (what CI runs)"
	@echo "make setup [DEVICE=cpu|cuda]   .venv/ with the pinned stack (the device is remembered)"
	@echo "make lab              JupyterLab on notebooks/ with the project's kernel"
	@echo "make clean-data       remove data/quick, data/full, runs/ and _build/"

setup: $(STAMP)

$(STAMP): $(PINS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements/$(DEVICE).txt
	$(BIN)/pip install --quiet -r requirements/lock.txt
	$(BIN)/pip install --quiet --no-deps -r requirements/torchrec.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.setup-*
	@touch $@
	@echo "set-up done: $(VENV) ($(DEVICE))"

# The suite runs in one process per core (at most 4), each with its share of torch's threads;
# TEST_WORKERS=0 runs it in this process alone.
TEST_WORKERS ?= auto
test: setup browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

# The report test renders pages in headless Chromium (Debian's package): root installs it,
# another user through passwordless sudo, or is told the one command to run.
APT_CHROMIUM := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then sh -c '$(APT_CHROMIUM)'; \
		elif sudo -n true 2>/dev/null; then sudo sh -c '$(APT_CHROMIUM)'; \
		else echo "make test: the report test needs headless Chromium; install it once: sudo apt-get install chromium" >&2; exit 2; fi; }

# The whole study: data, training, scoring, analysis notebooks (papermill) and the report.
# PROFILE=quick (CPU, default) or full (GPU-sized); WEIGHTS=path.yaml re-scores without retraining;
# ARGS="-p steps 600" overrides notebook parameters. The report: _build/html/index.html.
PROFILE ?= quick
WEIGHTS ?=
ARGS ?=
study: setup
	$(BIN)/studylib study --profile $(PROFILE) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(ARGS)

# JupyterLab on notebooks/ with the project's kernel.
lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean-data:
	rm -rf data/quick data/full runs/ _build/
