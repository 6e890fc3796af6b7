# The two set-up commands of README.md. Each creates the virtual environment it needs
# from the project's own pinned files, so a fresh machine needs nothing installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: demo test bench clean-venv

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,notebooks,bench]"
	touch $@

## The main job: the keras-tx demo (see README).
demo: $(VENV)/.installed
	$(VENV)/bin/keras-tx demo

## The test suite (what .ci/run runs).
test: $(VENV)/.installed
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=15 tests

## Side-by-side benchmarks; results go to benchmarks/RESULTS.md by hand, with the command.
bench: $(VENV)/.installed
	$(PY) benchmarks/layers.py

clean-venv:
	rm -rf $(VENV)
