"""A sampler in Python, for systems that refuse process_vm_readv (some seccomp sandboxes).

It has the C engine's Sampler interface and produces the same snapshot, so the rest of
pyinstrument does not know which one ran. It is a Python thread reading
sys._current_frames(), so it takes the GIL on every tick: the profiled program slows
down more than under the C engine, which is why the Profiler says so when it falls back.
A thread standing on a call is in what it called: the engine reads the callable from the
frame's value stack (`_engine._frame_callee`, with the GIL held) and it is named as the C
engine names it.
"""

from __future__ import annotations

import dis
import sys
import threading
import time
import types
from array import array
from typing import Any, Dict, List, Optional, Tuple

from pyinstrument import _engine

_BUILTIN = "<built-in>"
_CALL_NAMES = ("CALL", "CALL_KW", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX", "CALL_METHOD", "PRECALL")
_CALLS = {dis.opmap[name] for name in _CALL_NAMES if name in dis.opmap}


def _thread_cpu_seconds(ident: int) -> Optional[float]:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError, OverflowError):
        return None


def _c_function_name(frame: Any) -> Optional[str]:
    """The C function a frame's call is in, named as sys.setprofile's c_call names it;
    None when it stands on no call or calls no C function."""
    code = frame.f_code
    if frame.f_lasti < 0 or code.co_code[frame.f_lasti] not in _CALLS:
        return None
    called = _engine._frame_callee(frame)
    if called is None:
        return None
    function, first = called
    if isinstance(function, types.BuiltinFunctionType):
        return function.__qualname__
    if isinstance(function, types.MethodDescriptorType) and first is not None:
        # it runs bound to its first argument: named as that bound builtin is
        if isinstance(first, types.ModuleType):
            return function.__name__
        owner = first if isinstance(first, type) else type(first)
        return f"{owner.__qualname__}.{function.__name__}"
    return None


class PythonSampler:
    """Same interface as pyinstrument._engine.Sampler."""

    def __init__(self, interval: float = 0.001, thread_id: int = 0, timeline_budget: int = 4_000_000):
        if not interval > 0:
            raise ValueError("interval must be a positive number of seconds")
        self.interval = interval
        self.only_thread = thread_id
        self.timeline_budget = timeline_budget
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._origin = 0.0  # perf_counter() at start()
        self._identities: List[Tuple[str, str, int, bool]] = []
        self._identity_index: Dict[Tuple[str, str, int], int] = {}
        self._nodes: List[List[Any]] = []  # [parent, identity, line, thread, wall, cpu, samples]
        self._children: Dict[Tuple[int, int, int], int] = {}
        self._threads: Dict[int, Dict[str, Any]] = {}  # ident -> {index, root, last_cpu, timeline}
        self._stats = dict(ticks=0, samples=0, dropped=0, truncated=0, missed_ticks=0, tick_ns_total=0, syscalls=0)
        self._timeline_truncated = False

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._origin = time.perf_counter()  # time starts now, not when the thread first runs
        self._thread = threading.Thread(target=self._run, name="pyinstrument-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _run(self) -> None:
        me = threading.get_ident()
        last = deadline = self._origin
        while not self._stop.is_set():
            deadline += self.interval
            now = time.perf_counter()
            if now > deadline:
                missed = int((now - deadline) / self.interval) + 1
                self._stats["missed_ticks"] += missed
                deadline += missed * self.interval
            if self._stop.wait(max(0.0, deadline - time.perf_counter())):
                break
            tick_start = time.perf_counter()
            self._tick(me, tick_start - last)
            last = tick_start
            self._stats["ticks"] += 1
            self._stats["tick_ns_total"] += int((time.perf_counter() - tick_start) * 1e9)
        # stopping: the time since the last tick is a sample too, of its real length
        self._tick(me, time.perf_counter() - last)

    def _identity(self, function: str, filename: str, line_no: int, hides: bool) -> int:
        key = (function, filename, line_no)
        index = self._identity_index.get(key)
        if index is None:
            index = self._identity_index[key] = len(self._identities)
            self._identities.append((function, filename, line_no, hides))
        return index

    def _thread_record(self, ident: int) -> Dict[str, Any]:
        record = self._threads.get(ident)
        if record is None:
            root = len(self._nodes)
            self._nodes.append([-1, -1, 0, len(self._threads), 0.0, 0.0, 0])
            record = self._threads[ident] = dict(index=len(self._threads), root=root, last_cpu=None, timeline=array("I"))
        return record

    def _tick(self, me: int, wall: float) -> None:
        for ident, frame in sys._current_frames().items():
            if ident == me or (self.only_thread and ident != self.only_thread):
                continue
            stack = []
            leaf = frame
            while frame is not None:
                code = frame.f_code
                name = getattr(code, "co_qualname", code.co_name)
                hides = "__tracebackhide__" in code.co_varnames
                stack.append((self._identity(name, code.co_filename, code.co_firstlineno, hides), frame.f_lineno or 0))
                frame = frame.f_back
            stack.reverse()
            callee = _c_function_name(leaf)
            if callee:
                stack.append((self._identity(callee, _BUILTIN, 0, False), 0))
            record = self._thread_record(ident)
            node = record["root"]
            for identity, line in stack:
                key = (node, identity, line)
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = len(self._nodes)
                    self._nodes.append([node, identity, line, record["index"], 0.0, 0.0, 0])
                node = child
            cpu_now = _thread_cpu_seconds(ident)
            cpu = 0.0
            if cpu_now is not None and record["last_cpu"] is not None:
                cpu = max(0.0, cpu_now - record["last_cpu"])
            record["last_cpu"] = cpu_now
            entry = self._nodes[node]
            entry[4] += wall
            entry[5] += cpu
            entry[6] += 1
            self._record_timeline(record["timeline"], node, wall)
            self._stats["samples"] += 1

    def _record_timeline(self, timeline: array, node: int, wall: float) -> None:
        wall_ns = min(int(wall * 1e9), 0xFFFFFFFF)
        if timeline and timeline[-2] == node and timeline[-1] + wall_ns <= 0xFFFFFFFF:
            timeline[-1] += wall_ns
        elif self.timeline_budget > 0:
            timeline.extend((node, wall_ns))
            self.timeline_budget -= 1
        else:
            self._timeline_truncated = True

    def snapshot(self) -> Dict[str, Any]:
        if self.running:
            raise RuntimeError("cannot take a snapshot while the sampler is running")
        threads = [
            (ident, 0, record["root"], record["timeline"].tobytes()) for ident, record in self._threads.items()
        ]
        return dict(
            identities=list(self._identities),
            nodes=b"".join(_pack_node(*n) for n in self._nodes),
            threads=threads,
            unreadable_codes=0,
            timeline_truncated=self._timeline_truncated,
            **self._stats,
        )


def _pack_node(parent: int, identity: int, line: int, thread: int, wall: float, cpu: float, samples: int) -> bytes:
    """One node as the C engine's snapshot hands them over (see profiler.ENGINE_NODE)."""
    from pyinstrument.profiler import ENGINE_NODE, NO_NODE

    return ENGINE_NODE.pack(NO_NODE if parent < 0 else parent, NO_NODE if identity < 0 else identity, line, thread,
                            round(wall * 1e9), round(cpu * 1e9), samples)
