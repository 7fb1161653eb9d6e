# The two commands of the README: `make demo` and `make test`. Both install what they need first.
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: bootstrap demo test test-only lint crds bench clean

bootstrap:
	@bash .ci/bootstrap.sh

demo: bootstrap
	rke2fleet demo

test: bootstrap test-only

test-only:
	pytest -q -p no:cacheprovider -n 3 --dist load

lint: bootstrap
	ruff check operator sandbox tests bench
	mypy --strict

crds: bootstrap
	rke2fleet crds --output crds/

bench: bootstrap
	pip install -q -e '.[bench]' -e ./sandbox && python bench/fleet_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info operator/*.egg-info sandbox/build sandbox/*.egg-info
