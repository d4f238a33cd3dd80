"""``pyinstrument --repeat N``: a program run N times in new processes, reported as one set."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from helpers import run_pyinstrument, write

from pyinstrument.session import Session

# parse() takes twice render()'s time; the first argument scales parse()
PROGRAM = """
import sys, time

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def parse():
    spin(0.04 * (float(sys.argv[1]) if len(sys.argv) > 1 else 1.0))

def render():
    spin(0.02)

def main():
    parse()
    render()

main()
print("ran")
"""


def rows(report: str) -> dict:
    """function name -> (median seconds, median share) of the text report's first row for it."""
    found = {}
    for line in report.splitlines():
        match = re.match(r"\s+(\d+\.\d+)s \(\S+\)\s+(\d+\.\d)% \(\S+\)\s+(\S+)", line)
        if match and match.group(3) not in found:
            found[match.group(3)] = (float(match.group(1)), float(match.group(2)) / 100)
    return found


def test_a_repeat_reports_medians_over_the_runs_and_shows_progress(tmp_path: Path):
    write(tmp_path / "app.py", PROGRAM)
    result = run_pyinstrument("--repeat", "5", "app.py", cwd=tmp_path)
    assert result.stdout.count("ran\n") == 5  # the program's own output, each run
    assert result.stdout.count("pyinstrument repeat: 5 runs of Program: app.py") == 1
    progress = re.findall(r"pyinstrument: run (\d)/5: \d+\.\d+s", result.stderr)
    assert progress == ["1", "2", "3", "4", "5"], result.stderr
    found = rows(result.stdout)
    assert found["main"][1] > 0.95
    # 2:1, less what a loaded machine takes from either
    assert found["parse"][1] > 0.5 and found["render"][1] > 0.2 and found["parse"][0] > found["render"][0]
    for label in ("program wall time", "process wall time", "CPU time", "peak memory"):
        assert re.search(label + r" +median \d+\.\d+(s|MB)  IQR \S+  p95", result.stdout), label


def test_a_repeat_set_file_keeps_every_run_and_loads_as_the_same_report(tmp_path: Path):
    write(tmp_path / "app.py", PROGRAM)
    run_pyinstrument("--repeat", "4", "-o", "set.pyisession", "app.py", cwd=tmp_path)
    session = Session.load(tmp_path / "set.pyisession")
    assert session.runs is not None and len(session.runs) == 4
    assert session.sample_count == sum(run.sample_count for run in session.runs)
    for run in session.runs:
        assert run.process_usage is not None
        assert run.process_usage["max_rss"] > 1e6 and run.process_usage["cpu_time"] > 0.05
        assert run.process_usage["wall_time"] > run.duration >= 0.05
    loaded = run_pyinstrument("--load", "set.pyisession", cwd=tmp_path).stdout
    assert "pyinstrument repeat: 4 runs of Program: app.py" in loaded
    assert {"main", "parse", "render"} <= set(rows(loaded))
    document = json.loads(run_pyinstrument("--load", "set.pyisession", "-r", "json", cwd=tmp_path).stdout)
    assert document["runs"] == 4 and len(document["measures"]["wall_time"]["runs"]) == 4
    [module] = document["root"]["children"]
    assert len(module["times"]) == 4 and module["share_median"] > 0.95
    # the other formats show the runs added up
    html = run_pyinstrument("--load", "set.pyisession", "-r", "html", "-o", "set.html", cwd=tmp_path)
    assert html.returncode == 0 and "parse" in (tmp_path / "set.html").read_text()


def test_a_failed_run_stops_the_repeat_and_the_report_covers_the_runs_before_it(tmp_path: Path):
    write(
        tmp_path / "app.py",
        """
        import os, sys
        count = len(os.listdir("runs"))
        open(os.path.join("runs", str(count)), "w").close()
        sum(range(200000))
        sys.exit(7 if count == 2 else 0)
        """,
    )
    (tmp_path / "runs").mkdir()
    result = run_pyinstrument("--repeat", "5", "app.py", cwd=tmp_path, check=False)
    assert result.returncode == 7
    assert "run 3/5 exited with status 7; the report covers the 2 runs before it" in result.stderr
    assert "pyinstrument repeat: 2 runs" in result.stdout
    assert len(list((tmp_path / "runs").iterdir())) == 3  # no run after the failed one
    assert "Traceback" not in result.stderr


def test_one_run_is_a_repeat_set_too(tmp_path: Path):
    write(tmp_path / "app.py", PROGRAM)
    result = run_pyinstrument("--repeat", "1", "-o", "one.pyisession", "app.py", cwd=tmp_path)
    assert result.stdout.count("ran\n") == 1
    session = Session.load(tmp_path / "one.pyisession")
    assert len(session.runs) == 1 and session.runs[0] is not session
    assert "pyinstrument repeat: 1 run of" in run_pyinstrument("--load", "one.pyisession", cwd=tmp_path).stdout


def test_repeat_refuses_what_it_cannot_repeat(tmp_path: Path):
    write(tmp_path / "app.py", PROGRAM)
    for args, message in [
        (["--repeat", "0", "app.py"], "--repeat: must be from 1 to 10000"),
        (["--repeat", "x", "app.py"], "expected a number of runs"),
        (["--repeat", "3", "-"], "cannot run a program read from standard input"),
        (["--repeat", "3", "missing.py"], "missing.py"),
    ]:
        result = run_pyinstrument(*args, cwd=tmp_path, check=False, stdin=subprocess.DEVNULL)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == ""
    run_pyinstrument("-r", "session", "-o", "one.pyisession", "app.py", cwd=tmp_path)
    result = run_pyinstrument("--repeat", "3", "--load", "one.pyisession", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "--repeat runs a program" in result.stderr


def test_a_module_and_a_program_string_repeat_too(tmp_path: Path):
    write(tmp_path / "app.py", PROGRAM)
    result = run_pyinstrument("--repeat", "2", "-m", "app", "3", cwd=tmp_path)
    assert "2 runs of Program: app 3" in result.stdout and result.stdout.count("ran\n") == 2
    found = rows(result.stdout)
    assert found["parse"][1] > 0.7  # its argument made it 3x as slow: 6/7 of the run
    result = run_pyinstrument("--repeat", "2", "-c", "print('c ran')", cwd=tmp_path)
    assert result.stdout.count("c ran\n") == 2 and "2 runs of Program: -c" in result.stdout


def test_ctrl_c_stops_the_repeat_and_reports_the_runs_before_it(tmp_path: Path):
    import os
    import signal
    import sys

    from helpers import clean_env

    write(tmp_path / "app.py", "import time\nprint('started', flush=True)\ntime.sleep(0.5)\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "pyinstrument", "--repeat", "5", "app.py"],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    started = 0
    for line in process.stdout:  # Ctrl-C while the second run sleeps, as a terminal sends it: to the group
        started += line == "started\n"
        if started == 2:
            os.killpg(process.pid, signal.SIGINT)
            break
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "pyinstrument: run 2/5 was interrupted; the report covers the run before it" in stderr
    assert "pyinstrument repeat: 1 run of Program: app.py" in stdout
    # the interrupted program's traceback is shown as python shows it; none from pyinstrument
    files = re.findall(r'File "([^"]+)"', stderr)
    assert files and all(path.endswith("app.py") for path in files), stderr
