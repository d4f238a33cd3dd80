"""The profile as a speedscope file (``.speedscope.json``), for https://www.speedscope.app.

speedscope's file format (https://www.speedscope.app/file-format-schema.json) holds a
table of frames shared by all profiles (``shared.frames``: name, file, line) and a
list of profiles. We write one *evented* profile per profiled thread: a list of
``{"type": "O"|"C", "frame": index, "at": seconds}`` events, a frame opening when a
function is entered and closing when it returns, properly nested. speedscope's
"Time Order" view draws them as they happened; "Left Heavy" and "Sandwich" aggregate
them.

The events follow the session's timeline, so the order is the real one: consecutive
samples that share the start of their stack are one ongoing call of each shared
function. Each thread's clock counts the time of its own timeline entries from the
session's start (the engine records the time before a thread existed, and samples it
could not read, as entries without a sample). The stacks are those of the other stack formats
(:class:`~pyinstrument.renderers.stacks.SampleStacks`): everything the program ran,
library code included, without the profiler's own frames.

An hour of samples at 1 ms holds tens of millions of calls, far more than a flame
chart can show or a browser can load, so calls shorter than ``filter_threshold``
(a fraction of the thread's profile, default 1/100,000: 36 ms of an hour, 0.6 ms of a
minute) are not written: their time shows as time in their caller. ``show_all`` or a
threshold of 0 keeps every call. With ``cpu_profiles``, each thread also gets a
profile named "<thread> (CPU time)" whose clock advances by CPU time instead of wall
time, in the same order: waiting disappears and computing stands out.

Strings are written as ASCII JSON (``\\uXXXX`` escapes), so every name survives
exactly, including a lone surrogate standing for bytes of a file path that are not
UTF-8.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import time
from array import array
from itertools import chain, compress
from operator import mul, xor
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pyinstrument.frame import gc_paused
from pyinstrument.frame_table import NO_NODE, FrameInfo, FrameKind
from pyinstrument.renderers.base import FrameRenderer
from pyinstrument.renderers.stacks import MAIN_THREAD_NAME, SampleStacks
from pyinstrument.session import Session

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
#: calls shorter than this fraction of their thread's profile are left out (drawn as
#: time in their caller), unless processor_options["filter_threshold"] says otherwise
DEFAULT_FILTER_THRESHOLD = 1e-5

_encode_string = json.encoder.encode_basestring_ascii


def _seconds(value: float) -> str:
    # to the microsecond: samples are milliseconds apart, and rounding keeps the order
    return repr(round(value, 6))


#: a call written to the file: (open time, depth, close time, frame index)
Call = Tuple[float, int, float, int]


# The file's records under upstream's names, for code that reads the files with them (the
# renderer writes the JSON directly).
@dataclasses.dataclass(frozen=True)
class SpeedscopeFrame:
    """An entry of ``shared.frames``."""

    name: Optional[str]
    file: Optional[str]
    line: Optional[int]


class SpeedscopeEventType(enum.Enum):
    OPEN = "O"
    CLOSE = "C"


@dataclasses.dataclass
class SpeedscopeEvent:
    """An event of an evented profile: a frame (an index of ``shared.frames``) opening
    or closing ``at`` seconds into the profile."""

    type: SpeedscopeEventType
    at: float
    frame: int


class SpeedscopeRenderer(FrameRenderer):
    """The profile as a speedscope file: one evented, chronological profile per thread.

    :param show_all: write every call, however short (same as a ``filter_threshold``
        of 0).
    :param timeline: accepted for compatibility; the file is always chronological
        (speedscope aggregates it itself in its "Left Heavy" view).
    :param processor_options: ``filter_threshold``: calls shorter than this fraction
        of their thread's profile are drawn as time in their caller (default
        ``1e-5``). The other processor options do not apply: nothing is folded.
    :param cpu_profiles: add, for each thread, a profile whose clock is CPU time
        (when the session recorded CPU time).
    """

    output_file_extension = "speedscope.json"
    output_is_binary = False

    def __init__(
        self,
        show_all: bool = False,
        timeline: bool = False,
        processor_options: Optional[Dict[str, Any]] = None,
        cpu_profiles: bool = False,
    ) -> None:
        super().__init__(show_all=show_all, timeline=timeline, processor_options=processor_options)
        threshold = self.processor_options.get("filter_threshold")
        if show_all:
            threshold = 0.0
        elif threshold is None:
            threshold = DEFAULT_FILTER_THRESHOLD
        threshold = float(threshold)
        if not threshold >= 0:
            raise ValueError(f"filter_threshold must be a fraction >= 0, not {threshold!r}")
        self.filter_threshold = threshold
        self.cpu_profiles = cpu_profiles

    def render(self, session: Session) -> str:
        with gc_paused():
            return self._render(session)

    def _render(self, session: Session) -> str:
        stacks = SampleStacks(session)
        lanes = _Lanes(session, stacks)
        # upstream's name, which tools and scripts written for it show and look for
        when = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(session.start_time))
        name = f"CPU profile for '{session.target_description}' at {when}"
        order = lanes.display_order()
        # one thread: its profile has the file's name, as upstream's only profile does
        names = [name] if len(order) == 1 else [lanes.names[lane] for lane in order]
        profiles: List[str] = []
        for lane, lane_name in zip(order, names):
            profiles.append(self._profile(lane_name, lanes, lane, cpu=False))
        if self.cpu_profiles and stacks.has_cpu:
            for lane, lane_name in zip(order, names):
                profiles.append(self._profile(f"{lane_name} (CPU time)", lanes, lane, cpu=True))
        if not profiles:
            # nothing recorded: one empty profile, so that speedscope still opens the file
            profiles.append(_profile_json(name, 0.0, 0.0, []))

        frames = ",".join(_frame_json(f.name, f.file_path, f.line_no) for f in stacks.frames)
        return "".join(
            [
                '{"$schema": ',
                _encode_string(SCHEMA_URL),
                ', "exporter": ',
                _encode_string(f"pyinstrument {_version()}"),
                ', "name": ',
                _encode_string(name),
                # upstream writes null, which speedscope's schema refuses (a number)
                ', "activeProfileIndex": 0',
                ', "shared": {"frames": [',
                frames,
                "]}",
                ', "profiles": [',
                ",".join(profiles),
                "]}\n",
            ]
        )

    def _profile(self, name: str, lanes: "_Lanes", lane: int, cpu: bool) -> str:
        # all lanes are swept on the first call (they share the split of the timeline)
        start, end, calls = lanes.calls(self.filter_threshold, cpu)[lane]
        return _profile_json(name, start, end, _events(calls))


class _Lanes:
    """The session's samples split by thread, and the sweep that turns each thread's
    chronological samples into calls.

    A lane is one thread: the records whose stack starts with the same thread root
    (its full identifier, so two threads with the same name stay apart), or the
    records without a thread root.
    """

    def __init__(self, session: Session, stacks: SampleStacks):
        self._session = session
        self._frame_count = len(stacks.frames)
        # a lane per thread root (the frame a stack starts with, when it is a thread's)
        table = session.frame_table
        root_frame = table.root_frames()
        lane_of_key: Dict[Optional[FrameInfo], int] = {}
        self.lane_of: List[int] = []
        keys: List[Optional[FrameInfo]] = []
        names: List[str] = []
        for i, node in enumerate(table.record_node):
            key = None
            if node != NO_NODE:
                first = table.frames[root_frame[node]]
                if first.kind == FrameKind.THREAD:
                    key = FrameInfo(first.function, first.file, first.first_line, first.kind)
            lane = lane_of_key.get(key)
            if lane is None:
                lane = lane_of_key[key] = len(keys)
                keys.append(key)
                names.append(stacks.threads[stacks.thread_of[i]])
            self.lane_of.append(lane)
        # a name shared by several threads gets the thread id, to tell them apart
        shared = {name for name in names if names.count(name) > 1}
        self.names = [
            f"{name} ({key.first_line})" if key is not None and name in shared else name
            for key, name in zip(keys, names)
        ]

        # each distinct cleaned stack once: records differing only by current lines share one
        unique_index: Dict[Tuple[int, ...], int] = {}
        self.unique_stacks: List[Tuple[int, ...]] = []
        self.unique_of: List[int] = []
        for cleaned in stacks.stacks:
            u = unique_index.get(cleaned)
            if u is None:
                u = unique_index[cleaned] = len(self.unique_stacks)
                self.unique_stacks.append(cleaned)
            self.unique_of.append(u)
        self.lengths = [len(unique) for unique in self.unique_stacks]

        # Each distinct stack packed, root first, into an integer with a fixed number of
        # bits per frame and padded on the right to the deepest stack's length: the
        # highest bit where two of them differ tells how many leading frames they share.
        # Packed through an array, in C: stacks can be thousands of frames deep.
        typecode = "H" if len(stacks.frames) < 0xFFFF else "I"
        self.frame_bits = 8 * array(typecode).itemsize  # frame i is packed as i + 1
        depth = max(self.lengths, default=0)
        self.packed_bits = depth * self.frame_bits
        self.packed: List[int] = []
        for unique in self.unique_stacks:
            # little-endian: the last item is the most significant, so the leaf first,
            # after the padding
            items = array(typecode, bytes(array(typecode).itemsize * (depth - len(unique))))
            items.extend(map((1).__add__, reversed(unique)))
            if sys.byteorder == "big":
                items.byteswap()
            self.packed.append(int.from_bytes(items.tobytes(), "little"))

        self._split: Optional[List[Tuple[Any, List[int], List[int]]]] = None
        self._cache: Dict[Tuple[float, bool], List[Tuple[float, float, List[Call]]]] = {}

    def calls(self, threshold: float, cpu: bool) -> List[Tuple[float, float, List[Call]]]:
        """Per lane: (start, end, calls kept), times on the lane's wall or CPU clock."""
        key = (threshold, cpu)
        result = self._cache.get(key)
        if result is None:
            result = self._cache[key] = self._sweep_lanes(threshold, cpu)
        return result

    def display_order(self) -> List[int]:
        """The lanes in the order of their profiles: the main thread first (speedscope
        opens the first profile), then as they were first sampled."""
        lanes = self._lane_stacks()
        records, _ = self._timeline()
        firsts = [_first_selected(selector, len(records)) for selector, _, _ in lanes]
        return sorted(
            range(len(lanes)),
            key=lambda lane: (self.names[lane] != MAIN_THREAD_NAME, firsts[lane] < 0, firsts[lane]),
        )

    def _timeline(self) -> Tuple[Sequence[int], Sequence[float]]:
        """The timeline as (record indices, seconds); the records in their stored order
        when the session has none."""
        timeline = self._session.timeline
        if timeline is not None:
            return timeline.records, timeline.seconds
        walls = self._session.frame_table.record_seconds
        return range(len(walls)), walls

    def _selectors(self, records: Sequence[int]) -> List[Any]:
        """Per lane, what picks its entries out of the timeline (see ``_pick``): None
        when there is only one lane, else one byte per entry, 1 for the lane's own
        (so ``itertools.compress`` does the picking in C), or, with 256 lanes or more,
        the positions of the lane's entries."""
        lane_count = len(self.names)
        if lane_count == 1:
            return [None]
        if lane_count < 256:
            lane_bytes = bytes(map(self.lane_of.__getitem__, records))
            selectors = []
            for lane in range(lane_count):
                table = bytearray(256)
                table[lane] = 1
                selectors.append(lane_bytes.translate(table))
            return selectors
        positions: List[List[int]] = [[] for _ in range(lane_count)]
        for position, lane in enumerate(map(self.lane_of.__getitem__, records)):
            positions[lane].append(position)
        return positions

    def _lane_stacks(self) -> List[Tuple[Any, List[int], List[int]]]:
        """Per lane: its selector, and the unique stack and packed value of each of its
        entries (shared by the wall and CPU sweeps)."""
        if self._split is None:
            records, _ = self._timeline()
            uniques = list(map(self.unique_of.__getitem__, records))
            split = []
            for selector in self._selectors(records):
                lane_uniques = _pick(uniques, selector)
                split.append((selector, lane_uniques, list(map(self.packed.__getitem__, lane_uniques))))
            self._split = split
        return self._split

    def _sweep_lanes(self, threshold: float, cpu: bool) -> List[Tuple[float, float, List[Call]]]:
        records, timeline_seconds = self._timeline()
        lanes = self._lane_stacks()
        session = self._session
        if cpu:
            walls = session.frame_table.record_seconds
            cpu_times = session.frame_table.record_cpu or [0.0] * len(walls)
            scale = [c / wall if wall > 0 else 0.0 for wall, c in zip(walls, cpu_times)]
            seconds = list(map(mul, timeline_seconds, map(scale.__getitem__, records)))
        else:
            seconds = list(timeline_seconds)

        # every thread's clock starts at the session's start: the engine fills the time
        # before a thread existed (and any other time without its samples) with gaps
        starts = [0.0] * len(lanes)

        result = []
        for (selector, uniques, values), start in zip(lanes, starts):
            lane_seconds = _pick(seconds, selector)
            result.append(self._sweep(uniques, values, lane_seconds, start, threshold))
        return result

    def _sweep(
        self, uniques: List[int], values: List[int], seconds: List[float], start: float, threshold: float
    ) -> Tuple[float, float, List[Call]]:
        """One thread's calls, from its entries in time order (unique stack, packed
        stack, seconds).

        When an entry's stack differs from the previous one, the frames below the part
        they share close and the entry's deeper frames open, at the thread's clock. Open
        times grow with depth in steps, kept as a stack of (depth, time) pairs: the
        frames from that depth down (re)opened at that time. So a sample costs a few
        operations, however many frames change, unless a call long enough to keep
        closes (rare: a call is kept only when it lasts ``minimum``).
        """
        unique_stacks = self.unique_stacks
        lengths = self.lengths
        packed_bits = self.packed_bits
        frame_bits = self.frame_bits
        # calls shorter than this are not kept; never calls of no length at all
        minimum = max(threshold * sum(seconds), 1e-9)
        # bit length of (this stack XOR the previous one): 0 when nothing changed
        changes = map(int.bit_length, map(xor, values, chain((0,), values)))

        now = start
        current = 0  # the unique stack open now
        open_count = 0
        # the step function of open times: frames from depth step_depths[i] on were
        # opened at step_times[i]; the first step (depth 0) never goes away
        step_depths = [0]
        step_times = [start]
        calls: List[Call] = []
        for u, change, t in zip(uniques, changes, seconds):
            if change:
                common = (packed_bits - change) // frame_bits
                j = -1
                while step_depths[j] > common:
                    j -= 1
                if common < open_count and step_times[j] <= now - minimum:
                    _keep(calls, unique_stacks[current], common, open_count, step_depths, step_times, j, now, minimum)
                if j < -1:
                    del step_depths[j + 1 :]
                    del step_times[j + 1 :]
                if step_depths[-1] == common:
                    step_times[-1] = now
                else:
                    step_depths.append(common)
                    step_times.append(now)
                current = u
                open_count = lengths[u]
            now += t
        if open_count:
            first_step = -len(step_depths)
            _keep(calls, unique_stacks[current], 0, open_count, step_depths, step_times, first_step, now, minimum)
        # open time, then depth: callers before their callees
        calls.sort()
        return start, now, calls


def _pick(entries: List[Any], selector: Any) -> List[Any]:
    """The entries of one lane (see ``_Lanes._selectors``)."""
    if selector is None:
        return entries
    if isinstance(selector, bytes):
        return list(compress(entries, selector))
    return list(map(entries.__getitem__, selector))


def _first_selected(selector: Any, length: int) -> int:
    """Position in the timeline of a lane's first entry, -1 for none."""
    if selector is None:
        return 0 if length else -1
    if isinstance(selector, bytes):
        return selector.find(1)
    return selector[0] if selector else -1


def _keep(
    calls: List[Call],
    stack: Tuple[int, ...],
    first_depth: int,
    end_depth: int,
    step_depths: List[int],
    step_times: List[float],
    step: int,
    now: float,
    minimum: float,
) -> None:
    """Add to ``calls`` the frames of ``stack`` from ``first_depth`` to ``end_depth``
    that close at ``now`` after being open at least ``minimum``. ``step`` indexes (from
    the end) the step that holds the open time of ``first_depth``."""
    limit = now - minimum
    for depth in range(first_depth, end_depth):
        while step < -1 and step_depths[step + 1] <= depth:
            step += 1
        opened_at = step_times[step]
        if opened_at > limit:
            break  # deeper frames opened later still
        calls.append((opened_at, depth, now, stack[depth]))


def _events(calls: Sequence[Call]) -> List[str]:
    """The O/C events of calls sorted by (open time, depth)."""
    events: List[str] = []
    append = events.append
    open_calls: List[Tuple[int, float, int]] = []  # (depth, close time, frame)
    for opened_at, depth, closed_at, frame in calls:
        while open_calls and open_calls[-1][0] >= depth:
            _, end, closing = open_calls.pop()
            append('{"type":"C","frame":%d,"at":%s}' % (closing, _seconds(end)))
        append('{"type":"O","frame":%d,"at":%s}' % (frame, _seconds(opened_at)))
        open_calls.append((depth, closed_at, frame))
    while open_calls:
        _, end, closing = open_calls.pop()
        append('{"type":"C","frame":%d,"at":%s}' % (closing, _seconds(end)))
    return events


def _profile_json(name: str, start: float, end: float, events: List[str]) -> str:
    return "".join(
        [
            '{"type": "evented", "name": ',
            _encode_string(name),
            ', "unit": "seconds", "startValue": ',
            _seconds(start),
            ', "endValue": ',
            _seconds(end),
            ', "events": [',
            ",".join(events),
            "]}",
        ]
    )


def _frame_json(name: str, file_path: str, line: int) -> str:
    text = '{"name": ' + _encode_string(name)
    if file_path:
        text += ', "file": ' + _encode_string(file_path)
    if line:
        text += ', "line": ' + str(int(line))
    return text + "}"


def _version() -> str:
    try:
        from pyinstrument import __version__
    except ImportError:  # pragma: no cover
        return "?"
    return str(__version__)
