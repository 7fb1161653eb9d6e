# Conveniences once make is there. The README's two commands are `./dev demo` and `./dev test` (a POSIX
# script that needs nothing installed beforehand, make included); `make demo` and `make test` call it.
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: bootstrap demo test test-only lint crds bench lock floors clean

bootstrap:
	@sh ./dev bootstrap

demo:
	@sh ./dev demo

test:
	@sh ./dev test

test-only:
	pytest -q -p no:cacheprovider -n 3 --dist load

lint: bootstrap
	ruff check operator sandbox tests bench
	mypy --strict

crds: bootstrap
	rke2fleet crds --output crds/

bench: bootstrap
	pip install -q -e '.[bench]' -e ./sandbox && python bench/fleet_bench.py $(BENCH_ARGS)

# requirements.lock and requirements-build.lock (the image's pinned, hashed dependencies) from pyproject.toml;
# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest release.
lock:
	bash .ci/lock.sh $(LOCK_ARGS)

# The oldest versions pyproject.toml allows, in a fresh venv, against the quick tests (as CI runs it).
floors:
	bash .ci/floors.sh

clean:
	rm -rf $(VENV) build dist *.egg-info operator/*.egg-info sandbox/build sandbox/*.egg-info
