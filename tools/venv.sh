#!/usr/bin/env bash
# tools/venv.sh PYTHON: builds and installs this project with its test dependencies
# into .venvs/<version>, prints the venv's python. PYINSTRUMENT_SANITIZE=1 makes an
# AddressSanitizer/UBSan build in .venvs/<version>-sanitize; PYINSTRUMENT_EXTRAS=test,lint
# installs the lint and type-check tools too.
set -euo pipefail
py=$1
top=$(cd "$(dirname "$0")/.." && pwd)
# a free-threaded build gets its own venv: 3.13t beside 3.13
ver=$("$py" -c 'import sys, sysconfig; print("%d.%d%s" % (*sys.version_info[:2], "t" * bool(sysconfig.get_config_var("Py_GIL_DISABLED"))))')
dir="$top/.venvs/$ver${PYINSTRUMENT_SANITIZE:+-sanitize}"
if [ ! -x "$dir/bin/python" ]; then
    "$py" -m venv "$dir" >&2
    "$dir/bin/python" -m pip install -q --upgrade pip >&2
fi
# a free-threaded build takes wheels only: the newest releases of some dependencies (scipy,
# pydantic-core) have none for 3.13t, and building them needs compilers we do not install
binary_only=""
case $ver in *t) binary_only="--only-binary=:all:";; esac
"$dir/bin/python" -m pip install -q $binary_only "$top[${PYINSTRUMENT_EXTRAS:-test}]" >&2
echo "$dir/bin/python"
