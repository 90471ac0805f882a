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
# runs. At the end, ffnlab's speed-up over each PyTorch run, against the
# ffnlab runs either side of it (one pair of ratios per round; with several
# rounds, then their median).
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
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ffnlab | tee "$out/ffnlab0"
# Debian's torch links the reference BLAS; point it at OpenBLAS, its OpenMP build
# where installed: it shares torch's OpenMP threads, where the pthread build's
# own pool competes with them (measured on an AMD EPYC Zen 3, 2 threads: 2847-3131
# tokens/s against 1864-2226). OpenBLAS 0.3.21
# does not recognise AVX-512/AMX Xeons (it would run SSE3 kernels), so the core
# type comes from this CPU's flags: SkylakeX kernels need AVX-512 F/BW/DQ/VL,
# Haswell ones AVX2 + FMA (what AMD Zen 3 has); otherwise OpenBLAS decides.
# OPENBLAS_CORETYPE set by the caller wins (with DNNL_MAX_CPU_ISA=AVX2 and
# OPENBLAS_CORETYPE=Haswell an AVX-512 machine runs both sides on AVX2 kernels).
lib=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
openblas=$lib/openblas-openmp
[ -d "$openblas" ] || openblas=$lib/openblas-pthread
[ -d "$openblas" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null || {
  echo "bench/compare.sh: needs the Debian packages python3-torch and libopenblas0-openmp" >&2; exit 1; }
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
coretype=${OPENBLAS_CORETYPE:-}
has() { for f in "$@"; do [[ "$flags" == *" $f "* ]] || return 1; done; }
if [ -n "$coretype" ]; then :
elif has avx512f avx512bw avx512dq avx512vl; then coretype=SkylakeX
elif has avx2 fma; then coretype=Haswell
fi
echo "bench/compare.sh: PyTorch on OpenBLAS (${openblas##*/}), core type ${coretype:-chosen by OpenBLAS}"
for ((r = 1; r <= rounds; r++)); do
  env LD_LIBRARY_PATH="$openblas" ${coretype:+OPENBLAS_CORETYPE=$coretype} \
    OMP_NUM_THREADS="$threads" /usr/bin/python3 "${peer[@]}" | tee "$out/torch$r"
  ffnlab | tee "$out/ffnlab$r"
done

# The figures back out of the runs' tables: a step's tokens/s, or one FFN
# layer's ms in one mode (the dense one from ffnlab's baseline line).
step_tok_s() { sed -n 's/.*: \([0-9.]*\) tokens\/s.*/\1/p' "$1" | head -1; }
ffnlab_ms() { # file layer mode
  if [[ $2 == dense:* ]]; then
    sed -n "s/.*baseline $2: forward \([0-9.]*\) ms, fwd+bwd \([0-9.]*\) ms.*/\1 \2/p" "$1" | head -1 |
      awk -v m="$3" '{ print m == "forward" ? $1 : $2 }'
  else
    awk -v l="$2" -v m="$3" '$1 == "d=256" && $2 == l && $3 == m { print $4; exit }' "$1"
  fi
}
torch_ms() { awk -v l="$2" -v m="$3" '$1 == "pytorch" && $2 == l { print m == "forward" ? $4 : $7; exit }' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf " x%.2f", a / b; else printf " ?" }'; }
# With several rounds, the median of a line's ratios (its " xR" words): one
# disturbed run moves it less than it moves the range.
median() {
  [ "$rounds" -gt 1 ] || return 0
  tr ' ' '\n' <<<"$1" | sed -n 's/^x//p' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) printf "   median x%.2f of %d", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, NR }'
}

echo "ffnlab's speed-up over PyTorch, each PyTorch run against the ffnlab runs before and after it:"
if [ "$mode" = step ]; then
  line="  training step (tokens/s):"
  for ((r = 1; r <= rounds; r++)); do
    t=$(step_tok_s "$out/torch$r")
    line+="$(ratio "$(step_tok_s "$out/ffnlab$((r - 1))")" "$t")$(ratio "$(step_tok_s "$out/ffnlab$r")" "$t")"
    [ "$r" -lt "$rounds" ] && line+=" |"
  done
  echo "$line$(median "$line")"
else
  for layer in dense:d_ff=4096 moe:experts=4,d_expert=1023,top_k=1 pkm:heads=4,n_keys=56,k_dim=256,knn=14; do
    for m in forward fwd+bwd; do
      line=$(printf '  %-40s %-8s' "$layer" "$m")
      for ((r = 1; r <= rounds; r++)); do
        t=$(torch_ms "$out/torch$r" "$layer" "$m")
        line+="$(ratio "$t" "$(ffnlab_ms "$out/ffnlab$((r - 1))" "$layer" "$m")")$(ratio "$t" "$(ffnlab_ms "$out/ffnlab$r" "$layer" "$m")")"
        [ "$r" -lt "$rounds" ] && line+=" |"
      done
      echo "$line$(median "$line")"
    done
  done
fi
