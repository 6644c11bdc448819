# Graft: `make run` installs and starts it on the embedded default; `make test` installs the test tools and runs the suite.
PYTHON ?= python3
VENV   := .venv
PIP    := $(VENV)/bin/pip
PY     := $(VENV)/bin/python

.PHONY: install run test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

install: $(VENV)/.installed ## create .venv and install Graft with its `graft` CLI

run: install ## migrate and start the API + one worker (embedded SQLite + broker unless GRAFT_DATABASE_URL/GRAFT_BROKER_URL are set)
	$(VENV)/bin/graft up

$(VENV)/.test-installed: $(VENV)/.installed requirements/test-assets.txt
	$(PIP) install --quiet -e '.[test]'
	$(PIP) install --quiet --no-deps -r requirements/test-assets.txt
	touch $@

test: $(VENV)/.test-installed ## run the test suite against real PostgreSQL, Redis and Celery workers
	$(PY) -m pytest

bench: $(VENV)/.test-installed ## run every benchmark under bench/ (each prints one JSON line last)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache
