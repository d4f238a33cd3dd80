"""A sampler in Python, for systems that refuse process_vm_readv (some seccomp sandboxes).

It has the C engine's Sampler interface and produces the same snapshot, so the rest of
pyinstrument does not know which one ran. Like the engine, every sampler of the process
is ticked by one thread, here a Python thread reading sys._current_frames(), so it takes
the GIL on every tick: the profiled program slows down more than under the C engine,
which is why the Profiler says so when it falls back.
A thread standing on a call is in what it called: the engine reads the callable's address
from the frame's value stack (`_engine._frame_call_site`, with the GIL held) and it is
named when it is a C function of a loaded module or type, as the C engine names it.
"""

from __future__ import annotations

import dis
import os
import sys
import threading
import time
import types
from array import array
from typing import Any, Dict, List, Optional, Tuple

from pyinstrument import _engine

_BUILTIN = "<built-in>"
_PHASE_MARKER = ("[phase]", "", -1)  # as the engine names its phase marker (a synthetic frame: no file, first line -1)
_CALL_NAMES = ("CALL", "CALL_KW", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX", "CALL_METHOD", "PRECALL")
_CALLS = {dis.opmap[name] for name in _CALL_NAMES if name in dis.opmap}


def _thread_cpu_seconds(ident: int) -> Optional[float]:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError, OverflowError):
        return None


class _KnownCallables:
    """The C functions the sampler can name, by address: the builtins in loaded modules
    and the method descriptors of the types found there. Holding them keeps each address
    theirs, so an address read from another thread's value stack, which may be left over
    from a call that ended, is looked up here and never followed."""

    def __init__(self) -> None:
        self._modules_seen: Dict[int, types.ModuleType] = {}
        self._module_count = -1
        self.functions: Dict[int, Any] = {}  # id -> builtin function
        self.descriptors: Dict[int, Any] = {}  # id -> method descriptor
        self.types: Dict[int, type] = {}  # id -> type

    def refresh(self) -> None:
        """Takes in the modules imported since the last call (cheap when there are none)."""
        if len(sys.modules) == self._module_count:
            return
        self._module_count = len(sys.modules)
        for module in list(sys.modules.values()):
            if not isinstance(module, types.ModuleType) or id(module) in self._modules_seen:
                continue
            self._modules_seen[id(module)] = module
            for value in list(getattr(module, "__dict__", {}).values()):
                if isinstance(value, types.BuiltinFunctionType):
                    self.functions[id(value)] = value
                elif isinstance(value, type) and id(value) not in self.types:
                    self.types[id(value)] = value
                    for attribute in list(vars(value).values()):
                        if isinstance(attribute, types.MethodDescriptorType):
                            self.descriptors[id(attribute)] = attribute

    def name(self, call_site: Tuple[int, int, int]) -> Optional[str]:
        """The C function of a call site, named as sys.setprofile's c_call names it."""
        callable_addr, first_addr, first_type = call_site
        function = self.functions.get(callable_addr)
        if function is not None:
            return function.__qualname__
        descriptor = self.descriptors.get(callable_addr)
        if descriptor is None or not first_addr:
            return None
        # it runs bound to its first argument: named as that bound builtin is
        if first_type == id(types.ModuleType):
            return descriptor.__name__
        instance_type: Optional[type]
        if first_type == id(type):  # a method of classes, called on one: named after that class
            owner, instance_type = self.types.get(first_addr), type
        else:
            owner = instance_type = self.types.get(first_type)
        if owner is None or instance_type is None or not issubclass(instance_type, descriptor.__objclass__):
            return None
        return f"{owner.__qualname__}.{descriptor.__name__}"


def _c_function_name(frame: Any, known: _KnownCallables) -> Optional[str]:
    """The C function a frame's call is in; None when it stands on no call or calls no C
    function the sampler knows."""
    code = frame.f_code
    if frame.f_lasti < 0 or code.co_code[frame.f_lasti] not in _CALLS:
        return None
    call_site = _engine._frame_call_site(frame)
    return known.name(call_site) if call_site is not None else None


class _SamplingThread:
    """The process's one Python sampling thread, shared by every PythonSampler running:
    it sleeps to the earliest deadline among them and ticks those due. Made at the first
    start() and kept, idle, after the last stop() (a forked child makes its own)."""

    def __init__(self) -> None:
        self._wake = threading.Condition(threading.Lock())
        self._subscribers: List["PythonSampler"] = []
        self._thread: Optional[threading.Thread] = None
        self.ident = 0  # the thread's, which no tick samples
        self.known = _KnownCallables()

    def add(self, sampler: "PythonSampler") -> None:
        with self._wake:
            self._subscribers.append(sampler)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="pyinstrument-sampler", daemon=True)
                self._thread.start()
            self._wake.notify()

    def remove(self, sampler: "PythonSampler") -> bool:
        """Ends a subscription, once its tick under way (if any) is over; False if there was none."""
        with self._wake:
            if sampler not in self._subscribers:
                return False
            self._subscribers.remove(sampler)
            return True

    def _run(self) -> None:
        me = self.ident = threading.get_ident()
        with self._wake:
            while True:
                if not self._subscribers:
                    self._wake.wait()
                    continue
                now = time.perf_counter()
                earliest = min(sampler._deadline for sampler in self._subscribers)
                if now < earliest:
                    self._wake.wait(earliest - now)
                    continue
                try:
                    self.known.refresh()
                except Exception:  # a module whose namespace cannot be read names nothing
                    pass
                for sampler in list(self._subscribers):
                    if sampler._deadline <= now:
                        sampler._tick_due(me)


_sampling_thread = _SamplingThread()


def _after_fork_in_child() -> None:
    # the parent's thread is not the child's, and it may have held the lock at the fork
    global _sampling_thread
    _sampling_thread = _SamplingThread()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PythonSampler:
    """Same interface as pyinstrument._engine.Sampler."""

    def __init__(self, interval: float = 0.001, thread_id: int = 0, timeline_budget: int = 4_000_000):
        if not interval > 0:
            raise ValueError("interval must be a positive number of seconds")
        self.interval = interval
        self.only_thread = thread_id
        self.timeline_budget = timeline_budget
        self._running = False
        self._origin = 0.0  # perf_counter() at start()
        self._last = 0.0  # perf_counter() at the last tick
        self._deadline = 0.0  # of the next tick
        self._identities: List[Tuple[str, str, int, bool]] = []
        self._identity_index: Dict[Tuple[str, str, int], int] = {}
        self._nodes: List[List[Any]] = []  # [parent, identity, line, thread, wall, cpu, samples]
        self._children: Dict[Tuple[int, int, int], int] = {}
        self._threads: Dict[int, Dict[str, Any]] = {}  # ident -> {index, root, last_cpu, timeline}
        self._stats = dict(
            ticks=0, samples=0, dropped=0, truncated=0, calls_ended=0, missed_ticks=0, tick_ns_total=0, syscalls=0
        )
        self._timeline_truncated = False
        self._phase = 0  # as the engine's: samples go below a [phase] marker node, line = phase

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        if self._running:
            return
        self._origin = self._last = time.perf_counter()  # time starts now, not at the first tick
        self._deadline = self._origin + self.interval
        self._running = True
        _sampling_thread.add(self)

    def set_phase(self, phase: int) -> None:
        self._phase = phase

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if _sampling_thread.remove(self):
            # the time since the last tick is a sample too, of its real length
            self._tick(_sampling_thread.ident, time.perf_counter() - self._last)

    def _tick_due(self, me: int) -> None:
        """A tick at its deadline (on the sampling thread), then the next deadline,
        skipping those overrun rather than sampling in a burst."""
        tick_start = time.perf_counter()
        try:
            self._tick(me, tick_start - self._last)
        except Exception:  # sys._current_frames() failed: this tick's samples are lost, not the thread
            self._stats["dropped"] += 1
        self._last = tick_start
        self._stats["ticks"] += 1
        end = time.perf_counter()
        self._stats["tick_ns_total"] += int((end - tick_start) * 1e9)
        self._deadline += self.interval
        if end > self._deadline:
            missed = int((end - self._deadline) / self.interval) + 1
            self._stats["missed_ticks"] += missed
            self._deadline += missed * self.interval

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
            record = self._threads[ident] = dict(
                index=len(self._threads), root=root, last_cpu=None, timeline=array("I")
            )
        return record

    def _tick(self, me: int, wall: float) -> None:
        for ident, frame in sys._current_frames().items():
            if ident == me or (self.only_thread and ident != self.only_thread):
                continue
            try:
                self._sample(ident, frame, wall)
            except Exception:  # one unreadable stack is a lost sample, not the end of profiling
                self._stats["dropped"] += 1

    def _sample(self, ident: int, frame: Any, wall: float) -> None:
        stack = []
        leaf = frame
        while frame is not None:
            code = frame.f_code
            name = getattr(code, "co_qualname", code.co_name)
            hides = "__tracebackhide__" in code.co_varnames
            stack.append((self._identity(name, code.co_filename, code.co_firstlineno, hides), frame.f_lineno or 0))
            frame = frame.f_back
        stack.reverse()
        phase = self._phase
        if phase:
            stack.insert(0, (self._identity(*_PHASE_MARKER, False), phase))
        callee = _c_function_name(leaf, _sampling_thread.known)
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
            (ident, 0, record["root"], record["timeline"].tobytes(), (0, 0, 0))  # no GIL state from here
            for ident, record in self._threads.items()
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

    return ENGINE_NODE.pack(
        NO_NODE if parent < 0 else parent,
        NO_NODE if identity < 0 else identity,
        line,
        thread,
        round(wall * 1e9),
        round(cpu * 1e9),
        samples,
    )
