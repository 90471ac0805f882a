/* tests/layering: the control. Compiled as part of ffnlab_backends, this
   must compile: base (error.h, log.h) is below everything. So a failing
   probe fails for its include alone. */
#include "error.h"
#include "log.h"
int layering_probe;
