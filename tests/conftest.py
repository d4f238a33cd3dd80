import pytest


@pytest.fixture(autouse=True)
def private_data_directory(tmp_path_factory, monkeypatch):
    """Sessions kept for --load-prev go to a directory of the test's own, not the
    user's (the command line, also when run in a subprocess, saves one per text report)."""
    directory = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("XDG_DATA_HOME", str(directory))
    return directory
