#!/usr/bin/env bash
# scripts/demo.sh — the main job on a fresh machine: install what is missing,
# build, train the tiny default model on the built-in story corpus, then show a
# generated story and the validation loss.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ffnlab_install_deps
ffnlab_build build
./build/ffnlab train --force "$@"
echo
echo "--- a story from the trained model (runs/tiny) ---"
./build/ffnlab generate --run runs/tiny --prompt "Once upon a time" --max-tokens 160
echo "--- validation loss ---"
grep '"val_loss"' runs/tiny/metrics.jsonl | tail -n 1
