/*
 * text/storygen.h — the built-in corpus: a small story grammar.
 *
 * So `ffnlab train` works on a fresh machine with no download, ffnlab
 * generates its own TinyStories-like corpus from a seeded probabilistic
 * grammar. The grammar encodes agreement a model must learn (subject–verb
 * number, determiner–noun number, pronoun gender/number, a/an), so a trained
 * model can be told apart from an untrained one on minimal pairs. Output is in
 * the TinyStories release format: stories separated by "<|endoftext|>" lines.
 */
#ifndef FFNLAB_STORYGEN_H
#define FFNLAB_STORYGEN_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/status.h"

/* About `bytes` bytes of stories (stops after the story that crosses it),
   deterministic in seed. Returns malloc'ed NUL-terminated text. */
fl_status fl_storygen_text(uint64_t seed, size_t bytes, char **text, size_t *len, fl_error *err);

/* Minimal pairs for the agreements the grammar encodes, in the BLiMP JSON
   Lines format (sentence_good, sentence_bad, field, linguistics_term, UID,
   simple_LM_method, one_prefix_method, two_prefix_method,
   lexically_identical, pairID, and the one_prefix_* fields where the pair
   differs in one word): one <UID>.jsonl per paradigm in out_dir (created if
   missing), written atomically, deterministic in seed. The paradigms are
   subject_verb_agreement_builtin, determiner_noun_agreement_builtin,
   anaphor_agreement_builtin and indefinite_article_builtin. */
fl_status fl_storygen_blimp(uint64_t seed, int pairs_per_paradigm, const char *out_dir,
                            fl_error *err);

#endif
