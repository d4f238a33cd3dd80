"""The Firefox Profiler format, checked the way the profiler reads it.

The Firefox Profiler's loader is not packaged for use outside its web app (there is no
npm package of it), so these tests cannot hand the file to it. Instead every profile is
checked against the processed format, version 57, as the profiler's type definitions
and format changelog describe it (``validate``): the keys and columns each table must
have (including those the upgraders from 57 to the current version read), table
lengths that agree, every index in range, stack prefixes that form a tree in which a
prefix comes before its stacks, categories with a grey default and valid
subcategories, a string array covering every string index, sample times that never
go back. Then the tests read the samples back the way the profiler's views do (times
as running sums of ``timeDeltas``, call tree time as the sum of ``weight``, CPU use as
``threadCPUDelta`` over the time since the previous sample) and compare them with the
session.
"""

from __future__ import annotations

import json
import random
from array import array
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import pytest

from helpers import run_pyinstrument
from sessions import (
    APP,
    HOSTILE_NAMES,
    HOSTILE_PATHS,
    PREFIX,
    THREADED_PROGRAM,
    frame_string,
    hostile_session,
    make_session,
    simple_session,
    thread_root,
    threaded_session,
)

from pyinstrument.renderers import FirefoxRenderer
from pyinstrument.session import Session, Timeline

CATEGORY_COLORS = {
    "transparent", "purple", "green", "orange", "yellow", "lightblue", "blue", "brown",
    "magenta", "red", "lightred", "darkgrey", "grey",
}  # fmt: skip

# columns each table has in processed format 57 (the upgraders to later versions read them)
THREAD_KEYS = {
    "processType", "processStartupTime", "processShutdownTime", "registerTime", "unregisterTime",
    "pausedRanges", "name", "isMainThread", "pid", "tid", "samples", "markers", "stackTable",
    "frameTable", "funcTable", "resourceTable", "nativeSymbols",
}  # fmt: skip
TABLE_COLUMNS = {
    "stackTable": {"frame", "prefix"},
    "frameTable": {"address", "inlineDepth", "category", "subcategory", "func", "nativeSymbol",
                   "innerWindowID", "line", "column"},
    "funcTable": {"name", "isJS", "relevantForJS", "resource", "fileName", "lineNumber", "columnNumber"},
    "resourceTable": {"lib", "name", "host", "type"},
    "nativeSymbols": {"libIndex", "address", "name", "functionSize"},
    "markers": {"data", "name", "startTime", "endTime", "phase", "category"},
}  # fmt: skip


def render(session: Session) -> Dict[str, Any]:
    text = FirefoxRenderer().render(session)
    assert isinstance(text, str) and text.isascii()  # every name escaped: survives any reader
    profile = json.loads(text)
    validate(profile)
    return profile


def is_index(value: Any, length: int) -> bool:
    return type(value) is int and 0 <= value < length


def validate(profile: Dict[str, Any]) -> None:
    """Everything the profiler needs of a processed profile of version 57."""
    meta = profile["meta"]
    assert meta["preprocessedProfileVersion"] == 57
    assert type(meta["version"]) is int
    assert meta["interval"] > 0 and isinstance(meta["startTime"], (int, float))
    assert isinstance(meta["markerSchema"], list) and isinstance(meta["product"], str)
    categories = meta["categories"]
    assert any(c["color"] == "grey" for c in categories)  # the default category
    for category in categories:
        assert category["color"] in CATEGORY_COLORS
        assert category["subcategories"] and all(isinstance(s, str) for s in category["subcategories"])
    if "sampleUnits" in meta:
        assert meta["sampleUnits"] == {"time": "ms", "eventDelay": "ms", "threadCPUDelta": "µs"}
    assert profile["libs"] == []
    strings = profile["shared"]["stringArray"]
    assert all(isinstance(s, str) for s in strings)

    threads = profile["threads"]
    assert threads
    assert all(is_index(i, len(threads)) for i in meta["initialVisibleThreads"] + meta["initialSelectedThreads"])
    assert meta["profilingStartTime"] == 0
    for thread in threads:
        assert THREAD_KEYS <= set(thread)
        assert isinstance(thread["name"], str) and isinstance(thread["pid"], str)
        assert isinstance(thread["isMainThread"], bool) and isinstance(thread["tid"], (int, str))
        for key, columns in TABLE_COLUMNS.items():
            table = thread[key]
            assert set(table) == columns | {"length"}, key
            assert all(len(table[c]) == table["length"] for c in columns), key
        assert thread["markers"]["length"] == 0 and thread["nativeSymbols"]["length"] == 0

        stacks, frames = thread["stackTable"], thread["frameTable"]
        funcs, resources = thread["funcTable"], thread["resourceTable"]
        for i, (frame, prefix) in enumerate(zip(stacks["frame"], stacks["prefix"])):
            assert is_index(frame, frames["length"])
            assert prefix is None or (type(prefix) is int and 0 <= prefix < i)  # a tree, prefixes first
        assert len(set(zip(stacks["frame"], stacks["prefix"]))) == stacks["length"]  # stored once
        for i in range(frames["length"]):
            assert is_index(frames["func"][i], funcs["length"])
            category = frames["category"][i]
            assert is_index(category, len(categories))
            assert is_index(frames["subcategory"][i], len(categories[category]["subcategories"]))
            line = frames["line"][i]
            assert line is None or (type(line) is int and line > 0)
            assert frames["address"][i] == -1 and frames["inlineDepth"][i] == 0
            assert frames["nativeSymbol"][i] is None and frames["column"][i] is None
        assert len(set(zip(frames["func"], frames["line"]))) == frames["length"]
        for i in range(funcs["length"]):
            assert is_index(funcs["name"][i], len(strings))
            assert funcs["fileName"][i] is None or is_index(funcs["fileName"][i], len(strings))
            assert funcs["resource"][i] == -1 or is_index(funcs["resource"][i], resources["length"])
            assert isinstance(funcs["isJS"][i], bool) and funcs["relevantForJS"][i] is False
            line = funcs["lineNumber"][i]
            assert line is None or (type(line) is int and line > 0)
        assert all(is_index(name, len(strings)) for name in resources["name"])
        assert all(t == 1 for t in resources["type"])

        samples = thread["samples"]
        n = samples["length"]
        assert samples["weightType"] == "tracing-ms"
        assert ("time" in samples) != ("timeDeltas" in samples)  # one or the other
        times = sample_times(samples)
        assert len(samples["stack"]) == len(times) == len(samples["weight"]) == n
        assert all(is_index(s, stacks["length"]) for s in samples["stack"])
        assert all(w >= 0 for w in samples["weight"]) and (not times or times[0] >= 0)
        # time never goes back, and a sample ends before the next one starts
        assert all(a + w <= b + 1e-6 for a, b, w in zip(times, times[1:], samples["weight"]))
        if "threadCPUDelta" in samples:
            assert "sampleUnits" in meta
            assert len(samples["threadCPUDelta"]) == n
            assert all(type(c) is int and c >= 0 for c in samples["threadCPUDelta"])


def sample_times(samples: Dict[str, Any]) -> List[float]:
    """Sample times in ms since meta.startTime: ``time``, or running sums of ``timeDeltas``."""
    if "time" in samples:
        return list(samples["time"])
    times, time = [], 0.0
    for delta in samples["timeDeltas"]:
        time += delta
        times.append(time)
    return times


@dataclass
class Sample:
    time: float  # ms since meta.startTime
    weight: float  # ms
    functions: Tuple[str, ...]  # root first
    cpu_delta: Optional[int]  # µs since the previous sample


def thread_named(profile: Dict[str, Any], name: str) -> Dict[str, Any]:
    (thread,) = [t for t in profile["threads"] if t["name"] == name]
    return thread


def read_samples(profile: Dict[str, Any], thread: Dict[str, Any]) -> List[Sample]:
    """The samples as the profiler's views see them."""
    strings = profile["shared"]["stringArray"]
    stacks, frames, funcs = thread["stackTable"], thread["frameTable"], thread["funcTable"]
    samples = thread["samples"]
    result = []
    cpu = samples.get("threadCPUDelta")
    for i, (stack, time, weight) in enumerate(zip(samples["stack"], sample_times(samples), samples["weight"])):
        names = []
        while stack is not None:
            names.append(strings[funcs["name"][frames["func"][stacks["frame"][stack]]]])
            stack = stacks["prefix"][stack]
        result.append(Sample(time, weight, tuple(reversed(names)), cpu[i] if cpu else None))
    return result


def names_of(stack: List[str]) -> Tuple[str, ...]:
    """Function names of a session record's stack (thread roots left out)."""
    names = []
    for frame in stack:
        rest = frame.split("\x01")[0].rpartition("\x00")[0]
        function, _, path = rest.rpartition("\x00")
        if path != "<thread>":
            names.append(function)
    return tuple(names)


def func_index(profile: Dict[str, Any], thread: Dict[str, Any], name: str) -> int:
    strings = profile["shared"]["stringArray"]
    (index,) = [i for i, n in enumerate(thread["funcTable"]["name"]) if strings[n] == name]
    return index


# -- the test sessions ------------------------------------------------------------------


def test_test_sessions_are_valid_profiles():
    for session in [simple_session(), threaded_session(), hostile_session(), make_session([], cpu=[])]:
        render(session)


def test_call_tree_times_are_the_sessions_wall_times():
    session = simple_session()
    profile = render(session)
    samples = read_samples(profile, thread_named(profile, "MainThread"))
    by_stack: Dict[Tuple[str, ...], float] = {}
    for sample in samples:
        by_stack[sample.functions] = by_stack.get(sample.functions, 0.0) + sample.weight
    expected = {names_of(stack): seconds * 1000 for stack, seconds in session.frame_records}
    assert by_stack.keys() == expected.keys()
    for stack, ms in expected.items():
        assert by_stack[stack] == pytest.approx(ms, abs=0.002)
    # "main" runs the whole second: its running time in the call tree
    assert sum(s.weight for s in samples if "main" in s.functions) == pytest.approx(1000, abs=0.01)


def test_samples_follow_the_timeline_at_their_real_times():
    session = simple_session()
    profile = render(session)
    samples = read_samples(profile, thread_named(profile, "MainThread"))
    assert all(a.time < b.time for a, b in zip(samples, samples[1:]))

    # the timeline: slow 0.1 s, slow>sleep 0.4 s, slow 0.2 s, fast 0.1 s, compile 0.15 s, main 0.05 s
    runs, start = [], 0.0
    for record, seconds in session.timeline:
        runs.append((round(start * 1000, 3), names_of(session.frame_records[record][0])))
        start += seconds
    # each run starts with a sample at its start time
    starts = {round(s.time, 3): s.functions for s in samples}
    for time, functions in runs:
        assert starts[time] == functions
    # and nothing else happens between runs: the samples' stacks change only at run starts
    changes = [(round(b.time, 3), b.functions) for a, b in zip(samples, samples[1:]) if a.functions != b.functions]
    assert [(round(samples[0].time, 3), samples[0].functions)] + changes == runs
    assert samples[-1].time + samples[-1].weight == pytest.approx(1000)
    meta = profile["meta"]
    assert meta["startTime"] == session.start_time * 1000
    assert meta["interval"] == 1 and meta["profilingEndTime"] == pytest.approx(1000)


def test_a_long_run_gets_a_sample_one_interval_before_its_end():
    # the activity graph splits the time between two samples half-way: a lone sample
    # at the start of the 400 ms sleep would give half of it to the next stack
    profile = render(simple_session())
    samples = read_samples(profile, thread_named(profile, "MainThread"))
    sleeping = [(round(s.time, 3), round(s.weight, 3)) for s in samples if s.functions[-1] == "sleep"]
    assert sleeping == [(100, 399), (499, 1)]


def test_each_thread_is_a_track_on_its_own_clock():
    session = threaded_session()
    session.thread_names = {"1": "MainThread", "2": "worker"}
    profile = render(session)
    threads = profile["threads"]
    assert [t["name"] for t in threads] == ["MainThread", "worker"]
    assert [t["isMainThread"] for t in threads] == [True, False]
    assert [t["tid"] for t in threads] == [1, 2]
    assert len({t["pid"] for t in threads}) == 1  # one process, its threads below it
    assert profile["meta"]["initialVisibleThreads"] == [0, 1]
    assert profile["meta"]["initialSelectedThreads"] == [0]

    main = read_samples(profile, threads[0])
    worker = read_samples(profile, threads[1])
    # each thread on its own clock from the session's start: the worker, started at
    # 0.5 s, has no sample before then
    assert [(round(s.time), s.functions[-1]) for s in main if s.weight > 1] == [(0, "work"), (500, "Thread.join")]
    assert [(round(s.time), s.functions) for s in worker][0] == (500, ("Thread.run", "work"))
    assert sum(s.weight for s in main) == pytest.approx(700)
    assert sum(s.weight for s in worker) == pytest.approx(600)


def test_cpu_use_per_sample():
    session = simple_session()  # CPU: all of slow, fast, compile and main; none of sleep
    profile = render(session)
    assert profile["meta"]["sampleUnits"]["threadCPUDelta"] == "µs"
    samples = read_samples(profile, thread_named(profile, "MainThread"))
    # the profiler's CPU ratio: CPU time since the previous sample over the time since
    for previous, sample in zip(samples, samples[1:]):
        ratio = sample.cpu_delta / ((sample.time - previous.time) * 1000)
        assert ratio == pytest.approx(0.0 if previous.functions[-1] == "sleep" else 1.0)
    total_us = sum(s.cpu_delta for s in samples[1:]) + samples[-1].weight * 1000  # last: main, all CPU
    assert total_us == pytest.approx(sum(session.frame_records_cpu) * 1e6)


def test_functions_with_their_files_lines_and_categories():
    profile = render(simple_session())
    thread = thread_named(profile, "MainThread")
    strings = profile["shared"]["stringArray"]
    funcs, frames = thread["funcTable"], thread["frameTable"]
    categories = profile["meta"]["categories"]

    def func(name: str) -> Dict[str, Any]:
        i = func_index(profile, thread, name)
        frame = frames["func"].index(i)
        file_index = funcs["fileName"][i]
        resource = funcs["resource"][i]
        return {
            "file": strings[file_index] if file_index is not None else None,
            "first line": funcs["lineNumber"][i],
            "line": frames["line"][frame],
            "category": categories[frames["category"][frame]]["name"],
            "resource": strings[thread["resourceTable"]["name"][resource]] if resource >= 0 else None,
        }

    assert func("slow") == {
        "file": f"{APP}/demo.py", "first line": 10, "line": 12, "category": "Python: application", "resource": "demo",
    }  # fmt: skip
    assert func("Worker.fast")["first line"] == 20 and func("Worker.fast")["line"] == 21
    assert func("compile") == {
        "file": f"{PREFIX}/re/__init__.py", "first line": 225, "line": 227, "category": "Python: library",
        "resource": "re",
    }  # fmt: skip
    assert func("sleep") == {
        "file": None, "first line": None, "line": None, "category": "Built-in (C)", "resource": None,
    }  # fmt: skip
    colors = {c["name"]: c["color"] for c in categories}
    assert colors == {
        "Other": "grey", "Python: application": "yellow", "Python: library": "blue", "Built-in (C)": "orange",
        "Waiting for the GIL": "red",
    }  # fmt: skip
    assert categories[0]["color"] == "grey"  # the default: the first grey one


def test_hostile_names_and_paths_survive():
    profile = render(hostile_session())
    thread = thread_named(profile, "MainThread")
    strings = profile["shared"]["stringArray"]
    names = {strings[i] for i in thread["funcTable"]["name"]}
    files = {strings[i] for i in thread["funcTable"]["fileName"] if i is not None}
    assert set(HOSTILE_NAMES) <= names  # NUL, newlines, markup, emoji: exactly
    assert files == set(HOSTILE_PATHS)  # a lone surrogate too
    samples = read_samples(profile, thread)
    assert samples[-1].functions == ("<module>", *HOSTILE_NAMES)


# -- sessions of other shapes -----------------------------------------------------------


def test_a_session_without_timeline_or_cpu_times():
    # what upstream pyinstrument saves: records only
    records = simple_session().frame_records
    session = make_session(records)
    assert session.timeline is None and session.frame_records_cpu is None
    profile = render(session)
    assert "sampleUnits" not in profile["meta"]
    thread = thread_named(profile, "MainThread")
    assert "threadCPUDelta" not in thread["samples"]
    samples = read_samples(profile, thread)
    # the records one after the other, in their order
    changes = [s.functions for a, s in zip([None, *samples], samples) if a is None or a.functions != s.functions]
    assert changes == [names_of(stack) for stack, _ in records]
    assert sum(s.weight for s in samples) == pytest.approx(1000)


PROFILER_PY = "/venv/lib/python3.12/site-packages/pyinstrument/profiler.py"


def test_the_profilers_own_work_has_no_sample_but_its_time_passes():
    module = frame_string("<module>", f"{APP}/demo.py", 1, current=5)
    work = frame_string("work", f"{APP}/demo.py", 3, current=4)
    start = frame_string("Profiler.start", PROFILER_PY, 280, current=290)
    stop = frame_string("Profiler.stop", PROFILER_PY, 320, current=330)
    records = [([module, start], 0.002), ([module, work], 0.010), ([module, stop], 0.003), ([module], 0.005)]
    timeline = [(0, 0.002), (1, 0.004), (2, 0.003), (3, 0.005), (1, 0.006)]
    profile = render(make_session(records, cpu=[0.002, 0.010, 0.003, 0.0], timeline=timeline))
    thread = thread_named(profile, "MainThread")
    samples = read_samples(profile, thread)
    assert all("Profiler" not in " ".join(s.functions) for s in samples)
    runs = [(round(s.time, 3), s.functions[-1], round(s.weight, 3)) for s in samples]
    # work starts after the 2 ms of start(); <module> after the 3 ms of stop()
    assert runs == [
        (2, "work", 3), (5, "work", 1), (9, "<module>", 4), (13, "<module>", 1), (14, "work", 5), (19, "work", 1),
    ]  # fmt: skip
    # stop()'s CPU time is counted in the CPU time up to the next sample
    cpu = [s.cpu_delta for s in samples]
    assert cpu[2] == 1000 + 3000


def test_a_restarted_profiler_continues_the_threads_clock():
    first, second = simple_session(), simple_session()
    second.start_time += 5
    combined = Session.combine(first, second)
    profile = render(combined)
    samples = read_samples(profile, thread_named(profile, "MainThread"))
    assert sum(s.weight for s in samples) == pytest.approx(2000)
    starts = [round(s.time, 3) for s in samples if s.functions[-1] == "sleep" and s.weight > 1]
    assert starts == [100, 1100]


def test_an_empty_session_still_opens():
    profile = render(make_session([]))
    (thread,) = profile["threads"]
    assert thread["name"] == "MainThread" and thread["samples"]["length"] == 0


def test_many_samples_keep_their_totals():
    """A seeded random session (three threads, short and long runs, left-out records,
    an interleaved timeline): each thread's samples add up to its wall time, its CPU
    time matches, and its clock never goes back."""
    rng = random.Random(7)
    roots = [thread_root("MainThread", 1), thread_root("pool-1", 2), thread_root("pool-2", 3)]
    functions = [frame_string(f"f{i}", f"{APP}/m{i % 4}.py", 10 + i, current=11 + i) for i in range(12)]
    start = frame_string("Profiler.start", PROFILER_PY, 280, current=290)
    stacks = []
    for root in roots:
        for _ in range(40):
            stack = [root] + rng.sample(functions, rng.randint(1, 6))
            if rng.random() < 0.05:
                stack.append(start)  # the profiler's own work: left out
            stacks.append(stack)
    order, seconds = array("I"), array("f")
    for _ in range(20000):
        order.append(rng.randrange(len(stacks)))
        seconds.append(rng.choice([0.001, 0.00102, 0.0009, 0.0031, 0.25]) if rng.random() < 0.3 else 0.001)
    wall = [0.0] * len(stacks)
    for record, t in zip(order, seconds):
        wall[record] += t
    cpu = [t / 2 for t in wall]  # every stack uses the CPU half of the time
    session = make_session(list(zip(stacks, wall)), cpu=cpu, timeline=Timeline.from_arrays(order, seconds))
    profile = render(session)

    for root, thread in zip(roots, profile["threads"]):
        samples = read_samples(profile, thread)
        entries = [(r, t) for r, t in session.timeline if stacks[r][0] == root]
        kept_ms = sum(t for r, t in entries if start not in stacks[r]) * 1000
        assert sum(s.weight for s in samples) == pytest.approx(kept_ms, abs=0.001 * len(entries))
        assert samples[-1].time + samples[-1].weight <= sum(t for _, t in entries) * 1000 + 0.001 * len(entries)
        assert all(a.time <= b.time for a, b in zip(samples, samples[1:]))
        # CPU time from the first sample to the end of the last: half that time
        cpu_us = sum(s.cpu_delta for s in samples[1:]) + samples[-1].weight * 500
        span_ms = samples[-1].time + samples[-1].weight - samples[0].time
        assert cpu_us == pytest.approx(span_ms * 500, abs=len(samples))


# -- a real profile -----------------------------------------------------------------------


def test_a_real_program_through_the_command_line(tmp_path):
    (tmp_path / "busy.py").write_text(THREADED_PROGRAM)
    run_pyinstrument("--all-threads", "-r", "firefox", "-o", "out.firefox.json", "busy.py", cwd=tmp_path)
    profile = json.loads((tmp_path / "out.firefox.json").read_text(encoding="ascii"))
    validate(profile)
    assert [t["name"] for t in profile["threads"]][0] == "MainThread"
    main = read_samples(profile, thread_named(profile, "MainThread"))
    assert any(s.functions[-2:] == ("main", "spin") for s in main)
    helper = read_samples(profile, thread_named(profile, "helper"))
    assert any(s.functions[-2:] == ("in_thread", "spin") for s in helper)
    assert any(name.endswith("busy.py") for name in profile["shared"]["stringArray"])
    assert "sampleUnits" in profile["meta"]
    assert all("threadCPUDelta" in t["samples"] for t in profile["threads"])
