"""Free-threaded CPython: what sampling costs four threads that really run at once.

The threads workload (four threads each running fib(18) repeatedly, all profiled) runs on the
free-threaded build (3.13t), where the four threads run in parallel on every core there is,
and, as the baseline of the same run, on the GIL build of the same version, where they take
turns. Each runs in chunks of about 0.1 s alternating unprofiled and profiled (U P U P ... U,
each P divided by the mean of its neighbours), as in the overhead benchmark:

- **all cores**: the process may use every core; on 3.13t the workload keeps them all busy,
  so our sampling thread takes its time from the program's threads.
- **pinned**: the whole process pinned to core 0 (as in the pinned benchmark).

    python bench/freethreaded.py [--quick]    (standalone; `make bench` runs it all)
"""

from __future__ import annotations

import os
import random
import statistics
from typing import Any, Dict, List, Optional, Tuple

import common

WORKLOAD = "threads"
INTERVALS = (0.001, 0.0001)
MODES = {"all cores": ("overhead.py", "alternate"), "pinned": ("pinned.py", "alternate")}
FULL_PLAN = dict(chunk=0.1, pairs=10, processes=2)
QUICK_PLAN = dict(chunk=0.05, pairs=4, processes=1)


def builds() -> Tuple[str, str]:
    """(GIL build, free-threaded build) of one version, both present; ChildFailed if not."""
    found = common.pythons_present()
    for free in (p for p in found if p.endswith("t")):
        version = os.path.basename(free)[len("python"):-1]  # python3.13t: 3.13
        gil = [p for p in found if p.endswith("/python" + version)]
        if gil:
            return gil[0], free
    raise common.ChildFailed("no free-threaded CPython with a GIL build of its version here "
                             "(../shared/tools/get-python 3.13t builds one)")


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    """`env` is the run's first interpreter, unused: this part brings its own two."""
    plan = QUICK_PLAN if quick else FULL_PLAN
    rng = random.Random(19)
    rows: List[Dict[str, Any]] = []
    for base in builds():
        python = common.ours_python(base)
        version = common.probe(python, "import sys, sysconfig; print(sys.version.split()[0] + "
                                       "('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))")
        per_rep = common.run_child(python, "overhead.py", "calibrate", workload=WORKLOAD)["seconds_per_rep"]
        reps = max(1, round(plan["chunk"] / per_rep))
        configs = [(mode, interval) for mode in MODES for interval in INTERVALS]
        ratios: Dict[Tuple[str, float], List[float]] = {config: [] for config in configs}
        for _ in range(plan["processes"]):
            rng.shuffle(configs)
            for mode, interval in configs:
                script, name = MODES[mode]
                result = common.run_child(python, script, name, workload=WORKLOAD, profiler="ours",
                                          interval=interval, reps=reps, pairs=plan["pairs"])
                ratios[(mode, interval)] += result["ratios"]
                median = statistics.median(result["ratios"])
                common.log(f"    {version} {mode:>9} @ {interval * 1000:g} ms: x{median:.3f}")
        for (mode, interval), found in sorted(ratios.items()):
            rows.append(dict(python=version, mode=mode, interval=interval, ratio=common.spread(found), n=len(found)))
    return {"rows": rows}


def find(result: Dict[str, Any], free: bool, mode: str, interval: float) -> Optional[Dict[str, Any]]:
    return next((row for row in result["rows"] if row["python"].endswith("t") == free and row["mode"] == mode
                 and row["interval"] == interval), None)


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    lines = ["| Python | cores | interval | slowdown (median [IQR]) | chunks |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        median, low, high = row["ratio"]
        lines.append(f"| {row['python']} | {row['mode']} | {row['interval'] * 1000:g} ms | "
                     f"{median:.3f}x [{low:.3f}-{high:.3f}] | {row['n']} |")
    verdicts = []
    for mode in MODES:
        for interval in INTERVALS:
            free, gil = find(result, True, mode, interval), find(result, False, mode, interval)
            if free and gil:
                verdicts.append(f"- free-threaded, {mode}, {interval * 1000:g} ms: {free['ratio'][0]:.3f}x, "
                                f"against {gil['ratio'][0]:.3f}x on the GIL build")
    return lines, verdicts


def chart(result: Dict[str, Any], path: str) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [f"{row['python']}\n{row['mode']}, {row['interval'] * 1000:g} ms" for row in result["rows"]]
    ax.bar(range(len(labels)), [row["ratio"][0] for row in result["rows"]], color="#4c72b0")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=6)
    ax.set_ylabel("slowdown (median)")
    ax.set_title("Four busy threads: GIL build and free-threaded build")
    common.save_chart(fig, path)


if __name__ == "__main__":
    common.module_main(__doc__ or "", {}, measure, report, chart)
