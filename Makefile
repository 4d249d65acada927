# labkit: `make lab` runs the embedded lab with JupyterLab; `make test` runs every test suite.
# Both set themselves up (venv, packages, reference tools) and are safe to run again.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Two stamps: `make lab` installs only what the workshop needs (labkit and the lab extra:
# JupyterLab, ipykernel, ipywidgets, matplotlib, tqdm); the test targets add the test extra
# (pytest, Playwright, hypothesis, ruff, mypy). Installing the test set stamps the lab set too.
LAB_STAMP := $(VENV)/.lab-stamp
STAMP     := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# compat: a plain path entry, not setuptools' import-hook finder, which costs ~11 ms of every
# `labkit` process's start-up (python -X importtime; bench/README.md)
PIP_INSTALL := $(PY) -m pip install --quiet --config-settings editable_mode=compat -e

.PHONY: lab lint fuzz test test-setup test-notebooks test-browser notebooks solutions bench tools system-deps venv clean

venv: $(STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labkit needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(LAB_STAMP): pyproject.toml | $(PY)
	$(PIP_INSTALL) '.[lab]'
	@touch $(LAB_STAMP)

$(STAMP): pyproject.toml | $(PY)
	$(PIP_INSTALL) '.[test,lab]'
	@touch $(STAMP) $(LAB_STAMP)

# Reference tools (cosign, crane, the Kyverno CLI, policy-controller's tester) and the native lab's
# control plane and engines are built from the Go module proxy into a cache outside the repo;
# without Go this prints why and the tests that need them skip.
tools:
	@tools/reference-tools.sh

# Debian packages the tests use as independent peers (distribution's registry).
system-deps:
	@tools/system-deps.sh

# ruff and mypy --strict on labkit/ (configured in pyproject.toml): any finding fails `make test`.
lint: $(STAMP)
	@$(VENV)/bin/ruff check labkit
	@$(VENV)/bin/mypy

# The set-up steps are independent and mostly wait on the network or on one core (pip, apt, Go's
# downloads and links), so `make test` runs them side by side.
test-setup: $(STAMP) lint tools system-deps

# The suite runs in a network namespace with only loopback (tools/netns-run): the native lab's
# engines, and everything else, can reach nothing beyond this machine.
test:
	@$(MAKE) --no-print-directory -j4 test-setup
	@tools/netns-run $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

# The fuzzers at length: 10^5 inputs per target, random seeds (make test runs a few hundred, fixed).
FUZZ_EXAMPLES ?= 100000
fuzz: $(STAMP)
	@LABKIT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/fuzz -p no:cacheprovider --timeout 0 $(PYTEST_ARGS)

# Only the notebook regression: every notebook re-run on the embedded lab, outputs diffed.
test-notebooks: $(STAMP)
	@$(PY) -m pytest tests/notebooks $(PYTEST_ARGS)

# Only the browser test: JupyterLab in Debian's Chromium, driven by Playwright (notebook 05).
test-browser: $(STAMP) system-deps
	@$(PY) -m pytest tests/browser $(PYTEST_ARGS)

# Authors: rebuild notebooks/*.ipynb from notebooks/src/*.py, execute them, store outputs.
# NB=03,04 rebuilds only those (the rest still run: later notebooks need their state).
NB ?= 1
notebooks: $(STAMP)
	@for src in notebooks/src/*.py; do n=$$(basename $$src .py); \
	  case ",$(NB)," in *",1,"*|*",$${n%%-*},"*) $(PY) tools/notebook_from_py.py $$src notebooks/$$n.ipynb;; esac; done
	@LABKIT_NOTEBOOKS_REGEN=$(NB) $(PY) -m pytest tests/notebooks -q $(PYTEST_ARGS)

# Trainers: the notebooks with the exercises' solutions, in solutions/ (outside JupyterLab's root,
# so learners never see them). Built from the drafts; run them on a lab like the learners' own.
solutions: $(LAB_STAMP)
	@mkdir -p solutions
	@for src in notebooks/src/*.py; do $(PY) tools/notebook_from_py.py --solutions $$src solutions/$$(basename $$src .py).ipynb; done
	@echo "solutions: $$(ls solutions/*.ipynb | wc -l) notebooks with their solutions in solutions/ (open with: .venv/bin/jupyter lab solutions)"

# Benchmarks beside the reference tools (bench/README.md); writes bench/results.json.
bench: $(STAMP) tools system-deps
	@$(PY) bench/run_all.py

lab: $(LAB_STAMP)
	@tools/lab.sh

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
