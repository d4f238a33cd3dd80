"""The benchmarks' measuring side, run briefly on this interpreter so `make bench` cannot rot
unnoticed: every child a benchmark starts must run here and hand back what its parent reads."""

from __future__ import annotations

import os
import sys

import pytest
from helpers import FREE_THREADED

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)

import common  # noqa: E402  (bench/common.py)


def child(script: str, name: str, **args):
    return common.run_child(sys.executable, script, name, timeout=120, **args)


@pytest.mark.parametrize("workload", ["fib", "mixed", "threads", "asyncio"])
@pytest.mark.parametrize("profiler", ["ours", "cProfile", "none"])
def test_overhead_child_alternates_profiled_and_unprofiled_chunks(workload, profiler):
    if FREE_THREADED and profiler == "cProfile" and workload == "threads":
        pytest.skip("cProfile does not finish four parallel threads on a free-threaded build (5 min here)")
    result = child("overhead.py", "alternate", workload=workload, profiler=profiler, interval=0.001, reps=1,
                   pairs=2)
    assert len(result["ratios"]) == 2 and all(r > 0 for r in result["ratios"])
    assert len(result["unprofiled"]) == 3
    assert (len(result["samples_per_s"]) == 2) == (profiler == "ours")


def test_overhead_child_refuses_nothing_silently():
    with pytest.raises(common.ChildFailed, match="KeyError"):
        child("overhead.py", "alternate", workload="no-such-workload", profiler="ours", interval=0.001, reps=1,
              pairs=1)


def test_sampler_cost_child_reads_every_thread_each_tick():
    counts = child("sampler_cost.py", "ticks", threads=4, depth=10, interval=0.001, seconds=0.2)
    assert counts["ticks"] > 0
    assert counts["samples"] >= 3.5 * counts["ticks"]  # four threads, each sampled every tick
    assert counts["tick_ns_total"] > 0 and counts["cpu_ns"] > 0


@pytest.mark.parametrize("kind", ["threads", "generators", "recursion", "functions"])
def test_sampler_cost_churn_child_counts_drops(kind):
    counts = child("sampler_cost.py", "churn", kind=kind, interval=0.001, seconds=0.2)
    assert counts["ticks"] > 0 and counts["samples"] > 0
    assert 0 <= counts["dropped_walk"] + counts["dropped_code"] <= counts["dropped"]


def test_accuracy_child_gets_a_known_split_right():
    run = child("accuracy.py", "accuracy", program="busy", profiler="ours", seed=1, duration=0.6, interval=0.001)
    sys.path.insert(0, BENCH)
    import accuracy

    for name, (true, sampled) in accuracy.shares(run).items():
        assert abs(true - sampled) < 10, (name, true, sampled)


def test_render_speed_child_times_the_console_report():
    result = child("render_speed.py", "render", minutes=1, threads=1, repeats=1)
    console = [f for f in result["formats"] if f["format"].startswith("text")]
    assert console and all(f["status"] == "ok" and f["bytes"] > 0 for f in console)


def test_many_profilers_workloads_run_profiled_and_not():
    import many_profilers

    for kind in many_profilers.KINDS:  # asgi: uvicorn and Starlette, with the middleware and without
        for on in (False, True):
            assert many_profilers.run_once(sys.executable, kind, 3, on, pinned=False) > 0
    lines, verdicts = many_profilers.report(dict(version="3.x", n=3, repeat=1, rows=[
        dict(kind="tasks", pinned=False, off=1.0, on=1.05, ratio=1.05)]))
    assert "**1.05x**" in "\n".join(lines) and verdicts[0].endswith("goal met")


@pytest.mark.parametrize("profiler", ["floor", "ours"])
def test_pinned_child_measures_on_one_core(profiler):
    result = child("pinned.py", "alternate", workload="pool", profiler=profiler, interval=0.001, reps=5, pairs=2)
    assert len(result["ratios"]) == 2 and all(r > 0 for r in result["ratios"])
    if profiler == "ours":  # the sampling thread's CPU time and syscalls, per tick
        assert result["ticks"] > 0 and result["cpu_ns"] > 0 and result["syscalls"] > 0


def test_scale_child_profiles_saves_and_every_format_renders_the_file(tmp_path):
    import scale

    session_file = str(tmp_path / "run.pyisession")
    run = child("scale.py", "profile", seconds=0.5, session_file=session_file)
    assert run["samples"] > 0 and run["records"] > 10 and run["file_bytes"] == os.path.getsize(session_file)
    assert run["readings"] and run["stop_seconds"] > 0
    for fmt in ("text", "pprof"):
        rendered = scale.load_and_render(sys.executable, session_file, fmt, str(tmp_path))
        assert "failed" not in rendered and rendered["output_bytes"] > 0, rendered
