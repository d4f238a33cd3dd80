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
from typing import Dict, Iterator, List, NamedTuple, Sequence, Tuple

from pyinstrument.frame import (
    ATTRIBUTE_MARKER_CLASS_NAME,
    ATTRIBUTE_MARKER_LINE_NUMBER,
    ATTRIBUTES_SEP,
    BUILTIN_FILE,
    IDENTIFIER_SEP,
    THREAD_FILE,
    frame_info_get_identifier,
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

    ``frames``: unique :class:`StackFrame` entries. ``threads``: thread names, in order
    of first appearance. For record ``i``: ``stacks[i]`` (root first; empty when the
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
        self._frame_index: Dict[Tuple[str, str], int] = {}
        self._thread_index: Dict[str, int] = {}
        self._start = [frame_info_get_identifier(f) for f in session.start_call_stack]
        cpu_times = session.frame_records_cpu
        for i, (stack, wall) in enumerate(session.frame_records):
            thread, frames, lines = self._clean(stack)
            self.stacks.append(frames)
            self.lines.append(lines)
            self.thread_of.append(self._thread(thread))
            self.wall.append(wall if frames else 0.0)
            self.cpu.append(cpu_times[i] if cpu_times is not None and frames else 0.0)

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

    def _thread(self, name: str) -> int:
        index = self._thread_index.get(name)
        if index is None:
            index = self._thread_index[name] = len(self.threads)
            self.threads.append(name)
        return index

    def _clean(self, stack: Sequence[str]) -> Tuple[str, Tuple[int, ...], Tuple[int, ...]]:
        thread = MAIN_THREAD_NAME
        parsed = [_parse(f) for f in stack]
        if parsed and parsed[0][1] == THREAD_FILE:
            thread = parsed[0][0] or MAIN_THREAD_NAME
            parsed = parsed[1:]
        parsed = parsed[_stem_length(parsed, self._start):]
        parsed = parsed[_launcher_length(parsed):]
        kept = []
        for entry in parsed:
            function, path, _, class_name, _ = entry
            if _is_profiler_file(path):
                if function.startswith("Profiler.") or class_name == "Profiler":
                    return thread, (), ()  # the profiler starting or stopping
                continue  # a wrapper of the profile decorator: keep what it called
            kept.append(entry)
        frames = tuple(self._frame(e) for e in kept)
        lines = tuple(e[4] for e in kept)
        return thread, frames, lines

    def _frame(self, entry: "_Parsed") -> int:
        function, path, first_line, class_name, _ = entry
        key = (function + IDENTIFIER_SEP + path + IDENTIFIER_SEP + str(first_line), class_name)
        index = self._frame_index.get(key)
        if index is None:
            name = function
            if class_name and not function.startswith(class_name + "."):
                name = f"{class_name}.{function}"
            builtin = path.startswith(BUILTIN_FILE)
            application = bool(path) and not self._context.is_library_path(path)
            short = self._context.shorten_path(path) if path else path
            index = self._frame_index[key] = len(self.frames)
            self.frames.append(StackFrame(name, path, short, first_line, application, builtin))
        return index


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


def _identifier(entry: _Parsed) -> str:
    return entry[0] + IDENTIFIER_SEP + entry[1] + IDENTIFIER_SEP + str(entry[2])


def _stem_length(parsed: Sequence[_Parsed], start: Sequence[str]) -> int:
    """How many leading frames lead to where the profiler was started: all those that
    match the start stack except the last (the caller of ``Profiler.start``)."""
    matched = 0
    while matched < len(start) and matched < len(parsed) and _identifier(parsed[matched]) == start[matched]:
        matched += 1
    return max(matched - 1, 0)


def _is_launcher_file(path: str) -> bool:
    return (
        path.startswith("<frozen runpy")
        or re.search(r"(^|[/\\])runpy\.py$", path) is not None
        or is_path_in_package(path, "pyinstrument")
    )


def _launcher_length(parsed: Sequence[_Parsed]) -> int:
    """How many leading frames belong to the command line (pyinstrument's ``__main__``,
    runpy, and the ``exec`` of a ``<string>`` between them)."""
    if not parsed or not is_path_in_package(parsed[0][1], "pyinstrument") or _is_profiler_file(parsed[0][1]):
        return 0
    n = 0
    while n < len(parsed):
        path = parsed[n][1]
        if _is_launcher_file(path):
            n += 1
        elif path.startswith("<string>") and n + 1 < len(parsed) and _is_launcher_file(parsed[n + 1][1]):
            n += 1
        else:
            break
    return n


def _is_profiler_file(path: str) -> bool:
    return is_path_in_package(path, "pyinstrument") and re.search(r"[/\\]profiler\.py$", path) is not None
