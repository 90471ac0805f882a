/*
 * tests/fuzz/fuzz_blimp.c — a BLiMP JSON Lines file (release, BabyLM and
 * supplement layouts), read strictly and with on_error=skip. The first
 * byte picks the mode; the rest is the file.
 */
#include "fuzz_util.h"

#include "../../tasks/blimp/blimp_data.c"
#include "../../tasks/common/task_util.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 1) return 0;
    const int supplement = data[0] & 1, skip = (data[0] >> 1) & 1;
    blimp_set s = {0};
    fl_error err = {0};
    if (!blimp_read_file(&s, fuzz_file(data + 1, n - 1, ".jsonl"), supplement, skip, NULL, &err) && !skip &&
        s.skipped_lines)
        abort(); /* strict reading skips nothing */
    blimp_set_free(&s);
    return 0;
}
