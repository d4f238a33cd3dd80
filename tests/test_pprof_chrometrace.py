"""pprof profiles and Chrome traces, read back by the programs that consume them.

pprof: the gzipped ``profile.proto`` is parsed with the ``protobuf`` package against
the pprof messages (built here from a descriptor: no ``protoc``), then read the way
pprof does (leaf first locations, values per sample type, labels); when Go is
installed, ``go tool pprof`` itself reads the files (the first run builds pprof into
a cache under the temporary directory, which takes a minute or two, offline).

Chrome trace: parsed as JSON and checked the way Perfetto and chrome://tracing lay it
out (per thread, complete events that nest, in time). When Chrome DevTools' trace
engine (the Performance panel's parser, ``@paulirish/trace_engine`` on npm) is
installed in ``.cache/tools/trace_engine`` and Node is there, it reads the traces too:
it builds each thread's call tree and leaves out any event that does not nest.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from sessions import (
    APP,
    HOSTILE_NAMES,
    HOSTILE_PATHS,
    PREFIX,
    frame_string,
    hostile_session,
    make_session,
    simple_session,
    thread_root,
    threaded_session,
)

from pyinstrument import Profiler
from pyinstrument.renderers import ChromeTraceRenderer, PprofRenderer
from pyinstrument.session import Session, Timeline

NS = 1_000_000_000

try:
    import google.protobuf  # noqa: F401

    HAVE_PROTOBUF = True
except ImportError:
    HAVE_PROTOBUF = False


def random_session(seed: int = 7, threads: int = 3, entries: int = 4000, with_left_out: bool = True) -> Session:
    """Several threads running random walks over a small call graph, with a timeline
    (thread after thread, as the engine writes it), CPU time, and a record of the
    profiler's own work that renderers leave out."""
    rng = random.Random(seed)
    functions = [frame_string(f"f{i}", f"{APP}/mod{i % 4}.py", 10 * i + 1) for i in range(12)]
    records: List[Tuple[List[str], float]] = []
    cpu: List[float] = []
    record_of: Dict[Tuple[str, ...], int] = {}
    order_records, order_seconds = array("I"), array("f")
    for t in range(threads):
        root = thread_root("MainThread" if t == 0 else f"worker-{t}", 100 + t)
        base = [root, frame_string("<module>", f"{APP}/main.py", 1, current=5 + t)]
        for n in range(entries // threads):
            if with_left_out and t == 0 and n == entries // threads // 2:
                # the profiler's own work (as when it is started twice): its time
                # passes, its frames are not shown
                stop = base + [frame_string("Profiler.stop", "/venv/lib/site-packages/pyinstrument/profiler.py", 90)]
                records.append((stop, 0.004))
                cpu.append(0.004)
                order_records.append(len(records) - 1)
                order_seconds.append(0.004)
            depth = rng.randint(1, 6)
            stack = base + [
                # the current line varies a little, so callers move between calls
                f"{rng.choice(functions[: 4 + 2 * d])}\x01l{rng.randint(1, 2)}"
                for d in range(depth)
            ]
            key = tuple(stack)
            if key not in record_of:
                record_of[key] = len(records)
                records.append((stack, 0.0))
                cpu.append(0.0)
            index = record_of[key]
            seconds = rng.choice([0.001, 0.001, 0.002, 0.0035])
            stack_, wall = records[index]
            records[index] = (stack_, wall + seconds)
            cpu[index] += seconds * rng.random()
            order_records.append(index)
            order_seconds.append(seconds)
    timeline = Timeline.from_arrays(order_records, order_seconds)
    return make_session(records, cpu=cpu, timeline=timeline, description="Program: random.py")


def thread_name_of(stack: List[str]) -> str:
    if stack and "\x00<thread>\x00" in stack[0]:
        return stack[0].split("\x00")[0]
    return "MainThread"


def is_left_out(stack: List[str]) -> bool:
    return any("pyinstrument/profiler.py" in frame for frame in stack)


def sampled_seconds_by_thread(session: Session) -> Dict[str, float]:
    """Per thread, the time of its samples that the reports show (float32 as stored)."""
    totals: Dict[str, float] = {}
    assert session.timeline is not None
    for record, seconds in session.timeline:
        stack = session.frame_records[record][0]
        if not is_left_out(stack):
            name = thread_name_of(stack)
            totals[name] = totals.get(name, 0.0) + seconds
    return totals


# -- pprof: the messages of profile.proto, built in Python -------------------------------


def profile_message_class() -> Any:
    """The ``perftools.profiles.Profile`` class (proto3: its parser checks that every
    string is valid UTF-8)."""
    if not HAVE_PROTOBUF:
        pytest.skip("protobuf is not installed: pprof parsing checks skipped")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="profile.proto", package="perftools.profiles", syntax="proto3")
    I64, U64, BOOL, MSG = F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_BOOL, F.TYPE_MESSAGE
    STRING = F.TYPE_STRING

    def message(name: str, *fields: Tuple[str, int, int, bool, Optional[str]]) -> None:
        proto = file.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            field = proto.field.add(
                name=field_name, number=number, type=kind, label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
            )
            if type_name:
                field.type_name = ".perftools.profiles." + type_name

    message(
        "Profile",
        ("sample_type", 1, MSG, True, "ValueType"),
        ("sample", 2, MSG, True, "Sample"),
        ("mapping", 3, MSG, True, "Mapping"),
        ("location", 4, MSG, True, "Location"),
        ("function", 5, MSG, True, "Function"),
        ("string_table", 6, STRING, True, None),
        ("drop_frames", 7, I64, False, None),
        ("keep_frames", 8, I64, False, None),
        ("time_nanos", 9, I64, False, None),
        ("duration_nanos", 10, I64, False, None),
        ("period_type", 11, MSG, False, "ValueType"),
        ("period", 12, I64, False, None),
        ("comment", 13, I64, True, None),
        ("default_sample_type", 14, I64, False, None),
    )
    message("ValueType", ("type", 1, I64, False, None), ("unit", 2, I64, False, None))
    message(
        "Sample",
        ("location_id", 1, U64, True, None),
        ("value", 2, I64, True, None),
        ("label", 3, MSG, True, "Label"),
    )
    message(
        "Label",
        ("key", 1, I64, False, None),
        ("str", 2, I64, False, None),
        ("num", 3, I64, False, None),
        ("num_unit", 4, I64, False, None),
    )
    message(
        "Mapping",
        ("id", 1, U64, False, None),
        ("memory_start", 2, U64, False, None),
        ("memory_limit", 3, U64, False, None),
        ("file_offset", 4, U64, False, None),
        ("filename", 5, I64, False, None),
        ("build_id", 6, I64, False, None),
        ("has_functions", 7, BOOL, False, None),
        ("has_filenames", 8, BOOL, False, None),
        ("has_line_numbers", 9, BOOL, False, None),
        ("has_inline_frames", 10, BOOL, False, None),
    )
    message(
        "Location",
        ("id", 1, U64, False, None),
        ("mapping_id", 2, U64, False, None),
        ("address", 3, U64, False, None),
        ("line", 4, MSG, True, "Line"),
        ("is_folded", 5, BOOL, False, None),
    )
    message("Line", ("function_id", 1, U64, False, None), ("line", 2, I64, False, None))
    message(
        "Function",
        ("id", 1, U64, False, None),
        ("name", 2, I64, False, None),
        ("system_name", 3, I64, False, None),
        ("filename", 4, I64, False, None),
        ("start_line", 5, I64, False, None),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file.SerializeToString())
    descriptor = pool.FindMessageTypeByName("perftools.profiles.Profile")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf 4.22 and later
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # older protobuf 4


class Pprof:
    """A parsed profile, read the way pprof reads it."""

    def __init__(self, data: bytes):
        assert data[:2] == b"\x1f\x8b", "pprof files are gzipped"
        self.profile = profile_message_class()()
        self.profile.ParseFromString(gzip.decompress(data))
        table = list(self.profile.string_table)
        self.strings = table
        assert table[0] == ""
        self.functions = {f.id: f for f in self.profile.function}
        self.locations = {loc.id: loc for loc in self.profile.location}
        self.sample_types = [(table[t.type], table[t.unit]) for t in self.profile.sample_type]

    def frames(self, sample: Any) -> List[Tuple[str, str, int]]:
        """The sample's (function, file, line) entries, leaf first."""
        frames = []
        for location_id in sample.location_id:
            location = self.locations[location_id]
            assert len(location.line) == 1
            line = location.line[0]
            function = self.functions[line.function_id]
            frames.append((self.strings[function.name], self.strings[function.filename], line.line))
        return frames

    def values(self, sample: Any) -> Dict[str, int]:
        return {kind: value for (kind, _), value in zip(self.sample_types, sample.value)}

    def labels(self, sample: Any) -> Dict[str, Any]:
        return {
            self.strings[label.key]: self.strings[label.str] if label.str else label.num for label in sample.label
        }


def test_pprof_sample_types_period_and_times():
    session = simple_session()
    pprof = Pprof(PprofRenderer().render(session))
    profile = pprof.profile
    assert pprof.sample_types == [("wall", "nanoseconds"), ("cpu", "nanoseconds")]
    assert pprof.strings[profile.default_sample_type] == "wall"
    assert (pprof.strings[profile.period_type.type], pprof.strings[profile.period_type.unit]) == ("wall", "nanoseconds")
    assert profile.period == 1_000_000  # 1 ms
    assert profile.time_nanos == round(session.start_time * NS)
    assert profile.duration_nanos == round(session.duration * NS)
    assert [pprof.strings[i] for i in profile.comment] == ["Program: demo.py"]


def test_pprof_samples_hold_the_stacks_leaf_first_with_lines_and_times():
    session = simple_session()
    pprof = Pprof(PprofRenderer().render(session))
    by_leaf = {pprof.frames(s)[0][0]: s for s in pprof.profile.sample}
    assert set(by_leaf) == {"slow", "sleep", "Worker.fast", "compile", "main"}
    sleep = by_leaf["sleep"]
    assert pprof.frames(sleep) == [
        ("sleep", "<built-in>", 0),
        ("slow", f"{APP}/demo.py", 12),
        ("main", f"{APP}/demo.py", 33),
        ("<module>", f"{APP}/demo.py", 40),
    ]
    assert pprof.values(sleep) == {"wall": 400_000_000, "cpu": 0}
    assert pprof.values(by_leaf["slow"]) == {"wall": 300_000_000, "cpu": 300_000_000}
    assert pprof.labels(sleep) == {"thread": "MainThread"}
    functions = {pprof.strings[f.name]: f for f in pprof.profile.function}
    assert pprof.strings[functions["compile"].filename] == f"{PREFIX}/re/__init__.py"
    assert functions["compile"].start_line == 225
    assert functions["Worker.fast"].start_line == 20
    # pprof would cut "<...>" out of a name equal to its system name
    assert all(f.system_name != f.name for f in pprof.profile.function)


def test_pprof_one_location_per_line_or_per_function():
    # main calls slow from two lines
    main_at = [frame_string("main", f"{APP}/a.py", 1, current=line) for line in (3, 4)]
    slow = frame_string("slow", f"{APP}/a.py", 10, current=11)
    session = make_session([([main_at[0], slow], 0.1), ([main_at[1], slow], 0.2)], cpu=[0.1, 0.2])
    by_line = Pprof(PprofRenderer().render(session))
    assert sorted(frames[1] for frames in map(by_line.frames, by_line.profile.sample)) == [
        ("main", f"{APP}/a.py", 3),
        ("main", f"{APP}/a.py", 4),
    ]
    assert len(by_line.profile.location) == 3 and len(by_line.profile.function) == 2
    by_function = Pprof(PprofRenderer(include_lines=False).render(session))
    assert len(by_function.profile.location) == 2
    assert {frames[1] for frames in map(by_function.frames, by_function.profile.sample)} == {("main", f"{APP}/a.py", 1)}


def test_pprof_threads_are_labels_and_times_add_up():
    session = threaded_session()
    pprof = Pprof(PprofRenderer().render(session))
    wall: Dict[str, int] = {}
    cpu: Dict[str, int] = {}
    for sample in pprof.profile.sample:
        labels = pprof.labels(sample)
        assert labels["thread_id"] == {"MainThread": 1, "worker": 2}[labels["thread"]]
        wall[labels["thread"]] = wall.get(labels["thread"], 0) + pprof.values(sample)["wall"]
        cpu[labels["thread"]] = cpu.get(labels["thread"], 0) + pprof.values(sample)["cpu"]
        assert "<thread>" not in {file for _, file, _ in pprof.frames(sample)}
    assert wall == {"MainThread": 700_000_000, "worker": 600_000_000}
    assert cpu == {"MainThread": 500_000_000, "worker": 600_000_000}


def test_pprof_total_is_the_sessions_time():
    session = random_session()
    pprof = Pprof(PprofRenderer().render(session))
    shown = [(stack, wall) for stack, wall in session.frame_records if not is_left_out(stack)]
    total_wall = sum(pprof.values(s)["wall"] for s in pprof.profile.sample)
    assert abs(total_wall - sum(w for _, w in shown) * NS) <= len(shown)  # rounding: 1 ns per sample
    assert len(pprof.profile.sample) == len(shown)
    assert "Profiler.stop" not in {pprof.strings[f.name] for f in pprof.profile.function}


def test_pprof_without_cpu_time_has_only_wall():
    session = make_session([([frame_string("main", f"{APP}/a.py", 1)], 0.5)], cpu=None)
    pprof = Pprof(PprofRenderer().render(session))
    assert pprof.sample_types == [("wall", "nanoseconds")]
    assert [pprof.values(s) for s in pprof.profile.sample] == [{"wall": 500_000_000}]


def as_pprof_text(text: str) -> str:
    """What a name or path becomes in pprof: an undecodable byte of a file name is
    written as visible ``\\xNN`` text, so the file stays valid UTF-8."""
    return text.replace("\udce9", "\\xE9")


def test_pprof_hostile_names_come_back_intact():
    pprof = Pprof(PprofRenderer().render(hostile_session()))  # a strict UTF-8 parser accepts it
    assert {pprof.strings[f.name] for f in pprof.profile.function} == set(HOSTILE_NAMES) | {"<module>"}
    assert {pprof.strings[f.filename] for f in pprof.profile.function} == set(map(as_pprof_text, HOSTILE_PATHS))
    deepest = max(pprof.profile.sample, key=lambda s: len(s.location_id))
    assert [name for name, _, _ in pprof.frames(deepest)] == list(reversed(HOSTILE_NAMES)) + ["<module>"]


# -- pprof: go tool pprof --------------------------------------------------------------------

GO = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)


def go_tool_pprof(tmp_path: Path, data: bytes, *options: str) -> bytes:
    path = tmp_path / "profile.pb.gz"
    path.write_bytes(data)
    assert GO is not None
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        # kept between runs: the first one builds pprof (a minute or two)
        "GOCACHE": os.path.join(tempfile.gettempdir(), "pyinstrument-tests-go-cache"),
        "GOPATH": str(tmp_path / "gopath"),
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOTELEMETRY": "off",
    }
    result = subprocess.run(
        [GO, "tool", "pprof", *options, str(path)], env=env, capture_output=True, timeout=900, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    return result.stdout


def total_samples_seconds(report: str) -> float:
    """The total in pprof's report header ("Total samples = 1300ms" or "= 1.30s")."""
    match = re.search(r"Total samples = ([\d.]+)(ms|s)\b", report)
    assert match, report
    return float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)


@pytest.mark.skipif(GO is None, reason="Go is not installed: go tool pprof checks skipped")
def test_go_tool_pprof_reads_the_profile(tmp_path):
    data = PprofRenderer().render(threaded_session())
    raw = go_tool_pprof(tmp_path, data, "-raw").decode()
    assert "wall/nanoseconds[dflt] cpu/nanoseconds" in raw
    assert "thread:[worker]" in raw and "thread:[MainThread]" in raw
    for name in ("<module>", "work", "Thread.join", "Thread.run"):
        assert f" {name} " in raw, name
    top_wall = go_tool_pprof(tmp_path, data, "-top").decode()
    assert "Type: wall" in top_wall and total_samples_seconds(top_wall) == pytest.approx(1.3)
    top_cpu = go_tool_pprof(tmp_path, data, "-top", "-sample_index=cpu").decode()
    assert "Type: cpu" in top_cpu and total_samples_seconds(top_cpu) == pytest.approx(1.1)
    lines = go_tool_pprof(tmp_path, PprofRenderer().render(simple_session()), "-top", "-lines").decode()
    assert f"slow {APP}/demo.py:12" in lines


@pytest.mark.skipif(GO is None, reason="Go is not installed: go tool pprof checks skipped")
def test_go_tool_pprof_reads_hostile_names(tmp_path):
    raw = go_tool_pprof(tmp_path, PprofRenderer().render(hostile_session()), "-raw")
    for text in HOSTILE_NAMES + HOSTILE_PATHS:
        assert as_pprof_text(text).encode("utf-8") in raw, text


# -- Chrome trace ------------------------------------------------------------------------------


class Call:
    def __init__(self, event: Dict[str, Any], origin: int):
        self.event = event
        self.name: str = event["name"]
        self.start = event["ts"] - origin  # µs from the session's start
        self.end = self.start + event["dur"]
        self.children: List["Call"] = []

    def outline(self) -> Tuple[Any, ...]:
        """(name, start ms, end ms, children...) for comparing trees."""
        return (self.name, self.start / 1000, self.end / 1000, *[c.outline() for c in self.children])


class Trace:
    """A trace as a viewer lays it out: per thread, complete events nested by time."""

    def __init__(self, text: str, session: Session):
        assert text.isascii()  # escaped: writable whatever the file system's encoding
        self.data = json.loads(text)
        assert self.data["displayTimeUnit"] == "ms"
        events = self.data["traceEvents"]
        self.process_name = next(e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name")
        names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
        assert len(set(names.values())) == len(names)
        self.calls = [e for e in events if e["ph"] == "X"]
        assert {e["ph"] for e in events} <= {"M", "X"}
        origin = round(session.start_time * 1e6)
        self.threads: Dict[str, List[Call]] = {}
        for tid in sorted({e["tid"] for e in self.calls}):
            mine = sorted((e for e in self.calls if e["tid"] == tid), key=lambda e: (e["ts"], -e["dur"]))
            self.threads[names[tid]] = self._nest([Call(e, origin) for e in mine])

    @staticmethod
    def _nest(calls: List[Call]) -> List[Call]:
        """The roots; fails on a call that overlaps another without being inside it."""
        roots: List[Call] = []
        open_calls: List[Call] = []
        for call in calls:
            assert call.event["dur"] > 0 and isinstance(call.event["ts"], int), call.event
            while open_calls and open_calls[-1].end <= call.start:
                open_calls.pop()
            if open_calls:
                assert call.end <= open_calls[-1].end, f"{call.name} overlaps {open_calls[-1].name}"
                open_calls[-1].children.append(call)
            else:
                roots.append(call)
            open_calls.append(call)
        return roots

    def outline(self, thread: str = "MainThread") -> List[Tuple[Any, ...]]:
        return [root.outline() for root in self.threads[thread]]

    def all_calls(self) -> List[Call]:
        found: List[Call] = []
        pending = [c for roots in self.threads.values() for c in roots]
        while pending:
            call = pending.pop()
            found.append(call)
            pending.extend(call.children)
        return found


def render_trace(session: Session, **options: Any) -> Trace:
    return Trace(ChromeTraceRenderer(**options).render(session), session)


def test_trace_calls_follow_the_timeline():
    trace = render_trace(simple_session())
    assert trace.process_name == "Program: demo.py"
    # slow stays on the stack while sleep comes and goes: one call, not one per sample
    assert trace.outline() == [
        ("<module>", 0, 1000, ("main", 0, 1000,
            ("slow", 0, 700, ("sleep", 100, 500)),
            ("Worker.fast", 700, 800),
            ("compile", 800, 950),
        )),
    ]  # fmt: skip
    slow = next(c for c in trace.all_calls() if c.name == "slow")
    assert slow.event["cat"] == "application"
    assert slow.event["args"]["file"] == f"{APP}/demo.py" and slow.event["args"]["line"] == 10
    categories = {c.name: c.event["cat"] for c in trace.all_calls()}
    assert categories["compile"] == "library" and categories["sleep"] == "built-in"


def test_trace_cpu_time_per_call():
    cpu = {c.name: c.event["args"]["cpu_ms"] for c in render_trace(simple_session()).all_calls()}
    assert cpu == {"<module>": 600, "main": 600, "slow": 300, "sleep": 0, "Worker.fast": 100, "compile": 150}


def test_trace_threads_are_tracks_with_their_own_clock():
    trace = render_trace(threaded_session())
    assert set(trace.threads) == {"MainThread", "worker"}
    assert trace.outline("MainThread") == [
        ("<module>", 0, 700, ("work", 0, 500), ("Thread.join", 500, 700)),
    ]
    assert trace.outline("worker") == [("Thread.run", 500, 1100, ("work", 500, 1100))]  # started at 0.5 s


def test_trace_a_caller_on_another_line_has_made_a_new_call():
    main_at = [frame_string("main", f"{APP}/a.py", 1, current=line) for line in (3, 4)]
    slow_at = [frame_string("slow", f"{APP}/a.py", 10, current=line) for line in (11, 12)]
    records = [([main_at[0], slow_at[0]], 0.1), ([main_at[0], slow_at[1]], 0.2), ([main_at[1], slow_at[0]], 0.3)]
    session = make_session(records, cpu=[0.1, 0.2, 0.3], timeline=[(0, 0.1), (1, 0.2), (2, 0.3)])
    # slow moving from line 11 to 12 is the same call; main moving to line 4 called slow anew
    assert render_trace(session).outline() == [("main", 0, 600, ("slow", 0, 300), ("slow", 300, 600))]


def test_trace_times_add_up_per_thread():
    session = random_session()
    trace = render_trace(session, max_events=0)
    expected = sampled_seconds_by_thread(session)
    assert set(trace.threads) == set(expected) == {"MainThread", "worker-1", "worker-2"}
    entries = len(session.timeline or ())
    for thread, roots in trace.threads.items():
        total_us = sum(root.end - root.start for root in roots)
        assert abs(total_us - expected[thread] * 1e6) <= entries, thread  # rounding: 1 µs per entry at most
    assert trace.data["otherData"]["calls_left_out"] == 0


def test_trace_profiler_work_is_left_out_but_its_time_passes():
    session = random_session(threads=1, entries=40)
    trace = render_trace(session)
    assert "Profiler.stop" not in {c.name for c in trace.all_calls()}
    roots = trace.threads["MainThread"]
    # the left-out run sits between the thread's calls: a gap of its 4 ms
    assert roots[-1].end / 1000 == pytest.approx(sum(s for _, s in session.timeline or ()) * 1000, abs=0.01)
    gaps = [b.start - a.end for a, b in zip(roots, roots[1:])]
    assert max(gaps) == pytest.approx(4000, abs=2)


def test_trace_max_events_keeps_the_longest_calls():
    session = random_session()
    full = render_trace(session, max_events=0)
    limited = render_trace(session, max_events=50)
    other = limited.data["otherData"]
    shortest_us = other["min_duration_ms"] * 1000
    kept = {(c.event["tid"], c.start, c.end, c.name) for c in limited.all_calls()}
    every = {(c.event["tid"], c.start, c.end, c.name) for c in full.all_calls()}
    assert 0 < len(limited.calls) <= 50
    assert kept <= every
    assert other["calls_left_out"] == len(full.calls) - len(limited.calls)
    # (durations are compared before rounding to whole µs: 1 µs of slack)
    assert all(end - start >= shortest_us - 1 for _, start, end, _ in kept)
    assert all(call in kept for call in every if call[2] - call[1] > shortest_us + 1)


def test_trace_min_duration():
    trace = render_trace(simple_session(), min_duration_ms=150)
    assert {c.name for c in trace.all_calls()} == {"<module>", "main", "slow", "sleep", "compile"}
    assert trace.data["otherData"]["calls_left_out"] == 1


def test_trace_without_cpu_time_or_timeline():
    session = simple_session()
    session.frame_records_cpu = None
    session.timeline = None
    trace = render_trace(session)
    assert trace.data["otherData"]["timeline"].startswith("not recorded")
    assert all("cpu_ms" not in c.event["args"] for c in trace.all_calls())
    # records in their stored order: slow, then slow > sleep, ...
    assert trace.outline()[0][:3] == ("<module>", 0, 1000)
    assert trace.outline()[0][3][3] == ("slow", 0, 700, ("sleep", 300, 700))


def test_trace_hostile_names_come_back_intact():
    trace = render_trace(hostile_session())
    calls = trace.all_calls()
    assert {c.name for c in calls} == set(HOSTILE_NAMES) | {"<module>"}
    assert {c.event["args"]["file"] for c in calls} == set(HOSTILE_PATHS)
    chain = []
    call = trace.threads["MainThread"][0]
    while True:
        chain.append(call.name)
        if not call.children:
            break
        (call,) = call.children
    assert chain == ["<module>"] + HOSTILE_NAMES


def test_trace_and_pprof_of_a_real_session():
    def leaf(n: int) -> int:
        return sum(i * i for i in range(n))

    def caller() -> int:
        return leaf(3000) + leaf(3000)

    with Profiler(interval=0.0005) as profiler:
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:
            caller()
    session = profiler.last_session
    assert session is not None
    trace = render_trace(session, max_events=0)
    callers = [c for c in trace.all_calls() if c.name.endswith("caller")]
    assert callers and any(child.name.endswith("leaf") for c in callers for child in c.children)
    if HAVE_PROTOBUF:
        pprof = Pprof(PprofRenderer().render(session))
        stacks = [[name for name, _, _ in pprof.frames(s)] for s in pprof.profile.sample]
        # leaf first: leaf called by caller somewhere in a sample (inside leaf the thread is
        # mostly in sum() or the generator, below it)
        assert any(a.endswith("leaf") and b.endswith("caller") for s in stacks for a, b in zip(s, s[1:])), stacks


# -- Chrome trace: Chrome DevTools' trace engine -------------------------------------------

TRACE_ENGINE = Path(__file__).resolve().parent.parent / ".cache" / "tools" / "trace_engine"
TRACE_ENGINE_MODULE = TRACE_ENGINE / "node_modules" / "@paulirish" / "trace_engine" / "models" / "trace" / "trace.js"
NODE = shutil.which("node")

READ_WITH_TRACE_ENGINE = """
import fs from 'node:fs';
const Trace = await import(process.argv[2]);
// the engine expects a browser's DOMRect
globalThis.DOMRect ??= class {
  constructor(x = 0, y = 0, width = 0, height = 0) { Object.assign(this, {x, y, width, height}); }
};
const file = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const model = Trace.TraceModel.Model.createWithAllHandlers();
await model.parse(file.traceEvents);
const renderer = model.parsedTrace().data.Renderer;
const outline = node => [node.entry.name, node.entry.ts, node.entry.dur, ...[...node.children].map(outline)];
const threads = [];
for (const process of renderer.processes.values()) {
  for (const [tid, thread] of process.threads) {
    threads.push({tid, name: thread.name, entries: thread.entries.length, roots: [...thread.tree.roots].map(outline)});
  }
}
console.log(JSON.stringify(threads));
"""


@pytest.mark.skipif(
    NODE is None or not TRACE_ENGINE_MODULE.exists(),
    reason="Chrome DevTools' trace engine is not in .cache/tools/trace_engine (or no node): its checks skipped",
)
@pytest.mark.parametrize("make", [simple_session, threaded_session, hostile_session, random_session])
def test_devtools_trace_engine_reads_the_trace(tmp_path, make):
    session = make()
    text = ChromeTraceRenderer().render(session)
    ours = Trace(text, session)
    (tmp_path / "read.mjs").write_text(READ_WITH_TRACE_ENGINE)
    (tmp_path / "profile.trace.json").write_text(text)
    result = subprocess.run(
        [NODE, "read.mjs", TRACE_ENGINE_MODULE.as_uri(), "profile.trace.json"],
        cwd=tmp_path, capture_output=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    threads = json.loads(result.stdout)
    origin = round(session.start_time * 1e6)

    def outline(node: List[Any]) -> Tuple[Any, ...]:
        name, ts, dur, *children = node
        return (name, (ts - origin) / 1000, (ts - origin + dur) / 1000, *map(outline, children))

    assert {t["name"] for t in threads} == set(ours.threads)
    for thread in threads:
        # an event that did not nest would be missing from the engine's tree
        count = sum(1 for c in ours.all_calls() if c.event["tid"] == thread["tid"])
        assert thread["entries"] == count
        assert [outline(root) for root in thread["roots"]] == ours.outline(thread["name"])


def test_pprof_samples_of_a_phase_carry_it_as_a_label():
    from pyinstrument.session import Phases

    main, load, parse = (frame_string(name, f"{APP}/a.py", line) for name, line in (("main", 1), ("load", 5), ("parse", 9)))
    session = make_session([([main, load], 0.1), ([main, parse], 0.2), ([main], 0.05)])
    session.phases = Phases(["load", "parse"], [0.1, 0.2], [1, 2, 0])
    pprof = Pprof(PprofRenderer().render(session))
    phases = {pprof.frames(sample)[0][0]: pprof.labels(sample).get("phase") for sample in pprof.profile.sample}
    assert phases == {"load": "load", "parse": "parse", "main": None}
