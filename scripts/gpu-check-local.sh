#!/usr/bin/env bash
# scripts/gpu-check-local.sh — rehearse scripts/gpu-check.sh on this machine
# (no GPU needed) as the GPU machine will see it: in a private mount namespace
# where the system's copies of everything gpu-prepare.sh carries are hidden
# (oneDNN, OpenCL, cJSON, CMocka, PCRE2 headers, libraries, CMake and
# pkg-config files, the pkg-config program) and libcurl's headers too, so the
# build can only succeed against the carried prefix and without libcurl.
# Runtime libraries other programs use (libpcre2-8.so.0: grep, mount) stay
# visible; the build links every library by the full path CMake found.
#
#   sudo scripts/gpu-check-local.sh [CARRY]     (needs root for unshare -m)
#
# Without a GPU the CUDA suites report "skipped" and the benches fail, which
# FFNLAB_GPU_CHECK_NO_GPU_OK=1 tells gpu-check.sh to expect. Output goes to
# /tmp/gpu-check-local-out; the build to build-gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=${1:-.gpu-carry}
export OUT=/tmp/gpu-check-local-out FFNLAB_GPU_CHECK_NO_GPU_OK=1
rm -rf "$OUT"
exec unshare -m --propagation private bash -c '
set -euo pipefail
hide_dir() { [ -d "$1" ] && mount -t tmpfs -o size=1m none "$1"; return 0; }
# only regular files: a bind mount over a symlink would land on its target
# (hiding libpcre2-8.so would hide the libpcre2-8.so.0 that mount and grep use)
hide_file() { [ -f "$1" ] && [ ! -L "$1" ] && mount --bind /dev/null "$1"; return 0; }
A=/usr/lib/x86_64-linux-gnu
for d in /usr/include/oneapi /usr/include/cjson /usr/include/CL /usr/include/cmockery \
         /usr/include/x86_64-linux-gnu/curl /usr/include/curl \
         $A/cmake/dnnl $A/cmake/cJSON $A/cmake/cmocka $A/pkgconfig /usr/share/pkgconfig; do hide_dir "$d"; done
for f in /usr/include/dnnl*.h /usr/include/dnnl*.hpp /usr/include/cmocka*.h /usr/include/pcre2*.h \
         $A/libdnnl.so* $A/libcjson.so* $A/libcmocka.so* $A/libcmockery.so* $A/libOpenCL.so* \
         /usr/bin/pkgconf; do
  hide_file "$f"
done
echo "gpu-check-local: system copies hidden; pkg-config on PATH: $(command -v pkg-config || echo none)"
exec scripts/gpu-check.sh "$1"
' gpu-check-local "$CARRY"
