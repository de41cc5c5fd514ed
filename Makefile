# Two entry points: `make run` (install + the default experiment) and `make test` (install + the test suite).
# Both are idempotent: the virtual environment is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: here it is the CPU wheel on local disk; elsewhere the same version from the registry.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/hyperstition run

# The report test drives a real headless Chromium (Debian's chromium + chromium-driver); installed when we can.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not installed and not root: the browser test will be skipped"; fi; \
	fi

# Lint and format check first (seconds), then the suite on one pytest-xdist worker per core, each file's tests on one
# worker, files in the order tests/conftest.py gives them (those with a `slow` test first, so the long ones do not
# finish last); one torch thread per worker, shared session artefacts. `pytest -p no:xdist` runs it serially.
test: $(STAMP) browser
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/pytest -n auto --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) runs
