#!/usr/bin/env bash
# tools/upstream-venv.sh PYTHON: upstream pyinstrument 5.x from PyPI in
# .venvs/upstream-<version>, made by PYTHON (to test file compatibility against and to
# compare with); prints the venv's python. Fails when it cannot be installed.
set -euo pipefail
py=$1
top=$(cd "$(dirname "$0")/.." && pwd)
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
dir="$top/.venvs/upstream-$ver"
is_upstream5='import sys, importlib.util as u, pyinstrument as p; sys.exit(u.find_spec("pyinstrument._engine") is not None or not p.__version__.startswith("5."))'
if ! (cd / && env -u PYTHONPATH "$dir/bin/python" -c "$is_upstream5") 2>/dev/null; then
    "$py" -m venv --clear "$dir" >&2
    env -u PYTHONPATH "$dir/bin/python" -m pip install -q "pyinstrument>=5,<6" >&2
fi
echo "$dir/bin/python"
