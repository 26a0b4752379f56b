# The two commands of the README, plus what they are built from.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB ?= $(VENV)/demo.db

.PHONY: demo test lint docs install clean

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

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
