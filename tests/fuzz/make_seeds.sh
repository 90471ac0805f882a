#!/usr/bin/env bash
# tests/fuzz/make_seeds.sh BUILD_DIR — writes tests/fuzz/seeds/ again: a few
# small valid inputs per harness (from the test fixtures, or made here with
# the built ffnlab) and a few broken ones, so a short run starts inside each
# format instead of guessing it. Run once; the seeds are checked in.
set -euo pipefail
ffnlab="$(cd "${1:?usage: make_seeds.sh BUILD_DIR}" && pwd)/ffnlab"
cd "$(dirname "$0")"
fix="$(pwd)/../fixtures/tasks"
rm -rf seeds && mkdir -p seeds && cd seeds
mkdir fuzz_safetensors fuzz_config fuzz_tokenizer fuzz_shard fuzz_corpus fuzz_blimp fuzz_glue fuzz_options fuzz_spec

# safetensors: 8-byte little-endian header length, JSON header, data
st() { # FILE HEADER DATA_BYTES
    local n=${#2}
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x00' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)))" > "$1"
    printf '%s' "$2" >> "$1"
    head -c "$3" /dev/zero | tr '\0' '\1' >> "$1"
}
st fuzz_safetensors/two_f32 '{"__metadata__":{"step":"4"},"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"a.bias":{"dtype":"F32","shape":[3],"data_offsets":[24,36]}}' 36
st fuzz_safetensors/bf16_scalar '{"x":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"y":{"dtype":"I32","shape":[1,1],"data_offsets":[2,6]}}' 6
st fuzz_safetensors/offsets_past_end '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 8
st fuzz_safetensors/empty_header '{}' 0

# config JSON
cp ../../../configs/tiny.json fuzz_config/tiny.json
printf '{"n_layers": 2, "d_model": 32, "n_heads": 2, "ffn": "moe:experts=4,top_k=1", "ffn_layers": ["1=pkm:heads=2"]}\n' > fuzz_config/ffn_layers.json
printf '{"n_layers": 2, "n_layers": 3}\n' > fuzz_config/duplicate_key.json
printf '{"eval_tasks": ["blimp", "glue:tasks=rte,boolq"], "lr": 1e-3, "device": "cpu"}\n' > fuzz_config/eval_tasks.json

# tokenizer.json: a small one ffnlab trains, and one with a key twice
for i in 1 2 3 4 5 6 7 8; do printf 'The cat sat on the mat. A dog ran far away, caf\xc3\xa9.\n<|endoftext|>\n'; done > /tmp/ffnlab-seed-corpus.$$
"$ffnlab" tokenizer train --corpus /tmp/ffnlab-seed-corpus.$$ --vocab-size 270 --out fuzz_tokenizer/bpe270.json > /dev/null
rm -f /tmp/ffnlab-seed-corpus.$$
sed "s/\"version\":/\"padding\": null, \"version\":/"  fuzz_tokenizer/bpe270.json > fuzz_tokenizer/duplicate_key.json

# token shard: 64-byte header (magic, version, token bytes, n, vocab), tokens
shard() { # FILE TOKEN_BYTES N VOCAB TOKEN_DATA_BYTES
    { printf 'FFNLTOK\0'; printf "\\x01\\x00\\x00\\x00\\x$(printf %02x "$2")\\x00\\x00\\x00"
      printf "\\x$(printf %02x "$3")\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
      printf "\\x$(printf %02x $(($4 & 255)))\\x$(printf %02x $(($4 >> 8)))\\x00\\x00"
      head -c 36 /dev/zero; head -c "$5" /dev/zero | tr '\0' '\3'; } > "$1"
}
shard fuzz_shard/u16 2 8 300 16
shard fuzz_shard/u32 4 4 300 16
shard fuzz_shard/truncated 2 8 300 10

# corpus: TinyStories text, JSON Lines, a BOM, a bad line
printf 'Once upon a time.\n<|endoftext|>\nThe end.\n' > fuzz_corpus/text.txt
printf '{"text": "One."}\n\n{"text": "Two \\u00e9."}\n' > fuzz_corpus/lines.jsonl
printf '\xef\xbb\xbfHello.\n<|endoftext|>\n' > fuzz_corpus/bom.txt
printf '{"text": "a", "text": "b"}\n' > fuzz_corpus/duplicate.jsonl

# BLiMP: first byte = mode (1 supplement, 2 on_error=skip), then the file
{ printf '\0'; head -n 2 $fix/blimp/release/anaphor_gender_agreement.jsonl; } > fuzz_blimp/release
{ printf '\2'; cat $fix/blimp/malformed/sv.jsonl; } > fuzz_blimp/malformed_skip
for f in $fix/blimp/supplement/* $fix/blimp/babylm/*; do
    [ -f "$f" ] || continue
    { printf '\1'; head -n 2 "$f"; } > "fuzz_blimp/$(basename "$(dirname "$f")")_$(basename "$f")"
    break
done

# GLUE: first byte = task index (cola 0 ... wsc 9) + 16 for JSON Lines + 32 for on_error=skip
{ printf '\6'; head -n 3 $fix/glue/RTE/train.tsv; } > fuzz_glue/rte_tsv
{ printf '\0'; head -n 3 $fix/glue/CoLA/train.tsv; } > fuzz_glue/cola_tsv
{ printf '\x17'; head -n 2 $fix/glue/BoolQ/train.jsonl; } > fuzz_glue/boolq_jsonl
{ printf '\x18'; head -n 1 $fix/glue/MultiRC/train.jsonl; } > fuzz_glue/multirc_jsonl
{ printf '\x19'; head -n 2 $fix/glue/WSC/train.jsonl; } > fuzz_glue/wsc_jsonl
{ printf '\x26'; cat $fix/glue_bad/columns/RTE/train.tsv; } > fuzz_glue/rte_bad_columns_skip

# option strings and specs
printf 'experts=4,capacity=2.5,noisy=true,activation=relu,words=a|b' > fuzz_options/all_types
printf 'words=a,b,c,hidden=64' > fuzz_options/list_with_commas
printf 'experts=0,experts=5,nope=1' > fuzz_options/bad
printf 'moe:experts=8,top_k=1' > fuzz_spec/ffn
printf '1=pkm:heads=4;0=dense' > fuzz_spec/ffn_layer
printf 'glue:tasks=rte,boolq,epochs=2' > fuzz_spec/task
printf ':x=1' > fuzz_spec/no_name
