"""Scale: a long run at 0.1 ms with hundreds of thousands of distinct stacks, end to end.

    python bench/scale.py [--quick] [--python PATH]

Two busy threads (the main one and one more, profiled with all_threads=True) run 64
generated functions along random call paths up to 30 deep, every 0.1 ms a sample, for 6
minutes (36 s with --quick). Measured in fresh interpreters, as a user meets them:

- RSS growth while profiling, as MB per hour of 1 ms samples (the slope of RSS over the
  second half of the run, per sample, times 3.6 million);
- ``stop()``: its wall time and the RSS it adds (the Session it returns still held);
- the size of the saved ``.pyisession`` file;
- ``pyinstrument --load FILE -r FORMAT -o OUT`` for every format: wall time and peak RSS
  of that process (its rusage, from wait4).

Goals (issue 15): while profiling at most 50 MB per hour of 1 ms samples; ``stop()`` at
most 1 s and 150 MB for the 6-minute run; load + any render at most 5 s and 600 MB.
"""

from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import common

INTERVAL = 0.0001
SECONDS = {"quick": 36.0, "full": 360.0}
READING_EVERY = 0.5
HOUR_SAMPLES = 3_600_000
GOALS = {"mb_per_hour": 50.0, "stop_seconds": 1.0, "stop_mb": 150.0, "render_seconds": 5.0, "render_mb": 600.0}
FUNCTIONS = 64
MAX_DEPTH = 30
PATHS = 450  # distinct random call paths; with two threads and the lines (and C calls) a sample lands on: ~2.7 x 10^5 distinct stacks in 6 minutes, as in the issue
FORMATS = ("text", "html", "json", "speedscope", "session", "pstats", "collapsed", "flamegraph", "firefox",
           "chrometrace", "pprof")
MB = 1e6
WORKLOAD = (f"two threads run {FUNCTIONS} generated functions along {PATHS:,} seeded random call paths 1-{MAX_DEPTH} "
            "deep; each function loops a little before calling the next one on its path")

FUNCTION_TEMPLATE = """
def f{i:02d}(path, depth):
    total = 0
    for k in range(WORK[{i}]):
        total += k
    if depth < len(path):
        total += FUNCS[path[depth]](path, depth + 1)
    return total
"""


# -- child side ---------------------------------------------------------------------------


def generate(rng: random.Random) -> Tuple[List[Callable[..., int]], List[Tuple[int, ...]]]:
    namespace: Dict[str, Any] = {"WORK": [rng.randrange(5, 40) for _ in range(FUNCTIONS)], "FUNCS": []}
    exec(compile("".join(FUNCTION_TEMPLATE.format(i=i) for i in range(FUNCTIONS)), "<bench-scale>", "exec"),
         namespace)
    functions = [namespace[f"f{i:02d}"] for i in range(FUNCTIONS)]
    namespace["FUNCS"].extend(functions)
    paths = [tuple(rng.randrange(FUNCTIONS) for _ in range(rng.randrange(1, MAX_DEPTH + 1))) for _ in range(PATHS)]
    return functions, paths


def work_until(deadline: float, functions: Sequence[Callable[..., int]], paths: Sequence[Tuple[int, ...]],
               seed: int, readings: List[Tuple[float, int]], start: float) -> None:
    rng = random.Random(seed)
    due = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now >= deadline:
            return
        if now >= due and readings is not None:
            readings.append((now - start, common.rss_bytes()))
            due += READING_EVERY
        path = paths[rng.randrange(len(paths))]
        functions[path[0]](path, 1)


def child_profile(seconds: float, session_file: str) -> Dict[str, Any]:
    from pyinstrument import Profiler

    functions, paths = generate(random.Random(15))
    gc.collect()
    start_rss = common.rss_bytes()
    readings: List[Tuple[float, int]] = []
    profiler = Profiler(interval=INTERVAL, all_threads=True)
    profiler.start()
    start = time.perf_counter()
    deadline = start + seconds
    other = threading.Thread(target=work_until, args=(deadline, functions, paths, 2, None, start))
    other.start()
    work_until(deadline, functions, paths, 1, readings, start)
    other.join()
    before_stop_rss = common.rss_bytes()
    t0 = time.perf_counter()
    session = profiler.stop()
    stop_seconds = time.perf_counter() - t0
    after_stop_rss = common.rss_bytes()
    t0 = time.perf_counter()
    session.save(session_file)
    save_seconds = time.perf_counter() - t0
    return {"start_rss": start_rss, "readings": readings, "before_stop_rss": before_stop_rss,
            "after_stop_rss": after_stop_rss, "stop_seconds": stop_seconds, "save_seconds": save_seconds,
            "samples": session.sample_count, "records": len(session.frame_records),
            "file_bytes": os.path.getsize(session_file)}


# -- parent side --------------------------------------------------------------------------


def slope(points: Sequence[Tuple[float, int]]) -> float:
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / sxx if sxx else 0.0


def load_and_render(python: str, session_file: str, fmt: str, folder: str) -> Dict[str, Any]:
    """`pyinstrument --load` in a fresh process: its wall time and peak RSS."""
    out = os.path.join(folder, f"report.{fmt}")
    command = [python, "-E", "-s", "-m", "pyinstrument", "--load", session_file, "-r", fmt, "-o", out]
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
    error = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.returncode != 0:
        return {"format": fmt, "failed": error.splitlines()[-1][:200] if error else f"exit {proc.returncode}"}
    return {"format": fmt, "seconds": seconds, "peak_mb": usage.ru_maxrss * 1024 / MB,
            "output_bytes": os.path.getsize(out) if os.path.exists(out) else 0}


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    seconds = SECONDS["quick" if quick else "full"]
    common.log(f"  scale on Python {env.version}: {seconds:g} s at {INTERVAL * 1000:g} ms, two busy threads")
    with tempfile.TemporaryDirectory(prefix="pyi-scale-") as folder:
        session_file = os.path.join(folder, "run.pyisession")
        run = common.run_child(env.ours, "scale.py", "profile", timeout=seconds * 4 + 600, seconds=seconds,
                               session_file=session_file)
        later = [(t, r) for t, r in run["readings"] if t >= seconds / 2]
        samples_per_s = run["samples"] / seconds
        run["mb_per_hour"] = slope(later) / samples_per_s * HOUR_SAMPLES / MB if samples_per_s else 0.0
        run["stop_mb"] = (run["after_stop_rss"] - run["before_stop_rss"]) / MB
        common.log(f"    {run['samples']:,} samples, {run['records']:,} distinct stacks; "
                   f"{run['mb_per_hour']:.1f} MB/hour while profiling; stop() {run['stop_seconds']:.2f} s "
                   f"{run['stop_mb']:+.0f} MB; file {run['file_bytes'] / MB:.0f} MB")
        renders = []
        for fmt in FORMATS:
            result = load_and_render(env.ours, session_file, fmt, folder)
            renders.append(result)
            common.log(f"    {fmt:>11}: " + (f"failed: {result['failed']}" if "failed" in result else
                                             f"{result['seconds']:.1f} s, {result['peak_mb']:.0f} MB peak"))
    return {"version": env.version, "seconds": seconds, "interval": INTERVAL, "run": run, "renders": renders,
            "goals": GOALS}


# -- report -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    run, goals = result["run"], result["goals"]
    minutes = result["seconds"] / 60
    lines = [f"### Scale on Python {result['version']}", "",
             f"The program: {WORKLOAD}, profiled for {minutes:g} minutes every {result['interval'] * 1000:g} ms "
             f"with all_threads=True: {run['samples']:,} samples of {run['records']:,} distinct stacks. "
             "**While profiling**: the slope of RSS over the second half of the run, per sample, times "
             f"{HOUR_SAMPLES:,} (an hour at 1 ms). **stop()**: its wall time and what it added to RSS, the "
             "Session held. Then the session is saved, and each format is rendered from the file by "
             "`pyinstrument --load FILE -r FORMAT -o OUT` in a fresh process: its wall time and peak RSS.", "",
             "| | measured | goal |", "| --- | --- | --- |",
             f"| while profiling | {run['mb_per_hour']:.1f} MB/hour | ≤ {goals['mb_per_hour']:g} |",
             f"| stop() | {run['stop_seconds']:.2f} s, {run['stop_mb']:+.0f} MB | ≤ {goals['stop_seconds']:g} s, "
             f"≤ {goals['stop_mb']:g} MB |",
             f"| session file | {run['file_bytes'] / MB:.0f} MB (saved in {run['save_seconds']:.1f} s) | |", "",
             "| format | load + render (s) | peak RSS (MB) | output (MB) |", "| --- | --- | --- | --- |"]
    verdicts = [f"- scale, while profiling: {run['mb_per_hour']:.1f} MB/hour, goal ≤ {goals['mb_per_hour']:g}: "
                f"{verdict(run['mb_per_hour'] <= goals['mb_per_hour'])}",
                f"- scale, stop(): {run['stop_seconds']:.2f} s and {run['stop_mb']:.0f} MB, goal ≤ "
                f"{goals['stop_seconds']:g} s and ≤ {goals['stop_mb']:g} MB: "
                f"{verdict(run['stop_seconds'] <= goals['stop_seconds'] and run['stop_mb'] <= goals['stop_mb'])}"]
    slowest = 0.0
    biggest = 0.0
    for render in result["renders"]:
        if "failed" in render:
            lines.append(f"| {render['format']} | failed: {render['failed']} | | |")
            verdicts.append(f"- scale, {render['format']}: failed: goal NOT met")
            continue
        slowest = max(slowest, render["seconds"])
        biggest = max(biggest, render["peak_mb"])
        lines.append(f"| {render['format']} | {render['seconds']:.1f} | {render['peak_mb']:.0f} | "
                     f"{render['output_bytes'] / MB:.1f} |")
    verdicts.append(f"- scale, load + render: slowest {slowest:.1f} s, largest {biggest:.0f} MB, goal ≤ "
                    f"{goals['render_seconds']:g} s and ≤ {goals['render_mb']:g} MB: "
                    f"{verdict(slowest <= goals['render_seconds'] and biggest <= goals['render_mb'])}")
    return lines + [""], verdicts


def chart(result: Dict[str, Any], path: str) -> None:
    plt = common.pyplot()
    renders = [r for r in result["renders"] if "failed" not in r]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh([r["format"] for r in renders], [r["seconds"] for r in renders], color="#4c72b0")
    ax.axvline(result["goals"]["render_seconds"], color="#c44e52", linestyle="--", label="goal")
    ax.set_xlabel("load + render (s)")
    ax.set_title(f"A {result['seconds'] / 60:g}-minute 0.1 ms session, every format (Python {result['version']})")
    ax.legend()
    common.save_chart(fig, path)


if __name__ == "__main__":
    common.module_main(__doc__.splitlines()[0], {"profile": child_profile}, measure, report, chart)
