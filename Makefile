# Labspace: `make up` runs it, `make test` checks it. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install up test check lint format clean docs images images-for-tests

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Labspace needs Python 3.11 or newer (set PYTHON=python3.12, say)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# the runtime (editable) with every backend, PostgreSQL's driver and the bundled
# apps, so whatever labspace.yaml names runs from this one venv (see
# docs/explanation/choices.md); reinstalled when pyproject.toml or this file
# changes. An editable install skips data files, so the workspace server
# extension is turned on by hand
EXTRAS := docker,kubernetes,postgres,apps
JUPYTER_CONF := $(VENV)/etc/jupyter/jupyter_server_config.d
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install -e '.[$(EXTRAS)]'
	install -D -m 644 extensions/jupyter-config/labspace-apps.json $(JUPYTER_CONF)/labspace-apps.json
	@touch $@
$(VENV)/.installed-test: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install -e '.[test]'
	install -D -m 644 extensions/jupyter-config/labspace-apps.json $(JUPYTER_CONF)/labspace-apps.json
	@touch $@ $(VENV)/.installed

# configurable-http-proxy (and, for the tests, the OIDC provider)
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: Labspace's proxy runs on Node.js." \
	  "Install Node.js 20+ and npm (Debian/Ubuntu: sudo apt install nodejs npm), then run make up again."; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# what `make up` installs (the venv with every extra, the workspace server
# extension's config, the proxy), without starting anything: a server that runs
# Labspace as a service (docs/how-to/production.md)
install: $(VENV)/.installed node_modules/.installed

up: install
	$(BIN)/labspace up

test: $(VENV)/.installed-test
	tests/provision.sh
	$(MAKE) node_modules/.installed
	$(MAKE) images-for-tests
	$(BIN)/python -m pytest

# the fast tier for the inner loop (under 3 minutes): unit and in-process service
# tests but the slow ones, on both cores (pytest-xdist), then smoke e2e tests (a
# real hub, a spawn through the proxy, bad settings) in a run of their own:
# named beside --ignore=tests/e2e, pytest would drop them
SMOKE := tests/e2e/test_hub.py::test_spawn_reaches_workspace_through_proxy \
	tests/e2e/test_hub.py::test_bad_settings_stop_labspace_up
check: $(VENV)/.installed-test
	$(MAKE) node_modules/.installed
	$(BIN)/python -m pytest -q -n 2 -m "not slow" --ignore=tests/e2e --ignore=tests/security tests
	$(BIN)/python -m pytest -q $(SMOKE)

# the base (debootstrap, when absent), workspace and hub images; each is rebuilt
# only when its inputs changed (see images/build.sh)
images: $(VENV)/.installed
	PYTHON=$(BIN)/python images/build.sh all

# the tests' images when a Docker daemon answers; without one (or if the build
# fails outside CI) the Docker tests skip, and under CI=true they fail
images-for-tests: $(VENV)/.installed-test
	@if ! docker info >/dev/null 2>&1; then \
	  echo "images: no Docker daemon; the Docker tests will be skipped"; \
	elif ! PYTHON=$(BIN)/python images/build.sh all; then \
	  case "$$CI" in true|1|yes) exit 1;; esac; \
	  echo "images: build failed; the Docker tests use older images or skip"; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: $(VENV)/.installed
	$(BIN)/labspace config reference > docs/reference/settings.md

# the chart's values.schema.json, from the settings schema (one source; the
# tests fail when the committed file drifts from it)
.PHONY: helm-schema
helm-schema: $(VENV)/.installed
	$(BIN)/python -m labspace.helm_schema

# the chart's copy of dashboards/ (helm reads only files inside the chart;
# tests/test_metrics.py fails when the copy drifts)
.PHONY: helm-dashboards
helm-dashboards:
	rm -f helm/labspace/dashboards/*.json
	cp dashboards/*.json helm/labspace/dashboards/

clean:
	rm -rf $(VENV) node_modules build dist *.egg-info .pytest_cache .ruff_cache tests/artifacts
	find . -name __pycache__ -prune -exec rm -rf {} +
