"""The console report, as a user reads it, rendered from hand-made sessions."""

from __future__ import annotations

import json
import re
import time

import pytest

from pyinstrument.renderers import ConsoleRenderer, FrameRenderer, Renderer
from pyinstrument.session import Session

APP = "/home/user/project"
PREFIX = "/usr"
STDLIB = "/usr/lib/python3.11"
SITE = STDLIB + "/site-packages"
PKG = "/home/user/pyinstrument-c/src/pyinstrument"


def fi(function, path, line, *, cls=None, current=None, hide=False):
    """A frame string as the engine writes it."""
    s = f"{function}\x00{path}\x00{line}"
    if cls:
        s += "\x01c" + cls
    if current is not None:
        s += f"\x01l{current}"
    if hide:
        s += "\x01h1"
    return s


def make_session(records, *, interval=0.001, start_call_stack=(), description="Program: demo.py", **kwargs):
    total = sum(t for _, t in records)
    return Session(
        frame_records=records,
        start_time=time.mktime((2024, 5, 17, 14, 3, 9, 0, 0, -1)),
        duration=total,
        min_interval=interval,
        max_interval=interval,
        sample_count=int(round(total / interval)),
        start_call_stack=list(start_call_stack),
        target_description=description,
        cpu_time=total / 2,
        sys_path=kwargs.pop("sys_path", [APP, STDLIB, SITE]),
        sys_prefixes=kwargs.pop("sys_prefixes", [PREFIX]),
        **kwargs,
    )


def body(text):
    """The report's lines after the target description (the tree or list)."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line == "Program: demo.py")
    result = lines[index + 1 :]
    while result and not result[0].strip():
        result.pop(0)
    while result and not result[-1].strip():
        result.pop()
    return result


MAIN = fi("<module>", f"{APP}/demo.py", 1, current=30)
RUN = fi("main", f"{APP}/demo.py", 30, current=33)
SLOW = fi("slow", f"{APP}/demo.py", 10, current=12)
FAST = fi("fast", f"{APP}/demo.py", 20, current=21)
SLEEP = fi("sleep", "<built-in>", 0)


def simple_session(**kwargs):
    return make_session(
        [
            ([MAIN, RUN, SLOW], 0.300),
            ([MAIN, RUN, SLOW, SLEEP], 0.400),
            ([MAIN, RUN, FAST], 0.100),
            ([MAIN, RUN], 0.200),
        ],
        **kwargs,
    )


# --- the tree ---------------------------------------------------------------------------


def test_tree_lines_times_names_and_positions():
    text = ConsoleRenderer().render(simple_session())
    assert body(text) == [
        "1.000 <module>  demo.py:1",
        "`- 1.000 main  demo.py:30",
        "   |- 0.700 slow  demo.py:10",
        "   |  |- 0.400 sleep  <built-in>",
        "   |  `- 0.300 [self]  demo.py",
        "   |- 0.200 [self]  demo.py",
        "   `- 0.100 fast  demo.py:20",
    ]


def test_unicode_glyphs():
    text = ConsoleRenderer(unicode=True).render(simple_session())
    assert body(text)[1:4] == [
        "└─ 1.000 main  demo.py:30",
        "   ├─ 0.700 slow  demo.py:10",
        "   │  ├─ 0.400 sleep  <built-in>",
    ]


def test_time_decimals_follow_the_interval():
    session = make_session([([MAIN, SLOW], 0.0123), ([MAIN], 0.0021)], interval=0.0001)
    assert body(ConsoleRenderer().render(session))[:2] == [
        "0.0144 <module>  demo.py:1",
        "|- 0.0123 slow  demo.py:10",
    ]
    coarse = make_session([([MAIN, SLOW], 0.0123), ([MAIN], 0.0021)], interval=0.01)
    assert body(ConsoleRenderer().render(coarse))[0] == "0.014 <module>  demo.py:1"


def test_percent_of_total():
    text = ConsoleRenderer(time="percent_of_total").render(simple_session())
    assert body(text)[:3] == [
        "100.0% <module>  demo.py:1",
        "`- 100.0% main  demo.py:30",
        "   |- 70.0% slow  demo.py:10",
    ]
    assert "10.0% fast  demo.py:20" in text


def test_invalid_time_option_is_refused():
    with pytest.raises(ValueError, match="percent_of_total"):
        ConsoleRenderer(time="percent")
    with pytest.raises(ValueError, match="flat_time"):
        ConsoleRenderer(flat_time="cumulative")


def test_class_names_and_qualified_names_are_shown_as_upstream_shows_them():
    method_by_attribute = fi("compute", f"{APP}/worker.py", 7, cls="Worker")
    qualified = fi("Worker.prepare", f"{APP}/worker.py", 3)
    nested = fi("outer.<locals>.inner", f"{APP}/worker.py", 20)
    session = make_session([([MAIN, method_by_attribute], 0.5), ([MAIN, qualified], 0.3), ([MAIN, nested], 0.2)])
    lines = body(ConsoleRenderer().render(session))
    assert "|- 0.500 Worker.compute  worker.py:7" in lines
    assert "|- 0.300 Worker.prepare  worker.py:3" in lines
    assert "`- 0.200 inner  worker.py:20" in lines


def test_paths_are_shortened_relative_to_the_nearest_sys_path_entry():
    deep = fi("handler", f"{APP}/pkg/sub/views.py", 5)
    lib = fi("get", f"{SITE}/requests/api.py", 64)
    outside = fi("helper", "/opt/tools/helper.py", 2)
    session = make_session(
        [([MAIN, deep], 0.5), ([MAIN, lib], 0.3), ([MAIN, outside], 0.2)],
        sys_path=[APP, STDLIB, SITE, f"{APP}/pkg"],
    )
    text = ConsoleRenderer(show_all=True).render(session)
    assert "0.500 handler  sub/views.py:5" in text
    assert "0.300 get  requests/api.py:64" in text
    assert "0.200 helper  /opt/tools/helper.py:2" in text


def test_colours():
    text = ConsoleRenderer(color=True).render(simple_session())
    lines = body(text)
    red, yellow, green, dim, reset = "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[2m", "\x1b[0m"
    # 100%: red; application code highlighted; position dim
    assert lines[0].startswith(f"{red}1.000{reset} ")
    assert f"{dim}demo.py:1{reset}" in lines[0]
    app_highlight = "\x1b[48;5;24m\x1b[38;5;15m"
    assert f"{app_highlight}<module>{reset}" in lines[0]
    # 70% red, 40% yellow, 10% green, 20% (exactly) green, built-in code not highlighted
    assert f"{red}0.700{reset}" in lines[2]
    sleep_line = lines[3]
    assert f"{yellow}0.400{reset} sleep  " in sleep_line
    assert f"{green}0.100{reset}" in lines[6]
    tiny = make_session([([MAIN, SLOW], 0.97), ([MAIN, FAST], 0.03)])
    tiny_lines = body(ConsoleRenderer(color=True).render(tiny))
    assert tiny_lines[-1].startswith(f"`- {dim}0.030{reset}")


def test_no_escape_codes_without_colour():
    text = ConsoleRenderer(color=False, unicode=True).render(simple_session())
    assert "\x1b[" not in text


def test_header():
    session = simple_session()
    text = ConsoleRenderer().render(session)
    head = text.split("Program: demo.py")[0]
    assert "Recorded: 14:03:09" in head
    assert "Samples:  1000" in head
    assert "Duration: 1.000" in head
    assert "CPU time: 0.500" in head
    assert "pyinstrument" in head
    version = re.search(r"\bv(\S+)", head)
    assert version is not None
    try:
        from pyinstrument import __version__
    except Exception:
        __version__ = "?"
    assert version.group(1) == __version__
    assert "Dropped" not in head


def test_header_reports_dropped_samples():
    session = make_session([([MAIN], 0.5)], dropped_samples=7)
    assert re.search(r"Dropped:\s+7\b", ConsoleRenderer().render(session))


def test_empty_session():
    empty = make_session([])
    text = ConsoleRenderer().render(empty)
    assert "No samples were recorded." in text
    assert "Program: demo.py" in text
    short = ConsoleRenderer(short_mode=True).render(empty)
    assert "No samples were recorded." in short


def test_short_mode_is_a_dotted_box():
    text = ConsoleRenderer(short_mode=True, unicode=True).render(simple_session())
    lines = [line for line in text.splitlines() if line]
    assert all(line.startswith(".") for line in lines)
    assert "Program: demo.py" in lines[0]
    assert set(lines[-1]) == {"."} and len(lines[-1]) >= 40
    assert ".  1.000 <module>  demo.py:1" in lines
    assert ".  └─ 1.000 main  demo.py:30" in lines
    assert "Recorded:" not in text


# --- library code -----------------------------------------------------------------------

RE_COMPILE = fi("compile", f"{STDLIB}/re/__init__.py", 225)
RE_INNER = fi("_compile", f"{STDLIB}/re/__init__.py", 272)
RE_PARSE = fi("parse", f"{STDLIB}/re/_parser.py", 979)
ENUM = fi("__and__", f"{STDLIB}/enum.py", 1500)


def library_session():
    return make_session(
        [
            ([MAIN, RUN, RE_COMPILE, RE_INNER, RE_PARSE], 0.05),
            ([MAIN, RUN, RE_COMPILE, RE_INNER, RE_PARSE, ENUM], 0.05),
            ([MAIN, RUN, RE_COMPILE, RE_INNER], 0.05),
            ([MAIN, RUN, SLOW], 0.85),
        ]
    )


def test_library_frames_are_folded():
    lines = body(ConsoleRenderer().render(library_session()))
    assert lines == [
        "1.000 <module>  demo.py:1",
        "`- 1.000 main  demo.py:30",
        "   |- 0.850 slow  demo.py:10",
        "   `- 0.150 compile  re/__init__.py:225",
        "         [3 frames hidden]  re, enum",
    ]


def test_show_all_keeps_library_frames():
    lines = body(ConsoleRenderer(show_all=True).render(library_session()))
    assert "      |- 0.100 parse  re/_parser.py:979" in "\n".join(lines)
    assert any("__and__  enum.py:1500" in line for line in lines)
    assert not any("hidden" in line for line in lines)


def test_callbacks_into_application_code_stay_visible():
    callback = fi("on_match", f"{APP}/demo.py", 50)
    session = make_session(
        [
            ([MAIN, RE_COMPILE, RE_INNER, RE_PARSE, callback], 0.6),
            ([MAIN, RE_COMPILE, RE_INNER, RE_PARSE], 0.1),
            ([MAIN, RE_COMPILE, RE_INNER], 0.1),
            ([MAIN], 0.2),
        ]
    )
    lines = body(ConsoleRenderer().render(session))
    assert lines == [
        "1.000 <module>  demo.py:1",
        "|- 0.800 compile  re/__init__.py:225",
        "|     [1 frames hidden]  re",
        "|        0.700 parse  re/_parser.py:979",
        "|        |- 0.600 on_match  demo.py:50",
        "|        `- 0.100 [self]  re/_parser.py",
        "`- 0.200 [self]  demo.py",
    ]


def test_self_time_below_hidden_frames_names_its_function():
    session = make_session(
        [
            ([MAIN, RE_COMPILE, RE_INNER, RE_PARSE, fi("on_match", f"{APP}/demo.py", 50)], 0.6),
            ([MAIN, RE_COMPILE, RE_INNER], 0.1),
            ([MAIN, RE_COMPILE], 0.1),
            ([MAIN], 0.2),
        ]
    )
    lines = body(ConsoleRenderer().render(session))
    # compile's own time is printed below the hidden line: it says it is compile's
    assert lines == [
        "1.000 <module>  demo.py:1",
        "|- 0.800 compile  re/__init__.py:225",
        "|     [1 frames hidden]  re",
        "|        0.600 parse  re/_parser.py:979",
        "|        `- 0.600 on_match  demo.py:50",
        "|        0.100 [self] (in compile)  re/__init__.py",
        "`- 0.200 [self]  demo.py",
    ]


def test_threads_sharing_a_name_are_numbered_and_idents_are_not_shown():
    pool_a, pool_b = fi("pool", "<thread>", 140552690715520), fi("pool", "<thread>", 140552682322816)
    main = fi("MainThread", "<thread>", 140552700000000)
    session = make_session([([main, MAIN], 0.5), ([pool_a, SLOW], 0.3), ([pool_b, FAST], 0.2)])
    lines = body(ConsoleRenderer().render(session))
    assert lines[0] == "[all threads]  3 threads; their times add up to 1.000 s"
    assert [line for line in lines if line[:3] in ("|- ", "`- ")] == [
        "|- 0.500 MainThread",
        "|- 0.300 pool #2",  # the lower ident is #1
        "`- 0.200 pool #1",
    ]
    assert "1405526" not in "\n".join(lines)
    percent = body(ConsoleRenderer(time="percent_of_total").render(session))
    assert percent[0] == lines[0] and percent[1] == "|- 50.0% MainThread"


def test_library_frame_with_a_large_share_of_its_own_stays_visible():
    session = make_session(
        [
            ([MAIN, RE_COMPILE, RE_INNER, RE_PARSE], 0.5),
            ([MAIN, RE_COMPILE, RE_INNER, RE_PARSE, ENUM], 0.01),
            ([MAIN, RE_COMPILE, RE_INNER], 0.09),
            ([MAIN, SLOW], 0.4),
        ]
    )
    text = ConsoleRenderer().render(session)
    assert "0.510 parse  re/_parser.py:979" in text
    assert "[1 frames hidden]  re" in text


def test_hide_and_show_regex():
    helper = fi("helper", f"{APP}/vendored/helper.py", 3)
    inner = fi("inner", f"{APP}/vendored/helper.py", 9)
    other = fi("other", f"{APP}/vendored/other.py", 1)
    session = make_session(
        [
            ([MAIN, helper, inner], 0.15),
            ([MAIN, helper, other], 0.15),
            ([MAIN, helper], 0.1),
            ([MAIN, RE_COMPILE, RE_INNER, RE_PARSE], 0.6),
        ]
    )
    plain = "\n".join(body(ConsoleRenderer().render(session)))
    assert "inner  vendored/helper.py:9" in plain
    hidden = ConsoleRenderer(processor_options={"hide_regex": r".*/vendored/.*"}).render(session)
    assert "inner  vendored/helper.py:9" not in hidden
    assert "other  vendored/other.py:1" not in hidden
    assert "0.400 helper  vendored/helper.py:3" in hidden
    assert "[2 frames hidden]  vendored" in hidden
    shown = ConsoleRenderer(processor_options={"show_regex": r".*/re/.*"}).render(session)
    assert "parse  re/_parser.py:979" in shown
    assert "hidden" not in shown


def test_filter_threshold():
    tiny = fi("tiny", f"{APP}/demo.py", 90)
    session = make_session([([MAIN, SLOW], 0.995), ([MAIN, tiny], 0.005)])
    assert "tiny" not in ConsoleRenderer().render(session)
    assert "0.005 tiny  demo.py:90" in ConsoleRenderer(processor_options={"filter_threshold": 0}).render(session)
    assert "0.005 tiny  demo.py:90" in ConsoleRenderer(show_all=True).render(session)
    stricter = ConsoleRenderer(processor_options={"filter_threshold": 0.5}).render(session)
    assert "slow" in stricter and "tiny" not in stricter


# --- flat -------------------------------------------------------------------------------


def test_flat_by_self_time():
    helper = fi("helper", f"{APP}/demo.py", 40)
    session = make_session(
        [
            ([MAIN, SLOW, helper], 0.25),
            ([MAIN, FAST, helper], 0.25),
            ([MAIN, SLOW], 0.3),
            ([MAIN, SLOW, SLEEP], 0.1),
            ([MAIN], 0.1),
        ]
    )
    lines = body(ConsoleRenderer(flat=True).render(session))
    assert lines == [
        "0.500 helper  demo.py:40",
        "0.300 slow  demo.py:10",
        "0.100 <module>  demo.py:1",
        "0.100 sleep  <built-in>",
    ]


def test_flat_by_total_time_counts_recursion_once():
    fib = fi("fib", f"{APP}/demo.py", 60)
    session = make_session(
        [
            ([MAIN, fib, fib, fib], 0.4),
            ([MAIN, fib, fib], 0.3),
            ([MAIN, fib], 0.1),
            ([MAIN, FAST], 0.2),
        ]
    )
    lines = body(ConsoleRenderer(flat=True, flat_time="total").render(session))
    assert lines == [
        "1.000 <module>  demo.py:1",
        "0.800 fib  demo.py:60",
        "0.200 fast  demo.py:20",
    ]


def test_flat_includes_functions_called_from_many_places():
    # each call site is below the threshold, the function as a whole is not
    leaf = fi("leaf", f"{APP}/demo.py", 70)
    callers = [fi(f"caller{i}", f"{APP}/demo.py", 100 + i) for i in range(100)]
    records = [([MAIN, caller, leaf], 0.005) for caller in callers] + [([MAIN], 0.5)]
    session = make_session(records)
    lines = body(ConsoleRenderer(flat=True).render(session))
    assert lines == ["0.500 <module>  demo.py:1", "0.500 leaf  demo.py:70"]


def test_flat_percent_and_colour():
    text = ConsoleRenderer(flat=True, time="percent_of_total", color=True).render(simple_session())
    assert "\x1b[33m40.0%\x1b[0m sleep" in text


# --- timeline ---------------------------------------------------------------------------


def test_timeline_keeps_separate_calls_in_order():
    records = [
        ([MAIN, SLOW], 0.2),
        ([MAIN, FAST], 0.1),
        ([MAIN, SLOW], 0.3),
    ]
    session = make_session(records)
    assert body(ConsoleRenderer(timeline=True).render(session)) == [
        "0.600 <module>  demo.py:1",
        "|- 0.200 slow  demo.py:10",
        "|- 0.100 fast  demo.py:20",
        "`- 0.300 slow  demo.py:10",
    ]
    assert body(ConsoleRenderer().render(session)) == [
        "0.600 <module>  demo.py:1",
        "|- 0.500 slow  demo.py:10",
        "`- 0.100 fast  demo.py:20",
    ]


def test_timeline_uses_the_sessions_timeline_order():
    # aggregated records, with the chronological order kept separately
    records = [([MAIN, SLOW], 0.5), ([MAIN, FAST], 0.2)]
    timeline = [(0, 0.1), (1, 0.1), (0, 0.3), (1, 0.1), (0, 0.1)]
    session = make_session(records, timeline=timeline)
    assert body(ConsoleRenderer(timeline=True).render(session)) == [
        "0.700 <module>  demo.py:1",
        "|- 0.100 slow  demo.py:10",
        "|- 0.100 fast  demo.py:20",
        "|- 0.300 slow  demo.py:10",
        "|- 0.100 fast  demo.py:20",
        "`- 0.100 slow  demo.py:10",
    ]
    # the aggregated view does not change
    assert body(ConsoleRenderer().render(session))[1] == "|- 0.500 slow  demo.py:10"


def test_timeline_of_interleaved_threads_keeps_each_threads_calls_together():
    t1 = fi("MainThread", "<thread>", 1001)
    t2 = fi("Thread-1 (worker)", "<thread>", 1002)
    records = [([t1, MAIN, SLOW], 0.1), ([t2, FAST], 0.1), ([t1, MAIN, RUN], 0.1)]
    # the sampler reads both threads on every tick
    timeline = [(0, 0.1), (1, 0.1), (0, 0.1), (1, 0.1), (2, 0.1), (1, 0.1)]
    session = make_session(records, timeline=timeline)
    assert body(ConsoleRenderer(timeline=True).render(session)) == [
        "[all threads]  2 threads; their times add up to 0.600 s",
        "|- 0.300 MainThread",
        "|  `- 0.300 <module>  demo.py:1",
        "|     |- 0.200 slow  demo.py:10",
        "|     `- 0.100 main  demo.py:30",
        "`- 0.300 Thread-1 (worker)",
        "   `- 0.300 fast  demo.py:20",
    ]


# --- what the tree starts with ------------------------------------------------------------


def test_command_line_launcher_frames_are_removed():
    thread = fi("MainThread", "<thread>", 140000)
    bin_script = fi("<module>", "/venv/bin/pyinstrument", 1, current=8)
    cli_main = fi("main", f"{PKG}/__main__.py", 30, current=300)
    run_path = fi("run_path", "<frozen runpy>", 262, current=291)
    run_code = fi("_run_code", "<frozen runpy>", 65, current=88)
    script = fi("<module>", "demo.py", 1, current=5)
    stop = fi("Profiler.stop", f"{PKG}/profiler.py", 150, current=160)
    session = make_session(
        [
            ([thread, bin_script, cli_main, run_path, run_code, script, SLOW], 0.6),
            ([thread, bin_script, cli_main, run_path, run_code, script], 0.3),
            ([thread, bin_script, cli_main, stop], 0.1),
        ],
        start_call_stack=[thread, bin_script, cli_main],
        sys_prefixes=[PREFIX, "/venv"],
    )
    lines = body(ConsoleRenderer().render(session))
    assert lines == [
        "0.900 <module>  demo.py:1",
        "|- 0.600 slow  demo.py:10",
        "`- 0.300 [self]  demo.py",
    ]


def test_profiler_frames_are_removed():
    exit_ = fi("Profiler.__exit__", f"{PKG}/profiler.py", 200)
    stop = fi("Profiler.stop", f"{PKG}/profiler.py", 150)
    session = make_session(
        [([MAIN, RUN, SLOW], 0.9), ([MAIN, RUN, exit_, stop], 0.1)],
        start_call_stack=[MAIN, RUN],
    )
    lines = body(ConsoleRenderer(show_all=True).render(session))
    assert lines == ["0.900 main  demo.py:30", "`- 0.900 slow  demo.py:10"]


def test_stem_above_the_profiler_start_is_trimmed():
    session = make_session([([MAIN, RUN, SLOW], 0.7), ([MAIN, RUN, FAST], 0.3)], start_call_stack=[MAIN, RUN])
    assert body(ConsoleRenderer().render(session))[0] == "1.000 main  demo.py:30"


def test_all_threads():
    t1 = fi("MainThread", "<thread>", 1001)
    t2 = fi("Thread-1 (worker)", "<thread>", 1002)
    session = make_session(
        [([t1, MAIN, RUN, SLOW], 0.6), ([t2, FAST, SLEEP], 0.4)],
        start_call_stack=[t1, MAIN, RUN],
    )
    lines = body(ConsoleRenderer(unicode=True).render(session))
    assert lines == [
        "[all threads]  2 threads; their times add up to 1.000 s",
        "├─ 0.600 MainThread",
        "│  └─ 0.600 main  demo.py:30",
        "│     └─ 0.600 slow  demo.py:10",
        "└─ 0.400 Thread-1 (worker)",
        "   └─ 0.400 fast  demo.py:20",
        "      └─ 0.400 sleep  <built-in>",
    ]


def test_importlib_and_tracebackhide_frames_are_removed():
    find = fi("_find_and_load", "<frozen importlib._bootstrap>", 1165)
    exec_module = fi("exec_module", "<frozen importlib._bootstrap_external>", 940)
    imported = fi("<module>", f"{APP}/heavy.py", 1)
    wrapper = fi("wrapper", f"{APP}/demo.py", 80, hide=True)
    session = make_session(
        [
            ([MAIN, find, exec_module, imported], 0.5),
            ([MAIN, wrapper, SLOW], 0.5),
        ]
    )
    lines = body(ConsoleRenderer().render(session))
    assert lines == [
        "1.000 <module>  demo.py:1",
        "|- 0.500 <module>  heavy.py:1",
        "`- 0.500 slow  demo.py:10",
    ]
    everything = ConsoleRenderer(show_all=True).render(session)
    assert "_find_and_load" in everything and "wrapper" in everything


# --- renderer classes -------------------------------------------------------------------


def test_renderer_interface():
    renderer = ConsoleRenderer()
    assert isinstance(renderer, FrameRenderer) and isinstance(renderer, Renderer)
    assert renderer.output_file_extension == "txt"
    assert renderer.output_is_binary is False
    with pytest.raises(NotImplementedError):
        Renderer().render(simple_session())


def test_custom_processor_list():
    renderer = ConsoleRenderer()
    renderer.processors = []
    text = renderer.render(library_session())
    assert "parse  re/_parser.py:979" in text
    assert "hidden" not in text


def test_session_survives_a_save_and_load(tmp_path):
    session = simple_session(timeline=[(0, 0.3), (1, 0.4), (2, 0.1), (3, 0.2)], frame_records_cpu=[0.3, 0.0, 0.1, 0.2])
    path = tmp_path / "demo.pyisession"
    session.save(path)
    data = json.loads(path.read_text())
    for key in (
        "start_time",
        "duration",
        "min_interval",
        "max_interval",
        "sample_count",
        "start_call_stack",
        "target_description",
        "cpu_time",
        "sys_path",
        "sys_prefixes",
        "frame_records",
    ):
        assert key in data
    assert data["frame_records"][0] == [[MAIN, RUN, SLOW], 0.3]
    loaded = Session.load(path)
    assert ConsoleRenderer().render(loaded) == ConsoleRenderer().render(session)
    assert ConsoleRenderer(timeline=True).render(loaded) == ConsoleRenderer(timeline=True).render(session)
    assert loaded.frame_records_cpu == [0.3, 0.0, 0.1, 0.2]


def test_combined_sessions_keep_both_timelines_in_order():
    first = simple_session(timeline=[(0, 0.3), (1, 0.4)])
    second = simple_session(timeline=[(2, 0.1), (3, 0.2)])
    second.start_time = first.start_time + 10
    combined = Session.combine(second, first)
    n = len(first.frame_records)
    assert [i for i, _ in combined.timeline] == [0, 1, 2 + n, 3 + n]
    assert [s for _, s in combined.timeline] == pytest.approx([0.3, 0.4, 0.1, 0.2])
    assert combined.root_frame(timeline=True).time == pytest.approx(1.0)


@pytest.mark.parametrize("index", [-1, 4, 10**12])
def test_timeline_naming_a_missing_record_is_refused(index):
    with pytest.raises(ValueError, match=f"frame record {index}, which does not exist"):
        simple_session(timeline=[(0, 0.3), (index, 0.4)])


def test_big_tree_renders_quickly():
    # 100k distinct nodes: catches any quadratic step in building, processing or
    # rendering (the bound is generous for slow machines; it is ~1 s of CPU normally)
    records = []
    fns = [fi(f"f{i}", f"{APP}/mod{i % 40}.py" if i % 3 else f"{SITE}/lib{i % 7}/m.py", i) for i in range(3000)]
    for a in range(40):
        for b in range(50):
            for c in range(50):
                records.append(([MAIN, fns[a], fns[100 + b], fns[1000 + c]], 0.001))
    deep = [MAIN] + [fns[i % 3000] for i in range(3000)]
    records.append((deep, 1.0))
    session = make_session(records)
    # CPU time, not wall time: other programs on a busy machine do not count
    start = time.process_time()
    text = ConsoleRenderer(processor_options={"filter_threshold": 0}).render(session)
    elapsed = time.process_time() - start
    assert text.count("\n") > 50_000
    assert elapsed < 10, elapsed


def test_control_characters_from_the_program_cannot_reach_the_terminal():
    # a thread's name, a file's path and the description come from the profiled program:
    # an escape sequence in them would retitle or clear the terminal showing the report
    import subprocess
    import sys

    program = (
        "import threading, time\n"
        "def work():\n"
        "    end = time.monotonic() + 0.2\n"
        "    while time.monotonic() < end: pass\n"
        "t = threading.Thread(target=work, name='evil\\x1b]0;PWNED\\x07\\x1b[2Jthread')\n"
        "t.start(); t.join()\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pyinstrument", "-a", "-c", program], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", result.stdout), repr(result.stdout)
    assert "evil\\x1b]0;PWNED\\x07\\x1b[2Jthread" in result.stdout  # shown, harmlessly

    session = make_session([([fi("f\x1b[31m", APP + "/a\x07.py", 1)], 0.01)], description="Program: \x1b[2J")
    text = ConsoleRenderer(color=False, unicode=True).render(session)
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", text), repr(text)


def test_the_header_says_why_samples_were_dropped():
    session = make_session(
        [([fi("main", APP + "/a.py", 1)], 0.01)], dropped_samples=5, dropped_by_cause={"changed": 3, "code": 1}
    )
    header = ConsoleRenderer(color=False, unicode=True).render(session).split("Program:")[0]
    assert "Dropped:  5 thread samples (3 changed while read, 1 code unconfirmed, 1 other)" in header
    walk_causes = {"torn": 2, "moved": 1, "unparsable": 1, "code": 1}
    told_apart = make_session([([fi("main", APP + "/a.py", 1)], 0.01)], dropped_samples=5, dropped_by_cause=walk_causes)
    header = ConsoleRenderer(color=False, unicode=True).render(told_apart).split("Program:")[0]
    assert (
        "Dropped:  5 thread samples (2 copied while changing, 1 moved on while read, 1 frame unreadable, "
        "1 code unconfirmed)" in header
    )
    bare = make_session([([fi("main", APP + "/a.py", 1)], 0.01)], dropped_samples=2)  # an upstream file: no causes
    assert "Dropped:  2 thread samples\n" in ConsoleRenderer(color=False, unicode=True).render(bare)
