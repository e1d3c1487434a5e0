# One command to run, one to test. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/sdr_ops
export TEST_DATABASE_URL

.PHONY: run test lint format check-migrations install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamp files re-run pip only when the requirements change.
$(VENV)/.base-installed: requirements/base.txt | $(PY)
	$(PIP) install --quiet -r requirements/base.txt
	touch $@

$(VENV)/.dev-installed: requirements/base.txt requirements/dev.txt | $(PY)
	$(PIP) install --quiet -r requirements/dev.txt
	touch $@ $(VENV)/.base-installed

install: $(VENV)/.base-installed
install-dev: $(VENV)/.dev-installed

run: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py seed_demo
	bin/run-dev

test: install-dev
	@$(PY) bin/check-test-db
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# An in-memory SQLite database: the check compares models with migration files
# and needs no server.
check-migrations: install-dev
	DJANGO_SETTINGS_MODULE=config.settings.local DATABASE_URL=sqlite://:memory: \
		$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles .pytest_cache .ruff_cache
