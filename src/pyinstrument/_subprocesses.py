"""Profiling the Python child processes of a profiled program (``--subprocesses``).

While a :class:`ChildProfiling` is active, every Python process the program starts
records its own profile and leaves it, when it ends, as ``<pid>.pyisession`` in a
directory the parent made; the parent then merges those sessions into its own, one
subtree per process.

How children get profiled:

* children started by executing Python (``subprocess`` running ``sys.executable``,
  multiprocessing's *spawn* and *forkserver* start methods) inherit the environment:
  ``PYINSTRUMENT_CHILD_DIR`` etc., and ``PYTHONPATH`` led by our ``_child`` directory,
  whose ``sitecustomize`` calls :func:`start_in_child` at interpreter start-up;
* forked children (``os.fork``, multiprocessing's *fork*) get a fresh profiler from an
  ``os.register_at_fork`` hook.

A child saves its session when it ends: at exit (``atexit``), at ``os._exit`` (how
forked multiprocessing workers end) and at SIGTERM (how ``Pool.terminate()``, and so
``with Pool()``, ends its workers), after which it dies of the signal as it would
have. The engine's SIGTERM guard (``engine/sigterm.c``) makes sure the SIGTERM handler
runs even if the main thread was about to block, and that the child dies of SIGTERM
whatever happens: ``SIGTERM_DEADLINE`` seconds after it if the handler could not run,
``SIGTERM_SAVE_DEADLINE`` seconds after the handler started saving.

In the merged session each record starts with a process root frame written like a
thread root (``name \\x00 <thread> \\x00 pid``), so the call tree and the renderers show
one subtree per process, labelled ``process <pid>: <command line>``.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import signal
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from pyinstrument import _engine
from pyinstrument.frame_table import FrameInfo
from pyinstrument.session import Session

ENV_DIR = "PYINSTRUMENT_CHILD_DIR"
ENV_INTERVAL = "PYINSTRUMENT_CHILD_INTERVAL"
ENV_ALL_THREADS = "PYINSTRUMENT_CHILD_ALL_THREADS"
SESSION_SUFFIX = ".pyisession"
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child")
#: after a SIGTERM: how often it is sent again until the child is dead; when the child
#: dies of it if its handler has not run (its main thread stuck in C); and, once the
#: handler runs, how long the save may take (it cannot block on the program, but could)
SIGTERM_NUDGE = 0.02
SIGTERM_DEADLINE = 2.0
SIGTERM_SAVE_DEADLINE = 10.0


def process_root(pid: int, description: str) -> FrameInfo:
    """The frame that roots one process's subtree (a thread root, for upstream's readers)."""
    return FrameInfo.thread(f"process {pid}: {description}" if description else f"process {pid}", pid)


def _rooted(session: Session, root: FrameInfo) -> None:
    session.frame_table = session.frame_table.rooted(root)


# --- the parent side -----------------------------------------------------------------------

#: (directory, interval, all_threads) while forked children are to be profiled
_Settings = Tuple[str, float, bool]
_fork_settings: Optional[_Settings] = None


class ChildProfiling:
    """From :meth:`begin` to :meth:`end`, Python children of this process (and their
    children) are profiled into a temporary directory."""

    def __init__(self, interval: float, all_threads: bool) -> None:
        self.interval = interval
        self.all_threads = all_threads
        self.directory: Optional[str] = None
        self._owner_pid = 0
        self._saved_env: Dict[str, Optional[str]] = {}
        self._saved_fork_settings: Optional[_Settings] = None

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
        self._saved_fork_settings = _fork_settings
        _fork_settings = (self.directory, self.interval, self.all_threads)
        _install_fork_hook()

    def end(self) -> List[Session]:
        """Stop profiling children; the sessions of those that have ended, oldest first.
        In a forked child that runs on into the parent's code: nothing (its own profile
        is saved by the profiler the fork hook started)."""
        global _fork_settings
        if self.directory is None or os.getpid() != self._owner_pid:
            return []
        _fork_settings = self._saved_fork_settings
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        children: List[Session] = []
        for name in sorted(os.listdir(self.directory)):
            if name.endswith(SESSION_SUFFIX):  # not a file still being written
                try:
                    children.append(Session.load(os.path.join(self.directory, name)))
                except (OSError, ValueError):
                    pass
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
        children.sort(key=lambda s: s.start_time)
        return children


def merge_process_sessions(parent: Session, parent_pid: int, children: List[Session]) -> Session:
    """One session: the parent's records under its process root, then each child's
    (already under theirs, see :func:`_write_session`). Start, duration and start stack
    are the parent's: the processes ran side by side, not one after the other."""
    _rooted(parent, process_root(parent_pid, parent.target_description))
    merged = parent
    for child in children:
        merged = Session.combine(merged, child)
    merged.start_time = parent.start_time
    merged.duration = parent.duration
    merged.start_call_stack = parent.start_call_stack  # _trim_stem looks below thread-like roots
    merged.target_description = parent.target_description
    return merged


# --- the child side ------------------------------------------------------------------------

_fork_hook_installed = False
#: the profiler recording this process, when it is a profiled child
_profiler: Optional[Any] = None
_directory = ""
_original_exit = os._exit
_saving = False
_terminate_when_saved = False


def _install_fork_hook() -> None:
    global _fork_hook_installed
    if not _fork_hook_installed:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_installed = True


def _after_fork_in_child() -> None:
    if _fork_settings is not None:
        try:
            _start(*_fork_settings)
        except Exception:  # noqa: BLE001 -- profiling must never break the child
            pass


def start_in_child() -> None:
    """Called by the bootstrap ``sitecustomize``: profile this process if a profiled
    parent asked for it."""
    directory = os.environ.get(ENV_DIR)
    if directory:
        try:
            interval = float(os.environ.get(ENV_INTERVAL) or 0.001)
        except ValueError:
            interval = 0.001
        _start(directory, interval, bool(os.environ.get(ENV_ALL_THREADS)))


def _start(directory: str, interval: float, all_threads: bool) -> None:
    global _profiler, _directory, _fork_settings, _saving, _terminate_when_saved
    # a forked child of a profiled child inherits what this set up there: undone first
    # (the profiler has no sampling thread here, the engine's SIGTERM guard serves the
    # parent only)
    _profiler = None
    _saving = _terminate_when_saved = False
    atexit.unregister(_save)
    if os._exit is _exit_after_saving:
        os._exit = _original_exit
    if signal.getsignal(signal.SIGTERM) is _terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not os.path.isdir(directory):
        return  # the parent's profiling has ended
    from pyinstrument.profiler import Profiler

    profiler = Profiler(interval=interval, async_mode="disabled", all_threads=all_threads)
    with contextlib.redirect_stderr(io.StringIO()):  # a notice (a sandbox's fallback sampler)
        profiler.start(target_description="")  # is the parent's to give, not the child's
    _profiler = profiler
    _directory = directory
    _fork_settings = (directory, interval, all_threads)  # its children are profiled too
    _install_fork_hook()
    atexit.register(_save)
    os._exit = _exit_after_saving  # type: ignore[assignment]
    # a SIGTERM handler of the program's own is left alone: it decides what SIGTERM does
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        try:
            signal.signal(signal.SIGTERM, _terminated)
        except ValueError:
            return  # not the main thread
        if not _engine.guard_sigterm(SIGTERM_NUDGE, SIGTERM_DEADLINE):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _save() -> None:
    """Stop this child's profiler and leave its session for the parent (once)."""
    global _profiler, _saving
    profiler, _profiler = _profiler, None
    if profiler is None:
        return
    _saving = True
    try:
        _write_session(profiler)
    finally:
        _saving = False
    if _terminate_when_saved:
        _die_of_sigterm()


def _write_session(profiler: Any) -> None:
    try:
        if not os.path.isdir(_directory):
            return  # the parent's profiling has ended (the sampling thread ends with us)
        session = profiler._stop_from_any_thread()  # os._exit may be called from any thread
        if not len(session.frame_table):
            return
        pid = os.getpid()
        description = " ".join(sys.argv) if sys.argv and any(sys.argv) else sys.executable
        _rooted(session, process_root(pid, description))
        session.target_description = description
        session.save(os.path.join(_directory, f"{pid}{SESSION_SUFFIX}"))
    except Exception:  # noqa: BLE001 -- the parent may be gone; the child's exit must not fail
        pass


def _exit_after_saving(status: int) -> None:
    _save()
    _original_exit(status)


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM: save, then die of it."""
    global _terminate_when_saved
    if _terminate_when_saved:
        return  # SIGTERM again: the engine's guard repeats it until the child is dead
    _terminate_when_saved = True
    _engine.guard_sigterm(SIGTERM_NUDGE, SIGTERM_SAVE_DEADLINE)  # Python runs: time to save
    if not _saving:  # else the save under way (the child was ending) dies when done
        try:
            _save()
        finally:
            _die_of_sigterm()


def _die_of_sigterm() -> None:
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:
        pass  # not the main thread: the engine's guard still ends the process
    os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["ChildProfiling", "merge_process_sessions", "process_root", "start_in_child"]
