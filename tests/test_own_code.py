"""The profiler's own frames are told by its code objects, recorded in the session,
not by the name of the file they are in (pyinstrument.own_code)."""

from __future__ import annotations

import inspect

from sessions import APP, make_session
from sessions import frame_string as fs

from pyinstrument import own_code, profiler
from pyinstrument.renderers import ConsoleRenderer, SpeedscopeRenderer
from pyinstrument.renderers.stacks import SampleStacks
from pyinstrument.session import Session

#: the profiler's code, as if its module lived in a file of another name
RENAMED = "/opt/tools/sampling/engine_glue.py"
OWN = {(RENAMED, 40): own_code.MACHINERY, (RENAMED, 90): own_code.WRAPPER}
MAIN = fs("main", f"{APP}/job.py", 1)
WORK = fs("work", f"{APP}/job.py", 10)
STOP = fs("Profiler.stop", RENAMED, 40)
WRAPPER = fs("profile.__call__.<locals>.wrapper", RENAMED, 90)


def renamed_session(**kwargs):
    return make_session(
        [([MAIN, WRAPPER, WORK], 0.8), ([MAIN, STOP], 0.2)],
        cpu=[0.8, 0.2],
        profiler_code=OWN,
        **kwargs,
    )


def test_the_profilers_code_is_every_function_of_its_module():
    own = own_code.profiler_code()
    stop = profiler.Profiler.stop.__code__
    assert own[(stop.co_filename, stop.co_firstlineno)] == own_code.MACHINERY
    wrappers = [kind for (path, _), kind in own.items() if kind == own_code.WRAPPER]
    assert len(wrappers) == 2  # the profile decorator's, sync and async
    assert all(path == inspect.getsourcefile(profiler) for path, _ in own)


def test_a_recorded_session_keeps_its_profiler_code_through_a_file(tmp_path):
    with profiler.Profiler() as p:
        sum(range(1000))
    session = p.last_session
    assert session.profiler_code == own_code.profiler_code()
    session.save(tmp_path / "s.pyisession")
    assert Session.load(tmp_path / "s.pyisession").profiler_code == session.profiler_code


def test_own_frames_are_left_out_wherever_the_profiler_lives():
    session = renamed_session()
    text = ConsoleRenderer(show_all=True, unicode=True, color=False).render(session)
    assert "work" in text and "wrapper" not in text and "Profiler.stop" not in text
    stacks = SampleStacks(session)
    names = [[stacks.frames[f].name for f in frames] for frames in stacks.stacks]
    assert names == [["main", "work"], []]  # the wrapper gives way to what it called; stop() is left out
    assert "engine_glue" not in SpeedscopeRenderer().render(session)


def test_a_session_without_the_record_falls_back_to_the_file_name():
    # upstream's sessions and ours before the record: the profiler is pyinstrument/profiler.py
    session = renamed_session()
    session.profiler_code = None
    assert "Profiler.stop" in ConsoleRenderer(show_all=True, unicode=True, color=False).render(session)
    package = "/venv/lib/python3.12/site-packages/pyinstrument/profiler.py"
    old = make_session([([MAIN, fs("Profiler.stop", package, 40)], 0.2), ([MAIN, WORK], 0.8)])
    assert "Profiler.stop" not in ConsoleRenderer(show_all=True, unicode=True, color=False).render(old)
