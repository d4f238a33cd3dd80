"""Profiling the Python child processes of a profiled program (``--subprocesses``).

While a :class:`ChildProfiling` is active, every Python process the program starts
records its own profile and leaves it, when it ends, as ``<pid>.pyisession`` in a
directory the parent made; the parent then merges those sessions into its own, one
subtree per process.

How children get profiled:

* children started by executing Python (``subprocess`` running ``sys.executable``,
  multiprocessing's *spawn* and *forkserver* start methods) inherit the environment:
  ``PYINSTRUMENT_CHILD_DIR`` etc., and ``PYTHONPATH`` led by our ``_child`` directory,
  whose ``sitecustomize`` calls :func:`start_in_child` at interpreter start-up (and then
  runs any other ``sitecustomize`` the child would have had);
* forked children (``os.fork``, multiprocessing's *fork*) get a fresh profiler from an
  ``os.register_at_fork`` hook.

A child saves its session when it ends through ``atexit``, ``os._exit`` (how forked
multiprocessing workers end) or SIGTERM (how ``Pool.terminate()``, and so
``with Pool()``, ends its workers; the signal is then re-raised so the child still
dies of it). A child killed otherwise (SIGKILL, a crash), or still running when the
parent's profiling stops, is left out of the report.

In the merged session each record starts with a process root frame written like a
thread root (``name \\x00 <thread> \\x00 pid``), so the call tree and the renderers show
one subtree per process, labelled ``process <pid>: <command line>``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
from typing import Any, Dict, List, Optional

from pyinstrument.frame import IDENTIFIER_SEP, THREAD_FILE
from pyinstrument.session import Session, Timeline, _records_order, _union, _merge_thread_names

ENV_DIR = "PYINSTRUMENT_CHILD_DIR"
ENV_INTERVAL = "PYINSTRUMENT_CHILD_INTERVAL"
ENV_ALL_THREADS = "PYINSTRUMENT_CHILD_ALL_THREADS"
SESSION_SUFFIX = ".pyisession"
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child")

_PROCESS_ROOT_MARK = IDENTIFIER_SEP + THREAD_FILE + IDENTIFIER_SEP


def process_root(pid: int, description: str) -> str:
    """The frame string that roots one process's subtree."""
    label = f"process {pid}: {description}" if description else f"process {pid}"
    return label.replace(IDENTIFIER_SEP, " ") + _PROCESS_ROOT_MARK + str(pid)


# --- the parent side -----------------------------------------------------------------------


class ChildProfiling:
    """From :meth:`begin` to :meth:`merge_into`, Python children of this process (and
    their children) are profiled into a temporary directory."""

    def __init__(self, interval: float, all_threads: bool) -> None:
        self.interval = interval
        self.all_threads = all_threads
        self.directory: Optional[str] = None
        self._owner_pid = 0
        self._saved_env: Dict[str, Optional[str]] = {}

    def begin(self) -> None:
        global _fork_settings
        self.directory = tempfile.mkdtemp(prefix="pyinstrument-children-")
        self._owner_pid = os.getpid()
        settings = {
            ENV_DIR: self.directory,
            ENV_INTERVAL: repr(self.interval),
            ENV_ALL_THREADS: "1" if self.all_threads else "",
            "PYTHONPATH": os.pathsep.join(p for p in (BOOTSTRAP_DIR, os.environ.get("PYTHONPATH")) if p),
        }
        for key, value in settings.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        _fork_settings = (self.directory, self.interval, self.all_threads)
        _install_fork_hook()

    def merge_into(self, session: Session) -> Session:
        """Stop profiling children and return ``session`` with the sessions of the
        children that have ended so far merged in (``session`` itself when none has)."""
        if self.directory is None or os.getpid() != self._owner_pid:
            # a forked child that runs on into the parent's code: its own profile is
            # saved by the fork hook's profiler, not merged here
            return session
        children = self.end()
        if not children:
            return session
        return merge_process_sessions(session, os.getpid(), children)

    def end(self) -> List[Session]:
        """Stop profiling children; the sessions of those that have ended, oldest first."""
        global _fork_settings
        if self.directory is None or os.getpid() != self._owner_pid:
            return []
        _fork_settings = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        children: List[Session] = []
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            names = []
        for name in names:
            if not name.endswith(SESSION_SUFFIX):
                continue  # e.g. a file still being written atomically
            try:
                children.append(Session.load(os.path.join(self.directory, name)))
            except (OSError, ValueError):
                continue
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
        children.sort(key=lambda s: s.start_time)
        return children


def merge_process_sessions(parent: Session, parent_pid: int, children: List[Session]) -> Session:
    """One session: the parent's records under its process root, then each child's
    (children's records are already rooted, see :func:`_save_child`). Wall duration
    is the parent's: the processes ran side by side, not one after the other."""
    root = process_root(parent_pid, parent.target_description)
    parts = [parent] + children
    records: List[Any] = []
    cpu: List[float] = []
    has_cpu = any(s.frame_records_cpu is not None for s in parts)
    has_timeline = any(s.timeline is not None for s in parts)
    timeline_records: List[int] = []
    timeline_seconds: List[float] = []
    thread_names: Any = None
    for part in parts:
        offset = len(records)
        if part is parent:
            # a parent merged before (start/stop again) already has its root
            records.extend(
                (stack if stack and stack[0] == root else [root] + list(stack), t) for stack, t in part.frame_records
            )
        else:
            records.extend(part.frame_records)
        if has_cpu:
            cpu.extend(part.frame_records_cpu or [0.0] * len(part.frame_records))
        if has_timeline:
            order = part.timeline if part.timeline is not None else _records_order(part)
            timeline_records.extend(i + offset for i in order.records)
            timeline_seconds.extend(order.seconds)
        thread_names = _merge_thread_names(thread_names, part.thread_names)
    sys_path: List[str] = []
    sys_prefixes: List[str] = []
    for part in parts:
        sys_path = _union(sys_path, part.sys_path)
        sys_prefixes = _union(sys_prefixes, part.sys_prefixes)
    return Session(
        frame_records=records,
        start_time=parent.start_time,
        duration=parent.duration,
        min_interval=min(s.min_interval for s in parts),
        max_interval=max(s.max_interval for s in parts),
        sample_count=sum(s.sample_count for s in parts),
        start_call_stack=parent.start_call_stack,  # _trim_stem looks below thread-like roots
        target_description=parent.target_description,
        cpu_time=sum(s.cpu_time for s in parts),
        sys_path=sys_path,
        sys_prefixes=sys_prefixes,
        frame_records_cpu=cpu if has_cpu else None,
        timeline=Timeline.from_arrays(_int_array(timeline_records), _float_array(timeline_seconds))
        if has_timeline
        else None,
        dropped_samples=sum(s.dropped_samples for s in parts),
        thread_names=thread_names,
    )


def _int_array(values: List[int]) -> Any:
    from array import array

    return array("q", values)


def _float_array(values: List[float]) -> Any:
    from array import array

    return array("d", values)


# --- the child side ------------------------------------------------------------------------

#: (directory, interval, all_threads) while children are to be profiled
_fork_settings: Optional[Any] = None
_fork_hook_installed = False
#: the profiler recording this process, when it is a profiled child
_child_profiler: Optional[Any] = None
_child_directory: Optional[str] = None
_original_exit = os._exit
_saving = False
_terminate_after_saving = False


def _install_fork_hook() -> None:
    global _fork_hook_installed
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_installed = True


def _after_fork_in_child() -> None:
    if _fork_settings is None:
        return
    directory, interval, all_threads = _fork_settings
    try:
        _start(directory, interval, all_threads, forked=True)
    except Exception:  # noqa: BLE001 -- profiling must never break the child
        pass


def start_in_child() -> None:
    """Called by the bootstrap ``sitecustomize``: profile this process if a profiled
    parent asked for it (its directory still exists)."""
    directory = os.environ.get(ENV_DIR)
    if not directory or not os.path.isdir(directory):
        return
    try:
        interval = float(os.environ.get(ENV_INTERVAL) or 0.001)
    except ValueError:
        interval = 0.001
    _start(directory, interval, bool(os.environ.get(ENV_ALL_THREADS)), forked=False)


def _start(directory: str, interval: float, all_threads: bool, forked: bool) -> None:
    global _child_profiler, _child_directory, _fork_settings
    from pyinstrument.profiler import Profiler

    # a profiler inherited through fork has no sampling thread any more: replaced
    _child_profiler = None
    profiler = Profiler(interval=interval, async_mode="disabled", all_threads=all_threads)
    profiler.start(caller_frame=None if forked else sys._getframe(0), target_description="")
    _child_profiler = profiler
    _child_directory = directory
    # this child's own children are profiled too
    _fork_settings = (directory, interval, all_threads)
    _install_fork_hook()
    if not forked:
        atexit.register(_save_child)
    else:
        # atexit handlers were inherited from the parent; ours is registered at most once
        atexit.unregister(_save_child)
        atexit.register(_save_child)
    os._exit = _exit_after_saving  # type: ignore[assignment]
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        try:
            signal.signal(signal.SIGTERM, _terminated)
        except ValueError:
            pass  # not the main thread: SIGTERM stays as it was


def _save_child() -> None:
    """Stop this child's profiler and leave its session for the parent."""
    global _child_profiler, _saving
    profiler, _child_profiler = _child_profiler, None
    if profiler is None or _child_directory is None:
        return
    # a SIGTERM arriving now (a pool worker ending by itself while Pool.terminate()
    # signals it) is acted on once the session is written, not in the middle
    _saving = True
    try:
        _write_session(profiler)
    finally:
        _saving = False
    if _terminate_after_saving:
        _die_of_sigterm()


def _write_session(profiler: Any) -> None:
    try:
        session = profiler.stop() if profiler.is_running else profiler.last_session
        if session is None or not session.frame_records:
            return
        pid = os.getpid()
        description = " ".join(sys.argv) if sys.argv and any(sys.argv) else sys.executable
        root = process_root(pid, description)
        session.frame_records = [([root] + list(stack), t) for stack, t in session.frame_records]
        session.target_description = description
        if os.path.isdir(_child_directory):
            session.save(os.path.join(_child_directory, f"{pid}{SESSION_SUFFIX}"))
    except Exception:  # noqa: BLE001 -- the parent may be gone; the child's exit must not fail
        pass


def _exit_after_saving(status: int) -> None:
    _save_child()
    _original_exit(status)


def _terminated(signum: int, frame: Any) -> None:
    global _terminate_after_saving
    if _saving:
        _terminate_after_saving = True
        return
    _save_child()
    _die_of_sigterm()


def _die_of_sigterm() -> None:
    """End the way SIGTERM would have ended this child without us."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["ChildProfiling", "merge_process_sessions", "process_root", "start_in_child"]
