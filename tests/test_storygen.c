/*
 * tests/test_storygen.c — the built-in story corpus and its minimal pairs.
 *
 * The generator must be deterministic in its seed, produce about the asked
 * number of bytes as TinyStories-format stories of 50–200 words, keep a
 * small vocabulary, and really encode agreement. The agreement checks use
 * word lists written here, independently of the generator's:
 *   - "the [adj] NOUN VERB": a plural noun takes like/are/were..., a singular
 *     one likes/is/was... (except after do/does, where the verb is bare);
 *   - this + singular, these/those/many/two/three + plural;
 *   - "a" before a consonant sound, "an" before a vowel;
 *   - a story about one girl never says he/him/his/himself (and vice
 *     versa); a story about two friends uses they/themselves, never he/she.
 * The BLiMP export is checked for its fields, its determinism, and that good
 * sentences pass the same checks while bad ones differ in the one agreeing
 * word.
 */
#include "support.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "corpus.h"
#include "storygen.h"

/* ---- word lists (this test's own) ----------------------------------------- */

static const char *const NOUNS[][2] = {
    {"dog", "dogs"},       {"cat", "cats"},         {"bird", "birds"},     {"frog", "frogs"},
    {"duck", "ducks"},     {"rabbit", "rabbits"},   {"bunny", "bunnies"},  {"fox", "foxes"},
    {"bear", "bears"},     {"lion", "lions"},       {"mouse", "mice"},     {"owl", "owls"},
    {"pig", "pigs"},       {"cow", "cows"},         {"horse", "horses"},   {"bee", "bees"},
    {"ant", "ants"},       {"elephant", "elephants"}, {"monkey", "monkeys"}, {"turtle", "turtles"},
    {"squirrel", "squirrels"}, {"puppy", "puppies"}, {"kitten", "kittens"}, {"goat", "goats"},
    {"hen", "hens"},       {"tiger", "tigers"},     {"wolf", "wolves"},    {"butterfly", "butterflies"},
    {"snail", "snails"},   {"goose", "geese"},      {"octopus", "octopuses"}, {"eagle", "eagles"},
    {"ball", "balls"},     {"kite", "kites"},       {"box", "boxes"},      {"leaf", "leaves"},
    {"apple", "apples"},   {"egg", "eggs"},         {"sandwich", "sandwiches"}, {"umbrella", "umbrellas"},
    {"car", "cars"},       {"book", "books"},       {"doll", "dolls"},     {"robot", "robots"},
};
#define N_NOUNS (sizeof NOUNS / sizeof NOUNS[0])

/* Present/past forms: [0] goes with a singular subject, [1] with a plural. */
static const char *const VERBS[][2] = {
    {"likes", "like"}, {"loves", "love"}, {"wants", "want"}, {"needs", "need"},
    {"is", "are"},     {"was", "were"},   {"has", "have"},   {"sees", "see"},
    {"barks", "bark"}, {"sings", "sing"}, {"hops", "hop"},   {"swims", "swim"},
    {"flies", "fly"},  {"runs", "run"},   {"sleeps", "sleep"}, {"buzzes", "buzz"},
    {"roars", "roar"}, {"climbs", "climb"}, {"digs", "dig"}, {"plays", "play"},
    {"eats", "eat"},   {"hides", "hide"},  {"walks", "walk"}, {"rests", "rest"},
    {"jumps", "jump"},
};
#define N_VERBS (sizeof VERBS / sizeof VERBS[0])

static const char *const GIRLS[] = {"lily", "mia", "sue", "anna", "emma", "lucy", "sara", "amy",
                                    "kim", "zoe", "ella", "rose", "jill", "molly", "daisy", "ruby"};
static const char *const BOYS[] = {"tom", "ben", "max", "sam", "tim", "jack", "leo", "bob",
                                   "joe", "dan", "finn", "jake", "ted", "billy", "timmy", "ollie"};

/* Index of w in a word list column, or -1. */
static int find2(const char *const (*list)[2], size_t n, int col, const char *w) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i][col], w)) return (int)i;
    return -1;
}

static int in_list(const char *const *list, size_t n, const char *w) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], w)) return 1;
    return 0;
}

/* Number of w as a noun: 0 singular, 1 plural, -1 not a known noun. */
static int noun_number(const char *w) {
    if (find2(NOUNS, N_NOUNS, 0, w) >= 0) return 0;
    if (find2(NOUNS, N_NOUNS, 1, w) >= 0) return 1;
    return -1;
}

static int verb_number(const char *w) {
    if (find2(VERBS, N_VERBS, 0, w) >= 0) return 0;
    if (find2(VERBS, N_VERBS, 1, w) >= 0) return 1;
    return -1;
}

/* ---- tokens ---------------------------------------------------------------- */

/* Lower-cased words; punctuation becomes "." so patterns never span it. */
typedef struct toks {
    char (*w)[32];
    size_t n;
} toks;

static toks tokenize(const char *s, size_t len) {
    toks t = {malloc((len + 1) * sizeof *t.w), 0};
    size_t i = 0;
    while (i < len) {
        if (isalpha((unsigned char)s[i])) {
            size_t k = 0;
            while (i < len && isalpha((unsigned char)s[i])) {
                if (k < 31) t.w[t.n][k++] = (char)tolower((unsigned char)s[i]);
                i++;
            }
            t.w[t.n++][k] = 0;
        } else {
            if (strchr(".,!?:\"\n", s[i])) strcpy(t.w[t.n++], ".");
            i++;
        }
    }
    return t;
}

/* ---- agreement checks -------------------------------------------------------- */

typedef struct tally {
    size_t sv_checked[2], det_checked[2], art_checked[2];
    size_t violations;
    char first[160];
} tally;

static void violation(tally *t, const toks *k, size_t at, const char *what) {
    if (!t->violations) {
        size_t from = at >= 4 ? at - 4 : 0;
        int n = snprintf(t->first, sizeof t->first, "%s:", what);
        for (size_t i = from; i < k->n && i < at + 5 && n < (int)sizeof t->first - 40; i++)
            n += snprintf(t->first + n, sizeof t->first - n, " %s", k->w[i]);
    }
    t->violations++;
}

/* Position of the head noun after a determiner at i, skipping up to two
   adjectives (any word that is not a known noun or verb), or 0. */
static size_t head_noun(const toks *k, size_t i) {
    for (size_t j = i + 1; j < k->n && j <= i + 3; j++) {
        if (!strcmp(k->w[j], ".") || verb_number(k->w[j]) >= 0) return 0;
        if (noun_number(k->w[j]) >= 0) return j;
    }
    return 0;
}

static void check_subject_verb(const toks *k, size_t i, tally *t) {
    if (strcmp(k->w[i], "the")) return;
    if (i > 0 && (!strcmp(k->w[i - 1], "does") || !strcmp(k->w[i - 1], "do"))) return;
    size_t j = head_noun(k, i);
    if (!j || j + 1 >= k->n) return;
    int vn = verb_number(k->w[j + 1]);
    if (vn < 0) return;
    int nn = noun_number(k->w[j]) == 1;
    t->sv_checked[nn]++;
    if (vn != nn) violation(t, k, i, "subject-verb");
}

static void check_determiner(const toks *k, size_t i, tally *t) {
    static const char *const SG[] = {"this"};
    static const char *const PL[] = {"these", "those", "many", "two", "three"};
    int want = in_list(SG, 1, k->w[i]) ? 0 : in_list(PL, 5, k->w[i]) ? 1 : -1;
    if (want < 0) return;
    size_t j = head_noun(k, i);
    if (!j) return;
    t->det_checked[want]++;
    if (noun_number(k->w[j]) != want) violation(t, k, i, "determiner-noun");
}

static void check_article(const toks *k, size_t i, tally *t) {
    int an = !strcmp(k->w[i], "an");
    if (!an && strcmp(k->w[i], "a")) return;
    if (i + 1 >= k->n || !strcmp(k->w[i + 1], ".")) return;
    int vowel = strchr("aeiou", k->w[i + 1][0]) != NULL;
    t->art_checked[an]++;
    if (vowel != an) violation(t, k, i, "a/an");
}

static tally check_text(const char *s, size_t len) {
    tally t;
    memset(&t, 0, sizeof t);
    toks k = tokenize(s, len);
    for (size_t i = 0; i < k.n; i++) {
        check_subject_verb(&k, i, &t);
        check_determiner(&k, i, &t);
        check_article(&k, i, &t);
    }
    free(k.w);
    return t;
}

/* Gender of a story's hero from "named X" / "named X and Y": 0 girl, 1 boy,
   2 a pair, -1 not found. */
static int hero_gender(const toks *k) {
    for (size_t i = 0; i + 1 < k->n; i++) {
        if (strcmp(k->w[i], "named")) continue;
        if (i + 2 < k->n && !strcmp(k->w[i + 2], "and")) return 2;
        if (in_list(GIRLS, 16, k->w[i + 1])) return 0;
        if (in_list(BOYS, 16, k->w[i + 1])) return 1;
    }
    return -1;
}

static int count_words(const toks *k, const char *const *list, size_t n) {
    int c = 0;
    for (size_t i = 0; i < k->n; i++) c += in_list(list, n, k->w[i]);
    return c;
}

/* Pronouns follow the hero: returns 0 when consistent. */
static int check_pronouns(const char *story, size_t len, int *gender) {
    static const char *const FEM[] = {"she", "her", "herself"};
    static const char *const MASC[] = {"he", "him", "his", "himself"};
    static const char *const PLUR[] = {"they", "them", "their", "themselves"};
    toks k = tokenize(story, len);
    int g = hero_gender(&k), bad = 0;
    int f = count_words(&k, FEM, 3), m = count_words(&k, MASC, 4), p = count_words(&k, PLUR, 4);
    if (g == 0) bad = m > 0 || f == 0;
    else if (g == 1) bad = f > 0 || m == 0;
    else if (g == 2) bad = f > 0 || m > 0 || p == 0;
    else bad = 1;
    *gender = g;
    free(k.w);
    return bad;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_deterministic(void **state) {
    (void)state;
    char *a, *b, *c;
    size_t na, nb, nc;
    fl_error err = {0};
    ts_assert_ok(fl_storygen_text(42, 100000, &a, &na, &err), &err);
    ts_assert_ok(fl_storygen_text(42, 100000, &b, &nb, &err), &err);
    ts_assert_ok(fl_storygen_text(43, 100000, &c, &nc, &err), &err);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    assert_true(na != nc || memcmp(a, c, na) != 0);
    /* a shorter request is a prefix of a longer one: stories do not depend on size */
    char *d;
    size_t nd;
    ts_assert_ok(fl_storygen_text(42, 5000, &d, &nd, &err), &err);
    assert_true(nd < na);
    assert_memory_equal(a, d, nd);
    free(a);
    free(b);
    free(c);
    free(d);
}

static void test_size_and_format(void **state) {
    (void)state;
    const size_t want = 300000;
    char *text;
    size_t len;
    fl_error err = {0};
    ts_assert_ok(fl_storygen_text(7, want, &text, &len, &err), &err);
    assert_int_equal(strlen(text), len);
    assert_true(len >= want);
    assert_true(len < want + 4000); /* stops after the story that crosses it */
    assert_int_equal(fl_utf8_check(text, len), len);
    const char *tail = "\n<|endoftext|>\n";
    assert_memory_equal(text + len - strlen(tail), tail, strlen(tail));
    fl_corpus c;
    ts_assert_ok(fl_corpus_parse(text, len, "<storygen>", &c, &err), &err);
    size_t seps = 0;
    for (const char *p = text; (p = strstr(p, tail)) != NULL; p++) seps++;
    assert_int_equal(c.n_docs, seps);
    assert_true(c.n_docs > 200);
    for (size_t i = 0; i < c.n_docs; i++) {
        toks k = tokenize(c.docs[i], c.lens[i]);
        size_t words = 0;
        for (size_t j = 0; j < k.n; j++) words += strcmp(k.w[j], ".") != 0;
        free(k.w);
        if (words < 50 || words > 200) fail_msg("story %zu has %zu words", i, words);
    }
    fl_corpus_free(&c);
    free(text);
}

static int cmp_word(const void *a, const void *b) { return strcmp(a, b); }

static void test_looks_like_tinystories(void **state) {
    (void)state;
    char *text;
    size_t len;
    fl_error err = {0};
    ts_assert_ok(fl_storygen_text(1, 200000, &text, &len, &err), &err);
    assert_non_null(strstr(text, "Once upon a time"));
    assert_non_null(strstr(text, "\" said "));
    assert_non_null(strstr(text, "named"));
    /* a moderate vocabulary a tiny model can learn */
    toks k = tokenize(text, len);
    size_t uniq = 0;
    qsort(k.w, k.n, sizeof *k.w, cmp_word);
    for (size_t i = 0; i < k.n; i++) uniq += i == 0 || strcmp(k.w[i], k.w[i - 1]) != 0;
    free(k.w);
    print_message("vocabulary: %zu lower-cased words in %zu bytes\n", uniq, len);
    assert_true(uniq >= 300 && uniq <= 900);
    free(text);
}

static void test_agreement(void **state) {
    (void)state;
    char *text;
    size_t len;
    fl_error err = {0};
    ts_assert_ok(fl_storygen_text(2024, 1000000, &text, &len, &err), &err);
    tally t = check_text(text, len);
    print_message("checked: subject-verb %zu sg / %zu pl, determiner %zu sg / %zu pl, "
                  "a %zu / an %zu\n", t.sv_checked[0], t.sv_checked[1], t.det_checked[0],
                  t.det_checked[1], t.art_checked[0], t.art_checked[1]);
    if (t.violations) fail_msg("%zu agreement violations; first: %s", t.violations, t.first);
    /* enough of each kind that a model must learn them */
    for (int n = 0; n < 2; n++) {
        assert_true(t.sv_checked[n] >= 500);
        assert_true(t.det_checked[n] >= 200);
        assert_true(t.art_checked[n] >= 200);
    }
    free(text);
}

static void test_pronouns_follow_hero(void **state) {
    (void)state;
    char *text;
    size_t len;
    fl_error err = {0};
    ts_assert_ok(fl_storygen_text(99, 300000, &text, &len, &err), &err);
    fl_corpus c;
    ts_assert_ok(fl_corpus_parse(text, len, "<storygen>", &c, &err), &err);
    int seen[3] = {0, 0, 0};
    for (size_t i = 0; i < c.n_docs; i++) {
        int g;
        if (check_pronouns(c.docs[i], c.lens[i], &g))
            fail_msg("story %zu (hero gender %d) mixes pronouns:\n%.*s", i, g, (int)c.lens[i],
                     c.docs[i]);
        seen[g]++;
    }
    for (int g = 0; g < 3; g++) assert_true(seen[g] > 20);
    fl_corpus_free(&c);
    free(text);
}

/* ---- BLiMP export ------------------------------------------------------------- */

static const char *const UIDS[] = {"subject_verb_agreement_builtin",
                                   "determiner_noun_agreement_builtin",
                                   "anaphor_agreement_builtin", "indefinite_article_builtin"};
#define N_UIDS (sizeof UIDS / sizeof UIDS[0])

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) fail_msg("field %s missing or not a string", key);
    return v->valuestring;
}

/* Are a and b a singular/plural (or a/an, reflexive) pair for this paradigm? */
static int differing_words_fit(const char *uid, const char *g, const char *b) {
    if (strstr(uid, "subject_verb")) {
        int i = find2(VERBS, N_VERBS, 0, g), j = find2(VERBS, N_VERBS, 1, g);
        size_t lg = strlen(g), lb = strlen(b);
        if (i >= 0 || j >= 0) return !strcmp(VERBS[i >= 0 ? i : j][i >= 0 ? 1 : 0], b);
        /* other verbs: the forms differ by the -s/-es/-ies ending */
        return (lb > lg && !strncmp(g, b, lg - 1)) || (lg > lb && !strncmp(g, b, lb - 1));
    }
    if (strstr(uid, "determiner_noun")) {
        size_t lg = strlen(g), lb = strlen(b);
        int n = noun_number(g), m = noun_number(b);
        if (n >= 0 && m >= 0) return n != m;
        return lg != lb; /* a noun outside this test's list: at least not the same */
    }
    if (strstr(uid, "indefinite")) return (!strcmp(g, "a") && !strcmp(b, "an")) ||
                                         (!strcmp(g, "an") && !strcmp(b, "a"));
    static const char *const REFL[] = {"herself", "himself", "themselves"};
    return in_list(REFL, 3, g) && in_list(REFL, 3, b) && strcmp(g, b);
}

/* The one differing word of two sentences (case kept); 0 if not exactly one. */
static int one_word_apart(const char *a, const char *b, char *wa, char *wb) {
    char x[512], y[512];
    snprintf(x, sizeof x, "%s", a);
    snprintf(y, sizeof y, "%s", b);
    char *sx = NULL, *sy = NULL, *p = strtok_r(x, " .", &sx), *q = strtok_r(y, " .", &sy);
    int diffs = 0;
    for (; p && q; p = strtok_r(NULL, " .", &sx), q = strtok_r(NULL, " .", &sy)) {
        if (!strcmp(p, q)) continue;
        diffs++;
        snprintf(wa, 32, "%s", p);
        snprintf(wb, 32, "%s", q);
    }
    return diffs == 1 && !p && !q;
}

/* BLiMP's prefix methods: one-prefix where the word decides after its left
   context, two-prefix where the word after it decides (a/an). */
static void check_prefix_fields(const cJSON *o, const char *uid, const char *good, const char *bad,
                                const char *wg, const char *wb) {
    int two = strstr(uid, "indefinite") != NULL;
    assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(o, "one_prefix_method")), !two);
    assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(o, "two_prefix_method")), two);
    if (!two) {
        const char *prefix = str_field(o, "one_prefix_prefix");
        assert_memory_equal(good, prefix, strlen(prefix));
        assert_memory_equal(bad, prefix, strlen(prefix));
        assert_string_equal(str_field(o, "one_prefix_word_good"), wg);
        assert_string_equal(str_field(o, "one_prefix_word_bad"), wb);
        return;
    }
    const char *pg = str_field(o, "two_prefix_prefix_good"), *pb = str_field(o, "two_prefix_prefix_bad");
    const char *next = str_field(o, "two_prefix_word");
    size_t lg = strlen(pg), lb = strlen(pb);
    assert_true(!strncmp(good, pg, lg) && good[lg] == ' ' && !strncmp(good + lg + 1, next, strlen(next)));
    assert_true(!strncmp(bad, pb, lb) && bad[lb] == ' ' && !strncmp(bad + lb + 1, next, strlen(next)));
}

/* The good reflexive matches its antecedent, the sentence's subject. */
static void check_reflexive(const char *good, const char *refl) {
    char first[32];
    size_t k = 0;
    for (; good[k] && good[k] != ' ' && k < 31; k++) first[k] = (char)tolower((unsigned char)good[k]);
    first[k] = 0;
    const char *want = strstr(good, " and ") ? "themselves"
                       : in_list(GIRLS, 16, first) ? "herself"
                       : in_list(BOYS, 16, first) ? "himself" : "?";
    if (strcmp(refl, want)) fail_msg("'%s': reflexive %s, want %s", good, refl, want);
}

static void check_blimp_file(const char *dir, const char *uid, int pairs) {
    char path[8704];
    snprintf(path, sizeof path, "%s/%s.jsonl", dir, uid);
    size_t len;
    char *data = ts_read_file(path, &len);
    if (!data) fail_msg("%s not written", path);
    int line = 0, caught = 0;
    for (char *p = data, *nl; *p; p = nl + 1, line++) {
        nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = 0;
        cJSON *o = cJSON_Parse(p);
        if (!o) fail_msg("%s:%d: not JSON", path, line + 1);
        const char *good = str_field(o, "sentence_good"), *bad = str_field(o, "sentence_bad");
        assert_string_equal(str_field(o, "UID"), uid);
        assert_string_equal(str_field(o, "field"), "morphology");
        assert_non_null(str_field(o, "linguistics_term"));
        char id[16];
        snprintf(id, sizeof id, "%d", line);
        assert_string_equal(str_field(o, "pairID"), id);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "simple_LM_method")));
        assert_true(cJSON_IsBool(cJSON_GetObjectItem(o, "lexically_identical")));
        assert_true(strcmp(good, bad) != 0);
        assert_true(isupper((unsigned char)good[0]) && good[strlen(good) - 1] == '.');
        /* every pair differs in exactly the one agreeing word */
        char wg[32], wb[32];
        if (!one_word_apart(good, bad, wg, wb))
            fail_msg("%s:%d: '%s' / '%s' differ in more than one word", path, line + 1, good, bad);
        if (!differing_words_fit(uid, wg, wb))
            fail_msg("%s:%d: '%s' vs '%s' is not an agreement contrast", path, line + 1, wg, wb);
        check_prefix_fields(o, uid, good, bad, wg, wb);
        if (strstr(uid, "anaphor")) check_reflexive(good, wg);
        /* the good sentence passes this test's own checks */
        tally t = check_text(good, strlen(good));
        if (t.violations) fail_msg("%s:%d: good sentence fails: %s", path, line + 1, t.first);
        /* ... and the bad one fails them whenever its words are in this test's lists */
        t = check_text(bad, strlen(bad));
        caught += t.violations > 0;
        if (strstr(uid, "indefinite") && !t.violations)
            fail_msg("%s:%d: bad sentence '%s' passes the a/an check", path, line + 1, bad);
        cJSON_Delete(o);
    }
    assert_int_equal(line, pairs);
    if (!strstr(uid, "anaphor") && caught < pairs / 3)
        fail_msg("%s: only %d of %d bad sentences break agreement by this test's lists", path,
                 caught, pairs);
    free(data);
}

static void test_blimp_export(void **state) {
    (void)state;
    char *dir = ts_tmpdir();
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/pairs", dir); /* created by the export */
    fl_error err = {0};
    ts_assert_ok(fl_storygen_blimp(5, 200, sub, &err), &err);
    for (size_t i = 0; i < N_UIDS; i++) check_blimp_file(sub, UIDS[i], 200);

    /* deterministic in the seed */
    char again[4200], path1[4400 + 64], path2[4400 + 64];
    snprintf(again, sizeof again, "%s/again", dir);
    ts_assert_ok(fl_storygen_blimp(5, 200, again, &err), &err);
    for (size_t i = 0; i < N_UIDS; i++) {
        snprintf(path1, sizeof path1, "%s/%s.jsonl", sub, UIDS[i]);
        snprintf(path2, sizeof path2, "%s/%s.jsonl", again, UIDS[i]);
        size_t n1, n2;
        char *a = ts_read_file(path1, &n1), *b = ts_read_file(path2, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(a, b, n1);
        free(a);
        free(b);
    }
    assert_int_equal(fl_storygen_blimp(5, 0, sub, &err), FL_EINVAL);
    ts_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_size_and_format),
        cmocka_unit_test(test_looks_like_tinystories),
        cmocka_unit_test(test_agreement),
        cmocka_unit_test(test_pronouns_follow_hero),
        cmocka_unit_test(test_blimp_export),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
