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

.PHONY: all deps build test run bench clean

all: build

deps:
	@bash jobscripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(CORPUS).bin: $(CORPUS).jsonl | build
	$(BUILD)/weft preprocess --input $< --tokenizer bytes --output-prefix $(CORPUS) --append-eod

run: build $(CORPUS).bin
	$(MPIRUN) -np $(NP) $(BUILD)/weft train inputs/demo.ini
	@echo "metrics: runs/demo/metrics.jsonl"

bench: build
	$(BUILD)/bench/weft_bench_cpu

clean:
	rm -rf $(BUILD)
