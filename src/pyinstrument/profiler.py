"""The Profiler: starts and stops the C sampling engine and turns its samples into a Session.

The engine (pyinstrument._engine) samples from a native thread and aggregates into
per-thread call tries; this module converts a snapshot of those tries into the
session's frame records, the format pyinstrument's sessions have always used.
"""

from __future__ import annotations

import contextvars
import inspect
import os
import struct
import sys
import sysconfig
import threading
import time
import types
import weakref
from array import array
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pyinstrument import _async, _engine, own_code, run_metadata
from pyinstrument._files import write_report_file
from pyinstrument.frame import is_path_in_package
from pyinstrument.frame_table import NO_NODE as NO_STACK
from pyinstrument.frame_table import FrameInfo, FrameKind, FrameTable
from pyinstrument.renderers import ConsoleRenderer
from pyinstrument.session import Phases, Session, Timeline

# The process forks with the threads it would have unprofiled: the sampling threads are
# joined around os.fork() (CPython 3.12+ warns when a process with threads forks; 3.13
# counts them after the at-fork hooks, so there they start again once os.fork() returned).
os.register_at_fork(
    before=_engine.pause_samplers,
    after_in_parent=_engine.resume_samplers_soon if sys.version_info[:2] == (3, 13) else _engine.resume_samplers,
)

_ASYNC_MODES = ("enabled", "disabled", "strict")
_SYNTHETIC_LINE = -1  # the first line of the engine's frames that are no code
_PHASE_MARKER = "[phase]"  # the engine's node above a phase's samples (its line: the phase)
_TRUNCATED = "[frames truncated]"  # the engine's marker for the middle of a too-deep stack


#: a call-tree node in the engine's snapshot (C's pi_node): parent, identity, line,
#: thread, self wall ns, self CPU ns, samples; NO_NODE for a thread root's parent
ENGINE_NODE = struct.Struct("=IIiIqqQ")
NO_NODE = 0xFFFFFFFF


def _notice(message: str) -> None:
    print(f"pyinstrument: {message}", file=sys.stderr)


def _counts_of(snapshot: Dict[str, Any]) -> Dict[str, Any]:
    """The engine's counters and table sizes, kept after its tables are released."""
    counts = {key: value for key, value in snapshot.items() if isinstance(value, (int, float, bool))}
    for kind in ("walk_failed", "walk_retried"):  # e.g. walk_retried_torn
        counts.update({f"{kind}_{cause}": n for cause, n in (snapshot.get(kind) or {}).items()})
    counts["nodes"] = len(snapshot["nodes"]) // ENGINE_NODE.size
    counts["timeline_entries"] = sum(len(thread[3]) for thread in snapshot["threads"]) // 8
    return counts


def _drop_causes(snapshot: Dict[str, Any]) -> Dict[str, int]:
    """The dropped samples by cause: each check of the walk that failed, apart."""
    causes = dict(snapshot.get("walk_failed") or {})
    unexplained = snapshot.get("dropped_walk", 0) - sum(causes.values())
    if unexplained > 0:  # the fallback sampler does not tell them apart
        causes["changed"] = unexplained
    causes["code"] = snapshot.get("dropped_code", 0)
    causes["context"] = snapshot.get("dropped_context", 0)
    return causes


def _caller_stack(frame: Optional[types.FrameType]) -> List[FrameInfo]:
    stack = []
    while frame is not None:
        code = frame.f_code
        name = getattr(code, "co_qualname", code.co_name)
        stack.append(FrameInfo.code(name, code.co_filename, code.co_firstlineno, line=frame.f_lineno or 0))
        frame = frame.f_back
    stack.reverse()
    return stack


CodeKey = Tuple[str, str, int]  # (co_name, co_filename, co_firstlineno)

_qualname_cache: Dict[CodeKey, str] = {}


def _qualnames_before_311(identities: Sequence[Tuple[str, str, int, bool]]) -> Dict[CodeKey, str]:
    """Before 3.11 code objects carry no qualified name; the functions and classes of the
    modules the sampled code comes from do. Only those modules are walked (a scan of the
    whole heap took 250 ms with 3M objects), and what is found is kept for later stops."""
    if sys.version_info >= (3, 11):
        return {}
    wanted = {(name, filename, line) for name, filename, line, _ in identities}
    missing = {key for key in wanted if key not in _qualname_cache}
    files = {filename for _, filename, _ in missing}
    if files:
        for module in list(sys.modules.values()):
            if getattr(module, "__file__", None) in files or getattr(module, "__name__", None) == "__main__":
                _QualnameWalk(_qualname_cache).module(module)
    return {key: _qualname_cache[key] for key in wanted if key in _qualname_cache}


class _QualnameWalk:
    """Records the qualified name of every code object reachable from a module: its
    functions, its classes' methods (also through staticmethod, classmethod, property and
    decorators), and the functions and classes defined inside them."""

    def __init__(self, found: Dict[CodeKey, str]) -> None:
        self.found = found
        self.seen: set = set()

    def module(self, module: types.ModuleType) -> None:
        for value in list(vars(module).values()):
            if getattr(value, "__module__", None) == module.__name__:
                self.value(value)

    def value(self, value: Any) -> None:
        if id(value) in self.seen:
            return
        self.seen.add(id(value))
        if isinstance(value, (staticmethod, classmethod)):
            self.value(value.__func__)
        elif isinstance(value, property):
            for accessor in (value.fget, value.fset, value.fdel):
                if accessor is not None:
                    self.value(accessor)
        elif isinstance(value, types.FunctionType):
            # functools.wraps gives a wrapper the qualified name of the function it wraps:
            # a name not ending in the code's own is not this code's
            if value.__qualname__.rsplit(".", 1)[-1] == value.__code__.co_name:
                self.code(value.__code__, value.__qualname__)
            # a decorated function: the original is __wrapped__ or in the wrapper's closure
            wrapped = getattr(value, "__wrapped__", None)
            if wrapped is not None:
                self.value(wrapped)
            for cell in value.__closure__ or ():
                try:
                    self.value(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
        elif isinstance(value, type):
            for member in list(vars(value).values()):
                self.value(member)

    def code(self, code: types.CodeType, qualname: str) -> None:
        self.found.setdefault((code.co_name, code.co_filename, code.co_firstlineno), qualname)
        # inside a function, definitions are `f.<locals>.name`; inside a class body, `C.name`
        is_function = bool(code.co_flags & inspect.CO_NEWLOCALS)
        prefix = qualname + (".<locals>." if is_function else ".")
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.code(const, prefix + const.co_name)


def _with_qualname(frame: FrameInfo, qualnames: Dict[CodeKey, str]) -> FrameInfo:
    """A start-stack frame named as the samples name it (3.9/3.10: by the qualified name)."""
    qualname = qualnames.get((frame.function, frame.file, frame.first_line))
    return frame if qualname is None else frame._replace(function=qualname)


#: a thread as the engine knows it: (threading ident, kernel thread id or 0)
ThreadKey = Tuple[int, int]


class _ThreadNameWatch:
    """Remembers the Thread object of every thread started while an all-threads profiler
    runs, so threads that ended before stop() still get their names in the report.

    threading.Thread.start looks its starter function up in the threading module at call
    time; it is wrapped only while such a profiler runs."""

    _starter_names = ("_start_joinable_thread", "_start_new_thread")

    def __init__(self) -> None:
        self.users = 0
        self.original: Optional[Callable[..., Any]] = None
        self.attribute = next(n for n in self._starter_names if hasattr(threading, n))
        self.names: Dict[ThreadKey, str] = {}
        self.started: List[threading.Thread] = []

    def acquire(self) -> None:
        self.users += 1
        if self.users > 1:
            return
        original = getattr(threading, self.attribute)
        started = self.started

        def start_and_remember(function: Any, *args: Any, **kwargs: Any) -> Any:
            thread = getattr(function, "__self__", None)
            if isinstance(thread, threading.Thread):
                started.append(thread)
            return original(function, *args, **kwargs)

        self.original = original
        setattr(threading, self.attribute, start_and_remember)

    def release(self) -> None:
        self.users -= 1
        self.collect()
        if self.users == 0 and self.original is not None:
            setattr(threading, self.attribute, self.original)
            self.original = None

    def collect(self) -> Dict[ThreadKey, str]:
        _remember_names(self.started, self.names)
        self.started.clear()
        return self.names


_thread_name_watch = _ThreadNameWatch()


def _remember_names(threads: Sequence[threading.Thread], names: Dict[ThreadKey, str]) -> None:
    for thread in threads:
        if thread.ident is not None:
            names[(thread.ident, getattr(thread, "native_id", None) or 0)] = thread.name


def _thread_names(threads: Sequence[ThreadKey], known: Dict[ThreadKey, str]) -> List[str]:
    """The name of each (ident, kernel tid) the engine saw. Idents are reused at once by
    the next thread, kernel tids much later: a thread is known by both."""
    names = dict(_thread_name_watch.collect())
    names.update(known)
    _remember_names(threading.enumerate(), names)
    by_ident = {ident: name for (ident, _), name in names.items()}
    result = []
    for ident, native in threads:
        name = names.get((ident, native))
        if name is None and not native:  # 3.9/3.10: the engine could not read its kernel tid
            name = by_ident.get(ident)
        result.append(name or f"Thread {native or ident}")
    return result


def _thread_root_keys(threads: Sequence[ThreadKey]) -> List[int]:
    """A number per engine thread for its root frame: the kernel tid, or the ident when the
    tid is unknown or was reused within the run, so no two threads share a root."""
    keys: List[int] = []
    for ident, native in threads:
        key = native or ident
        while key in keys:
            key = ident if key != ident else key + (1 << 48)
        keys.append(key)
    return keys


def session_from_snapshot(
    snapshot: Dict[str, Any],
    *,
    all_threads: bool,
    thread_names: Dict[ThreadKey, str],
    start_time: float,
    duration: float,
    interval: float,
    cpu_time: float,
    start_call_stack: List[FrameInfo],
    target_description: str,
    metadata: Optional[Dict[str, Any]] = None,
    phases: Optional[Tuple[List[str], List[float]]] = None,
) -> Session:
    """Converts the engine's tries into a Session: one frame record per distinct stack
    (per phase: *phases* are the names and times of the run's phases, n for names[n - 1])."""
    identities = snapshot["identities"]
    qualnames = _qualnames_before_311(identities)
    own = own_code.profiler_code()
    base: List[FrameInfo] = []
    is_profiler_code = []
    is_phase_marker = bytearray(len(identities))
    for function, filename, line_no, hides in identities:
        if line_no == _SYNTHETIC_LINE and not filename:  # the engine's [await], [out-of-context], ...
            is_phase_marker[len(base)] = function == _PHASE_MARKER
            base.append(FrameInfo.synthetic(function))
            is_profiler_code.append(False)
            continue
        # the Profiler's own start/stop code (the @profile wrapper stands for the user's
        # call: it stays, and reports show what it called)
        is_profiler_code.append(own.get((filename, line_no)) == own_code.MACHINERY)
        function = qualnames.get((function, filename, line_no), function)
        base.append(FrameInfo.code(function, filename, line_no, hides=bool(hides)))

    start_call_stack = [_with_qualname(frame, qualnames) for frame in start_call_stack]

    threads = snapshot["threads"]
    thread_keys = [(ident, native) for ident, native, *_ in threads]
    names = _thread_names(thread_keys, thread_names)
    root_keys = _thread_root_keys(thread_keys)
    thread_roots = [FrameInfo.thread(name, key) for name, key in zip(names, root_keys)]

    node_count = len(snapshot["nodes"]) // ENGINE_NODE.size
    table = FrameTable()
    thread_root_nodes = [table.add_node(NO_STACK, table.frame_id(root)) for root in thread_roots] if all_threads else []
    # the table's node of each engine node: the profiler's own frames are left out, so
    # theirs is their caller's
    node_of = array("i", [NO_STACK]) * node_count
    record_of_node = array("i", [-1]) * node_count  # -1: not a record
    inside_profiler = bytearray(node_count)
    phase_of = array("I", [0]) * node_count  # the phase each node's samples are of
    record_phase = array("I")  # each record's
    threads_sampled = set()  # threads with at least one sample of the program
    samples_total = 0
    # the table's frame of each (identity, line)
    frame_ids: Dict[Tuple[int, int], int] = {}
    # engine nodes come parent-before-child, and so do the table's
    nodes = ENGINE_NODE.iter_unpack(snapshot["nodes"])  # one at a time: no tuple per node is kept
    for index, (parent, identity, line, thread, wall_ns, cpu_ns, samples) in enumerate(nodes):
        if parent == NO_NODE:
            node_of[index] = thread_root_nodes[thread] if all_threads else NO_STACK
            continue
        if is_phase_marker[identity]:  # not a frame: its line is the phase of what is below it
            node_of[index] = node_of[parent]
            phase_of[index] = line
            continue
        phase_of[index] = phase_of[parent]
        samples_total += samples
        if is_profiler_code[identity] or inside_profiler[parent]:
            # its time stays with the caller (a tick inside the profiler's own start/stop,
            # such as the last one at stop(), belongs to the code that called it)
            inside_profiler[index] = 1
            node = node_of[parent]
        else:
            key = (identity, line)
            frame = frame_ids.get(key)
            if frame is None:
                info = base[identity]
                if info.function == _TRUNCATED and info.kind == FrameKind.SYNTHETIC:
                    info = FrameInfo.synthetic(f"[{line} frames truncated]")  # its line: how many frames
                elif line > 0:
                    info = info._replace(line=line)
                frame = frame_ids[key] = table.frame_id(info)
            node = table.add_node(node_of[parent], frame)
        node_of[index] = node
        if samples:
            record_of_node[index] = table.add_record(node, wall_ns / 1e9, cpu_ns / 1e9)
            record_phase.append(phase_of[index])
            threads_sampled.add(thread)

    timeline_records, timeline_seconds = array("I"), array("f")
    for thread_index, (_, _, _, raw, _) in enumerate(threads):
        if thread_index not in threads_sampled:
            continue  # seen, but never running the program (e.g. a thread still starting)
        # Time in the thread's timeline without a sample of the program (before the
        # thread existed, samples dropped, the profiler's own start/stop) goes to a
        # record of no time holding just the thread: its clock stays true, and trees
        # built from the records are unchanged.
        gap_record = -1
        entries = iter(memoryview(raw).cast("I"))  # (node, wall ns) pairs, read in place
        for node, wall_ns in zip(entries, entries):
            record = record_of_node[node] if node != NO_NODE else -1
            if record < 0:
                if gap_record < 0:
                    gap_record = table.add_record(thread_root_nodes[thread_index] if all_threads else NO_STACK, 0.0)
                    record_phase.append(0)
                record = gap_record
            timeline_records.append(record)
            timeline_seconds.append(wall_ns / 1e9)

    table, start_call_stack = _strip_command_line_frames(table, start_call_stack)
    start_texts = [frame.text for frame in start_call_stack]
    return Session(
        frame_records=table,
        start_time=start_time,
        duration=duration,
        min_interval=interval,
        max_interval=interval,
        sample_count=samples_total,
        start_call_stack=start_texts,
        target_description=target_description,
        cpu_time=cpu_time,
        sys_path=list(sys.path),
        sys_prefixes=Session.current_sys_prefixes(),
        timeline=None if snapshot["timeline_truncated"] else Timeline.from_arrays(timeline_records, timeline_seconds),
        dropped_samples=snapshot["dropped"],
        dropped_by_cause=_drop_causes(snapshot),
        truncated_samples=snapshot["truncated"],
        profiler_code=own,
        run_metadata=metadata,
        thread_names={str(key): name for key, name in zip(root_keys, names)} if all_threads else None,
        phases=Phases(phases[0], phases[1], record_phase) if phases and phases[0] else None,
        gil=_gil_times(threads, names),
    )


def _gil_times(threads: List[Any], names: List[str]) -> Optional[Dict[str, List[float]]]:
    """Each thread's sampled time held / waiting for / outside the GIL, in seconds, by its
    name (threads of one name summed); None where there is no GIL (a free-threaded build)."""
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None
    times: Dict[str, List[float]] = {}
    for (*_, gil_ns), name in zip(threads, names):
        if any(gil_ns):
            mine = times.setdefault(name, [0.0, 0.0, 0.0])
            for k, ns in enumerate(gil_ns):
                mine[k] += ns / 1e9
    return times


def _strip_command_line_frames(
    table: FrameTable, start_call_stack: List[FrameInfo]
) -> Tuple[FrameTable, List[FrameInfo]]:
    """When the ``pyinstrument`` command started the profiler, takes its own frames off
    the stacks, so that the program's ``<module>`` is at the top of the stacks in the
    session and in its files, whatever reads them; returns the table and the start
    stack to keep (none then). Otherwise changes nothing.

    What goes: the start stack (the console script or runpy, ``main`` ...
    ``_exec_target``), then the command line's frames below it (loading the target,
    waiting for threads) and whatever they call (``threading.enumerate``), and what a
    frame of the start stack itself calls in C or in this package (a tick between
    ``_exec_target``'s return and ``stop()``, which 3.9 shows as ``run_profiled`` in an
    ``[unknown C call]``). A record
    with nothing else is the command line's own work: it keeps its thread and no
    time, like the time between samples. So is one in the command line's ``exec`` (or
    ``[unknown C call]``, a call the engine could not name) with no ``<module>`` under
    it: setting the program's frame up or tearing it down, ~35 µs that a tick meets now
    and then.

    A stack's fate depends only on its frames from the root, so it is decided once per
    node of the stack trie, in order (callers first).
    """
    stem = [f.identifier for f in start_call_stack]
    if _command_line_entry() not in stem:
        return table, start_call_stack
    kinds = [f.kind for f in table.frames]
    identifiers = [f.identifier for f in table.frames]
    in_package = [is_path_in_package(os.path.normcase(f.file), "pyinstrument") for f in table.frames]
    parents, node_frames = table.node_parent, table.node_frame
    count = len(parents)

    def retarget(copy: FrameTable) -> Tuple["array[int]", bytearray]:
        # A node's state: from 0, how many frames of the stem its stack matches; or one of
        # these. Its callees' node in the copy is ``below``; its records go to ``target``.
        other, skipping, exec_call, kept = -1, -2, -3, -4
        state = array("i", [other]) * count
        below = array("i", range(count))  # a stack that is not the command line's stays
        thread = array("i", [NO_STACK]) * count  # the stack's thread root, where dropped work goes
        target = array("i", range(count))
        zeroed = bytearray(count)  # the command line's own work: no time
        for node in range(count):
            parent, frame = parents[node], node_frames[node]
            if parent == NO_STACK and kinds[frame] == FrameKind.THREAD:
                state[node], thread[node], target[node] = 0, node, node
                continue
            at = state[parent] if parent != NO_STACK else 0
            if at == other:
                continue
            thread[node] = thread[parent] if parent != NO_STACK else NO_STACK
            if at in (kept, exec_call):
                state[node] = kept
            elif at == skipping:
                state[node] = skipping  # what the command line's own code calls is its work too
            elif 0 <= at < len(stem):
                if identifiers[frame] == stem[at]:
                    state[node] = at + 1
                elif at > 0 and (kinds[frame] == FrameKind.C_FUNCTION or in_package[frame]):
                    # the command line's code before it reaches the program calls something
                    # of its own or in C (or, on 3.9/3.10, has just returned from a call)
                    state[node] = skipping
                else:
                    continue  # it leaves the stem: not the command line's stack
            elif in_package[frame]:
                state[node] = skipping
            elif at == len(stem) and kinds[frame] == FrameKind.C_FUNCTION:
                state[node] = exec_call  # the command line's exec: the program is below it, if anywhere
            else:
                state[node] = kept
            if state[node] in (kept, exec_call):
                below[node] = copy.add_node(below[parent] if at in (kept, exec_call) else thread[node], frame)
            if state[node] == kept:
                target[node] = below[node]
            else:
                target[node], zeroed[node] = thread[node], 1
        return target, zeroed

    return table.mapped(retarget), []


def _command_line_entry() -> str:
    """The identifier of the command line's frame that runs the program: told by its code
    object, wherever the command line's code lives."""
    from pyinstrument.cli.target import _exec_target

    code = _exec_target.__code__
    return FrameInfo.code(code.co_name, code.co_filename, code.co_firstlineno).identifier


class Profiler:
    """Samples the program's call stacks; `with Profiler() as p:` or start()/stop()."""

    def __init__(
        self,
        interval: float = 0.001,
        async_mode: str = "enabled",
        use_timing_thread: Optional[bool] = None,
        *,
        all_threads: bool = False,
        use_signal: Optional[bool] = None,
        subprocesses: bool = False,
    ):
        if use_signal is not None:
            _notice("Profiler(use_signal=...) is deprecated and ignored: the C engine needs no signals")
        if async_mode not in _ASYNC_MODES:
            raise ValueError(f"async_mode must be one of {', '.join(_ASYNC_MODES)}, not {async_mode!r}")
        interval = float(interval)
        if not interval > 0:
            raise ValueError("interval must be a positive number of seconds")
        self._interval = interval
        self._async_mode = async_mode
        self.use_timing_thread = use_timing_thread
        self.all_threads = bool(all_threads)
        self._sampler: Optional[Any] = None  # the engine, from start() to stop() only
        self._engine_counts: Dict[str, Any] = {}  # its counters at the last stop()
        self._last_session: Optional[Session] = None
        self._active_since: Optional[float] = None
        self._start_thread = 0  # the thread that started it, while it runs
        self._start_wall = 0.0
        self._cpu_start = 0.0
        self._start_call_stack: List[FrameInfo] = []
        self._target_description = ""
        self._thread_names: Dict[ThreadKey, str] = {}
        self._async_binding: Optional[_async.AsyncBinding] = None
        self._async_engine_refs: Optional[Any] = None
        self._async_reset: Optional[contextvars.Token[Optional[_async.AsyncBinding]]] = None
        # profile Python child processes too, merged into the session (see _subprocesses)
        self.subprocesses = bool(subprocesses)
        self._children: Optional[Any] = None
        # phases (phase()): their names (phase n: names[n - 1]), the time each was current
        # since start(), the ones entered and not left (innermost last), since when
        self._phase_names: List[str] = []
        self._phase_seconds: List[float] = []
        self._phases_entered: List[int] = []
        self._phase_current = 0
        self._phase_since = 0.0

    @property
    def interval(self) -> float:
        return self._interval

    def phase(self, name: str) -> "_Phase":
        """Labels a part of the run: ``with profiler.phase("parse"): ...``. Its samples are
        kept apart (``Session.phase(name)``, ``-p phase=parse``) and its time counted; an
        inner phase takes over until it ends. Outside a running profile it does nothing."""
        return _Phase([self], name)

    def _enter_phase(self, name: str) -> int:
        if name not in self._phase_names:
            self._phase_names.append(name)
            self._phase_seconds.append(0.0)
        number = self._phase_names.index(name) + 1
        self._phases_entered.append(number)
        self._switch_phase()
        return number

    def _leave_phase(self, number: int) -> None:
        # left in any order (another thread's phase may have begun since)
        entered = self._phases_entered
        del entered[len(entered) - 1 - entered[::-1].index(number)]
        self._switch_phase()

    def _switch_phase(self) -> None:
        """The time until now goes to the phase that was current; the engine is told the
        one that is current now."""
        now = time.perf_counter()
        if self._phase_current and self.is_running:
            self._phase_seconds[self._phase_current - 1] += now - self._phase_since
        self._phase_since = now
        self._phase_current = self._phases_entered[-1] if self._phases_entered else 0
        sampler = self._sampler
        if sampler is not None:
            sampler.set_phase(self._phase_current)

    @property
    def async_mode(self) -> str:
        return self._async_mode

    @property
    def is_running(self) -> bool:
        return self._active_since is not None

    @property
    def last_session(self) -> Optional[Session]:
        return self._last_session

    def start(self, caller_frame: Optional[types.FrameType] = None, target_description: Optional[str] = None) -> None:
        if self.is_running:
            raise ValueError("Profiler is already running.")
        if caller_frame is None:
            caller_frame = inspect.currentframe().f_back  # type: ignore[union-attr]
        # a start() after stop() adds to the same session (stop() combines them)
        if self._last_session is None:
            self._start_call_stack = _caller_stack(caller_frame)
            if target_description is None and caller_frame is not None:
                code = caller_frame.f_code
                target_description = f"Profile at {code.co_filename}:{caller_frame.f_lineno}"
            self._target_description = target_description or ""
        elif target_description is not None:
            self._target_description = target_description
        if self._async_mode != "disabled":
            bound = _async.active_profiler.get()
            if bound is not None and bound.running:
                raise RuntimeError(
                    "There is already a profiler running in this thread or async context; "
                    "use async_mode='disabled' to run several profilers at once."
                )
        self._remember_thread_names()
        if self.subprocesses:
            from pyinstrument._subprocesses import ChildProfiling

            self._children = ChildProfiling(self._interval, self.all_threads)
            self._children.begin()
        if self.all_threads:
            _thread_name_watch.acquire()
        self._sampler = _engine.Sampler(self._interval, 0 if self.all_threads else threading.get_ident())
        if self._async_mode != "disabled":
            self._bind_async_context(caller_frame)
        self._start_wall = time.time()
        self._cpu_start = time.process_time()
        self._active_since = time.perf_counter()
        self._start_thread = threading.get_ident()
        try:
            self._start_sampler()
            _RUNNING.add(self)
            self._phase_seconds = [0.0] * len(self._phase_names)
            self._phase_current = 0
            self._switch_phase()
        except RuntimeError as error:
            self._active_since = None
            self._sampler = None
            self._unbind_async_context()
            if self.all_threads:
                _thread_name_watch.release()
            if self._children is not None:
                self._children.end()
                self._children = None
            raise RuntimeError(f"pyinstrument cannot profile here: {error}") from None

    def _bind_async_context(self, caller_frame: Optional[types.FrameType]) -> None:
        """Marks this context as the profiler's; the engine attributes time spent outside
        it to what the profiled task awaits (enabled, strict) or to [out-of-context] (strict)."""
        assert self._sampler is not None
        binding = self._async_binding = _async.AsyncBinding()
        self._async_reset = _async.active_profiler.set(binding)
        codes, lines, task = _async.start_prefix(caller_frame, _async.current_task_coroutine())
        strict = self._async_mode == "strict"
        if task is None and not strict:
            return  # time outside the context is recorded as it is: nothing to bind
        try:
            node_types = _async.node_types()
        except RuntimeError as error:
            _notice(
                f"async_mode={self._async_mode!r} cannot follow async contexts here ({error}); profiling as 'disabled'"
            )
            return
        task_layout = _async.task_layout() if task is not None else None
        why_not = _async.task_layout_notice()
        if why_not is not None:
            _notice(
                f"the await chain stops at awaited asyncio Tasks and Futures here ({why_not}): "
                "time waiting in them is [await] under the line that awaits them"
            )
        self._async_engine_refs = (task, codes)  # kept alive while the engine reads them
        self._sampler.bind_async(
            _async.active_profiler, binding, task, codes, lines, strict, threading.get_ident(), node_types, task_layout
        )

    def _unbind_async_context(self) -> None:
        if self._async_binding is None:
            return
        self._async_binding.running = False
        try:
            _async.active_profiler.reset(self._async_reset)  # type: ignore[arg-type]
        except ValueError:  # stopped from another context than the one it started in
            pass
        self._async_binding = self._async_reset = None
        self._async_engine_refs = None

    def _start_sampler(self) -> None:
        assert self._sampler is not None
        try:
            self._sampler.start()
        except _engine.ReadRefused as refused:
            from pyinstrument._python_sampler import PythonSampler

            _notice(
                f"{refused}. Sampling from a Python thread instead: the program runs slower "
                "while profiled, the report is the same."
            )
            if self._async_engine_refs is not None:
                _notice(f"async_mode={self._async_mode!r} needs the engine: time in await is not attributed")
            self._sampler = PythonSampler(self._interval, 0 if self.all_threads else threading.get_ident())
            self._sampler.start()

    def stop(self) -> Session:
        if not self.is_running:
            raise RuntimeError("This profiler is not currently running.")
        if threading.get_ident() != self._start_thread:
            # as upstream's (it keeps running): code written for it relies on the rule
            raise RuntimeError("Failed to stop profiling. Make sure that you start/stop profiling on the same thread.")
        return self._stop_from_any_thread()

    def _stop_from_any_thread(self) -> Session:
        """stop() without its rule: for our own machinery (a profiled child process
        saving its session when any of its threads calls os._exit)."""
        if not self.is_running:
            raise RuntimeError("This profiler is not currently running.")
        assert self._sampler is not None and self._active_since is not None
        _RUNNING.discard(self)
        self._switch_phase()  # the current phase's time, up to now
        self._sampler.stop()
        self._unbind_async_context()
        duration = time.perf_counter() - self._active_since
        cpu_time = time.process_time() - self._cpu_start
        self._active_since = None
        if self.all_threads:
            _thread_name_watch.release()
        self._remember_thread_names()
        snapshot = self._sampler.snapshot()
        # the engine's tables are released here: the session holds everything they said
        self._sampler = None
        self._engine_counts = _counts_of(snapshot)
        session = session_from_snapshot(
            snapshot,
            # an async profiler may have followed its context into other threads
            all_threads=self.all_threads or len(snapshot["threads"]) > 1,
            thread_names=self._thread_names,
            start_time=self._start_wall,
            duration=duration,
            interval=self._interval,
            cpu_time=cpu_time,
            start_call_stack=self._start_call_stack,
            target_description=self._target_description,
            metadata=run_metadata.collect(),
            phases=(list(self._phase_names), list(self._phase_seconds)),
        )
        del snapshot
        if self._children is not None:
            from pyinstrument._subprocesses import merge_process_sessions

            session = merge_process_sessions(session, os.getpid(), self._children.end())
            self._children = None
        if self._last_session is not None:
            session = Session.combine(self._last_session, session)
            session.target_description = self._target_description
        self._last_session = session
        return session

    def reset(self) -> None:
        if self.is_running:
            self.stop()
        self._sampler = None
        self._last_session = None

    def _remember_thread_names(self) -> None:
        _remember_names(threading.enumerate(), self._thread_names)

    def __enter__(self) -> "Profiler":
        self.start(caller_frame=inspect.currentframe().f_back)  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- output ---------------------------------------------------------------------------

    def _session_to_render(self) -> Session:
        if self.is_running:
            raise Exception("can't render profile output because this profiler is still running: call stop() first")
        if self._last_session is None:
            raise Exception(
                "can't render profile output because this profiler has not completed a profile session yet: "
                "call start() and stop() first"
            )
        return self._last_session

    def print(
        self,
        file: Any = None,
        *,
        unicode: Optional[bool] = None,
        color: Optional[bool] = None,
        show_all: bool = False,
        timeline: bool = False,
        time: str = "seconds",
        flat: bool = False,
        flat_time: str = "self",
        short_mode: bool = False,
        processor_options: Optional[Dict[str, Any]] = None,
        show_cpu: bool = False,
    ) -> None:
        if file is None:
            file = sys.stdout
        if unicode is None:
            unicode = _file_supports_unicode(file)
        if color is None:
            color = _file_supports_color(file)
        print(
            self.output_text(
                unicode=unicode,
                color=color,
                show_all=show_all,
                timeline=timeline,
                time=time,
                flat=flat,
                flat_time=flat_time,
                short_mode=short_mode,
                processor_options=processor_options,
                show_cpu=show_cpu,
            ),
            file=file,
        )

    def output_text(
        self,
        unicode: bool = False,
        color: bool = False,
        show_all: bool = False,
        timeline: bool = False,
        time: str = "seconds",
        flat: bool = False,
        flat_time: str = "self",
        short_mode: bool = False,
        processor_options: Optional[Dict[str, Any]] = None,
        show_cpu: bool = False,
    ) -> str:
        return self.output(
            ConsoleRenderer(
                unicode=unicode,
                color=color,
                show_all=show_all,
                timeline=timeline,
                time=time,
                flat=flat,
                flat_time=flat_time,
                short_mode=short_mode,
                processor_options=processor_options,
                show_cpu=show_cpu,
            )
        )

    def output_html(
        self,
        resample_interval: Optional[float] = None,
        processor_options: Optional[Dict[str, Any]] = None,
        include_source: bool = True,
    ) -> str:
        """The last session as a self-contained HTML page (see HTMLRenderer, whose
        options these are)."""
        from pyinstrument.renderers.html import HTMLRenderer

        return self.output(
            HTMLRenderer(
                resample_interval=resample_interval,
                processor_options=processor_options,
                include_source=include_source,
            )
        )

    def write_html(
        self,
        path: "str | os.PathLike[str]",
        timeline: bool = False,
        show_all: bool = False,
        resample_interval: Optional[float] = None,
    ) -> None:
        """Write the HTML report of the last session to ``path`` (UTF-8)."""
        from pyinstrument.renderers.html import HTMLRenderer

        renderer = HTMLRenderer(timeline=timeline, show_all=show_all, resample_interval=resample_interval)
        write_report_file(path, self.output(renderer).encode("utf-8"))

    def open_in_browser(self, timeline: bool = False, resample_interval: Optional[float] = None) -> str:
        """Write the HTML report of the last session to a temporary file, open it in the
        web browser, and return the file's name."""
        from pyinstrument.renderers.html import HTMLRenderer

        renderer = HTMLRenderer(timeline=timeline, resample_interval=resample_interval)
        return renderer.open_in_browser(self._session_to_render())

    def output(self, renderer: Any) -> str:
        return renderer.render(self._session_to_render())


def _file_supports_unicode(file: Any) -> bool:
    encoding = getattr(file, "encoding", None) or ""
    return "utf" in encoding.lower()


def _file_supports_color(file: Any) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:
        return False


_RUNNING: "weakref.WeakSet[Profiler]" = weakref.WeakSet()


class _Phase:
    """A phase of a run for some profilers: ``with`` it to label what runs inside (a class,
    not a generator: its frames are the profiler's own code, which reports leave out)."""

    def __init__(self, profilers: List[Profiler], name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a phase's name is a non-empty string, not {name!r}")
        self.profilers, self.name = profilers, name
        self.entered: List[Tuple[Profiler, int]] = []

    def __enter__(self) -> None:
        self.entered = [(profiler, profiler._enter_phase(self.name)) for profiler in self.profilers]

    def __exit__(self, *exc_info: Any) -> None:
        for profiler, number in reversed(self.entered):
            profiler._leave_phase(number)
        self.entered = []


def phase(name: str) -> _Phase:
    """``with pyinstrument.phase("parse"): ...``: :meth:`Profiler.phase` for every profiler
    running when it begins (the ``pyinstrument`` command's among them); nothing when none is."""
    return _Phase(running_profilers(), name)


def running_profilers(thread: Optional[int] = None) -> List[Profiler]:
    """The profilers running now, those started in `thread` when given."""
    return [p for p in list(_RUNNING) if thread is None or p._start_thread == thread]


def profile(
    func: Optional[Callable[..., Any]] = None,
    /,
    *,
    interval: float = 0.001,
    async_mode: str = "disabled",
    use_timing_thread: Optional[bool] = None,
    renderer: Any = None,
    target_description: Optional[str] = None,
) -> Any:
    """`@profile`, `@profile(...)` or `with profile():` — prints a short report to stderr
    after each call of the decorated function, or when the block ends.

    The decorated function is a plain function (or coroutine function, or
    staticmethod/classmethod when given one), so it works as a method too.
    """
    context = _ProfileContext(
        interval=interval,
        async_mode=async_mode,
        use_timing_thread=use_timing_thread,
        renderer=renderer,
        target_description=target_description,
    )
    return context if func is None else context(func)


class _ProfileContext:
    """What `profile(...)` returns: a decorator and a `with` block."""

    def __init__(
        self,
        *,
        interval: float,
        async_mode: str,
        use_timing_thread: Optional[bool],
        renderer: Any,
        target_description: Optional[str],
    ):
        self._options = dict(interval=interval, async_mode=async_mode, use_timing_thread=use_timing_thread)
        self._renderer = renderer
        self._target_description = target_description
        self._profiler: Optional[Profiler] = None

    def _report(self, profiler: Profiler) -> None:
        renderer = self._renderer or ConsoleRenderer(
            short_mode=True, unicode=_file_supports_unicode(sys.stderr), color=_file_supports_color(sys.stderr)
        )
        print(profiler.output(renderer), file=sys.stderr)

    def _start(self, caller: Optional[types.FrameType], description: Optional[str]) -> Profiler:
        profiler = Profiler(**self._options)  # type: ignore[arg-type]
        profiler.start(caller_frame=caller, target_description=description)
        return profiler

    def _stop(self, profiler: Profiler) -> None:
        profiler.stop()
        self._report(profiler)

    def __call__(self, func: Callable[..., Any]) -> Any:
        if not callable(func) and not isinstance(func, (staticmethod, classmethod)):
            raise TypeError("profile(...) takes the function to decorate")
        if isinstance(func, (staticmethod, classmethod)):
            # wrap the function inside, keep the method kind
            return type(func)(self(func.__func__))

        import functools

        code = getattr(func, "__code__", None)
        where = f" at {code.co_filename}:{code.co_firstlineno}" if code else ""
        description = self._target_description or f"Function {getattr(func, '__qualname__', func)}{where}"

        # Both wrappers are named `wrapper`: session_from_snapshot keeps what runs under
        # a profiler.py function of that name (the user's call) and drops the rest.
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                profiler = self._start(inspect.currentframe(), description)
                try:
                    return await func(*args, **kwargs)
                finally:
                    self._stop(profiler)

        else:

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                profiler = self._start(inspect.currentframe(), description)
                try:
                    return func(*args, **kwargs)
                finally:
                    self._stop(profiler)

        return wrapper

    def __enter__(self) -> Profiler:
        caller = inspect.currentframe().f_back  # type: ignore[union-attr]
        description = self._target_description
        if description is None and caller is not None:
            description = f"Block at {caller.f_code.co_filename}:{caller.f_lineno}"
        self._profiler = self._start(caller, description)
        return self._profiler

    def __exit__(self, *exc_info: Any) -> None:
        assert self._profiler is not None
        profiler, self._profiler = self._profiler, None
        self._stop(profiler)
