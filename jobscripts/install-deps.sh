#!/usr/bin/env bash
# weft/jobscripts/install-deps.sh v1 — installs the system packages weft builds against (Debian 12, Ubuntu 24.04).
# Run as root. Without root it prints the apt line to run and exits 1.
set -euo pipefail
PKGS=(cmake make g++ pkg-config openmpi-bin libopenmpi-dev libboost-program-options-dev libhdf5-dev zlib1g-dev
      nlohmann-json3-dev libpcre2-dev libgtest-dev libgmock-dev libbenchmark-dev ninja-build)
# clang and its compiler-rt build the libFuzzer targets (make fuzz).
command -v clang++ >/dev/null 2>&1 && [ -n "$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
  2>/dev/null)" ] || PKGS+=(clang libclang-rt-dev)
# node and npm run the transformers.js reference in the tokenizer tests; any install of them will do.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
line="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "weft: missing packages: ${missing[*]}" >&2
  echo "weft: run as root:  $line" >&2
  exit 1
fi
echo "weft: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
