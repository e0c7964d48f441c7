# The README's two commands: `make demo` and `make test`. Both set up their venv themselves.
# STACK=paddle3 or STACK=paddle2 picks a pinned stack (requirements-STACK.txt) in its own
# .venv-STACK; without STACK, .venv holds the default stack (README "Stacks" says which, why).
PYTHON ?= python3
DEFAULT_STACK := paddle3
ifeq ($(STACK),)
VENV := .venv
REQUIREMENTS := requirements-$(DEFAULT_STACK).txt
else
VENV := .venv-$(STACK)
REQUIREMENTS := requirements-$(STACK).txt
endif
ifeq ($(wildcard $(REQUIREMENTS)),)
$(error STACK=$(STACK): no $(REQUIREMENTS); use STACK=paddle3 or STACK=paddle2)
endif
PY := $(VENV)/bin/python
# Stamp file: the venv is (re)installed whenever a requirements file is newer than the last install.
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo clean

setup: $(STAMP)

$(STAMP): $(REQUIREMENTS) requirements-slim.txt requirements-tune.txt requirements-dev.txt pyproject.toml
	# A venv left half-made (a full disk, say) has no working pip: start it again.
	$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); } || { rm -rf $(VENV); exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
	# PaddleSlim (int8, tools/quantize.py): a second step, --no-deps (requirements-slim.txt says why)
	$(PY) -m pip install --quiet --no-deps -r requirements-slim.txt
	# Optuna: tools/tune.py's optional dependency, installed here so its tests run.
	$(PY) -m pip install --quiet -r requirements-tune.txt
	# ruff and import-linter: `make lint`.
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# This project, editable: scripts, tools and tests import it without editing sys.path.
	$(PY) -m pip install --quiet --no-deps -e .
	# Before paddle loads in any process: one zlib, a known warning filtered (startup.py says why).
	$(PY) -c 'from paddleseg_ext.startup import install_startup_hook as i; i()'
	touch $(STAMP)

test: setup
	$(PY) -m pytest tests -q

# The code's style (ruff) and its layers (import-linter contracts in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

demo: setup
	$(PY) tools/demo.py

clean:
	rm -rf output
