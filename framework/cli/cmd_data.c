/*
 * cli/cmd_data.c — `ffnlab data`: prepare token shards, generate the built-in
 * corpus and its minimal pairs, download TinyStories.
 *
 *   ffnlab data prepare --corpus PATH --tokenizer tokenizer.json --out DIR [--val-fraction F]
 *   ffnlab data generate --out FILE [--bytes N] [--seed S]
 *   ffnlab data fetch tinystories [--dir DIR]
 *   ffnlab data blimp --out DIR [--pairs N] [--seed S]
 *
 * Each action parses its own flags (getopt_long), calls one library function
 * and prints a one-line summary; every error goes through fl_cli_report.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "corpus.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "prepare.h"
#include "storygen.h"
#include "tokenizer.h"

/* Defaults shared with the training config (core/config.c). */
#define DEFAULT_BYTES "3000000"
#define DEFAULT_SEED "1337"
#define DEFAULT_VAL_FRACTION "0.05"
#define DEFAULT_PAIRS "1000"

static void help(FILE *f) {
    fprintf(f,
            "usage: ffnlab data ACTION [options]\n\n"
            "  prepare --corpus PATH --tokenizer tokenizer.json --out DIR [--val-fraction F]\n"
            "      encode a corpus (plain text with <|endoftext|> lines, or JSON Lines with a\n"
            "      \"text\" field) into DIR/train.bin and DIR/val.bin (F default " DEFAULT_VAL_FRACTION ")\n"
            "  generate --out FILE [--bytes N] [--seed S]\n"
            "      write about N bytes (default " DEFAULT_BYTES ") of the built-in story corpus\n"
            "  fetch tinystories [--dir DIR]\n"
            "      download TinyStoriesV2-GPT4 train/valid text into DIR (default data/tinystories);\n"
            "      an interrupted download resumes when run again\n"
            "  blimp --out DIR [--pairs N] [--seed S]\n"
            "      write minimal pairs (BLiMP JSON Lines) for the agreements the built-in corpus\n"
            "      encodes, N per paradigm (default " DEFAULT_PAIRS ")\n");
}

/* ---- number parsing -------------------------------------------------------- */

static int parse_u64(const char *flag, const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-' || v < lo || v > hi)
        return fl_cli_usage("data", "%s: '%s' is not a whole number in [%llu, %llu]", flag, s,
                            (unsigned long long)lo, (unsigned long long)hi);
    *out = v;
    return 0;
}

static int parse_fraction(const char *flag, const char *s, double *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0.0 && v < 1.0))
        return fl_cli_usage("data", "%s: '%s' is not a number in [0, 1)", flag, s);
    *out = v;
    return 0;
}

/* getopt_long over argv (argv[0] = the action), no short options. Returns the
   option's value char, -1 at the end, or '?' on an unknown/incomplete one. */
static int next_opt(int argc, char **argv, const struct option *opts) {
    return getopt_long(argc, argv, "", opts, NULL);
}

static void reset_getopt(void) {
    optind = 1;
    opterr = 0;
}

static int bad_option(char **argv) {
    return fl_cli_usage("data", "unknown or incomplete option '%s'", argv[optind - 1]);
}

/* ---- actions --------------------------------------------------------------- */

static int do_prepare(int argc, char **argv) {
    const char *corpus = NULL, *tok_path = NULL, *out = NULL;
    double frac = atof(DEFAULT_VAL_FRACTION);
    static const struct option opts[] = {{"corpus", 1, 0, 'c'}, {"tokenizer", 1, 0, 't'},
                                         {"out", 1, 0, 'o'},    {"val-fraction", 1, 0, 'v'},
                                         {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    int c, rc = 0;
    reset_getopt();
    while (!rc && (c = next_opt(argc, argv, opts)) != -1) {
        switch (c) {
        case 'c': corpus = optarg; break;
        case 't': tok_path = optarg; break;
        case 'o': out = optarg; break;
        case 'v': rc = parse_fraction("--val-fraction", optarg, &frac); break;
        case 'h': help(stdout); return 0;
        default: return bad_option(argv);
        }
    }
    if (rc) return rc;
    if (optind < argc) return fl_cli_usage("data", "unexpected argument '%s'", argv[optind]);
    if (!corpus || !tok_path || !out)
        return fl_cli_usage("data", "prepare needs --corpus, --tokenizer and --out");
    fl_error err = {0};
    fl_corpus c_ = {0};
    fl_tokenizer *tok = NULL;
    uint64_t n_train = 0, n_val = 0;
    fl_status st = fl_corpus_read(corpus, &c_, &err);
    if (!st) st = fl_tokenizer_load(tok_path, &tok, &err);
    if (!st) st = fl_data_prepare(&c_, tok, frac, out, &n_train, &n_val, &err);
    if (!st)
        printf("%s: %zu documents → %llu training and %llu validation tokens in %s/{train,val}.bin\n",
               corpus, c_.n_docs, (unsigned long long)n_train, (unsigned long long)n_val, out);
    fl_tokenizer_free(tok);
    fl_corpus_free(&c_);
    return st ? fl_cli_report(&err) : 0;
}

static int do_generate(int argc, char **argv) {
    const char *out = NULL;
    uint64_t bytes = strtoull(DEFAULT_BYTES, NULL, 10), seed = strtoull(DEFAULT_SEED, NULL, 10);
    static const struct option opts[] = {{"out", 1, 0, 'o'}, {"bytes", 1, 0, 'b'},
                                         {"seed", 1, 0, 's'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c, rc = 0;
    reset_getopt();
    while (!rc && (c = next_opt(argc, argv, opts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'b': rc = parse_u64("--bytes", optarg, 1, (uint64_t)1 << 40, &bytes); break;
        case 's': rc = parse_u64("--seed", optarg, 0, UINT64_MAX, &seed); break;
        case 'h': help(stdout); return 0;
        default: return bad_option(argv);
        }
    }
    if (rc) return rc;
    if (optind < argc) return fl_cli_usage("data", "unexpected argument '%s'", argv[optind]);
    if (!out) return fl_cli_usage("data", "generate needs --out FILE");
    fl_error err = {0};
    char *text = NULL;
    size_t len = 0;
    fl_status st = fl_storygen_text(seed, (size_t)bytes, &text, &len, &err);
    if (!st) st = fl_write_file_atomic(out, text, len, &err);
    if (!st) printf("%s: %zu bytes of stories (seed %llu)\n", out, len, (unsigned long long)seed);
    free(text);
    return st ? fl_cli_report(&err) : 0;
}

static int do_fetch(int argc, char **argv) {
    const char *dir = "data/tinystories", *name = NULL;
    static const struct option opts[] = {{"dir", 1, 0, 'd'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    reset_getopt();
    while ((c = next_opt(argc, argv, opts)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'h': help(stdout); return 0;
        default: return bad_option(argv);
        }
    }
    if (optind >= argc) return fl_cli_usage("data", "fetch needs a data set name (tinystories)");
    name = argv[optind];
    if (optind + 1 < argc) return fl_cli_usage("data", "unexpected argument '%s'", argv[optind + 1]);
    fl_error err = {0};
    fl_status st = fl_fetch_dataset(name, dir, &err);
    if (!st) printf("%s: downloaded into %s\n", name, dir);
    return st ? fl_cli_report(&err) : 0;
}

static int do_blimp(int argc, char **argv) {
    const char *out = NULL;
    uint64_t pairs = strtoull(DEFAULT_PAIRS, NULL, 10), seed = strtoull(DEFAULT_SEED, NULL, 10);
    static const struct option opts[] = {{"out", 1, 0, 'o'}, {"pairs", 1, 0, 'p'},
                                         {"seed", 1, 0, 's'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c, rc = 0;
    reset_getopt();
    while (!rc && (c = next_opt(argc, argv, opts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'p': rc = parse_u64("--pairs", optarg, 1, 1000000, &pairs); break;
        case 's': rc = parse_u64("--seed", optarg, 0, UINT64_MAX, &seed); break;
        case 'h': help(stdout); return 0;
        default: return bad_option(argv);
        }
    }
    if (rc) return rc;
    if (optind < argc) return fl_cli_usage("data", "unexpected argument '%s'", argv[optind]);
    if (!out) return fl_cli_usage("data", "blimp needs --out DIR");
    fl_error err = {0};
    fl_status st = fl_storygen_blimp(seed, (int)pairs, out, &err);
    if (!st) printf("%s: %llu minimal pairs per paradigm\n", out, (unsigned long long)pairs);
    return st ? fl_cli_report(&err) : 0;
}

int fl_cmd_data(int argc, char **argv) {
    static const fl_cli_action actions[] = {
        {"prepare", do_prepare},
        {"generate", do_generate},
        {"fetch", do_fetch},
        {"blimp", do_blimp},
    };
    return fl_cli_dispatch("data", argc, argv, actions, (int)(sizeof actions / sizeof actions[0]), help);
}
