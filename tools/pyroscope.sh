#!/usr/bin/env bash
# Prints the path of a Grafana Pyroscope server for the tests of continuous profiling
# (tests/test_pyroscope.py), building it the first time with ../shared/tools/get-pyroscope
# (about 5 minutes; cached in ~/.cache/pyroscope-server). Prints nothing, with a note on
# stderr, where it cannot be built: those tests are then skipped, unless
# PYINSTRUMENT_REQUIRE_PYROSCOPE is set (CI), which makes them fail.
set -u
get=$(dirname "$0")/../../shared/tools/get-pyroscope
if [ -x "$get" ] && built=$("$get" 2> /tmp/pyinstrument-get-pyroscope.log); then
    echo "$built"
else
    echo "note: no Pyroscope server (see /tmp/pyinstrument-get-pyroscope.log): its tests are skipped" >&2
fi
exit 0
