#!/usr/bin/env bash
# tools/test-tools.sh: installs, into .cache/tools, the programs the tests feed our
# output formats to, where they can be built here: inferno's flame graph tool (for the
# collapsed stacks; needs cargo, about two minutes the first time). The tests look for
# them in .cache/tools/bin and say why they skip a check when one is missing.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
root="$top/.cache/tools"
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
exit 0
