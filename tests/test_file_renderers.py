"""The file formats read by other tools: JSON (upstream pyinstrument's), speedscope,
pstats (cProfile's) and .pyisession (the session itself).

Each file is handed to what reads it: ``json.loads``, the speedscope file-format
JSON schema of speedscope 1.25.0 (from its npm package), ``pstats.Stats`` and
``Session.load``, and what the reader finds is compared with the session: names,
times, callers, threads, the order things happened.
"""

from __future__ import annotations

import io
import json
import marshal
import os
import pstats
import random
import re
import shutil
import subprocess
import tarfile
from collections import defaultdict
from typing import Any, Dict, List, Tuple

import pytest

try:
    import jsonschema
except ImportError:  # a test dependency; the schema test says when it is missing
    jsonschema = None

from helpers import run_pyinstrument
from sessions import (
    APP,
    FAST,
    HOSTILE_NAMES,
    HOSTILE_PATHS,
    LIB,
    MAIN,
    PREFIX,
    RUN,
    SLEEP,
    SLOW,
    THREADED_PROGRAM,
    frame_string,
    hostile_session,
    make_session,
    simple_session,
    thread_root,
    threaded_session,
)

from pyinstrument.renderers import (
    ConsoleRenderer,
    JSONRenderer,
    PstatsRenderer,
    SessionRenderer,
    SpeedscopeRenderer,
)
from pyinstrument.session import Session, Timeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEEDSCOPE_VERSION = "1.25.0"
SPEEDSCOPE_CACHE = os.path.join(REPO, ".cache", "speedscope")
SCHEMA_IN_PACKAGE = "package/dist/release/file-format-schema.json"

ALL_SESSIONS = [simple_session, threaded_session, hostile_session]


# -- sessions made here -------------------------------------------------------------------


def empty_session() -> Session:
    return make_session([], cpu=[], timeline=[])


def deep_session(depth: int = 3000) -> Session:
    """A recursion far deeper than Python's recursion limit."""
    recurse = [frame_string("recurse", f"{APP}/deep.py", 3, current=4)] * depth
    return make_session([([MAIN] + recurse, 0.5), ([MAIN] + recurse[:10], 0.25)], timeline=[(0, 0.5), (1, 0.25)])


A = frame_string("a", f"{APP}/rec.py", 1, current=2)
B = frame_string("b", f"{APP}/rec.py", 5, current=6)


def recursive_session() -> Session:
    """<module> > a > b > a > b: a and b each appear twice on one stack."""
    return make_session(
        [([MAIN, A, B, A, B], 0.4), ([MAIN, A], 0.1), ([MAIN, A, B], 0.2), ([MAIN, A, B, A], 0.3)],
        timeline=[(1, 0.1), (2, 0.2), (3, 0.3), (0, 0.4)],
    )


def library_session() -> Session:
    """Application code calling into a library three frames deep."""
    lib = [frame_string(f"step{i}", f"{PREFIX}/site-packages/lib/m{i}.py", 10 * i, current=10 * i + 1)
           for i in range(3)]  # fmt: skip
    return make_session([([MAIN, RUN] + lib, 0.8), ([MAIN, RUN], 0.2)], timeline=[(0, 0.8), (1, 0.2)])


def random_session(seed: int) -> Session:
    """Three threads running random stacks (with recursion, idle records and repeats)
    in a random chronological order."""
    rng = random.Random(seed)
    functions = [frame_string(f"f{i}", f"{APP}/mod{i % 3}.py", 10 * i, current=10 * i + rng.randint(1, 5))
                 for i in range(12)]  # fmt: skip
    roots = [thread_root("MainThread", 1), thread_root("worker-1", 2), thread_root("worker-2", 3)]
    stacks: List[List[str]] = []
    for _ in range(80):
        root = rng.choice(roots)
        stack = [root] + [rng.choice(functions[:3])]
        for _ in range(rng.randint(0, 7)):
            stack.append(rng.choice(functions))
        stacks.append(stack)
    stacks += [[root] for root in roots]  # idle: a thread with nothing recorded but its root
    times = [0.0] * len(stacks)
    timeline = []
    previous = 0
    for _ in range(800):
        record = previous if rng.random() < 0.3 else rng.randrange(len(stacks))
        seconds = 0.001 * rng.randint(1, 4)
        timeline.append((record, seconds))
        times[record] += seconds
        previous = record
    timeline = Timeline(timeline)
    # the record times as the timeline stores them (single precision), so both agree
    times = [0.0] * len(stacks)
    for record, seconds in timeline:
        times[record] += seconds
    return make_session([(s, t) for s, t in zip(stacks, times)], timeline=timeline)


def frame_identity(frame_info: str) -> Tuple[str, str, int]:
    """(function, file, first line) of a frame string."""
    function, path, line = frame_info.split("\x01")[0].rsplit("\x00", 2)
    return function, path, int(line)


# -- reading JSON deeper than the json module can -------------------------------------------

_TOKEN = re.compile(r'\s*(?:([{}\[\]:,])|(")|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(true|false|null))')


def loads_deep(text: str) -> Any:
    """``json.loads`` without recursion (the json module gives up a few thousand levels
    deep, a call tree need not)."""
    stack: List[List[Any]] = []  # [container, key waiting for its value]
    results: List[Any] = []
    position = 0

    def add(value: Any) -> None:
        if not stack:
            results.append(value)
        elif isinstance(stack[-1][0], list):
            stack[-1][0].append(value)
        else:
            stack[-1][0][stack[-1][1]] = value
            stack[-1][1] = None

    while True:
        match = _TOKEN.match(text, position)
        if match is None:
            assert not text[position:].strip(), f"unexpected text at {position}"
            break
        punctuation, quote, number, literal = match.groups()
        position = match.end()
        if punctuation in ("{", "["):
            container: Any = {} if punctuation == "{" else []
            add(container)
            stack.append([container, None])
        elif punctuation in ("}", "]"):
            stack.pop()
        elif punctuation:
            continue
        elif quote:
            value, position = json.decoder.scanstring(text, position)  # type: ignore[attr-defined]
            if stack and isinstance(stack[-1][0], dict) and stack[-1][1] is None:
                stack[-1][1] = value  # a key
            else:
                add(value)
        elif number:
            add(float(number) if any(c in number for c in ".eE") else int(number))
        else:
            add({"true": True, "false": False, "null": None}[literal])
    assert not stack and len(results) == 1
    return results[0]


def test_the_deep_json_reader_agrees_with_json_loads():
    for make in ALL_SESSIONS + [library_session]:
        text = JSONRenderer().render(make())
        assert loads_deep(text) == json.loads(text)


# == JSON =====================================================================================

UPSTREAM_TOP_KEYS = {"start_time", "duration", "sample_count", "target_description", "cpu_time", "root_frame"}
UPSTREAM_FRAME_KEYS = {
    "function", "file_path_short", "file_path", "line_no", "time", "await_time", "is_application_code", "children",
}  # fmt: skip
UPSTREAM_OPTIONAL_FRAME_KEYS = {"class_name", "group_id"}
OUR_FRAME_KEYS = {"cpu_time"}


def json_frames(root: Dict[str, Any]) -> List[Dict[str, Any]]:
    frames, pending = [], [root]
    while pending:
        frame = pending.pop()
        frames.append(frame)
        pending.extend(frame["children"])
    return frames


def test_json_has_upstreams_keys_and_the_sessions_numbers():
    session = simple_session()
    document = json.loads(JSONRenderer().render(session))
    assert UPSTREAM_TOP_KEYS <= set(document)
    assert document["start_time"] == session.start_time
    assert document["duration"] == pytest.approx(session.duration)
    assert document["sample_count"] == session.sample_count
    assert document["target_description"] == "Program: demo.py"
    assert document["cpu_time"] == pytest.approx(session.cpu_time)
    for frame in json_frames(document["root_frame"]):
        assert UPSTREAM_FRAME_KEYS <= set(frame) <= UPSTREAM_FRAME_KEYS | UPSTREAM_OPTIONAL_FRAME_KEYS | OUR_FRAME_KEYS
        assert isinstance(frame["line_no"], int) and isinstance(frame["is_application_code"], bool)
        assert sum(child["time"] for child in frame["children"]) <= frame["time"] + 1e-9
        assert frame["await_time"] == 0


def test_json_tree_is_the_text_reports_tree():
    document = json.loads(JSONRenderer().render(simple_session()))
    root = document["root_frame"]
    assert (root["function"], root["file_path"], root["line_no"]) == ("<module>", f"{APP}/demo.py", 1)
    assert root["file_path_short"] == "demo.py" and root["is_application_code"] is True
    assert root["time"] == pytest.approx(1.0)
    (main,) = root["children"]
    by_name = {c["function"]: c for c in main["children"]}
    assert by_name["slow"]["time"] == pytest.approx(0.7)
    assert by_name["compile"]["is_application_code"] is False
    assert by_name["compile"]["file_path_short"] == "re/__init__.py"
    # as upstream's: the function's own name, its class beside it
    assert by_name["fast"]["class_name"] == "Worker"
    assert "class_name" not in by_name["slow"]
    (sleep,) = [c for c in by_name["slow"]["children"] if c["function"] == "sleep"]
    assert sleep["time"] == pytest.approx(0.4) and sleep["cpu_time"] == 0.0
    assert by_name["slow"]["cpu_time"] == pytest.approx(0.3)
    # children come most time first, as in the text report
    times = [c["time"] for c in main["children"]]
    assert times == sorted(times, reverse=True)


def test_json_library_groups_share_a_group_id():
    root = json.loads(JSONRenderer().render(library_session()))["root_frame"]
    grouped = [f for f in json_frames(root) if "group_id" in f]
    assert {f["function"] for f in grouped} == {"step0", "step1", "step2"}
    assert len({f["group_id"] for f in grouped}) == 1
    assert not any(f["is_application_code"] for f in grouped)


def test_json_threads_and_options():
    session = threaded_session()
    session.thread_names = {"1": "MainThread", "2": "worker"}
    document = json.loads(JSONRenderer().render(session))
    root = document["root_frame"]
    assert root["function"] == "[root]"
    threads = {c["function"]: c for c in root["children"]}
    assert set(threads) == {"MainThread", "worker"}
    assert threads["worker"]["file_path"] == "<thread>" and threads["worker"]["time"] == pytest.approx(0.6)
    assert document["thread_names"] == {"1": "MainThread", "2": "worker"}
    # show_all and processor options are upstream's FrameRenderer options
    small = json.loads(JSONRenderer(processor_options={"filter_threshold": 0.12}).render(simple_session()))
    assert "fast" not in {f["function"] for f in json_frames(small["root_frame"])}
    everything = json.loads(JSONRenderer(show_all=True).render(library_session()))
    assert not any("group_id" in f for f in json_frames(everything["root_frame"]))
    assert JSONRenderer.output_file_extension == "json" and not JSONRenderer.output_is_binary


def test_json_of_an_empty_session_has_a_null_root():
    document = json.loads(JSONRenderer().render(empty_session()))
    assert document["root_frame"] is None


def test_json_keeps_hostile_names_exactly():
    text = JSONRenderer(show_all=True).render(hostile_session())
    text.encode("ascii")  # writable whatever the file system's encoding
    frames = json_frames(json.loads(text)["root_frame"])
    assert set(HOSTILE_NAMES) <= {f["function"] for f in frames}
    assert set(HOSTILE_PATHS) <= {f["file_path"] for f in frames}


def test_json_of_a_very_deep_tree():
    text = JSONRenderer(show_all=True).render(deep_session())
    node, depth = loads_deep(text)["root_frame"], 0
    while node["children"]:
        node = node["children"][0]
        depth += 1
    assert depth == 3000
    assert node["function"] == "recurse" and node["time"] == pytest.approx(0.5)


# == speedscope ===============================================================================


@pytest.fixture(scope="session")
def speedscope_schema() -> Dict[str, Any]:
    """speedscope's file-format schema, from its npm package (fetched once into .cache)."""
    schema_path = os.path.join(SPEEDSCOPE_CACHE, f"file-format-schema-{SPEEDSCOPE_VERSION}.json")
    if not os.path.exists(schema_path):
        tarball = os.path.join(SPEEDSCOPE_CACHE, f"speedscope-{SPEEDSCOPE_VERSION}.tgz")
        if not os.path.exists(tarball):
            npm = shutil.which("npm")
            if npm is None:
                pytest.skip("npm is not installed: cannot fetch the speedscope schema")
            os.makedirs(SPEEDSCOPE_CACHE, exist_ok=True)
            try:
                result = subprocess.run(
                    [npm, "pack", f"speedscope@{SPEEDSCOPE_VERSION}", "--pack-destination", SPEEDSCOPE_CACHE],
                    capture_output=True, text=True, timeout=300,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.skip(f"npm pack speedscope@{SPEEDSCOPE_VERSION} failed: {exc}")
            if result.returncode != 0 or not os.path.exists(tarball):
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                pytest.skip(f"npm pack speedscope@{SPEEDSCOPE_VERSION} failed: {last}")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(SCHEMA_IN_PACKAGE)
            assert member is not None
            data = member.read()
        with open(schema_path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(schema_path + ".tmp", schema_path)
    with open(schema_path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def speedscope_validator(speedscope_schema) -> Any:
    """A validator for the schema, or None where jsonschema is not installed (see
    test_speedscope_files_match_the_schema)."""
    if jsonschema is None:
        return None
    validator_class = jsonschema.validators.validator_for(speedscope_schema)
    validator_class.check_schema(speedscope_schema)
    return validator_class(speedscope_schema)


def render_speedscope(session: Session, validator: Any, **options: Any) -> Dict[str, Any]:
    """The file as speedscope reads it, checked against the schema and for events that
    speedscope's importer accepts."""
    text = SpeedscopeRenderer(**options).render(session)
    text.encode("ascii")
    document = json.loads(text)
    if validator is not None:
        validator.validate(document)
    for profile in document["profiles"]:
        check_events(profile, len(document["shared"]["frames"]))
    return document


def check_events(profile: Dict[str, Any], frame_count: int) -> None:
    """Properly nested: each close ends the most recent open frame, time never goes
    back, nothing stays open, everything inside [startValue, endValue]."""
    assert profile["type"] == "evented" and profile["unit"] == "seconds"
    open_frames: List[Tuple[int, float]] = []
    last = profile["startValue"]
    for event in profile["events"]:
        assert 0 <= event["frame"] < frame_count
        assert event["at"] >= last, "time goes back"
        last = event["at"]
        if event["type"] == "O":
            open_frames.append((event["frame"], event["at"]))
        else:
            assert open_frames, "close without open"
            frame, opened = open_frames.pop()
            assert frame == event["frame"], "close does not match the latest open frame"
            assert event["at"] >= opened
    assert not open_frames, "frames left open"
    assert last <= profile["endValue"]


@pytest.mark.parametrize("options", [{}, {"show_all": True, "cpu_profiles": True}])
def test_speedscope_files_match_the_schema(speedscope_validator, options):
    if speedscope_validator is None:
        pytest.skip("jsonschema is not installed")
    sessions = [make() for make in ALL_SESSIONS] + [random_session(5), empty_session(), deep_session()]
    for session in sessions:
        speedscope_validator.validate(json.loads(SpeedscopeRenderer(**options).render(session)))
    # and the schema does catch what speedscope would refuse
    with pytest.raises(jsonschema.ValidationError):
        speedscope_validator.validate({"$schema": "https://www.speedscope.app/file-format-schema.json",
                                       "profiles": [{"type": "evented"}], "shared": {"frames": []}})  # fmt: skip


def calls_of(document: Dict[str, Any], profile: Dict[str, Any]) -> List[Tuple[str, int, float, float]]:
    """(name, depth, open, close) of each call, in the order they opened."""
    names = [f["name"] for f in document["shared"]["frames"]]
    calls: List[List[Any]] = []
    open_calls: List[List[Any]] = []
    for event in profile["events"]:
        if event["type"] == "O":
            call = [names[event["frame"]], len(open_calls), event["at"], None]
            calls.append(call)
            open_calls.append(call)
        else:
            open_calls.pop()[3] = event["at"]
    return [tuple(c) for c in calls]  # type: ignore[misc]


def profile_named(document: Dict[str, Any], name: str) -> Dict[str, Any]:
    (profile,) = [p for p in document["profiles"] if p["name"] == name]
    return profile


def test_speedscope_file_is_valid_and_chronological(speedscope_validator):
    document = render_speedscope(simple_session(), speedscope_validator)
    assert document["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    # upstream's names: scripts and tools written for upstream's files look for them
    assert re.fullmatch(r"CPU profile for 'Program: demo.py' at \d{4}-\d\d-\d\dT\d\d-\d\d-\d\d", document["name"])
    assert document["activeProfileIndex"] == 0  # upstream's null is not valid by the schema
    (profile,) = document["profiles"]
    assert profile["name"] == document["name"]
    assert (profile["startValue"], profile["endValue"]) == (0, pytest.approx(1.0))
    calls = calls_of(document, profile)
    # the timeline: slow (sleeping 0.1-0.5 inside), then Worker.fast, then compile
    assert [(n, d) for n, d, _, _ in calls] == [
        ("<module>", 0), ("main", 1), ("slow", 2), ("sleep", 3), ("Worker.fast", 2), ("compile", 2),
    ]  # fmt: skip
    spans = {n: (o, c) for n, _, o, c in calls}
    assert spans["slow"] == (0, pytest.approx(0.7))
    assert spans["sleep"] == (pytest.approx(0.1), pytest.approx(0.5))
    assert spans["Worker.fast"] == (pytest.approx(0.7), pytest.approx(0.8))
    assert spans["compile"] == (pytest.approx(0.8), pytest.approx(0.95))
    assert spans["main"] == (0, pytest.approx(1.0))
    frames = {f["name"]: f for f in document["shared"]["frames"]}
    assert frames["slow"] == {"name": "slow", "file": f"{APP}/demo.py", "line": 10}
    assert frames["sleep"] == {"name": "sleep", "file": "<built-in>"}
    assert SpeedscopeRenderer.output_file_extension == "speedscope.json"


def test_speedscope_has_a_profile_per_thread_on_its_own_clock(speedscope_validator):
    document = render_speedscope(threaded_session(), speedscope_validator)
    assert [p["name"] for p in document["profiles"]] == ["MainThread", "worker"]
    main, worker = document["profiles"]
    # MainThread: work for 0.5 s, then join for 0.2 s; the worker, started at 0.5 s,
    # runs 0.6 s; both clocks count from the session's start
    assert [(n, o, c) for n, _, o, c in calls_of(document, main)] == [
        ("<module>", 0, pytest.approx(0.7)), ("work", 0, 0.5), ("Thread.join", 0.5, pytest.approx(0.7)),
    ]  # fmt: skip
    assert (worker["startValue"], worker["endValue"]) == (0, pytest.approx(1.1))
    assert [(n, o, c) for n, _, o, c in calls_of(document, worker)] == [
        ("Thread.run", 0.5, pytest.approx(1.1)), ("work", 0.5, pytest.approx(1.1)),
    ]  # fmt: skip


def test_speedscope_cpu_profiles(speedscope_validator):
    document = render_speedscope(threaded_session(), speedscope_validator, cpu_profiles=True)
    assert [p["name"] for p in document["profiles"]] == [
        "MainThread", "worker", "MainThread (CPU time)", "worker (CPU time)",
    ]  # fmt: skip
    main_cpu = profile_named(document, "MainThread (CPU time)")
    # join used no CPU: it does not show; work used 0.5 s
    assert [(n, o, c) for n, _, o, c in calls_of(document, main_cpu)] == [("<module>", 0, 0.5), ("work", 0, 0.5)]
    worker_cpu = profile_named(document, "worker (CPU time)")
    assert worker_cpu["endValue"] - worker_cpu["startValue"] == pytest.approx(0.6)
    # without CPU times recorded there is nothing to add
    no_cpu = threaded_session()
    no_cpu.frame_records_cpu = None
    assert len(render_speedscope(no_cpu, speedscope_validator, cpu_profiles=True)["profiles"]) == 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_speedscope_time_per_function_is_the_samples_time(speedscope_validator, seed):
    """Every call kept (show_all): speedscope's totals per function and thread (its
    Sandwich view) equal the time of the samples whose stack holds the function."""
    session = random_session(seed)
    document = render_speedscope(session, speedscope_validator, show_all=True)
    expected: Dict[Tuple[str, Tuple[str, str, int]], float] = defaultdict(float)
    thread_time: Dict[str, float] = defaultdict(float)
    busy_time: Dict[str, float] = defaultdict(float)
    for record, seconds in session.timeline:
        stack = session.frame_records[record][0]
        thread = stack[0].split("\x00")[0]
        thread_time[thread] += seconds
        if len(stack) > 1:
            busy_time[thread] += seconds
        for identity in {frame_identity(f) for f in stack[1:]}:  # a recursive function counts once
            expected[thread, identity] += seconds
    frames = [(f["name"], f["file"], f.get("line", 0)) for f in document["shared"]["frames"]]
    measured: Dict[Tuple[str, Tuple[str, str, int]], float] = defaultdict(float)
    for profile in document["profiles"]:
        thread = profile["name"]
        assert profile["endValue"] - profile["startValue"] == pytest.approx(thread_time[thread], abs=1e-5)
        depth_open: Dict[int, int] = defaultdict(int)
        opened_at: Dict[int, float] = {}
        top_level = 0.0
        stack_depth = 0
        for event in profile["events"]:
            frame = event["frame"]
            if event["type"] == "O":
                if depth_open[frame] == 0:
                    opened_at[frame] = event["at"]
                depth_open[frame] += 1
                stack_depth += 1
                if stack_depth == 1:
                    top_start = event["at"]
            else:
                depth_open[frame] -= 1
                if depth_open[frame] == 0:
                    measured[thread, frames[frame]] += event["at"] - opened_at[frame]
                stack_depth -= 1
                if stack_depth == 0:
                    top_level += event["at"] - top_start
        assert top_level == pytest.approx(busy_time[thread], abs=1e-5)
    assert set(measured) == set(expected)
    for key, seconds in expected.items():
        assert measured[key] == pytest.approx(seconds, abs=1e-5), key


def test_speedscope_leaves_out_short_calls_but_not_their_time(speedscope_validator):
    # Worker.fast takes 10% of the profile: below a 12% threshold
    document = render_speedscope(simple_session(), speedscope_validator, processor_options={"filter_threshold": 0.12})
    calls = calls_of(document, document["profiles"][0])
    assert "Worker.fast" not in [n for n, _, _, _ in calls]
    assert ("main", 1, 0, pytest.approx(1.0)) in calls  # its time stays in its caller
    # by default, only calls under 1/100,000 of the profile go: none here
    default = render_speedscope(random_session(4), speedscope_validator)
    everything = render_speedscope(random_session(4), speedscope_validator, show_all=True)
    assert default["profiles"] == everything["profiles"]
    with pytest.raises(ValueError):
        SpeedscopeRenderer(processor_options={"filter_threshold": -1})


def test_speedscope_keeps_hostile_names_exactly(speedscope_validator):
    document = render_speedscope(hostile_session(), speedscope_validator)
    frames = document["shared"]["frames"]
    assert set(HOSTILE_NAMES) <= {f["name"] for f in frames}
    assert set(HOSTILE_PATHS) <= {f["file"] for f in frames}
    (profile,) = document["profiles"]
    names = [n for n, _, _, _ in calls_of(document, profile)]
    assert names == ["<module>"] + HOSTILE_NAMES


def test_speedscope_threads_with_the_same_name_stay_apart(speedscope_validator):
    first, second = thread_root("pool", 11), thread_root("pool", 12)
    work = frame_string("work", f"{APP}/pool.py", 1)
    session = make_session([([first, work], 0.3), ([second, work], 0.2), ([second], 0.0)],
                           timeline=[(0, 0.3), (2, 0.1), (1, 0.2)])  # the second started at 0.1 s
    document = render_speedscope(session, speedscope_validator)
    assert [p["name"] for p in document["profiles"]] == ["pool (11)", "pool (12)"]
    one, two = document["profiles"]
    assert [(o, c) for _, _, o, c in calls_of(document, one)] == [(0, pytest.approx(0.3))]
    assert [(o, c) for _, _, o, c in calls_of(document, two)] == [(pytest.approx(0.1), pytest.approx(0.3))]


def test_speedscope_with_hundreds_of_threads(speedscope_validator):
    work = frame_string("work", f"{APP}/pool.py", 1)
    records = [([thread_root(f"t{n}", 100 + n), work], 0.003) for n in range(300)]
    timeline = [(n, 0.001) for _ in range(3) for n in range(300)]  # each thread, in turn, three times
    document = render_speedscope(make_session(records, timeline=timeline), speedscope_validator)
    assert [p["name"] for p in document["profiles"]] == [f"t{n}" for n in range(300)]
    for profile in document["profiles"]:
        (call,) = calls_of(document, profile)
        assert call[0] == "work" and call[3] - call[2] == pytest.approx(0.003)


def test_speedscope_of_an_empty_session_still_opens(speedscope_validator):
    document = render_speedscope(empty_session(), speedscope_validator)
    assert len(document["profiles"]) == 1 and document["profiles"][0]["events"] == []


def test_speedscope_without_a_timeline_uses_the_record_order(speedscope_validator):
    session = simple_session()
    session.timeline = None
    document = render_speedscope(session, speedscope_validator)
    names = [n for n, d, _, _ in calls_of(document, document["profiles"][0]) if d == 2]
    assert names == ["slow", "Worker.fast", "compile"]  # slow and slow+sleep are adjacent records


def test_speedscope_of_a_very_deep_stack(speedscope_validator):
    document = render_speedscope(deep_session(), speedscope_validator)
    calls = calls_of(document, document["profiles"][0])
    assert max(d for _, d, _, _ in calls) == 3000
    assert calls[-1][2:] == (pytest.approx(0.0), pytest.approx(0.5))


# == pstats ===================================================================================


def load_pstats(tmp_path, session: Session, **options: Any) -> pstats.Stats:
    data = PstatsRenderer(**options).render(session)
    assert isinstance(data, str)  # as upstream's: the bytes, surrogate-escaped
    path = tmp_path / "profile.pstats"
    path.write_bytes(data.encode("utf-8", errors="surrogateescape"))
    return pstats.Stats(str(path), stream=io.StringIO())


def stats_of(stats: pstats.Stats, function: str) -> Tuple[int, int, float, float, Dict[Any, Any]]:
    (entry,) = [value for key, value in stats.stats.items() if key[2] == function]  # type: ignore[attr-defined]
    return entry


def key_of(frame_info: str) -> Tuple[str, int, str]:
    function, path, line = frame_identity(frame_info)
    return (path, line, function)


def test_pstats_loads_with_tottime_cumtime_and_callers(tmp_path):
    stats = load_pstats(tmp_path, simple_session())
    assert stats.total_tt == pytest.approx(1.0)  # type: ignore[attr-defined]
    _, _, tottime, cumtime, callers = stats_of(stats, "slow")
    assert (tottime, cumtime) == (pytest.approx(0.3), pytest.approx(0.7))
    assert set(callers) == {key_of(RUN)}
    _, _, tottime, cumtime, callers = stats_of(stats, "sleep")
    assert (tottime, cumtime) == (pytest.approx(0.4), pytest.approx(0.4))
    assert set(callers) == {key_of(SLOW)} and key_of(SLEEP) == ("<built-in>", 0, "sleep")
    assert stats_of(stats, "main")[2:4] == (pytest.approx(0.05), pytest.approx(1.0))
    assert stats_of(stats, "<module>")[2:4] == (0, pytest.approx(1.0))
    assert stats_of(stats, "<module>")[4] == {}
    assert key_of(FAST) in stats.stats and key_of(LIB) in stats.stats  # type: ignore[attr-defined]
    assert PstatsRenderer.output_file_extension == "pstats" and PstatsRenderer.output_is_binary


def test_pstats_reports_print_and_sort(tmp_path):
    stats = load_pstats(tmp_path, simple_session())
    for order in ("cumulative", "tottime", "calls", "name", "filename"):
        stats.sort_stats(order).print_stats()
    stats.print_callers()
    stats.print_callees()
    report = stats.stream.getvalue()  # type: ignore[attr-defined]
    assert "demo.py:10(slow)" in report and "function calls in 1.000 seconds" in report
    stats.sort_stats("cumulative")
    assert [key[2] for key in stats.fcn_list[:3]] == ["<module>", "main", "slow"]  # type: ignore[attr-defined]


def test_pstats_counts_recursion_once_in_cumtime(tmp_path):
    stats = load_pstats(tmp_path, recursive_session())
    primitive, total, tottime, cumtime, callers = stats_of(stats, "a")
    assert (primitive, total) == (1, 2)  # shown as 2/1, as cProfile shows recursion
    assert (tottime, cumtime) == (pytest.approx(0.4), pytest.approx(1.0))
    assert set(callers) == {key_of(MAIN), key_of(B)}
    assert sum(c[3] for c in callers.values()) == pytest.approx(cumtime)
    primitive, total, tottime, cumtime, callers = stats_of(stats, "b")
    assert (primitive, total, tottime, cumtime) == (1, 2, pytest.approx(0.6), pytest.approx(0.9))
    assert set(callers) == {key_of(A)}
    assert stats.total_tt == pytest.approx(1.0)  # type: ignore[attr-defined]
    stats.print_stats()
    assert "2/1" in stats.stream.getvalue()  # type: ignore[attr-defined]


def test_pstats_threads_call_their_top_functions(tmp_path):
    stats = load_pstats(tmp_path, threaded_session())
    _, _, tottime, cumtime, callers = stats_of(stats, "work")
    assert (tottime, cumtime) == (pytest.approx(1.1), pytest.approx(1.1))
    assert set(c[2] for c in callers) == {"<module>", "Thread.run"}
    assert stats_of(stats, "worker")[3] == pytest.approx(0.6)
    assert ("<thread>", 2, "worker") in stats.stats  # type: ignore[attr-defined]


def test_pstats_keeps_hostile_names_exactly(tmp_path):
    stats = load_pstats(tmp_path, hostile_session())
    keys = stats.stats  # type: ignore[attr-defined]
    assert set(HOSTILE_NAMES) <= {k[2] for k in keys}
    assert set(HOSTILE_PATHS) <= {k[0] for k in keys}
    stats.sort_stats("name").print_stats()
    stats.print_callers()


def test_pstats_of_empty_and_deep_sessions(tmp_path):
    assert marshal.loads(PstatsRenderer().render(empty_session()).encode("utf-8", errors="surrogateescape")) == {}
    stats = load_pstats(tmp_path, deep_session(), show_all=True)
    primitive, total, _, cumtime, _ = stats_of(stats, "recurse")
    assert (primitive, cumtime) == (1, pytest.approx(0.75))
    assert total == 3000  # distinct call paths: one per depth


def many_small_functions_session(count: int = 200) -> Session:
    """<module> > main > small_i for ``count`` functions, each 0.45% of the 1 s run:
    together 90% of the work, each under the text report's 1% threshold."""
    each = 0.9 / count
    smalls = [frame_string(f"small_{i}", f"{APP}/many.py", 10 + i, current=11 + i) for i in range(count)]
    records = [([MAIN, RUN, small], each) for small in smalls] + [([MAIN, RUN], 0.1)]
    return make_session(records, timeline=[(i, t) for i, (_, t) in enumerate(records)])


def test_pstats_keeps_functions_under_the_text_reports_threshold(tmp_path):
    stats = load_pstats(tmp_path, many_small_functions_session())
    small = {key[2] for key in stats.stats if key[2].startswith("small_")}  # type: ignore[attr-defined]
    assert small == {f"small_{i}" for i in range(200)}
    # their time is theirs, not main's own
    assert stats_of(stats, "main")[2:4] == (pytest.approx(0.1), pytest.approx(1.0))
    assert stats_of(stats, "small_7")[2:4] == (pytest.approx(0.0045), pytest.approx(0.0045))


def test_pstats_keeps_import_machinery_and_tracebackhide_frames(tmp_path):
    importer = frame_string("_find_and_load", "<frozen importlib._bootstrap>", 1002, current=1007)
    hidden = frame_string("helper", f"{APP}/demo.py", 50, current=51) + "\x01h1"
    session = make_session([([MAIN, importer, RUN], 0.5), ([MAIN, hidden, SLOW], 0.5)])
    keys = {key[2] for key in load_pstats(tmp_path, session).stats}  # type: ignore[attr-defined]
    assert {"_find_and_load", "helper", "main", "slow"} <= keys


SMALL_FUNCTIONS_PROGRAM = "\n".join(
    ["import time", "", "def busy(seconds):", "    end = time.perf_counter() + seconds",
     "    while time.perf_counter() < end:", "        pass", ""]
    + [f"def small_{i}():\n    busy(0.01)\n" for i in range(200)]
    + ["def main():"] + [f"    small_{i}()" for i in range(200)] + ["", "main()", ""]
)


def test_pstats_of_a_program_with_many_small_functions(tmp_path):
    (tmp_path / "many.py").write_text(SMALL_FUNCTIONS_PROGRAM)
    run_pyinstrument("-r", "pstats", "-o", "out.pstats", "many.py", cwd=tmp_path)
    stats = pstats.Stats(str(tmp_path / "out.pstats"), stream=io.StringIO())
    entries = stats.stats  # type: ignore[attr-defined]
    smalls = {key[2]: value for key, value in entries.items() if key[2].startswith("small_")}
    (main,) = [value for key, value in entries.items() if key[2] == "main"]
    _, _, main_own, main_cumulative, _ = main
    # Each function runs 0.5% of the time: all of them are listed (a function the
    # sampler happened to miss on a busy machine is absent from the profile itself,
    # so "most" is asked here; the hand-made session above checks every one), and
    # their time is theirs, not main's own.
    assert len(smalls) > 150
    assert sum(value[3] for value in smalls.values()) > 0.8 * main_cumulative
    assert main_own < 0.1 * main_cumulative


# == .pyisession ==============================================================================


@pytest.mark.parametrize("make", ALL_SESSIONS + [deep_session])
def test_session_file_loads_back_and_renders_the_same(tmp_path, make):
    session = make()
    text = SessionRenderer().render(session)
    path = tmp_path / "profile.pyisession"
    path.write_text(text, encoding="utf-8")
    loaded = Session.load(str(path))
    assert loaded.frame_records == session.frame_records
    assert list(loaded.timeline) == list(session.timeline)
    assert loaded.frame_records_cpu == session.frame_records_cpu
    for options in ({}, {"show_all": True}, {"timeline": True}, {"flat": True}):
        assert ConsoleRenderer(**options).render(loaded) == ConsoleRenderer(**options).render(session)
    # and it is the file Session.save writes
    session.save(str(tmp_path / "saved.pyisession"))
    assert json.loads(text) == json.loads((tmp_path / "saved.pyisession").read_text(encoding="utf-8"))
    assert SessionRenderer.output_file_extension == "pyisession" and not SessionRenderer.output_is_binary


def test_session_file_keeps_hostile_names_exactly(tmp_path):
    text = SessionRenderer().render(hostile_session())
    text.encode("ascii")
    loaded = Session.from_json(json.loads(text))
    strings = {frame_identity(f)[0] for stack, _ in loaded.frame_records for f in stack}
    paths = {frame_identity(f)[1] for stack, _ in loaded.frame_records for f in stack}
    assert set(HOSTILE_NAMES) <= strings and set(HOSTILE_PATHS) <= paths


# == a real program, through the command line ================================================


def test_a_real_program_in_every_format(tmp_path):
    (tmp_path / "busy.py").write_text(THREADED_PROGRAM)

    def pyinstrument(*args: str) -> None:
        run_pyinstrument(*args, cwd=tmp_path)

    pyinstrument("--all-threads", "-r", "session", "-o", "run.pyisession", "busy.py")
    session = Session.load(str(tmp_path / "run.pyisession"))
    for name, extension in (("json", "json"), ("speedscope", "speedscope.json"), ("pstats", "pstats")):
        pyinstrument("--load", "run.pyisession", "-r", name, "-o", f"out.{extension}")

    tree = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))["root_frame"]
    assert "spin" in {f["function"] for f in json_frames(tree)}

    speedscope = json.loads((tmp_path / "out.speedscope.json").read_text(encoding="utf-8"))
    names = [p["name"] for p in speedscope["profiles"]]
    assert names[0] == "MainThread" and "helper" in names
    for profile in speedscope["profiles"]:
        check_events(profile, len(speedscope["shared"]["frames"]))
    main_calls = calls_of(speedscope, speedscope["profiles"][0])
    assert {"main", "spin"} <= {n for n, _, _, _ in main_calls}

    stats = pstats.Stats(str(tmp_path / "out.pstats"), stream=io.StringIO())
    (spin,) = [v for k, v in stats.stats.items() if k[2] == "spin"]  # type: ignore[attr-defined]
    total = sum(t for _, t in session.frame_records)
    assert 0 < spin[3] <= stats.total_tt <= total + 1e-6  # type: ignore[attr-defined]
