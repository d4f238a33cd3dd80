"""What many test files share: a busy loop, the command line run as a user runs it, and a
short program run in a fresh interpreter under the engine (its report as JSON).

Programs that tests run in a subprocess keep their own busy loops in their source: their
function names are what the tests read in the reports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

#: make test-sanitize: the engine built with ASan+UBSan, whose runtimes are preloaded; it
#: reads two to three times slower, so drop rates mean nothing there
UNDER_SANITIZERS = "libasan" in os.environ.get("LD_PRELOAD", "")

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
#: the tests run against the source tree when pyinstrument is not installed
ADD_SRC_TO_PATH = importlib.util.find_spec("pyinstrument") is None
#: a free-threaded build (3.13t): no GIL, and it reads only processes of its own build
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def spin(seconds: float) -> None:
    """Keeps the thread busy in Python code for ``seconds`` of wall time."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def write(path: Path, source: str) -> Path:
    """Writes ``source`` (dedented) to ``path``, making its folder; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This environment without what would change how Python or the report behaves."""
    env = dict(os.environ)
    if ADD_SRC_TO_PATH:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    for name in ("PYTHONSAFEPATH", "PYTHONSTARTUP", "PYTHONINSPECT", "NO_COLOR"):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def run_pyinstrument(
    *args: str, cwd: Any, env: Optional[Dict[str, str]] = None, check: bool = True, **kwargs: Any
) -> "subprocess.CompletedProcess[str]":
    """``python -m pyinstrument ARGS`` in ``cwd`` (``env``: the whole environment, or
    None for :func:`clean_env`); with ``check``, asserts it succeeded."""
    result = subprocess.run(
        [sys.executable, "-m", "pyinstrument", *args],
        cwd=cwd,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


#: the start of every program run_program runs: a busy loop and a report of the session
#: as JSON on the last line of stdout (stacks as "a > b > c" with their seconds)
HARNESS = textwrap.dedent(
    """
    import json, sys, os, threading, time
    from pyinstrument import Profiler

    def flatten(session):
        out = {}
        for stack, seconds in session.frame_records:
            if not seconds:
                continue  # time in the timeline without a sample, not a stack
            names = [f.split("\\x00")[0] for f in stack]
            key = " > ".join(names)
            out[key] = out.get(key, 0.0) + seconds
        return out

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    def report(session, **extra):
        print(json.dumps({"stacks": flatten(session), "duration": session.duration,
                          "samples": session.sample_count, "dropped": session.dropped_samples,
                          "records": session.frame_records, **extra}))
    """
)


def run_program(body: str, timeout: float = 120) -> Dict[str, Any]:
    """Runs HARNESS + ``body`` in a fresh interpreter; returns what its report() printed."""
    code = HARNESS + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: appended to a program: py-spy --nonblocking reading this process beside our engine.
#: Like the engine, it reads a running thread without stopping it, and so sees a call of a
#: few ns less often than it runs, by how much depending on the CPU, the Python version and
#: the process (where its memory fell): on 3.11 on one machine, do_nothing 0.7-3.5% in one
#: process and the next, as the engine sees in the same one. Share tests of such calls
#: compare with what it sees of the same process at the same time (skipped where it
#: cannot read this Python: share_beside_concurrent_reader).
CONCURRENT_READER = """
import ctypes, subprocess, tempfile

def start_concurrent_reader(seconds):  # whole seconds; on the CPUs pin_apart leaves free
    # let a reader that is not our parent read us (Yama's ptrace scope 1)
    ctypes.CDLL(None).prctl(0x59616D61, ctypes.c_ulong(-1), 0, 0, 0)
    cpus = set(sorted(os.sched_getaffinity(0))[1:])
    out = tempfile.NamedTemporaryFile(suffix=".txt", delete=False).name
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return out, subprocess.Popen(
        [spy, "record", "--nonblocking", "--pid", str(os.getpid()), "--rate", "1000",
         "--duration", str(seconds), "--format", "raw", "--output", out],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},  # no sanitizer runtime
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)

def pin_apart(reader):
    # this thread on the first CPU, the reader (its thread's name, or another process) on
    # the others: both read beside the thread, not between its instructions
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as comm:
                if comm.read().strip() == reader:
                    os.sched_setaffinity(int(tid), set(cpus[1:]))

def concurrent_reader_share(reader, function):
    # None where py-spy cannot read this Python (a free-threaded build)
    out, spy = reader
    try:
        _, errors = spy.communicate()
        if "Failed to find a python interpreter" in errors:
            return None
        assert spy.returncode == 0, errors
        with open(out) as lines:
            counts = [line.rsplit(" ", 1) for line in lines]
    finally:
        os.unlink(out)
    total = sum(int(count) for _, count in counts)
    seen = sum(int(count) for stack, count in counts if any(f.startswith(function + " (") for f in stack.split(";")))
    assert total > 100, total
    return seen / total
"""


def share_beside_concurrent_reader(program: str, run: str, function: str, interval: float, seconds: int):
    """Runs ``program`` (definitions) then ``run`` under our engine, with the thread on one
    CPU and both readers on the others; returns ``function``'s share as ours saw it and as
    py-spy --nonblocking saw it meanwhile (skips the test where py-spy cannot read this Python)."""
    result = run_program(
        program
        + CONCURRENT_READER
        + f"""
reader = start_concurrent_reader({seconds})
with Profiler(interval={interval}) as p:
    pin_apart("pyinstrument")
    {run}
report(p.last_session, limit=concurrent_reader_share(reader, {function!r}))
"""
    )
    if result["limit"] is None:
        pytest.skip("py-spy cannot read this Python (free-threaded): nothing to compare the share with")
    return time_in(result["stacks"], function) / sum(result["stacks"].values()), result["limit"]


def time_in(stacks: Dict[str, float], name: str) -> float:
    """Total time of stacks passing through a frame called `name`."""
    return sum(t for key, t in stacks.items() if name in key.split(" > "))


#: prepended to a program: process_vm_readv then fails as in a strict container's seccomp filter
REFUSE_PROCESS_VM_READV = """
import ctypes, platform
# a seccomp filter like a strict container's: process_vm_readv fails with EPERM
libc = ctypes.CDLL(None, use_errno=True)
class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]
program = (SockFilter * 4)(
    SockFilter(0x20, 0, 0, 0),            # load the syscall number
    SockFilter(0x15, 0, 1, 310),          # process_vm_readv on x86_64?
    SockFilter(0x06, 0, 0, 0x00050001),   # then fail with EPERM
    SockFilter(0x06, 0, 0, 0x7FFF0000),   # else allow
)
assert libc.prctl(38, 1, 0, 0, 0) == 0    # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(SockFprog(4, program)), 0, 0) == 0  # PR_SET_SECCOMP
"""
