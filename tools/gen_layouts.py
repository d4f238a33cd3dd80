#!/usr/bin/env python3
"""Writes engine/layouts_table.h: the struct layout of every supported CPython minor
version, which the engine reads another version's process with (layout.c).

Each entry is what engine/layout_compiled.h computes when compiled against that
version's own headers (tools/layout_probe.c), so the table and the in-process layout
come from one source. Usage: tools/gen_layouts.py PYTHON... (default: tools/pythons.sh);
a version whose interpreter is absent keeps its entry from the current table.
"""

import os
import re
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(TOP, "engine", "layouts_table.h")
ENTRY = re.compile(r"^    \{[^\n]*\n        \.version = (0x[0-9a-f]+),\n.*?^    \},\n", re.M | re.S)

HEADER = """\
/*
 * layouts_table.h: every supported CPython minor version's struct layout, to read a
 * process of another version than the one the engine was compiled for (layout.c).
 * Written by tools/gen_layouts.py from each version's own headers: do not edit.
 */
#ifndef PI_LAYOUTS_TABLE_H
#define PI_LAYOUTS_TABLE_H

#include "layout_offsets.h"

static const pi_offsets pi_known_layouts[] = {
"""
FOOTER = """\
};

#endif
"""


def probe(python: str, workdir: str) -> str:
    """One table entry, from the layout the probe computes against python's headers."""
    include, version = subprocess.check_output(
        [python, "-c", "import sys, sysconfig; print(sysconfig.get_paths()['include']); print(sys.version)"],
        text=True,
    ).splitlines()[:2]
    exe = os.path.join(workdir, "probe")
    subprocess.check_call(
        [
            os.environ.get("CC", "cc"),
            "-std=c11",
            "-Wall",
            "-Werror",
            "-I" + include,
            "-I" + os.path.join(TOP, "engine"),
            os.path.join(TOP, "tools", "layout_probe.c"),
            "-o",
            exe,
        ]
    )
    entry = subprocess.check_output([exe], text=True)
    return entry.replace("    {\n", "    { /* from %s */\n" % version.split()[0], 1)


def existing_entries() -> dict:
    if not os.path.exists(TABLE):
        return {}
    with open(TABLE) as f:
        text = f.read()
    return {int(m.group(1), 16): m.group(0) for m in ENTRY.finditer(text)}


def main() -> None:
    pythons = sys.argv[1:] or subprocess.check_output([os.path.join(TOP, "tools", "pythons.sh")], text=True).split()
    entries = existing_entries()
    with tempfile.TemporaryDirectory() as workdir:
        for python in pythons:
            entry = probe(python, workdir)
            version = int(re.search(r"\.version = (0x[0-9a-f]+),", entry).group(1), 16)
            entries[version] = entry
            print("%s: %d.%d" % (python, version >> 24, (version >> 16) & 0xFF), file=sys.stderr)
    with open(TABLE + ".tmp", "w") as f:
        f.write(HEADER + "".join(entries[v] for v in sorted(entries)) + FOOTER)
    os.replace(TABLE + ".tmp", TABLE)


if __name__ == "__main__":
    main()
