# Two commands do everything on a fresh machine with Python 3.10+:
#   make run    - create .venv, install (CPU PyTorch pinned), run the pipeline on the default `tiny` preset
#   make test   - same set-up, then the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# Elsewhere, to be sure of a CPU build: make run TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_INDEX ?=
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run test setup lint bench clean

# what `make run` needs: the package, CPU PyTorch and bubblewrap (generated code runs only inside it)
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)" $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e .
	@# generated code runs only inside bubblewrap (data/sandbox.py refuses to run it without): the system package
	-command -v bwrap > /dev/null || (command -v apt-get > /dev/null && [ "$$(id -u)" = 0 ] \
	  && (apt-get install -y -qq --no-install-recommends bubblewrap > /dev/null 2>&1 \
	  || (apt-get update -qq > /dev/null 2>&1 && apt-get install -y -qq --no-install-recommends bubblewrap > /dev/null 2>&1)))
	touch $(RUN_STAMP)

# the tests' tools on top (measured: ~30 s of a fresh set-up that `make run` does not wait for)
$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e ".[dev]"
	@# the dashboard's browser test needs a Chromium: Playwright's own, else the system package (skips without)
	-$(PY) -m playwright install chromium > /dev/null 2>&1 || command -v chromium > /dev/null \
	  || (command -v apt-get > /dev/null && [ "$$(id -u)" = 0 ] && apt-get install -y -qq --no-install-recommends chromium > /dev/null 2>&1)
	touch $(STAMP)

setup: $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/agent-forge run --preset tiny

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --cov --cov-report=term --timeout=900

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	for b in benchmarks/*.py; do case $$b in *_common.py) ;; *) $(PY) $$b --quick || exit 1;; esac; done

clean:
	rm -rf $(VENV) .pytest_cache .coverage .coverage.* htmlcov
