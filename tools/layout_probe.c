/*
 * layout_probe.c: prints the layout of the CPython it is compiled against, as one
 * entry of engine/layouts_table.h (tools/gen_layouts.py compiles it once per version).
 */
#include "cpython_internal.h"
#if defined(Py_GIL_DISABLED) || defined(Py_TRACE_REFS)
#error "the layout table describes the standard build: probe a standard interpreter"
#endif
#include "layout_compiled.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    pi_offsets o;
    pi_compiled_offsets(&o);
    printf("    {\n");
    printf("        .version = 0x%08" PRIx64 ",\n", o.version);
#define PI_PRINT(name) if (strcmp(#name, "version") != 0) printf("        .%s = %" PRId64 ",\n", #name, o.name);
    PI_LAYOUT_FIELDS(PI_PRINT)
#undef PI_PRINT
    printf("        .debug_checks = {");
    if (!o.debug_checks[0][0])
        printf("{0, 0}");
    for (int i = 0; i < PI_DEBUG_CHECKS && o.debug_checks[i][0]; i++)
        printf("%s{%" PRId64 ", %" PRId64 "}", i ? ", " : "", o.debug_checks[i][0], o.debug_checks[i][1]);
    printf("},\n    },\n");
    return 0;
}
