#!/usr/bin/env bash
# scripts/test-sanitize.sh — the CPU suite (label cpu), the MPI tests (label
# mpi) and a short run of every fuzz harness (label fuzz, tests/fuzz/) under
# AddressSanitizer + UndefinedBehaviorSanitizer: clang, CPU only, in
# build-asan. Open MPI's own allocations are suppressed
# (tests/mpi/lsan-openmpi.supp), nothing else. Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
FFNLAB_DEBS+=(clang libclang-rt-dev libomp-dev)  # libFuzzer and the sanitizer runtimes; OpenMP for clang
ffnlab_install_deps
CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFFNLAB_SANITIZE=ON -DFFNLAB_CUDA=OFF \
  -DFFNLAB_NCCL=OFF >/dev/null
cmake --build build-asan -j"$(nproc)"
# A report is an error (-fno-sanitize-recover); a leak fails the process at exit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir build-asan --output-on-failure -j2 -L 'cpu|mpi|fuzz' "$@"
