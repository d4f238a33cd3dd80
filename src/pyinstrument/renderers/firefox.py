"""A profile for the Firefox Profiler (https://profiler.firefox.com).

The Firefox Profiler opens a JSON file dropped on its page (or chosen with "Load a
profile from file") and shows each thread as a track: the samples over time (the stack
chart and the activity graph, whose height follows CPU use), a call tree, a flame
graph, with function names, file names and line numbers, coloured by category.

It reads two JSON flavours: the Gecko format that Firefox itself writes, and its own
"processed" format. We write the processed format, version 57, because it has columns
for everything we know (a function's file and first line, a frame's current line,
sample weights, CPU per sample) where the Gecko format packs a function, its file and
line into one "name (file:line:column)" string that the profiler parses back with a
regular expression, which any function name or path holding " (" or a line break
defeats. The profiler upgrades processed profiles of every older version step by step
when loading them (its ``processed-profile-versioning``, documented in its
``CHANGELOG-formats.md``); version 57 is also what CPython 3.15's own sampling profiler
writes. Facts used from that changelog: 56 shares one string array across threads
(``shared.stringArray``); 53 takes a stack's category from its frame; 50 allows
``timeDeltas`` in place of ``time``; 58, the next version, replaces the function
table's ``fileName`` by an index into a sources table, which its upgrader builds from
``fileName``.

How samples become the profile's samples. The session's timeline holds, per thread,
runs of consecutive samples that had the same stack: ``(record, seconds)``, where
``seconds`` is the wall time of the run. The engine samples every thread on each tick
and gives each sample the time since the previous tick, so a thread's runs laid end to
end are that thread's clock. Each thread's samples are therefore placed on its own
clock: the running sum of its runs' seconds, counted from the start of the session
(``meta.startTime``, in milliseconds since the epoch). This holds however the timeline
interleaves the threads (the engine writes one thread after the other; combined
sessions append a later run after an earlier one). The time before a thread existed,
and samples the engine could not read, are entries of a record holding no code: time
passes with no sample, so a thread started later begins where it did. The pause
between two runs of a restarted profiler is not shown.

Each run becomes one sample at its start, weighted by its wall time in milliseconds
(``weightType: "tracing-ms"``, so the call tree shows milliseconds of wall time). The
profiler draws a sample from its time to the next sample's; its activity graph splits
the span between two samples at half-way, so a run longer than two sampling intervals
gets a second sample one interval before its end (carrying the last interval's weight),
which keeps a long wait from bleeding into the activity graph of its neighbours. Runs
of the profiler's own start/stop work are left out: their time passes with no sample.

CPU time: the engine measures CPU time per distinct stack, not per sample, so each
sample's CPU time is its wall time times its stack's CPU share (CPU seconds over wall
seconds of the records with that stack). It is written as ``threadCPUDelta`` in
microseconds (the CPU time since the previous sample, as the format defines it), with
``meta.sampleUnits.threadCPUDelta = "µs"``; the activity graph's height then shows
CPU use. Sessions without CPU times (saved by upstream pyinstrument) have no CPU
column.

Names: every function name and path is written as a JSON string with non-ASCII
escaped, so markup, quotes, control characters and NUL survive as they are; a lone
surrogate (Python's stand-in for a path's undecodable byte) is written as its
``\\udcXX`` escape, which JavaScript reads back as the same lone code unit and the
profiler displays as a replacement character.
"""

from __future__ import annotations

import json
import math
from array import array
from itertools import chain, compress, groupby, islice
from operator import mul
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pyinstrument.frame import GIL_WAIT_FRAME_IDENTIFIER as GIL_WAIT
from pyinstrument.frame import gc_paused
from pyinstrument.frame_table import NO_NODE
from pyinstrument.renderers.base import Renderer
from pyinstrument.renderers.stacks import MAIN_THREAD_NAME, SampleStacks, StackFrame
from pyinstrument.session import Session

#: processed-format version written; see the module docstring
PROCESSED_PROFILE_VERSION = 57
#: Gecko-format version of that time (``meta.version``; not used for processed profiles)
GECKO_PROFILE_VERSION = 31

# Categories, by index. The profiler needs a grey one (the default, used for stacks
# without a category) and each category's first subcategory standing for itself.
CATEGORY_OTHER = 0
CATEGORY_APPLICATION = 1
CATEGORY_LIBRARY = 2
CATEGORY_BUILTIN = 3
CATEGORY_GIL_WAIT = 4
CATEGORIES: List[Dict[str, Any]] = [
    {"name": "Other", "color": "grey", "subcategories": ["Other"]},
    {"name": "Python: application", "color": "yellow", "subcategories": ["Other"]},
    {"name": "Python: library", "color": "blue", "subcategories": ["Other"]},
    {"name": "Built-in (C)", "color": "orange", "subcategories": ["Other"]},
    {"name": "Waiting for the GIL", "color": "red", "subcategories": ["Other"]},
]

#: resource type for a named bag of code (the profiler's ``ResourceType.Library``)
RESOURCE_TYPE_LIBRARY = 1

_MAX_CPU_SHARE = 1000.0  # CPU seconds per wall second of one stack in one thread (see _cpu_rates)
_MICROSECONDS = 1e6
_FALLBACK_INTERVAL_US = 1000


class FirefoxRenderer(Renderer):
    """A processed-format profile for https://profiler.firefox.com: one track per
    thread, samples on each thread's clock with their wall time (as weights) and CPU
    time, functions with their file and first line, frames with their current line,
    coloured as application code, library code or built-in (C) functions. No options."""

    output_file_extension = "firefox.json"
    output_is_binary = False

    def render(self, session: Session) -> str:
        # millions of small objects are made and kept: collections would find nothing
        with gc_paused():
            return _ProfileWriter(session).document()


class _Strings:
    """The profile's shared string array."""

    def __init__(self) -> None:
        self.array: List[str] = []
        self._index: Dict[str, int] = {}

    def index(self, text: str) -> int:
        found = self._index.get(text)
        if found is None:
            found = self._index[text] = len(self.array)
            self.array.append(text)
        return found


class _ThreadTables:
    """One thread's stack, frame, function and resource tables, built from the stacks
    of its records (a few thousand even for an hour), shared prefixes stored once."""

    def __init__(
        self,
        name: str,
        ident: Optional[int],
        strings: _Strings,
        stacks: SampleStacks,
        library_name: Callable[[str], Optional[str]],
    ):
        self.name = name
        self.ident = ident
        self._strings = strings
        self._frames_of_session = stacks.frames
        self._library_name = library_name
        # stackTable
        self.stack_frame: List[int] = []
        self.stack_prefix: List[Optional[int]] = []
        # (prefix stack or -1, SampleStacks frame, current line) -> stack
        self._stack_index: Dict[Tuple[int, int, int], int] = {}
        # frameTable
        self.frame_func: List[int] = []
        self.frame_line: List[Optional[int]] = []
        self.frame_category: List[int] = []
        self._frame_index: Dict[Tuple[int, int], int] = {}  # (func, current line) -> frame
        # funcTable
        self.func_name: List[int] = []
        self.func_is_python: List[bool] = []
        self.func_resource: List[int] = []
        self.func_file: List[Optional[int]] = []
        self.func_line: List[Optional[int]] = []
        self.func_category: List[int] = []
        self._func_index: Dict[int, int] = {}  # SampleStacks frame -> func
        # resourceTable
        self.resource_name: List[int] = []
        self._resource_index: Dict[str, int] = {}

    def stack_of(self, node: int, stacks: SampleStacks, known: Dict[int, int]) -> int:
        """The stack-table index of a node of the samples' trie (``known``: this thread's
        nodes done so far, so each costs one step however many records stand on it)."""
        parent, frame_of, line_of = stacks.trie_parent, stacks.trie_frame, stacks.trie_line
        path = []
        while node != NO_NODE and node not in known:
            path.append(node)
            node = parent[node]
        stack = known[node] if node != NO_NODE else -1
        stack_index = self._stack_index
        for node in reversed(path):
            frame, line = frame_of[node], line_of[node]
            key = (stack, frame, line)
            found = stack_index.get(key)
            if found is None:
                found = stack_index[key] = len(self.stack_frame)
                self.stack_frame.append(self._frame(frame, line))
                self.stack_prefix.append(stack if stack >= 0 else None)
            known[node] = stack = found
        return stack

    def _frame(self, session_frame: int, line: int) -> int:
        func = self._func_index.get(session_frame)
        if func is None:
            func = self._func_index[session_frame] = self._func(self._frames_of_session[session_frame])
        key = (func, line)
        found = self._frame_index.get(key)
        if found is None:
            found = self._frame_index[key] = len(self.frame_func)
            self.frame_func.append(func)
            self.frame_line.append(line if line > 0 else None)
            self.frame_category.append(self.func_category[func])
        return found

    def _func(self, frame: StackFrame) -> int:
        strings = self._strings
        index = len(self.func_name)
        self.func_name.append(strings.index(frame.name))
        self.func_is_python.append(not frame.is_builtin)
        if frame.is_builtin or not frame.file_path:
            self.func_resource.append(-1)
            self.func_file.append(None)
        else:
            # the resource groups a library's functions ("collapse" in the call tree)
            self.func_resource.append(self._resource(self._library_name(frame.file_path) or frame.file_path))
            self.func_file.append(strings.index(frame.file_path))
        self.func_line.append(frame.line_no if frame.line_no > 0 else None)
        if frame.name == GIL_WAIT:
            category = CATEGORY_GIL_WAIT
        elif frame.is_builtin:
            category = CATEGORY_BUILTIN
        elif frame.is_application_code:
            category = CATEGORY_APPLICATION
        else:
            category = CATEGORY_LIBRARY
        self.func_category.append(category)
        return index

    def _resource(self, name: str) -> int:
        found = self._resource_index.get(name)
        if found is None:
            found = self._resource_index[name] = len(self.resource_name)
            self.resource_name.append(self._strings.index(name))
        return found

    def tables_json(self) -> List[Tuple[str, str]]:
        """The tables, as (key, JSON text) pairs."""
        n_frames, n_funcs, n_resources = len(self.frame_func), len(self.func_name), len(self.resource_name)
        return [
            (
                "stackTable",
                _dumps({"frame": self.stack_frame, "prefix": self.stack_prefix, "length": len(self.stack_frame)}),
            ),
            (
                "frameTable",
                _dumps(
                    {
                        "address": [-1] * n_frames,
                        "inlineDepth": [0] * n_frames,
                        "category": self.frame_category,
                        "subcategory": [0] * n_frames,
                        "func": self.frame_func,
                        "nativeSymbol": [None] * n_frames,
                        "innerWindowID": [None] * n_frames,
                        "line": self.frame_line,
                        "column": [None] * n_frames,
                        "length": n_frames,
                    }
                ),
            ),
            (
                "funcTable",
                _dumps(
                    {
                        "name": self.func_name,
                        "isJS": self.func_is_python,  # the profiler's interpreted functions: ours are Python
                        "relevantForJS": [False] * n_funcs,
                        "resource": self.func_resource,
                        "fileName": self.func_file,
                        "lineNumber": self.func_line,
                        "columnNumber": [None] * n_funcs,
                        "length": n_funcs,
                    }
                ),
            ),
            (
                "resourceTable",
                _dumps(
                    {
                        "lib": [None] * n_resources,
                        "name": self.resource_name,
                        "host": [None] * n_resources,
                        "type": [RESOURCE_TYPE_LIBRARY] * n_resources,
                        "length": n_resources,
                    }
                ),
            ),
            ("nativeSymbols", '{"libIndex":[],"address":[],"name":[],"functionSize":[],"length":0}'),
            ("markers", '{"data":[],"name":[],"startTime":[],"endTime":[],"phase":[],"category":[],"length":0}'),
        ]


class _Texts(Dict[int, str]):
    """Whole numbers -> their JSON text, each made once (sample spans and CPU times
    repeat a lot, and turning numbers into text is most of the cost of a long file).
    With ``milliseconds``, the numbers are microseconds written as milliseconds."""

    def __init__(self, milliseconds: bool):
        super().__init__()
        self.milliseconds = milliseconds

    def __missing__(self, number: int) -> str:
        if not self.milliseconds or number % 1000 == 0:
            text = str(number // 1000 if self.milliseconds else number)
        else:
            text = repr(number / 1000)  # the division rounds correctly: at most 3 decimals
        self[number] = text
        return text


class _ThreadSamples:
    """One thread's samples as columns, in time order, in whole microseconds: each
    sample's ``span`` (its own wall time: its weight) and ``advance`` (the time to the
    next sample: its own span plus any left-out time after it), and the thread's CPU
    time over each ``advance``."""

    def __init__(self) -> None:
        self.stack: Sequence[int] = []
        self.span_us: Sequence[int] = []
        self.advance_us: Sequence[int] = []
        self.cpu_advance_us: Optional[Sequence[int]] = None
        self.lead_us = 0  # left-out time before the first sample

    def samples_json(self, stack_count: int, ms_text: _Texts, int_text: _Texts) -> str:
        n = len(self.stack)
        stack_text = [str(i) for i in range(stack_count)]
        span_text = list(map(ms_text.__getitem__, self.span_us))
        if self.advance_us is self.span_us:  # nothing left out: one list of texts serves
            advance_text: Sequence[str] = span_text
        else:
            advance_text = list(map(ms_text.__getitem__, self.advance_us))
        # the time since the previous sample; the first sample's from the thread's start
        deltas = [ms_text[self.lead_us]] if n else []
        but_last = max(n - 1, 0)
        columns = [
            '"stack":[' + ",".join(map(stack_text.__getitem__, self.stack)) + "]",
            '"timeDeltas":[' + ",".join(chain(deltas, islice(advance_text, but_last))) + "]",
            '"weight":[' + ",".join(span_text) + "]",
            '"weightType":"tracing-ms"',
        ]
        if self.cpu_advance_us is not None:
            # the CPU time used since the previous sample; the first value is ignored
            cpu = islice(map(int_text.__getitem__, self.cpu_advance_us), but_last)
            columns.append('"threadCPUDelta":[' + ",".join(chain(deltas and ["0"], cpu)) + "]")
        columns.append(f'"length":{n}')
        return "{" + ",".join(columns) + "}"


class _ProfileWriter:
    def __init__(self, session: Session):
        self.session = session
        self.stacks = SampleStacks(session)
        self.strings = _Strings()
        self.interval_us = _interval_us(session.min_interval)
        self.has_cpu = self.stacks.has_cpu and session.frame_records_cpu is not None
        self.has_left_out = False  # any record of the profiler's own work

    # -- the document ---------------------------------------------------------------------

    def document(self) -> str:
        session, stacks = self.session, self.stacks
        library_name = session.frame_context().library_name
        tables = [
            _ThreadTables(name, ident, self.strings, stacks, library_name)
            for name, ident in zip(stacks.threads, stacks.thread_idents)
        ]
        record_stack = self._record_stacks(tables)
        self.has_left_out = -1 in record_stack
        by_thread_records, by_thread_seconds = self._chronological_by_thread()
        rates = self._cpu_rates(tables, record_stack) if self.has_cpu else [None] * len(tables)

        # threads with at least one sample, the main thread first (it becomes the
        # process's track), then as first seen
        order = [
            t
            for t, records in enumerate(by_thread_records)
            if any(map((0).__le__, map(record_stack.__getitem__, records)))
        ]
        order.sort(key=lambda t: tables[t].name != MAIN_THREAD_NAME)
        if not order:
            # nothing recorded: one empty main thread, so the file still opens
            tables = [_ThreadTables(MAIN_THREAD_NAME, None, self.strings, stacks, library_name)]
            by_thread_records, by_thread_seconds, rates = [array("I")], [array("d")], [None]
            order = [0]
        end_ms = max([session.duration * 1000.0] + [sum(by_thread_seconds[t]) * 1000.0 for t in order])
        main = [i for i, t in enumerate(order) if tables[t].name == MAIN_THREAD_NAME]

        # one thread at a time: its sample columns are dropped once written
        ms_text, int_text = _Texts(milliseconds=True), _Texts(milliseconds=False)
        thread_texts = []
        for t in order:
            samples = self._one_thread(by_thread_records[t], by_thread_seconds[t], record_stack, rates[t])
            thread_texts.append(self._thread_json(tables[t], samples, ms_text, int_text))
            del samples
            by_thread_records[t] = by_thread_seconds[t] = array("d")
        return "".join(
            [
                '{"meta":',
                _dumps(self._meta(len(order), end_ms, main)),
                ',"libs":[],"pages":[],"threads":[',
                ",".join(thread_texts),
                '],"shared":{"stringArray":',
                _dumps(self.strings.array),
                "}}",
            ]
        )

    def _meta(self, thread_count: int, end_ms: float, main: List[int]) -> Dict[str, Any]:
        session = self.session
        meta: Dict[str, Any] = {
            "version": GECKO_PROFILE_VERSION,
            "preprocessedProfileVersion": PROCESSED_PROFILE_VERSION,
            "interval": self.interval_us / 1000,
            "startTime": session.start_time * 1000.0,
            "profilingStartTime": 0,
            "profilingEndTime": round(end_ms, 3),
            "processType": 0,
            "product": session.target_description or "Python program",
            "importedFrom": "pyinstrument",
            "stackwalk": 0,
            "symbolicated": True,
            "categories": CATEGORIES,
            "markerSchema": [],
            # Python functions are marked as the profiler's "JS" ones: its JS/native
            # switch would only confuse, and there is no Searchfox for them
            "usesOnlyOneStackType": True,
            "sourceCodeIsNotOnSearchfox": True,
            "keepProfileThreadOrder": True,
            "initialVisibleThreads": list(range(thread_count)),
            "initialSelectedThreads": main[:1] or [0],
        }
        if self.has_cpu:
            meta["sampleUnits"] = {"time": "ms", "eventDelay": "ms", "threadCPUDelta": "µs"}
        return meta

    def _thread_json(self, tables: _ThreadTables, samples: _ThreadSamples, ms_text: _Texts, int_text: _Texts) -> str:
        session = self.session
        head = {
            "name": tables.name,
            "isMainThread": tables.name == MAIN_THREAD_NAME,
            "processType": "default",
            "processName": session.target_description or "Python",
            "processStartupTime": 0,
            "processShutdownTime": None,
            "registerTime": 0,
            "unregisterTime": None,
            "pausedRanges": [],
            "pid": "0",
            "tid": self._tid(tables),
        }
        parts = [_dumps(key) + ":" + _dumps(value) for key, value in head.items()]
        parts.append('"samples":' + samples.samples_json(len(tables.stack_frame), ms_text, int_text))
        parts.extend(_dumps(key) + ":" + text for key, text in tables.tables_json())
        return "{" + ",".join(parts) + "}"

    @staticmethod
    def _tid(tables: _ThreadTables) -> Any:
        """The thread's ident when the session knows it (as a string when JavaScript
        could not hold it exactly), else its name."""
        ident = tables.ident
        if ident is None:
            return tables.name
        return ident if ident < 2**53 else str(ident)

    # -- stacks ---------------------------------------------------------------------------

    def _record_stacks(self, tables: List[_ThreadTables]) -> List[int]:
        """Each record's stack index in its thread's table; -1 for left-out records."""
        stacks = self.stacks
        known: List[Dict[int, int]] = [{} for _ in tables]
        return [
            tables[thread].stack_of(node, stacks, known[thread]) if node != NO_NODE else -1
            for node, thread in zip(stacks.node_of, stacks.thread_of)
        ]

    # -- samples --------------------------------------------------------------------------

    def _chronological_by_thread(self) -> Tuple[List[Any], List[Any]]:
        """Each thread's ``(records, seconds)`` columns in time order: the order of
        :meth:`SampleStacks.chronological`, read from the timeline's two arrays when
        the session has one (millions of entries: no tuple per entry)."""
        stacks, session = self.stacks, self.session
        timeline = session.timeline
        if timeline is not None:
            records: Sequence[int] = timeline.records
            seconds: Sequence[float] = timeline.seconds
        else:
            pairs = list(stacks.chronological())
            records = array("I", [r for r, _ in pairs])
            seconds = array("d", [s for _, s in pairs])
        thread_count = len(stacks.threads)
        if thread_count <= 1:
            return [records], [seconds]
        # the same array kinds as the timeline's, so blocks are copied as they are
        record_code = records.typecode if isinstance(records, array) else "I"
        seconds_code = seconds.typecode if isinstance(seconds, array) else "d"
        by_thread_records: List["array[Any]"] = [array(record_code) for _ in range(thread_count)]
        by_thread_seconds: List["array[Any]"] = [array(seconds_code) for _ in range(thread_count)]
        thread_sequence = list(map(stacks.thread_of.__getitem__, records))
        position = 0
        # the engine writes each thread's entries together: few, long blocks
        for thread, block in groupby(thread_sequence):
            length = len(list(block))
            by_thread_records[thread].extend(records[position : position + length])
            by_thread_seconds[thread].extend(seconds[position : position + length])
            position += length
        return by_thread_records, by_thread_seconds

    def _cpu_rates(self, tables: List[_ThreadTables], record_stack: List[int]) -> List[Optional[List[float]]]:
        """Per thread, the CPU share (CPU seconds over wall seconds) of each stack in
        its table, and last (at index -1) that of its left-out records."""
        session = self.session
        cpu_of = session.frame_records_cpu or []
        sums = [[[0.0, 0.0] for _ in range(len(table.stack_frame) + 1)] for table in tables]
        walls = session.frame_table.record_seconds
        for wall, cpu, stack, thread in zip(walls, cpu_of, record_stack, self.stacks.thread_of):
            pair = sums[thread][stack]
            pair[0] += max(cpu, 0.0)
            pair[1] += max(wall, 0.0)
        # one thread uses at most one CPU; the cap, far above that so that measuring
        # jitter is kept, only keeps the shares of a session with odd times finite
        return [
            [min(cpu / wall, _MAX_CPU_SHARE) if wall > 0 else 0.0 for cpu, wall in thread_sums] for thread_sums in sums
        ]

    def _one_thread(
        self,
        records: Sequence[int],
        seconds: Sequence[float],
        record_stack: List[int],
        cpu_rate: Optional[List[float]],
    ) -> _ThreadSamples:
        """One thread's samples. Column arithmetic runs in C (map, compress, slices);
        Python loops only over the runs that get a second sample and the left-out ones.

        Each run's span is its seconds rounded to the microsecond: the engine's run
        times have nanosecond jitter, so the rounding does not drift (about 0.3 ms
        after an hour of 1 ms samples)."""
        result = _ThreadSamples()
        n = len(records)
        if n == 0:
            return result
        # whole numbers in arrays: 8 bytes each where a list of ints takes 36
        try:
            span = array("q", map(round, map(_MICROSECONDS.__mul__, seconds)))
        except (ValueError, OverflowError):  # NaN or infinity in a damaged session
            span = array("q", [round(s * _MICROSECONDS) if math.isfinite(s) else 0 for s in seconds])
        if min(span) < 0:
            span = array("q", [max(t, 0) for t in span])
        stack = array("q", map(record_stack.__getitem__, records))

        interval = self.interval_us
        long_runs = list(compress(range(n), map((2 * interval).__le__, span)))
        if long_runs:
            # a long run gets a second sample one interval before its end; the columns
            # are rebuilt from slices (copied in C), only long runs cost a Python step
            new_stack = array("q")
            new_span = array("q")
            done = 0
            for i in long_runs:
                new_stack += stack[done : i + 1]
                new_stack.append(stack[i])
                new_span += span[done:i]
                new_span.append(span[i] - interval)
                new_span.append(interval)
                done = i + 1
            new_stack += stack[done:]
            new_span += span[done:]
            stack, span = new_stack, new_span

        # each sample's CPU time: its span at its stack's CPU share
        cpu = None
        if cpu_rate is not None:
            cpu = array("q", map(round, map(mul, span, map(cpu_rate.__getitem__, stack))))

        advance, cpu_advance, lead = span, cpu, 0
        if self.has_left_out and -1 in stack:
            # the profiler's own work: no sample; its time (and CPU time) is added to
            # the advance of the sample before it
            advance = array("q", span)
            cpu_advance = array("q", cpu) if cpu is not None else None
            before = -1
            previous = -2
            for k in compress(range(len(stack)), map((-1).__eq__, stack)):
                if k != previous + 1:
                    before = k - 1  # the sample before a block of left-out ones is kept
                previous = k
                if before < 0:
                    lead += span[k]
                else:
                    advance[before] += span[k]
                    if cpu_advance is not None and cpu is not None:
                        cpu_advance[before] += cpu[k]
            keep = list(map((0).__le__, stack))
            stack = array("q", compress(stack, keep))
            span = array("q", compress(span, keep))
            advance = array("q", compress(advance, keep))
            if cpu_advance is not None:
                cpu_advance = array("q", compress(cpu_advance, keep))

        result.stack = stack
        result.span_us = span
        result.advance_us = advance
        result.cpu_advance_us = cpu_advance
        result.lead_us = lead
        return result


def _interval_us(interval: float) -> int:
    if interval > 0 and math.isfinite(interval):
        return max(1, round(interval * _MICROSECONDS))
    return _FALLBACK_INTERVAL_US


def _dumps(value: Any) -> str:
    # ASCII only: every name survives whatever reads the file, lone surrogates included
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


__all__ = ["FirefoxRenderer"]
