/*
 * cpython_internal.h: the CPython internal headers the engine's layouts come from.
 * Included by layout.c and tools/layout_probe.c (which compiles it against every
 * supported version's headers to write layouts_table.h).
 */
#ifndef PI_CPYTHON_INTERNAL_H
#define PI_CPYTHON_INTERNAL_H

#ifndef Py_BUILD_CORE_MODULE
#define Py_BUILD_CORE_MODULE 1
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x03090000
#error "pyinstrument's engine supports CPython 3.9 and newer"
#endif

/* CPython's internal headers are not written for -Wextra */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#if PY_VERSION_HEX >= 0x030E0000
#include "internal/pycore_interpframe_structs.h"
#include "internal/pycore_stackref.h"
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#else
#include "frameobject.h"
#endif
#include "internal/pycore_interp.h"
#include "internal/pycore_context.h"
#include "internal/pycore_hamt.h"
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_dict.h"
#endif
#include "internal/pycore_runtime.h"
#include "internal/pycore_gil.h"
#pragma GCC diagnostic pop

#if PY_VERSION_HEX >= 0x030B0000
typedef _PyInterpreterFrame pi_iframe_t;
#endif

#endif
