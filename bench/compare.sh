#!/usr/bin/env bash
# bench/compare.sh — ffnlab bench and the PyTorch peer, in one invocation, same
# threads, so the ratio is meaningful on a noisy machine. Needs python3-torch and
# libopenblas0-pthread (not needed by ffnlab itself).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
steps=${STEPS:-10}
OMP_NUM_THREADS=$threads ./build/ffnlab bench --steps "$steps"
# Debian's torch links the reference BLAS; point it at OpenBLAS. OpenBLAS 0.3.21
# does not recognise AVX-512/AMX Xeons (it would run SSE3 kernels), so the core
# type comes from this CPU's flags: SkylakeX kernels need AVX-512 F/BW/DQ/VL,
# Haswell ones AVX2 + FMA (what AMD Zen 3 has); otherwise OpenBLAS decides.
openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread
[ -d "$openblas" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null || {
  echo "bench/compare.sh: needs the Debian packages python3-torch and libopenblas0-pthread" >&2; exit 1; }
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
coretype=
has() { for f in "$@"; do [[ "$flags" == *" $f "* ]] || return 1; done; }
if has avx512f avx512bw avx512dq avx512vl; then coretype=SkylakeX
elif has avx2 fma; then coretype=Haswell
fi
echo "bench/compare.sh: PyTorch on OpenBLAS, core type ${coretype:-chosen by OpenBLAS}"
env LD_LIBRARY_PATH="$openblas" ${coretype:+OPENBLAS_CORETYPE=$coretype} \
  OMP_NUM_THREADS="$threads" /usr/bin/python3 bench/pytorch_gpt.py --steps "$steps" --threads "$threads"
OMP_NUM_THREADS=$threads ./build/ffnlab bench --steps "$steps"
