"""Session files: round trips, damaged files, --load and --load-prev, and files
exchanged with upstream pyinstrument (installed from PyPI in its own virtualenv)."""

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
from functools import lru_cache
from pathlib import Path

import pytest
from helpers import run_pyinstrument
from sessions import (
    HOSTILE_NAMES,
    HOSTILE_PATHS,
    NUMBERED_PROGRAM,
    history_directory,
    hostile_session,
    load_prev_hint,
    simple_session,
    threaded_session,
    write_numbered_program,
)

from pyinstrument.renderers import ConsoleRenderer
from pyinstrument.frame_table import FrameInfo, FrameTable, decode_array, encode_array
from pyinstrument.session import Session, SessionFileError

REPO = Path(__file__).resolve().parent.parent


def render_all_ways(session):
    """The console report in the aggregated, timeline and flat forms, everything shown."""
    return [
        ConsoleRenderer(show_all=True).render(session),
        ConsoleRenderer(show_all=True, timeline=True).render(session),
        ConsoleRenderer(show_all=True, flat=True).render(session),
    ]


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("make", [simple_session, threaded_session, hostile_session])
def test_save_and_load_render_identically(tmp_path, make):
    session = make()
    path = tmp_path / "s.pyisession"
    session.save(path)
    loaded = Session.load(path)
    assert render_all_ways(loaded) == render_all_ways(session)
    assert loaded.frame_records == session.frame_records
    assert loaded.frame_records_cpu == session.frame_records_cpu
    assert list(loaded.timeline) == list(session.timeline)
    # and again: what we load, we save the same way
    loaded.save(tmp_path / "again.pyisession")
    assert (tmp_path / "again.pyisession").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("make", [simple_session, threaded_session, hostile_session])
def test_our_files_load_from_their_head_and_match_a_full_read(tmp_path, make, monkeypatch):
    # the head (with the frame table) is read alone; the records after it are checked,
    # not parsed: what loads is what reading the whole document gives
    session = make()
    path = tmp_path / "s.pyisession"
    session.save(path)
    full = Session.from_json(json.loads(path.read_bytes()))
    parsed = []
    real_loads = json.loads
    monkeypatch.setattr(json, "loads", lambda data, **kw: parsed.append(len(data)) or real_loads(data, **kw))
    loaded = Session.load(path)
    assert parsed and max(parsed) < path.stat().st_size - len(json.dumps(session.to_json()["frame_records"]))
    assert loaded.frame_records == full.frame_records == session.frame_records
    assert loaded.frame_records_cpu == full.frame_records_cpu
    assert render_all_ways(loaded) == render_all_ways(full)


def test_a_file_whose_records_were_edited_is_read_from_the_records(tmp_path):
    # a tool that rewrote frame_records and left the head as it was: the head's table no
    # longer matches the records, so the records are what loads
    session = simple_session()
    path = tmp_path / "s.pyisession"
    session.save(path)
    leaf = session.frame_records[0][0][-1]
    function = leaf.split("\x00")[0]
    text = path.read_text()
    records_at = text.index('"frame_records": ')
    edited = text[:records_at] + text[records_at:].replace(json.dumps(function)[1:-1], "edited_by_a_tool", 1)
    path.write_text(edited)
    loaded = Session.load(path)
    assert loaded.frame_records == Session.from_json(json.loads(edited)).frame_records
    assert "edited_by_a_tool" in loaded.frame_records[0][0][-1]


@pytest.mark.parametrize(
    "damage",
    [
        lambda table: table.update(node_parent=table["node_parent"][:-4]),  # an array cut short
        lambda table: table.update(node_frame="not base64!"),
        lambda table: table.update(record_node=base64.b64encode(b"\xff\xff\xff\x7f" * 5).decode()),
        lambda table: table.update(record_seconds=base64.b64encode(b"\x00\x00\x00\x00\x00\x00\xf8\x7f" * 5).decode()),
        lambda table: table.update(frames=[1, 2]),
    ],
    ids=["cut array", "not base64", "no such node", "NaN seconds", "frames not strings"],
)
def test_a_damaged_frame_table_in_our_head_is_refused_with_a_message(tmp_path, damage):
    # the head rewritten with the damaged table; the records after it (and so their
    # length and CRC-32) as they were: the head is what loads
    text = simple_session().to_file_text()
    records_at = text.index(', "frame_records": ')
    document = json.loads(text[:records_at] + "}")
    del document["pyinstrument_c_head"]
    damage(document["frame_table"])
    body = json.dumps(document)[1:-1]
    start = '{"pyinstrument_c_head": "'
    length = len(start) + 12 + len('", ') + len(body)
    path = tmp_path / "s.pyisession"
    path.write_text(f'{start}{length:012d}", {body}{text[records_at:]}')
    with pytest.raises(SessionFileError, match="damaged pyinstrument session"):
        Session.load(path)


def test_a_truncated_file_of_ours_is_refused(tmp_path):
    path = tmp_path / "s.pyisession"
    threaded_session().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    with pytest.raises(SessionFileError, match="truncated"):
        Session.load(path)


def test_why_samples_were_dropped_survives_a_file_and_a_merge(tmp_path):
    document = simple_session().to_json()
    document.update(dropped_samples=4, dropped_by_cause={"changed": 3, "context": 1})
    session = Session.from_json(document)
    session.save(tmp_path / "d.pyisession")
    loaded = Session.load(tmp_path / "d.pyisession")
    assert loaded.dropped_by_cause == {"changed": 3, "context": 1}
    merged = Session.combine(loaded, loaded)
    assert merged.dropped_samples == 8 and merged.dropped_by_cause == {"changed": 6, "context": 2}


def test_hostile_names_survive_a_file(tmp_path):
    session = hostile_session()
    session.save(tmp_path / "h.pyisession")
    stacks = [stack for stack, _ in Session.load(tmp_path / "h.pyisession").frame_records]
    text = "".join(frame for stack in stacks for frame in stack)
    for name in HOSTILE_NAMES + HOSTILE_PATHS:
        assert name in text


def test_first_timeline_layout_still_loads(tmp_path):
    session = simple_session()
    document = session.to_json()
    document["timeline"] = [[i, s] for i, s in session.timeline]  # as version 1 wrote it
    path = tmp_path / "v1.pyisession"
    path.write_text(json.dumps(document))
    assert list(Session.load(path).timeline) == list(session.timeline)


def test_combined_session_holds_both_runs(tmp_path):
    first, second = simple_session(), threaded_session()
    second.start_time = first.start_time + 60
    combined = Session.combine(second, first)
    assert combined.start_time == first.start_time
    assert combined.duration == pytest.approx(first.duration + second.duration)
    assert combined.sample_count == first.sample_count + second.sample_count
    assert combined.cpu_time == pytest.approx(first.cpu_time + second.cpu_time)
    root = combined.root_frame()
    assert root.time == pytest.approx(first.duration + second.duration)
    names = {f.display_name for f in root.iter_subtree()}
    assert {"slow", "Worker.fast", "work", "Thread.join"} <= names
    combined.save(tmp_path / "c.pyisession")
    assert render_all_ways(Session.load(tmp_path / "c.pyisession")) == render_all_ways(combined)


# --- damaged and foreign files -----------------------------------------------------------


def good_document():
    return json.dumps(simple_session().to_json())


DAMAGED = {
    "truncated": (lambda: good_document()[:200].encode(), "truncated"),
    "empty": (lambda: b"", "truncated"),
    "not JSON": (lambda: b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a pyinstrument session"),
    "not UTF-8": (lambda: b'{"start_time": "\xff"}', "not a pyinstrument session"),
    "a list": (lambda: b"[1, 2, 3]", "expected a JSON object"),
    "a speedscope file": (lambda: json.dumps({"$schema": "https://www.speedscope.app/file-format-schema.json",
                                              "profiles": [], "shared": {"frames": []}}).encode(),
                          "no 'start_time', 'duration', 'sample_count'"),
    "records not pairs": (lambda: good_document().replace('"frame_records": [[', '"frame_records": [7, [', 1).encode(),
                          "frame record 0 is not a [stack, seconds] pair"),
    "a number as text": (lambda: good_document().replace('"duration": ', '"duration": "x', 1)
                         .replace('"x1.0', '"x"', 1).encode(), "damaged pyinstrument session"),
    "drop causes not counts": (
        lambda: json.dumps(dict(simple_session().to_json(), dropped_by_cause={"changed": -1})).encode(),
        "'dropped_by_cause' of 'changed' is not a count"),
    "a timeline index out of range": (
        lambda: json.dumps(with_timeline_records(simple_session().to_json(), lambda r: r.__setitem__(1, 99))).encode(),
        "frame record 99, which does not exist"),
    "a timeline index out of range (version 2 layout)": (
        lambda: json.dumps(dict(simple_session().to_json(), timeline={
            "records": [0, 99, 2, 3], "nanoseconds": [1, 1, 1, 1]})).encode(),
        "frame record 99, which does not exist"),
    "a timeline that is not base64": (
        lambda: json.dumps(dict(simple_session().to_json(), timeline={"records": "not*base64", "seconds": ""})).encode(),
        "the timeline's records is not base64 text"),
    "timeline arrays of two lengths": (
        lambda: json.dumps(with_timeline_records(simple_session().to_json(), lambda r: r.pop())).encode(),
        "the timeline's records and seconds differ in length"),
    "CPU times cut short": (
        lambda: json.dumps(dict(simple_session().to_json(), frame_records_cpu="AAAA")).encode(),
        "'frame_records_cpu' is cut short"),
}


def with_timeline_records(document, change):
    """The document with its timeline's records changed in place by ``change``."""
    records = decode_array("I", document["timeline"]["records"])
    change(records)
    return dict(document, timeline=dict(document["timeline"], records=encode_array(records)))


@pytest.mark.parametrize("kind", DAMAGED)
def test_damaged_file_gives_one_clear_error(tmp_path, kind):
    make, message = DAMAGED[kind]
    path = tmp_path / "bad.pyisession"
    path.write_bytes(make())
    with pytest.raises(SessionFileError, match=re.escape(message)):
        Session.load(path)
    result = pyinstrument("--load", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"pyinstrument: error: can't load session file {str(path)!r}: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert path.read_bytes() == make()  # untouched


def test_failed_save_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "keep.pyisession"
    simple_session().save(path)
    before = path.read_bytes()
    broken = simple_session()
    broken.thread_names = {"1": object()}  # cannot be written as JSON
    with pytest.raises(TypeError):
        broken.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.pyisession"]  # no temporary left behind


def test_saving_keeps_an_existing_files_permissions(tmp_path):
    path = tmp_path / "shared.pyisession"
    path.write_text("old")
    path.chmod(0o640)
    simple_session().save(path)
    assert path.stat().st_mode & 0o777 == 0o640
    assert Session.load(path).sample_count == simple_session().sample_count


# --- the command line: --load and --load-prev ---------------------------------------------


def pyinstrument(*args, cwd):
    return run_pyinstrument(*args, cwd=cwd, check=False)


def run_program(tmp_path, n, *options):
    result = pyinstrument(*options, write_numbered_program(tmp_path, n), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result


def test_text_report_is_kept_for_load_prev(tmp_path, private_data_directory):
    result = run_program(tmp_path, 1)
    identifier = load_prev_hint(result.stdout)
    assert (history_directory(private_data_directory) / f"{identifier}.pyisession").is_file()
    again = pyinstrument("--load-prev", identifier, "-r", "json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "spin_1" in again.stdout
    assert json.loads(again.stdout)["root_frame"]["function"] == "<module>"


def test_only_text_reports_to_the_terminal_are_kept(tmp_path, private_data_directory):
    run_program(tmp_path, 1, "-o", "report.txt")
    run_program(tmp_path, 2, "-r", "json")
    assert not history_directory(private_data_directory).exists()


@pytest.mark.parametrize("identifier", ["nothing-like-this", "../../etc/passwd", "2024-01-01T00-00-00"])
def test_unknown_previous_session_is_one_clear_error(tmp_path, identifier):
    result = pyinstrument("--load-prev", identifier, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"pyinstrument: error: no recent session {identifier!r} (none are kept yet)\n"


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="needs a user that file permissions apply to (not root)")
def test_unwritable_data_directory_does_not_fail_the_run(tmp_path, private_data_directory):
    private_data_directory.chmod(0o500)
    try:
        result = run_program(tmp_path, 1)
    finally:
        private_data_directory.chmod(0o700)
    assert "spin_1" in result.stdout
    assert "--load-prev" not in result.stdout
    assert "this session was not kept for --load-prev" in result.stderr


def test_data_directory_that_is_a_file_does_not_fail_the_run(tmp_path, private_data_directory):
    (private_data_directory / "pyinstrument").write_text("in the way")
    result = run_program(tmp_path, 1)
    assert "spin_1" in result.stdout
    assert "--load-prev" not in result.stdout
    assert result.stderr.count("\n") == 1
    assert "pyinstrument: note: this session was not kept for --load-prev" in result.stderr


def test_report_that_cannot_be_written_keeps_the_profile(tmp_path, private_data_directory):
    script = tmp_path / "p.py"
    # the program puts a directory where the report should go
    script.write_text(NUMBERED_PROGRAM.format(n=1) + "import os; os.mkdir('report.txt')\n")
    result = pyinstrument("-o", "report.txt", "p.py", cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"pyinstrument: error: can't write {str(tmp_path / 'report.txt')!r}: ")
    identifier = result.stderr.split("--load-prev ")[1].split()[0]
    again = pyinstrument("--load-prev", identifier, cwd=tmp_path)
    assert "spin_1" in again.stdout


# --- upstream pyinstrument ----------------------------------------------------------------


@lru_cache(maxsize=None)
def _upstream_python():
    result = subprocess.run([str(REPO / "tools" / "upstream-venv.sh"), sys.executable],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        return None, result.stderr.strip().splitlines()[-1:] or ["no output"]
    return result.stdout.strip().splitlines()[-1], None


@pytest.fixture
def upstream(tmp_path):
    """Runs code in upstream pyinstrument 5.x's interpreter; returns its stdout."""
    python, problem = _upstream_python()
    if python is None:
        pytest.skip(f"upstream pyinstrument 5.x does not install on this Python: {problem[0]}")

    def run(*args):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run([python, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


WORKLOAD = textwrap.dedent("""
    import threading, time

    class Shape:
        def area(self):
            end = time.perf_counter() + 0.15
            while time.perf_counter() < end:
                pass

    def wait_a_bit():
        time.sleep(0.1)

    Shape().area()
    wait_a_bit()
""")


def console_script(*args, cwd):
    """The ``pyinstrument`` console script installed next to this interpreter."""
    script = Path(sys.executable).with_name("pyinstrument")
    if not script.exists():
        pytest.skip("no pyinstrument console script next to this interpreter")
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def json_tree_frames(frame):
    stack = [frame]
    while stack:
        frame = stack.pop()
        yield frame
        stack.extend(frame["children"])


@pytest.mark.parametrize("launcher", [pyinstrument, console_script], ids=["python -m pyinstrument", "console script"])
@pytest.mark.parametrize("options", [[], ["--all-threads"]], ids=["main thread", "all threads"])
def test_sessions_we_save_load_in_upstream(tmp_path, upstream, launcher, options):
    (tmp_path / "work.py").write_text(WORKLOAD)
    result = launcher(*options, "-r", "session", "-o", "ours.pyisession", "work.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ours = Session.load(tmp_path / "ours.pyisession")
    report = upstream("-c", textwrap.dedent("""
        import json, sys
        from pyinstrument.session import Session
        from pyinstrument.renderers import ConsoleRenderer, JSONRenderer
        session = Session.load("ours.pyisession")
        print(ConsoleRenderer(unicode=True, show_all=True).render(session))
        print("JSON:" + JSONRenderer(show_all=True).render(session).replace("\\n", " "))
    """))
    text, _, json_text = report.partition("JSON:")
    assert "Shape.area" in text or "area" in text
    assert "wait_a_bit" in text and "sleep" in text
    root = json.loads(json_text)["root_frame"]
    assert root["time"] == pytest.approx(ours.root_frame().time, rel=0.01)
    # the program's <module> is at the top (under its thread with --all-threads), and
    # none of the command line's frames are anywhere
    top = root["children"][0] if options else root
    assert (top["function"], os.path.basename(top["file_path"])) == ("<module>", "work.py")
    for frame in json_tree_frames(root):
        path = frame["file_path"] or ""
        assert "pyinstrument" not in re.split(r"[/\\]", path), (frame["function"], path)
    assert "_run_profiled" not in text and "_exec_target" not in text


def test_repeat_sets_and_phases_load_in_upstream(tmp_path, upstream):
    (tmp_path / "work.py").write_text(WORKLOAD.replace("Shape().area()", "import pyinstrument\nwith pyinstrument.phase('area'):\n    Shape().area()"))
    result = pyinstrument("--repeat", "2", "-r", "session", "-o", "set.pyisession", "work.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ours = Session.load(tmp_path / "set.pyisession")
    assert len(ours.runs) == 2 and ours.phases.names == ["area"]
    total = upstream("-c", textwrap.dedent("""
        from pyinstrument.session import Session
        session = Session.load("set.pyisession")
        print(session.root_frame().time, session.sample_count)
    """))
    seconds, samples = total.split()
    assert float(seconds) == pytest.approx(ours.root_frame().time, rel=0.01)  # both runs, added up
    assert int(samples) == ours.sample_count


def test_hostile_session_loads_in_upstream(tmp_path, upstream):
    hostile_session().save(tmp_path / "h.pyisession")
    names = upstream("-c", textwrap.dedent("""
        import json
        from pyinstrument.session import Session
        session = Session.load("h.pyisession")
        frames, stack = [], [session.root_frame()]
        while stack:
            frame = stack.pop()
            frames.append([frame.function, frame.file_path])
            stack.extend(frame.children)
        print(json.dumps(frames))
    """))
    seen = json.loads(names)
    functions = {f for f, _ in seen}
    paths = {p for _, p in seen}
    for name in HOSTILE_NAMES:
        if "\x00" not in name:  # upstream splits frame strings at every NUL
            assert name in functions
    assert set(HOSTILE_PATHS) <= paths


def test_sessions_upstream_saves_load_here(tmp_path, upstream):
    (tmp_path / "work.py").write_text(WORKLOAD)
    upstream("-m", "pyinstrument", "-r", "session", "-o", "upstream.pyisession", "work.py")
    session = Session.load(tmp_path / "upstream.pyisession")
    assert session.frame_records_cpu is None and session.timeline is None  # what upstream does not write
    text = ConsoleRenderer().render(session)
    assert "area" in text and "wait_a_bit" in text and "sleep" in text
    # every renderer reads it: through the command line, with the extension choosing
    for outfile in ["r.json", "r.speedscope.json", "r.pstats", "r.collapsed", "r.svg", "r.firefox.json",
                    "r.trace.json", "r.pb.gz", "r.pyisession"]:
        result = pyinstrument("--load", "upstream.pyisession", "-o", outfile, cwd=tmp_path)
        assert result.returncode == 0, (outfile, result.stderr)
        assert (tmp_path / outfile).stat().st_size > 0


# saves the session of a coroutine awaiting 0.1 s, profiled from inside its task
ASYNC_PROGRAM = textwrap.dedent("""
    import asyncio
    from pyinstrument import Profiler

    async def nap():
        await asyncio.sleep(0.1)

    async def main():
        with Profiler(async_mode="enabled") as profiler:
            await nap()
        profiler.last_session.save("async.pyisession")

    asyncio.run(main())
""")


def test_upstream_async_session_loads_here(tmp_path, upstream):
    (tmp_path / "aio.py").write_text(ASYNC_PROGRAM)
    upstream("aio.py")
    text = ConsoleRenderer(show_all=True).render(Session.load(tmp_path / "async.pyisession"))
    assert "[await]" in text and "nap" in text


def test_our_async_session_loads_in_upstream(tmp_path, upstream):
    (tmp_path / "aio.py").write_text(ASYNC_PROGRAM)
    result = subprocess.run([sys.executable, "aio.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = upstream("-c", textwrap.dedent("""
        from pyinstrument.session import Session
        root = Session.load("async.pyisession").root_frame()
        print(root.await_time())
    """))
    assert float(report) >= 0.08  # upstream counts our [await] frames as await time


def test_the_command_lines_exec_running_no_module_is_its_own_work():
    # a tick that meets exec setting the program's <module> up or tearing it down (~35 µs
    # that a tick met in about 1 run in 6 at some start-up timings) is the command line's,
    # not the program's: before this the report's root was [root], not <module>
    from pyinstrument import profiler
    from pyinstrument.__main__ import _exec_target

    code = _exec_target.__code__
    stem = [FrameInfo.code("_exec_target", code.co_filename, code.co_firstlineno)]
    module = FrameInfo.code("<module>", "script.py", 1)
    sleep = FrameInfo.code("sleep", "<built-in>", 0)
    records = [
        (stem + [module], 0.05),
        (stem + [FrameInfo.code("exec", "<built-in>", 0)], 0.001),
        (stem + [FrameInfo.code("[unknown C call]", "<built-in>", 0)], 0.001),
        (stem + [module, sleep], 0.02),
    ]
    table, start = profiler._strip_command_line_frames(_table_of(records), stem)
    assert start == []
    assert table.records() == [([module.text], 0.05), ([], 0.0), ([], 0.0), ([module.text, sleep.text], 0.02)]


def _table_of(records):
    return FrameTable.from_records([([f.text for f in stack], t) for stack, t in records], [0.0] * len(records))


def test_what_the_command_lines_own_code_calls_is_its_own_work():
    # a tick in threading.enumerate(), called by the command line's wait for the
    # program's threads, once made threading.py a second root of the report ([root])
    import threading

    from pyinstrument import profiler
    from pyinstrument.cli import target

    code = target._exec_target.__code__
    stem = [FrameInfo.code("_exec_target", code.co_filename, code.co_firstlineno)]
    wait = target._wait_for_threads.__code__
    waiting = FrameInfo.code("_wait_for_threads", wait.co_filename, wait.co_firstlineno)
    enumerate_ = threading.enumerate.__code__
    listing = FrameInfo.code("enumerate", enumerate_.co_filename, enumerate_.co_firstlineno)
    module = FrameInfo.code("<module>", "script.py", 1)
    records = [
        (stem + [module], 0.05),
        (stem + [waiting, listing], 0.001),
        (stem + [waiting, listing, FrameInfo.code("len", "<built-in>", 0)], 0.001),
    ]
    table, _ = profiler._strip_command_line_frames(_table_of(records), stem)
    assert table.records() == [([module.text], 0.05), ([], 0.0), ([], 0.0)]


def test_a_start_stack_frame_calling_c_is_the_command_lines_own_work():
    # a tick between _exec_target's return and stop() (3.9: run_profiled in an [unknown C
    # call]) once put runpy's frames beside the program under a [root] (1 run in ~30)
    from pyinstrument import profiler
    from pyinstrument.cli import target

    run, exec_ = target.run_profiled.__code__, target._exec_target.__code__
    stem = [FrameInfo.code(code.co_name, code.co_filename, code.co_firstlineno) for code in (run, exec_)]
    module = FrameInfo.code("<module>", "script.py", 1)
    unknown = FrameInfo.code("[unknown C call]", "<built-in>", 0)
    elsewhere = FrameInfo.code("callback", "app.py", 7)
    records = [(stem + [module], 0.05), (stem[:1] + [unknown], 0.001), (stem[:1] + [elsewhere], 0.001)]
    table, _ = profiler._strip_command_line_frames(_table_of(records), stem)
    # the program's code, even called from there, stays
    assert table.records() == [([module.text], 0.05), ([], 0.0), ([stem[0].text, elsewhere.text], 0.001)]
