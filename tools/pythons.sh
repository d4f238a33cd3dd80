#!/usr/bin/env bash
# Prints the CPython interpreters (3.9-3.15) present on this machine, one path a line:
# pyenv's 3.9-3.13 and get-python's 3.14/3.15 under /opt/py (PY_ROOT), then the free-threaded
# builds get-python makes there (3.13t, 3.14t), when present.
set -u
root=${PY_ROOT:-/opt/py}
for v in 3.9 3.10 3.11 3.12 3.13 3.14 3.15; do
    found=""
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" "$root/$v/bin/python$v"; do
        if [ -x "$candidate" ] && "$candidate" -c 'import sys' 2>/dev/null; then
            found=$candidate
        fi
    done
    [ -z "$found" ] && found=$(command -v "python$v" 2>/dev/null || true)
    [ -n "$found" ] && echo "$found"
done
for v in 3.13 3.14; do
    candidate="$root/${v}t/bin/python${v}t"
    if [ -x "$candidate" ] && "$candidate" -c 'import sys' 2>/dev/null; then
        echo "$candidate"
    fi
done
exit 0
