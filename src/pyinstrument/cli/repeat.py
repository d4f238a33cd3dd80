"""``pyinstrument --repeat N ...``: the program run N times, each in a new process.

Each run is this command again without ``--repeat`` and with its session written to a
temporary file; this process waits for it (``os.wait4``: its CPU time and peak memory),
prints a progress line, and puts the runs together as one repeat set
(:func:`pyinstrument.repeat.repeat_set`). A run that fails stops the repetition: the
report covers the runs before it, and the command exits with the failed run's status.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, List, Optional, Tuple

from pyinstrument.cli.arguments import PROG, CommandLine, UsageError

#: pyinstrument's options that change what a run records, passed on to each run
_RECORDING_OPTIONS = ("--interval", "--all-threads", "--subprocesses", "--from-path", "--target-description")


def run_command(cli: CommandLine, session_file: str) -> List[str]:
    """The command of one run: this interpreter running pyinstrument on the same program
    with the same recording options, its session written to *session_file*."""
    options = [word for word in cli.option_words if word.partition("=")[0] in _RECORDING_OPTIONS]
    if cli.target_kind == "module":
        target = ["-m", cli.target or ""]
    elif cli.target_kind == "program":
        target = ["-c", cli.target or ""]
    else:
        target = ["--", cli.target or ""]
    return [sys.executable, "-m", "pyinstrument", *options, "--renderer=session", f"--outfile={session_file}"] + [
        *target,
        *cli.target_args,
    ]


class RepeatStopped(Exception):
    """A run failed: the runs before it are kept, the exit status is the run's."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def run_repeated(cli: CommandLine, count: int) -> Tuple[Optional[Any], int]:
    """Run the program *count* times. Returns (the repeat set of the runs that finished,
    or None when none did; the exit status: 0, or the failed run's)."""
    from pyinstrument.repeat import repeat_set
    from pyinstrument.session import Session

    if cli.target_kind == "script" and cli.target == "-":
        raise UsageError("--repeat cannot run a program read from standard input: save it to a file")
    runs: List[Session] = []
    status = 0
    directory = tempfile.mkdtemp(prefix="pyinstrument-repeat-")
    # Ctrl-C reaches the run too (one process group): it ends and writes its profile; this
    # process only notes it, stops after that run, and reports the runs before it
    interrupted: List[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    _progress(f"running the program {count} times, each in a new process")
    try:
        for number in range(1, count + 1):
            path = os.path.join(directory, f"run{number}.pyisession")
            try:
                if interrupted:
                    raise RepeatStopped(f"interrupted before run {number}/{count}", 130)
                run = _one_run(cli, path, f"run {number}/{count}", interrupted)
            except RepeatStopped as exc:
                kept = ""
                if runs:
                    kept = (
                        "; the report covers "
                        + ("the run" if len(runs) == 1 else f"the {len(runs)} runs")
                        + " before it"
                    )
                print(f"{PROG}: {exc}{kept}", file=sys.stderr)
                status = exc.status
                break
            runs.append(run)
            wall = sorted(r.duration for r in runs)[(len(runs) - 1) // 2]
            _progress(f"run {number}/{count}: {run.duration:.3f}s (median so far {wall:.3f}s)")
    finally:
        signal.signal(signal.SIGINT, previous)
        shutil.rmtree(directory, ignore_errors=True)
    return (repeat_set(runs) if runs else None), status


def _one_run(cli: CommandLine, path: str, name: str, interrupted: List[int]) -> Any:
    from pyinstrument.session import Session

    started = time.perf_counter()
    process = subprocess.Popen(run_command(cli, path))
    _, wait_status, usage = _wait(process)
    wall = time.perf_counter() - started
    if interrupted:
        raise RepeatStopped(f"{name} was interrupted", 130)
    exit_status = os.waitstatus_to_exitcode(wait_status)
    if exit_status < 0:
        raise RepeatStopped(f"{name} was killed by signal {-exit_status}", 128 - exit_status)
    if exit_status:
        raise RepeatStopped(f"{name} exited with status {exit_status}", exit_status)
    try:
        run = Session.load(path)
    except (OSError, ValueError) as exc:
        raise RepeatStopped(f"{name} left no usable profile ({exc})", 1) from None
    run.process_usage = {
        "wall_time": wall,
        "cpu_time": usage.ru_utime + usage.ru_stime,
        "max_rss": usage.ru_maxrss * (1.0 if sys.platform == "darwin" else 1024.0),  # kilobytes but on macOS
    }
    return run


def _wait(process: "subprocess.Popen[bytes]") -> Tuple[int, int, Any]:
    """Wait for the run with its resource use; Popen is told, so it does not wait again."""
    while True:
        try:
            pid, wait_status, usage = os.wait4(process.pid, 0)
        except InterruptedError:
            continue
        process.returncode = os.waitstatus_to_exitcode(wait_status)
        return pid, wait_status, usage


def _progress(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
