/*
 * text/storygen.c — the built-in corpus: a seeded story grammar (see storygen.h).
 *
 * Stories follow the TinyStories shape: an opening ("Once upon a time, there
 * was a little girl named Lily."), an introduction, an outing with dialogue,
 * a small problem, its resolution and a moral. The vocabulary is deliberately
 * small (about 500 word forms) so a tiny model can learn it in minutes, and
 * the grammar keeps the agreements a model has to learn exact:
 *   - subject–verb number in the present tense, which appears in dialogue
 *     and general statements ("The dogs like to run." / "The dog likes to
 *     run."), and was/were in the narration;
 *   - determiner–noun number (this/these, that/those, many, two, a/an);
 *   - a/an chosen by the sound of the next word;
 *   - pronouns and reflexives that follow their antecedent's gender and
 *     number (Lily ... she ... her ... herself; Tom and Ben ... they ...
 *     themselves; the dog ... it).
 * fl_storygen_blimp() writes minimal pairs for those same constructions in
 * the BLiMP JSON Lines format, so a model trained on this corpus can be
 * scored on exactly what the corpus teaches.
 *
 * Randomness is fl_rng_bits(key, counter) with a running counter, so the
 * text is a pure function of the seed.
 */
#include "storygen.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ffnlab/rng.h"
#include "fsutil.h"

#define MIN_WORDS 50
#define MAX_WORDS 200

/* ---- vocabulary ------------------------------------------------------------ */

typedef struct verb {
    const char *base, *s3, *past;
} verb;

/* Intransitive activities: "likes to V", "V every day", "loved to V". */
enum {
    V_PLAY, V_RUN, V_JUMP, V_SWIM, V_SING, V_DANCE, V_FLY, V_SLEEP, V_CLIMB, V_HOP, V_HIDE,
    V_BARK, V_ROAR, V_BUZZ, V_DIG, V_WALK, V_EAT, V_REST, V_LAUGH, V_READ, V_DRAW, V_SPLASH,
    V_EXPLORE, N_ACTS
};
static const verb ACTS[N_ACTS] = {
    {"play", "plays", "played"},   {"run", "runs", "ran"},          {"jump", "jumps", "jumped"},
    {"swim", "swims", "swam"},     {"sing", "sings", "sang"},       {"dance", "dances", "danced"},
    {"fly", "flies", "flew"},      {"sleep", "sleeps", "slept"},    {"climb", "climbs", "climbed"},
    {"hop", "hops", "hopped"},     {"hide", "hides", "hid"},        {"bark", "barks", "barked"},
    {"roar", "roars", "roared"},   {"buzz", "buzzes", "buzzed"},    {"dig", "digs", "dug"},
    {"walk", "walks", "walked"},   {"eat", "eats", "ate"},          {"rest", "rests", "rested"},
    {"laugh", "laughs", "laughed"}, {"read", "reads", "read"},      {"draw", "draws", "drew"},
    {"splash", "splashes", "splashed"}, {"explore", "explores", "explored"},
};
/* Activities children (not animals) do. */
static const int KID_ACTS[] = {V_PLAY, V_RUN, V_JUMP, V_SWIM, V_SING, V_DANCE, V_CLIMB, V_HIDE,
                               V_DIG, V_WALK, V_LAUGH, V_READ, V_DRAW, V_SPLASH, V_EXPLORE};
#define N_KID_ACTS (sizeof KID_ACTS / sizeof KID_ACTS[0])

/* Verbs that take an object: "the dog likes me", "I want these balls". */
static const verb TRANS[] = {
    {"like", "likes", "liked"}, {"love", "loves", "loved"}, {"want", "wants", "wanted"},
    {"need", "needs", "needed"}, {"see", "sees", "saw"},    {"have", "has", "had"},
};
#define N_TRANS (sizeof TRANS / sizeof TRANS[0])
/* Verbs that take "to V": "The dogs like to run." */
static const verb WANTS[] = {
    {"like", "likes", "liked"}, {"love", "loves", "loved"}, {"want", "wants", "wanted"},
    {"need", "needs", "needed"},
};
#define N_WANTS (sizeof WANTS / sizeof WANTS[0])

typedef struct noun {
    const char *sg, *pl;
    int act; /* an animal's typical activity (ACTS index); -1 for things */
} noun;

/* Toys come first in THINGS: the hero's favourite (and lost) thing is one. */
#define N_TOYS 22

static const noun ANIMALS[] = {
    {"dog", "dogs", V_BARK},          {"cat", "cats", V_SLEEP},        {"bird", "birds", V_SING},
    {"frog", "frogs", V_HOP},         {"duck", "ducks", V_SWIM},       {"rabbit", "rabbits", V_HOP},
    {"bunny", "bunnies", V_HOP},      {"fox", "foxes", V_RUN},         {"bear", "bears", V_SLEEP},
    {"lion", "lions", V_ROAR},        {"mouse", "mice", V_HIDE},       {"owl", "owls", V_FLY},
    {"pig", "pigs", V_DIG},           {"cow", "cows", V_EAT},          {"horse", "horses", V_RUN},
    {"bee", "bees", V_BUZZ},          {"ant", "ants", V_DIG},          {"elephant", "elephants", V_WALK},
    {"monkey", "monkeys", V_CLIMB},   {"turtle", "turtles", V_SWIM},   {"squirrel", "squirrels", V_CLIMB},
    {"puppy", "puppies", V_PLAY},     {"kitten", "kittens", V_PLAY},   {"goat", "goats", V_JUMP},
    {"hen", "hens", V_EAT},           {"tiger", "tigers", V_ROAR},     {"wolf", "wolves", V_RUN},
    {"butterfly", "butterflies", V_FLY}, {"snail", "snails", V_REST},  {"goose", "geese", V_SWIM},
    {"octopus", "octopuses", V_SWIM}, {"eagle", "eagles", V_FLY},
};
#define N_ANIMALS (sizeof ANIMALS / sizeof ANIMALS[0])

/* Animals a child keeps at home. */
static const char *const PETS[] = {"dog", "cat", "bird", "frog", "duck", "rabbit",
                                   "bunny", "mouse", "turtle", "puppy", "kitten"};
#define N_PETS (sizeof PETS / sizeof PETS[0])

static const noun THINGS[] = {
    {"ball", "balls", -1},       {"kite", "kites", -1},       {"toy", "toys", -1},
    {"car", "cars", -1},         {"truck", "trucks", -1},     {"boat", "boats", -1},
    {"book", "books", -1},       {"doll", "dolls", -1},       {"hat", "hats", -1},
    {"drum", "drums", -1},       {"balloon", "balloons", -1}, {"block", "blocks", -1},
    {"umbrella", "umbrellas", -1}, {"bike", "bikes", -1},     {"train", "trains", -1},
    {"crayon", "crayons", -1},   {"robot", "robots", -1},     {"teddy bear", "teddy bears", -1},
    {"airplane", "airplanes", -1}, {"puzzle", "puzzles", -1}, {"bell", "bells", -1},
    {"ring", "rings", -1},
    /* not toys */
    {"box", "boxes", -1},        {"cup", "cups", -1},         {"stick", "sticks", -1},
    {"rock", "rocks", -1},       {"shell", "shells", -1},     {"flower", "flowers", -1},
    {"leaf", "leaves", -1},      {"apple", "apples", -1},     {"egg", "eggs", -1},
    {"orange", "oranges", -1},   {"cookie", "cookies", -1},   {"cake", "cakes", -1},
    {"star", "stars", -1},       {"shoe", "shoes", -1},       {"picture", "pictures", -1},
    {"blanket", "blankets", -1}, {"basket", "baskets", -1},   {"key", "keys", -1},
    {"sandwich", "sandwiches", -1}, {"banana", "bananas", -1}, {"carrot", "carrots", -1},
    {"bucket", "buckets", -1},   {"acorn", "acorns", -1},
};
#define N_THINGS (sizeof THINGS / sizeof THINGS[0])
_Static_assert(N_TOYS < N_THINGS, "the toys are a prefix of THINGS");

/* Adjectives for animals (moods, looks) and for things (looks, state). */
static const char *const ANIMAL_ADJS[] = {
    "big", "small", "little", "tiny", "brown", "white", "happy", "sad", "old", "funny",
    "pretty", "fast", "slow", "loud", "quiet", "fluffy", "sleepy", "hungry", "silly", "strong",
    "wet", "dirty", "angry", "excited", "amazing", "beautiful", "lovely", "nice", "gentle",
    "kind", "brave",
};
static const char *const THING_ADJS[] = {
    "big", "small", "little", "tiny", "red", "blue", "green", "yellow", "pink", "purple",
    "brown", "white", "shiny", "soft", "old", "new", "pretty", "round", "wet", "dirty", "clean",
    "special", "magic", "colorful", "bright", "amazing", "beautiful", "lovely", "nice",
};
#define N_ANIMAL_ADJS (sizeof ANIMAL_ADJS / sizeof ANIMAL_ADJS[0])
#define N_THING_ADJS (sizeof THING_ADJS / sizeof THING_ADJS[0])

/* Adjectives that suit a person or an animal as a character. */
static const char *const CHAR_ADJS[] = {"little", "kind", "happy", "brave", "small", "funny",
                                        "gentle", "curious", "shy", "friendly", "clever", "old"};
#define N_CHAR_ADJS (sizeof CHAR_ADJS / sizeof CHAR_ADJS[0])

/* How a character feels (always after was/were). */
static const char *const FEELINGS_GOOD[] = {"happy", "glad", "excited", "proud", "thankful"};
static const char *const FEELINGS_BAD[] = {"sad", "upset", "scared", "worried", "angry"};

static const char *const GIRLS[] = {"Lily", "Mia", "Sue", "Anna", "Emma", "Lucy", "Sara", "Amy",
                                    "Kim", "Zoe", "Ella", "Rose", "Jill", "Molly", "Daisy", "Ruby"};
static const char *const BOYS[] = {"Tom", "Ben", "Max", "Sam", "Tim", "Jack", "Leo", "Bob",
                                   "Joe", "Dan", "Finn", "Jake", "Ted", "Billy", "Timmy", "Ollie"};
#define N_GIRLS (sizeof GIRLS / sizeof GIRLS[0])
#define N_BOYS (sizeof BOYS / sizeof BOYS[0])

typedef struct place {
    const char *name, *prep; /* "park", "in" */
} place;
static const place PLACES[] = {
    {"park", "in"},  {"garden", "in"}, {"forest", "in"},   {"beach", "on"}, {"river", "by"},
    {"lake", "by"},  {"farm", "on"},   {"yard", "in"},     {"kitchen", "in"}, {"school", "at"},
    {"hill", "on"},  {"pond", "by"},   {"store", "at"},    {"zoo", "at"},   {"playground", "at"},
    {"woods", "in"}, {"field", "in"},  {"sea", "by"},      {"town", "in"},  {"meadow", "in"},
};
#define N_PLACES (sizeof PLACES / sizeof PLACES[0])

/* Spots near which something is found. */
static const char *const SPOTS[] = {"the tree", "the big rock", "the water", "the old house",
                                    "the fence", "the flowers", "the path", "the bench"};
#define N_SPOTS (sizeof SPOTS / sizeof SPOTS[0])

/* Morals: present-tense statements, so they carry agreement too. */
static const char *const MORALS[] = {
    "friends help each other",        "a good friend helps others",
    "sharing makes everyone happy",   "it is good to share",
    "kind words make people happy",   "a kind word makes people happy",
    "being brave is important",       "we should always be kind to animals",
    "saying sorry is the right thing to do", "little things can make a big difference",
    "good friends are always there for you", "a good friend is always there for you",
    "it is fun to try new things",    "a happy heart makes a happy day",
};
#define N_MORALS (sizeof MORALS / sizeof MORALS[0])

/* ---- pronouns -------------------------------------------------------------- */

enum { G_F, G_M, G_PL, G_IT };
static const char *const P_SUBJ[] = {"she", "he", "they", "it"};
static const char *const P_OBJ[] = {"her", "him", "them", "it"};
static const char *const P_POSS[] = {"her", "his", "their", "its"};
static const char *const P_REFL[] = {"herself", "himself", "themselves", "itself"};

/* ---- the writer: words, punctuation, quotes, capitals ---------------------- */

typedef struct gen {
    uint64_t key, ctr;
    char *buf;
    size_t n, cap;
    int oom;
    int space;    /* put a space before the next word */
    int cap_next; /* capitalise the next word */
} gen;

static uint32_t rnd(gen *g, uint32_t n) {
    uint64_t r = fl_rng_bits(g->key, g->ctr++);
    return (uint32_t)(((r >> 32) * (uint64_t)n) >> 32); /* unbiased enough, no modulo skew */
}

static int chance(gen *g, int percent) { return rnd(g, 100) < (uint32_t)percent; }

#define PICK(g, arr) ((arr)[rnd((g), (uint32_t)(sizeof(arr) / sizeof((arr)[0])))])

static void put(gen *g, const char *s, size_t k) {
    if (g->oom) return;
    if (g->n + k + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 1 << 16;
        while (cap < g->n + k + 1) cap *= 2;
        char *p = realloc(g->buf, cap);
        if (!p) {
            g->oom = 1;
            return;
        }
        g->buf = p;
        g->cap = cap;
    }
    memcpy(g->buf + g->n, s, k);
    g->n += k;
    g->buf[g->n] = 0;
}

static void word(gen *g, const char *w) {
    if (g->space) put(g, " ", 1);
    if (g->cap_next && w[0] >= 'a' && w[0] <= 'z') {
        char c = (char)(w[0] - 'a' + 'A');
        put(g, &c, 1);
        put(g, w + 1, strlen(w + 1));
    } else {
        put(g, w, strlen(w));
    }
    g->space = 1;
    g->cap_next = 0;
}

static void punct(gen *g, char c) {
    put(g, &c, 1);
    g->space = 1;
    if (c == '.' || c == '!' || c == '?') g->cap_next = 1;
}

static void quote_open(gen *g) {
    if (g->space) put(g, " ", 1);
    put(g, "\"", 1);
    g->space = 0;
    g->cap_next = 1;
}

/* tagged: a speech tag ("said Lily") follows, so no capital after it. */
static void quote_close(gen *g, int tagged) {
    put(g, "\"", 1);
    g->space = 1;
    if (tagged) g->cap_next = 0;
}

static void paragraph(gen *g) {
    put(g, "\n\n", 2);
    g->space = 0;
    g->cap_next = 1;
}

static int starts_with_vowel(const char *w) { return w[0] && strchr("aeiouAEIOU", w[0]) != NULL; }

/* "a" or "an" for the word that follows (the vocabulary has no "unicorn"s). */
static void article(gen *g, const char *next) { word(g, starts_with_vowel(next) ? "an" : "a"); }

/* ---- noun phrases ---------------------------------------------------------- */

/* det: NULL (bare), "a" (a/an chosen here), or any determiner word. */
static void noun_phrase(gen *g, const char *det, const char *adj, const noun *n, int plural) {
    const char *head = plural ? n->pl : n->sg;
    if (det && !strcmp(det, "a")) article(g, adj ? adj : head);
    else if (det) word(g, det);
    if (adj) word(g, adj);
    word(g, head);
}

static int is_animal(const noun *n) { return n >= ANIMALS && n < ANIMALS + N_ANIMALS; }

/* An adjective that suits n, now and then (percent of the time), else NULL. */
static const char *adj_for(gen *g, const noun *n) {
    return is_animal(n) ? ANIMAL_ADJS[rnd(g, N_ANIMAL_ADJS)] : THING_ADJS[rnd(g, N_THING_ADJS)];
}

static const char *maybe_adj(gen *g, const noun *n, int percent) {
    return chance(g, percent) ? adj_for(g, n) : NULL;
}

/* Determiners by number, for "Look at this dog!" / "these dogs". */
static const char *demonstrative(gen *g, int plural) {
    static const char *const SG[] = {"this", "that"}, *const PL[] = {"these", "those"};
    return plural ? PICK(g, PL) : PICK(g, SG);
}

/* An indefinite phrase: "a big dog", "many dogs", "two little dogs". */
static void indefinite(gen *g, const noun *n, int plural) {
    static const char *const QUANT[] = {"many", "some", "two", "three", "lots of", "a few"};
    noun_phrase(g, plural ? PICK(g, QUANT) : "a", maybe_adj(g, n, 50), n, plural);
}

/* ---- characters ------------------------------------------------------------ */

typedef struct actor {
    const char *name1, *name2; /* name2 for a pair ("Tom and Ben") */
    const noun *kind;          /* an animal hero's species, else NULL */
    int gender;                /* G_F, G_M, G_PL */
} actor;

typedef struct story {
    actor hero;
    const noun *item;     /* the toy that gets lost */
    const noun *pet;      /* may be NULL */
    const noun *seen;     /* what the hero meets on the outing */
    int seen_plural;
    const place *where;
    const char *parent;   /* "mom" or "dad" */
    int name_streak;      /* sentences since the name was last used */
} story;

static int plural_of(const actor *a) { return a->gender == G_PL; }

static void name_of(gen *g, const actor *a) {
    word(g, a->name1);
    if (a->name2) {
        word(g, "and");
        word(g, a->name2);
    }
}

/* The hero as a subject: the name at first and now and then, else a pronoun. */
static void hero_subject(gen *g, story *s) {
    if (s->name_streak == 0 || s->name_streak > 2 || chance(g, 25)) {
        name_of(g, &s->hero);
        s->name_streak = 1;
    } else {
        word(g, P_SUBJ[s->hero.gender]);
        s->name_streak++;
    }
}

static void hero_poss(gen *g, const story *s) { word(g, P_POSS[s->hero.gender]); }

static const char *pick_name(gen *g, int gender) {
    return gender == G_F ? GIRLS[rnd(g, N_GIRLS)] : BOYS[rnd(g, N_BOYS)];
}

static const noun *find_animal(const char *sg) {
    for (size_t i = 0; i < N_ANIMALS; i++)
        if (!strcmp(ANIMALS[i].sg, sg)) return &ANIMALS[i];
    return &ANIMALS[0]; /* not reached: PETS names animals of the list */
}

static void make_hero(gen *g, story *s) {
    uint32_t r = rnd(g, 100);
    memset(&s->hero, 0, sizeof s->hero);
    if (r < 25) { /* two friends: "they" */
        s->hero.gender = G_PL;
        int g1 = (int)rnd(g, 2), g2 = (int)rnd(g, 2);
        s->hero.name1 = pick_name(g, g1);
        do s->hero.name2 = pick_name(g, g2); while (s->hero.name2 == s->hero.name1);
        return;
    }
    s->hero.gender = (int)rnd(g, 2);
    s->hero.name1 = pick_name(g, s->hero.gender);
    if (r >= 85) s->hero.kind = &ANIMALS[rnd(g, N_ANIMALS)]; /* a named animal hero */
}

/* ---- sentences: opening and introduction ------------------------------------ */

static void opening(gen *g, story *s) {
    const actor *h = &s->hero;
    const char *adj = CHAR_ADJS[rnd(g, N_CHAR_ADJS)];
    if (h->gender == G_PL) {
        word(g, "once"); word(g, "upon"); word(g, "a"); word(g, "time"); punct(g, ',');
        word(g, "there"); word(g, "were"); word(g, "two"); word(g, PICK(g, ((const char *[]){"friends", "kids", "children"})));
        word(g, "named"); name_of(g, h); punct(g, '.');
        return;
    }
    const char *kind = h->kind ? h->kind->sg : (h->gender == G_F ? "girl" : "boy");
    if (chance(g, 70)) {
        word(g, "once"); word(g, "upon"); word(g, "a"); word(g, "time"); punct(g, ',');
        if (chance(g, 30)) {
            word(g, "in"); word(g, "a"); word(g, PICK(g, ((const char *[]){"small", "big", "quiet", "sunny"})));
            word(g, PICK(g, ((const char *[]){"town", "forest", "village"}))); punct(g, ',');
            word(g, "there"); word(g, "lived");
        } else {
            word(g, "there"); word(g, "was");
        }
    } else {
        word(g, "there"); word(g, "once"); word(g, "was");
    }
    article(g, adj);
    word(g, adj);
    word(g, kind);
    word(g, "named");
    name_of(g, h);
    punct(g, '.');
}

static const verb *kid_act(gen *g) { return &ACTS[KID_ACTS[rnd(g, N_KID_ACTS)]]; }

/* What the hero likes doing; an animal hero does its own thing. */
static const verb *hero_act(gen *g, const story *s) {
    if (s->hero.kind && chance(g, 60)) return &ACTS[s->hero.kind->act];
    return kid_act(g);
}

static void place_phrase(gen *g, const place *p) {
    word(g, p->prep);
    word(g, "the");
    word(g, p->name);
}

static void intro_sentence(gen *g, story *s) {
    uint32_t r = rnd(g, 4);
    if (r == 2 && s->hero.kind) r = 0; /* an animal hero keeps no pet */
    switch (r) {
    case 0: /* "She loved to dance in the garden." */
        hero_subject(g, s);
        word(g, PICK(g, ((const char *[]){"loved", "liked"})));
        word(g, "to");
        word(g, hero_act(g, s)->base);
        if (chance(g, 60)) place_phrase(g, &PLACES[rnd(g, N_PLACES)]);
        break;
    case 1: /* "Her favorite toy was a red ball." */
        hero_poss(g, s);
        word(g, "favorite");
        word(g, "toy");
        word(g, "was");
        noun_phrase(g, "a", maybe_adj(g, s->item, 70), s->item, 0);
        break;
    case 2: /* "They had a little dog." */
        if (!s->pet) s->pet = find_animal(PETS[rnd(g, N_PETS)]);
        hero_subject(g, s);
        word(g, "had");
        noun_phrase(g, "a", maybe_adj(g, s->pet, 60), s->pet, 0);
        break;
    default: /* "He lived with his mom and dad in a small house." */
        hero_subject(g, s);
        word(g, "lived");
        word(g, "with");
        hero_poss(g, s);
        word(g, "mom");
        word(g, "and");
        word(g, "dad");
        word(g, "in");
        word(g, "a");
        word(g, PICK(g, ((const char *[]){"small", "big", "little", "pretty"})));
        word(g, "house");
        break;
    }
    punct(g, '.');
}

/* ---- sentences: the outing ------------------------------------------------- */

static void outing(gen *g, story *s) {
    /* "One day, Lily went to the park with her mom." */
    word(g, "one"); word(g, "day"); punct(g, ',');
    name_of(g, &s->hero);
    s->name_streak = 1;
    word(g, "went"); word(g, "to"); word(g, "the"); word(g, s->where->name);
    if (chance(g, 60)) {
        word(g, "with");
        hero_poss(g, s);
        word(g, s->parent);
    }
    punct(g, '.');
    /* "There, she saw two little ducks by the water." */
    if (chance(g, 50)) { word(g, "there"); punct(g, ','); }
    hero_subject(g, s);
    word(g, "saw");
    indefinite(g, s->seen, s->seen_plural);
    if (chance(g, 50)) { word(g, "near"); word(g, SPOTS[rnd(g, N_SPOTS)]); }
    punct(g, '.');
    /* "The ducks were hungry." — was/were follows the noun. */
    word(g, "the");
    word(g, s->seen_plural ? s->seen->pl : s->seen->sg);
    word(g, s->seen_plural ? "were" : "was");
    if (chance(g, 30)) word(g, "very");
    word(g, PICK(g, ((const char *[]){"happy", "hungry", "sleepy", "small", "big", "funny",
                                      "pretty", "cold", "wet", "fluffy", "loud", "quiet"})));
    punct(g, '.');
}

/* ---- dialogue: the present tense, where subject–verb agreement lives -------- */

/* A speech tag: "said Lily", "she said", "asked Mom", "said her mom". */
static void speech_tag(gen *g, story *s, int hero_speaks, int question) {
    const char *verb = question ? "asked" : "said";
    if (hero_speaks) {
        if (chance(g, 50)) {
            word(g, verb);
            name_of(g, &s->hero);
            s->name_streak = 1;
        } else {
            hero_subject(g, s);
            word(g, verb);
        }
    } else if (chance(g, 50)) {
        word(g, verb);
        word(g, s->parent[0] == 'm' ? "Mom" : "Dad");
    } else {
        word(g, verb);
        hero_poss(g, s);
        word(g, s->parent);
    }
    punct(g, '.');
}

/* The present form of v for a subject of the given number. */
static const char *present(const verb *v, int plural) { return plural ? v->base : v->s3; }

/* An activity suited to an animal (its own, most of the time). */
static const verb *animal_act(gen *g, const noun *n) {
    if (n->act >= 0 && chance(g, 70)) return &ACTS[n->act];
    static const int GENERAL[] = {V_PLAY, V_RUN, V_JUMP, V_SLEEP, V_EAT, V_REST, V_HIDE, V_WALK};
    return &ACTS[GENERAL[rnd(g, sizeof GENERAL / sizeof GENERAL[0])]];
}

/* "The (little) dogs like to run" / "The dog barks every day" (no punctuation). */
static void sv_clause(gen *g, const char *adj, const noun *n, int plural, int kind) {
    noun_phrase(g, "the", adj, n, plural);
    const verb *act = animal_act(g, n);
    switch (kind) {
    case 0:
        word(g, present(&WANTS[rnd(g, N_WANTS)], plural));
        word(g, "to");
        word(g, act->base);
        break;
    case 1:
        word(g, present(act, plural));
        word(g, PICK(g, ((const char *[]){"every day", "all day", "a lot", "in the morning"})));
        break;
    default:
        word(g, plural ? "are" : "is");
        if (chance(g, 40)) word(g, "so");
        word(g, adj_for(g, n));
        break;
    }
}

static void line_look(gen *g, story *s) {
    /* "Look at these little ducks!" said Lily. */
    quote_open(g);
    word(g, "look"); word(g, "at");
    noun_phrase(g, demonstrative(g, s->seen_plural), maybe_adj(g, s->seen, 40), s->seen,
                s->seen_plural);
    punct(g, '!');
    quote_close(g, 1);
    speech_tag(g, s, 1, 0);
}

static void line_this_is(gen *g, story *s) {
    /* "This ball is so shiny," she said.  /  "These balls are red," ... */
    int pl = chance(g, 50);
    const noun *n = chance(g, 50) ? s->item : s->seen;
    quote_open(g);
    noun_phrase(g, demonstrative(g, pl), NULL, n, pl);
    word(g, pl ? "are" : "is");
    if (chance(g, 50)) word(g, "so");
    word(g, adj_for(g, n));
    punct(g, ',');
    quote_close(g, 1);
    speech_tag(g, s, 1, 0);
}

static void line_statement(gen *g, story *s) {
    /* "The ducks like to swim," said Mom. */
    int pl = chance(g, 50);
    quote_open(g);
    sv_clause(g, maybe_adj(g, s->seen, 30), s->seen, pl, (int)rnd(g, 3));
    punct(g, ',');
    quote_close(g, 1);
    speech_tag(g, s, 0, 0);
}

static void line_generic(gen *g, story *s) {
    /* "Ducks swim every day," said Mom.  /  "A duck swims ..." */
    int pl = chance(g, 60);
    const noun *n = s->seen;
    quote_open(g);
    noun_phrase(g, pl ? NULL : "a", NULL, n, pl);
    const verb *act = animal_act(g, n);
    if (chance(g, 50)) {
        word(g, present(&WANTS[rnd(g, 2)], pl)); /* like / love */
        word(g, "to");
        word(g, act->base);
    } else {
        word(g, present(act, pl));
        word(g, PICK(g, ((const char *[]){"every day", "a lot", "all day"})));
    }
    punct(g, ',');
    quote_close(g, 1);
    speech_tag(g, s, 0, 0);
}

static void line_question(gen *g, story *s) {
    /* "Does the duck want to play?" asked Lily. — do/does agrees too. */
    int pl = s->seen_plural;
    quote_open(g);
    word(g, pl ? "do" : "does");
    noun_phrase(g, "the", NULL, s->seen, pl);
    word(g, PICK(g, ((const char *[]){"want", "like"})));
    word(g, "to");
    word(g, animal_act(g, s->seen)->base);
    punct(g, '?');
    quote_close(g, 1);
    speech_tag(g, s, 1, 1);
    /* "Yes, they do," said Mom. / "Yes, it does," ... */
    quote_open(g);
    word(g, PICK(g, ((const char *[]){"yes", "oh yes"})));
    punct(g, ',');
    word(g, pl ? "they" : "it");
    word(g, pl ? "do" : "does");
    punct(g, ',');
    quote_close(g, 1);
    speech_tag(g, s, 0, 0);
}

static void line_think(gen *g, story *s) {
    /* "I think the ducks like me," said Lily.  "We think ..." for a pair. */
    int pl = s->seen_plural;
    const verb *v = &TRANS[rnd(g, 4)];
    quote_open(g);
    word(g, plural_of(&s->hero) ? "we" : "I");
    word(g, "think");
    noun_phrase(g, "the", NULL, s->seen, pl);
    word(g, present(v, pl));
    word(g, plural_of(&s->hero) ? "us" : "me");
    punct(g, ',');
    quote_close(g, 1);
    speech_tag(g, s, 1, 0);
}

static void line_about_hero(gen *g, story *s) {
    /* "She likes to dance," said Mom.  /  "Tom and Ben like to run," ... */
    int pl = plural_of(&s->hero);
    quote_open(g);
    if (chance(g, 50)) word(g, P_SUBJ[s->hero.gender]);
    else name_of(g, &s->hero);
    word(g, present(&WANTS[rnd(g, 2)], pl));
    word(g, "to");
    word(g, hero_act(g, s)->base);
    punct(g, ',');
    quote_close(g, 1);
    speech_tag(g, s, 0, 0);
}

static void line_have(gen *g, story *s) {
    /* "We have many balls at home," said Tom and Ben. / "I have an old kite." */
    int pl = chance(g, 60);
    quote_open(g);
    word(g, plural_of(&s->hero) ? "we" : "I");
    word(g, "have");
    indefinite(g, chance(g, 50) ? s->item : s->seen, pl);
    word(g, "at"); word(g, "home");
    punct(g, ',');
    quote_close(g, 1);
    speech_tag(g, s, 1, 0);
}

static void line_want(gen *g, story *s) {
    /* "I want these red apples," said Lily. — a determiner before an object. */
    int pl = chance(g, 50);
    const noun *n = chance(g, 50) ? &THINGS[rnd(g, N_THINGS)] : s->seen;
    quote_open(g);
    word(g, plural_of(&s->hero) ? "we" : "I");
    word(g, TRANS[rnd(g, N_TRANS)].base);
    noun_phrase(g, demonstrative(g, pl), maybe_adj(g, n, 40), n, pl);
    punct(g, ',');
    quote_close(g, 1);
    speech_tag(g, s, 1, 0);
}

static void dialogue_line(gen *g, story *s) {
    switch (rnd(g, 9)) {
    case 0: line_look(g, s); break;
    case 1: line_this_is(g, s); break;
    case 2: line_statement(g, s); break;
    case 3: line_generic(g, s); break;
    case 4: line_question(g, s); break;
    case 5: line_think(g, s); break;
    case 6: line_about_hero(g, s); break;
    case 7: line_want(g, s); break;
    default: line_have(g, s); break;
    }
}

/* ---- problem, resolution, moral ----------------------------------------- */

static void problem(gen *g, story *s) {
    if (chance(g, 50)) {
        /* "But then, her kite fell into the pond." */
        word(g, "but"); word(g, "then"); punct(g, ',');
        hero_poss(g, s);
        word(g, s->item->sg);
        word(g, "fell"); word(g, "into"); word(g, "the");
        word(g, PICK(g, ((const char *[]){"river", "pond", "mud", "water", "hole"})));
    } else {
        /* "But then, he lost his ball." */
        word(g, "but"); word(g, "then"); punct(g, ',');
        hero_subject(g, s);
        word(g, "lost");
        hero_poss(g, s);
        word(g, s->item->sg);
    }
    punct(g, '.');
    /* "Lily was sad." / "Tom and Ben were sad." */
    hero_subject(g, s);
    word(g, plural_of(&s->hero) ? "were" : "was");
    word(g, FEELINGS_BAD[rnd(g, 5)]);
    punct(g, '.');
    if (chance(g, 50)) {
        /* "She could not find it." */
        hero_subject(g, s);
        word(g, "could"); word(g, "not"); word(g, "find"); word(g, "it");
        punct(g, '.');
    }
}

static void resolution(gen *g, story *s) {
    /* "Then, a kind owl came to help her." */
    const noun *helper = &ANIMALS[rnd(g, N_ANIMALS)];
    word(g, "then"); punct(g, ',');
    noun_phrase(g, "a", chance(g, 70) ? CHAR_ADJS[rnd(g, N_CHAR_ADJS)] : NULL, helper, 0);
    word(g, "came"); word(g, "to"); word(g, "help");
    word(g, P_OBJ[s->hero.gender]);
    punct(g, '.');
    /* "The owl found the kite and gave it to her." */
    word(g, "the"); word(g, helper->sg);
    word(g, "found"); word(g, "the"); word(g, s->item->sg);
    word(g, "and"); word(g, "gave"); word(g, "it"); word(g, "to");
    word(g, P_OBJ[s->hero.gender]);
    punct(g, '.');
    /* "Lily was so happy." */
    hero_subject(g, s);
    word(g, plural_of(&s->hero) ? "were" : "was");
    if (chance(g, 50)) word(g, "so");
    word(g, FEELINGS_GOOD[rnd(g, 5)]);
    punct(g, '.');
    /* '"Thank you, owl!" said Lily.' */
    quote_open(g);
    word(g, "thank"); word(g, "you"); punct(g, ',');
    word(g, helper->sg);
    punct(g, '!');
    quote_close(g, 1);
    speech_tag(g, s, 1, 0);
    /* A reflexive that must match the hero. */
    hero_subject(g, s);
    if (chance(g, 50)) {
        word(g, plural_of(&s->hero) ? "were" : "was");
        word(g, "proud"); word(g, "of");
        word(g, P_REFL[s->hero.gender]);
    } else {
        word(g, "looked"); word(g, "at");
        word(g, P_REFL[s->hero.gender]);
        word(g, "in"); word(g, "the");
        word(g, PICK(g, ((const char *[]){"water", "mirror", "pond"})));
        word(g, "and"); word(g, "smiled");
    }
    punct(g, '.');
}

static void moral(gen *g, story *s) {
    switch (rnd(g, 4)) {
    case 0:
        word(g, "from"); word(g, "that"); word(g, "day"); word(g, "on"); punct(g, ',');
        name_of(g, &s->hero);
        word(g, "always");
        if (chance(g, 50)) {
            word(g, "shared");
            hero_poss(g, s);
            word(g, "toys");
        } else {
            word(g, "helped");
            hero_poss(g, s);
            word(g, "friends");
        }
        punct(g, '.');
        break;
    case 1:
        name_of(g, &s->hero);
        word(g, "learned"); word(g, "that");
        word(g, MORALS[rnd(g, N_MORALS)]);
        punct(g, '.');
        break;
    case 2:
        word(g, "the"); word(g, "moral"); word(g, "of"); word(g, "the"); word(g, "story");
        word(g, "is"); punct(g, ':');
        word(g, MORALS[rnd(g, N_MORALS)]);
        punct(g, '.');
        break;
    default:
        word(g, "and"); word(g, "they"); word(g, "all"); word(g, "lived");
        word(g, "happily"); word(g, "ever"); word(g, "after");
        punct(g, '.');
        break;
    }
}

/* ---- whole stories --------------------------------------------------------- */

static void new_story(gen *g, story *s) {
    memset(s, 0, sizeof *s);
    make_hero(g, s);
    s->item = &THINGS[rnd(g, N_TOYS)];
    s->seen = &ANIMALS[rnd(g, N_ANIMALS)];
    s->seen_plural = chance(g, 50);
    s->where = &PLACES[rnd(g, N_PLACES)];
    s->parent = chance(g, 50) ? "mom" : "dad";
}

static void write_story(gen *g, story *s) {
    g->space = 0;
    g->cap_next = 1;
    opening(g, s);
    s->name_streak = 1;
    for (uint32_t i = 0, k = 1 + rnd(g, 2); i < k; i++) intro_sentence(g, s);
    paragraph(g);
    outing(g, s);
    for (uint32_t i = 0, k = 1 + rnd(g, 4); i < k; i++) dialogue_line(g, s);
    paragraph(g);
    problem(g, s);
    resolution(g, s);
    paragraph(g);
    moral(g, s);
}

static size_t count_words(const char *p, size_t n) {
    size_t w = 0;
    int in = 0;
    for (size_t i = 0; i < n; i++) {
        int sp = p[i] == ' ' || p[i] == '\n';
        if (!sp && !in) w++;
        in = !sp;
    }
    return w;
}

/* One story of MIN_WORDS..MAX_WORDS words plus its separator. Out-of-range
   drafts are discarded; the RNG counter moves on, so this stays deterministic. */
static void one_story(gen *g) {
    size_t start = g->n;
    for (;;) {
        story s;
        new_story(g, &s);
        write_story(g, &s);
        if (g->oom) return;
        size_t w = count_words(g->buf + start, g->n - start);
        if (w >= MIN_WORDS && w <= MAX_WORDS) break;
        g->n = start;
    }
    put(g, "\n" "<|endoftext|>" "\n", 15);
}

fl_status fl_storygen_text(uint64_t seed, size_t bytes, char **text, size_t *len, fl_error *err) {
    gen g = {.key = fl_rng_key(seed, "storygen")};
    put(&g, "", 0); /* so an empty request still returns "" */
    while (!g.oom && g.n < bytes) one_story(&g);
    if (g.oom || !g.buf) {
        free(g.buf);
        return fl_fail(err, FL_ENOMEM, "out of memory generating %zu bytes of stories", bytes);
    }
    *text = g.buf;
    if (len) *len = g.n;
    return FL_OK;
}

/* ---- minimal pairs in BLiMP's format --------------------------------------- */

/* One paradigm: how to make a (good, bad) pair of sentences. */
typedef struct paradigm {
    const char *uid, *field, *term;
    void (*make)(gen *good, gen *bad, gen *r);
    /* How BLiMP's prefix methods apply: one_prefix when the differing word
       is decided by what comes before it (verb after subject, noun after
       determiner, reflexive after antecedent); two_prefix when it is decided
       by the word after it (a/an before the next word). */
    int one_prefix, two_prefix;
} paradigm;

/* Writes the same words to both sentences. */
static void both(gen *a, gen *b, const char *w) {
    word(a, w);
    word(b, w);
}

static void start_sentence(gen *g) {
    g->n = 0;
    g->space = 0;
    g->cap_next = 1;
    put(g, "", 0);
}

/* "The little dogs like to run." / "The little dogs likes to run." */
static void pair_subject_verb(gen *good, gen *bad, gen *r) {
    const noun *n = &ANIMALS[rnd(r, N_ANIMALS)];
    int pl = chance(r, 50);
    const char *adj = maybe_adj(r, n, 40);
    both(good, bad, "the");
    if (adj) both(good, bad, adj);
    both(good, bad, pl ? n->pl : n->sg);
    const verb *act = animal_act(r, n);
    switch (rnd(r, 3)) {
    case 0: {
        const verb *v = &WANTS[rnd(r, N_WANTS)];
        word(good, present(v, pl));
        word(bad, present(v, !pl));
        both(good, bad, "to");
        both(good, bad, act->base);
        break;
    }
    case 1:
        word(good, present(act, pl));
        word(bad, present(act, !pl));
        both(good, bad, "every day");
        break;
    default:
        word(good, pl ? "are" : "is");
        word(bad, pl ? "is" : "are");
        both(good, bad, adj_for(r, n));
        break;
    }
    punct(good, '.');
    punct(bad, '.');
}

/* "I want these red balls." / "I want these red ball." */
static void pair_determiner_noun(gen *good, gen *bad, gen *r) {
    int animal = chance(r, 50);
    const noun *n = animal ? &ANIMALS[rnd(r, N_ANIMALS)] : &THINGS[rnd(r, N_THINGS)];
    int pl = chance(r, 50);
    const char *adj = maybe_adj(r, n, 40);
    static const char *const SUBJ[] = {"I", "we"};
    switch (rnd(r, 3)) {
    case 0: both(good, bad, PICK(r, SUBJ)); both(good, bad, TRANS[rnd(r, N_TRANS)].base); break;
    case 1: both(good, bad, "look"); both(good, bad, "at"); break;
    default: {
        const char *name = chance(r, 50) ? GIRLS[rnd(r, N_GIRLS)] : BOYS[rnd(r, N_BOYS)];
        both(good, bad, name);
        both(good, bad, PICK(r, ((const char *[]){"saw", "found", "wanted", "liked"})));
        break;
    }
    }
    const char *det = pl ? PICK(r, ((const char *[]){"these", "those", "many", "two"}))
                         : PICK(r, ((const char *[]){"this", "that"}));
    both(good, bad, det);
    if (adj) both(good, bad, adj);
    word(good, pl ? n->pl : n->sg);
    word(bad, pl ? n->sg : n->pl);
    punct(good, '.');
    punct(bad, '.');
}

/* "Lily looked at herself in the water." / "... himself ..." */
static void pair_anaphor(gen *good, gen *bad, gen *r) {
    int gender = (int)rnd(r, 3); /* F, M or a pair */
    int wrong;
    if (gender == G_PL) {
        const char *a = pick_name(r, (int)rnd(r, 2)), *b;
        do b = pick_name(r, (int)rnd(r, 2)); while (b == a);
        both(good, bad, a);
        both(good, bad, "and");
        both(good, bad, b);
        wrong = (int)rnd(r, 2); /* herself or himself */
    } else {
        both(good, bad, pick_name(r, gender));
        wrong = gender == G_F ? (chance(r, 75) ? G_M : G_PL) : (chance(r, 75) ? G_F : G_PL);
    }
    if (chance(r, 50)) {
        both(good, bad, gender == G_PL ? "were" : "was");
        both(good, bad, "proud");
        both(good, bad, "of");
        word(good, P_REFL[gender]);
        word(bad, P_REFL[wrong]);
    } else {
        both(good, bad, "looked");
        both(good, bad, "at");
        word(good, P_REFL[gender]);
        word(bad, P_REFL[wrong]);
        both(good, bad, "in");
        both(good, bad, "the");
        both(good, bad, PICK(r, ((const char *[]){"water", "mirror", "pond"})));
    }
    punct(good, '.');
    punct(bad, '.');
}

/* "Tom found an old kite." / "Tom found a old kite." */
static void pair_article(gen *good, gen *bad, gen *r) {
    const noun *n = chance(r, 50) ? &ANIMALS[rnd(r, N_ANIMALS)] : &THINGS[rnd(r, N_THINGS)];
    /* Half the pairs hinge on a vowel, so "an" is tested as often as "a". */
    const char *adj = NULL;
    if (chance(r, 50)) {
        static const char *const ANY[] = {"old", "amazing"}, *const ALIVE[] = {"angry", "excited"};
        if (!starts_with_vowel(n->sg))
            adj = is_animal(n) && chance(r, 50) ? PICK(r, ALIVE) : PICK(r, ANY);
    } else if (chance(r, 50)) {
        adj = adj_for(r, n);
    }
    both(good, bad, chance(r, 50) ? GIRLS[rnd(r, N_GIRLS)] : BOYS[rnd(r, N_BOYS)]);
    both(good, bad, PICK(r, ((const char *[]){"saw", "found", "had", "wanted"})));
    const char *next = adj ? adj : n->sg;
    word(good, starts_with_vowel(next) ? "an" : "a");
    word(bad, starts_with_vowel(next) ? "a" : "an");
    if (adj) both(good, bad, adj);
    both(good, bad, n->sg);
    punct(good, '.');
    punct(bad, '.');
}

static const paradigm PARADIGMS[] = {
    {"subject_verb_agreement_builtin", "morphology", "subject_verb_agreement", pair_subject_verb,
     1, 0},
    {"determiner_noun_agreement_builtin", "morphology", "determiner_noun_agreement",
     pair_determiner_noun, 1, 0},
    {"anaphor_agreement_builtin", "morphology", "anaphor_agreement", pair_anaphor, 1, 0},
    {"indefinite_article_builtin", "morphology", "determiner_noun_agreement", pair_article, 0, 1},
};
#define N_PARADIGMS (sizeof PARADIGMS / sizeof PARADIGMS[0])

/* Where two sentences differ in exactly one word: the shared words before it
   (prefix), the two words, and the word after them (next, "" at the end).
   Returns 0 when they differ in more than one word. */
typedef struct word_diff {
    char prefix[512], good[64], bad[64], next[64];
} word_diff;

static size_t word_end(const char *s, size_t i) {
    while (s[i] && s[i] != ' ' && s[i] != '.') i++;
    return i;
}

static int one_word_diff(const char *a, const char *b, word_diff *d) {
    size_t i = 0;
    while (a[i] && a[i] == b[i]) i++;
    while (i > 0 && a[i - 1] != ' ') i--; /* back to the start of the differing word */
    size_t ea = word_end(a, i), eb = word_end(b, i);
    if (strcmp(a + ea, b + eb) != 0) return 0; /* the rest must be the same */
    if (i == 0 || i > sizeof d->prefix || ea - i >= sizeof d->good || eb - i >= sizeof d->bad)
        return 0;
    snprintf(d->prefix, sizeof d->prefix, "%.*s", (int)(i - 1), a);
    snprintf(d->good, sizeof d->good, "%.*s", (int)(ea - i), a + i);
    snprintf(d->bad, sizeof d->bad, "%.*s", (int)(eb - i), b + i);
    size_t ns = a[ea] == ' ' ? ea + 1 : ea, ne = word_end(a, ns);
    snprintf(d->next, sizeof d->next, "%.*s", (int)(ne - ns < 63 ? ne - ns : 63), a + ns);
    return 1;
}

static void add_prefix_fields(cJSON *o, const paradigm *p, const word_diff *d, int differ_in_one) {
    int one = differ_in_one && p->one_prefix, two = differ_in_one && p->two_prefix && d->next[0];
    cJSON_AddBoolToObject(o, "one_prefix_method", one);
    cJSON_AddBoolToObject(o, "two_prefix_method", two);
    cJSON_AddBoolToObject(o, "lexically_identical", 0);
    if (one) {
        cJSON_AddStringToObject(o, "one_prefix_prefix", d->prefix);
        cJSON_AddStringToObject(o, "one_prefix_word_good", d->good);
        cJSON_AddStringToObject(o, "one_prefix_word_bad", d->bad);
    }
    if (two) {
        char pg[600], pb[600];
        snprintf(pg, sizeof pg, "%s %s", d->prefix, d->good);
        snprintf(pb, sizeof pb, "%s %s", d->prefix, d->bad);
        cJSON_AddStringToObject(o, "two_prefix_prefix_good", pg);
        cJSON_AddStringToObject(o, "two_prefix_prefix_bad", pb);
        cJSON_AddStringToObject(o, "two_prefix_word", d->next);
    }
}

static cJSON *pair_json(const paradigm *p, const char *good, const char *bad, int id) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    word_diff d;
    int one = one_word_diff(good, bad, &d);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", id);
    cJSON_AddStringToObject(o, "sentence_good", good);
    cJSON_AddStringToObject(o, "sentence_bad", bad);
    cJSON_AddStringToObject(o, "field", p->field);
    cJSON_AddStringToObject(o, "linguistics_term", p->term);
    cJSON_AddStringToObject(o, "UID", p->uid);
    cJSON_AddBoolToObject(o, "simple_LM_method", 1);
    add_prefix_fields(o, p, &d, one);
    cJSON_AddStringToObject(o, "pairID", pid);
    return o;
}

/* Appends one JSON line for pair id to out. */
static int append_pair(gen *out, const paradigm *p, gen *r, gen *good, gen *bad, int id) {
    /* Redraw the rare pair whose two sentences came out the same. */
    do {
        start_sentence(good);
        start_sentence(bad);
        p->make(good, bad, r);
    } while (!good->oom && !bad->oom && !strcmp(good->buf, bad->buf));
    if (good->oom || bad->oom) return -1;
    cJSON *o = pair_json(p, good->buf, bad->buf, id);
    char *line = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!line) return -1;
    put(out, line, strlen(line));
    put(out, "\n", 1);
    free(line);
    return out->oom ? -1 : 0;
}

static fl_status write_paradigm(uint64_t seed, const paradigm *p, int pairs, const char *out_dir,
                                fl_error *err) {
    gen r = {.key = fl_rng_key(seed, p->uid)}, good = {0}, bad = {0}, out = {0};
    int bad_alloc = 0;
    put(&out, "", 0);
    for (int i = 0; i < pairs && !bad_alloc; i++)
        bad_alloc = append_pair(&out, p, &r, &good, &bad, i) != 0;
    free(good.buf);
    free(bad.buf);
    if (bad_alloc || out.oom) {
        free(out.buf);
        return fl_fail(err, FL_ENOMEM, "out of memory writing minimal pairs for %s", p->uid);
    }
    char path[4096], name[256];
    snprintf(name, sizeof name, "%s.jsonl", p->uid);
    fl_status st = fl_path_join(path, sizeof path, out_dir, name, err);
    if (!st) st = fl_write_file_atomic(path, out.buf, out.n, err);
    free(out.buf);
    return st;
}

fl_status fl_storygen_blimp(uint64_t seed, int pairs_per_paradigm, const char *out_dir,
                            fl_error *err) {
    if (pairs_per_paradigm < 1)
        return fl_fail(err, FL_EINVAL, "pairs per paradigm must be >= 1 (got %d)",
                       pairs_per_paradigm);
    fl_status st = fl_mkdirs(out_dir, err);
    for (size_t i = 0; i < N_PARADIGMS && !st; i++)
        st = write_paradigm(seed, &PARADIGMS[i], pairs_per_paradigm, out_dir, err);
    return st;
}
