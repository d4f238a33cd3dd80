"""Overhead: how much slower five workloads run under each profiler, as a ratio to the same
program unprofiled in the same run.

Only the workload is timed (start-up, imports, set-up and the profiler's start/stop are
outside the clock). Profilers that can be switched on and off inside a program (ours,
upstream, cProfile) are measured in chunks of about 0.1 s that alternate with unprofiled
chunks in the same process (U P U P ... U): each profiled chunk is divided by the mean of
the unprofiled chunks on either side, so the host's speed swings, which on this shared
machine last longer than a chunk, cancel. Several fresh processes per configuration, in
shuffled order, catch what differs between processes. py-spy attaches to a whole process,
so it is paired process by process instead (U P U with whole runs; a configuration more than
5x slower is run once). The A/A row applies the
same arithmetic to unprofiled chunks only: the noise floor of the run.

    python bench/overhead.py [--quick] [--python PATH]    (standalone; `make bench` runs it all)
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import common

# (profiler, interval): the configurations compared with unprofiled runs; "none" is the A/A check
FULL_CONFIGS = [("none", None), ("ours", 0.001), ("ours", 0.0001), ("upstream", 0.001), ("upstream", 0.0001),
                ("cProfile", None), ("py-spy", 0.001), ("py-spy", 0.0001)]
QUICK_CONFIGS = [("none", None), ("ours", 0.001), ("ours", 0.0001), ("upstream", 0.001), ("cProfile", None),
                 ("py-spy", 0.001)]
FULL_PLAN = dict(chunk=0.1, pairs=10, processes=2, process_seconds=0.25, process_rounds=3)
QUICK_PLAN = dict(chunk=0.05, pairs=8, processes=1, process_seconds=0.25, process_rounds=1)
GOAL_1MS_NEW, GOAL_1MS_OLD, GOAL_01MS = 1.02, 1.03, 1.08
ONE_RUN_ENOUGH = 5.0  # a whole run this many times slower needs no repeat (py-spy at 10 kHz: up to 250x)


def goal_for(version: str, interval: float) -> float:
    if interval < 0.001:
        return GOAL_01MS
    minor = int(version.split(".")[1])
    return GOAL_1MS_NEW if minor >= 12 else GOAL_1MS_OLD


# -- child side --------------------------------------------------------------------------------


def start_profiler(profiler: str, interval: float, all_threads: bool) -> Any:
    if profiler in ("ours", "upstream"):
        from pyinstrument import Profiler

        # upstream has no all_threads: it profiles the thread that starts it
        p = Profiler(interval=interval, all_threads=True) if profiler == "ours" and all_threads \
            else Profiler(interval=interval)
        p.start()
        return p
    if profiler == "cProfile":
        import cProfile

        p = cProfile.Profile()
        p.enable()
        return p
    return None


def stop_profiler(profiler: str, p: Any) -> Optional[int]:
    """Stops it; the number of samples it took, where that means something."""
    if profiler in ("ours", "upstream"):
        return p.stop().sample_count
    if profiler == "cProfile":
        p.disable()
    return None


def timed(run: Any, reps: int) -> float:
    gc.collect()  # so one chunk's garbage is not collected on the next one's clock
    t0 = time.perf_counter()
    run(reps)
    return time.perf_counter() - t0


def child_calibrate(workload: str) -> Dict[str, Any]:
    import workloads

    run = workloads.make(workload)
    run(1)
    best = min(timed(run, 3) for _ in range(3))
    return {"seconds_per_rep": best / 3}


def child_alternate(workload: str, profiler: str, interval: float, reps: int, pairs: int) -> Dict[str, Any]:
    """U P U P ... U chunks of `reps` each; the ratio of each P to its two neighbours."""
    import workloads

    run = workloads.make(workload)
    run(reps)  # warm-up (3.11+ specialises the bytecode)
    ratios, profiled, samples = [], [], []
    before = timed(run, reps)
    unprofiled = [before]
    for _ in range(pairs):
        gc.collect()
        p = start_profiler(profiler, interval, all_threads=workload == "threads")
        t0 = time.perf_counter()
        run(reps)
        seconds = time.perf_counter() - t0
        count = stop_profiler(profiler, p)
        after = timed(run, reps)
        ratios.append(seconds / ((before + after) / 2))
        profiled.append(seconds)
        unprofiled.append(after)
        if count is not None:
            samples.append(count / seconds)
        before = after
    return {"ratios": ratios, "profiled": profiled, "unprofiled": unprofiled, "samples_per_s": samples}


def child_whole(workload: str, profiler: str, reps: int) -> Dict[str, Any]:
    """One timed run of the workload; under py-spy, started once the parent says py-spy is sampling."""
    import workloads

    run = workloads.make(workload)
    run(max(1, reps // 10))  # warm-up alike in both modes
    if profiler == "py-spy":
        sys.stdin.readline()
    return {"seconds": timed(run, reps)}


# -- parent side ------------------------------------------------------------------------------------


def run_under_pyspy(env: common.PythonEnv, workload: str, interval: float, reps: int,
                    prefix: Sequence[str] = ()) -> Dict[str, Any]:
    """`py-spy record --pid` on a child that waits until py-spy reports it is sampling (both under
    `prefix`, e.g. taskset)."""
    with tempfile.TemporaryDirectory(prefix="pyi-bench-") as tmp:
        result_file, raw = os.path.join(tmp, "result.json"), os.path.join(tmp, "py-spy.txt")
        cmd = common.child_command(env.ours, "overhead.py", "whole", workload=workload, profiler="py-spy", reps=reps)
        child = subprocess.Popen([*prefix, *cmd], cwd=tmp, env=common.child_env(result_file), stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
        spy = subprocess.Popen([*prefix, env.pyspy, "record", "--rate", str(round(1 / interval)), "--format", "raw",
                                "--output", raw, "--pid", str(child.pid)], cwd=tmp,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        assert spy.stdout is not None
        spy_said = []
        for line in spy.stdout:  # py-spy talks on stdout
            spy_said.append(line)
            if "Sampling process" in line:
                break
        attached = time.perf_counter()
        _, child_err = child.communicate(input="go\n", timeout=600)
        lifetime = time.perf_counter() - attached
        spy_said += spy.communicate(timeout=60)[0].splitlines(keepends=True)
        if spy.returncode != 0:
            raise common.ChildFailed("py-spy failed: " + " ".join("".join(spy_said).split())[-300:])
        result = common.read_result(child.returncode, child_err, result_file, f"overhead {workload} under py-spy")
        # py-spy's summary counts the non-idle stacks it saw over the child's life after attaching
        counts = [w for line in spy_said if "Samples:" in line for w in line.split("Samples:")[1].split()[:1]]
        if counts and lifetime > 0:
            result["samples_per_s"] = int(counts[0]) / lifetime
        return result


def calibrate(env: common.PythonEnv, workload: str, seconds: float) -> int:
    per_rep = common.run_child(env.ours, "overhead.py", "calibrate", workload=workload)["seconds_per_rep"]
    return max(1, round(seconds / per_rep))


class Tally:
    """What one configuration collected: ratios, the times behind them, sampling rates, or why it failed."""

    def __init__(self) -> None:
        self.ratios: List[float] = []
        self.profiled: List[float] = []
        self.unprofiled: List[float] = []
        self.rates: List[float] = []
        self.failed: Optional[str] = None

    def row(self, profiler: str, interval: Optional[float], method: str) -> Dict[str, Any]:
        if not self.ratios:
            return dict(profiler=profiler, interval=interval, method=method, failed=self.failed or "not run")
        return dict(profiler=profiler, interval=interval, method=method, ratio=common.spread(self.ratios),
                    n=len(self.ratios), best=min(self.profiled) / min(self.unprofiled),
                    samples_per_s=statistics.median(self.rates) if self.rates else None)


def alternating(env: common.PythonEnv, workload: str, configs: List[Tuple[str, Optional[float]]],
                plan: Dict[str, Any], rng: random.Random) -> List[Dict[str, Any]]:
    """In-process U P U ... chunks, `processes` fresh processes per configuration in shuffled order."""
    reps = calibrate(env, workload, plan["chunk"])
    tallies = [Tally() for _ in configs]
    for proc in range(plan["processes"]):
        order = list(range(len(configs)))
        rng.shuffle(order)
        for i in order:
            profiler, interval = configs[i]
            if tallies[i].failed:
                continue
            python = env.upstream if profiler == "upstream" else env.ours
            try:
                res = common.run_child(python, "overhead.py", "alternate", workload=workload, profiler=profiler,
                                       interval=interval or 0, reps=reps, pairs=plan["pairs"])
            except common.ChildFailed as exc:
                tallies[i].failed = str(exc).strip().splitlines()[-1][:200]
                common.log(f"    {workload} {profiler} failed: {tallies[i].failed}")
                continue
            t = tallies[i]
            t.ratios += res["ratios"]
            t.profiled += res["profiled"]
            t.unprofiled += res["unprofiled"]
            t.rates += res["samples_per_s"]
            common.log(f"    {workload:>8} process {proc + 1}/{plan['processes']} {profiler:>8} @ {ms(interval):>6}: "
                       f"x{statistics.median(res['ratios']):.3f}")
    return [t.row(p, i, "chunks") for t, (p, i) in zip(tallies, configs)]


def whole_processes(env: common.PythonEnv, workload: str, intervals: List[float], plan: Dict[str, Any],
                    rng: random.Random) -> List[Dict[str, Any]]:
    """py-spy: whole runs, each between two unprofiled whole runs (U P U P ... U)."""
    reps = calibrate(env, workload, plan["process_seconds"])
    tallies = [Tally() for _ in intervals]
    unprofiled: List[float] = []
    whole = lambda: common.run_child(env.ours, "overhead.py", "whole", workload=workload, profiler="none",
                                     reps=reps)["seconds"]
    before = whole()
    unprofiled.append(before)
    for r in range(plan["process_rounds"]):
        order = list(range(len(intervals)))
        rng.shuffle(order)
        for i in order:
            t = tallies[i]
            if t.failed or (t.ratios and t.ratios[0] > ONE_RUN_ENOUGH):
                continue
            try:
                res = run_under_pyspy(env, workload, intervals[i], reps)
            except common.ChildFailed as exc:
                t.failed = str(exc).strip().splitlines()[-1][:200]
                common.log(f"    {workload} py-spy failed: {t.failed}")
                continue
            after = whole()
            unprofiled.append(after)
            t.ratios.append(res["seconds"] / ((before + after) / 2))
            t.profiled.append(res["seconds"])
            t.unprofiled += [before, after]
            if res.get("samples_per_s"):
                t.rates.append(res["samples_per_s"])
            common.log(f"    {workload:>8} round {r + 1}/{plan['process_rounds']}   py-spy @ {ms(intervals[i]):>6}: "
                       f"x{t.ratios[-1]:.3f}")
            before = after
    aa = Tally()
    aa.ratios = [u / ((a + b) / 2) for a, u, b in zip(unprofiled, unprofiled[1:], unprofiled[2:])]
    aa.profiled = aa.unprofiled = unprofiled
    rows = [t.row("py-spy", interval, "processes") for t, interval in zip(tallies, intervals)]
    return ([aa.row("none", None, "processes")] if aa.ratios else []) + rows


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    import workloads

    plan = QUICK_PLAN if quick else FULL_PLAN
    configs = [(p, i) for p, i in (QUICK_CONFIGS if quick else FULL_CONFIGS)
               if not (p == "upstream" and env.upstream is None) and not (p == "py-spy" and env.pyspy is None)]
    in_process = [(p, i) for p, i in configs if p != "py-spy"]
    pyspy_intervals = [i for p, i in configs if p == "py-spy"]
    rng = random.Random(3)
    common.log(f"  overhead on Python {env.version}")
    started = time.perf_counter()
    cpu_before = busy_cpu_seconds()
    results = {}
    for workload in workloads.NAMES:
        rows = alternating(env, workload, in_process, plan, rng)
        if pyspy_intervals:
            rows += whole_processes(env, workload, pyspy_intervals, plan, rng)
        results[workload] = rows
    wall = time.perf_counter() - started
    cpu_after = busy_cpu_seconds()
    others = max(0.0, (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1])) / wall
    return dict(version=env.version, upstream_version=env.upstream_version, plan=plan, workloads=results,
                others=others, notes=list(env.notes), minutes=wall / 60)


def busy_cpu_seconds() -> Tuple[float, float]:
    """(CPU seconds used by the whole machine, by this process and its children) so far."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    ours = os.times()
    return ((user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"),
            ours.user + ours.system + ours.children_user + ours.children_system)


# -- report -------------------------------------------------------------------------------------------


def ms(interval: Optional[float]) -> str:
    return f"{interval * 1000:g} ms" if interval else "-"


def profiler_label(result: Dict[str, Any], profiler: str) -> str:
    return f"upstream {result['upstream_version']}" if profiler == "upstream" else profiler


def median_ci(row: Dict[str, Any]) -> float:
    """Half-width of an approximate 95% confidence interval of the median ratio (normal approximation:
    standard deviation from the IQR, standard error of a median = 1.2533 sigma / sqrt(n))."""
    _, q1, q3 = row["ratio"]
    return 1.96 * 1.2533 * ((q3 - q1) / 1.349) / row["n"] ** 0.5


def verdicts(result: Dict[str, Any]) -> List[str]:
    """One line per workload and interval: our median ratio against its goal, and whether the
    measurement is precise enough to tell."""
    lines = []
    for workload, rows in result["workloads"].items():
        for row in rows:
            if row["profiler"] != "ours":
                continue
            goal = goal_for(result["version"], row["interval"])
            where = f"- overhead, Python {result['version']}, {workload} at {ms(row['interval'])}:"
            if "failed" in row:
                lines.append(f"{where} not measured ({row['failed']}): goal NOT met")
                continue
            median, ci = row["ratio"][0], median_ci(row)
            verdict = "met" if median <= goal else "NOT met"
            if abs(median - goal) < ci:
                verdict += f" (inconclusive: the median is known to ±{ci:.3f})"
            lines.append(f"{where} **{median:.3f}x** ±{ci:.3f} (goal ≤ {goal:.2f}x): goal {verdict}")
    return lines


def row_label(result: Dict[str, Any], row: Dict[str, Any]) -> str:
    if row["profiler"] == "none":
        return "unprofiled (A/A)"
    return profiler_label(result, row["profiler"])


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    import workloads

    plan = result["plan"]
    lines = [f"### Overhead on Python {result['version']}", "",
             f"Chunks of about {plan['chunk']:g} s, {plan['pairs']} profiled chunks per process, {plan['processes']} "
             f"processes per configuration; py-spy: {plan['process_rounds']} whole runs of about "
             f"{plan['process_seconds']:g} s each. Other processes kept {result['others']:.2f} of {os.cpu_count()} "
             f"CPUs busy during these runs ({result['minutes']:.1f} min).", ""]
    lines += [f"- {note}" for note in result["notes"]] + ([""] if result["notes"] else [])
    for workload, rows in result["workloads"].items():
        lines += [f"**{workload}**: {workloads.DESCRIPTIONS[workload]}.", "",
                  "| profiler | interval | measured in | time ratio (median) | IQR | ± (95% CI of median) | runs "
                  "| best / best | samples/s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in rows:
            label, interval = row_label(result, row), ms(row["interval"])
            if "failed" in row:
                lines.append(f"| {label} | {interval} | {row['method']} | failed: {row['failed']} | | | | | |")
                continue
            med, q1, q3 = row["ratio"]
            rate = f"{row['samples_per_s']:.0f}" if row["samples_per_s"] else "-"
            bold = "**" if row["profiler"] == "ours" else ""
            lines.append(f"| {label} | {interval} | {row['method']} | {bold}{med:.3f}x{bold} | {q1:.3f}-{q3:.3f} "
                         f"| {median_ci(row):.3f} | {row['n']} | {row['best']:.3f}x | {rate} |")
        lines.append("")
    return lines, verdicts(result)


def chart(results: List[Dict[str, Any]], path: str) -> None:
    """Median time ratio per workload, one panel per Python, one bar per profiler (log scale)."""
    plt = common.pyplot()
    fig, axes = plt.subplots(len(results), 1, figsize=(10, 3.2 * len(results)), squeeze=False)
    for ax, result in zip(axes[:, 0], results):
        names = list(result["workloads"])
        series: Dict[str, List[float]] = {}
        for workload in names:
            for row in result["workloads"][workload]:
                if row["profiler"] == "none":
                    continue
                key = f"{profiler_label(result, row['profiler'])} {ms(row['interval'])}".replace(" -", "")
                series.setdefault(key, [float("nan")] * len(names))
                if "ratio" in row:
                    series[key][names.index(workload)] = row["ratio"][0]
        width = 0.8 / max(1, len(series))
        for k, (key, values) in enumerate(series.items()):
            ax.bar([x + k * width for x in range(len(names))], values, width, label=key)
        ax.axhline(goal_for(result["version"], 0.001), color="black", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))])
        ax.set_xticklabels(names)
        ax.set_ylabel("time ratio to unprofiled")
        ax.set_title(f"Python {result['version']} (dashed: our goal at 1 ms)")
        ax.legend(fontsize=7, ncol=4)
    common.save_chart(fig, path)



if __name__ == "__main__":
    common.module_main(__doc__.split("\n\n")[0],
                       {"alternate": child_alternate, "whole": child_whole, "calibrate": child_calibrate},
                       measure, report, lambda result, path: chart([result], path))
