"""The text report's CPU time per frame (``-p show_cpu``), on a real run: a function
that sleeps uses almost no CPU, one that spins uses about as much CPU as wall time."""

from __future__ import annotations

import re
import textwrap

from helpers import run_pyinstrument
from sessions import simple_session

from pyinstrument.renderers import ConsoleRenderer

PROGRAM = textwrap.dedent("""
    import time

    def sleeper():
        time.sleep(0.3)

    def spinner():
        # until the thread has run 0.3 s, however busy the machine is
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass

    sleeper()
    spinner()
""")

LEGEND = "Each frame: wall-clock time, then (cpu ...) the CPU time its thread spent running in it"


def times_of(report: str, function: str) -> "tuple[float, float]":
    """(wall, cpu) of the first line that shows ``function``."""
    match = re.search(rf"([\d.]+) \(cpu ([\d.]+)\) {function}  ", report)
    assert match, report
    return float(match.group(1)), float(match.group(2))


def test_cpu_time_beside_wall_time(tmp_path):
    (tmp_path / "work.py").write_text(PROGRAM)
    result = run_pyinstrument("-p", "show_cpu", "work.py", cwd=tmp_path)
    assert LEGEND in result.stdout

    sleep_wall, sleep_cpu = times_of(result.stdout, "sleeper")
    spin_wall, spin_cpu = times_of(result.stdout, "spinner")
    assert sleep_wall >= 0.2
    assert sleep_cpu < 0.25 * sleep_wall
    assert spin_cpu >= 0.5 * 0.3
    assert spin_cpu / spin_wall > 4 * sleep_cpu / sleep_wall

    # the flat list, by total time
    identifier = result.stdout.split("--load-prev ")[1].split()[0]
    flat = run_pyinstrument("--load-prev", identifier, "-p", "flat", "-p", "flat_time=total", "-p", "show_cpu",
                            cwd=tmp_path).stdout
    assert times_of(flat, "spinner")[1] >= 0.5 * 0.3
    assert times_of(flat, "sleeper")[1] < 0.25 * times_of(flat, "sleeper")[0]


def test_without_the_option_there_is_no_cpu_column():
    report = ConsoleRenderer().render(simple_session())
    assert "(cpu" not in report and LEGEND not in report


def test_a_session_without_cpu_time_says_so():
    session = simple_session()
    session.frame_records_cpu = None  # as upstream pyinstrument records them
    report = ConsoleRenderer(show_cpu=True).render(session)
    assert "(cpu" not in report
    assert "this session has no CPU time per frame" in report


def test_percent_of_total():
    report = ConsoleRenderer(show_cpu=True, time="percent_of_total", show_all=True).render(simple_session())
    assert "both in % of the total wall-clock time" in report
    # simple_session: slow's own 0.3 s all CPU, its sleep none, out of 1 s
    assert re.search(r"70\.0% \(cpu 30\.0%\) slow  ", report), report
