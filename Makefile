# Butterfly: one venv for the whole repo, every package installed editable.
# `make run` starts the local fleet, `make test` is the one test command (CI calls it).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PACKAGES := libs/butterfly_common $(sort $(wildcard services/*))
DEV_TOOLS := "pytest>=8" "ruff>=0.6" "requests>=2.31" "honcho>=2.0" "pyyaml>=6" \
             "mypy>=1.10" "types-requests" "types-PyMySQL"
STAMP  := $(VENV)/.installed

.PHONY: install system-deps run test lint compose compose-check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install when a package's metadata changes (new dependency, new entry point) or the
# dev tools do (this Makefile).
$(STAMP): $(BIN)/python Makefile $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	$(BIN)/pip install --quiet $(DEV_TOOLS) $(foreach p,$(PACKAGES),-e $(p))
	touch $(STAMP)

install: $(STAMP)

system-deps:
	scripts/ensure-system-deps

run: install
	$(BIN)/python scripts/fleet.py

# mypy (mypy.ini): strict on the framework, checked on every service's package.
SRC_PATH := $(subst $(eval) ,:,$(foreach p,$(PACKAGES),$(p)/src))
SERVICE_PKGS := $(filter-out %.egg-info,$(wildcard services/*/src/butterfly_*))

lint: install
	$(BIN)/ruff check .
	MYPYPATH=$(SRC_PATH) $(BIN)/mypy --strict libs/butterfly_common/src/butterfly_common
	MYPYPATH=$(SRC_PATH) $(BIN)/mypy $(SERVICE_PKGS)

# deploy/compose.yml is generated from deploy/fleet.toml; CI fails on a stale or invalid one.
compose: install
	$(BIN)/python scripts/gen_compose.py

compose-check: install
	$(BIN)/python scripts/gen_compose.py --check
	docker-compose -f deploy/compose.yml config -q

test: system-deps install lint compose-check
	$(BIN)/pytest -q

bench: system-deps install
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/http_overhead.py
	$(BIN)/python bench/mq_throughput.py
	$(BIN)/python bench/scheduler_accuracy.py
	$(BIN)/python bench/wuxing.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
