/*
 * core/options.c — parsing "k=v,k=v" against a plugin's option table.
 *
 * A plugin only *describes* its options (fl_option: name, type, default,
 * range or choices, help); this file turns user text into fl_value entries
 * and writes every mistake as one line naming where the text came from, the
 * key, and what would have been accepted. Because every plugin goes through
 * here, every plugin gets the same messages, and `ffnlab plugins NAME` prints
 * help generated from the same table (fl_options_print_help).
 *
 * Parsing order: defaults first (a non-NULL `def` is parsed exactly like user
 * text, so a broken default is caught the same way — the loader relies on
 * that to validate descriptors), then the user's items, which overwrite them.
 * The value strings live in one block owned by the fl_option_set, so a
 * plugin's create() can keep pointers into it for the duration of the call.
 */
#include "options.h"

#include <ctype.h>    /* isspace */
#include <errno.h>    /* errno, ERANGE */
#include <math.h>     /* isfinite */
#include <stdlib.h>   /* strtoll, strtod, calloc, free */
#include <string.h>   /* strlen, memcpy, memchr, strchr, strncmp */
#include <strings.h>  /* strcasecmp */

#include "error.h"

/* ------------------------------------------------------------------------ */
/* Small text helpers                                                         */
/* ------------------------------------------------------------------------ */

static const char *type_name(int32_t type) {
    switch (type) {
    case FL_OPT_INT: return "int";
    case FL_OPT_FLOAT: return "float";
    case FL_OPT_BOOL: return "bool";
    case FL_OPT_ENUM: return "enum";
    case FL_OPT_STRING: return "string";
    }
    return "?";
}

static int has_range(const fl_option *o) {
    return (o->type == FL_OPT_INT || o->type == FL_OPT_FLOAT) && o->min <= o->max;
}

/* "[1, 1048576]" for INT, "[0, 0.5]" for FLOAT; "" when unbounded. */
static void range_text(const fl_option *o, char *buf, size_t n) {
    buf[0] = 0;
    if (!has_range(o)) return;
    if (o->type == FL_OPT_INT)
        snprintf(buf, n, "[%lld, %lld]", (long long)o->min, (long long)o->max);
    else
        snprintf(buf, n, "[%g, %g]", o->min, o->max);
}

/* What a value of this option must look like, for the end of a message. */
static void expected_text(const fl_option *o, char *buf, size_t n) {
    char r[96];
    range_text(o, r, sizeof r);
    switch (o->type) {
    case FL_OPT_INT: snprintf(buf, n, "an integer%s%s", r[0] ? " in " : "", r); break;
    case FL_OPT_FLOAT: snprintf(buf, n, "a number%s%s", r[0] ? " in " : "", r); break;
    case FL_OPT_BOOL: snprintf(buf, n, "true/false/1/0/yes/no"); break;
    case FL_OPT_ENUM: snprintf(buf, n, "one of %s", o->choices ? o->choices : "(none)"); break;
    default: snprintf(buf, n, "any text"); break;
    }
}

/* Copies [b, e) into dst trimmed of surrounding blanks; returns dst. */
static char *copy_trimmed(char *dst, const char *b, const char *e) {
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    memcpy(dst, b, (size_t)(e - b));
    dst[e - b] = 0;
    return dst;
}

/* Index of `word` in the '|'-separated list, or -1. */
static int choice_index(const char *choices, const char *word) {
    size_t wn = strlen(word);
    int i = 0;
    for (const char *p = choices; p && *p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == wn && !strncmp(p, word, len)) return i;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

/* "d_ff, activation, glu" into buf. */
static void known_keys(const fl_option *opts, int n_opts, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n_opts && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", opts[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* ------------------------------------------------------------------------ */
/* One value                                                                  */
/* ------------------------------------------------------------------------ */

/* `what` is "option 'k'" or "default of option 'k'": the subject of the message. */
static fl_status parse_int(const fl_option *o, const char *s, const char *where, const char *what,
                           fl_value *v, fl_error *err) {
    char exp[160];
    expected_text(o, exp, sizeof exp);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || errno == ERANGE)
        return fl_fail(err, FL_EINVAL, "%s: %s = '%s' is not an integer (expected %s)", where, what,
                       s, exp);
    if (has_range(o) && ((double)x < o->min || (double)x > o->max))
        return fl_fail(err, FL_EINVAL, "%s: %s = %lld is out of range (expected %s)", where, what, x,
                       exp);
    v->i = x;
    v->f = (double)x;
    return FL_OK;
}

static fl_status parse_float(const fl_option *o, const char *s, const char *where,
                             const char *what, fl_value *v, fl_error *err) {
    char exp[160];
    expected_text(o, exp, sizeof exp);
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    /* nan/inf parse with strtod but are never a sensible setting. */
    if (end == s || *end || errno == ERANGE || !isfinite(x))
        return fl_fail(err, FL_EINVAL, "%s: %s = '%s' is not a number (expected %s)", where, what, s,
                       exp);
    if (has_range(o) && (x < o->min || x > o->max))
        return fl_fail(err, FL_EINVAL, "%s: %s = %g is out of range (expected %s)", where, what, x,
                       exp);
    v->f = x;
    v->i = (int64_t)x;
    return FL_OK;
}

static fl_status parse_bool(const char *s, const char *where, const char *what, fl_value *v,
                            fl_error *err) {
    static const char *yes[] = {"true", "1", "yes"}, *no[] = {"false", "0", "no"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, yes[i])) { v->i = 1; v->f = 1; return FL_OK; }
        if (!strcasecmp(s, no[i])) { v->i = 0; v->f = 0; return FL_OK; }
    }
    return fl_fail(err, FL_EINVAL, "%s: %s = '%s' is not a boolean (expected true/false/1/0/yes/no)",
                   where, what, s);
}

static fl_status parse_enum(const fl_option *o, const char *s, const char *where,
                            const char *what, fl_value *v, fl_error *err) {
    int k = choice_index(o->choices, s);
    if (k < 0)
        return fl_fail(err, FL_EINVAL, "%s: %s = '%s' is not one of %s", where, what, s,
                       o->choices ? o->choices : "(no choices)");
    v->i = k;
    v->f = k;
    return FL_OK;
}

/* Parses text s (already trimmed, stored in the set) into v by o's type. */
static fl_status parse_value(const fl_option *o, const char *s, const char *where, int is_default,
                             fl_value *v, fl_error *err) {
    char what[160];
    snprintf(what, sizeof what, "%soption '%s'", is_default ? "default of " : "", o->name);
    if (!s[0] && o->type != FL_OPT_STRING) {
        char exp[160];
        expected_text(o, exp, sizeof exp);
        return fl_fail(err, FL_EINVAL, "%s: %s has an empty value (expected %s)", where, what, exp);
    }
    v->s = s;
    v->present = 1;
    switch (o->type) {
    case FL_OPT_INT: return parse_int(o, s, where, what, v, err);
    case FL_OPT_FLOAT: return parse_float(o, s, where, what, v, err);
    case FL_OPT_BOOL: return parse_bool(s, where, what, v, err);
    case FL_OPT_ENUM: return parse_enum(o, s, where, what, v, err);
    case FL_OPT_STRING: return FL_OK;
    }
    return fl_fail(err, FL_EINVAL, "%s: option '%s' has unknown type %d", where, o->name, o->type);
}

/* ------------------------------------------------------------------------ */
/* The whole list                                                             */
/* ------------------------------------------------------------------------ */

static int find_option(const fl_option *opts, int n_opts, const char *key) {
    for (int i = 0; i < n_opts; i++)
        if (opts[i].name && !strcmp(opts[i].name, key)) return i;
    return -1;
}

/* Storage for every value string: the user text plus each default, with room
   for the terminators copy_trimmed writes. */
static size_t storage_size(const fl_option *opts, int n_opts, const char *text) {
    size_t n = (text ? strlen(text) : 0) + 2;
    for (int i = 0; i < n_opts; i++) n += (opts[i].def ? strlen(opts[i].def) : 0) + 1;
    return n;
}

static fl_status apply_defaults(const fl_option *opts, int n_opts, const char *where,
                                fl_option_set *out, char **cursor, fl_error *err) {
    for (int i = 0; i < n_opts; i++) {
        if (!opts[i].def) continue; /* derived by the plugin: present stays 0 */
        const char *d = opts[i].def;
        char *s = copy_trimmed(*cursor, d, d + strlen(d));
        *cursor += strlen(s) + 1;
        fl_status st = parse_value(&opts[i], s, where, 1, &out->values[i], err);
        if (st) return st;
    }
    return FL_OK;
}

/* One "key=value" item [b, e). */
static fl_status parse_item(const fl_option *opts, int n_opts, const char *b, const char *e,
                            const char *where, fl_option_set *out, char **cursor, fl_error *err) {
    const char *eq = memchr(b, '=', (size_t)(e - b));
    char *key = copy_trimmed(*cursor, b, eq ? eq : e);
    *cursor += strlen(key) + 1;
    if (!eq)
        return fl_fail(err, FL_EINVAL, "%s: option '%s' has no value (expected key=value)", where,
                       key);
    if (!key[0]) return fl_fail(err, FL_EINVAL, "%s: '=' with no option name before it", where);
    int k = find_option(opts, n_opts, key);
    if (k < 0) {
        char known[400];
        known_keys(opts, n_opts, known, sizeof known);
        if (!n_opts) return fl_fail(err, FL_EINVAL, "%s: unknown option '%s' (it takes no options)",
                                    where, key);
        return fl_fail(err, FL_EINVAL, "%s: unknown option '%s' (known: %s)", where, key, known);
    }
    fl_value *v = &out->values[k];
    if (v->set) return fl_fail(err, FL_EINVAL, "%s: option '%s' given twice", where, key);
    char *val = copy_trimmed(*cursor, eq + 1, e);
    *cursor += strlen(val) + 1;
    fl_value fresh = {0};
    fl_status st = parse_value(&opts[k], val, where, 0, &fresh, err);
    if (st) return st;
    fresh.set = 1;
    *v = fresh;
    return FL_OK;
}

/* Blank items ("a=1,,b=2", a trailing comma, all-blank text) are skipped:
   they cannot mean anything else, so refusing them would only annoy. */
static fl_status parse_items(const fl_option *opts, int n_opts, const char *text,
                             const char *where, fl_option_set *out, char **cursor, fl_error *err) {
    for (const char *p = text; p && *p;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        const char *q = p;
        while (q < e && isspace((unsigned char)*q)) q++;
        if (q < e) {
            fl_status st = parse_item(opts, n_opts, p, e, where, out, cursor, err);
            if (st) return st;
        }
        p = comma ? comma + 1 : e;
    }
    return FL_OK;
}

fl_status fl_options_parse(const fl_option *opts, int n_opts, const char *text, const char *where,
                           fl_option_set *out, fl_error *err) {
    memset(out, 0, sizeof *out);
    if (!where) where = "options";
    if (n_opts < 0 || (n_opts > 0 && !opts))
        return fl_fail(err, FL_EINVAL, "%s: bad option table (%d entries)", where, n_opts);
    out->n = n_opts;
    out->values = calloc((size_t)(n_opts ? n_opts : 1), sizeof *out->values);
    out->text = malloc(storage_size(opts, n_opts, text));
    if (!out->values || !out->text) {
        fl_options_free(out);
        return fl_fail(err, FL_ENOMEM, "%s: out of memory parsing options", where);
    }
    char *cursor = out->text;
    fl_status st = apply_defaults(opts, n_opts, where, out, &cursor, err);
    if (!st) st = parse_items(opts, n_opts, text, where, out, &cursor, err);
    if (st) fl_options_free(out);
    return st;
}

void fl_options_free(fl_option_set *s) {
    if (!s) return;
    free(s->values);
    free(s->text);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------ */
/* Specs and help                                                             */
/* ------------------------------------------------------------------------ */

fl_status fl_spec_split(const char *spec, char *name, size_t name_len, const char **opts,
                        fl_error *err) {
    if (opts) *opts = NULL;
    if (!spec || !spec[0]) return fl_fail(err, FL_EINVAL, "empty plugin spec (expected NAME[:k=v,...])");
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (len == 0)
        return fl_fail(err, FL_EINVAL, "plugin spec '%s' has no name before ':' (expected NAME[:k=v,...])",
                       spec);
    if (len >= name_len)
        return fl_fail(err, FL_EINVAL, "plugin spec '%s': name longer than %zu characters", spec,
                       name_len - 1);
    memcpy(name, spec, len);
    name[len] = 0;
    if (opts && colon && colon[1]) *opts = colon + 1;
    return FL_OK;
}

/* The four descriptive columns of one option. */
typedef struct help_row {
    char type[16], def[64], allowed[160];
} help_row;

static void help_fill(const fl_option *o, help_row *r) {
    snprintf(r->type, sizeof r->type, "%s", type_name(o->type));
    snprintf(r->def, sizeof r->def, "%s", o->def ? (o->def[0] ? o->def : "\"\"") : "(derived)");
    if (o->type == FL_OPT_ENUM)
        snprintf(r->allowed, sizeof r->allowed, "%s", o->choices ? o->choices : "");
    else if (o->type == FL_OPT_BOOL)
        snprintf(r->allowed, sizeof r->allowed, "true|false");
    else
        range_text(o, r->allowed, sizeof r->allowed);
    if (!r->allowed[0]) snprintf(r->allowed, sizeof r->allowed, "-");
}

static int max_int(int a, int b) { return a > b ? a : b; }

void fl_options_print_help(FILE *f, const fl_option *opts, int n_opts) {
    if (n_opts <= 0 || !opts) {
        fprintf(f, "  (no options)\n");
        return;
    }
    int wn = 1, wt = 1, wd = 1, wa = 1;
    for (int i = 0; i < n_opts; i++) {
        help_row r;
        help_fill(&opts[i], &r);
        wn = max_int(wn, (int)strlen(opts[i].name ? opts[i].name : "?"));
        wt = max_int(wt, (int)strlen(r.type));
        wd = max_int(wd, (int)strlen(r.def));
        wa = max_int(wa, (int)strlen(r.allowed));
    }
    for (int i = 0; i < n_opts; i++) {
        help_row r;
        help_fill(&opts[i], &r);
        fprintf(f, "  %-*s  %-*s  %-*s  %-*s  %s\n", wn, opts[i].name ? opts[i].name : "?", wt,
                r.type, wd, r.def, wa, r.allowed, opts[i].help ? opts[i].help : "");
    }
}
