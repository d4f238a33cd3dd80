#!/usr/bin/env bash
# Prints the CPython interpreters (3.9-3.15) present on this machine, one path a line:
# pyenv's 3.9-3.13 and get-python's 3.14/3.15 under /opt/py (PY_ROOT).
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
exit 0
