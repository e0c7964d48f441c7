# The README's two commands: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Stamp file: .venv is (re)installed whenever a requirements file is newer than the last install.
STAMP := $(VENV)/.installed

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-slim.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# PaddleSlim (int8, tools/quantize.py): a second step, --no-deps (requirements-slim.txt says why)
	$(PY) -m pip install --quiet --no-deps -r requirements-slim.txt
	# This project, editable: scripts, tools and tests import it without editing sys.path.
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: setup
	$(PY) -m pytest tests -q

demo: setup
	$(PY) tools/demo.py

clean:
	rm -rf output
