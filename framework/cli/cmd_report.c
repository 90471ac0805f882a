/*
 * cli/cmd_report.c — `ffnlab report DIR... [--out DIR] [--compare-study]`:
 * tables and plots from run and sweep folders (run/report.h does the work).
 */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "report.h"

#define MAX_INPUTS 1024

static void help(void) {
    printf("usage: ffnlab report DIR... [--out DIR] [--compare-study]\n\n"
           "One report from run folders (train_config.json, metrics.jsonl; summary.json and eval.json when\n"
           "present) and sweep folders (sweep.json and its cells' run folders):\n"
           "  OUT/report.md, OUT/report.html   a table per model size: a row per variant (seeds pooled),\n"
           "                                   mean ± sd of sizes, validation loss, BLiMP, (Super)GLUE, speeds,\n"
           "                                   memory; the best value per quality and speed column marked\n"
           "  OUT/tables/SIZE.csv              the same numbers for spreadsheets\n"
           "  OUT/plots/NAME.png, .svg         validation loss vs tokens and vs time, BLiMP by phenomenon,\n"
           "                                   speed vs parameters, MoE expert load, PKM memory usage\n"
           "                                   (drawn by gnuplot; without it the report says plots were skipped)\n\n"
           "  --out DIR          where the report goes (default ./report); an existing folder is replaced only\n"
           "                     when it holds an earlier report\n"
           "  --compare-study    add the published numbers of the study ffnlab reproduces beside this\n"
           "                     report's runs of its shape (d_model 256, 2 layers, 4 heads, context 512)\n\n"
           "FFNLAB_GNUPLOT names the gnuplot program (default: gnuplot on PATH).\n");
}

int fl_cmd_report(int argc, char **argv) {
    fl_report_opts o = {0};
    const char *inputs[MAX_INPUTS];
    static const struct option longopts[] = {
        {"out", 1, 0, 'o'}, {"compare-study", 0, 0, 's'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o.out_dir = optarg; break;
        case 's': o.compare_study = 1; break;
        case 'h': help(); return 0;
        default: return fl_cli_usage("report", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    for (; optind < argc; optind++) {
        if (o.n_inputs == MAX_INPUTS) return fl_cli_usage("report", "at most %d folders", MAX_INPUTS);
        inputs[o.n_inputs++] = argv[optind];
    }
    if (!o.n_inputs) return fl_cli_usage("report", "no run or sweep folder given");
    o.inputs = inputs;
    fl_report r;
    fl_error err = {0};
    if (fl_report_make(&o, &r, &err)) {
        fl_report_free(&r);
        return fl_cli_report(&err);
    }
    if (r.plots_skipped[0]) fprintf(stderr, "ffnlab: warning: plots skipped: %s\n", r.plots_skipped);
    printf("%s\n", r.md_path);
    for (int t = 0; t < r.n_tables; t++) {
        char line[1024];
        fl_report_table_summary(&r.tables[t], line, sizeof line);
        printf("%s\n", line);
    }
    fl_report_free(&r);
    return 0;
}
