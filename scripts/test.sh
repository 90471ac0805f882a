#!/usr/bin/env bash
# scripts/test.sh — install what is missing, build, run the whole test suite.
# Extra arguments go to ctest (e.g. -R tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ffnlab_install_deps
ffnlab_build build
ctest --test-dir build --output-on-failure -j2 "$@"
