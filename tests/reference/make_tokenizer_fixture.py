#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/, the ground truth tests/test_tokenizer.c checks ffnlab's BPE against.

The reference is the Hugging Face `tokenizers` library (pip install tokenizers), whose
tokenizer.json layout ffnlab reads and writes. Two directions are checked:

1. HF -> ffnlab. A tiny byte-level BPE (GPT-2's pre-tokenizer, vocab 400) is trained by the
   library on a few KB of deliberately mixed text (ASCII, accents, CJK, emoji, numbers,
   contractions, runs of spaces, tabs, newlines). The library numbers tokens differently from
   ffnlab (special token first, then the alphabet in character order), which is the point: the
   C loader must take ids from the file. Files:
     corpus.txt          the training text, documents separated by "<|endoftext|>" lines
     hf_tokenizer.json   the library's trained tokenizer (as tokenizer.save() writes it)
     hf_ids.json         {text: ids} from the library, for the strings in TEXTS

2. ffnlab -> HF (with --ffnlab BIN, the built `ffnlab` program). ffnlab trains its own
   tokenizer on corpus.txt; the library must load that file and give, for every string in
   TEXTS, the same ids as `ffnlab tokenizer encode` (checked here, once) and decode them back.
   Files:
     ffnlab_tokenizer.json   written by `ffnlab tokenizer train`
     ffnlab_ids.json         {text: ids} from the library for that file
   so the C test also keeps checking, without Python, that ids for an ffnlab-written file
   agree with the library's.

Everything is deterministic; the files are small (< 100 KB in all).

Usage (from the repository root):
    python3 tests/reference/make_tokenizer_fixture.py [--ffnlab build/ffnlab] [--out DIR]
"""

import argparse
import json
import os
import subprocess
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOT = "<|endoftext|>"
VOCAB = 400

# Training documents: a little of everything the pre-tokenizer treats specially.
DOCS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park with her dog, Max. One day, Lily found a shiny red ball under a big tree.\n\n"
    "\"Look, Max!\" she said. \"It's a ball! Let's play!\" Max wagged his tail and barked.",
    "I'm sure they'll come; we've waited since 9:30. She'd said it's fine, but don't worry: "
    "you're OK. THE END... or is it?!",
    "Café au lait, naïve résumé, Zürich and São Paulo; crème brûlée costs 4,50 € — "
    "déjà vu! Ærøskøbing, Łódź, Ñandú, İstanbul.",
    "東京は日本の首都です。我喜欢学习中文，也喜欢读书。한국어도 조금 합니다. "
    "Привет, мир! Γειά σου κόσμε. مرحبا بالعالم.",
    "Emoji time 🙂🎉👍🏽 and flags 🇫🇷🇯🇵 — family 👨‍👩‍👧 says hi!! ❤️ ✨✨✨",
    "Numbers: 0 1 12 123 1234 12345 3.14159 2,718 1e10 -42 +7 100% 2024-01-31 v2.0.1 "
    "phone 555-0123, room 101.",
    "Spaces:    four,  two,\tone tab,\t\ttwo tabs, trailing   \nNew line\n\n\nthree newlines"
    "\r\nwindows line\r\n   indented code {\n    return x + y;\n}\n",
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps again and again; "
    "the lazy dog sleeps. Dogs and foxes, foxes and dogs.",
    "She said, 'I can't.' He said, 'You CAN'T? You'LL see!' They're here; we're there; "
    "I've got it; you'd know; it'll do.",
    "Mixed: abc123def, x_y_z, foo.bar(baz), <tag attr=\"1\">text</tag>, $5.99, #hashtag, @user, "
    "email@example.com, https://example.org/a?b=c&d=e",
    "Tom and his mom went to the store. They bought apples, bread and milk. Tom was happy "
    "because he liked apples very much. \"Thank you, Mom!\" he said. Mom smiled and gave him a "
    "big hug. Then they walked home together in the warm sun.",
    "Once there was a small bird who could not fly. The bird was sad. A kind girl saw the bird "
    "and wanted to help. She made a little nest for it and gave it water. Every day the bird "
    "got stronger, and one morning it flew up into the blue sky. The girl waved and laughed.",
    "Ben had a red car. He liked to play with it every day. One day, the car broke. Ben was "
    "sad, but his dad said, \"Don't worry, we can fix it!\" They fixed the car together, and "
    "Ben was happy again. He learned that it's good to ask for help.",
    "Le petit chat était très content. Il a mangé du poisson et il a dormi au soleil. "
    "Der kleine Hund spielte im Garten; er war müde und glücklich. "
    "El niño comió una manzana y bebió agua fría. ¿Dónde está la biblioteca? ¡Aquí!",
    "小さな猫が庭で遊んでいました。猫はとても楽しかったです。"
    "小明今天去公园玩，他看到了很多花和小鸟。天气很好，大家都很开心。",
    "Weather report 2024-06-01: 23°C, humidity 65%, wind 12 km/h NW. "
    "Tomorrow: 25–27°C, 0.5 mm rain. Prices: €3.20, £2.75, ¥500, ₹120.",
]

# Strings whose ids are compared. Text outside the training data too (the BPE must fall
# back to bytes), and "<|endoftext|>" inside text (one special id).
TEXTS = [
    "",
    "Hello world",
    "Once upon a time, there was a little girl named Lily.",
    "I'm sure they'll come; we've waited. She'd said it's fine, don't worry, you're OK.",
    "'s 't 're 've 'm 'll 'd",
    "Café naïve résumé Zürich São Paulo crème brûlée",
    "東京は日本の首都です。我喜欢学习中文。",
    "Emoji 🙂🎉👍🏽 flags 🇫🇷 family 👨‍👩‍👧 ❤️",
    "Numbers 1234567890 3.14159 2,718 -42 100%",
    "multiple    spaces   here  and   there",
    "tabs\tand\ttabs\t\tdouble",
    "new\nlines\n\n\nand\r\nwindows\r\n",
    "   leading spaces and trailing spaces   ",
    "\n\n\n",
    "end of story.<|endoftext|>Once upon a time",
    "<|endoftext|><|endoftext|>",
    "Unseen: Ωμέγα, עברית, हिन्दी, ภาษาไทย, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "Mixed: abc123def, foo.bar(baz), <tag attr=\"1\">text</tag>, $5.99, email@example.com",
    "THE QUICK BROWN FOX!!! ??? ... ---",
    "a",
    " ",
    "Dogs and foxes, foxes and dogs. The lazy dog sleeps.",
    # Unicode whitespace; U+180E is not White_Space (PCRE2's own \\s would take it)
    "ws:\u00a0a\u2003b\u3000c\u2028d\u0085e\x0bf\x0cg \u180e's \u200b'll",
]


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def train_hf(corpus_docs):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_docs, trainer)
    return tok


def ids_of(tok, texts):
    out = {}
    for t in texts:
        ids = tok.encode(t).ids
        back = tok.decode(ids, skip_special_tokens=False)
        if back != t:
            sys.exit(f"library round trip failed for {t!r}: got {back!r}")
        out[t] = ids
    return out


def check_ffnlab(binary, out_dir, corpus_path):
    path = os.path.join(out_dir, "ffnlab_tokenizer.json")
    subprocess.run([binary, "tokenizer", "train", "--corpus", corpus_path,
                    "--vocab-size", str(VOCAB), "--out", path], check=True)
    tok = Tokenizer.from_file(path)   # the library must accept the file
    ids = ids_of(tok, TEXTS)
    bad = 0
    for t, want in ids.items():
        got = subprocess.run([binary, "tokenizer", "encode", "--tokenizer", path, "--text", t],
                             check=True, capture_output=True, text=True).stdout.split()
        if [int(x) for x in got] != want:
            print(f"MISMATCH {t!r}\n  ffnlab  {got}\n  library {want}", file=sys.stderr)
            bad += 1
    if bad:
        sys.exit(f"{bad} of {len(ids)} strings encode differently in ffnlab and the library")
    write_json(os.path.join(out_dir, "ffnlab_ids.json"), ids)
    print(f"ffnlab_tokenizer.json: library ids equal ffnlab's for all {len(ids)} strings")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "fixtures", "tokenizer")))
    ap.add_argument("--ffnlab", help="path of the built ffnlab program (checks direction 2)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    corpus_path = os.path.join(args.out, "corpus.txt")
    with open(corpus_path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(d + "\n" + EOT + "\n" for d in DOCS))

    tok = train_hf(DOCS)
    tok.save(os.path.join(args.out, "hf_tokenizer.json"))
    write_json(os.path.join(args.out, "hf_ids.json"), ids_of(tok, TEXTS))
    print(f"hf_tokenizer.json: {tok.get_vocab_size()} ids; hf_ids.json: {len(TEXTS)} strings")

    if args.ffnlab:
        check_ffnlab(args.ffnlab, args.out, corpus_path)


if __name__ == "__main__":
    main()
