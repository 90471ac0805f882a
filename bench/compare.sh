#!/usr/bin/env bash
# bench/compare.sh — ffnlab bench and the PyTorch peer, in one invocation, same
# threads, so the ratio is meaningful on a noisy machine. Needs python3-torch and
# libopenblas0-pthread (not needed by ffnlab itself).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
steps=${STEPS:-10}
OMP_NUM_THREADS=$threads ./build/ffnlab bench --steps "$steps"
# Debian's torch links the reference BLAS; point it at OpenBLAS with a core type
# it knows (0.3.21 does not recognise AVX-512/AMX Xeons and would run SSE3 kernels).
LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread OPENBLAS_CORETYPE=SkylakeX \
  OMP_NUM_THREADS=$threads /usr/bin/python3 bench/pytorch_gpt.py --steps "$steps" --threads "$threads"
OMP_NUM_THREADS=$threads ./build/ffnlab bench --steps "$steps"
