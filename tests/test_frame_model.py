"""The frame model: typed frames in the session's table, upstream's strings only at its edges."""

import threading
import time

import pytest

from pyinstrument import Profiler
from pyinstrument.frame import Frame, frame_info_get_identifier
from pyinstrument.frame_table import FrameInfo, FrameKind, FrameTable
from pyinstrument.session import Session


class Kettle:
    def boil(self):
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass
        time.sleep(0.03)


def _worker():
    time.sleep(0.05)


def test_a_profile_holds_typed_frames_of_every_kind():
    worker = threading.Thread(target=_worker, name="worker-1")
    with Profiler(all_threads=True, interval=0.001) as profiler:
        worker.start()
        Kettle().boil()
        worker.join()
    frames = profiler.last_session.frame_table.frames
    assert all(isinstance(f, FrameInfo) for f in frames)
    by_name = {f.function: f for f in frames}

    boil = by_name["Kettle.boil"]
    assert (boil.kind, boil.file, boil.first_line) == (FrameKind.CODE, __file__, Kettle.boil.__code__.co_firstlineno)
    assert boil.line > boil.first_line  # the line it was executing
    assert by_name["sleep"].kind == FrameKind.C_FUNCTION
    threads = {f.function: f for f in frames if f.kind == FrameKind.THREAD}
    assert {"MainThread", "worker-1"} <= set(threads)
    assert threads["worker-1"].first_line != threads["MainThread"].first_line  # each its own key


def test_the_session_file_keeps_upstreams_strings_and_reads_back_the_same_frames(tmp_path):
    with Profiler(interval=0.001) as profiler:
        Kettle().boil()
    session = profiler.last_session
    path = tmp_path / "kettle.pyisession"
    session.save(path)
    loaded = Session.load(path)
    assert loaded.frame_table.frames == session.frame_table.frames
    # upstream's records are frame strings, in upstream's format
    stack = next(stack for stack, _ in loaded.frame_records if any("Kettle.boil" in f for f in stack))
    boil = next(f for f in stack if f.startswith("Kettle.boil\x00"))
    assert boil.startswith(f"Kettle.boil\x00{__file__}\x00{Kettle.boil.__code__.co_firstlineno}\x01l")


@pytest.mark.parametrize(
    "text",
    [
        "main\x00/app/demo.py\x0030",
        "Worker.fast\x00/app/demo.py\x0020\x01cWorker\x01l21",
        "helper\x00/app/demo.py\x005\x01l7\x01h1",
        "sleep\x00<built-in>\x000",
        "MainThread\x00<thread>\x00140230",
        "odd\x00name\x00/app/demo.py\x003\x01l4",  # a NUL in the name: split from the right
        "future\x00/app/demo.py\x003\x01l4\x01x9",  # an attribute this version does not know
        "[self]",
        "[await]",
        "[12 frames truncated]",
    ],
)
def test_a_frame_string_reads_back_as_it_was_written(text):
    assert FrameInfo.parse(text).text == text


@pytest.mark.parametrize(
    "text, kind",
    [
        ("f\x00/a.py\x001", FrameKind.CODE),
        ("len\x00<built-in>\x000", FrameKind.C_FUNCTION),
        ("worker\x00<thread>\x007", FrameKind.THREAD),
        ("[self]", FrameKind.SYNTHETIC),
        # not function NUL file NUL first line: kept whole, as a name
        ("f\x00/a.py", FrameKind.SYNTHETIC),
        ("f\x00/a.py\x00first", FrameKind.SYNTHETIC),
        ("f\x00/a.py\x00007", FrameKind.SYNTHETIC),
    ],
)
def test_every_frame_string_has_one_kind_and_keeps_its_identifier(text, kind):
    info = FrameInfo.parse(text + "\x01l3")
    assert info.kind == kind
    assert info.identifier == frame_info_get_identifier(text + "\x01l3") == text
    assert info.line == 3


def test_upstreams_frame_api_reads_the_same_model():
    method = Frame("Worker.fast\x00/app/demo.py\x0020\x01cWorker\x01l21")
    assert (method.function, method.class_name, method.file_path, method.line_no) == (
        "fast",
        "Worker",
        "/app/demo.py",
        20,
    )
    assert method.frame_info.kind == FrameKind.CODE
    assert Frame("worker\x00<thread>\x007").is_thread
    assert Frame("[self]").is_synthetic
    assert not Frame("len\x00<built-in>\x000").is_synthetic


def test_a_table_made_from_upstreams_records_gives_them_back():
    records = [
        (["<module>\x00/app/demo.py\x001\x01l40", "main\x00/app/demo.py\x0030\x01l33"], 0.5),
        (["<module>\x00/app/demo.py\x001\x01l40", "sleep\x00<built-in>\x000"], 0.25),
        ([], 0.0),
    ]
    table = FrameTable.from_records(records)
    assert len(table.frames) == 3  # each distinct frame once
    assert table.records() == records


def test_a_thread_named_with_the_formats_separators_keeps_its_session_whole(tmp_path):
    def work():
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass

    worker = threading.Thread(target=work, name="odd\x00name\x01here")
    with Profiler(all_threads=True, interval=0.001) as profiler:
        worker.start()
        worker.join()
    path = tmp_path / "odd.pyisession"
    profiler.last_session.save(path)
    frames = Session.load(path).frame_table.frames
    assert any(f.kind == FrameKind.THREAD and f.function == "odd name here" for f in frames)
    assert not any(f.kind == FrameKind.SYNTHETIC and f.function != "[GIL wait]" for f in frames)
