#!/usr/bin/env bash
# tools/test-tools.sh: installs, into .cache/tools, the programs the tests feed our
# output formats to: inferno's flame graph tool (for the collapsed stacks; needs cargo,
# about two minutes the first time) and Chrome DevTools' trace engine (for the Chrome
# traces; needs npm). The tests look for them there and say why they skip a check
# when one is missing. (go tool pprof comes with Go; the speedscope schema is fetched
# by its test.) The HTML report's tests drive headless Chromium through its WebDriver:
# Debian's chromium and chromium-driver packages, installed here with apt-get when
# running as root. .cache/tools links to a directory outside the clone
# ($PYINSTRUMENT_TEST_TOOLS, else ~/.cache/pyinstrument-in-c/test-tools), so that fresh
# clones (CI) build the tools once.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
root="$top/.cache/tools"
shared="${PYINSTRUMENT_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pyinstrument-in-c/test-tools}"
if [ ! -e "$root" ] && mkdir -p "$shared" "$top/.cache" 2>/dev/null; then
    ln -s "$shared" "$root"
fi
inferno_version=0.12.8
if [ ! -x "$root/bin/inferno-flamegraph" ]; then
    if command -v cargo >/dev/null; then
        echo "=== installing inferno $inferno_version into .cache/tools (cargo)"
        cargo install --quiet --locked --root "$root" --version "$inferno_version" \
            --no-default-features --features cli inferno >&2 \
            || echo "tools/test-tools.sh: inferno did not install; its checks will be skipped" >&2
    else
        echo "tools/test-tools.sh: no cargo; the checks that use inferno will be skipped" >&2
    fi
fi
trace_engine_version=0.0.65
if [ ! -d "$root/trace_engine/node_modules/@paulirish/trace_engine" ]; then
    if command -v npm >/dev/null; then
        echo "=== installing @paulirish/trace_engine $trace_engine_version into .cache/tools (npm)"
        npm install --silent --prefix "$root/trace_engine" --no-audit --no-fund \
            "@paulirish/trace_engine@$trace_engine_version" >&2 \
            || echo "tools/test-tools.sh: the trace engine did not install; its checks will be skipped" >&2
    else
        echo "tools/test-tools.sh: no npm; the checks that use Chrome's trace engine will be skipped" >&2
    fi
fi
if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "=== installing chromium and chromium-driver (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -q chromium chromium-driver \
            || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; } >/dev/null 2>&1 \
            || echo "tools/test-tools.sh: chromium-driver did not install; the HTML report's browser tests will be skipped" >&2
    else
        echo "tools/test-tools.sh: no chromium and chromedriver, and no apt-get as root to install them" \
             "(Debian: apt-get install chromium chromium-driver); the HTML report's browser tests will be skipped" >&2
    fi
fi
exit 0
