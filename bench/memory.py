"""Memory: how much resident memory a profiler adds over an hour's worth of 1 ms samples.

    python bench/memory.py [--quick] [--python PATH] [--chart FILE.svg]

One program runs unprofiled, under ours and under upstream pyinstrument, each in a fresh
interpreter, and reads its own RSS every half second between units of work. The growth
rate is the least-squares slope of RSS over the second half of the run (allocators grow
in steps, so the end minus the start would mostly measure where a step fell). A profiler's
memory follows its samples, not the clock, so the run samples every 0.1 ms to gather in 90 s
what 25 minutes at 1 ms would, and the growth per sample times 3.6 million samples is the
hour at 1 ms. The RSS after stop(), with the Session it returns still held, is reported
apart: building the Session is memory the user pays too.

The program is a worst case for our engine, which keeps an aggregated call tree (it grows
with distinct stacks, then saturates) and a timeline with one 8-byte entry per sample whose
stack differs from the previous one (capped at 4,000,000 entries). 300 generated functions
call each other along thousands of paths, each unit of work lasting microseconds, so
nearly every 1 ms sample sees a new stack; the program's own memory stays flat.
"""

from __future__ import annotations

import gc
import importlib.util
import random
import sys
from array import array
from time import perf_counter
from typing import Any, Callable, Dict, List, Sequence, Tuple

import common

GOAL_MB_PER_HOUR = 50.0
MB = 1e6
INTERVAL = 0.0001  # ten samples for every one at 1 ms: less extrapolation to an hour
HOUR_SAMPLES = 3_600_000  # an hour at 1 ms
SECONDS = {"quick": 8.0, "full": 90.0}
WARMUP_SECONDS = {"quick": 0.5, "full": 3.0}  # unprofiled, before the start RSS: 3.11+ specialises bytecode
READING_EVERY = 0.5
FIT_FROM = 0.5  # the slope is fitted to the readings after this fraction of the run
PROFILERS = ("none", "ours", "upstream")
TIMELINE_CAP_ENTRIES = 4_000_000  # the engine's default timeline budget, 8 bytes an entry

# The generated program: FUNCTIONS functions with distinct names; each loops 10-60 times, then,
# while `depth` lasts, calls one of its two fixed callees, chosen by the low bit of `path`.
FUNCTIONS = 300
MAX_DEPTH = 3  # calls below the driver's function: 1-4 generated frames a stack
FUNCTION_TEMPLATE = """
def f{i:03d}(depth, path):
    total = 0
    for k in range(WORK[{i}]):
        total += k * {i} % 7
    if depth:
        total += CALLS[{i}][path & 1](depth - 1, path >> 1)
    return total
"""
CALL_PATHS = FUNCTIONS * (2 ** (MAX_DEPTH + 1) - 1)
WORKLOAD = (f"{FUNCTIONS} functions generated with distinct names, each looping 10-60 times and then, while its "
            "depth lasts, calling one of its two fixed callees; a driver calls a random one with a random depth "
            f"(0-{MAX_DEPTH}) and path, each such unit of work lasting a few microseconds. Up to {CALL_PATHS:,} "
            "call paths (times the lines a sample can land on) make the stacks, and consecutive samples almost "
            "never share one, as in a large program busy in many places at once. It keeps no data and allocates "
            "only short-lived integers, so unprofiled it does not grow")

# -- child side --------------------------------------------------------------------------


def generate_functions(rng: random.Random) -> List[Callable[[int, int], int]]:
    """FUNCTIONS distinct functions compiled from source, so each has its own code object and lines."""
    namespace: Dict[str, Any] = {"WORK": [rng.randrange(10, 61) for _ in range(FUNCTIONS)], "CALLS": []}
    source = "".join(FUNCTION_TEMPLATE.format(i=i) for i in range(FUNCTIONS))
    exec(compile(source, "<bench-memory-generated>", "exec"), namespace)
    functions = [namespace[f"f{i:03d}"] for i in range(FUNCTIONS)]
    namespace["CALLS"].extend([rng.choice(functions), rng.choice(functions)] for _ in range(FUNCTIONS))
    return functions


def run_for(functions: Sequence[Callable[[int, int], int]], rng: random.Random, times: array, rss: array) -> None:
    """Runs units of work, filling times/rss (preallocated arrays, so recording allocates
    nothing that stays) with a reading every READING_EVERY s; the first reading at once."""
    start = perf_counter()
    due = start
    count = 0
    while count < len(times):
        now = perf_counter()
        if now >= due:
            times[count] = now - start
            rss[count] = common.rss_bytes()
            count += 1
            due += READING_EVERY
        functions[rng.randrange(FUNCTIONS)](rng.randrange(MAX_DEPTH + 1), rng.getrandbits(MAX_DEPTH))


def readings(seconds: float) -> Tuple[array, array]:
    count = int(round(seconds / READING_EVERY)) + 1
    return array("d", [0.0] * count), array("q", [0] * count)


def start_profiler(profiler: str, interval: float) -> Any:
    if profiler == "none":
        return None
    from pyinstrument import Profiler

    p = Profiler(interval=interval)
    p.start()
    return p


def engine_tables(p: Any) -> Dict[str, Any]:
    """Sizes our engine's tables reached (Profiler keeps its counters when stop() frees them)."""
    counts = p._engine_counts
    return {"samples": counts["samples"], "ticks": counts["ticks"], "nodes": counts["nodes"],
            "timeline_bytes": 8 * counts["timeline_entries"], "timeline_truncated": counts["timeline_truncated"]}


def session_tables(session: Any) -> Dict[str, Any]:
    """How big our Session's timeline is: what stop() builds per timeline entry."""
    timeline = session.timeline
    entries = len(timeline) if timeline is not None else 0
    size = 0
    if timeline is not None:  # two flat arrays: record indices and seconds
        size = sys.getsizeof(timeline.records) + sys.getsizeof(timeline.seconds)
    return {"records": len(session.frame_records), "timeline_entries": entries, "timeline_bytes": size}


def child_memory(profiler: str, seconds: float, warmup: float, interval: float, seed: int) -> Dict[str, Any]:
    is_ours = importlib.util.find_spec("pyinstrument._engine") is not None
    if profiler != "none" and is_ours != (profiler == "ours"):
        raise SystemExit(f"{sys.executable} does not have the {profiler} pyinstrument")
    if profiler != "none":
        import pyinstrument  # noqa: F401  (before the start RSS: importing is not profiling)
    rng = random.Random(seed)
    functions = generate_functions(rng)
    run_for(functions, rng, *readings(warmup))
    times, rss = readings(seconds)
    gc.collect()
    start_rss = common.rss_bytes()
    p = start_profiler(profiler, interval)
    run_for(functions, rng, times, rss)
    session = p.stop() if p is not None else None
    after_stop_rss = common.rss_bytes()  # the session is still alive here, as it is for the user
    return {"profiler": profiler, "seconds": seconds, "start_rss": start_rss, "times": list(times),
            "rss": list(rss), "after_stop_rss": after_stop_rss,
            "samples": session.sample_count if session is not None else None,
            "engine": engine_tables(p) if profiler == "ours" else None,
            "session": session_tables(session) if profiler == "ours" else None}


# -- parent side --------------------------------------------------------------------------


def fit_slope(times: Sequence[float], values: Sequence[float]) -> Tuple[float, float]:
    """Least-squares slope of values over times, and the half-width of its ~95% interval."""
    n = len(times)
    mean_t, mean_v = sum(times) / n, sum(values) / n
    sxx = sum((t - mean_t) ** 2 for t in times)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values)) / sxx
    residuals = sum((v - mean_v - slope * (t - mean_t)) ** 2 for t, v in zip(times, values))
    return slope, 1.96 * (residuals / (n - 2) / sxx) ** 0.5


def growth(run: Dict[str, Any]) -> Dict[str, Any]:
    """Growth while profiling (fitted to the later readings) per hour of 1 ms samples, and the
    other RSS figures."""
    later = [(t, r) for t, r in zip(run["times"], run["rss"]) if t >= FIT_FROM * run["seconds"]]
    slope, ci = fit_slope([t for t, _ in later], [r for _, r in later])
    samples_per_s = run["samples"] / run["seconds"] if run["samples"] else 1 / INTERVAL
    hour = HOUR_SAMPLES / samples_per_s / MB  # MB per hour of samples, per byte per second
    last_rss = run["rss"][-1]
    return {"mb_per_hour": slope * hour, "ci_mb_per_hour": ci * hour, "samples_per_s": samples_per_s,
            "run_mb": (last_rss - run["start_rss"]) / MB,
            "after_stop_mb": (run["after_stop_rss"] - run["start_rss"]) / MB,
            # what stop() added, as if the run had an hour of samples (an upper bound: the timeline
            # grows with the samples, the frame records only with the distinct stacks)
            "stop_mb_per_hour": (run["after_stop_rss"] - last_rss) / run["seconds"] * hour}


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    mode = "quick" if quick else "full"
    seconds, warmup = SECONDS[mode], WARMUP_SECONDS[mode]
    pythons = {"none": env.ours, "ours": env.ours, "upstream": env.upstream}
    common.log(f"  memory on Python {env.version}: {seconds:g} s at {INTERVAL * 1000:g} ms per profiler")
    runs: Dict[str, Any] = {}
    for profiler in PROFILERS:
        python = pythons[profiler]
        if python is None:
            runs[profiler] = {"skipped": f"upstream pyinstrument is not installed for Python {env.short}"}
            continue
        try:
            run = common.run_child(python, "memory.py", "memory", profiler=profiler, seconds=seconds,
                                   warmup=warmup, interval=INTERVAL, seed=1)
        except common.ChildFailed as exc:
            runs[profiler] = {"skipped": str(exc).strip().splitlines()[-1][:200]}
            common.log(f"    {profiler} failed: {runs[profiler]['skipped']}")
            continue
        run.update(growth(run))
        runs[profiler] = run
        common.log(f"    {profiler:>8}: {run['mb_per_hour']:.1f} MB/hour while profiling, "
                   f"{run['after_stop_mb']:.1f} MB after stop")
    return {"version": env.version, "upstream_version": env.upstream_version, "interval": INTERVAL,
            "seconds": seconds, "warmup": warmup, "goal_mb_per_hour": GOAL_MB_PER_HOUR, "runs": runs,
            "notes": list(env.notes)}


# -- report -------------------------------------------------------------------------------


def profiler_label(result: Dict[str, Any], profiler: str) -> str:
    if profiler == "upstream" and result["upstream_version"]:
        return f"upstream {result['upstream_version']}"
    return {"none": "unprofiled"}.get(profiler, profiler)


def table_row(result: Dict[str, Any], profiler: str) -> str:
    run, label = result["runs"][profiler], profiler_label(result, profiler)
    if "skipped" in run:
        return f"| {label} | n/a ({run['skipped']}) | | | | | |"
    bold = "**" if profiler == "ours" else ""
    samples = f"{run['samples']:,}" if run["samples"] is not None else "-"
    stop = f"{run['stop_mb_per_hour']:.0f}" if profiler != "none" else "-"
    return (f"| {label} | {bold}{run['mb_per_hour']:.1f}{bold} ±{run['ci_mb_per_hour']:.1f} "
            f"| {run['start_rss'] / MB:.1f} | {run['run_mb']:+.2f} | {run['after_stop_mb']:+.2f} | {stop} "
            f"| {samples} |")


def where_ours_goes(result: Dict[str, Any]) -> List[str]:
    """Our engine's tables at stop() and the Session's timeline: where our memory goes."""
    run = result["runs"]["ours"]
    tables, session = run.get("engine"), run.get("session")
    if not tables or not session:
        return []
    entries = tables["timeline_bytes"] // 8
    changed = entries / tables["samples"] if tables["samples"] else 0.0
    per_hour = min(changed * HOUR_SAMPLES, TIMELINE_CAP_ENTRIES)
    stop_bytes = run["after_stop_rss"] - run["rss"][-1]
    lines = [f"Where ours goes. While profiling: the engine took {tables['samples']:,} samples "
             f"in {tables['ticks']:,} ticks; its call tree has {tables['nodes']:,} nodes (40 bytes each, plus "
             "8-16 bytes of hash slots; it stops growing once the program's distinct stacks have all been seen) "
             f"and its timeline {entries:,} entries ({tables['timeline_bytes'] / MB:.2f} MB: the stack changed "
             f"at {100 * changed:.0f}% of samples). An hour of 1 ms samples at this pace is {per_hour:,.0f} timeline entries, "
             f"{per_hour * 8 / MB:.1f} MB (the budget, for all threads together, is {TIMELINE_CAP_ENTRIES:,} "
             f"entries, {TIMELINE_CAP_ENTRIES * 8 / MB:.0f} MB"
             + (", reached in this run" if tables["timeline_truncated"] else "") + ")."]
    if session["timeline_entries"]:
        lines.append(
            f"At stop(): the Session holds {session['records']:,} frame records and its timeline of "
            f"{session['timeline_entries']:,} (record, seconds) entries in two flat arrays, "
            f"{session['timeline_bytes'] / session['timeline_entries']:.0f} bytes an entry "
            f"({session['timeline_bytes'] / MB:.1f} MB); RSS grew by {stop_bytes / MB:.1f} MB in stop(), "
            f"{stop_bytes / session['timeline_entries']:.0f} bytes per timeline entry with the records and what "
            "building them left in the allocator's arenas. (Once the engine's timeline budget has run out, the "
            "Session gets no timeline at all.)")
    return [" ".join(lines), ""]


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    upstream = profiler_label(result, "upstream")
    lines = [f"### Memory on Python {result['version']}", "",
             f"Each profiler runs the same program for {result['seconds']:g} s, sampling every "
             f"{result['interval'] * 1000:g} ms, in a fresh interpreter (after {result['warmup']:g} s unprofiled "
             f"to warm up); the program reads its RSS every {READING_EVERY:g} s between units of work. A "
             "profiler's memory follows its samples, not the clock, so the fast interval gathers in one run "
             "many minutes' worth of 1 ms samples. **While profiling**: the least-squares slope of RSS over the "
             f"last {100 * (1 - FIT_FROM):.0f}% of the run, per sample, times {HOUR_SAMPLES:,} samples (an hour "
             "at 1 ms; ± its 95% interval; MB = 10^6 bytes). **Over the run**: the last reading minus the RSS just before start() (after the "
             "imports). **After stop**: the RSS with the Profiler and the Session that stop() returned still held, "
             "over the start RSS. **stop() per hour**: what stop() itself added, scaled to an hour of samples.", "",
             f"The program: {WORKLOAD}. It is a worst case for our engine, whose timeline takes 8 bytes for every "
             "sample whose stack differs from the one before; a program that stays in one place between samples "
             "costs far less.", "",
             "Scaling to an hour is linear, so for ours it is an upper bound: the call tree and the frame records "
             "stop growing once "
             "every distinct stack has been seen (in a short run it is still growing, so quick runs read higher) "
             "and the timeline stops at its budget. Upstream keeps a record of every sample, so for "
             f"{upstream} it is not.", ""]
    lines += [f"- {note}" for note in result["notes"]] + ([""] if result["notes"] else [])
    lines += ["| profiler | while profiling (MB/hour) | RSS at start (MB) | over the run (MB) "
              "| after stop (session built, MB) | stop() per hour (MB) | samples |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [table_row(result, profiler) for profiler in PROFILERS] + [""]
    return lines + where_ours_goes(result), verdicts(result)


def verdicts(result: Dict[str, Any]) -> List[str]:
    goal, run = result["goal_mb_per_hour"], result["runs"]["ours"]
    where = f"- memory, Python {result['version']}, ours, an hour of 1 ms samples:"
    if "skipped" in run:
        return [f"{where} not measured ({run['skipped']}): goal NOT met"]
    lines = []
    for value, what in ((run["mb_per_hour"], "RSS growth while profiling"),
                        (run["mb_per_hour"] + run["stop_mb_per_hour"], "with the session stop() builds")):
        met = "met" if value <= goal else "NOT met"
        lines.append(f"{where} **{value:.1f} MB per hour** ({what}), goal (≤ {goal:g} MB/hour) {met}")
    return lines


def chart(result: Dict[str, Any], path: str) -> None:
    """RSS over the start RSS against time, one line per profiler, with the fitted slopes;
    the right panel leaves upstream out to show ours and unprofiled at their own scale."""
    plt = common.pyplot()
    colors = {"none": "#7f7f7f", "ours": "#1f77b4", "upstream": "#ff7f0e"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, shown in zip(axes, (PROFILERS, ("none", "ours"))):
        for profiler in shown:
            run = result["runs"][profiler]
            if "skipped" in run:
                continue
            mb = [(r - run["start_rss"]) / MB for r in run["rss"]]
            ax.plot(run["times"], mb, color=colors[profiler], linewidth=1.2,
                    label=f"{profiler_label(result, profiler)}: {run['mb_per_hour']:.1f} MB per hour at 1 ms")
            t0, t1 = FIT_FROM * run["seconds"], run["times"][-1]
            slope = run["mb_per_hour"] * run["samples_per_s"] / HOUR_SAMPLES  # MB per second
            ax.plot([t0, t1], [mb[-1] - slope * (t1 - t0), mb[-1]], color=colors[profiler], linestyle="--",
                    linewidth=0.8)
            ax.plot([t1], [run["after_stop_mb"]], color=colors[profiler], marker="x")
        ax.set_xlabel("seconds profiled")
        ax.set_ylabel("RSS over the start (MB)")
        ax.legend(fontsize=8)
    axes[0].set_title(f"RSS while sampling every {result['interval'] * 1000:g} ms, Python {result['version']}",
                      fontsize=9)
    axes[1].set_title("ours and unprofiled only (dashed: fitted slope; x: after stop())", fontsize=9)
    common.save_chart(fig, path)



if __name__ == "__main__":
    common.module_main(__doc__.split("\n\n")[0], {"memory": child_memory}, measure, report, chart)
