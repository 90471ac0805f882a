/*
 * cli/cmd_tokenizer.c — `ffnlab tokenizer`: train a byte-level BPE, encode
 * text with one, decode ids back to text.
 *
 *   ffnlab tokenizer train --corpus PATH --vocab-size N --out tokenizer.json
 *   ffnlab tokenizer encode --tokenizer tokenizer.json [--text S]   (else stdin)
 *   ffnlab tokenizer decode --tokenizer tokenizer.json [ID...]      (else ids on stdin)
 *
 * Each action parses its own flags (getopt_long), calls the tokenizer library
 * (text/tokenizer.h) and prints its result; errors go through fl_cli_report.
 * encode prints ids separated by spaces on one line; decode writes the exact
 * bytes, with no newline added, so `encode | decode` reproduces the input.
 */
#include <errno.h>   /* errno */
#include <getopt.h>  /* getopt_long */
#include <stdio.h>   /* printf, fread, fwrite */
#include <stdlib.h>  /* strtol, free */
#include <string.h>  /* strcmp, strlen */
#include <time.h>    /* clock_gettime */

#include "cli.h"
#include "clock.h"
#include "corpus.h"
#include "error.h"
#include "tokenizer.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: ffnlab tokenizer ACTION [options]\n\n"
            "  train --corpus PATH --vocab-size N --out tokenizer.json [--arch gpt|bert]\n"
            "      learn a byte-level BPE (GPT-2's scheme) of N ids from a corpus (plain text\n"
            "      with <|endoftext|> lines, or JSON Lines with a \"text\" field); the file is\n"
            "      in the Hugging Face tokenizer.json layout. --arch bert: an encoder's, with\n"
            "      <s> </s> <pad> <mask> as its last ids (within N)\n"
            "  encode --tokenizer tokenizer.json [--text S]\n"
            "      print the ids of S (or of standard input), separated by spaces\n"
            "  decode --tokenizer tokenizer.json [ID ...]\n"
            "      write the text of the ids (or of the ids on standard input)\n");
}

/* ---- shared bits ------------------------------------------------------ */

static void reset_getopt(void) {
    optind = 1;
    opterr = 0;
}

static int bad_option(char **argv) {
    return fl_cli_usage("tokenizer", "unknown or incomplete option '%s'", argv[optind - 1]);
}

/* Reads all of standard input (malloc'ed, NUL-terminated). */
static fl_status read_stdin(char **out, size_t *len, fl_error *err) {
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap + 1);
    while (buf && (r = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    if (!buf) return fl_fail(err, FL_ENOMEM, "out of memory reading standard input");
    if (ferror(stdin)) {
        free(buf);
        return fl_fail(err, FL_EIO, "reading standard input failed");
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return FL_OK;
}

/* Parses one id; 0 on success, else the usage error's exit code. */
static int parse_id(const char *s, int32_t *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 0 || v > INT32_MAX)
        return fl_cli_usage("tokenizer", "'%s' is not a token id", s);
    *out = (int32_t)v;
    return 0;
}

/* ---- actions ---------------------------------------------------------- */

static int do_train(int argc, char **argv) {
    const char *corpus = NULL, *out = NULL, *arch = "gpt";
    int32_t vocab = 0;
    static const struct option opts[] = {{"corpus", 1, 0, 'c'}, {"vocab-size", 1, 0, 'v'},
                                         {"out", 1, 0, 'o'},    {"arch", 1, 0, 'a'},
                                         {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    int c, rc = 0;
    reset_getopt();
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': corpus = optarg; break;
        case 'o': out = optarg; break;
        case 'a': arch = optarg; break;
        case 'v': rc = parse_id(optarg, &vocab); break;
        case 'h': help(stdout); return 0;
        default: return bad_option(argv);
        }
    }
    if (rc) return rc;
    if (optind < argc) return fl_cli_usage("tokenizer", "unexpected argument '%s'", argv[optind]);
    if (!corpus || !out || !vocab)
        return fl_cli_usage("tokenizer", "train needs --corpus, --vocab-size and --out");
    const int bert = !strcmp(arch, "bert"); /* the encoder's special tokens, as ffnlab train --arch bert makes */
    if (!bert && strcmp(arch, "gpt")) return fl_cli_usage("tokenizer", "--arch %s: expected gpt or bert", arch);
    fl_error err = {0};
    fl_corpus cp = {0};
    fl_tokenizer *tok = NULL;
    double t0 = fl_now_s(), t1 = t0;
    fl_status st = fl_corpus_read(corpus, &cp, &err);
    if (!st) {
        t1 = fl_now_s();
        st = bert ? fl_tokenizer_train_special(cp.docs, cp.lens, cp.n_docs, vocab, FL_ENCODER_SPECIALS,
                                               FL_N_ENCODER_SPECIALS, &tok, &err)
                  : fl_tokenizer_train(cp.docs, cp.lens, cp.n_docs, vocab, &tok, &err);
    }
    if (!st) st = fl_tokenizer_save(tok, out, &err);
    if (!st)
        printf("%s: %d ids learned from %zu documents (%.1f MB) in %.2f s (reading %.2f s)\n", out,
               (int)fl_tokenizer_vocab_size(tok), cp.n_docs, (double)cp.bytes / 1e6, fl_now_s() - t1,
               t1 - t0);
    fl_tokenizer_free(tok);
    fl_corpus_free(&cp);
    return st ? fl_cli_report(&err) : 0;
}

/* Prints ids as one line of decimal numbers. */
static void print_ids(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
    putchar('\n');
}

static int do_encode(int argc, char **argv) {
    const char *tok_path = NULL, *text = NULL;
    static const struct option opts[] = {{"tokenizer", 1, 0, 't'}, {"text", 1, 0, 's'},
                                         {"help", 0, 0, 'h'},      {0, 0, 0, 0}};
    int c;
    reset_getopt();
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': tok_path = optarg; break;
        case 's': text = optarg; break;
        case 'h': help(stdout); return 0;
        default: return bad_option(argv);
        }
    }
    if (optind < argc) return fl_cli_usage("tokenizer", "unexpected argument '%s'", argv[optind]);
    if (!tok_path) return fl_cli_usage("tokenizer", "encode needs --tokenizer");
    fl_error err = {0};
    fl_tokenizer *tok = NULL;
    char *input = NULL;
    size_t len = text ? strlen(text) : 0, n = 0;
    int32_t *ids = NULL;
    fl_status st = fl_tokenizer_load(tok_path, &tok, &err);
    if (!st && !text) st = read_stdin(&input, &len, &err);
    if (!st) st = fl_tokenizer_encode(tok, text ? text : input, len, &ids, &n, &err);
    if (!st) print_ids(ids, n);
    free(ids);
    free(input);
    fl_tokenizer_free(tok);
    return st ? fl_cli_report(&err) : 0;
}

/* Ids from the arguments, or else whitespace-separated on stdin. */
static int gather_ids(int argc, char **argv, int32_t **ids, size_t *n, fl_error *err) {
    char *input = NULL, *save = NULL;
    size_t len = 0, cap = (size_t)argc + 16;
    if (argc == 0 && read_stdin(&input, &len, err)) return fl_cli_report(err);
    int32_t *v = malloc(cap * sizeof *v);
    int rc = v ? 0 : fl_cli_report(&(fl_error){FL_ENOMEM, "out of memory"});
    *n = 0;
    for (int i = 0; !rc && i < argc; i++) rc = parse_id(argv[i], &v[(*n)++]);
    for (char *w = input ? strtok_r(input, " \t\r\n", &save) : NULL; !rc && w;
         w = strtok_r(NULL, " \t\r\n", &save)) {
        if (*n == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) rc = fl_cli_report(&(fl_error){FL_ENOMEM, "out of memory"});
            else v = nv;
        }
        if (!rc) rc = parse_id(w, &v[(*n)++]);
    }
    free(input);
    if (rc) free(v);
    else *ids = v;
    return rc;
}

static int do_decode(int argc, char **argv) {
    const char *tok_path = NULL;
    static const struct option opts[] = {{"tokenizer", 1, 0, 't'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    reset_getopt();
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': tok_path = optarg; break;
        case 'h': help(stdout); return 0;
        default: return bad_option(argv);
        }
    }
    if (!tok_path) return fl_cli_usage("tokenizer", "decode needs --tokenizer");
    fl_error err = {0};
    fl_tokenizer *tok = NULL;
    if (fl_tokenizer_load(tok_path, &tok, &err)) return fl_cli_report(&err);
    int32_t *ids = NULL;
    size_t n = 0, len = 0;
    int rc = gather_ids(argc - optind, argv + optind, &ids, &n, &err);
    if (!rc && fl_tokenizer_check_ids(tok, ids, n, &err)) {
        fl_error_prefix(&err, "%s", tok_path);
        rc = fl_cli_report(&err);
    }
    char *text = rc ? NULL : fl_tokenizer_decode(tok, ids, n, &len);
    if (!rc && !text) rc = fl_cli_report(&(fl_error){FL_ENOMEM, "out of memory decoding"});
    if (!rc && fwrite(text, 1, len, stdout) != len)
        rc = fl_cli_report(&(fl_error){FL_EIO, "writing standard output failed"});
    free(text);
    free(ids);
    fl_tokenizer_free(tok);
    return rc;
}

int fl_cmd_tokenizer(int argc, char **argv) {
    static const fl_cli_action actions[] = {
        {"train", do_train},
        {"encode", do_encode},
        {"decode", do_decode},
    };
    return fl_cli_dispatch("tokenizer", argc, argv, actions, (int)(sizeof actions / sizeof actions[0]), help);
}
