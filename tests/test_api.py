"""The Python API: Profiler and profile, as a user drives them."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import spin

from pyinstrument import Profiler


def test_start_twice_and_stop_when_idle_raise_the_documented_errors():
    p = Profiler()
    with pytest.raises(RuntimeError, match="This profiler is not currently running."):
        p.stop()
    p.start()
    try:
        with pytest.raises(ValueError, match="Profiler is already running."):
            p.start()
        with pytest.raises(Exception, match="running"):
            p.output_text()
    finally:
        p.stop()
    assert not p.is_running


def test_rendering_before_any_session_says_so():
    with pytest.raises(Exception, match="has not completed a profile session yet"):
        Profiler().output_text()


def test_stop_from_another_thread_raises_and_the_profiler_runs_on():
    # as upstream's, whose test of it reads its private per-sample records
    p = Profiler()
    p.start()
    errors = []

    def stop_it():
        try:
            p.stop()
        except RuntimeError as error:
            errors.append(str(error))

    try:
        stopper = threading.Thread(target=stop_it)
        stopper.start()
        spin(0.05)
        stopper.join()
        assert errors == ["Failed to stop profiling. Make sure that you start/stop profiling on the same thread."]
        assert p.is_running
        with pytest.raises(Exception, match="this profiler is still running"):
            p.output_html()
    finally:
        session = p.stop()
    assert session.duration >= 0.05 and "spin" in p.output_text()


def test_start_after_stop_keeps_profiling_into_the_same_session():
    p = Profiler()
    p.start()
    spin(0.1)
    first = p.stop()
    time.sleep(0.2)  # not profiled: the profiler is stopped
    p.start()
    spin(0.1)
    second = p.stop()
    assert first.duration == pytest.approx(0.1, abs=0.05)
    assert second.duration == pytest.approx(0.2, abs=0.08)
    assert second.sample_count > first.sample_count
    assert p.last_session is second


def test_reset_forgets_the_session():
    p = Profiler()
    with p:
        spin(0.02)
    assert p.last_session is not None
    p.reset()
    assert p.last_session is None and not p.is_running


def test_with_block_reports_the_code_inside_it():
    with Profiler() as p:
        spin(0.2)
    text = p.output_text()
    assert "spin" in text
    assert "test_api.py" in text
    assert p.last_session.target_description.startswith("Profile at ")


def test_print_writes_the_report_to_the_given_file():
    with Profiler() as p:
        spin(0.1)
    out = io.StringIO()
    p.print(file=out)
    assert "spin" in out.getvalue()
    assert "\x1b[" not in out.getvalue()  # a StringIO is no terminal: no colours


def test_print_shows_cpu_time_when_asked():
    with Profiler() as p:
        spin(0.1)
    out = io.StringIO()
    p.print(file=out, show_cpu=True)
    line = next(line for line in out.getvalue().splitlines() if "spin" in line)
    assert "(cpu " in line, out.getvalue()
    assert "(cpu " not in p.output_text()  # off unless asked


def test_properties():
    p = Profiler(interval=0.0005, async_mode="disabled")
    assert p.interval == 0.0005
    assert p.async_mode == "disabled"
    assert not p.is_running
    with pytest.raises(ValueError):
        Profiler(async_mode="sometimes")


def test_profiler_started_in_another_thread_reports_that_thread():
    result = {}

    def worker():
        with Profiler() as p:
            spin(0.2)
        result["text"] = p.output_text()

    t = threading.Thread(target=worker)
    t.start()
    spin(0.2)  # the main thread is busy too, but is not reported
    t.join()
    assert "worker  test_api.py" in result["text"]  # a nested function: its own name, as upstream
    # the main thread's own frame (the test function calling spin) is not in the report
    assert "reports_that_thread  test_api.py" not in result["text"]


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


def test_profile_decorator_prints_a_short_report_to_stderr_after_each_call():
    proc = run(
        """
        import time
        from pyinstrument import profile

        @profile
        def work():
            end = time.perf_counter() + 0.1
            while time.perf_counter() < end:
                pass
            return 42

        assert work() == 42
        print("done")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert "Function work at" in proc.stderr
    assert "work" in proc.stderr


BUSY = """
import asyncio, time
from pyinstrument import profile

def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
"""


def report_lines(stderr: str, function: str) -> list:
    """The call-tree lines of the short reports (not their titles) naming ``function``."""
    return [line for line in stderr.splitlines() if re.match(rf"^\.  [ |`\-│├└─]*\d+\.\d+ {re.escape(function)}  ", line)]


def test_bare_profile_decorator_reports_the_decorated_function():
    proc = run(BUSY + """
@profile
def work():
    busy(0.2)
    return 42

assert work() == 42
""")
    assert proc.returncode == 0, proc.stderr
    assert "No samples were recorded" not in proc.stderr
    (line,) = report_lines(proc.stderr, "work")
    assert float(line.split()[1]) >= 0.15 and line.startswith(".  0.")  # at the top
    assert report_lines(proc.stderr, "busy")
    assert "wrapper" not in proc.stderr and "profiler.py" not in proc.stderr


def test_profile_decorator_on_methods_static_and_class_methods():
    proc = run(BUSY + """
class Shape:
    @profile
    def area(self, side):
        busy(0.2)
        return side * side

    @profile
    @staticmethod
    def unit():
        busy(0.2)
        return 1

    @profile
    @classmethod
    def kind(cls):
        busy(0.2)
        return cls.__name__

assert Shape().area(3) == 9
assert Shape.unit() == 1 and Shape().unit() == 1
assert Shape.kind() == "Shape" and Shape().kind() == "Shape"
""")
    assert proc.returncode == 0, proc.stderr
    assert len(report_lines(proc.stderr, "Shape.area")) == 1
    assert len(report_lines(proc.stderr, "Shape.unit")) == 2
    assert len(report_lines(proc.stderr, "Shape.kind")) == 2


def test_profile_decorator_with_options_and_on_a_coroutine_function():
    proc = run(BUSY + """
import inspect

@profile(interval=0.0005)
def work():
    busy(0.2)

@profile
async def fetch():
    busy(0.2)
    await asyncio.sleep(0.01)
    return 7

work()
assert inspect.iscoroutinefunction(fetch)
assert asyncio.run(fetch()) == 7
""")
    assert proc.returncode == 0, proc.stderr
    assert len(report_lines(proc.stderr, "work")) == 1
    # the awaited run is profiled, not only the coroutine's creation
    (line,) = report_lines(proc.stderr, "fetch")
    assert float(re.search(r"(\d+\.\d+) fetch", line).group(1)) >= 0.15


def test_profile_as_a_with_block_and_with_options():
    proc = run(
        """
        import time
        from pyinstrument import profile

        with profile(interval=0.0005):
            end = time.perf_counter() + 0.1
            while time.perf_counter() < end:
                pass
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "Block at <string>:5" in proc.stderr


def test_old_use_signal_argument_is_accepted_with_a_note():
    proc = run(
        """
        from pyinstrument import Profiler
        p = Profiler(use_signal=False)
        p.start(); p.stop()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "use_signal" in proc.stderr and "deprecated" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_profiler_left_running_at_exit_does_not_crash_the_program():
    proc = run(
        """
        import threading, time
        from pyinstrument import Profiler
        p = Profiler(all_threads=True, interval=0.0001)
        p.start()
        threads = [threading.Thread(target=time.sleep, args=(0.05,), daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        print("bye")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "bye"


# -- upstream's Frame and Session API, as code written against pyinstrument 5.x uses it ---------


def _session_of(records):
    from pyinstrument.session import Session

    total = sum(t for _, t in records)
    return Session(records, 0.0, total, 0.001, 0.001, len(records), [], "", 0.0, [], [])


def _fi(function: str, line: int = 1) -> str:
    return f"{function}\x00/app/m.py\x00{line}"


def test_frame_api_of_upstream():
    from pyinstrument.frame import Frame

    leaf = Frame(identifier_or_frame_info=_fi("leaf", 2), time=0.25)
    root = Frame(_fi("main"), children=[leaf], time=1.0)
    assert leaf.function == "leaf" and leaf.parent is root
    assert root.absorbed_time == 0.0
    assert root.await_time() == 0.0  # a method, as upstream's
    await_leaf = Frame("[await]", time=0.5)
    root.add_child(await_leaf)
    assert root.await_time() == 0.5
    decoded = json.loads(root.to_json_str())
    assert decoded["identifier"] == _fi("main") and decoded["time"] == 1.0
    assert [c["identifier"] for c in decoded["children"]] == [_fi("leaf", 2), "[await]"]
    assert decoded["children"][0]["children"] == []


def test_to_json_str_of_a_tree_deeper_than_the_recursion_limit():
    from pyinstrument.frame import Frame

    root = frame = Frame(_fi("f0"), time=1.0)
    for depth in range(1, sys.getrecursionlimit() + 100):
        child = Frame(_fi(f"f{depth}"), time=1.0)
        frame.add_child(child)
        frame = child
    text = root.to_json_str()
    assert text.count('"identifier"') == sys.getrecursionlimit() + 100
    assert text.startswith('{"identifier": %s,' % json.dumps(_fi("f0")))
    assert text.endswith("]}" * (sys.getrecursionlimit() + 100))


def test_resample_moves_short_stacks_time_to_their_callers():
    records = [([_fi("main"), _fi(f"f{i}")], 0.0004) for i in range(10)] + [([_fi("main"), _fi("big")], 0.5)]
    resampled = _session_of(records).resample(0.001)
    # the ten short stacks' time is main's own now: every stack kept is one the program had
    assert sorted((tuple(stack), round(t, 6)) for stack, t in resampled.frame_records) == [
        ((_fi("main"),), 0.004),
        ((_fi("main"), _fi("big")), 0.5),
    ]
    assert resampled.min_interval == 0.001
    with pytest.raises(ValueError):
        _session_of(records).resample(0)


def test_pstats_render_is_a_string_of_the_bytes_as_upstream_gives_it(tmp_path):
    import pstats

    from pyinstrument.renderers import PstatsRenderer

    data = PstatsRenderer().render(_session_of([([_fi("main"), _fi("work", 5)], 0.3)]))
    assert isinstance(data, str)
    path = tmp_path / "out.pstats"
    path.write_bytes(data.encode("utf-8", errors="surrogateescape"))
    stats = pstats.Stats(str(path), stream=io.StringIO())
    assert {key[2] for key in stats.stats} >= {"main", "work"}  # type: ignore[attr-defined]


def test_upstream_compatibility_modules_name_what_upstreams_internals_named():
    # pyinstrument.stack_sampler and pyinstrument.context_manager: for code (upstream's own
    # test suite) written against upstream's internals
    from pyinstrument import profile, stack_sampler
    from pyinstrument.context_manager import ProfileContext

    assert isinstance(profile(), ProfileContext)
    sampler = stack_sampler.get_stack_sampler()
    assert sampler is stack_sampler.get_stack_sampler()
    assert sampler.subscribers == []
    p = Profiler()
    p.start()
    try:
        assert sampler.subscribers == [p]
        seen: list = []
        other = threading.Thread(target=lambda: seen.append(stack_sampler.get_stack_sampler().subscribers))
        other.start()
        other.join()
        assert seen == [[]]  # started in this thread, not that one
    finally:
        p.stop()
    assert sampler.subscribers == []
    sampler.timer_func = time.time  # settable, not used by our engine
    assert sampler.timer_func is time.time
    sampler.timer_func = None
    stack_sampler.thread_locals.__dict__.clear()
