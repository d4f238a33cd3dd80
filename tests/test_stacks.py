"""SampleStacks: the flat stacks the external formats are written from."""

from sessions import APP, frame_string, make_session, thread_root

from pyinstrument.renderers.stacks import SampleStacks

MODULE = frame_string("<module>", f"{APP}/app.py", 1, current=9)
WORK = frame_string("work", f"{APP}/app.py", 3, current=4)
CALLER = frame_string("caller", f"{APP}/app.py", 7, current=8)
LAUNCHER = frame_string("main", "/venv/lib/python3.12/site-packages/pyinstrument/__main__.py", 1000, current=1010)
RUNPY = frame_string("_run_code", "/usr/lib/python3.12/runpy.py", 80, current=88)
PROFILER_STOP = frame_string("Profiler.stop", "/venv/lib/python3.12/site-packages/pyinstrument/profiler.py", 300,
                             cls="Profiler", current=310)
WRAPPER = frame_string("profile.<locals>.wrapper", "/venv/lib/python3.12/site-packages/pyinstrument/profiler.py",
                       400, current=405)


def names(stacks, record):
    return [stacks.frames[f].name for f in stacks.stacks[record]]


def test_threads_sharing_a_name_stay_apart_and_the_main_thread_comes_first():
    session = make_session([
        ([thread_root("pool", 11), WORK], 0.1),
        ([thread_root("pool", 12), WORK], 0.2),
        ([thread_root("MainThread", 1), MODULE], 0.3),
    ])
    stacks = SampleStacks(session)
    assert stacks.threads == ["MainThread", "pool", "pool"]
    assert stacks.thread_idents == [1, 11, 12]
    assert [stacks.thread_of[i] for i in range(3)] == [1, 2, 0]


def test_only_what_is_not_the_program_is_removed():
    session = make_session(
        [
            ([LAUNCHER, RUNPY, MODULE, CALLER, WORK], 0.5),  # the command line's frames above the script
            ([MODULE, CALLER, WRAPPER, WORK], 0.25),  # @profile's wrapper gives way to the function
            ([MODULE, CALLER, PROFILER_STOP], 0.125),  # the profiler stopping: left out
        ],
        cpu=[0.5, 0.25, 0.125],
        start_call_stack=[MODULE, CALLER],
    )
    stacks = SampleStacks(session)
    assert names(stacks, 0) == ["<module>", "caller", "work"]  # launcher gone (no start stack prefix)
    assert names(stacks, 1) == ["caller", "work"]  # stem above Profiler.start's caller trimmed
    assert names(stacks, 2) == []
    assert stacks.wall == [0.5, 0.25, 0.0] and stacks.cpu == [0.5, 0.25, 0.0]
    assert stacks.lines[1] == (8, 4)
    work = stacks.frames[stacks.stacks[1][-1]]
    assert (work.file_path_short, work.line_no, work.is_application_code) == ("app.py", 3, True)
    # the left-out record still took its time on the clock
    assert sum(seconds for _, seconds in stacks.chronological()) == 0.875
