/*
 * run/stop_signals.c — SIGINT and SIGTERM during training (see stop_signals.h).
 */
#include "stop_signals.h"

#include <omp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

/* A handler frame with the CPU's full vector state (AVX-512: ~3 KiB), and
   room to spare. */
enum { ALT_STACK_BYTES = 64 * 1024 };

static volatile sig_atomic_t g_stop;
static struct sigaction g_old_int, g_old_term;

static void on_stop_signal(int sig) {
    g_stop = sig;
    signal(sig, SIG_DFL); /* a second one ends the process at once */
}

/* Gives the calling thread an alternate signal stack unless it has one (a
   sanitizer runtime gives every thread its own, and unmaps it when the
   thread ends). Without memory the thread keeps using its own stack. The
   stack lives as long as the thread: threads that end are OpenMP pool
   threads shrinking, rare enough that their 64 KiB is left mapped. */
static void use_alt_stack(void) {
    stack_t ss;
    if (sigaltstack(NULL, &ss) == 0 && !(ss.ss_flags & SS_DISABLE)) return;
    void *p = mmap(NULL, ALT_STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    ss = (stack_t){.ss_sp = p, .ss_size = ALT_STACK_BYTES, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) munmap(p, ALT_STACK_BYTES);
}

void fl_stop_signals_catch(void) {
    use_alt_stack();
#pragma omp parallel
    use_alt_stack();
    g_stop = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &g_old_int);
    sigaction(SIGTERM, &sa, &g_old_term);
}

void fl_stop_signals_release(void) {
    sigaction(SIGINT, &g_old_int, NULL);
    sigaction(SIGTERM, &g_old_term, NULL);
}

int fl_stop_signal(void) { return g_stop; }
