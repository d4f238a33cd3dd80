import os
from pathlib import Path

import pytest

# programs that read our output formats, installed by tools/test-tools.sh
_TOOLS = Path(__file__).resolve().parent.parent / ".cache" / "tools" / "bin"
os.environ["PATH"] = os.pathsep.join([str(_TOOLS), os.environ.get("PATH", "")])


@pytest.fixture(autouse=True)
def private_data_directory(tmp_path_factory, monkeypatch):
    """Sessions kept for --load-prev go to a directory of the test's own, not the
    user's (the command line, also when run in a subprocess, saves one per text report)."""
    directory = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("XDG_DATA_HOME", str(directory))
    return directory


#: files whose tests read no interpreter internals (file formats, renderers, web frameworks,
#: tooling): `make test` runs them on the oldest and the newest CPython with a GIL and on the
#: free-threaded ones (a Python API one version lacks or drops shows there), the rest of the
#: suite on every one
PORTABLE_FILES = {
    "test_bench", "test_budget", "test_collapsed_flamegraph", "test_console_render", "test_diff",
    "test_django", "test_file_renderers", "test_files", "test_firefox", "test_magic",
    "test_pprof_chrometrace", "test_processors", "test_pytest_plugin", "test_repeat",
    "test_session_fuzz", "test_session_history", "test_sessions", "test_stats", "test_version",
    "test_web_middleware",
}  # fmt: skip


def pytest_collection_modifyitems(items):
    for item in items:
        # tests driving the browser check the page's JavaScript, the same on every Python:
        # `make test` runs them on one interpreter (-m "not browser" on the others)
        if {"browser", "open_report"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)
        if item.path.stem in PORTABLE_FILES:
            item.add_marker(pytest.mark.portable)
