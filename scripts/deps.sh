#!/usr/bin/env bash
# scripts/deps.sh — installs the Debian packages ffnlab builds against, if any
# are missing. Sourced by demo.sh and test.sh; needs root (or sudo) only when
# something is missing.
set -euo pipefail

# ocl-icd-opencl-dev: Debian's oneDNN CMake package calls find_package(OpenCL
# REQUIRED), but libdnnl-dev only *recommends* it, and we install without
# recommends. gnuplot-nox: `ffnlab report` draws its plots with it.
# libopenblas0-openmp, libblis4-openmp: the CPU backend loads them at run
# time for the products they run faster than oneDNN (AVX2 CPUs: weight
# gradients, narrow products; backends/cpu/cpu_blas.c).
FFNLAB_DEBS=(build-essential cmake pkg-config libdnnl-dev ocl-icd-opencl-dev libcjson-dev
             libcmocka-dev libpcre2-dev libcurl4-openssl-dev libopenmpi-dev openmpi-bin gnuplot-nox
             libopenblas0-openmp libblis4-openmp)

ffnlab_install_deps() {
  local missing=()
  for p in "${FFNLAB_DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "ffnlab: installing missing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "ffnlab: run as root (or install: ${missing[*]})" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configures and builds into $1 (Release).
ffnlab_build() {
  local dir="$1"; shift
  cmake -S "$(dirname "${BASH_SOURCE[0]}")/.." -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
}
