# One command to run, one to test. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# bin/run-dev starts web and worker with $PY. Exported, not prefixed to the
# recipe: a prefix makes make run it through sh, which dies of the Ctrl-C that
# run-dev handles, and make then reports "Interrupt".
export PY
PIP := $(VENV)/bin/pip
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/sdr_ops
export TEST_DATABASE_URL

.PHONY: run test lint format check-migrations messages bench reliability install install-dev clean

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

# The Portuguese catalog, compiled from locale/pt_BR/LC_MESSAGES/django.po
# (msgfmt: Debian's gettext package). Hidden directories (the venv) hold
# Django's own, already compiled catalogs: not ours to rebuild.
MO := locale/pt_BR/LC_MESSAGES/django.mo
$(MO): locale/pt_BR/LC_MESSAGES/django.po $(VENV)/.base-installed
	$(PY) manage.py compilemessages --ignore='.*' --ignore='$(notdir $(VENV))' --verbosity 0
	touch $@

install: $(VENV)/.base-installed $(MO)
install-dev: $(VENV)/.dev-installed $(MO)

# After changing user-facing text: collect the msgids from the code and
# templates into the catalog, translate the new entries (no empty or fuzzy
# msgstr may stay: tests/core/test_translations.py), then compile.
messages: install-dev
	$(PY) manage.py makemessages --locale pt_BR --no-obsolete --add-location file \
		--ignore='.*' --ignore='$(notdir $(VENV))' --ignore='tests/*' --ignore='bench/*' \
		--ignore='staticfiles/*'
	$(PY) manage.py compilemessages --ignore='.*' --ignore='$(notdir $(VENV))' --verbosity 0

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

# The bad-day scenarios at full size (tests/reliability): 2,000 deliveries,
# 2,000 sends under five SIGKILLs, a database restart. `make test` runs them
# at a bounded size. The table of the run goes to reliability-report.json.
reliability: install-dev
	@$(PY) bin/check-test-db
	RELIABILITY_FULL=1 RELIABILITY_REPORT=reliability-report.json \
		$(PY) -m pytest tests/reliability -m reliability -p no:cacheprovider $(PYTEST_ARGS)

# Measurements, not tests: each script prints its figures (bench/README.md).
# Needs wrk (apt-get install wrk), PostgreSQL and Redis on 127.0.0.1.
bench: install-dev
	$(PY) bench/intake.py
	DATABASE_URL=$${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/sdr_ops_bench_campaigns} \
		$(PY) bench/campaign_enqueue.py --sizes 1000 100000 --full
	$(PY) bench/reply_latency.py --brokers redis orm --flood --json reply-latency.json
	$(PY) bench/turn_cpu.py --leads 50 --rounds 3

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles .pytest_cache .ruff_cache
