# Two entry points on a fresh machine:
#   make demo   run a real three-task pipeline through bps submit on the local PanDA service
#   make test   run the test suite (what CI runs)
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PANDA_BEHIND_REAL_LB := 1

.PHONY: setup demo test test-realstack lint bench clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/test.sh

test-realstack: setup
	@$(PY) -m pytest -p no:cacheprovider -m realstack tests/realstack

lint: setup
	@$(VENV)/bin/ruff format --check python tests bench
	@$(VENV)/bin/ruff check python tests bench
	@$(VENV)/bin/mypy

bench: setup
	@$(PY) bench/bench_prepare_submit.py --jobs 10000 100000

clean:
	rm -rf build .pytest_cache
