"""The sessions kept for ``--load-prev``: identifiers of their own for runs started
together, which sessions are kept, and what an unknown identifier says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from helpers import run_pyinstrument
from sessions import history_directory, load_prev_hint, write_numbered_program

from pyinstrument import session_history

TESTS = Path(__file__).resolve().parent


def run_program(tmp_path: Path, n: int) -> str:
    """Runs program ``n`` under pyinstrument; returns the identifier it printed."""
    return load_prev_hint(run_pyinstrument(write_numbered_program(tmp_path, n), cwd=tmp_path).stdout)


def wait_for(paths, what: str) -> None:
    deadline = time.monotonic() + 120
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.01)


SAVE_WHEN_TOLD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from sessions import simple_session
    from pyinstrument import session_history

    n, folder = sys.argv[1], Path(sys.argv[2])
    session = simple_session()  # all started at the same second
    session.target_description = "run " + n
    (folder / ("ready-" + n)).touch()
    while not (folder / "go").exists():
        time.sleep(0.001)
    print(session_history.save(session))
""")


def test_sessions_saved_at_once_get_identifiers_of_their_own(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    runs = [subprocess.Popen([sys.executable, "-c", SAVE_WHEN_TOLD, str(n), str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(8)]
    try:
        wait_for([tmp_path / f"ready-{n}" for n in range(8)], "all eight processes starting")
        (tmp_path / "go").touch()
        outputs = [run.communicate(timeout=120) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert [run.returncode for run in runs] == [0] * 8, [err for _, err in outputs]
    identifiers = [out.strip() for out, _ in outputs]
    assert len(set(identifiers)) == 8, identifiers
    for n, identifier in enumerate(identifiers):
        assert session_history.load(identifier).target_description == f"run {n}"


def test_runs_in_parallel_each_load_their_own_session(tmp_path):
    for n in range(5):  # kept by earlier runs
        run_program(tmp_path, 100 + n)
    for n in range(8):
        write_numbered_program(tmp_path, n)
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    runs = [subprocess.Popen([sys.executable, "-m", "pyinstrument", f"p{n}.py"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(8)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0] * 8, [err for _, err in outputs]
    identifiers = [load_prev_hint(out) for out, _ in outputs]
    assert len(set(identifiers)) == 8, identifiers
    for n, identifier in enumerate(identifiers):
        again = run_pyinstrument("--load-prev", identifier, "-r", "json", cwd=tmp_path)
        assert json.loads(again.stdout)["target_description"] == f"Program: p{n}.py"


def test_ten_are_kept_once_the_recent_ones_are_not_recent(tmp_path, private_data_directory):
    identifiers = [run_program(tmp_path, n) for n in range(12)]
    assert len(set(identifiers)) == 12  # unique even within one second
    directory = history_directory(private_data_directory)
    # saved moments ago: all kept (a run in parallel may not have looked at its own yet)
    assert sorted(p.stem for p in directory.iterdir()) == sorted(identifiers)

    an_hour_ago = time.time() - 3600
    for age, identifier in enumerate(reversed(identifiers)):
        os.utime(directory / f"{identifier}.pyisession", (an_hour_ago - age, an_hour_ago - age))
    newest = run_program(tmp_path, 12)
    assert sorted(p.stem for p in directory.iterdir()) == sorted(identifiers[3:] + [newest])

    gone = run_pyinstrument("--load-prev", identifiers[0], cwd=tmp_path, check=False)
    assert gone.returncode == 2
    assert gone.stderr == (f"pyinstrument: error: no recent session {identifiers[0]!r} (the recent ones are "
                           f"{', '.join([newest] + identifiers[:2:-1])})\n")


def test_unknown_identifier_lists_only_sessions_that_load(tmp_path, private_data_directory):
    kept = run_program(tmp_path, 1)
    directory = history_directory(private_data_directory)
    (directory / "2020-01-01T00-00-00.pyisession").mkdir()  # not a session file
    (directory / "2020-01-01T00-00-01.pyisession").touch()  # reserved by a run still saving
    result = run_pyinstrument("--load-prev", "2020-01-01T00-00-02", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr == (f"pyinstrument: error: no recent session '2020-01-01T00-00-02' "
                             f"(the recent ones are {kept})\n")
    assert run_pyinstrument("--load-prev", kept, cwd=tmp_path).returncode == 0


def test_a_run_that_died_while_saving_does_not_keep_its_name_forever(tmp_path, private_data_directory):
    run_program(tmp_path, 1)
    directory = history_directory(private_data_directory)
    abandoned = directory / "2020-01-01T00-00-00.pyisession"
    abandoned.touch()
    os.utime(abandoned, (time.time() - 3600,) * 2)
    run_program(tmp_path, 2)
    assert not abandoned.exists()
