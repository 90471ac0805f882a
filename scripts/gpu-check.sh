#!/usr/bin/env bash
# scripts/gpu-check.sh — build ffnlab with the CUDA backend on a GPU machine
# that has no package registry, run the GPU tests and the benchmarks, and
# leave a summary. Run from the repository root:
#
#     scripts/gpu-check.sh [CARRY]         CARRY: .gpu-carry (scripts/gpu-prepare.sh)
#
# Steps (each timed; the log says which one is running):
#   1. what the machine is: GPU (nvidia-smi), driver, nvcc, cmake, gcc, OS
#   2. unpack CARRY/debs/*.deb into a private prefix (dpkg-deb -x, or ar+tar)
#      and point their CMake and pkg-config files at it (they say /usr)
#   3. configure Release with FFNLAB_CUDA=ON for this GPU's architecture,
#      CMAKE_PREFIX_PATH / PKG_CONFIG_PATH at the prefix; print where CMake
#      found each dependency
#   4. build with all cores
#   5. ctest -L cuda (the GPU suites)              → $OUT/ctest-cuda.log
#   6. ffnlab bench --device cuda: the reference shape, GPT-2 small (TF32
#      and BF16, each with --profile: ms per phase of the step; again with
#      the LM head unpadded, FFNLAB_PAD_VOCAB=off), GPT-2 small with the
#      cuBLAS T x T attention instead of the flash kernels; each FFN plugin
#      alone against dense (--ffn-only) and MoE 8 experts top-1 at d=512
#      over 64k tokens, each with --profile (ms per host op, and the
#      plugin's own kernels); PyTorch peers on the GPU when its python3 has
#      a CUDA torch: GPT-2 small (tf32, bf16) and the dense, MoE and PKM
#      layers alone (bench/pytorch_*.py); each GEMM of a GPT-2
#      small step (TF32 and BF16, x in f32 and in bf16, vocab 50257 and
#      50304) against its backward products (bench --gemm)
#                                                  → $OUT/bench-json.tar,
#                                                    $OUT/ffn-profile.txt
#   7. the CPU suite (ctest -LE cuda, with FFNLAB_DEVICE=cpu so that tests
#      which train through the CLI with --device auto stay on the CPU, as
#      they do everywhere else)                    → $OUT/ctest-cpu.log
#   8. a summary                                   → $OUT/summary.txt
#
# Steps 1-4 stop the script at the first failure, saying which step and
# command failed. Test and bench failures are recorded, the remaining steps
# still run (one GPU session is precious), and the exit status is 1 at the end.
# Everything printed also goes to $OUT/gpu-check.log; $OUT defaults to
# ./gpu-check-out. At most 8 files are written there (the bench JSONs as one tar).
#
# Knobs: FFNLAB_GPU_CHECK_CMAKE_ARGS (extra configure arguments; MPI and NCCL
# are OFF by default here), FFNLAB_GPU_CHECK_NO_GPU_OK=1 (a machine without a
# GPU is expected: bench failures do not count) and FFNLAB_GPU_CHECK_KEEP_BUILD=1
# (reuse build-gpu/), for rehearsals (scripts/gpu-check-local.sh).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=${1:-.gpu-carry}
OUT=${OUT:-$ROOT/gpu-check-out}
B=$ROOT/build-gpu
P=/tmp/ffnlab-gpu-prefix
JOBS=$(nproc)
T0=$(date +%s)
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1

STEP="start"
step() { STEP="$*"; echo; echo "=== [$(( $(date +%s) - T0 ))s] $STEP"; }
trap 'echo; echo "gpu-check: FAILED in step \"$STEP\" (line $LINENO: $BASH_COMMAND)"; echo "FAILED in step: $STEP" >> "$OUT/summary.txt"; sleep 1; exit 1' ERR
SUMMARY=$OUT/summary.txt
say() { echo "$*" | tee -a "$SUMMARY"; }
: > "$SUMMARY"
FAILED=()

# ---------------------------------------------------------------- 1. machine
step "1. the machine"
GPU_NAME="none"; CC_ARCH=""
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv
  GPU_NAME=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
  CC_ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
else
  echo "no nvidia-smi / no GPU visible"
fi
case "$CC_ARCH" in ''|*[!0-9]*) CC_ARCH=90 ;; esac
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$NVCC" ] || { echo "gpu-check: no nvcc (looked on PATH and in /usr/local/cuda/bin)"; false; }
"$NVCC" --version | tail -2
command -v cmake >/dev/null || { echo "gpu-check: no cmake on PATH"; false; }
cmake --version | head -1
command -v gcc >/dev/null || { echo "gpu-check: no gcc on PATH"; false; }
gcc --version | head -1
grep -E '^(PRETTY_NAME)=' /etc/os-release || true
echo "cores: $JOBS; CUDA architecture to build: sm_$CC_ARCH; carry: $CARRY; out: $OUT"
say "ffnlab GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say "GPU: $GPU_NAME (sm_$CC_ARCH)"
say "toolchain: $("$NVCC" --version | grep -o 'release [0-9.]*'), $(cmake --version | head -1), $(gcc --version | head -1)"

# ---------------------------------------------------------------- 2. prefix
step "2. unpack the carried packages into $P"
ls "$CARRY"/debs/*.deb >/dev/null 2>&1 || { echo "gpu-check: no .deb files in $CARRY/debs (run scripts/gpu-prepare.sh here first and carry $CARRY)"; false; }
rm -rf "$P"
mkdir -p "$P"
for deb in "$CARRY"/debs/*.deb; do
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$deb" "$P"
  else # no dpkg: a .deb is an ar archive holding data.tar.*
    tmp=$(mktemp -d)
    (cd "$tmp" && ar x "$ROOT/$deb" && tar -xf data.tar.* -C "$P")
    rm -rf "$tmp"
  fi
done
LIBDIR=$P/usr/lib/x86_64-linux-gnu
# Their CMake and pkg-config files name /usr (cJSON's and cmocka's .pc
# absolutely; dnnl's CMake file compares its own location with /usr/...):
# rewrite every "/usr" path to the prefix.
find "$P" -type f \( -name '*.cmake' -o -name '*.pc' \) -print0 |
  xargs -0 sed -i -E "s#(^|[=\"' ]|-I|-L)/usr([/\"' ]|\$)#\1$P/usr\2#g"
if grep -rlE '(^|[="'"'"' ]|-I|-L)/usr/' "$LIBDIR/cmake" "$LIBDIR/pkgconfig" 2>/dev/null; then
  echo "gpu-check: the files above still name /usr"; false
fi
# pkg-config: the machine's own if it has one that runs, else the carried pkgconf
PKGCFG=$(command -v pkg-config || true)
if [ -z "$PKGCFG" ] || ! "$PKGCFG" --version >/dev/null 2>&1; then
  mkdir -p "$P/bin"
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' "$LIBDIR" "$P/usr/bin/pkgconf" > "$P/bin/pkg-config"
  chmod +x "$P/bin/pkg-config"
  PKGCFG=$P/bin/pkg-config
fi
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig:$P/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
echo "pkg-config: $PKGCFG ($("$PKGCFG" --version)); libpcre2-8 → $("$PKGCFG" --libs libpcre2-8)"
echo "unpacked $(ls "$CARRY"/debs/*.deb | wc -l) packages: $(du -sh "$P" | cut -f1)"

# ---------------------------------------------------------------- 3. configure
step "3. configure (Release, CUDA sm_$CC_ARCH)"
[ "${FFNLAB_GPU_CHECK_KEEP_BUILD:-0}" = 1 ] || rm -rf "$B" # keep: rehearsals reuse the build
GEN=() # Ninja when there is one (the GPU image has it; make may be missing there)
if [ ! -f "$B/CMakeCache.txt" ] && command -v ninja >/dev/null; then GEN=(-G Ninja); fi
# shellcheck disable=SC2086
cmake -S "$ROOT" -B "$B" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DFFNLAB_CUDA=ON -DFFNLAB_MPI=OFF -DFFNLAB_NCCL=OFF \
  -DCMAKE_CUDA_ARCHITECTURES="$CC_ARCH" -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_PREFIX_PATH="$P/usr" \
  -DPKG_CONFIG_EXECUTABLE="$PKGCFG" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 ${FFNLAB_GPU_CHECK_CMAKE_ARGS:-} \
  > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; false; }
grep -E '^-- ffnlab:' "$OUT/build.log" || true
echo "where CMake found the dependencies:"
for v in dnnl_DIR cJSON_DIR OpenCL_INCLUDE_DIR OpenCL_LIBRARY pkgcfg_lib_PCRE2_pcre2-8 pkgcfg_lib_CMOCKA_cmocka \
         CMAKE_CUDA_COMPILER CUDA_cudart_LIBRARY CUDA_cublas_LIBRARY; do
  val=$(grep -E "^$v:" "$B/CMakeCache.txt" | head -1 | cut -d= -f2- || true)
  case "$val" in "$P"/*) where="(carried)" ;; "") where="(not set)" ;; *) where="" ;; esac
  printf '  %-26s %s %s\n' "$v" "$val" "$where"
done
grep -q '^-- ffnlab: CUDA ON' "$OUT/build.log" || { echo "gpu-check: CUDA is not enabled in the build"; false; }

# ---------------------------------------------------------------- 4. build
step "4. build (-j$JOBS)"
tb=$(date +%s)
cmake --build "$B" -j"$JOBS" >> "$OUT/build.log" 2>&1 || { grep -E 'error|Error' "$OUT/build.log" | head -30; tail -20 "$OUT/build.log"; false; }
echo "built in $(( $(date +%s) - tb ))s; warnings in our CUDA files: $(grep -c 'backends/cuda/.*warning' "$OUT/build.log" || true)"
say "build: OK in $(( $(date +%s) - tb ))s ($(grep -E '^-- ffnlab: CUDA' "$OUT/build.log" | sed 's/^-- ffnlab: //'))"
# The binaries find the carried libraries through their RUNPATH, but
# libdnnl.so.2's own dependency (libOpenCL.so.1) is looked up without it:
# the prefix goes on LD_LIBRARY_PATH for everything that runs from here on.
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$B/ffnlab" --version
trap - ERR   # from here on a failure is recorded, not fatal
set +e

RUNENV=(env "FFNLAB_PLUGIN_PATH=$B/plugins")

# ctest's summary line → "N passed, F failed, S skipped"
ctest_counts() {
  local log=$1 total failed skipped
  total=$(sed -n 's/.*tests passed, \([0-9]*\) tests\{0,1\} failed out of \([0-9]*\).*/\2/p' "$log" | tail -1)
  failed=$(sed -n 's/.*tests passed, \([0-9]*\) tests\{0,1\} failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  skipped=$(grep -c '(Skipped)' "$log")
  [ -n "$total" ] || { echo "no result (see $(basename "$log"))"; return; }
  echo "$((total - failed - skipped)) passed, $failed failed, $skipped skipped of $total"
  grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)' "$log" | sed 's/^/    /' | tee -a "$SUMMARY" >/dev/null
}

# ---------------------------------------------------------------- 5. GPU tests
step "5. ctest -L cuda"
# -V: the suites print every comparison's measured error; keep them all. One at a
# time: test_cuda_backend ends by faulting its own CUDA context on purpose.
"${RUNENV[@]}" timeout 240 ctest --test-dir "$B" -L cuda --no-tests=error -V --timeout 200 \
  > "$OUT/ctest-cuda.log" 2>&1
rc=$?
grep -E 'Test +#|tests passed|\*\*\*|\[  (FAILED|ERROR) ' "$OUT/ctest-cuda.log"
[ $rc -eq 0 ] || FAILED+=("ctest -L cuda (exit $rc)")
say "ctest -L cuda: $(ctest_counts "$OUT/ctest-cuda.log")"
grep -h -E 'largest per-step relative loss|SKIPPED on the GPU|two GPU runs|GroupedBatchedEx|flash|log-sum-exp|\[  FAILED  \] test_' "$OUT/ctest-cuda.log" |
  sed -E 's/^[0-9]+: +/    /' | sort -u | tee -a "$SUMMARY"
grep -h 'skipped: ' "$OUT/ctest-cuda.log" | sed -E 's/^[0-9]+: +//' | sort -u | sed 's/^/    /' | tee -a "$SUMMARY"

# ---------------------------------------------------------------- 6. bench
step "6. ffnlab bench --device cuda"
json_num() { sed -n "s/.*\"$2\":[[:space:]]*\([-0-9.e+]*\).*/\1/p" "$1" | head -1; }
J=$OUT/json # the JSONs, brought back as one tar (the device tool returns at most 8 files)
mkdir -p "$J"
BENCH_ROWS=()
bench() { # name (ASCII: printf pads bytes) json math args...   (ATTN=gemm: the cuBLAS attention path;
           # PAD=off: the LM head unpadded)
  local name=$1 json=$2 math=$3; shift 3
  echo "--- $name (FFNLAB_CUDA_MATH=$math FFNLAB_CUDA_ATTENTION=${ATTN:-auto} FFNLAB_PAD_VOCAB=${PAD:-auto}): ffnlab bench $*"
  "${RUNENV[@]}" FFNLAB_CUDA_MATH="$math" FFNLAB_CUDA_ATTENTION="${ATTN:-auto}" FFNLAB_PAD_VOCAB="${PAD:-auto}" \
    timeout 90 "$B/ffnlab" bench \
    --device cuda "$@" --json "$J/$json" 2>&1 | tee "$J/${json%.json}.txt"
  local rc=${PIPESTATUS[0]}
  if [ $rc -ne 0 ] || [ ! -s "$J/$json" ]; then
    [ "${FFNLAB_GPU_CHECK_NO_GPU_OK:-0}" = 1 ] || FAILED+=("bench $name (exit $rc)")
    BENCH_ROWS+=("$(printf '  %-22s %-5s  failed (exit %d)' "$name" "$math" "$rc")")
    return
  fi
  BENCH_ROWS+=("$(printf '  %-22s %-5s %12.0f %10.1f %8.1f%% %14.1f' "$name" "$math" \
    "$(json_num "$J/$json" train_tokens_per_s)" "$(awk "BEGIN{print $(json_num "$J/$json" train_gflops) / 1000}")" \
    "$(awk "BEGIN{print 100 * $(json_num "$J/$json" mfu)}")" "$(awk "BEGIN{print $(json_num "$J/$json" sgemm_gflops) / 1000}")")")
}
# PyTorch peers on the same GPU (bench/pytorch_*.py), beside ffnlab's figures;
# optional: skipped without a CUDA-enabled torch in the machine's python3.
HAVE_TORCH_CUDA=0
python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' > /dev/null 2>&1 && HAVE_TORCH_CUDA=1
torch_peer() { # title file script args...: the script's "pytorch ..." lines to the summary
  local title=$1 f=$J/$2; shift 2
  echo "--- python3 $*"
  if [ "$HAVE_TORCH_CUDA" != 1 ]; then say "  $title: skipped (python3 has no CUDA-enabled torch)"; return; fi
  timeout 150 python3 "$@" > "$f" 2>&1
  local rc=$?
  cat "$f"
  if [ $rc -eq 0 ]; then
    say "$title:"
    grep -E '^ *pytorch' "$f" | sed 's/^ */  /' | tee -a "$SUMMARY" >/dev/null
  else
    say "  $title: failed (exit $rc): $(tail -1 "$f")"
  fi
}
bench "reference d256 L4" bench_reference.json tf32
bench "gpt2-small" bench_gpt2_small.json tf32 --preset gpt2-small --profile
bench "gpt2-small" bench_gpt2_small_bf16.json bf16 --preset gpt2-small --profile
PAD=off bench "gpt2-small unpadded" bench_gpt2_small_unpadded.json tf32 --preset gpt2-small
PAD=off bench "gpt2-small unpadded" bench_gpt2_small_bf16_unpadded.json bf16 --preset gpt2-small
ATTN=gemm bench "gpt2-small TxT attn" bench_gpt2_small_gemm_attn.json tf32 --preset gpt2-small
say "bench (training steps; MFU against the datasheet peak of the precision; peak = the LM-head GEMM measured):"
say "$(printf '  %-22s %-5s %12s %10s %9s %14s' shape math tokens/s TFLOP/s MFU 'GEMM TFLOP/s')"
for r in "${BENCH_ROWS[@]}"; do say "$r"; done
for f in bench_gpt2_small bench_gpt2_small_bf16; do # where the step's time goes
  grep -q '^profile' "$J/$f.txt" 2>/dev/null && say "$f: $(sed -n '/^profile/,/profiled steps/p' "$J/$f.txt")"
done
peak=$(sed -n 's/.*"peak_assumption": "\([^"]*\)".*/\1/p' "$J/bench_gpt2_small.json" 2>/dev/null | head -1)
[ -n "$peak" ] && say "  peak assumed: $peak"
for math in tf32 bf16; do
  torch_peer "PyTorch GPT-2 small on the same GPU (eager, T x T attention, bench/pytorch_gpt.py), $math" \
    "pytorch_gpt2_$math.txt" "$ROOT/bench/pytorch_gpt.py" --device cuda --preset gpt2-small --precision "$math"
done
# Each FFN plugin alone on the GPU against the dense FFN timed in the same
# run, then the issue's MoE case (8 experts, top-1, d=512, 64k tokens).
# --profile: where each layer's time goes, host op by host op (the whole
# profile to ffn-profile.txt; each sparse layer's total and its costliest op
# to the summary).
ffn_bench() { # json args...
  local json=$1; shift
  echo "--- ffnlab bench --ffn-only --device cuda --profile $*"
  "${RUNENV[@]}" timeout 150 "$B/ffnlab" bench --ffn-only --device cuda --reps 5 --profile "$@" --json "$J/$json" \
    > "$J/$json.txt" 2>&1
  local rc=$?
  sed '/^profile d=/,$d' "$J/$json.txt"
  { echo "=== ffnlab bench --ffn-only --profile $*"; sed -n '/^profile d=/,$p' "$J/$json.txt"; } >> "$OUT/ffn-profile.txt"
  if [ $rc -ne 0 ]; then
    [ "${FFNLAB_GPU_CHECK_NO_GPU_OK:-0}" = 1 ] || FAILED+=("bench --ffn-only $* (exit $rc)")
    say "  ffn-only $*: failed (exit $rc): $(tail -1 "$J/$json.txt")"
    return
  fi
  say "ffn-only $* (time, tokens/s, x dense of equal parameters, x dense of equal active FLOPs):"
  grep -E '^(d=| +d=)' "$J/$json.txt" | tee -a "$SUMMARY" >/dev/null
  say "  profiles (ms per call with the device synchronised around each host op; the costliest op):"
  awk '/^profile d=/ && !/ dense:/ { h = $0; getline; getline; sub(/^ +/, ""); gsub(/ +/, " ");
       sub(/^profile /, "", h); sub(/ with the device synchronised around every host op/, "", h);
       print "    " h "; " $0 }' "$J/$json.txt" | tee -a "$SUMMARY" >/dev/null
}
ffn_bench bench_ffn.json
ffn_bench bench_ffn_moe64k.json --tokens 65536 --only moe:experts=8
# The same layers in eager PyTorch on the same GPU: the study's setting,
# where sparse layers came out slower than dense.
torch_peer "PyTorch on the same GPU, FFN alone (bench/pytorch_ffn.py, TF32, median ms)" pytorch_ffn.txt \
  "$ROOT/bench/pytorch_ffn.py" --device cuda --reps 20
# Each GEMM of a GPT-2 small step on cuBLAS, forward against its two backward
# products: what the step's MFU rests on. In both modes with f32 operands, as
# the step runs most of its products (bf16: cuBLAS rounds them,
# CUBLAS_COMPUTE_32F_FAST_16BF), and in bf16 with x stored in bf16 as the
# step stores the inputs of qkv and of the FFN's projection (cuBLAS's bf16
# kernels; dy rounded by ffnlab's kernel for dW); and at vocab 50304 as well
# as 50257, whose odd row length leaves the LM head's logits and their
# gradient unaligned for the tensor-core kernels: what the model's padding of
# its LM head to 50304 on a GPU buys per product (the steps above measure it
# whole, FFNLAB_PAD_VOCAB=off against the default). The full tables at
# 50257, the LM head's row at 50304, to the summary.
gemm_bench() { # math vocab activations
  local math=$1 vocab=$2 act=$3 f=$J/bench_gemm_gpt2_$1_v$2_x$3
  echo "--- ffnlab bench --gemm --device cuda (GPT-2 small's shapes, vocab $vocab, x $act, FFNLAB_CUDA_MATH=$math)"
  "${RUNENV[@]}" FFNLAB_CUDA_MATH="$math" timeout 90 "$B/ffnlab" bench --gemm --device cuda --d-model 768 \
    --context 1024 --batch 8 --vocab "$vocab" --activations "$act" --json "$f.json" > "$f.txt" 2>&1
  local rc=$?
  cat "$f.txt"
  if [ $rc -ne 0 ]; then
    [ "${FFNLAB_GPU_CHECK_NO_GPU_OK:-0}" = 1 ] || FAILED+=("bench --gemm $math vocab $vocab x $act (exit $rc)")
    say "  bench --gemm (GPT-2 small, $math, vocab $vocab, x $act): failed (exit $rc): $(tail -1 "$f.txt")"
  elif [ "$vocab" = 50257 ]; then
    say "GEMMs of a GPT-2 small step, $math, x in $act (ffnlab bench --gemm):"
    sed -n '/^  layer/,$p' "$f.txt" | tee -a "$SUMMARY" >/dev/null
  else
    say "$(grep -E '^  lm head' "$f.txt")   <- $math, x in $act, vocab $vocab"
  fi
}
for math in tf32 bf16; do for vocab in 50257 50304; do gemm_bench "$math" "$vocab" f32; done; done
gemm_bench bf16 50257 bf16
gemm_bench bf16 50304 bf16
tar -cf "$OUT/bench-json.tar" -C "$OUT" json && rm -rf "$J"

# ---------------------------------------------------------------- 7. CPU suite
# FFNLAB_GPU_CHECK_CPU_SUITE=0 skips it when GPU time is short (CI runs it anyway).
if [ "${FFNLAB_GPU_CHECK_CPU_SUITE:-1}" != 0 ]; then
step "7. the CPU suite (ctest -LE cuda, FFNLAB_DEVICE=cpu)"
# -E _emu: the CUDA code emulated on the CPU (test_cuda_*_emu) proves nothing
# more where the real GPU suites have just run, and is the slowest part
"${RUNENV[@]}" FFNLAB_DEVICE=cpu timeout 150 ctest --test-dir "$B" -LE cuda -E '_emu$' -j "$JOBS" --output-on-failure --timeout 140 \
  > "$OUT/ctest-cpu.log" 2>&1
rc=$?
grep -E 'tests passed|\(Failed|\(Timeout' "$OUT/ctest-cpu.log"
[ $rc -eq 0 ] || FAILED+=("CPU suite (exit $rc)")
say "ctest CPU suite: $(ctest_counts "$OUT/ctest-cpu.log")"
fi

# ---------------------------------------------------------------- 8. summary
step "8. summary"
echo "total time: $(( $(date +%s) - T0 ))s" >> "$SUMMARY"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "RESULT: FAILED: ${FAILED[*]}" >> "$SUMMARY"
else
  echo "RESULT: OK" >> "$SUMMARY"
fi
echo; echo "=============================== SUMMARY ($OUT/summary.txt)"
cat "$SUMMARY"
sleep 1 # let tee finish $OUT/gpu-check.log
[ ${#FAILED[@]} -eq 0 ]
