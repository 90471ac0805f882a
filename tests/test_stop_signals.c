/*
 * tests/test_stop_signals.c — SIGINT and SIGTERM during training
 * (run/stop_signals.h):
 *  - once caught, the calling thread and every OpenMP thread have a signal
 *    stack of their own, and both handlers run on it (SA_ONSTACK): a signal
 *    that lands while oneDNN's JIT sgemm has the stack pointer in the heap
 *    must not write its frame there;
 *  - the first signal is a stop request naming the signal, and leaves the
 *    default action for a second one; catching again forgets the request;
 *  - releasing puts back the dispositions that were there before.
 * (test_train's SIGINT test runs the whole path in a training process.)
 */
#include <omp.h>
#include <signal.h>

#include "stop_signals.h"
#include "support.h"

/* Whether the calling thread has an enabled alternate stack of 16 KiB or more. */
static int has_signal_stack(void) {
    stack_t ss;
    return sigaltstack(NULL, &ss) == 0 && !(ss.ss_flags & SS_DISABLE) && ss.ss_size >= 16 * 1024;
}

static void test_every_thread_gets_a_signal_stack(void **state) {
    (void)state;
    fl_stop_signals_catch();
    assert_true(has_signal_stack());
    int threads = 0, with_stack = 0;
#pragma omp parallel reduction(+ : threads, with_stack)
    {
        threads += 1;
        with_stack += has_signal_stack();
    }
    print_message("%d OpenMP threads, %d with a signal stack\n", threads, with_stack);
    assert_int_equal(with_stack, threads);
    assert_int_equal(threads, omp_get_max_threads());
    fl_stop_signals_release();
}

static void test_handlers_run_on_the_signal_stack(void **state) {
    (void)state;
    fl_stop_signals_catch();
    const int sigs[] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        struct sigaction sa;
        assert_int_equal(sigaction(sigs[i], NULL, &sa), 0);
        assert_true(sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
        assert_true(sa.sa_flags & SA_ONSTACK);
    }
    fl_stop_signals_release();
}

static void test_first_signal_asks_to_stop(void **state) {
    (void)state;
    fl_stop_signals_catch();
    assert_int_equal(fl_stop_signal(), 0);
    raise(SIGTERM);
    assert_int_equal(fl_stop_signal(), SIGTERM);
    struct sigaction sa;
    assert_int_equal(sigaction(SIGTERM, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL); /* a second SIGTERM ends the process */
    fl_stop_signals_release();
    fl_stop_signals_catch(); /* a new run starts with no request */
    assert_int_equal(fl_stop_signal(), 0);
    raise(SIGINT);
    assert_int_equal(fl_stop_signal(), SIGINT);
    fl_stop_signals_release();
}

static void test_release_restores_dispositions(void **state) {
    (void)state;
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_DFL);
    fl_stop_signals_catch();
    fl_stop_signals_release();
    struct sigaction sa;
    assert_int_equal(sigaction(SIGINT, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_IGN);
    assert_int_equal(sigaction(SIGTERM, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);
    signal(SIGINT, SIG_DFL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_thread_gets_a_signal_stack),
        cmocka_unit_test(test_handlers_run_on_the_signal_stack),
        cmocka_unit_test(test_first_signal_asks_to_stop),
        cmocka_unit_test(test_release_restores_dispositions),
    };
    return cmocka_run_group_tests_name("stop_signals", tests, NULL, NULL);
}
