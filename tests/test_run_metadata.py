"""What a run was made with, kept in its session and shown in the reports' headers."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from helpers import run_pyinstrument, spin
from sessions import simple_session

from pyinstrument import Profiler, run_metadata
from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer
from pyinstrument.session import Session, SessionFileError


def test_a_session_says_what_its_run_was_made_with():
    with Profiler() as profiler:
        spin(0.01)
    made_with = profiler.last_session.run_metadata
    assert made_with["python"] == platform.python_version()
    assert made_with["implementation"] == platform.python_implementation()
    assert made_with["cpu_count"] == os.cpu_count()
    assert made_with["argv"] == sys.argv
    assert made_with["distributions"]["pytest"] == pytest.__version__
    assert len(made_with["distributions_hash"]) == 16


def test_the_same_distributions_give_the_same_hash_in_any_order(monkeypatch):
    class Distribution:
        def __init__(self, name, version):
            self.metadata, self.version = {"Name": name}, version

    from importlib import metadata

    one = [Distribution("alpha", "1.0"), Distribution("Beta", "2.0")]
    monkeypatch.setattr(metadata, "distributions", lambda: iter(one))
    first = run_metadata._distributions()
    monkeypatch.setattr(metadata, "distributions", lambda: iter(one[::-1]))
    assert run_metadata._distributions() == first
    monkeypatch.setattr(metadata, "distributions", lambda: iter(one + [Distribution("gamma", "3")]))
    assert run_metadata._distributions()["distributions_hash"] != first["distributions_hash"]


PROFILED = textwrap.dedent(
    """
    import json
    from pyinstrument import Profiler
    with Profiler() as p:
        sum(range(100000))
    print(json.dumps(p.last_session.run_metadata.get("git")))
    """
)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_working_directorys_commit_and_whether_it_is_dirty(tmp_path: Path):
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=tmp_path, check=True, capture_output=True, text=True,
        ).stdout.strip()

    def from_code():  # a Profiler in the program: the commit from the repository's files
        done = subprocess.run([sys.executable, "-c", PROFILED], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def from_the_command_line():  # the command asks git, before the program runs
        run_pyinstrument("-r", "session", "-o", "run.pyisession", "app.py", cwd=tmp_path)
        return Session.load(tmp_path / "run.pyisession").run_metadata.get("git")

    assert from_code() is None  # not a repository
    git("init", "-q")
    (tmp_path / "app.py").write_text("print('v1')\n")
    git("add", "app.py")
    git("commit", "-q", "-m", "first")
    commit = git("rev-parse", "HEAD")
    assert from_code() == {"commit": commit, "dirty": None}
    assert from_the_command_line() == {"commit": commit, "dirty": False}
    (tmp_path / "app.py").write_text("print('v2')\n")
    assert from_the_command_line() == {"commit": commit, "dirty": True}
    git("gc", "-q")  # the branch's ref packed
    assert from_code() == {"commit": commit, "dirty": None}
    git("checkout", "-q", "--detach")
    assert from_code() == {"commit": commit, "dirty": None}


def test_saved_loaded_and_shown_in_both_headers(tmp_path: Path):
    with Profiler() as profiler:
        spin(0.01)
    session = profiler.last_session
    path = tmp_path / "run.pyisession"
    session.save(path)
    loaded = Session.load(path)
    assert loaded.run_metadata == session.run_metadata
    line = run_metadata.summary(loaded.run_metadata)
    build = " (free-threaded: no GIL)" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    assert line.startswith(f"Python {platform.python_version()}{build} · ") and f"{os.cpu_count()} CPUs" in line
    header = ConsoleRenderer(color=False).render(loaded).split("Program:")[0]
    assert line in header
    page = HTMLRenderer().render(loaded)
    assert json.dumps(line)[1:-1] in page or line in page


def test_a_session_without_it_shows_nothing_and_loads_as_before(tmp_path: Path):
    session = simple_session()
    assert session.run_metadata is None
    assert "distributions" not in ConsoleRenderer(color=False).render(session)
    path = tmp_path / "old.pyisession"
    session.save(path)
    assert Session.load(path).run_metadata is None


@pytest.mark.parametrize(
    "value, message",
    [
        (["not", "a", "mapping"], "is not a mapping"),
        ({"cpu_count": float("nan")}, "holds a number that is not finite"),  # it could not be saved again
        ({"git": {"commit": float("inf")}}, "holds a number that is not finite"),
        ({"a": [[[[[[[[[["deep"]]]]]]]]]]}, "nests too deeply"),
    ],
)
def test_a_damaged_one_is_refused_clearly(tmp_path: Path, value, message):
    document = simple_session().to_json()
    document["run_metadata"] = value
    path = tmp_path / "damaged.pyisession"
    path.write_text(json.dumps(document))  # NaN and Infinity as Python's json writes them
    with pytest.raises(SessionFileError, match=f"damaged pyinstrument session: 'run_metadata' {message}"):
        Session.load(path)


def test_combined_sessions_keep_the_first_runs():
    first, second = simple_session(), simple_session()
    first.run_metadata = {"python": "3.12.1"}
    second.run_metadata = {"python": "3.13.0"}
    second.start_time = first.start_time + 10
    assert Session.combine(first, second).run_metadata == {"python": "3.12.1"}
