/* tsr_scenario.h: the allocation calls of a helper program built twice,
 * once with the tsr_ names (TSR_SCENARIO_STANDARD 0, linked to the
 * prefixed library next to the C library's heap) and once with the C
 * names (1, linked to the override, so that the C library's own calls
 * reach tessera too).  tests/CMakeLists.txt: tsr_scenario_helper. */
#ifndef TSR_SCENARIO_H
#define TSR_SCENARIO_H

#include <stdlib.h>

#include "tessera.h"

#if TSR_SCENARIO_STANDARD
#define S_MALLOC malloc
#define S_REALLOC realloc
#define S_FREE free
#else
#define S_MALLOC tsr_malloc
#define S_REALLOC tsr_realloc
#define S_FREE tsr_free
#endif

#endif /* TSR_SCENARIO_H */
