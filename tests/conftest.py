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


def pytest_collection_modifyitems(items):
    # tests driving the browser check the page's JavaScript, the same on every Python:
    # `make test` runs them on one interpreter (-m "not browser" on the others)
    for item in items:
        if {"browser", "open_report"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)
