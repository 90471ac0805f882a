/*
 * run/stop_signals.h — SIGINT and SIGTERM during training: the first one
 * asks the run to stop (finish the step, save a checkpoint); a second one
 * ends the process at once.
 *
 * The handler runs on a signal stack of each thread's own. oneDNN 2.6's JIT
 * sgemm kernels point the stack pointer into the heap while they run
 * (oneDNN issue 4845, fixed in later releases than Debian 12's), so a signal
 * delivered on the thread's current stack there writes its frame into the
 * heap: ffnlab then aborted at a later malloc ("corrupted size vs.
 * prev_size") in about one SIGINT in 20-100 on a loaded machine.
 */
#ifndef FFNLAB_STOP_SIGNALS_H
#define FFNLAB_STOP_SIGNALS_H

/* Gives the calling thread and every OpenMP thread an alternate signal
   stack, forgets any earlier request and installs the handlers (keeping
   the dispositions they replace). */
void fl_stop_signals_catch(void);

/* Puts back the dispositions fl_stop_signals_catch replaced. */
void fl_stop_signals_release(void);

/* The signal that asked the run to stop (SIGINT or SIGTERM), 0 while none did. */
int fl_stop_signal(void);

#endif
