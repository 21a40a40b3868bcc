# The two commands: `make run` starts everything, `make test` runs the whole suite.
# The steps live in agentsite/launcher.py; make only builds the virtualenv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format bench soak

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m agentsite.launcher run

test: $(VENV)/.dev
	$(PY) -m agentsite.launcher test $(ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.dev
	$(PY) -m bench

# Not part of `make test`: 30 minutes of load with worker kills (bench/soak.py).
soak: $(VENV)/.dev
	$(PY) -m bench.soak $(ARGS)
