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
from array import array
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from pyinstrument import own_code
from pyinstrument.frame import frame_info_get_identifier, gc_paused, is_path_in_package
from pyinstrument.frame_table import NO_NODE, THREAD_FILE, FrameInfo, FrameKind, FrameTable
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

    The cleaned stacks are also a trie: ``node_of[i]`` is record ``i``'s node (-1 for
    an empty stack); node ``n`` is frame ``trie_frame[n]`` at line ``trie_line[n]``
    called from node ``trie_parent[n]`` (-1 at the top), parents before children.
    A format that groups samples by call path walks the trie, not the tuples.
    """

    def __init__(self, session: Session):
        self.has_cpu = session.frame_records_cpu is not None
        self.frames: List[StackFrame] = []
        self.threads: List[str] = []
        self.thread_of: List[int] = []
        self.wall: List[float] = []
        self.cpu: List[float] = []
        self._session = session
        self._context = session.frame_context()
        self._frame_index: Dict[Tuple[str, str], int] = {}
        self._start = [frame_info_get_identifier(f) for f in session.start_call_stack]
        table = session.frame_table
        with gc_paused():  # many small tuples, none of them garbage: collections would only cost
            cleaned = _CleanedStacks(table, [self._entry(f) for f in table.frames], self._start)
            thread_index: Dict[_Entry, int] = {}  # thread root -> index in order of appearance
            cpu_times = table.record_cpu
            self.node_of: List[int] = []
            for i, (node, wall) in enumerate(zip(table.record_node, table.record_seconds)):
                thread, trie_node = cleaned.of(node)
                self.node_of.append(trie_node)
                self.thread_of.append(thread_index.setdefault(thread, len(thread_index)))
                self.wall.append(wall if trie_node != NO_NODE else 0.0)
                self.cpu.append(cpu_times[i] if cpu_times is not None and trie_node != NO_NODE else 0.0)
        self.trie_parent, self.trie_frame, self.trie_line = cleaned.parent, cleaned.frame, cleaned.line
        self._stacks: Optional[Tuple[List[Tuple[int, ...]], List[Tuple[int, ...]]]] = None
        # threads in order of first appearance, the main thread first
        order = sorted(thread_index, key=lambda root: (root.name != MAIN_THREAD_NAME, thread_index[root]))
        self.threads = [root.name for root in order]
        self.thread_idents = [root.ident for root in order]
        renumber = {thread_index[root]: position for position, root in enumerate(order)}
        self.thread_of = [renumber[t] for t in self.thread_of]

    # -- reading --------------------------------------------------------------------------

    @property
    def stacks(self) -> List[Tuple[int, ...]]:
        """Each record's frames, root first."""
        return self._tuples()[0]

    @property
    def lines(self) -> List[Tuple[int, ...]]:
        """Each record's lines being executed, parallel to its frames."""
        return self._tuples()[1]

    def _tuples(self) -> Tuple[List[Tuple[int, ...]], List[Tuple[int, ...]]]:
        if self._stacks is None:
            frames_of: List[Tuple[int, ...]] = []
            lines_of: List[Tuple[int, ...]] = []
            parent, frame, line = self.trie_parent, self.trie_frame, self.trie_line
            for node in range(len(parent)):  # parents come first
                above = parent[node]
                frames_of.append((frames_of[above] if above != NO_NODE else ()) + (frame[node],))
                lines_of.append((lines_of[above] if above != NO_NODE else ()) + (line[node],))
            self._stacks = (
                [frames_of[n] if n != NO_NODE else () for n in self.node_of],
                [lines_of[n] if n != NO_NODE else () for n in self.node_of],
            )
        return self._stacks

    def depth(self) -> "array[int]":
        """Each trie node's number of frames."""
        depth = array("i", [0]) * len(self.trie_parent)
        for node, above in enumerate(self.trie_parent):
            depth[node] = depth[above] + 1 if above != NO_NODE else 1
        return depth

    def chronological(self) -> Iterator[Tuple[int, float]]:
        """``(record index, seconds)`` in the order the samples were taken (records in
        their stored order when the session has no timeline). Left-out records are
        included with their time: they still took time."""
        timeline = self._session.timeline
        if timeline is not None:
            return iter(timeline)
        return enumerate(self._session.frame_table.record_seconds)

    def total_wall(self) -> float:
        return sum(self.wall)

    def total_cpu(self) -> float:
        return sum(self.cpu)

    # -- building -------------------------------------------------------------------------

    def _entry(self, info: FrameInfo) -> "_Entry":
        """What a frame of the table stands for here."""
        function, path, first_line = info.function, info.file, max(info.first_line, 0)
        identifier = info.identifier
        own = own_code.kind_of(function, path, first_line, self._context.profiler_code, lambda: info.class_name)
        frame = -1
        ident: Optional[int] = None
        if info.kind == FrameKind.THREAD:
            # a thread root: the thread's name, its ident where the first line would be
            kind = _THREAD
            function = function or MAIN_THREAD_NAME
            ident = info.first_line if info.first_line >= 0 else None
        elif own is not None:
            kind = _PROFILER_MACHINERY if own == own_code.MACHINERY else _PROFILER_WRAPPER
        else:
            kind = _ORDINARY
            frame = self._frame(info)
        return _Entry(identifier, function, path, info.line, frame, kind, ident)

    def _frame(self, info: FrameInfo) -> int:
        key = (info.identifier, info.class_name)
        index = self._frame_index.get(key)
        if index is None:
            function, path, class_name = info.function, info.file, info.class_name
            name = function
            if class_name and not function.startswith(class_name + "."):
                name = f"{class_name}.{function}"
            builtin = info.kind == FrameKind.C_FUNCTION
            application = bool(path) and not self._context.is_library_code(path, function)
            short = self._context.shorten_path(path) if path else path
            index = self._frame_index[key] = len(self.frames)
            self.frames.append(StackFrame(name, path, short, max(info.first_line, 0), application, builtin))
        return index


class _CleanedStacks:
    """Each stack node of a frame table cleaned as the formats need it: without the
    frames above where the profiler started (all those of the start stack but its
    last), the command line's launcher frames after them, and the profile decorator's
    wrappers; a stack in the profiler's own start or stop is left out (empty).

    The cleaned stacks make a trie of their own (``parent``, ``frame``, ``line``). Each
    (node, frames skipped) is worked out once, from its parent's result, so a record
    costs a step per frame only where no other record shares its callers."""

    # where a stack is in its cleaning: the first frame kept is next; in the command
    # line's launcher frames; a ``<string>`` frame held until the next one tells whether
    # it is the launcher's; past them (the program's frames); the profiler's own work
    FIRST, LAUNCHER, PENDING, BODY, LEFT_OUT = range(5)

    def __init__(self, table: FrameTable, entries: List["_Entry"], start: Sequence[str]) -> None:
        self._table = table
        self._entries = entries
        self.parent = array("i")
        self.frame = array("i")
        self.line: List[int] = []  # any size: a session file may hold any line number
        self._index: Dict[Tuple[int, int, int], int] = {}
        count = len(table.node_parent)
        # per node: its depth below the thread root, and how many frames from the top
        # match the start stack
        self._depth = array("i", [0]) * count
        self._matched = array("i", [0]) * count
        self._thread: List[_Entry] = [_NO_THREAD_ROOT] * count
        for node in range(count):
            parent = table.node_parent[node]
            entry = entries[table.node_frame[node]]
            if parent == NO_NODE:
                if entry.kind == _THREAD:
                    self._thread[node] = entry
                    continue  # depth 0: the thread root is no frame of the stack
                depth, matched = 0, 0
            else:
                self._thread[node] = self._thread[parent]
                depth, matched = self._depth[parent], self._matched[parent]
            if matched == depth and depth < len(start) and entry.identifier == start[depth]:
                matched += 1
            self._depth[node] = depth + 1
            self._matched[node] = matched
        # (node, skipped) -> (state, pending frame, cleaned node)
        self._memo: Dict[Tuple[int, int], Tuple[int, int, int]] = {}

    def of(self, node: int) -> Tuple["_Entry", int]:
        """The record at ``node``: its thread root and its cleaned node (-1: empty)."""
        if node == NO_NODE:
            return _NO_THREAD_ROOT, NO_NODE
        skipped = max(self._matched[node] - 1, 0)
        state, pending, cleaned = self._state(node, skipped)
        if state == self.PENDING:  # the stack ends at the <string>: it is the program's
            state, cleaned = self._body(pending, cleaned)
        return self._thread[node], NO_NODE if state == self.LEFT_OUT else cleaned

    def _state(self, node: int, skipped: int) -> Tuple[int, int, int]:
        path: List[int] = []  # the nodes below the nearest one already worked out
        found = None
        while node != NO_NODE and self._depth[node] > skipped:
            found = self._memo.get((node, skipped))
            if found is not None:
                break
            path.append(node)
            node = self._table.node_parent[node]
        state, pending, cleaned = found if found is not None else (self.FIRST, NO_NODE, NO_NODE)
        for node in reversed(path):
            state, pending, cleaned = self._step(state, pending, cleaned, self._table.node_frame[node])
            self._memo[(node, skipped)] = (state, pending, cleaned)
        return state, pending, cleaned

    def _step(self, state: int, pending: int, cleaned: int, frame: int) -> Tuple[int, int, int]:
        entry = self._entries[frame]
        if state == self.LEFT_OUT:
            return state, NO_NODE, cleaned
        if state == self.FIRST:
            if entry.kind == _ORDINARY and is_path_in_package(entry.path, "pyinstrument"):
                return self.LAUNCHER, NO_NODE, cleaned
        elif state == self.LAUNCHER or state == self.PENDING:
            if _is_launcher_file(entry.path):
                return self.LAUNCHER, NO_NODE, cleaned
            if state == self.LAUNCHER and entry.path.startswith("<string>"):
                return self.PENDING, frame, cleaned
            if state == self.PENDING:
                state, cleaned = self._body(pending, cleaned)
                if state == self.LEFT_OUT:
                    return state, NO_NODE, cleaned
        state, cleaned = self._body(frame, cleaned)
        return state, NO_NODE, cleaned

    def _body(self, frame: int, cleaned: int) -> Tuple[int, int]:
        entry = self._entries[frame]
        if entry.kind == _PROFILER_MACHINERY:
            return self.LEFT_OUT, NO_NODE  # the profiler starting or stopping
        if entry.kind == _PROFILER_WRAPPER:
            return self.BODY, cleaned  # a wrapper of the profile decorator: keep what it called
        key = (cleaned, entry.frame, entry.line)
        node = self._index.get(key)
        if node is None:
            node = self._index[key] = len(self.parent)
            self.parent.append(cleaned)
            self.frame.append(entry.frame)
            self.line.append(entry.line)
        return self.BODY, node


# kinds of frame strings
_ORDINARY, _THREAD, _PROFILER_MACHINERY, _PROFILER_WRAPPER = range(4)


class _Entry(NamedTuple):
    identifier: str
    name: str  # the function, or the thread's name
    path: str
    line: int  # the line being executed, 0 when unknown
    frame: int  # index into SampleStacks.frames; -1 for threads and profiler frames
    kind: int
    ident: Optional[int] = None  # a thread root's thread ident (None when unknown)


# the "thread" of records without a thread root (the profiler followed one thread)
_NO_THREAD_ROOT = _Entry(MAIN_THREAD_NAME, MAIN_THREAD_NAME, THREAD_FILE, 0, -1, _THREAD)


def _is_launcher_file(path: str) -> bool:
    return (
        path.startswith("<frozen runpy")
        or re.search(r"(^|[/\\])runpy\.py$", path) is not None
        or is_path_in_package(path, "pyinstrument")
    )
