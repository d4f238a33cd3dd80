"""Phases of a run: ``Profiler.phase`` / ``pyinstrument.phase``, one tree per phase
(``Session.phase``, ``-p phase=NAME``), and phases in files, diffs and budgets."""

from __future__ import annotations

import platform
import threading
import time

import pytest
from helpers import REFUSE_PROCESS_VM_READV, run_program, run_pyinstrument, spin, write

import pyinstrument
from pyinstrument import Profiler
from pyinstrument.session import Session


def functions_in(session: Session) -> set:
    return {frame.split("\x00")[0] for stack, seconds in session.frame_records if seconds for frame in stack}


# long enough that a sampler kept off the CPU a while on a busy machine still samples
# each phase (a sample whose time spans a change of phase belongs to none)
def load():
    spin(0.15)


def parse():
    spin(0.2)


def save():
    spin(0.12)


@pytest.mark.engine  # the engine keeps each phase's samples: also under sanitizers
def test_each_phase_has_its_samples_and_its_time():
    profiler = Profiler()
    started = time.perf_counter()
    with profiler:
        with profiler.phase("load"):
            load()
        with pyinstrument.phase("parse"):  # every running profiler
            parse()
            with profiler.phase("save"):  # inner: takes over until it ends
                save()
        spin(0.02)
    elapsed = time.perf_counter() - started
    session = profiler.last_session
    assert session.phases.names == ["load", "parse", "save"]
    load_s, parse_s, save_s = session.phases.seconds
    assert load_s >= 0.15 and parse_s >= 0.2 and save_s >= 0.12
    assert load_s + parse_s + save_s <= elapsed - 0.02  # the inner phase's time is not the outer's too
    cut = {name: session.phase(name) for name in session.phases.names}
    assert "load" in functions_in(cut["load"]) and not {"parse", "save"} & functions_in(cut["load"])
    assert "parse" in functions_in(cut["parse"]) and not {"load", "save"} & functions_in(cut["parse"])
    assert "save" in functions_in(cut["save"]) and "parse" not in functions_in(cut["save"])
    assert cut["parse"].duration == parse_s
    # together the phases and the rest are the whole run: nothing is lost or counted twice
    whole = sum(seconds for _, seconds in session.frame_records)
    parts = sum(seconds for part in cut.values() for _, seconds in part.frame_records)
    assert 0.15 + 0.2 + 0.12 - 0.02 <= parts <= whole - 0.015  # the 0.02 s outside any phase is not in one
    with pytest.raises(LookupError, match="no phase 'render' in this profile \\(its phases: load, parse, save\\)"):
        session.phase("render")


def in_a(seconds: float) -> None:
    spin(seconds)


def in_b(seconds: float) -> None:
    spin(seconds)


@pytest.mark.engine
def test_a_sample_taken_as_the_phase_changes_is_in_neither_phase():
    # a stack read just before the program changes phase, or time partly before the change,
    # belongs to no phase: booked to the new one, a's function showed in phase b
    profiler = Profiler(interval=0.0002)
    with profiler:
        for _ in range(150):
            with profiler.phase("a"):
                in_a(0.002)
            with profiler.phase("b"):
                in_b(0.002)
    session = profiler.last_session
    a, b = session.phase("a"), session.phase("b")
    assert "in_a" in functions_in(a) and "in_b" in functions_in(b)
    assert "in_b" not in functions_in(a) and "in_a" not in functions_in(b)


@pytest.mark.engine
def test_a_phase_covers_every_thread_the_profiler_samples():
    profiler = Profiler(all_threads=True, async_mode="disabled")
    started = threading.Event()

    def worker():
        started.set()
        spin(0.15)

    with profiler:
        thread = threading.Thread(target=worker, name="worker")
        with profiler.phase("busy"):
            thread.start()
            started.wait()
            parse()
        thread.join()
    busy = profiler.last_session.phase("busy")
    assert {"worker", "parse"} <= functions_in(busy)


def test_phases_survive_a_file_and_a_second_start(tmp_path):
    profiler = Profiler()
    for name in ("a", "b"):
        with profiler:
            with profiler.phase(name):
                load()
    session = profiler.last_session  # the two runs combined
    assert session.phases.names == ["a", "b"]
    session.save(tmp_path / "s.pyisession")
    loaded = Session.load(tmp_path / "s.pyisession")
    assert loaded.phases.names == ["a", "b"] and loaded.phases.seconds == session.phases.seconds
    assert functions_in(loaded.phase("b")) == functions_in(session.phase("b"))


def test_a_phase_needs_a_name_and_does_nothing_without_a_profiler():
    with pytest.raises(ValueError, match="non-empty string"):
        with pyinstrument.phase(""):
            pass
    with pyinstrument.phase("alone"):  # no profiler running: nothing to label
        pass
    profiler = Profiler()
    with profiler.phase("before start"):
        pass
    with profiler:
        load()
    assert profiler.last_session.phases.seconds == [0.0]


PROGRAM = """
import time, pyinstrument

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def load():
    spin(0.04)

def parse():
    spin(0.08)

with pyinstrument.phase("load"):
    load()
with pyinstrument.phase("parse"):
    parse()
"""


def test_the_command_line_shows_the_phases_and_one_alone(tmp_path):
    write(tmp_path / "app.py", PROGRAM)
    whole = run_pyinstrument("app.py", cwd=tmp_path).stdout
    assert "Phases: load 0.0" in whole and "-p phase=NAME" in whole
    one = run_pyinstrument("-p", "phase=parse", "app.py", cwd=tmp_path).stdout
    assert "parse" in one and "load  app.py" not in one and "· phase parse" in one
    missing = run_pyinstrument("-p", "phase=render", "app.py", cwd=tmp_path, check=False)
    assert missing.returncode == 1
    assert "no phase 'render' in this profile (its phases: load, parse); the profile is kept" in missing.stderr
    # diff and budgets per phase
    run_pyinstrument("-r", "session", "-o", "a.pyisession", "app.py", cwd=tmp_path)
    diff = run_pyinstrument("--diff", "a.pyisession", "a.pyisession", "-p", "phase=load", cwd=tmp_path).stdout
    assert "load" in diff and "parse" not in diff
    write(tmp_path / "b.toml", '[[rule]]\nmatch = "load"\nphase = "load"\nmax_share = 0.5\n')
    result = run_pyinstrument("--budget", "b.toml", "--load", "a.pyisession", cwd=tmp_path, check=False)
    assert result.returncode == 3 and "load in phase load max_share 0.5" in result.stderr  # all of that phase


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp filter is written for x86_64")
def test_phases_work_where_the_python_sampler_stands_in():
    result = run_program(
        REFUSE_PROCESS_VM_READV
        + """
import pyinstrument
with Profiler() as p:
    with p.phase("one"):
        spin(0.1)
    spin(0.05)
one = p.last_session.phase("one")
report(one, names=p.last_session.phases.names)
"""
    )
    assert result["names"] == ["one"]
    stacks = result["stacks"]
    # the phase is its spin (a tick's sample can also hold the moment the phase began)
    assert stacks.get("<module> > spin", 0.0) >= 0.08 and stacks.get("<module> > spin", 0.0) > 0.8 * sum(stacks.values())
