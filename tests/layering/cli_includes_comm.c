/* tests/layering: compiled as part of ffnlab_cli, this must fail: the CLI
   asks run/job.h about the job, not the communicator (comm.h). */
#include "comm.h"
int layering_probe;
