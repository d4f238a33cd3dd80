"""No spare core: the overhead of each profiler with the whole process pinned to one core,
and what our sampler spends per tick there.

A server usually runs as many workers as it has cores, so a profiler's sampling thread
takes its CPU time from the program. Each workload runs with its process pinned to
core 0 (threads it starts inherit that), in chunks of about 0.1 s alternating
unprofiled and profiled (U P U P ... U, each P divided by the mean of its neighbours),
as in the overhead benchmark. The configurations:

- **floor**: our sampling thread ticking for a thread that has ended: it wakes every
  interval, reads the thread list and walks no stack. Any sampling thread that wakes that
  often costs about this much (the kernel's timer, the switch to the waking thread and
  back); what ours costs above it is its reading and recording.
- **ours**: all threads profiled; for it also the CPU time of our sampling thread (named
  `pyinstrument`, from /proc/self/task/TID/schedstat) per tick, wake-up included, and the
  engine's syscalls per tick.
- **upstream**: pyinstrument from PyPI (it profiles the thread that starts it).
- **py-spy** (1 ms only): `py-spy record --pid`, itself pinned to the same core, whole
  processes between unprofiled ones (it attaches from outside).

Workloads: fib, the mixed load and the Django render of the overhead benchmark, and
**pool**: fib in the main thread while 15 threads of a worker pool wait 10 frames deep.

    python bench/pinned.py [--quick] [--python PATH]    (standalone; `make bench` runs it all)
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Dict, List, Optional, Tuple

import common
import overhead

CORE = 0
WORKLOADS = ("fib", "mixed", "django", "pool")
CONFIGS = [("floor", 0.001), ("ours", 0.001), ("upstream", 0.001), ("floor", 0.0001), ("ours", 0.0001),
           ("upstream", 0.0001)]
GOALS = {0.001: 1.02, 0.0001: 1.15}
FULL_PLAN = dict(chunk=0.1, pairs=10, processes=2, process_seconds=0.25, process_rounds=3)
QUICK_PLAN = dict(chunk=0.05, pairs=6, processes=1, process_seconds=0.25, process_rounds=1)


# -- child side ---------------------------------------------------------------------------------------


def sampler_cpu_ns() -> int:
    """CPU time so far of our sampling thread (0 before it exists)."""
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                if f.read().strip() != "pyinstrument":
                    continue
            with open(f"/proc/self/task/{task}/schedstat") as f:
                return int(f.read().split()[0])
        except OSError:
            continue
    return 0


class Floor:
    """Our sampling thread ticking for a thread that has ended: every interval it wakes,
    reads the thread list and walks no stack."""

    def __init__(self, interval: float) -> None:
        import threading

        from pyinstrument import _engine

        gone = threading.Thread(target=lambda: None)
        gone.start()
        gone.join()
        self.sampler = _engine.Sampler(interval, gone.ident)
        self.sampler.start()

    def stop(self) -> None:
        self.sampler.stop()


def child_alternate(workload: str, profiler: str, interval: float, reps: int, pairs: int) -> Dict[str, Any]:
    """U P U P ... U chunks with the process pinned; for ours, its sampler's cost per tick."""
    os.sched_setaffinity(0, {CORE})
    import workloads

    run = workloads.make(workload)
    run(reps)  # warm-up
    ratios: List[float] = []
    before = overhead.timed(run, reps)
    cpu_ns = ticks = syscalls = 0
    for _ in range(pairs):
        if profiler == "floor":
            p: Any = Floor(interval)
        else:
            p = overhead.start_profiler(profiler, interval, all_threads=True)
        cpu_before = sampler_cpu_ns()
        t0 = time.perf_counter()
        run(reps)
        seconds = time.perf_counter() - t0
        cpu_after = sampler_cpu_ns()
        if profiler == "floor":
            p.stop()
        else:
            overhead.stop_profiler(profiler, p)
        if profiler == "ours":
            counts = p._engine_counts
            cpu_ns += cpu_after - cpu_before
            ticks += counts["ticks"]
            syscalls += counts["syscalls"]
        after = overhead.timed(run, reps)
        ratios.append(seconds / ((before + after) / 2))
        before = after
    return {"ratios": ratios, "cpu_ns": cpu_ns, "ticks": ticks, "syscalls": syscalls}


# -- parent side -----------------------------------------------------------------------------------------


def pinned_pyspy(env: common.PythonEnv, workload: str, plan: Dict[str, Any]) -> List[float]:
    """py-spy at 1 ms on a pinned child, itself pinned: whole runs between unprofiled ones."""
    reps = overhead.calibrate(env, workload, plan["process_seconds"])
    pin = ["taskset", "-c", str(CORE)]
    whole = lambda: common.run_child(env.ours, "overhead.py", "whole", workload=workload, profiler="none",
                                     reps=reps, prefix=pin)["seconds"]
    ratios, before = [], whole()
    for _ in range(plan["process_rounds"]):
        res = overhead.run_under_pyspy(env, workload, 0.001, reps, prefix=pin)
        after = whole()
        ratios.append(res["seconds"] / ((before + after) / 2))
        before = after
    return ratios


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    plan = QUICK_PLAN if quick else FULL_PLAN
    configs = [(p, i) for p, i in CONFIGS if not (p == "upstream" and env.upstream is None)]
    rng = random.Random(5)
    common.log(f"  pinned to one core, Python {env.version}")
    rows: List[Dict[str, Any]] = []
    for workload in WORKLOADS:
        reps = overhead.calibrate(env, workload, plan["chunk"])
        runs: Dict[Tuple[str, float], List[Dict[str, Any]]] = {c: [] for c in configs}
        for _ in range(plan["processes"]):
            order = list(configs)
            rng.shuffle(order)
            for profiler, interval in order:
                python = env.upstream if profiler == "upstream" else env.ours
                runs[(profiler, interval)].append(common.run_child(
                    python, "pinned.py", "alternate", workload=workload, profiler=profiler, interval=interval,
                    reps=reps, pairs=plan["pairs"]))
        for (profiler, interval), done in runs.items():
            ratios = [r for one in done for r in one["ratios"]]
            ticks = sum(one["ticks"] for one in done)
            rows.append(dict(workload=workload, profiler=profiler, interval=interval, ratio=common.spread(ratios),
                             n=len(ratios), cpu_us=sum(one["cpu_ns"] for one in done) / ticks / 1000 if ticks else None,
                             syscalls=sum(one["syscalls"] for one in done) / ticks if ticks else None))
            common.log(f"    {workload:>6} {profiler:>8} @ {overhead.ms(interval):>6}: x{rows[-1]['ratio'][0]:.3f}")
        if env.pyspy:
            try:
                ratios = pinned_pyspy(env, workload, plan)
                rows.append(dict(workload=workload, profiler="py-spy", interval=0.001, ratio=common.spread(ratios),
                                 n=len(ratios), cpu_us=None, syscalls=None))
                common.log(f"    {workload:>6}   py-spy @ 1 ms: x{rows[-1]['ratio'][0]:.3f}")
            except common.ChildFailed as exc:
                common.log(f"    {workload} py-spy failed: {str(exc).strip().splitlines()[-1][:200]}")
    return dict(version=env.version, upstream_version=env.upstream_version, plan=plan, rows=rows)


# -- report -----------------------------------------------------------------------------------------------


def find(result: Dict[str, Any], workload: str, profiler: str, interval: float) -> Optional[Dict[str, Any]]:
    return next((r for r in result["rows"] if (r["workload"], r["profiler"], r["interval"]) ==
                 (workload, profiler, interval)), None)


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    upstream = f"upstream {result['upstream_version']}" if result.get("upstream_version") else "upstream"
    lines = [f"### Pinned to one core, Python {result['version']}", "",
             "Median ratio to unprofiled (interquartile range); for ours, our sampling thread's CPU time "
             "per tick (wake-up included) and syscalls per tick. The floor is our sampling thread waking "
             "every interval and reading the thread list only.", "",
             f"| workload | interval | floor | ours | ours: sampler CPU µs/tick | syscalls/tick | {upstream} | "
             "py-spy |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    verdicts = []
    for workload in WORKLOADS:
        for interval in (0.001, 0.0001):
            cells = []
            for profiler in ("floor", "ours"):
                row = find(result, workload, profiler, interval)
                cells.append(f"{row['ratio'][0]:.3f}x ({row['ratio'][1]:.3f}-{row['ratio'][2]:.3f})" if row else "-")
            ours = find(result, workload, "ours", interval)
            cells.append(f"{ours['cpu_us']:.1f}" if ours and ours["cpu_us"] is not None else "-")
            cells.append(f"{ours['syscalls']:.1f}" if ours and ours["syscalls"] is not None else "-")
            for profiler in ("upstream", "py-spy"):
                row = find(result, workload, profiler, interval)
                cells.append(f"{row['ratio'][0]:.3f}x" if row else "-")
            lines.append(f"| {workload} | {overhead.ms(interval)} | " + " | ".join(cells) + " |")
            if ours and workload != "pool":
                goal, floor = GOALS[interval], find(result, workload, "floor", interval)
                above = f"; the floor {floor['ratio'][0]:.3f}x" if floor else ""
                verdicts.append(f"- pinned to one core, Python {result['version']}, {workload} at "
                                f"{overhead.ms(interval)}: **{ours['ratio'][0]:.3f}x** (goal ≤ {goal:.2f}x{above}): "
                                f"goal {'met' if ours['ratio'][0] <= goal else 'NOT met'}")
    above = {interval: [find(result, w, "ours", interval)["ratio"][0] - find(result, w, "floor", interval)["ratio"][0]
                        for w in WORKLOADS if find(result, w, "ours", interval) and find(result, w, "floor", interval)]
             for interval in (0.001, 0.0001)}
    if above[0.001] and above[0.0001]:
        lines += ["", f"Above the floor, ours costs {min(above[0.001]):+.3f} to {max(above[0.001]):+.3f} at 1 ms and "
                  f"{min(above[0.0001]):+.3f} to {max(above[0.0001]):+.3f} at 0.1 ms: its reading and recording. The "
                  "floor is the price of a thread waking at all: on this virtual machine a bare `clock_nanosleep` "
                  "loop in C takes 24-35 µs of CPU per wake-up, the kernel's timer and the two switches included."]
        for interval, goal in GOALS.items():
            floors = [find(result, w, "floor", interval) for w in WORKLOADS if w != "pool"]
            if floors and all(f and f["ratio"][0] > goal for f in floors):
                lines.append(f"At {overhead.ms(interval)} the floor alone is above the goal ({goal:.2f}x) for "
                             "every workload: no sampling thread can meet it here with the process pinned.")
    lines.append("")
    return lines, verdicts


def chart(results: Any, path: str) -> None:
    """Ours and the floor at 1 ms, per workload and Python."""
    plt = common.pyplot()
    results = results if isinstance(results, list) else [results]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / (2 * len(results))
    for k, result in enumerate(results):
        for j, profiler in enumerate(("floor", "ours")):
            values = [(find(result, w, profiler, 0.001) or {"ratio": (float("nan"),)})["ratio"][0] for w in WORKLOADS]
            ax.bar([i + (2 * k + j) * width for i in range(len(WORKLOADS))], values, width,
                   label=f"{profiler}, Python {result['version']}")
    ax.axhline(1.02, color="gray", linewidth=0.6, linestyle="--")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(WORKLOADS))])
    ax.set_xticklabels(WORKLOADS)
    ax.set_ylim(0.95, None)
    ax.set_ylabel("time / unprofiled time")
    ax.set_title("Pinned to one core, 1 ms")
    ax.legend(fontsize=7)
    common.save_chart(fig, path)


if __name__ == "__main__":
    common.module_main(__doc__.split("\n\n")[0], {"alternate": child_alternate}, measure, report, chart)
