# The two commands of the README, plus what they are built from.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB ?= $(VENV)/demo.db

.PHONY: demo test test-slow test-all lint docs install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

$(VENV)/.installed-lint: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[lint]'
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[docs]'
	touch $@

install: $(VENV)/.installed

# Audits the bundled example log with the embedded GeoIP database into a SQLite file.
# region-auditor exits 1 when it finds violations, which the example has on purpose.
demo: $(VENV)/.installed
	$(BIN)/region-auditor logs examples/squid-access.log examples/vercel-drain.ndjson --config examples/auditor.toml --db $(DEMO_DB); \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 1 ]

# The suite in parallel processes (pytest-xdist), twice as many as the two cores of the
# project's machines: many tests wait on subprocesses, PostgreSQL or a poll interval. `make test`
# leaves out the tests marked `slow` (seconds each: large generated inputs, a browser, many real
# subprocesses; a third of the suite's CPU time in 17 tests); `make test-slow` runs those (CI runs
# both), `make test-all` every test, the slow ones first. PYTEST_ARGS adds to both (`make test PYTEST_ARGS='-k
# follow'`); PYTEST_WORKERS=0 runs the tests in one process.
PYTEST_WORKERS ?= 4

# Byte-code caches on for the tests, whatever the shell says (PYTHONDONTWRITEBYTECODE): without
# them each of the suite's few hundred `python -m auditor` subprocesses compiles the package
# again, and each worker rewrites the test modules' asserts again (half a minute of CPU in all).
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(PYTEST_WORKERS)

test: $(VENV)/.installed-test
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

test-slow: $(VENV)/.installed-test
	$(PYTEST) -m slow $(PYTEST_ARGS)

test-all: $(VENV)/.installed-test
	$(PYTEST) $(PYTEST_ARGS)

# ruff (lint, then the format check) and mypy, configured in pyproject.toml; .pre-commit-config.yaml
# runs the same on the files of a commit.
lint: $(VENV)/.installed-lint
	$(BIN)/ruff check auditor geoip rules tests
	$(BIN)/ruff format --check auditor geoip rules tests
	$(BIN)/mypy

# The documentation site (docs/, mkdocs.yml); --strict turns every warning into a failure.
docs: $(VENV)/.installed-docs
	$(BIN)/mkdocs build --strict --site-dir $(VENV)/site

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache site
