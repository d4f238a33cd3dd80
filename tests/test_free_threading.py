"""Threads that run at once: on a free-threaded build (3.13t) they do, and the profiler must
leave the GIL off, sample each of them with its own split, and take calls from them all."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import FREE_THREADED, run_program, time_in

pytestmark = pytest.mark.engine

needs_free_threading = pytest.mark.skipif(not FREE_THREADED, reason="a free-threaded build (python3.13t) only")


@needs_free_threading
def test_importing_and_running_the_profiler_leaves_the_gil_off():
    program = (
        "import sys, time\n"
        "from pyinstrument import Profiler\n"
        "with Profiler(all_threads=True):\n"
        "    time.sleep(0.05)\n"
        "print(sys._is_gil_enabled())\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", result.stderr  # and no warning that it turned on
    assert "GIL" not in result.stderr


def test_threads_running_at_once_are_each_sampled_with_their_own_split():
    # four threads, each doing twice the work in heavy as in light, for 1.5 s. On a
    # free-threaded build they run in parallel, as many at once as there are free cores, and
    # a thread waiting for a core waits at any point of its work: two thirds of its time is
    # heavy's. With a GIL, where a thread waits for it depends on where the interpreter lets
    # it go (3.9/3.10: mostly at calls), so there the split of wall time is not the work's.
    result = run_program(
        """
        def count(n):
            total = 0
            for i in range(n):
                total += i
            return total

        def heavy():
            count(40000)

        def light():
            count(20000)

        def work(name):
            end = time.perf_counter() + 1.5
            while time.perf_counter() < end:
                heavy()
                light()

        threads = [threading.Thread(target=work, args=(f"w{i}",), name=f"worker{i}") for i in range(4)]
        with Profiler(interval=0.001, all_threads=True) as profiler:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        report(profiler.last_session, gil=getattr(sys, "_is_gil_enabled", lambda: True)())
        """
    )
    stacks = result["stacks"]
    for i in range(4):
        mine = {key: seconds for key, seconds in stacks.items() if key.startswith(f"worker{i} >")}
        heavy, light = time_in(mine, "heavy"), time_in(mine, "light")
        assert heavy + light >= 1.2, (i, heavy, light)
        if FREE_THREADED:
            assert heavy / (heavy + light) == pytest.approx(2 / 3, abs=0.05), (i, heavy, light)
    assert result["dropped"] <= 0.05 * (result["samples"] + result["dropped"])
    assert result["gil"] == (not FREE_THREADED)  # the GIL stayed off: nothing kept them apart


def test_profilers_started_and_stopped_from_many_threads_at_once_each_keep_their_own_thread():
    result = run_program(
        """
        errors, splits = [], {}

        def own_profile(name, seconds):
            try:
                with Profiler(interval=0.001) as profiler:
                    spin(seconds)
                stacks = flatten(profiler.last_session)
                mine = sum(t for key, t in stacks.items() if "own_profile" in key.split(" > "))
                splits[name] = (mine, sum(stacks.values()))
            except Exception as error:
                errors.append(repr(error))

        threads = [threading.Thread(target=own_profile, args=(f"t{i}", 0.3 + 0.1 * (i % 3)))
                   for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(json.dumps({"errors": errors, "splits": splits}))
        """
    )
    assert result["errors"] == []
    assert len(result["splits"]) == 8
    for mine, total in result["splits"].values():
        assert total >= 0.25 and mine >= 0.95 * total  # its own thread only, all in its own code
