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
    _progress(f"running the program {count} times, each in a new process")
    try:
        for number in range(1, count + 1):
            path = os.path.join(directory, f"run{number}.pyisession")
            try:
                run = _one_run(cli, path, number, count)
            except RepeatStopped as exc:
                kept = f"; the report covers the {len(runs)} runs before it" if runs else ""
                print(f"{PROG}: {exc}{kept}", file=sys.stderr)
                status = exc.status
                break
            runs.append(run)
            wall = sorted(r.duration for r in runs)[(len(runs) - 1) // 2]
            _progress(f"run {number}/{count}: {run.duration:.3f}s (median so far {wall:.3f}s)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return (repeat_set(runs) if runs else None), status


def _one_run(cli: CommandLine, path: str, number: int, count: int) -> Any:
    from pyinstrument.session import Session

    started = time.perf_counter()
    process = subprocess.Popen(run_command(cli, path))
    try:
        _, wait_status, usage = _wait(process)
    except KeyboardInterrupt:
        # the run got the Ctrl-C too (one process group): let it write its profile and end
        _, wait_status, usage = _wait(process)
        raise RepeatStopped(f"run {number}/{count} was interrupted", 130) from None
    wall = time.perf_counter() - started
    exit_status = os.waitstatus_to_exitcode(wait_status)
    if exit_status < 0:
        raise RepeatStopped(f"run {number}/{count} was killed by signal {-exit_status}", 128 - exit_status)
    if exit_status:
        raise RepeatStopped(f"run {number}/{count} exited with status {exit_status}", exit_status)
    try:
        run = Session.load(path)
    except (OSError, ValueError) as exc:
        raise RepeatStopped(f"run {number}/{count} left no usable profile ({exc})", 1) from None
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
