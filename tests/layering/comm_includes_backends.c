/* tests/layering: compiled as part of ffnlab_comm, this must fail: the
   communicators do not use the backends (backend.h). */
#include "backend.h"
int layering_probe;
