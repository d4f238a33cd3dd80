"""Chrome's Trace Event Format: the session as a timeline, read by Perfetto and chrome://tracing.

The file is the JSON object form of the Trace Event Format
(``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``), which the
Perfetto UI (https://ui.perfetto.dev), ``chrome://tracing`` and other trace viewers
open. Each thread is a track; each call is a complete event (``"ph": "X"``) spanning
the time its frame stayed on the stack, with the function as its name, the kind of
code as its category (``application``, ``library`` or ``built-in``) and, in its
args, the file, the function's first line and its CPU time in ms. Metadata events
name the process (the session's description) and the threads. ``otherData`` holds
the session's start time, duration and interval, and says how the file was made.

How the events are placed. The session's timeline is the engine's per-thread
timelines one after another (``profiler.py`` appends thread after thread): per
thread, ``(record, seconds)`` entries in the order the samples were taken, where
``seconds`` is the wall time those consecutive samples of that record stood for (the
time since the sampler's previous tick, summed over a run of identical samples). So
a thread's entries, added up, give its own clock, from the session's start: the
engine records the time before a thread existed, and samples it could not read, as
entries of a record holding no code (time passes, no call is open). A call goes on
while consecutive samples of its thread have its function at the same depth under
the same callers, each caller still on the same line (a caller that moved to another
line has made a new call); at the first difference the deeper calls end and the new
ones begin. A run of samples the
profiler left out (its own start/stop) ends every call and still advances the clock.

CPU time per event is estimated: the session keeps CPU time per distinct stack, not
per sample, so each sample counts the CPU share (CPU / wall) of its stack.

Long sessions: an hour sampled at 1 ms holds millions of calls that last one sample,
more than a viewer can open. At most ``max_events`` calls are written, the longest:
callers last at least as long as their callees, so no call is ever written without
its callers. ``otherData.min_duration_ms`` is the shortest call kept and
``otherData.calls_left_out`` how many were not.

When the session has no timeline (an engine timeline that ran out of room, or a
session saved by upstream pyinstrument), the records are laid out in their stored
order: for upstream sessions that is the order of the samples; for ours it is one
block per distinct stack, so the result shows the totals, not the order of events.
``otherData.timeline`` says which.

Times (``ts``) are whole microseconds since the Unix epoch, from the session's start
time: viewers show them relative to the first event, and some (Chrome's DevTools)
ignore a timestamp of 0. Every boundary is rounded from the same clock, so callees
stay exactly inside their callers. Text is
JSON-escaped with only ASCII in the output: names with quotes, markup, NUL, control
characters or emoji come back exactly from any JSON parser; a lone surrogate (a file
name that is not valid UTF-8) is written as its ``\\udcXX`` escape, which Python's
``json`` reads back exactly and stricter readers show as U+FFFD.
"""

from __future__ import annotations

import json
import math
import sys
import time
from array import array
from bisect import bisect_left
from typing import Any, Dict, List, Optional, Tuple

from pyinstrument.frame import GIL_WAIT_FRAME_IDENTIFIER as GIL_WAIT
from pyinstrument.frame import gc_paused
from pyinstrument.frame_table import NO_NODE
from pyinstrument.renderers.base import Renderer
from pyinstrument.renderers.stacks import MAIN_THREAD_NAME, SampleStacks
from pyinstrument.session import Session

_PROCESS_ID = 1
#: default cap on the number of call events: about 100 MB of JSON, which the viewers
#: still open in reasonable time
DEFAULT_MAX_EVENTS = 500_000

# Calls that ended: thread id, start and end (seconds), the record whose stack
# holds the frames, their first and end depth, CPU µs. Calls that began with the same
# sample are kept together until some of them end, so a sample costs about the same
# whatever the depth of its stack.
_Calls = Tuple[int, float, float, int, int, int, float]


class ChromeTraceRenderer(Renderer):
    """The session as a Chrome trace (``.trace.json``) for Perfetto or chrome://tracing.

    :param min_duration_ms: calls shorter than this are left out (their time stays
        inside their caller's event); 0 keeps every call of 1 µs or more.
    :param max_events: write at most this many call events, leaving out the shortest
        calls when there are more; 0: no limit.
    """

    output_file_extension = "trace.json"
    output_is_binary = False

    def __init__(self, min_duration_ms: float = 0.0, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        super().__init__()
        if not min_duration_ms >= 0:
            raise ValueError("min_duration_ms must be a number of milliseconds, 0 or more")
        if max_events < 0:
            raise ValueError("max_events must be 0 (no limit) or more")
        self.min_duration_ms = float(min_duration_ms)
        self.max_events = int(max_events)

    def render(self, session: Session) -> str:
        with gc_paused():  # millions of short-lived tuples: the collector's scans would dominate
            return self._render(session)

    def _render(self, session: Session) -> str:
        stacks = SampleStacks(session)
        thread_names, calls, shortest_us, left_out = self._replay(session, stacks)
        other_data: Dict[str, Any] = {
            "target_description": session.target_description,
            "start_time": session.start_time,
            "start_time_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(session.start_time)),
            "duration_s": session.duration,
            "sample_count": session.sample_count,
            "interval_s": session.min_interval,
            "cpu_time_s": session.cpu_time,
            "timeline": "recorded" if session.timeline is not None else "not recorded: records in stored order",
            "time_axis": "each thread's clock starts at the session's start",
            "min_duration_ms": shortest_us / 1000,
            "calls_left_out": left_out,
        }
        events = _metadata_events(session, thread_names)
        events += _call_events(stacks, calls, round(session.start_time * 1e6))
        return (
            '{"displayTimeUnit":"ms","otherData":'
            + json.dumps(other_data, separators=(",", ":"))
            + ',"traceEvents":[\n'
            + ",\n".join(events)
            + "\n]}\n"
        )

    def _replay(self, session: Session, stacks: SampleStacks) -> Tuple[List[str], List[_Calls], int, int]:
        """Every thread's calls, from the timeline: (thread names, by tid - 1; the calls
        kept, in the order to write them; the shortest duration kept, µs; how many
        calls were left out)."""
        paths, depths, bits_per_depth = _call_paths(stacks)

        # per thread: [tid, clock (s), CPU clock (µs), previous record, its path, its
        # depth, and its open segments as three lists: first depths, start times,
        # (CPU clock at start, record)]. A segment is calls that began with the same
        # sample; it reaches from its first depth to the next segment's, the top one to
        # the previous record's depth.
        state_by_root: Dict[int, List[Any]] = {}  # by thread (its index in stacks.threads)
        names_by_root: Dict[int, str] = {}
        record_info = []  # per record: (thread state, path, depth, CPU µs per wall second)
        for i, (root, wall) in enumerate(zip(stacks.thread_of, session.frame_table.record_seconds)):
            state = state_by_root.get(root)
            if state is None:
                names_by_root[root] = stacks.threads[root]
                state = state_by_root[root] = [0, 0.0, 0.0, -1, 0, 0, [], [], []]
            # the record's average CPU share stands for each of its samples
            record_info.append((state, paths[i], depths[i], stacks.cpu[i] * 1e6 / wall if wall > 0 else 0.0))
        # tids: the main thread first (the top track), the others as they come
        roots = sorted(names_by_root, key=lambda root: names_by_root[root] != MAIN_THREAD_NAME)
        thread_names = [names_by_root[root] for root in roots]
        for tid, root in enumerate(roots, 1):
            state_by_root[root][0] = tid

        # calls are kept when they last at least ``shortest_us`` µs; the loop first
        # compares in seconds, a little leniently, and the exact test comes at the end
        shortest_us = max(1, math.ceil(self.min_duration_ms * 1000 - 1e-9))
        shortest = shortest_us * (1 - 1e-9) / 1e6
        budget = self.max_events
        prune_at = 2 * budget if budget else sys.maxsize
        kept: List[_Calls] = []
        # the calls in ``kept`` that are still above the bar, by duration (whole µs)
        counts_by_duration: Dict[int, int] = {}
        kept_count = 0  # calls above the bar
        opened = 0  # calls that began

        def keep_calls(calls: _Calls) -> None:
            nonlocal shortest_us, shortest, kept, kept_count
            kept.append(calls)
            duration = int((calls[2] - calls[1]) * 1e6)
            counts_by_duration[duration] = counts_by_duration.get(duration, 0) + calls[5] - calls[4]
            kept_count += calls[5] - calls[4]
            if kept_count > prune_at:
                # raise the bar now: calls below it will not be written whatever comes
                shortest_us = max(shortest_us, _shortest_kept(counts_by_duration, budget))
                shortest = shortest_us * (1 - 1e-9) / 1e6
                for duration in [d for d in counts_by_duration if d < shortest_us]:
                    del counts_by_duration[duration]
                kept_count = sum(counts_by_duration.values())
                if len(kept) > prune_at:
                    kept = [c for c in kept if (c[2] - c[1]) * 1e6 >= shortest_us]

        current: Optional[List[Any]] = None
        tid, clock, cpu, previous, previous_path, previous_depth = 0, 0.0, 0.0, -1, 0, 0
        firsts: List[int] = []
        starts: List[float] = []
        segments: List[Tuple[float, int]] = []
        for record, seconds in stacks.chronological():
            state, path, depth, cpu_rate = record_info[record]
            if state is not current:
                if current is not None:
                    current[1:6] = clock, cpu, previous, previous_path, previous_depth
                current = state
                tid, clock, cpu, previous, previous_path, previous_depth, firsts, starts, segments = state
            if record != previous:
                difference = previous_path ^ path
                # calls kept: those above the shallowest depth whose call differs
                keep = ((difference & -difference).bit_length() - 1) // bits_per_depth if difference else depth
                if keep < previous_depth:
                    ending = bisect_left(firsts, keep)  # the segments from here end whole
                    top = len(firsts)
                    if ending and clock - starts[ending - 1] >= shortest:
                        # the segment below: its calls from ``keep`` on end
                        end = firsts[ending] if ending < top else previous_depth
                        if end > keep:
                            start_cpu, opened_by = segments[ending - 1]
                            keep_calls((tid, starts[ending - 1], clock, opened_by, keep, end, cpu - start_cpu))
                    # segments start later the higher they are: stop at the first too short
                    index = ending
                    while index < top and clock - starts[index] >= shortest:
                        start_cpu, opened_by = segments[index]
                        first = firsts[index]
                        index += 1
                        end = firsts[index] if index < top else previous_depth
                        keep_calls((tid, starts[index - 1], clock, opened_by, first, end, cpu - start_cpu))
                    del firsts[ending:]
                    del starts[ending:]
                    del segments[ending:]
                if depth > keep:
                    firsts.append(keep)
                    starts.append(clock)
                    segments.append((cpu, record))
                    opened += depth - keep
                previous, previous_path, previous_depth = record, path, depth
            clock += seconds
            cpu += seconds * cpu_rate
        if current is not None:
            current[1:6] = clock, cpu, previous, previous_path, previous_depth

        # the calls still going on when each thread's timeline ends
        for tid, clock, cpu, _, _, end, firsts, starts, segments in state_by_root.values():
            for first, start, (start_cpu, opened_by) in zip(reversed(firsts), reversed(starts), reversed(segments)):
                if clock - start >= shortest:
                    keep_calls((tid, start, clock, opened_by, first, end, cpu - start_cpu))
                end = first

        if budget and kept_count > budget:
            shortest_us = max(shortest_us, _shortest_kept(counts_by_duration, budget))
        kept = [c for c in kept if (c[2] - c[1]) * 1e6 >= shortest_us]
        kept_count = sum(c[5] - c[4] for c in kept)
        # each thread in time order, callers before callees (same start: shallower first)
        kept.sort(key=_writing_order)
        return thread_names, kept, shortest_us, opened - kept_count


def _call_paths(stacks: SampleStacks) -> Tuple[List[int], List[int], int]:
    """Per record, its calls as one integer and its depth; and the bits each depth
    takes in those integers.

    A call is a function called from a given place (the same callers, each on the
    same line): a node of the stacks' trie less its own line. From one sample to the
    next a call goes on exactly while its id stays. The ids (plus one, so that a
    missing frame is 0) sit side by side in an integer, depth 0 in the lowest bits:
    the lowest set bit of two paths' XOR is at the first depth where the calls differ,
    found in C instead of a Python loop.
    """
    parents, frames = stacks.trie_parent, stacks.trie_frame
    call_id: Dict[Tuple[int, int], int] = {}
    call_of = array("i", [0]) * len(parents)
    for node, (parent, frame) in enumerate(zip(parents, frames)):
        call_of[node] = call_id.setdefault((parent, frame), len(call_id) + 1)
    bits = 16 if len(call_id) < 0xFFFF else 32
    depth = stacks.depth()
    path_of: List[int] = []  # parents come before their children
    for node, parent in enumerate(parents):
        above = path_of[parent] if parent != NO_NODE else 0
        path_of.append(above | call_of[node] << (bits * (depth[node] - 1)))
    paths = [path_of[n] if n != NO_NODE else 0 for n in stacks.node_of]
    depths = [depth[n] if n != NO_NODE else 0 for n in stacks.node_of]
    return paths, depths, bits


def _writing_order(calls: _Calls) -> Tuple[int, float, int]:
    return calls[0], calls[1], calls[4]


def _shortest_kept(counts_by_duration: Dict[int, int], budget: int) -> int:
    """The shortest duration (whole µs) that keeps at most ``budget`` calls, from the
    number of calls of each duration: every call at least that long is kept."""
    count = 0
    shortest = max(counts_by_duration, default=0) + 1
    for duration in sorted(counts_by_duration, reverse=True):
        count += counts_by_duration[duration]
        if count > budget:
            break
        shortest = duration
    return shortest


def _metadata_events(session: Session, thread_names: List[str]) -> List[str]:
    dumps = json.dumps
    events = [
        f'{{"ph":"M","pid":{_PROCESS_ID},"name":"process_name",'
        f'"args":{{"name":{dumps(session.target_description or "python")}}}}}'
    ]
    for tid, name in enumerate(thread_names, 1):
        events.append(
            f'{{"ph":"M","pid":{_PROCESS_ID},"tid":{tid},"name":"thread_name","args":{{"name":{dumps(name)}}}}}'
        )
        events.append(
            f'{{"ph":"M","pid":{_PROCESS_ID},"tid":{tid},"name":"thread_sort_index","args":{{"sort_index":{tid}}}}}'
        )
    return events


def _call_events(stacks: SampleStacks, calls: List[_Calls], start_us: int) -> List[str]:
    dumps = json.dumps
    # per frame: its event's JSON after the times, up to where the CPU time goes
    frame_texts = []
    for frame in stacks.frames:
        category = (
            "gil-wait"
            if frame.name == GIL_WAIT
            else "built-in"
            if frame.is_builtin
            else "application"
            if frame.is_application_code
            else "library"
        )
        frame_texts.append(
            f'"name":{dumps(frame.name)},"cat":"{category}",'
            f'"args":{{"file":{dumps(frame.file_path)},"line":{frame.line_no}'
        )
    has_cpu = stacks.has_cpu
    all_stacks = stacks.stacks
    events: List[str] = []
    append = events.append
    for tid, start, end, record, first, end_depth, cpu in calls:
        # rounded half up from the same clock: callees stay inside their callers
        ts = int(start * 1e6 + 0.5)
        head = f'{{"ph":"X","pid":{_PROCESS_ID},"tid":{tid},"ts":{start_us + ts},"dur":{int(end * 1e6 + 0.5) - ts},'
        tail = f',"cpu_ms":{cpu / 1000:.3f}}}}}' if has_cpu else "}}"
        frames = all_stacks[record]
        for depth in range(first, end_depth):
            append(head + frame_texts[frames[depth]] + tail)
    return events
