/* core_calls_report.c: a deliberate breach of the layers, for the test
 * layering_catches_upward_call (tests/CMakeLists.txt).  The test hands
 * this object to scripts/check_layers.py as a core object, next to the
 * library's real ones: a core that writes a report by name calls up into
 * the report layer, and the check must say so.  Compiled, never linked. */
#include "report/report.h"

tsri_hidden int tsri_layering_probe(void);

int tsri_layering_probe(void) { return tsri_report_to(TSR_FORMAT_TEXT, "stderr", "api"); }
