"""A profiling session: the recorded samples plus what is needed to interpret them.

The session holds plain data (lists of strings and numbers), so it can be saved,
loaded, combined and sent between processes. Call trees are built from it on
demand with :meth:`Session.root_frame`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import zlib
from array import array
from typing import (
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

from pyinstrument import own_code, run_metadata
from pyinstrument._files import write_report_file
from pyinstrument.frame import (
    ROOT_FRAME_IDENTIFIER,
    Frame,
    FrameContext,
    build_frame_tree_from_table,
    build_timeline_tree_from_table,
    frame_info_get_identifier,
)
from pyinstrument.frame_table import NO_NODE, FrameTable, decode_array, encode_array

FrameRecordType = Tuple[List[str], float]

# version of our extensions to the file format (stored under "pyinstrument_c")
_FORMAT_EXTRA_KEY = "pyinstrument_c"
# 2: the timeline is {"records": [...], "nanoseconds": [...]}; 3: files carry the frame table;
# 4: the timeline ({"records", "seconds"}) and frame_records_cpu are base64 arrays
_FORMAT_VERSION = 4

# A session file we write starts with the length of its head: every key but
# "frame_records", which comes last. The head holds the frame table, so our reader
# reads the head alone and checks the rest by its length and CRC-32 instead of parsing
# it (the frame records repeat each stack's callers: hundreds of MB for a long run).
# Upstream's reader, and ours when anything does not match, read the whole document.
_HEAD_START = '{"pyinstrument_c_head": "'
_HEAD_DIGITS = 12
_RECORDS_KEY = ', "frame_records": '
_READ_CHUNK = 1 << 20
_PIECES_PER_CHUNK = 4096  # records written a piece of bytes at a time


_NO_START_STACK = "[unknown start]"
#: why a thread's sample was dropped, as the report says it
DROP_CAUSES = {
    # its stack changed while it was read, by the check of the walk that failed:
    "moved": "moved on while read",  # the thread returned, ended or moved between two reads
    "torn": "copied while changing",  # a frame changed while it was copied
    "unparsable": "frame unreadable",  # a frame did not read as one (it had returned, say)
    "loop": "frame chain looped",  # the chain of frames led back into itself
    "end": "frame chain ended early",  # not at the thread's outermost frame
    "setup": "frame being set up",  # the current frame was not filled in yet
    "deep": "over 131072 frames deep",  # too deep to walk
    "memory": "out of memory",  # the engine could not get memory for the walk
    "changed": "changed while read",  # all of the above (sessions saved before the split)
    "code": "code unconfirmed",  # a code object on it could not be confirmed
    "context": "left its async context while read",  # async mode: crossed the profiled context
}
#: what a repeated run's process used, as its parent measured it (Session.process_usage)
PROCESS_USAGE = {
    "wall_time": "seconds from start to exit, the interpreter's start included",
    "cpu_time": "user and system CPU seconds",
    "max_rss": "peak resident memory, bytes",
}
#: the most runs a repeat set may hold
MAX_RUNS = 10_000


class SessionFileError(ValueError):
    """A session file (or document) that cannot be read as a session."""


class Timeline(Sequence[Tuple[int, float]]):
    """The chronological order of the samples: ``(frame record index, seconds)`` pairs,
    consecutive samples of one record merged.

    Kept in two flat arrays: an hour at 1 ms can hold millions of entries, which cost
    8 bytes each here against about 100 in a list of tuples. Seconds are single
    precision: a run of samples is at most 4.3 s long, so that is exact to 0.3 µs.
    """

    __slots__ = ("records", "seconds")

    def __init__(self, pairs: Iterable[Tuple[int, float]] = ()):
        self.records = array("I")
        self.seconds = array("f")
        for index, seconds in pairs:
            self.append(index, seconds)

    @classmethod
    def from_arrays(cls, records: "array[int]", seconds: "array[float]") -> "Timeline":
        if len(records) != len(seconds):
            raise ValueError("a timeline needs as many seconds as record indices")
        timeline = cls()
        timeline.records, timeline.seconds = records, seconds
        return timeline

    def append(self, index: int, seconds: float) -> None:
        try:
            self.records.append(int(index))
        except OverflowError:
            raise ValueError(f"timeline refers to frame record {index}, which does not exist") from None
        self.seconds.append(float(seconds))

    def shifted(self, offset: int) -> "Timeline":
        """The same timeline with every record index moved by ``offset``."""
        return Timeline.from_arrays(array("I", (r + offset for r in self.records)), array("f", self.seconds))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Tuple[int, float]]:
        return zip(self.records, self.seconds)

    @overload
    def __getitem__(self, i: int) -> Tuple[int, float]: ...

    @overload
    def __getitem__(self, i: slice) -> "Timeline": ...

    def __getitem__(self, i: Union[int, slice]) -> Any:
        if isinstance(i, slice):
            return Timeline.from_arrays(self.records[i], self.seconds[i])
        return self.records[i], self.seconds[i]

    def __repr__(self) -> str:
        return f"<Timeline of {len(self)} entries>"


class Phases:
    """The phases of a run (``Profiler.phase``): their names (phase n is ``names[n - 1]``),
    the wall time each was the current phase, and each frame record's phase (0: none)."""

    def __init__(self, names: Sequence[str], seconds: Sequence[float], records: Iterable[int]) -> None:
        self.names = list(names)
        self.seconds = [float(s) for s in seconds]
        self.records = array("I", records)
        if len(self.seconds) != len(self.names) or len(set(self.names)) != len(self.names):
            raise ValueError("phases: one time per phase, each name once")
        if self.records and max(self.records) > len(self.names):
            raise ValueError("phases: a record is of a phase that does not exist")

    def number(self, name: str) -> int:
        """The phase's number (from 1); LookupError naming the phases there are."""
        if name not in self.names:
            raise LookupError(f"no phase {name!r} in this profile (its phases: {', '.join(self.names) or 'none'})")
        return self.names.index(name) + 1

    def to_json(self) -> Dict[str, Any]:
        return {"names": self.names, "seconds": self.seconds, "records": encode_array(self.records)}

    @staticmethod
    def combined(
        first: Optional["Phases"], first_count: int, second: Optional["Phases"], second_count: int
    ) -> Optional["Phases"]:
        """The phases of two sessions' records one after the other (phases matched by name)."""
        if first is None and second is None:
            return None
        names: List[str] = []
        seconds: List[float] = []
        records = array("I")
        for phases, count in ((first, first_count), (second, second_count)):
            if phases is None:
                records.extend([0] * count)
                continue
            renumber = [0]
            for name, spent in zip(phases.names, phases.seconds):
                if name not in names:
                    names.append(name)
                    seconds.append(0.0)
                seconds[names.index(name)] += spent
                renumber.append(names.index(name) + 1)
            records.extend(renumber[n] for n in phases.records)
        return Phases(names, seconds, records)


class Session:
    """Everything recorded by one profiling run."""

    def __init__(
        self,
        frame_records: Union[Sequence[FrameRecordType], FrameTable],
        start_time: float,
        duration: float,
        min_interval: float,
        max_interval: float,
        sample_count: int,
        start_call_stack: Sequence[str],
        target_description: str,
        cpu_time: float,
        sys_path: Sequence[str],
        sys_prefixes: Sequence[str],
        *,
        frame_records_cpu: Optional[Sequence[float]] = None,
        timeline: Optional[Iterable[Tuple[int, float]]] = None,
        dropped_samples: int = 0,
        truncated_samples: int = 0,
        thread_names: Any = None,
        dropped_by_cause: Optional[Mapping[str, int]] = None,
        profiler_code: Optional[Mapping[Tuple[str, int], str]] = None,
        run_metadata: Optional[Mapping[str, Any]] = None,
        runs: Optional[Sequence["Session"]] = None,
        process_usage: Optional[Mapping[str, float]] = None,
        phases: Optional[Phases] = None,
        gil: Optional[Mapping[str, Sequence[float]]] = None,
    ):
        if isinstance(frame_records, FrameTable):
            if frame_records_cpu is not None:
                frame_records.set_cpu(frame_records_cpu)
            self._table = frame_records
        else:
            self._table = FrameTable.from_records(((stack, float(t)) for stack, t in frame_records), frame_records_cpu)
        self._records_cache: Optional[List[FrameRecordType]] = None
        self.start_time = float(start_time)
        self.duration = float(duration)
        self.min_interval = float(min_interval)
        self.max_interval = float(max_interval)
        self.sample_count = int(sample_count)
        self.start_call_stack: List[str] = list(start_call_stack)
        self.target_description = target_description
        self.cpu_time = float(cpu_time or 0.0)
        self.sys_path: List[str] = list(sys_path)
        self.sys_prefixes: List[str] = list(sys_prefixes)
        if timeline is not None and not isinstance(timeline, Timeline):
            timeline = Timeline(timeline)
        if timeline is not None and len(timeline) and max(timeline.records) >= len(self._table):
            raise ValueError(f"timeline refers to frame record {max(timeline.records)}, which does not exist")
        self.timeline: Optional[Timeline] = timeline
        self.dropped_samples = int(dropped_samples or 0)
        # of those, by the check that failed (DROP_CAUSES); the rest, other reasons
        self.dropped_by_cause: Dict[str, int] = {
            cause: int(count) for cause, count in (dropped_by_cause or {}).items() if cause in DROP_CAUSES and count
        }
        # samples of stacks deeper than the engine keeps: recorded without their middle
        self.truncated_samples = int(truncated_samples or 0)
        self.thread_names = thread_names
        # the profiler's own code, by (file, first line) of its code objects
        # (pyinstrument.own_code); None when not recorded (upstream's sessions)
        self.profiler_code: Optional[Dict[Tuple[str, int], str]] = (
            dict(profiler_code) if profiler_code is not None else None
        )
        # what the run was made with (pyinstrument.run_metadata); None when not recorded
        self.run_metadata: Optional[Dict[str, Any]] = dict(run_metadata) if run_metadata is not None else None
        # the run's phases (Profiler.phase): each record's; None when it had none
        if phases is not None and len(phases.records) != len(self._table):
            raise ValueError("phases: one phase per frame record")
        self.phases: Optional[Phases] = phases
        # each thread's sampled time by where it stood with the GIL: {thread name: [held,
        # waiting, outside] seconds}; None when not recorded (no GIL: a free-threaded build)
        self.gil: Optional[Dict[str, List[float]]] = (
            {str(name): [float(t) for t in times] for name, times in gil.items()} if gil is not None else None
        )
        # a repeat set (pyinstrument --repeat N): the runs whose samples this session holds
        self.runs: Optional[List[Session]] = list(runs) if runs is not None else None
        # what the process of a repeated run used: PROCESS_USAGE keys; None when not measured
        self.process_usage: Optional[Dict[str, float]] = (
            {key: float(process_usage[key]) for key in PROCESS_USAGE if key in process_usage}
            if process_usage is not None
            else None
        )

    # -- the samples ----------------------------------------------------------------------

    @property
    def frame_table(self) -> FrameTable:
        """The recorded stacks: frames, the stack trie and the records (see
        :mod:`pyinstrument.frame_table`)."""
        return self._table

    @frame_table.setter
    def frame_table(self, table: FrameTable) -> None:
        self._table = table
        self._records_cache = None

    @property
    def frame_records(self) -> List[FrameRecordType]:
        """The records as upstream's sessions hold them: (stack of frame strings, root
        first; seconds) for each distinct stack. Made from the frame table when first
        asked for; assigning a new list replaces the table."""
        if self._records_cache is None:
            self._records_cache = self._table.records()
        return self._records_cache

    @frame_records.setter
    def frame_records(self, records: Sequence[FrameRecordType]) -> None:
        cpu = self.frame_records_cpu
        if cpu is not None and len(cpu) != len(records):
            cpu = None
        self.frame_table = FrameTable.from_records(((stack, float(t)) for stack, t in records), cpu)

    @property
    def frame_records_cpu(self) -> Optional[List[float]]:
        """CPU seconds of each record, parallel to frame_records (None when unknown)."""
        cpu = self._table.record_cpu
        return None if cpu is None else cpu.tolist()

    @frame_records_cpu.setter
    def frame_records_cpu(self, cpu: Optional[Sequence[float]]) -> None:
        self._table.set_cpu(None if cpu is None else [float(c) for c in cpu])

    # -- paths ----------------------------------------------------------------------------

    @staticmethod
    def current_sys_prefixes() -> List[str]:
        return [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]

    def frame_context(self) -> FrameContext:
        return FrameContext(self.sys_path, self.sys_prefixes, self.profiler_code)

    def shorten_path(self, path: str) -> str:
        return self.frame_context().shorten_path(path)

    # -- trees ----------------------------------------------------------------------------

    def root_frame(self, trim_stem: bool = True, *, timeline: bool = False) -> Optional[Frame]:
        """The call tree of the session, or None when nothing was recorded.

        By default identical call paths are aggregated: one step per distinct stack,
        however long the session. ``timeline=True`` builds the chronological tree that
        upstream's ``root_frame()`` gives: a call is merged with the previous one only
        when nothing came between them (``a(); b(); a()`` gives three children). It has
        a node per change of stack: tens of millions of frames for an hour at 1 ms
        whose stack changes at most samples (over 20 GB), which is why it is not the
        default here.
        With ``trim_stem`` the frames above the place where the profiler was
        started (the caller's callers) are removed. When the samples have several
        roots (several threads), a synthetic ``[root]`` frame holds them.
        """
        if not len(self._table):
            return None
        context = self.frame_context()
        if timeline:
            root = build_timeline_tree_from_table(self._table, context, self.timeline)
        else:
            root = build_frame_tree_from_table(self._table, context)
        if root.time <= 0 or not root._children:
            return None
        if trim_stem:
            self._trim_stem(root)
        if len(root._children) == 1:
            only = root._children[0]
            only.remove_from_parent()
            only.set_context(context)
            return only
        return root

    def _trim_stem(self, root: Frame) -> None:
        """Remove, below ``root``, the frames that lead to where the profiler started.

        The stem is followed while it matches ``start_call_stack`` and each frame has
        no time of its own and a single child; the last matching frame (the caller of
        ``Profiler.start``) becomes the top of the tree. When the tree has several
        roots (threads), the thread frames are kept and only the thread that started
        the profiler is trimmed.
        """
        start = [frame_info_get_identifier(f) for f in self.start_call_stack]
        if not start:
            return
        several_roots = len(root._children) > 1
        for top in list(root._children):
            if top.identifier == start[0]:
                first, position = top, 1
            elif top.is_thread and len(top._children) == 1 and top._children[0].identifier == start[0]:
                first, position = top._children[0], 1
            else:
                continue
            deepest = _follow_stem(first, start, position)
            if several_roots and top.is_thread:
                if deepest.parent is not top:
                    deepest.remove_from_parent()
                    for child in top._children:
                        child.parent = None
                    top._set_children([deepest])
                    deepest.parent = top
            elif deepest is not top:
                deepest.remove_from_parent()
                index = next(i for i, c in enumerate(root._children) if c is top)
                top.parent = None
                root._children[index] = deepest
                deepest.parent = root

    # -- combining ------------------------------------------------------------------------

    @staticmethod
    def _resample_frame_records(frame_records: Sequence[FrameRecordType], interval: float) -> List[FrameRecordType]:
        """Fewer records, each of at least ``interval`` seconds (but those of outermost
        frames): a stack with less has its time moved to its caller's stack, which was
        on the stack too, until the time gathered there reaches ``interval``."""
        table = FrameTable.from_records(frame_records)
        gathered = [0.0] * len(table.node_parent)
        for node, seconds in zip(table.record_node, table.record_seconds):
            if node != NO_NODE:
                gathered[node] += seconds
        # children come after their parents: from the last node back, each passes up what
        # is not enough on its own
        for node in range(len(gathered) - 1, -1, -1):
            parent = table.node_parent[node]
            if 0 < gathered[node] < interval and parent != NO_NODE:
                gathered[parent] += gathered[node]
                gathered[node] = 0.0
        texts = table.frame_texts()
        return [
            ([texts[f] for f in table.stack_frames(node)], seconds)
            for node, seconds in enumerate(gathered)
            if seconds > 0
        ]

    def resample(self, interval: float) -> "Session":
        """A session with fewer frame records, for renderers that slow down on many (as
        upstream's): stacks of less than ``interval`` seconds give their time to their
        callers' stacks (see :meth:`_resample_frame_records`). Every stack kept is one the
        program had, and the total time is kept; the timeline and CPU times are not."""
        if not interval > 0:
            raise ValueError("interval must be a positive number of seconds")
        kept = self._resample_frame_records(self.frame_records, interval)
        return Session(
            frame_records=kept,
            start_time=self.start_time,
            duration=self.duration,
            min_interval=interval,
            max_interval=interval,
            sample_count=self.sample_count,
            start_call_stack=self.start_call_stack,
            target_description=self.target_description,
            cpu_time=self.cpu_time,
            sys_path=self.sys_path,
            sys_prefixes=self.sys_prefixes,
            thread_names=self.thread_names,
            profiler_code=self.profiler_code,
            run_metadata=self.run_metadata,
        )

    @staticmethod
    def combine(session1: "Session", session2: "Session") -> "Session":
        """One session holding the samples of both (e.g. a profiler started twice)."""
        if session1.start_time > session2.start_time:
            # keep chronological order so timelines stay meaningful
            session1, session2 = session2, session1
        n1 = len(session1.frame_table)
        if session1.timeline is None and session2.timeline is None:
            timeline = None
        else:
            t1 = session1.timeline if session1.timeline is not None else _records_order(session1)
            t2 = session2.timeline if session2.timeline is not None else _records_order(session2)
            t2 = t2.shifted(n1)
            timeline = Timeline.from_arrays(t1.records + t2.records, t1.seconds + t2.seconds)
        thread_names = _merge_thread_names(session1.thread_names, session2.thread_names)
        return Session(
            frame_records=FrameTable.combined(session1.frame_table, session2.frame_table),
            start_time=session1.start_time,
            duration=session1.duration + session2.duration,
            min_interval=min(session1.min_interval, session2.min_interval),
            max_interval=max(session1.max_interval, session2.max_interval),
            sample_count=session1.sample_count + session2.sample_count,
            start_call_stack=session1.start_call_stack,
            target_description=session1.target_description,
            cpu_time=(session1.cpu_time or 0.0) + (session2.cpu_time or 0.0),
            sys_path=_union(session1.sys_path, session2.sys_path),
            sys_prefixes=_union(session1.sys_prefixes, session2.sys_prefixes),
            timeline=timeline,
            dropped_samples=session1.dropped_samples + session2.dropped_samples,
            dropped_by_cause={
                cause: session1.dropped_by_cause.get(cause, 0) + session2.dropped_by_cause.get(cause, 0)
                for cause in DROP_CAUSES
            },
            truncated_samples=session1.truncated_samples + session2.truncated_samples,
            thread_names=thread_names,
            profiler_code=(
                {**session1.profiler_code, **session2.profiler_code}
                if session1.profiler_code is not None and session2.profiler_code is not None
                else None
            ),
            run_metadata=session1.run_metadata if session1.run_metadata is not None else session2.run_metadata,
            phases=Phases.combined(
                session1.phases, len(session1.frame_table), session2.phases, len(session2.frame_table)
            ),
            gil=_merge_gil(session1.gil, session2.gil),
        )

    def phase(self, name: str) -> "Session":
        """The session of one phase of the run: its samples only, its time as the duration.
        LookupError when the run had no such phase. A repeat set's runs are each cut too."""
        if self.runs:
            runs = [run.phase(name) for run in self.runs]
            from pyinstrument.repeat import repeat_set

            return repeat_set(runs)
        if self.phases is None:
            raise LookupError(f"no phase {name!r} in this profile (it has no phases)")
        number = self.phases.number(name)
        source = self._table
        kept = [i for i, phase in enumerate(self.phases.records) if phase == number]
        table = FrameTable(with_cpu=source.record_cpu is not None)
        table.frames, table._frame_index = list(source.frames), dict(source._frame_index)
        table.node_parent, table.node_frame = array("i", source.node_parent), array("i", source.node_frame)
        cpu = source.record_cpu
        for i in kept:
            table.add_record(source.record_node[i], source.record_seconds[i], cpu[i] if cpu is not None else 0.0)
        table = table.compacted()
        seconds = self.phases.seconds[number - 1]
        timeline = None
        if self.timeline is not None:
            new_index = {old: new for new, old in enumerate(kept)}
            timeline = Timeline((new_index[r], s) for r, s in self.timeline if r in new_index)
        session = Session(
            frame_records=table,
            start_time=self.start_time,
            duration=seconds,
            min_interval=self.min_interval,
            max_interval=self.max_interval,
            sample_count=round(
                self.sample_count * sum(table.record_seconds) / max(sum(self._table.record_seconds), 1e-12)
            ),
            start_call_stack=self.start_call_stack,
            target_description=f"{self.target_description} · phase {name}",
            cpu_time=sum(table.record_cpu) if table.record_cpu is not None else 0.0,
            sys_path=self.sys_path,
            sys_prefixes=self.sys_prefixes,
            timeline=timeline,
            thread_names=self.thread_names,
            profiler_code=self.profiler_code,
            run_metadata=self.run_metadata,
            process_usage=self.process_usage,
            phases=Phases([name], [seconds], [1] * len(table)),
        )
        return session

    # -- files ----------------------------------------------------------------------------

    def to_json(self, include_frame_records: bool = True) -> Dict[str, Any]:
        """A JSON-compatible dict in the ``.pyisession`` format.

        The keys upstream pyinstrument reads come first; our additions (CPU time per
        record, the timeline, dropped samples, thread names) sit under extra keys
        that it ignores.
        """
        result: Dict[str, Any] = {
            "start_time": self.start_time,
            "duration": self.duration,
            "min_interval": self.min_interval,
            "max_interval": self.max_interval,
            "sample_count": self.sample_count,
            # upstream's reader needs at least one entry; this one matches no frame
            "start_call_stack": list(self.start_call_stack) or [_NO_START_STACK],
            "target_description": self.target_description,
            "cpu_time": self.cpu_time,
            "sys_path": list(self.sys_path),
            "sys_prefixes": list(self.sys_prefixes),
        }
        if include_frame_records:
            gaps, anchor = self._gap_records()
            records = [[list(stack), t] for stack, t in self.frame_records]
            for i in gaps:
                records[i][0] = list(anchor)
            result["frame_records"] = records
            self._add_record_extras(result, gaps)
        result["dropped_samples"] = self.dropped_samples
        result["dropped_by_cause"] = self.dropped_by_cause  # always: files of one kind have one shape
        result["truncated_samples"] = self.truncated_samples
        result["thread_names"] = self.thread_names
        if self.profiler_code is not None:
            result["profiler_code"] = own_code.to_json(self.profiler_code)
        result[run_metadata.KEY] = self.run_metadata  # always: files of one kind have one shape
        if self.process_usage is not None:
            result["process_usage"] = self.process_usage
        if self.phases is not None:
            result["phases"] = self.phases.to_json()
        if self.gil is not None:
            result["gil"] = self.gil
        if self.runs is not None:
            result["repeat_runs"] = [run._head_document() for run in self.runs]
        result[_FORMAT_EXTRA_KEY] = _FORMAT_VERSION
        return result

    def _head_document(self) -> Dict[str, Any]:
        """The document of :meth:`to_json` with the frame table in place of the records."""
        document = self.to_json(include_frame_records=False)
        gaps, _ = self._gap_records()
        self._add_record_extras(document, gaps)
        document["frame_table"] = self._table.to_json()
        return document

    def _gap_records(self) -> Tuple[List[int], List[str]]:
        """A record of no time with an empty stack holds a main-thread timeline's gaps
        (no sample of the program). Upstream's reader would put it under a root of its
        own, so it is written with the first frame of another record (the anchor: it has
        no time, so no frame's time changes) and listed under "gap_records" for our
        reader. Returns (the gap records, the anchor); none without an anchor."""
        table = self._table
        anchor = next(
            (table.frames[table.stack_frames(node)[0]].text for node in table.record_node if node != NO_NODE), None
        )
        if anchor is None:
            return [], []
        gaps = [
            i
            for i, (node, seconds) in enumerate(zip(table.record_node, table.record_seconds))
            if node == NO_NODE and not seconds
        ]
        return gaps, [anchor]

    def _add_record_extras(self, result: Dict[str, Any], gaps: List[int]) -> None:
        """The keys that go with the frame records: which are gaps, CPU times, the timeline."""
        if gaps:
            result["gap_records"] = gaps
        # the arrays as base64 (version 4): a long run's timeline has millions of entries,
        # which as JSON numbers cost seconds and hundreds of MB to read back
        cpu = self._table.record_cpu
        result["frame_records_cpu"] = None if cpu is None else encode_array(cpu)
        timeline = self.timeline
        result["timeline"] = (
            None
            if timeline is None
            else {"records": encode_array(timeline.records), "seconds": encode_array(timeline.seconds)}
        )

    def _records_chunks(self, gaps: List[int], anchor: List[str]) -> Iterator[bytes]:
        """The JSON of the frame records (as to_json writes them), in pieces of bytes:
        each frame string is encoded once, not once per stack it is in."""
        table = self._table
        encoded = [json.dumps(text) for text in table.frame_texts()]
        anchor_text = "[" + ", ".join(json.dumps(frame) for frame in anchor) + "]"
        gap_set = set(gaps)
        pieces: List[str] = []
        for i, (node, seconds) in enumerate(zip(table.record_node, table.record_seconds)):
            if i in gap_set:
                stack = anchor_text
            else:
                stack = "[" + ", ".join([encoded[f] for f in table.stack_frames(node)]) + "]"
            pieces.append(f"{', ' if i else '['}[{stack}, {float(seconds)!r}]")
            if len(pieces) >= _PIECES_PER_CHUNK:
                yield "".join(pieces).encode("ascii")
                pieces.clear()
        pieces.append("]" if len(table) else "[]")
        yield "".join(pieces).encode("ascii")

    def to_file_chunks(self) -> List[bytes]:
        """The ``.pyisession`` file's bytes, in pieces: the document of :meth:`to_json`
        with its ``frame_records`` last, after a head our reader takes alone (see
        _HEAD_START)."""
        document = self._head_document()
        gaps, anchor = self._gap_records()
        rest = list(self._records_chunks(gaps, anchor)) + [b"}"]
        crc = 0
        for chunk in rest:
            crc = zlib.crc32(chunk, crc)
        document["frame_records_check"] = [sum(len(chunk) for chunk in rest), crc]
        # ensure_ascii (the default) keeps lone surrogates (undecodable paths) writable
        body = json.dumps(document)[1:-1]
        head_length = len(_HEAD_START) + _HEAD_DIGITS + len('", ') + len(body)
        head = f'{_HEAD_START}{head_length:0{_HEAD_DIGITS}d}", {body}{_RECORDS_KEY}'
        return [head.encode("ascii")] + rest

    @staticmethod
    def from_json(json_dict: Dict[str, Any]) -> "Session":
        """The session in a ``.pyisession`` document (ours or upstream's). Raises
        :class:`SessionFileError` (a ValueError) saying what is wrong with it.

        Every value is checked here, so that whatever loads renders in every format:
        times are finite, non-negative and add up to at most 10⁹ s, counts are whole
        numbers, names are strings and the timeline names records that exist.
        """
        if not isinstance(json_dict, dict):
            raise SessionFileError("not a pyinstrument session (expected a JSON object)")
        missing = [key for key in ("start_time", "duration", "sample_count") if key not in json_dict]
        if missing:
            raise SessionFileError(f"not a pyinstrument session (no {', '.join(map(repr, missing))})")
        return _session_from_document(json_dict, None)

    def to_file_text(self) -> str:
        """The ``.pyisession`` file's text (see :meth:`to_file_chunks`)."""
        return b"".join(self.to_file_chunks()).decode("ascii")

    def save(self, filename: "str | os.PathLike[str]") -> None:
        """Write the session as a ``.pyisession`` file (see
        :func:`pyinstrument._files.write_report_file` for what an existing path gets)."""
        write_report_file(filename, self.to_file_chunks())

    @staticmethod
    def load(filename: "str | os.PathLike[str]") -> "Session":
        """Read a ``.pyisession`` file. Raises OSError when it cannot be read and
        :class:`SessionFileError` (a ValueError) when it is not a usable session."""
        with open(filename, "rb") as f:
            head = _read_head(f)
            if head is not None:
                return _session_from_document(head, _read_frame_table)
            f.seek(0)
            data = f.read()
        try:
            document = json.loads(data)
        except RecursionError:
            raise SessionFileError("not a pyinstrument session (nested too deeply)") from None
        except UnicodeDecodeError:
            raise SessionFileError("not a pyinstrument session (not JSON text)") from None
        except json.JSONDecodeError as exc:
            if exc.pos >= len(data.rstrip()) or exc.msg.startswith("Unterminated string"):
                raise SessionFileError("truncated pyinstrument session (the file ends too early)") from None
            raise SessionFileError(
                f"not a pyinstrument session (invalid JSON at line {exc.lineno}: {exc.msg})"
            ) from None
        return Session.from_json(document)

    def __repr__(self) -> str:
        return (
            f"<Session {self.target_description!r}: {self.sample_count} samples, "
            f"{self.duration:.3f}s, {len(self._table)} records>"
        )


def _session_from_document(json_dict: Dict[str, Any], read_table: Optional[Callable[[Any], FrameTable]]) -> Session:
    """The session of a document whose top is checked (Session.from_json): its records
    from ``frame_records``, or with ``read_table`` from the frame table of our file's head."""
    get = json_dict.get
    try:
        return Session(
            frame_records=(
                read_table(get("frame_table"))
                if read_table is not None
                else _read_frame_records(get("frame_records") or [], get("gap_records"))
            ),
            start_time=_read_start_time(json_dict["start_time"]),
            duration=_read_time(json_dict["duration"], "'duration'"),
            min_interval=_read_time(get("min_interval", 0.001), "'min_interval'"),
            max_interval=_read_time(get("max_interval", 0.001), "'max_interval'"),
            sample_count=_read_count(json_dict["sample_count"], "'sample_count'"),
            start_call_stack=_read_strings(get("start_call_stack"), "start_call_stack"),
            target_description=_read_string(get("target_description"), "'target_description'"),
            cpu_time=_read_time(get("cpu_time") or 0.0, "'cpu_time'"),
            sys_path=_read_strings(get("sys_path"), "sys_path"),
            sys_prefixes=_read_strings(get("sys_prefixes"), "sys_prefixes"),
            frame_records_cpu=_read_cpu_times(get("frame_records_cpu")),
            timeline=_read_timeline(get("timeline")),
            dropped_samples=_read_count(get("dropped_samples") or 0, "'dropped_samples'"),
            dropped_by_cause=_read_causes(get("dropped_by_cause")),
            truncated_samples=_read_count(get("truncated_samples") or 0, "'truncated_samples'"),
            thread_names=_read_thread_names(get("thread_names")),
            profiler_code=_read_profiler_code(get("profiler_code")),
            run_metadata=run_metadata.read(get(run_metadata.KEY)),
            runs=_read_runs(get("repeat_runs")),
            process_usage=_read_process_usage(get("process_usage")),
            phases=_read_phases(get("phases")),
            gil=_read_gil(get("gil")),
        )
    except SessionFileError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise SessionFileError(f"damaged pyinstrument session: {exc}") from None


def _read_runs(value: Any) -> Optional[List[Session]]:
    """The runs of a repeat set: each a session document with its frame table."""
    if value is None:
        return None
    if not isinstance(value, list) or not 0 < len(value) <= MAX_RUNS:
        raise SessionFileError(f"damaged pyinstrument session: 'repeat_runs' is not a list of 1 to {MAX_RUNS} runs")
    runs = []
    for i, document in enumerate(value):
        if not isinstance(document, dict) or "repeat_runs" in document:
            raise SessionFileError(f"damaged pyinstrument session: repeat run {i} is not a session of one run")
        try:
            if "frame_table" in document:
                runs.append(_session_from_document(document, _read_frame_table))
            else:
                runs.append(Session.from_json(document))
        except SessionFileError as exc:
            raise SessionFileError(f"{exc} (in repeat run {i})") from None
    return runs


def _read_phases(value: Any) -> Optional[Phases]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SessionFileError("damaged pyinstrument session: 'phases' is not an object")
    names, seconds = value.get("names"), value.get("seconds")
    if not (isinstance(names, list) and all(isinstance(name, str) and name for name in names)):
        raise SessionFileError("damaged pyinstrument session: the phases' names are not strings")
    times = _read_times(seconds, "the phases' times")
    records = decode_array("I", value.get("records"), "the phases' records")
    try:
        return Phases(names, times or [], records)
    except ValueError as exc:
        raise SessionFileError(f"damaged pyinstrument session: {exc}") from None


def _read_process_usage(value: Any) -> Optional[Dict[str, float]]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SessionFileError("damaged pyinstrument session: 'process_usage' is not an object")
    usage = {}
    for key in PROCESS_USAGE:
        if key in value:
            if not (_is_number(value[key]) and 0 <= value[key] <= 1e18):
                raise SessionFileError(
                    f"damaged pyinstrument session: process_usage {key!r} is not a number from 0 to 1e18"
                )
            usage[key] = float(value[key])
    return usage


def _read_profiler_code(value: Any) -> Optional[Dict[Tuple[str, int], str]]:
    if value is None:
        return None
    try:
        return own_code.from_json(value)
    except ValueError as exc:
        raise SessionFileError(f"damaged pyinstrument session: {exc}") from None


def _read_frame_table(value: Any) -> FrameTable:
    try:
        table = FrameTable.from_json(value)
    except ValueError as exc:
        raise SessionFileError(f"damaged pyinstrument session: {exc}") from None
    _check_total(table.record_seconds, "the frame records' times")
    return table


def _read_head(f: BinaryIO) -> Optional[Dict[str, Any]]:
    """The head of a session file we wrote (see _HEAD_START), when its records are
    whole: their length and CRC-32 are the ones the head gives. None otherwise (any
    other document, or one edited since): the whole document is to be read."""
    start = f.read(len(_HEAD_START) + _HEAD_DIGITS + 3)
    prefix = _HEAD_START.encode("ascii")
    digits = start[len(prefix) : len(prefix) + _HEAD_DIGITS]
    if not (start.startswith(prefix) and digits.isdigit() and start.endswith(b'", ')):
        return None
    head = start + f.read(int(digits) - len(start))
    if f.read(len(_RECORDS_KEY)) != _RECORDS_KEY.encode("ascii"):
        return None
    try:
        document = json.loads(head + b"}")
        expected_length, expected_crc = document["frame_records_check"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    length, crc = 0, 0
    while True:
        chunk = f.read(_READ_CHUNK)
        if not chunk:
            break
        length += len(chunk)
        crc = zlib.crc32(chunk, crc)
    if (length, crc) != (expected_length, expected_crc) or not isinstance(document, dict):
        return None
    return document


def _read_frame_records(value: Any, gaps: Any) -> List[FrameRecordType]:
    if not isinstance(value, list):
        raise SessionFileError("damaged pyinstrument session: 'frame_records' is not a list")
    records: List[FrameRecordType] = []
    for i, item in enumerate(value):
        if not (
            isinstance(item, (list, tuple))
            and len(item) == 2
            and isinstance(item[0], list)
            and all(isinstance(frame, str) for frame in item[0])
            and _is_number(item[1])
        ):
            raise SessionFileError(f"damaged pyinstrument session: frame record {i} is not a [stack, seconds] pair")
        records.append((item[0], _as_float(item[1])))
    if gaps is not None:  # see Session._write_gap_records
        if not (
            isinstance(gaps, list) and all(type(i) is int and 0 <= i < len(records) and not records[i][1] for i in gaps)
        ):
            raise SessionFileError("damaged pyinstrument session: 'gap_records' names no records of no time")
        for i in gaps:
            records[i] = ([], 0.0)
    _check_total([t for _, t in records], "the frame records' times")
    return records


#: the most seconds a session's times may add up to (about 31 years): more than any
#: run, and little enough that every format's nanosecond or microsecond counts fit
_MAX_SECONDS = 1e9
#: the latest start time accepted (in the year 2255): nanoseconds since the epoch
#: still fit the 64-bit integers of the formats that use them
_MAX_START_TIME = 9e9


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(number: Union[int, float]) -> float:
    try:
        return float(number)
    except OverflowError:  # an integer beyond any float: the checks that follow refuse it
        return math.inf


def _read_time(value: Any, what: str) -> float:
    if not (_is_number(value) and 0 <= value <= _MAX_SECONDS):
        raise SessionFileError(
            f"damaged pyinstrument session: {what} is not a time in seconds (a number from 0 to {_MAX_SECONDS:g})"
        )
    return float(value)


def _read_times(value: Any, what: str) -> Optional[List[float]]:
    if value is None:
        return None
    if not (isinstance(value, list) and all(_is_number(item) for item in value)):
        raise SessionFileError(f"damaged pyinstrument session: {what} is not a list of times in seconds")
    times = [_as_float(item) for item in value]
    _check_total(times, what)
    return times


def _read_cpu_times(value: Any) -> Optional[Sequence[float]]:
    """frame_records_cpu: a base64 array of doubles (version 4) or a list of numbers."""
    if not isinstance(value, str):
        return _read_times(value, "'frame_records_cpu'")
    try:
        times = decode_array("d", value, "'frame_records_cpu'")
    except ValueError as exc:
        raise SessionFileError(f"damaged pyinstrument session: {exc}") from None
    _check_total(times, "'frame_records_cpu'")
    return times


def _check_total(times: Sequence[float], what: str) -> None:
    """Each of ``times`` is a finite number of seconds, not negative, and together
    they are at most _MAX_SECONDS."""
    try:
        total = math.fsum(times)
    except (ValueError, OverflowError):  # inf - inf, or a sum too large
        total = math.inf
    if not (total <= _MAX_SECONDS and min(times, default=0.0) >= 0):
        raise SessionFileError(
            f"damaged pyinstrument session: {what} include a negative or infinite time, "
            f"or add up to more than {_MAX_SECONDS:g} seconds"
        )


def _read_start_time(value: Any) -> float:
    if not (_is_number(value) and 0 <= value <= _MAX_START_TIME):
        raise SessionFileError(
            "damaged pyinstrument session: 'start_time' is not a time since the epoch "
            "(a number of seconds from 1970 to 2255)"
        )
    return float(value)


def _read_causes(value: Any) -> Dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SessionFileError("damaged pyinstrument session: 'dropped_by_cause' is not a mapping")
    return {str(cause): _read_count(count, f"'dropped_by_cause' of {cause!r}") for cause, count in value.items()}


def _read_count(value: Any, what: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63):
        raise SessionFileError(f"damaged pyinstrument session: {what} is not a count (a whole number from 0)")
    return value


def _read_string(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SessionFileError(f"damaged pyinstrument session: {what} is not a string")
    return value


def _read_strings(value: Any, key: str) -> List[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SessionFileError(f"damaged pyinstrument session: {key!r} is not a list of strings")
    return value


def _read_gil(value: Any) -> Optional[Dict[str, List[float]]]:
    if value is None:
        return None
    if not (
        isinstance(value, dict)
        and all(
            isinstance(times, list)
            and len(times) == 3
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < math.inf for t in times)
            for times in value.values()
        )
    ):
        raise SessionFileError("damaged pyinstrument session: 'gil' is not an object of [held, waiting, outside] times")
    return value


def _merge_gil(a: Optional[Dict[str, List[float]]], b: Optional[Dict[str, List[float]]]) -> Any:
    """Both sessions' GIL times, summed per thread; None when either did not record them."""
    if a is None or b is None:
        return None
    merged = {name: list(times) for name, times in a.items()}
    for name, times in b.items():
        merged[name] = [x + y for x, y in zip(merged.get(name, [0.0, 0.0, 0.0]), times)]
    return merged


def _read_thread_names(value: Any) -> Optional[Dict[str, str]]:
    if value is None:
        return None
    if not (isinstance(value, dict) and all(isinstance(name, str) for name in value.values())):
        raise SessionFileError("damaged pyinstrument session: 'thread_names' is not an object of names")
    return value


def _read_timeline(value: Any) -> Optional[Timeline]:
    """The timeline in any of our layouts: base64 arrays {"records", "seconds"} (version
    4), lists {"records", "nanoseconds"} (version 2), or a list of [record, seconds]
    pairs (version 1)."""
    if value is None:
        return None
    if isinstance(value, dict) and isinstance(value.get("records"), str):
        try:
            indices = decode_array("I", value["records"], "the timeline's records")
            seconds = decode_array("f", value.get("seconds"), "the timeline's seconds")
        except ValueError as exc:
            raise SessionFileError(f"damaged pyinstrument session: {exc}") from None
        if len(indices) != len(seconds):
            raise SessionFileError("damaged pyinstrument session: the timeline's records and seconds differ in length")
        timeline = Timeline.from_arrays(indices, seconds)
    elif isinstance(value, dict):
        records, nanoseconds = value.get("records"), value.get("nanoseconds")
        if not isinstance(records, list) or not isinstance(nanoseconds, list):
            raise SessionFileError("damaged pyinstrument session: the timeline has no records or nanoseconds")
        try:
            timeline = Timeline.from_arrays(array("I", records), array("f", [n / 1e9 for n in nanoseconds]))
        except (TypeError, OverflowError):
            raise SessionFileError(
                "damaged pyinstrument session: the timeline holds something other than record indices and nanoseconds"
            ) from None
    elif isinstance(value, list):
        try:
            timeline = Timeline(value)
        except (TypeError, ValueError, OverflowError):
            raise SessionFileError(
                "damaged pyinstrument session: the timeline holds something other than [record index, seconds] pairs"
            ) from None
    else:
        raise SessionFileError("damaged pyinstrument session: the timeline is neither a list nor an object")
    _check_total(timeline.seconds, "the timeline's times")
    return timeline


def _follow_stem(frame: Frame, start: List[str], position: int) -> Frame:
    """From ``frame`` (matching ``start[position - 1]``), go down while the single
    child matches the next identifier of the start stack."""
    while position < len(start) and len(frame._children) == 1:
        child = frame._children[0]
        if child.identifier != start[position]:
            break
        frame = child
        position += 1
    return frame


def _records_order(session: Session) -> Timeline:
    table = session.frame_table
    return Timeline.from_arrays(array("I", range(len(table))), array("f", table.record_seconds))


def _union(a: Sequence[str], b: Sequence[str]) -> List[str]:
    result = list(a)
    seen = set(result)
    for item in b:
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result


def _merge_thread_names(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        merged = dict(a)
        merged.update(b)
        return merged
    if isinstance(a, list) and isinstance(b, list):
        return a + [x for x in b if x not in a]
    return a


__all__ = ["Session", "SessionFileError", "Timeline", "FrameRecordType", "ROOT_FRAME_IDENTIFIER"]
