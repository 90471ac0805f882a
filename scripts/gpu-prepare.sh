#!/usr/bin/env bash
# scripts/gpu-prepare.sh — run HERE (Debian 12 with apt) before a GPU check.
#
# The GPU machine has the CUDA toolkit, CMake, a C compiler and PyTorch, but
# no package registry and none of the -dev packages ffnlab builds against.
# This downloads their .deb files (apt-get download: no install, no root
# needed) into .gpu-carry/debs, which travels with the working tree when the
# device call names it in `carry`; scripts/gpu-check.sh unpacks them there
# into a private prefix. libcurl is not carried: it is optional at build time
# (FFNLAB_CURL=AUTO), and only `ffnlab data fetch` needs it.
#
#   oneDNN (the CPU GEMM)     libdnnl-dev libdnnl2, and the OpenCL loader and
#                             headers its CMake package insists on
#   cJSON, CMocka, PCRE2      -dev packages and their libraries
#   pkg-config                pkgconf (CMake's FindPkgConfig needs the binary)
#
# Prints the carried size and the size of what the device call sends in all
# (tracked + untracked-not-ignored files + the carry), which must stay under
# 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

CARRY=.gpu-carry
PKGS=(libdnnl-dev libdnnl2 ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers
      libcjson-dev libcjson1 libcmocka-dev libcmocka0
      libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
      pkgconf pkgconf-bin libpkgconf3)

grep -qx '/.gpu-carry/' .gitignore || { echo "gpu-prepare: .gitignore must list /.gpu-carry/" >&2; exit 1; }
rm -rf "$CARRY/debs"
mkdir -p "$CARRY/debs"
echo "gpu-prepare: downloading ${#PKGS[@]} packages into $CARRY/debs"
if ! (cd "$CARRY/debs" && apt-get download -q "${PKGS[@]}" >/dev/null); then
  echo "gpu-prepare: apt-get download failed; try 'apt-get update' first" >&2
  exit 1
fi
n=$(ls "$CARRY/debs"/*.deb | wc -l)
[ "$n" -eq "${#PKGS[@]}" ] || { echo "gpu-prepare: expected ${#PKGS[@]} .deb files, got $n" >&2; exit 1; }
# what was carried, for the record
for f in "$CARRY/debs"/*.deb; do
  dpkg-deb -f "$f" Package Version | paste -sd' '
done > "$CARRY/MANIFEST"

carry_bytes=$(du -sb "$CARRY" | cut -f1)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((carry_bytes + tree_bytes))
printf 'gpu-prepare: carry %s = %.1f MiB (%d packages); working tree %.1f MiB; sent in all %.1f MiB (limit 64 MiB)\n' \
  "$CARRY" "$(echo "$carry_bytes / 1048576" | bc -l)" "$n" "$(echo "$tree_bytes / 1048576" | bc -l)" \
  "$(echo "$total / 1048576" | bc -l)"
if [ "$total" -gt $((60 * 1048576)) ]; then
  echo "gpu-prepare: over 60 MiB: the device call would be refused or too close to its limit" >&2
  exit 1
fi
echo "gpu-prepare: ready. On the GPU machine: scripts/gpu-check.sh $CARRY   (device call: carry [\"$CARRY\"])"
