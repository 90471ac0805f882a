#!/usr/bin/env bash
# bench/compare.sh — ffnlab bench and the PyTorch peer, in one invocation, same
# threads, so the ratio is meaningful on a noisy machine. Needs python3-torch and
# OpenBLAS (libopenblas0-openmp, which scripts/deps.sh installs, or
# libopenblas0-pthread); PyTorch itself is not needed by ffnlab.
#
#   bash bench/compare.sh         whole training step (bench/pytorch_gpt.py)
#   bash bench/compare.sh --ffn   one FFN layer alone at the study's shape: dense,
#                                 MoE top-1, PKM knn 14 (bench/pytorch_ffn.py)
# ffnlab runs before and after PyTorch, so drift shows; ROUNDS=N (default 1)
# repeats PyTorch-then-ffnlab N times, for machines whose speed moves between
# runs (read each PyTorch run against the ffnlab runs either side of it).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
steps=${STEPS:-10}
rounds=${ROUNDS:-1}
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench/compare.sh: ROUNDS=$rounds: expected a positive whole number" >&2; exit 2; }
mode=${1:-step}
case "$mode" in
  step) ffnlab() { OMP_NUM_THREADS=$threads ./build/ffnlab bench --steps "$steps"; }
        peer=(bench/pytorch_gpt.py --steps "$steps" --threads "$threads") ;;
  --ffn) ffnlab() { for only in moe:experts=4,d_expert=1023,top_k=1 pkm:heads=4,n_keys=56,k_dim=256,knn=14; do
                      OMP_NUM_THREADS=$threads ./build/ffnlab bench --ffn-only --only "$only" | grep -E "^d=256|$only "
                    done; }
         peer=(bench/pytorch_ffn.py --threads "$threads") ;;
  *) echo "bench/compare.sh: unknown mode '$mode' (expected nothing or --ffn)" >&2; exit 2 ;;
esac
ffnlab
# Debian's torch links the reference BLAS; point it at OpenBLAS, its OpenMP build
# where installed: it shares torch's OpenMP threads, where the pthread build's
# own pool competes with them (measured on an AMD EPYC Zen 3, 2 threads: 2847-3131
# tokens/s against 1864-2226). OpenBLAS 0.3.21
# does not recognise AVX-512/AMX Xeons (it would run SSE3 kernels), so the core
# type comes from this CPU's flags: SkylakeX kernels need AVX-512 F/BW/DQ/VL,
# Haswell ones AVX2 + FMA (what AMD Zen 3 has); otherwise OpenBLAS decides.
lib=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
openblas=$lib/openblas-openmp
[ -d "$openblas" ] || openblas=$lib/openblas-pthread
[ -d "$openblas" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null || {
  echo "bench/compare.sh: needs the Debian packages python3-torch and libopenblas0-openmp" >&2; exit 1; }
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
coretype=
has() { for f in "$@"; do [[ "$flags" == *" $f "* ]] || return 1; done; }
if has avx512f avx512bw avx512dq avx512vl; then coretype=SkylakeX
elif has avx2 fma; then coretype=Haswell
fi
echo "bench/compare.sh: PyTorch on OpenBLAS (${openblas##*/}), core type ${coretype:-chosen by OpenBLAS}"
for ((r = 1; r <= rounds; r++)); do
  env LD_LIBRARY_PATH="$openblas" ${coretype:+OPENBLAS_CORETYPE=$coretype} \
    OMP_NUM_THREADS="$threads" /usr/bin/python3 "${peer[@]}"
  ffnlab
done
