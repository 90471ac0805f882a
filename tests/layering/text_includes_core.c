/* tests/layering: compiled as part of ffnlab_text, this must fail: text
   sits below core and cannot see its headers (config.h). */
#include "config.h"
int layering_probe;
