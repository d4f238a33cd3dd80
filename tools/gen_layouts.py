#!/usr/bin/env python3
"""Writes the engine's per-version tables, with which it reads a process of another
CPython version than the one it was built for:

- engine/layouts_table.h: each version's struct layout (layout.c), what
  engine/layout_compiled.h computes when compiled against that version's own headers
  (tools/layout_probe.c), so the table and the in-process layout come from one source;
- engine/opcodes_table.h: what the bytecode analysis (opcodes.c) needs of each version:
  its specialised opcodes' bases, inline caches, stack effects and the opcodes it names
  (tools/opcodes_probe.c, linked with the version's libpython before 3.13, whose stack
  effects live in its compiler).

Usage: tools/gen_layouts.py PYTHON... (default: tools/pythons.sh); a version whose
interpreter is absent keeps its entries from the current tables.
"""

import os
import re
import subprocess
import sys
import tempfile
import textwrap
from typing import Dict, List

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = re.compile(r"^    \{[^\n]*\n        \.version = (0x[0-9a-f]+),\n.*?^    \},\n", re.M | re.S)

TABLES = {
    "layouts_table.h": (
        "layout_probe.c",
        "layout_offsets.h",
        "pi_offsets pi_known_layouts",
        "every supported CPython minor version's struct layout, to read a\n"
        " * process of another version than the one the engine was compiled for (layout.c).",
    ),
    "opcodes_table.h": (
        "opcodes_probe.c",
        "opcodes_table_types.h",
        "pi_opcode_table pi_known_opcodes",
        "what the bytecode analysis (opcodes.c) needs of every supported\n"
        " * CPython minor version, to analyse the code of a process of another version.",
    ),
}

TEMPLATE = """\
/*
 * {name}: {what}
 * Written by tools/gen_layouts.py from each version's own headers: do not edit.
 */
#ifndef PI_{guard}
#define PI_{guard}

#include "{types}"

static const {array}[] = {{
{entries}}};

#endif
"""


def interpreter(python: str) -> Dict[str, str]:
    """What building against python takes: its headers, libpython, version."""
    code = (
        "import sys, sysconfig; print(sysconfig.get_paths()['include']); print(sysconfig.get_config_var('LIBDIR'));"
        "print('%d.%d' % sys.version_info[:2]); print(sys.version.split()[0])"
    )
    include, libdir, minor, version = subprocess.check_output([python, "-c", code], text=True).splitlines()[:4]
    return {"include": include, "libdir": libdir, "minor": minor, "version": version}


def probe(source: str, python: Dict[str, str], workdir: str) -> str:
    """One table entry: what the probe prints, built against python's headers."""
    exe = os.path.join(workdir, "probe")
    command = [os.environ.get("CC", "cc"), "-std=c11", "-Wall", "-Werror", "-I" + python["include"]]
    command += ["-I" + os.path.join(TOP, "engine"), os.path.join(TOP, "tools", source), "-o", exe]
    env = dict(os.environ)
    if source == "opcodes_probe.c" and tuple(map(int, python["minor"].split("."))) < (3, 13):
        command += ["-L" + python["libdir"], "-lpython" + python["minor"]]
        env["LD_LIBRARY_PATH"] = python["libdir"]
    subprocess.check_call(command)
    entry = subprocess.check_output([exe], text=True, env=env)
    return wrap(entry.replace("    {\n", "    { /* from %s */\n" % python["version"], 1))


def wrap(entry: str) -> str:
    """The entry's long lines (arrays) folded to a readable width."""
    lines: List[str] = []
    for line in entry.splitlines():
        if len(line) <= 110:
            lines.append(line)
            continue
        key, _, rest = line.partition("= ")
        lines.append(key + "=")
        lines += textwrap.wrap(rest, 110, initial_indent=" " * 12, subsequent_indent=" " * 12, break_long_words=False)
    return "\n".join(lines) + "\n"


def existing_entries(path: str) -> Dict[int, str]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {int(m.group(1), 16): m.group(0) for m in ENTRY.finditer(f.read())}


def main() -> None:
    pythons = sys.argv[1:] or subprocess.check_output([os.path.join(TOP, "tools", "pythons.sh")], text=True).split()
    found = [interpreter(python) for python in pythons]
    for name, (source, types, array, what) in TABLES.items():
        path = os.path.join(TOP, "engine", name)
        entries = existing_entries(path)
        with tempfile.TemporaryDirectory() as workdir:
            for python in found:
                entry = probe(source, python, workdir)
                entries[int(re.search(r"\.version = (0x[0-9a-f]+),", entry).group(1), 16)] = entry
        guard = name.upper().replace(".", "_")
        text = TEMPLATE.format(
            name=name,
            what=what,
            guard=guard,
            types=types,
            array=array,
            entries="".join(entries[v] for v in sorted(entries)),
        )
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        print(f"{name}: " + ", ".join(python["minor"] for python in found), file=sys.stderr)


if __name__ == "__main__":
    main()
