"""A session's samples as flat stacks, for the formats other tools read.

Flame graphs, collapsed stacks, pprof, the Firefox Profiler and Chrome traces want
every sample's whole call stack, not pyinstrument's processed tree, so those
renderers start from :class:`SampleStacks`: one entry per frame record, each a tuple
of indices into one table of unique frames (root first), with its thread, wall and
CPU time. Building it costs one pass over the records (unique stacks, usually a few
thousand even for an hour of samples); the chronological order comes from the
session's timeline and is not copied.

Cleaning is the minimum every format needs: the frames above the place where the
profiler was started, the command line's launcher frames and the profiler's own work
are removed. Nothing else is hidden: library code, import machinery and small calls
stay, because the tools that read these files do their own filtering.
"""

from __future__ import annotations

import re
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from pyinstrument.frame import (
    ATTRIBUTE_MARKER_CLASS_NAME,
    ATTRIBUTE_MARKER_LINE_NUMBER,
    ATTRIBUTES_SEP,
    BUILTIN_FILE,
    IDENTIFIER_SEP,
    THREAD_FILE,
    frame_info_get_identifier,
    gc_paused,
    is_path_in_package,
)
from pyinstrument.session import Session

#: name of the thread of samples recorded without a thread root (one thread profiled)
MAIN_THREAD_NAME = "MainThread"


class StackFrame(NamedTuple):
    """One function, as the formats show it."""

    name: str  # Class.function, or the qualified function name
    file_path: str
    file_path_short: str
    line_no: int  # first line of the function; 0 when unknown (built-in functions)
    is_application_code: bool
    is_builtin: bool


class SampleStacks:
    """The session's frame records as stacks of frame-table indices.

    ``frames``: unique :class:`StackFrame` entries. ``threads``: thread names, the main
    thread first, then in order of first appearance (two threads may share a name);
    ``thread_idents``: their idents (None when unknown). For record ``i``: ``stacks[i]`` (root first; empty when the
    record was the profiler's own work and is left out), ``lines[i]`` (the line each
    frame was executing, 0 when unknown), ``thread_of[i]``, ``wall[i]``, ``cpu[i]``
    (seconds; CPU is 0.0 when the session has none, see ``has_cpu``).
    """

    def __init__(self, session: Session):
        self.has_cpu = session.frame_records_cpu is not None
        self.frames: List[StackFrame] = []
        self.threads: List[str] = []
        self.stacks: List[Tuple[int, ...]] = []
        self.lines: List[Tuple[int, ...]] = []
        self.thread_of: List[int] = []
        self.wall: List[float] = []
        self.cpu: List[float] = []
        self._session = session
        self._context = session.frame_context()
        self._entries: Dict[str, _Entry] = {}  # frame string -> what it stands for
        self._frame_index: Dict[Tuple[str, str], int] = {}
        self._start = [frame_info_get_identifier(f) for f in session.start_call_stack]
        thread_index: Dict[_Entry, int] = {}  # thread root -> index in order of appearance
        cpu_times = session.frame_records_cpu
        with gc_paused():  # many small tuples, none of them garbage: collections would only cost
            for i, (stack, wall) in enumerate(session.frame_records):
                thread, frames, lines = self._clean(stack)
                self.stacks.append(frames)
                self.lines.append(lines)
                self.thread_of.append(thread_index.setdefault(thread, len(thread_index)))
                self.wall.append(wall if frames else 0.0)
                self.cpu.append(cpu_times[i] if cpu_times is not None and frames else 0.0)
        # threads in order of first appearance, the main thread first
        order = sorted(thread_index, key=lambda root: (root.name != MAIN_THREAD_NAME, thread_index[root]))
        self.threads = [root.name for root in order]
        self.thread_idents = [root.ident for root in order]
        renumber = {thread_index[root]: position for position, root in enumerate(order)}
        self.thread_of = [renumber[t] for t in self.thread_of]

    # -- reading --------------------------------------------------------------------------

    def chronological(self) -> Iterator[Tuple[int, float]]:
        """``(record index, seconds)`` in the order the samples were taken (records in
        their stored order when the session has no timeline). Left-out records are
        included with their time: they still took time."""
        timeline = self._session.timeline
        if timeline is not None:
            return iter(timeline)
        return ((i, t) for i, (_, t) in enumerate(self._session.frame_records))

    def total_wall(self) -> float:
        return sum(self.wall)

    def total_cpu(self) -> float:
        return sum(self.cpu)

    # -- building -------------------------------------------------------------------------

    def _clean(self, stack: Sequence[str]) -> Tuple["_Entry", Tuple[int, ...], Tuple[int, ...]]:
        """The record's thread root (an _Entry), and its cleaned frames and lines."""
        entries = [self._entry(f) for f in stack]
        thread = _NO_THREAD_ROOT
        if entries and entries[0].kind == _THREAD:
            thread = entries[0]
            entries = entries[1:]
        skip = _stem_length(entries, self._start)
        skip += _launcher_length(entries[skip:])
        frames: List[int] = []
        lines: List[int] = []
        for entry in entries[skip:]:
            if entry.kind == _PROFILER_MACHINERY:
                return thread, (), ()  # the profiler starting or stopping
            if entry.kind == _PROFILER_WRAPPER:
                continue  # a wrapper of the profile decorator: keep what it called
            frames.append(entry.frame)
            lines.append(entry.line)
        return thread, tuple(frames), tuple(lines)

    def _entry(self, frame_info: str) -> "_Entry":
        """What a frame string stands for, worked out once per distinct string (an hour
        of samples has thousands of them, repeated in hundreds of thousands of stack
        positions)."""
        entry = self._entries.get(frame_info)
        if entry is not None:
            return entry
        function, path, first_line, class_name, line = _parse(frame_info)
        identifier = function + IDENTIFIER_SEP + path + IDENTIFIER_SEP + str(first_line)
        frame = -1
        if path == THREAD_FILE:
            # a thread root: the thread's name, its ident where the first line would be
            kind = _THREAD
            function = function or MAIN_THREAD_NAME
        elif _is_profiler_file(path):
            is_machinery = function.startswith("Profiler.") or class_name == "Profiler"
            kind = _PROFILER_MACHINERY if is_machinery else _PROFILER_WRAPPER
        else:
            kind = _ORDINARY
            frame = self._frame(identifier, function, path, first_line, class_name)
        entry = self._entries[frame_info] = _Entry(identifier, function, path, line, frame, kind)
        return entry

    def _frame(self, identifier: str, function: str, path: str, first_line: int, class_name: str) -> int:
        key = (identifier, class_name)
        index = self._frame_index.get(key)
        if index is None:
            name = function
            if class_name and not function.startswith(class_name + "."):
                name = f"{class_name}.{function}"
            builtin = path.startswith(BUILTIN_FILE)
            application = bool(path) and not self._context.is_library_code(path, function)
            short = self._context.shorten_path(path) if path else path
            index = self._frame_index[key] = len(self.frames)
            self.frames.append(StackFrame(name, path, short, first_line, application, builtin))
        return index


# kinds of frame strings
_ORDINARY, _THREAD, _PROFILER_MACHINERY, _PROFILER_WRAPPER = range(4)


class _Entry(NamedTuple):
    identifier: str
    name: str  # the function, or the thread's name
    path: str
    line: int  # the line being executed, 0 when unknown
    frame: int  # index into SampleStacks.frames; -1 for threads and profiler frames
    kind: int

    @property
    def ident(self) -> Optional[int]:
        """A thread root's thread ident (None when unknown)."""
        text = self.identifier.rpartition(IDENTIFIER_SEP)[2]
        return int(text) if self.kind == _THREAD and text.isdigit() else None


# the "thread" of records without a thread root (the profiler followed one thread)
_NO_THREAD_ROOT = _Entry(MAIN_THREAD_NAME, MAIN_THREAD_NAME, THREAD_FILE, 0, -1, _THREAD)


# (function, file, first line, class name, current line)
_Parsed = Tuple[str, str, int, str, int]


def _parse(frame_info: str) -> _Parsed:
    identifier, _, attributes = frame_info.partition(ATTRIBUTES_SEP)
    # split from the right: a function name may itself contain NUL
    rest, _, line_text = identifier.rpartition(IDENTIFIER_SEP)
    function, _, path = rest.rpartition(IDENTIFIER_SEP)
    class_name = ""
    current_line = 0
    if attributes:
        for attribute in attributes.split(ATTRIBUTES_SEP):
            marker, value = attribute[:1], attribute[1:]
            if marker == ATTRIBUTE_MARKER_CLASS_NAME:
                class_name = value
            elif marker == ATTRIBUTE_MARKER_LINE_NUMBER:
                current_line = _to_int(value)
    return function, path, _to_int(line_text), class_name, current_line


def _to_int(text: str) -> int:
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


def _stem_length(entries: Sequence[_Entry], start: Sequence[str]) -> int:
    """How many leading frames lead to where the profiler was started: all those that
    match the start stack except the last (the caller of ``Profiler.start``)."""
    matched = 0
    while matched < len(start) and matched < len(entries) and entries[matched].identifier == start[matched]:
        matched += 1
    return max(matched - 1, 0)


def _is_launcher_file(path: str) -> bool:
    return (
        path.startswith("<frozen runpy")
        or re.search(r"(^|[/\\])runpy\.py$", path) is not None
        or is_path_in_package(path, "pyinstrument")
    )


def _launcher_length(entries: Sequence[_Entry]) -> int:
    """How many leading frames belong to the command line (pyinstrument's ``__main__``,
    runpy, and the ``exec`` of a ``<string>`` between them)."""
    if not entries or not is_path_in_package(entries[0].path, "pyinstrument") or entries[0].kind != _ORDINARY:
        return 0
    n = 0
    while n < len(entries):
        path = entries[n].path
        if _is_launcher_file(path):
            n += 1
        elif path.startswith("<string>") and n + 1 < len(entries) and _is_launcher_file(entries[n + 1].path):
            n += 1
        else:
            break
    return n


def _is_profiler_file(path: str) -> bool:
    return is_path_in_package(path, "pyinstrument") and re.search(r"[/\\]profiler\.py$", path) is not None
