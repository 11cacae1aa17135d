# Butterfly: one venv for the whole repo, every package installed editable.
# `make run` starts the local fleet, `make test` is the one test command (CI calls it).
# `make` alone lists the targets: each is documented by its `## ...` comment.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PACKAGES := libs/butterfly_common $(sort $(wildcard services/*))
# Every third-party package, pinned with its hashes (scripts/lock-deps regenerates them
# from the pyproject.toml files and requirements/dev.in, which lists the dev tools).
LOCK   := requirements/dev.lock
STAMP  := $(VENV)/.installed
FLEET_ARGS ?=  # e.g. make run FLEET_ARGS="--port-offset 10000": a second fleet beside one

.DEFAULT_GOAL := help
.PHONY: help install frontend system-deps run test lint docs compose compose-check compose-env dist bench clean \
	settings-docs settings-docs-check

help: ## list the targets (this text)
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || PYTHON=$(PYTHON) scripts/ensure-system-deps run
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install when a package's metadata changes (new dependency, new entry point) or the
# lock does. Third-party packages come only from the lock, each checked against its
# sha256 (--require-hashes); our packages are installed editable without dependencies,
# and pip check fails when the lock misses one of theirs (run scripts/lock-deps).
$(STAMP): $(BIN)/python Makefile $(LOCK) $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps $(foreach p,$(PACKAGES),-e $(p))
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP) frontend ## create .venv with every package installed editable (+ canghai's front end)
	@echo "installed: use ./butterfly (or: source $(VENV)/bin/activate)"

# canghai's front-end packages (htmx, uPlot) come from npm, pinned by package-lock.json, and
# are copied into the package's static/vendor dir: the console loads nothing from a CDN.
CANGHAI_FE := services/canghai/frontend
CANGHAI_VENDOR := services/canghai/src/butterfly_canghai/static/vendor/.built
$(CANGHAI_VENDOR): $(CANGHAI_FE)/package-lock.json $(CANGHAI_FE)/build.mjs
	@command -v npm >/dev/null || { echo "npm is needed to build canghai's front end: run make system-deps"; exit 1; }
	cd $(CANGHAI_FE) && npm ci --ignore-scripts --no-audit --no-fund && node build.mjs
	touch $@

frontend: $(CANGHAI_VENDOR) ## copy canghai's npm packages (package-lock.json) into its static dir

system-deps: ## apt-install what the tests need (redis-server, nutcracker, wrk, ...)
	scripts/ensure-system-deps

# fleet.py installs redis-server itself (scripts/ensure-system-deps run) when it must start one.
# Its exit code 3 means "refused before starting anything": its one line says why, and make
# adds no "*** Error" line under it.
run: $(STAMP) frontend ## start the fleet locally (and a redis-server, .env with an admin token)
	@$(BIN)/python scripts/fleet.py $(FLEET_ARGS) || [ $$? -eq 3 ]

# mypy (mypy.ini): strict on the framework, checked on every service's package (the
# framework's ignores for strict-only errors are not "unused" there).
SRC_PATH := $(subst $(eval) ,:,$(foreach p,$(PACKAGES),$(p)/src))
SERVICE_PKGS := $(filter-out %.egg-info,$(wildcard services/*/src/butterfly_*))

lint: $(STAMP) ## ruff and mypy (strict on the framework, checked on the services)
	$(BIN)/ruff check .
	MYPYPATH=$(SRC_PATH) $(BIN)/mypy --strict libs/butterfly_common/src/butterfly_common
	MYPYPATH=$(SRC_PATH) $(BIN)/mypy --no-warn-unused-ignores $(SERVICE_PKGS)

# The documentation site (mkdocs.yml): docs/ -> site/, Material theme, nothing from a CDN.
# --strict: a broken page link or anchor, or a missing snippet (the changelog page renders
# CHANGELOG.md), fails the build. Never --quiet: it hides the warnings --strict counts.
docs: $(STAMP) ## build the documentation site into site/ (mkdocs build --strict)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	@echo "docs: open site/index.html"

# deploy/compose.yml (Twemproxy) and compose.cluster.yml (Redis Cluster) are generated from
# deploy/fleet.toml; CI fails on a stale one (tests/deploy validates them with docker-compose).
compose: $(STAMP) ## regenerate deploy/compose*.yml from deploy/fleet.toml
	$(BIN)/python scripts/gen_compose.py

compose-check: $(STAMP) ## fail when deploy/compose*.yml is stale
	$(BIN)/python scripts/gen_compose.py --check

settings-docs: $(STAMP) ## docs/configuration.md defaults (and missing rows) from the declared settings
	$(BIN)/python scripts/gen_settings_docs.py

settings-docs-check: $(STAMP) ## fail when docs/configuration.md disagrees with the declared settings
	$(BIN)/python scripts/gen_settings_docs.py --check

# Standard library only: works before `make install`, on a host that only runs compose.
compose-env: ## write deploy/.env with fresh secrets for docker compose (keeps existing ones)
	$(PYTHON) scripts/compose_env.py

test: system-deps $(STAMP) frontend lint compose-check docs ## install everything, lint, check compose and docs, run pytest (the 30 slowest tests listed last)
	$(BIN)/pytest -q --durations=30

# canghai's wheel carries its built front end (static/vendor), hence `frontend` first.
# DIST=<folder> builds elsewhere (tests/dist builds into a temporary folder).
DIST ?= dist
dist: $(STAMP) frontend ## build wheels and sdists of the framework and every service into dist/
	rm -rf $(DIST)
	for p in $(PACKAGES); do $(BIN)/python -m build --outdir $(DIST) $$p || exit 1; done

bench: system-deps $(STAMP) frontend ## run every side-by-side benchmark (tables + summary, JSON in var/bench/)
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run_all.py $(BENCHES)

clean: ## remove .venv, var/, site/ and caches (keeps .env)
	rm -rf $(VENV) var site .pytest_cache .ruff_cache .mypy_cache
