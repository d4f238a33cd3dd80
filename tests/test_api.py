"""The Python API: Profiler and profile, as a user drives them."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pyinstrument import Profiler


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


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
    with pytest.raises(Exception, match="no profile"):
        Profiler().output_text()


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
    assert "reports_that_thread.<locals>.worker  test_api.py" in result["text"]
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
