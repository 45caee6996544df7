# weft/Makefile v1 — the two set-up commands: `make run` (build, then the demo) and `make test`.
# A thin layer over CMake: everything real lives in CMakeLists.txt.

BUILD     ?= build
NP        ?= 2
JOBS      ?= $(shell nproc)
CMAKE_ARGS ?=
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
MPIRUN    ?= mpirun --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root)
CORPUS    := inputs/corpus/moby-dick

# Containers often deny the ptrace rights Open MPI's shared-memory single copy needs; plain copies work anywhere.
export OMPI_MCA_btl_vader_single_copy_mechanism ?= none

.PHONY: all deps build test run bench clean tokenizer-reference

# transformers.js and the npm tokenizer packages the tokenizer tests compare with (never committed).
TOKREF    := test/reference/tokenizers

all: build

deps:
	@bash jobscripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build tokenizer-reference
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

tokenizer-reference: $(TOKREF)/node_modules/.package-lock.json

$(TOKREF)/node_modules/.package-lock.json: $(TOKREF)/package.json $(TOKREF)/package-lock.json | deps
	cd $(TOKREF) && npm ci --no-audit --no-fund

$(CORPUS).bin: $(CORPUS).jsonl | build
	$(BUILD)/weft preprocess --input $< --tokenizer bytes --output-prefix $(CORPUS) --append-eod

run: build $(CORPUS).bin
	$(MPIRUN) -np $(NP) $(BUILD)/weft train inputs/demo.ini
	@echo "metrics: runs/demo/metrics.jsonl"

bench: build
	$(BUILD)/bench/weft_bench_cpu

clean:
	rm -rf $(BUILD)
