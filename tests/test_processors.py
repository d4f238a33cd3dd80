"""Tree processors, each on call trees built from hand-made frame records."""

from __future__ import annotations

import pytest

from pyinstrument import processors
from pyinstrument.frame import Frame, FrameContext, build_frame_tree
from pyinstrument.renderers import ConsoleRenderer, FrameRenderer
from pyinstrument.session import Session

APP = "/srv/project"
STDLIB = "/usr/lib/python3.12"
SITE = STDLIB + "/site-packages"
PKG = "/opt/venv/lib/python3.12/site-packages/pyinstrument"
CONTEXT_ARGS = dict(sys_path=[APP, STDLIB, SITE], sys_prefixes=["/usr", "/opt/venv"])


def fi(function, path, line, *, current=None, hide=False):
    s = f"{function}\x00{path}\x00{line}"
    if current is not None:
        s += f"\x01l{current}"
    if hide:
        s += "\x01h1"
    return s


def app(name, line=1):
    return fi(name, f"{APP}/app.py", line)


def lib(name, module="lib", line=1):
    return fi(name, f"{SITE}/{module}/core.py", line)


def tree(records, *, timeline=False):
    """Root of the tree built from records (the synthetic root dropped when single)."""
    root = build_frame_tree(records, FrameContext(**CONTEXT_ARGS), merge=not timeline)
    if len(root.children) == 1:
        only = root.children[0]
        only.remove_from_parent()
        only.set_context(root.context)
        return only
    return root


def outline(frame):
    """`name time` lines, indented by depth, children in tree order."""
    lines = []
    stack = [(frame, 0)]
    while stack:
        f, depth = stack.pop()
        lines.append("  " * depth + f"{f.display_name} {f.time:.2f}")
        stack.extend((c, depth + 1) for c in reversed(f.children))
    return lines


def run(frame, *procs, **options):
    for p in procs:
        frame = p(frame, options)
    return frame


# --- basic contract ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "processor",
    FrameRenderer().default_processors(),
    ids=lambda p: p.__name__,
)
def test_processors_accept_none(processor):
    assert processor(None, {}) is None


def test_default_processor_order():
    names = [p.__name__ for p in FrameRenderer().default_processors()]
    assert names == [
        "remove_importlib",
        "remove_tracebackhide",
        "remove_profiler_frames",
        "gil_wait",
        "merge_consecutive_self_time",
        "aggregate_repeated_calls",
        "remove_first_pyinstrument_frames_processor",
        "remove_irrelevant_nodes",
        "remove_unnecessary_self_time_nodes",
        "group_library_frames_processor",
    ]
    assert processors.remove_first_pyinstrument_frames is processors.remove_first_pyinstrument_frames_processor


def test_show_all_and_timeline_drop_processors():
    show_all = FrameRenderer(show_all=True).processors
    assert processors.group_library_frames_processor not in show_all
    assert processors.remove_irrelevant_nodes not in show_all
    assert processors.remove_profiler_frames in show_all
    assert processors.aggregate_repeated_calls not in FrameRenderer(timeline=True).processors


def test_processor_options_reach_the_processors():
    seen = []

    def spy(frame, options):
        seen.append(options)
        return frame

    renderer = ConsoleRenderer(processor_options={"filter_threshold": 0.2, "custom": 1})
    renderer.processors = [spy]
    session = Session([([app("main")], 1.0)], 0, 1.0, 0.001, 0.001, 1000, [], "t", 0.5, [APP], ["/usr"])
    renderer.render(session)
    assert seen == [{"filter_threshold": 0.2, "custom": 1}]


# --- building ---------------------------------------------------------------------------


def test_aggregated_tree_has_self_time_nodes_only_where_a_frame_has_callees():
    root = tree([([app("main"), app("a")], 0.5), ([app("main")], 0.25), ([app("main"), app("a")], 0.25)])
    assert outline(root) == ["main 1.00", "  a 0.75", "  [self] 0.25"]
    assert root.total_self_time == pytest.approx(0.25)
    root.self_check()


def test_line_numbers_and_class_names_are_attributes_not_identity():
    a1 = "compute\x00/srv/project/app.py\x0010\x01cWorker\x01l11"
    a2 = "compute\x00/srv/project/app.py\x0010\x01cWorker\x01l14"
    root = tree([([app("main"), a1], 0.25), ([app("main"), a2], 0.75)])
    (compute,) = [c for c in root.children if c.function == "compute"]
    assert compute.time == pytest.approx(1.0)
    assert compute.attributes["l11"] == pytest.approx(0.25)
    assert compute.attributes["l14"] == pytest.approx(0.75)
    assert compute.line_times() == {11: 0.25, 14: 0.75}
    assert compute.display_name == "Worker.compute"
    assert compute.line_no == 10


def test_library_and_application_code():
    root = tree(
        [
            (
                [
                    app("main"),
                    lib("get", "requests"),
                    fi("loads", f"{STDLIB}/json/__init__.py", 299),
                    fi("sleep", "<built-in>", 0),
                ],
                1.0,
            )
        ]
    )
    frames = list(root.iter_subtree())
    assert [f.is_application_code for f in frames] == [True, False, False, False]
    assert [f.file_path_short for f in frames] == ["app.py", "requests/core.py", "json/__init__.py", "<built-in>"]
    assert [f.library for f in frames[1:]] == ["requests", "json", "<built-in>"]


def test_app_under_prefix_src_dir_is_application_code():
    # a container image with Python in /usr and the application in /usr/src/app
    context = FrameContext(sys_path=["/usr/src/app"], sys_prefixes=["/usr"])
    assert not context.is_library_path("/usr/src/app/main.py")
    assert context.is_library_path("/usr/lib/python3.12/json/__init__.py")
    assert context.is_library_path("/home/me/.venv/lib/python3.12/site-packages/x/y.py")
    assert not context.is_library_path("<string>")
    assert context.is_library_path("<frozen runpy>")


# --- removing frames ----------------------------------------------------------------------


def test_remove_importlib_moves_imported_modules_up():
    boot = fi("_find_and_load", "<frozen importlib._bootstrap>", 1165)
    ext = fi("exec_module", "<frozen importlib._bootstrap_external>", 940)
    root = tree(
        [
            ([app("main"), boot, ext, fi("<module>", f"{APP}/heavy.py", 1)], 0.6),
            ([app("main"), boot], 0.1),
            ([app("main")], 0.3),
        ]
    )
    root = run(root, processors.remove_importlib)
    assert [c.function for c in root.children] == ["<module>", "[self]", "[self]"]
    assert sum(c.time for c in root.children) == pytest.approx(1.0)
    root = run(root, processors.aggregate_repeated_calls)
    assert outline(root) == ["main 1.00", "  <module> 0.60", "  [self] 0.40"]
    # the import machinery's own time became main's own time
    assert root.total_self_time == pytest.approx(0.4)


def test_import_machinery_is_removed_under_a_shortened_path_too():
    # a session saved elsewhere shows the frozen modules' paths relative to its directory
    boot = fi("_find_and_load", "../<frozen importlib._bootstrap>", 1165)
    root = tree([([app("main"), boot, fi("<module>", f"{APP}/heavy.py", 1)], 1.0)])
    root = run(root, processors.remove_importlib)
    assert outline(root) == ["main 1.00", "  <module> 1.00"]


def test_time_sampled_inside_the_import_machinery_shows_as_the_importers_own_time():
    boot = fi("_find_and_load", "<frozen importlib._bootstrap>", 1165)
    root = tree([([app("main"), boot], 0.2), ([app("main"), app("work")], 0.8)])
    root = run(root, processors.remove_importlib)
    assert outline(root) == ["main 1.00", "  [self] 0.20", "  work 0.80"]


def test_remove_tracebackhide():
    hidden = fi("wrapper", f"{APP}/app.py", 50, hide=True)
    root = tree([([app("main"), hidden, app("work")], 1.0)])
    root = run(root, processors.remove_tracebackhide)
    assert outline(root) == ["main 1.00", "  work 1.00"]


def test_remove_profiler_frames_takes_their_time_off_the_callers():
    stop = fi("Profiler.stop", f"{PKG}/profiler.py", 120)
    root = tree([([app("main"), app("work")], 0.9), ([app("main"), fi("__exit__", f"{PKG}/profiler.py", 90), stop], 0.1)])
    root = run(root, processors.remove_profiler_frames)
    assert outline(root) == ["main 0.90", "  work 0.90"]
    # other files of the package are not the profiler
    other = tree([([app("main"), fi("helper", f"{PKG}/util.py", 3)], 1.0)])
    assert len(run(other, processors.remove_profiler_frames).children) == 1


def test_the_profile_decorators_wrapper_gives_way_to_the_decorated_function():
    call = fi("profile.__call__", f"{PKG}/profiler.py", 480)
    wrapper = fi("profile._wrap.<locals>.wrapper", f"{PKG}/profiler.py", 470)
    stop = fi("Profiler.stop", f"{PKG}/profiler.py", 120)
    records = [
        ([app("main"), call, wrapper, app("work")], 0.8),
        ([app("main"), call, wrapper, app("work"), fi("sleep", "<built-in>", 0)], 0.2),
        ([app("main"), call, wrapper, stop, fi("join", f"{STDLIB}/threading.py", 1080)], 0.05),
        ([app("main"), call, wrapper], 0.01),
    ]
    session = Session(records, 0, 1.06, 0.001, 0.001, 1060, [app("main"), call, wrapper], "t", 0.5, **CONTEXT_ARGS)
    root = processors.remove_profiler_frames(session.root_frame(), {})
    assert outline(root) == ["work 1.00", "  sleep 0.20", "  [self] 0.80"]
    # the same wrapper in the middle of a tree (a decorated function called while
    # another profiler runs)
    root = run(tree(records + [([app("main"), app("other")], 0.5)]), processors.remove_profiler_frames)
    assert outline(root) == ["main 1.50", "  work 1.00", "    sleep 0.20", "    [self] 0.80", "  other 0.50"]


def test_remove_profiler_frames_when_nothing_else_is_left():
    root = tree([([fi("Profiler.stop", f"{PKG}/profiler.py", 120)], 1.0)])
    assert run(root, processors.remove_profiler_frames) is None


# --- merging ------------------------------------------------------------------------------


def test_merge_consecutive_self_time_in_a_timeline_tree():
    root = tree(
        [([app("main")], 0.1), ([app("main"), app("a")], 0.2), ([app("main")], 0.3), ([app("main")], 0.4)],
        timeline=True,
    )
    # the builder already continues the last [self]; split it as a processor would see
    # after other processors removed what was between
    assert outline(root) == ["main 1.00", "  [self] 0.10", "  a 0.20", "    [self] 0.20", "  [self] 0.70"]
    a = root.children[1]
    a.remove_from_parent()
    root = run(root, processors.merge_consecutive_self_time)
    assert outline(root) == ["main 1.00", "  [self] 0.80"]


def test_aggregate_repeated_calls_merges_and_sorts():
    records = [
        ([app("main"), app("a"), app("x")], 0.1),
        ([app("main"), app("b")], 0.2),
        ([app("main"), app("a"), app("y")], 0.3),
        ([app("main"), app("a")], 0.15),
    ]
    root = tree(records, timeline=True)
    assert [c.function for c in root.children] == ["a", "b", "a"]
    root = run(root, processors.remove_unnecessary_self_time_nodes, processors.aggregate_repeated_calls)
    assert outline(root) == [
        "main 0.75",
        "  a 0.55",
        "    y 0.30",
        "    [self] 0.15",
        "    x 0.10",
        "  b 0.20",
    ]
    root.self_check()


def test_aggregate_keeps_the_own_time_of_a_call_without_callees():
    # `a` once running its own code only, once calling `x`: merged, the first call's
    # time must still be shown as a's own time
    records = [([app("main"), app("a")], 0.4), ([app("main"), app("b")], 0.1), ([app("main"), app("a"), app("x")], 0.5)]
    root = run(tree(records, timeline=True), processors.remove_unnecessary_self_time_nodes)
    root = run(root, processors.aggregate_repeated_calls)
    assert outline(root) == ["main 1.00", "  a 0.90", "    x 0.50", "    [self] 0.40", "  b 0.10"]


# --- thresholds -----------------------------------------------------------------------------


def test_remove_irrelevant_nodes():
    records = [([app("main"), app("big")], 0.95), ([app("main"), app("small")], 0.04), ([app("main"), app("tiny")], 0.01)]
    root = run(tree(records), processors.remove_irrelevant_nodes, filter_threshold=0.02)
    assert outline(root) == ["main 1.00", "  big 0.95", "  small 0.04"]
    # the folded time is still the parent's
    assert root.total_self_time == pytest.approx(0.01)
    default = run(tree(records), processors.remove_irrelevant_nodes)
    assert [c.function for c in default.children] == ["big", "small", "tiny"]
    nothing_removed = run(tree(records), processors.remove_irrelevant_nodes, filter_threshold=0)
    assert len(nothing_removed.children) == 3


def test_remove_unnecessary_self_time_nodes():
    root = tree([([app("main"), app("a")], 0.5), ([app("main")], 0.5)])
    root = run(root, processors.remove_irrelevant_nodes, filter_threshold=0.6)
    assert outline(root) == ["main 1.00"]
    root = tree([([app("main"), app("a")], 0.1), ([app("main")], 0.9)])
    root = run(root, processors.remove_irrelevant_nodes, processors.remove_unnecessary_self_time_nodes, filter_threshold=0.2)
    assert outline(root) == ["main 1.00"]
    assert root.total_self_time == pytest.approx(1.0)


# --- the command line's own frames ----------------------------------------------------------

THREAD = fi("MainThread", "<thread>", 1234)
CLI = fi("main", f"{PKG}/__main__.py", 30)
RUN_PATH = fi("run_path", "<frozen runpy>", 262)
RUN_CODE = fi("_run_code", "/usr/lib/python3.12/runpy.py", 65)
SCRIPT = fi("<module>", "script.py", 1)


def test_remove_first_pyinstrument_frames():
    root = tree([([CLI, RUN_PATH, RUN_CODE, SCRIPT, app("work")], 0.8), ([CLI, RUN_PATH, RUN_CODE, SCRIPT], 0.2)])
    root = run(root, processors.remove_first_pyinstrument_frames_processor)
    assert outline(root) == ["<module> 1.00", "  work 0.80", "  [self] 0.20"]
    assert root.parent is None


def test_remove_first_pyinstrument_frames_through_an_exec_wrapper():
    wrapper = fi("<module>", "<string>", 1)
    root = tree([([CLI, wrapper, RUN_PATH, RUN_CODE, SCRIPT], 1.0)])
    assert run(root, processors.remove_first_pyinstrument_frames_processor).function == "<module>"
    assert run(tree([([CLI, wrapper, RUN_PATH, RUN_CODE, SCRIPT], 1.0)]), processors.remove_first_pyinstrument_frames_processor).file_path == "script.py"


def test_program_given_with_dash_c_is_kept():
    program = fi("<module>", "<string>", 1)
    root = tree([([CLI, program, app("work")], 1.0)])
    root = run(root, processors.remove_first_pyinstrument_frames_processor)
    assert root.file_path == "<string>"
    assert root.is_application_code


def test_frames_not_started_by_the_command_line_are_kept():
    root = tree([([app("main"), RUN_PATH, SCRIPT], 1.0)])
    assert run(root, processors.remove_first_pyinstrument_frames_processor) is root


def test_remove_first_pyinstrument_frames_in_each_thread():
    other = fi("Thread-1", "<thread>", 99)
    root = tree([([THREAD, CLI, RUN_PATH, SCRIPT], 0.6), ([THREAD, CLI], 0.1), ([other, app("worker")], 0.3)])
    root = run(root, processors.remove_first_pyinstrument_frames_processor)
    assert outline(root) == ["[all threads] 0.90", "  MainThread 0.60", "    <module> 0.60", "  Thread-1 0.30", "    worker 0.30"]


# --- library grouping -----------------------------------------------------------------------


def grouped(records, **options):
    root = tree(records)
    return run(
        root,
        processors.remove_irrelevant_nodes,
        processors.remove_unnecessary_self_time_nodes,
        processors.group_library_frames_processor,
        **options,
    )


def test_library_frames_form_a_group_below_the_first_library_frame():
    records = [
        ([app("main"), lib("get", "requests"), lib("request", "requests"), lib("urlopen", "urllib3")], 0.1),
        ([app("main"), lib("get", "requests"), lib("request", "requests")], 0.1),
        ([app("main"), app("work")], 0.8),
    ]
    root = grouped(records)
    get = next(c for c in root.children if c.function == "get")
    assert get.group is not None and get.group.root is get
    assert [f.function for f in get.group.hidden_frames if not f.is_synthetic] == ["request", "urlopen"]
    assert get.group.libraries == ["requests", "urllib3"]
    assert not processors.is_hidden(get)
    assert all(processors.is_hidden(f) for f in get.group.hidden_frames)
    work = next(c for c in root.children if c.function == "work")
    assert work.group is None


def test_a_single_library_frame_is_not_a_group():
    root = grouped([([app("main"), fi("sleep", "<built-in>", 0)], 1.0)])
    assert root.children[0].group is None


def test_exit_frames_lead_back_to_application_code():
    records = [
        ([app("main"), lib("dispatch"), lib("handle"), lib("call"), app("view")], 0.5),
        ([app("main"), lib("dispatch"), lib("handle")], 0.1),
        ([app("main")], 0.4),
    ]
    root = grouped(records)
    dispatch = root.children[0]
    group = dispatch.group
    assert [f.function for f in group.exit_frames] == ["call"]
    assert [f.function for f in group.hidden_frames if not f.is_synthetic] == ["handle"]
    text = ConsoleRenderer().render(Session(records, 0, 1.0, 0.001, 0.001, 1000, [], "t", 0.5, **CONTEXT_ARGS))
    assert "view  app.py:1" in text
    assert "call  lib/core.py:1" in text
    assert "handle" not in text


def test_show_regex_and_hide_regex():
    records = [([app("main"), lib("get", "requests"), lib("request", "requests"), lib("urlopen", "urllib3")], 1.0)]
    root = grouped(records, show_regex=r".*/requests/.*")
    assert all(f.group is None for f in root.iter_subtree())
    root = grouped(records, hide_regex=r".*/app\.py")
    # the application frame at the top is now hideable: it roots the group; the leaf
    # where all the time goes stays visible
    assert root.group is not None and root.group.root is root
    assert [f.function for f in root.group.hidden_frames if not f.is_synthetic] == ["get", "request"]
    assert not processors.is_hidden(root.children[0].children[0].children[0])


def test_grouping_runs_again_cleanly():
    records = [([app("main"), lib("a"), lib("b"), lib("c")], 1.0)]
    root = grouped(records)
    assert root.children[0].group is not None
    root = processors.group_library_frames_processor(root, {"show_regex": ".*"})
    assert all(f.group is None for f in root.iter_subtree())


def test_deep_trees_do_not_hit_the_recursion_limit():
    stack = [app(f"f{i}", i) if i % 2 else lib(f"g{i}") for i in range(5000)]
    renderer = ConsoleRenderer()
    session = Session([(stack, 1.0)], 0, 1.0, 0.001, 0.001, 1000, [], "deep", 0.5, **CONTEXT_ARGS)
    text = renderer.render(session)
    assert "f4999" in text
    assert isinstance(session.root_frame(), Frame)
