# weft/Makefile v2 — the two set-up commands: `make run` (build, then the demo) and `make test`.
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

.PHONY: all deps build test run bench clean references fuzz sanitize

# The npm peers the tests compare with (never committed): transformers.js and the tokenizer packages; tfrecord and
# protobufjs, which read the TensorBoard event files.
TOKREF    := test/reference/tokenizers
READREF   := test/reference/readers

all: build

deps:
	@bash jobscripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build references
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

references: $(TOKREF)/node_modules/.package-lock.json $(READREF)/node_modules/.package-lock.json

%/node_modules/.package-lock.json: %/package.json %/package-lock.json | deps
	cd $* && npm ci --no-audit --no-fund --omit=optional --ignore-scripts

$(CORPUS).bin: $(CORPUS).jsonl | build
	$(BUILD)/weft preprocess --input $< --tokenizer bytes --output-prefix $(CORPUS) --append-eod

run: build $(CORPUS).bin
	$(MPIRUN) -np $(NP) $(BUILD)/weft train inputs/demo.ini
	@echo "metrics: runs/demo/metrics.jsonl"

bench: build
	$(BUILD)/bench/weft_bench_cpu

# The parsers of untrusted input under libFuzzer (clang, with ASan and UBSan), each for FUZZ_SECONDS from its
# committed corpus (new inputs go to a scratch copy); a crash stops with the input that caused it.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := deck safetensors idx tokenizer record metadata jinja
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_CUDA=OFF \
	  -DWEFT_FUZZ=ON -DWEFT_TESTS=OFF -DWEFT_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@for t in $(FUZZ_TARGETS); do \
	  rm -rf $(FUZZ_BUILD)/corpus-$$t && cp -r test/fuzz/corpus/$$t $(FUZZ_BUILD)/corpus-$$t && \
	  $(FUZZ_BUILD)/test/fuzz/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 \
	    -artifact_prefix=$(FUZZ_BUILD)/$$t- $(FUZZ_BUILD)/corpus-$$t 2>$(FUZZ_BUILD)/fuzz-$$t.log || \
	    { tail -40 $(FUZZ_BUILD)/fuzz-$$t.log; exit 1; }; \
	  echo "fuzz $$t: $$(grep -E '^#[0-9]+.*DONE' $(FUZZ_BUILD)/fuzz-$$t.log | tail -1)"; \
	done

# The unit and multi-rank tests built with AddressSanitizer and UndefinedBehaviorSanitizer (CPU backend).
SAN_BUILD ?= build-sanitize
sanitize: deps references
	cmake -S . -B $(SAN_BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_CUDA=OFF -DWEFT_SANITIZE=ON \
	  -DWEFT_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(SAN_BUILD) -j $(JOBS) --target weft_unit_tests weft_mpi_tests weft
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -R '^(unit|mpi_np[124])$$'

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) $(SAN_BUILD)
