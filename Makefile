# Butterfly: one venv for the whole repo, every package installed editable.
# `make run` starts the local fleet, `make test` is the one test command (CI calls it).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PACKAGES := libs/butterfly_common services/core
DEV_TOOLS := "pytest>=8" "ruff>=0.6" "requests>=2.31" "honcho>=2.0"
STAMP  := $(VENV)/.installed

.PHONY: install system-deps run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install when a package's metadata changes (new dependency, new entry point).
$(STAMP): $(BIN)/python $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	$(BIN)/pip install --quiet $(DEV_TOOLS) $(foreach p,$(PACKAGES),-e $(p))
	touch $(STAMP)

install: $(STAMP)

system-deps:
	scripts/ensure-system-deps

run: install
	$(BIN)/python scripts/fleet.py

lint: install
	$(BIN)/ruff check .

test: system-deps install lint
	$(BIN)/pytest -q

bench: system-deps install
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/http_overhead.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
