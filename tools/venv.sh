#!/usr/bin/env bash
# tools/venv.sh PYTHON: builds and installs this project with its test dependencies
# into .venvs/<version>, prints the venv's python. PYINSTRUMENT_SANITIZE=1 makes an
# AddressSanitizer/UBSan build in .venvs/<version>-sanitize; PYINSTRUMENT_EXTRAS=test,lint
# installs the lint and type-check tools too.
set -euo pipefail
py=$1
top=$(cd "$(dirname "$0")/.." && pwd)
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
dir="$top/.venvs/$ver${PYINSTRUMENT_SANITIZE:+-sanitize}"
if [ ! -x "$dir/bin/python" ]; then
    "$py" -m venv "$dir" >&2
    "$dir/bin/python" -m pip install -q --upgrade pip >&2
fi
"$dir/bin/python" -m pip install -q "$top[${PYINSTRUMENT_EXTRAS:-test}]" >&2
echo "$dir/bin/python"
