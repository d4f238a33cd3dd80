#!/usr/bin/env bash
# tools/upstream-suite.sh VENV_PYTHON [PYTEST_ARGS...]: runs upstream pyinstrument's own test
# suite (from its PyPI sdist, cached in .cache/upstream) against the pyinstrument installed in
# VENV_PYTHON (tools/venv.sh prints one), minus the tests in tests/upstream/excluded.txt.
# See tests/upstream/run.py.
set -euo pipefail
py=$1
shift
top=$(cd "$(dirname "$0")/.." && pwd)
exec "$py" "$top/tests/upstream/run.py" "$@"
