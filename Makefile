# Parley build. Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard proto/parley/v1/*.proto)
GEN_STAMP := parley/v1/.generated
# Fresh multi-MB buffers page-fault on every round; keeping them mapped doubles bulk throughput (docs/performance.md).
export MALLOC_MMAP_THRESHOLD_ := 33554432
export MALLOC_TRIM_THRESHOLD_ := 1073741824
export MALLOC_TOP_PAD_ := 67108864

.PHONY: help venv proto certs demo test test-fast bench soak clean

help:
	@echo "make demo   - set up everything, start nodes + coordinator on localhost, run every scenario, print results"
	@echo "make test   - set up everything and run the test suite"
	@echo "make bench  - benchmarks against MPyC (3 processes, gmpy2 + uvloop)"
	@echo "make soak   - fault, fuzz and load tests at a larger size, then an auction and a vote with 100,000 clients each"
	@echo "make certs  - create the demo deployment CA and one certificate per organization"
	@echo "make proto  - generate Python code from proto/"

DEPS_STAMP := $(VENV)/.deps

# 1. the venv with pinned dependencies; 2. code generated from proto/; 3. the project itself
#    (editable, with console scripts parley-node and parley-coordinator), once parley/ exists.
$(DEPS_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,ml]'
	touch $(DEPS_STAMP)

$(GEN_STAMP): $(PROTOS) $(DEPS_STAMP)
	mkdir -p parley/v1
	touch parley/__init__.py parley/v1/__init__.py
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	touch $(GEN_STAMP)

$(STAMP): $(GEN_STAMP)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

proto: $(GEN_STAMP)

certs: $(STAMP)
	$(PY) -m mpcnode.certs --out deploy/certs --loopback --orgs-from scenarios operator

demo: certs
	$(PY) -m coordinator demo --scenarios scenarios --workdir .demo

test: certs
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: certs
	$(PY) -m bench

soak: certs
	$(PY) -m tests.soak
	$(PY) -m tests.soak_clients

clean:
	rm -rf $(VENV) parley deploy/certs .demo
