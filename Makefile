# `make run`: set up and serve Hayon on http://127.0.0.1:8000 (SQLite).
# `make test`: set up what the tests need (Chromium included) and run the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test install install-dev chromium peers migrate check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

.env:
	$(PYTHON) scripts/init_env.py

migrate: install .env
	$(BIN)/python manage.py migrate --noinput

# The web server and a task worker (publishing) side by side. Ctrl-C stops both, and so does
# either one stopping; the worker finishes the post it is sending first. `set -m` gives each its
# own process group (a background job of a script would ignore Ctrl-C), so the trap reaches
# runserver's autoreload child too.
run: migrate
	@echo "Hayon on http://127.0.0.1:8000, with a task worker beside it. Ctrl-C stops both."
	@bash -c 'set -m; trap "exit 130" INT TERM; \
	  trap "for job in \$$(jobs -p); do kill -INT -- -\$$job 2>/dev/null; done; wait" EXIT; \
	  $(BIN)/python manage.py worker & \
	  $(BIN)/python manage.py runserver 127.0.0.1:8000 & \
	  wait -n'

# Debian's Chromium drives the browser tests; installed when missing and we are root.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: run 'sudo apt-get install chromium' (browser tests will be skipped)"; fi; }

# A real AT Protocol PDS for the Bluesky tests, from the npm registry (needs npm; ~90 s once).
PDS_DIR := .peers/pds
$(PDS_DIR)/.ready: tests/peers/pds/setup.sh tests/peers/pds/start-pds.mjs
	@command -v npm >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || true
	@if bash tests/peers/pds/setup.sh $(CURDIR)/$(PDS_DIR) > .peers/setup.log 2>&1; then touch $@; \
	  else echo "Could not install the local PDS (see .peers/setup.log): its tests will be skipped"; fi

# axe-core for the accessibility browser tests, pinned in tests/peers/axe/package.json.
AXE_DIR := .peers/axe
$(AXE_DIR)/.ready: tests/peers/axe/package.json
	@mkdir -p $(AXE_DIR) && cp tests/peers/axe/package.json $(AXE_DIR)/
	@if command -v npm >/dev/null 2>&1 && (cd $(AXE_DIR) && npm install -q --no-package-lock --no-audit --no-fund >/dev/null 2>&1); \
	  then touch $@; else echo "Could not install axe-core: the accessibility tests will be skipped"; fi

peers:
	@mkdir -p .peers
	@$(MAKE) --no-print-directory $(PDS_DIR)/.ready
	@$(MAKE) --no-print-directory $(AXE_DIR)/.ready

test: install-dev chromium peers
	DJANGO_ENV=test $(BIN)/python -m pytest $(PYTEST_ARGS)

check: install-dev
	DJANGO_ENV=test $(BIN)/python manage.py check
