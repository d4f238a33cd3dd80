"""Profiling a process that is already running: ``pyinstrument --pid PID``.

The engine reads the other process's memory as it reads ours (``process_vm_readv``),
from this process's sampling thread: the target is never stopped, signalled or changed.
A target running this same interpreter file is read in full; one running any other
CPython 3.9-3.15 is read with that version's layout from the engine's table: its
stacks, without the C function at the leaf (docs/attach.md).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from pyinstrument import run_metadata
from pyinstrument.frame_table import FrameInfo, FrameKind
from pyinstrument.profiler import session_from_snapshot
from pyinstrument.session import Session

if TYPE_CHECKING:
    from pyinstrument._engine import Sampler

#: how often the recording loop looks whether the target still runs, in seconds
_POLL = 0.05


class AttachError(Exception):
    """The process cannot be read; the message says why and what to do."""


def _proc(pid: int, name: str) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as file:
            return file.read().decode("utf-8", "replace")
    except OSError:
        return None


def command_line(pid: int) -> List[str]:
    """The target's argv, as the kernel keeps it ([] when unreadable)."""
    text = _proc(pid, "cmdline") or ""
    return [arg for arg in text.split("\0") if arg]


def running(pid: int) -> bool:
    """Whether the process runs (a zombie, ended but not yet reaped, does not)."""
    stat = _proc(pid, "stat")
    if stat is None:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"])


def _cpu_seconds(pid: int) -> Optional[float]:
    stat = _proc(pid, "stat")
    if stat is None:
        return None
    fields = stat.rpartition(")")[2].split()
    try:  # utime and stime, fields 14 and 15 of the line (11 and 12 after the name)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError):
        return None


def _thread_names(pid: int, native_ids: List[int]) -> Dict[int, str]:
    """Names by native thread id: the kernel's name of each thread (threading names
    threads there from 3.14 on); the main thread is MainThread, as in-process."""
    process_name = (_proc(pid, "comm") or "").strip()
    names = {}
    for native in native_ids:
        comm = (_proc(pid, f"task/{native}/comm") or "").strip()
        if native == pid:
            names[native] = "MainThread"
        elif comm and comm != process_name:
            names[native] = comm
    return names


def _engine_attach(pid: int) -> Dict[str, Any]:
    """Points the engine at *pid*: what it runs (the version, and whether it is our own
    interpreter file, which the engine reads in full; another one is read for stacks)."""
    from pyinstrument import _engine

    try:
        return _engine.attach(pid)
    except (OSError, ValueError) as exc:
        raise AttachError(str(exc)) from None


def _version_text(version: int) -> str:
    """0x030C01F0 -> 3.12.1; 3.9/3.10 processes tell only their minor version."""
    major, minor, micro = version >> 24, (version >> 16) & 0xFF, (version >> 8) & 0xFF
    return f"{major}.{minor}.{micro}" if version & 0xFF else f"{major}.{minor}"


def _metadata(pid: int, target: Dict[str, Any]) -> Dict[str, Any]:
    """This run's metadata, made true of the target: its command line and Python; the
    installed distributions are those of the target's own environment, unknown here."""
    metadata = run_metadata.collect()
    metadata["argv"] = command_line(pid)
    metadata["attached_pid"] = pid
    metadata["python"] = _version_text(target["version"])
    metadata.pop("distributions", None)
    metadata.pop("distributions_hash", None)
    return metadata


def _session(
    pid: int,
    target: Dict[str, Any],
    sampler: "Sampler",
    start_wall: float,
    duration: float,
    interval: float,
    cpu: float,
) -> Session:
    snapshot = sampler.snapshot()
    native_names = _thread_names(pid, [native for _, native, *_ in snapshot["threads"]])
    names = {
        (ident, native): native_names[native] for ident, native, *_ in snapshot["threads"] if native in native_names
    }
    metadata = _metadata(pid, target)
    argv = metadata["argv"]
    return session_from_snapshot(
        snapshot,
        all_threads=True,
        thread_names=names,
        start_time=start_wall,
        duration=duration,
        interval=interval,
        cpu_time=cpu,
        start_call_stack=[],
        target_description=f"Process {pid}: {' '.join(argv) or '?'}",
        metadata=metadata,
    )


class Recorder:
    """Recordings of process *pid*, one after another (the engine reads it from now on)."""

    def __init__(self, pid: int, interval: float) -> None:
        self.target = _engine_attach(pid)
        self.pid, self.interval = pid, interval
        self._sampler: Optional["Sampler"] = None
        self._started = (0.0, 0.0, 0.0)  # wall clock, perf counter, target's CPU seconds

    def start(self) -> None:
        from pyinstrument import _engine

        self._sampler = _engine.Sampler(interval=self.interval, thread_id=0)
        self._started = (time.time(), time.perf_counter(), _cpu_seconds(self.pid) or 0.0)
        self._sampler.start()

    def stop(self) -> Session:
        assert self._sampler is not None
        self._sampler.stop()
        wall, start, cpu_before = self._started
        elapsed = time.perf_counter() - start
        cpu_after = _cpu_seconds(self.pid)
        cpu = max(0.0, cpu_after - cpu_before) if cpu_after is not None else 0.0
        session = _session(self.pid, self.target, self._sampler, wall, elapsed, self.interval, cpu)
        self._sampler = None
        return session

    def cancel(self) -> None:
        """Stops a recording, keeping nothing."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None


def record(
    pid: int,
    interval: float,
    duration: Optional[float] = None,
) -> Session:
    """Records process *pid* until *duration* seconds pass, it ends, or Ctrl-C."""
    recorder = Recorder(pid, interval)
    recorder.start()
    start = time.perf_counter()
    try:
        while running(pid) and (duration is None or time.perf_counter() - start < duration):
            left = _POLL if duration is None else duration - (time.perf_counter() - start)
            time.sleep(max(0.0, min(_POLL, left)))
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the recording: the report is what was asked for
    return recorder.stop()


def current_stacks(pid: int) -> List[Tuple[str, bool, List[FrameInfo]]]:
    """Every thread's stack now, outermost frame first: (thread name, whether it holds the
    GIL, frames)."""
    from pyinstrument import _engine

    target = _engine_attach(pid)
    sampler = _engine.Sampler(interval=0.001, thread_id=0)
    sampler._tick()  # starts the clock
    sampler._tick()  # reads every thread once
    holder = sampler._gil_holder()
    session = _session(pid, target, sampler, time.time(), 0.0, 0.001, 0.0)
    stacks = []
    for stack, _ in session.frame_records:
        frames = [FrameInfo.parse(text) for text in stack]
        if frames and frames[0].kind == FrameKind.THREAD:
            # a thread's root frame is keyed by its kernel tid (or its ident when unknown)
            holds = holder is not None and frames[0].first_line in (holder[1] or holder[0],)
            stacks.append((frames[0].function, holds, frames[1:]))
    return stacks


def format_dump(pid: int, stacks: List[Tuple[str, bool, List[FrameInfo]]]) -> str:
    """The stacks as Python prints a traceback, one per thread."""
    lines = [f"Process {pid}: {' '.join(command_line(pid)) or '?'}", ""]
    for name, holds_gil, frames in stacks:
        lines.append(f"{name} ({'holds the GIL; ' if holds_gil else ''}most recent call last):")
        for frame in frames:
            if frame.kind == FrameKind.CODE:
                line = f", line {frame.line}" if frame.line else ""
                lines.append(f'  File "{frame.file}"{line}, in {frame.function}')
            else:
                lines.append(f"  in C: {frame.function}")
        if not frames:
            lines.append("  (no Python code running)")
        lines.append("")
    return "\n".join(lines)
