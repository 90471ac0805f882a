/*
 * tasks/blimp/blimp.h — BLiMP minimal pairs: reading and scoring.
 *
 * Readers accept every layout the field uses:
 *   - the BLiMP release: one <UID>.jsonl per paradigm (sentence_good,
 *     sentence_bad, field, linguistics_term, UID, pairID, ...);
 *   - BabyLM-filtered per-paradigm files (the same fields, pair_id an int);
 *   - the BabyLM 2023 layout: one <phenomenon>.json per phenomenon, holding
 *     the records of all its paradigms (JSON Lines despite the suffix);
 *   - the BabyLM supplement tasks (sentence_good, sentence_bad and their own
 *     descriptors; no UID): one task per file.
 * Each record needs sentence_good and sentence_bad (non-empty strings). The
 * paradigm is UID, else the file stem. The phenomenon is BabyLM 2023's
 * grouping of linguistics_term into 12 (s-selection is counted with
 * argument_structure, filler_gap_dependency is filler_gap), else the file
 * stem. field is normalised ("syntax/semantics" → "syntax_semantics").
 *
 * Every malformed line is reported as "FILE:LINE: what" — with on_error=stop
 * that is the error; with skip it is counted (and the first few logged).
 */
#ifndef FFNLAB_TASK_BLIMP_H
#define FFNLAB_TASK_BLIMP_H

#include <stdint.h>

#include "../common/task_util.h"

typedef struct blimp_pair {
    char *good, *bad;
    int32_t paradigm, phenomenon, field;  /* indices into the set's tables */
    int32_t supplement;                   /* 1: from a supplement file (reported apart) */
} blimp_pair;

#define BLIMP_MAX_NOTES 5

typedef struct blimp_set {
    blimp_pair *pairs;
    int64_t n, cap;
    tu_strtab paradigms, phenomena, fields;
    int64_t skipped_lines;     /* malformed lines passed over (on_error=skip) */
    int64_t empty_files;       /* files without a single pair (on_error=skip) */
    int64_t files;
    char notes[BLIMP_MAX_NOTES][256];  /* the first skipped lines' messages */
    int n_notes;
} blimp_set;

/* Reads one file into s. supplement: the file is a supplement task. skip:
   on_error=skip. only: UIDs (or file stems) to keep, NULL = all. */
fl_status blimp_read_file(blimp_set *s, const char *path, int supplement, int skip, const tu_list *only,
                          fl_error *err);
/* A folder (its *.jsonl and *.json files, sorted) or one file. */
fl_status blimp_read_path(blimp_set *s, const char *path, int supplement, int skip, const tu_list *only,
                          fl_error *err);
void blimp_set_free(blimp_set *s);

/* Total log-probability of every sentence, <|endoftext|> prepended:
   lp_good[i], lp_bad[i] for pair i. The shared token prefix of a pair is
   scored once (its log-probabilities are the same in both sentences).
   Sentences longer than the context keep their first context tokens;
   *truncated counts the pairs that lost tokens, *tokens the tokens of all
   sentences (with the eot). batch: sequences per forward (0 = the host's
   choice). */
fl_status blimp_score(const fl_task_services *svc, const blimp_set *s, int32_t batch, double *lp_good,
                      double *lp_bad, int64_t *truncated, int64_t *tokens, fl_error *err);
/* The same for an encoder (svc->arch FL_TASK_ARCH_BERT): each sentence's
   pseudo-log-likelihood, as <s> sentence </s>, every word masked in turn
   (blimp_pll.c); *tokens counts the sentences' tokens with <s> and </s>. */
fl_status blimp_score_pll(const fl_task_services *svc, const blimp_set *s, int32_t batch, double *lp_good,
                          double *lp_bad, int64_t *truncated, int64_t *tokens, fl_error *err);

#endif
