# `make demo` and `make test` each bootstrap .venv on a fresh machine, then run.
# torch is installed first, pinned to the local CPU build: installing anything that depends on
# torch before it would pull a multi-GB CUDA build from the registry.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.slimkit-installed
TORCH  := torch==2.13.0
PIP    := $(BIN)/python -m pip install -q --disable-pip-version-check --no-compile

.PHONY: venv browser demo test test-fast test-bench bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e '.[dev]'
	# 20 labelled ImageNet samples the EfficientNet test scores; read as files, foolbox's own
	# dependencies (eagerpy, ...) are not needed
	$(PIP) --no-deps foolbox==3.3.4
	# pip compiles bytecode file by file on one core; compileall uses every core. One of torch's
	# test helpers is written for Python 3.12 and fails to compile, as it does under pip.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/slimkit demo

# The report test renders report.html in headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the report test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Tests use one torch thread each (tests/conftest.py), so one worker per core fills the machine;
# an idle worker steals from the other's queue, so both finish together.
# The venv and the browser are set up side by side: both mostly wait on downloads and disks.
test:
	@$(MAKE) --no-print-directory -j2 venv browser
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m "not bench"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m "not slow and not bench"

# The benchmarks' plumbing at toy scale (--quick): 5 to 8 minutes on 2 cores.
test-bench: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m bench

bench: $(STAMP)
	$(BIN)/python benchmarks/demo.py --json bench-results/demo.json
	$(BIN)/python benchmarks/training.py --json bench-results/training.json

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache src/*.egg-info
