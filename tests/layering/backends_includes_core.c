/* tests/layering: compiled as part of ffnlab_backends, this must fail: the
   backends sit below core and cannot see its headers (model.h). */
#include "model.h"
int layering_probe;
