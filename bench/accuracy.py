"""Accuracy: does the profiler give each function the share of time it really took?

    python bench/accuracy.py [--quick] [--python PATH] [--chart FILE.svg]

Each program rotates between a few functions (busy Python code, sleeps, calls into C,
threads) for a fixed time. Every function times its own body with time.perf_counter, so
the program knows its true split of time; we compare it with the split the profiler
reports, for ours and for upstream pyinstrument, and report the difference in points.
"""

from __future__ import annotations

import hashlib
import random
import sys
import threading
import time
import zlib
from time import perf_counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import common

GOAL_POINTS = 2.0
INTERVAL = 0.001
SECONDS = {"quick": 1.2, "full": 3.0}
REPEATS = {"quick": 1, "full": 3}
# A round of the rotation lasts a random 20-60 ms, shared out by each function's target
# share: slices of 4-48 ms whose lengths never line up with the sampling interval.
ROUND_SECONDS = (0.02, 0.06)

# -- child side: the programs -------------------------------------------------------------
#
# Every measured function is module-level and has a name unique across the programs, so
# the profiler's frames can be matched to it by name alone. Each returns its true time.


def spin(seconds: float) -> float:
    """Pure-Python arithmetic for `seconds`."""
    start = perf_counter()
    end = start + seconds
    x = 1
    while perf_counter() < end:
        for _ in range(50):
            x = x * 31 % 1000003
    return perf_counter() - start


def repeat_call(seconds: float, function: Callable[[Any], Any], argument: Any) -> float:
    """Calls function(argument) again and again for about `seconds` (see c_inputs for the sizes)."""
    start = perf_counter()
    while perf_counter() - start < seconds:
        function(argument)
    return perf_counter() - start


def nap(seconds: float) -> float:
    """time.sleep(seconds), timed."""
    start = perf_counter()
    time.sleep(seconds)
    return perf_counter() - start


def busy_50(seconds: float) -> float:
    return spin(seconds)


def busy_30(seconds: float) -> float:
    return spin(seconds)


def busy_20(seconds: float) -> float:
    return spin(seconds)


def compute_60(seconds: float) -> float:
    return spin(seconds)


def sleep_40(seconds: float) -> float:
    return nap(seconds)


def c_zlib(seconds: float, data: bytes) -> float:
    return repeat_call(seconds, zlib.compress, data)


def c_sorted(seconds: float, data: List[float]) -> float:
    return repeat_call(seconds, sorted, data)


def c_sha256(seconds: float, data: bytes) -> float:
    return repeat_call(seconds, hashlib.sha256, data)


def py_loop(seconds: float) -> float:
    return spin(seconds)


def main_busy(seconds: float) -> float:
    return spin(seconds)


def main_sleep(seconds: float) -> float:
    return nap(seconds)


def worker1_busy(seconds: float) -> float:
    return spin(seconds)


def worker1_sleep(seconds: float) -> float:
    return nap(seconds)


def worker2_busy(seconds: float) -> float:
    return spin(seconds)


def worker2_sleep(seconds: float) -> float:
    return nap(seconds)


# (function, target share of each round, extra arguments)
Plan = List[Tuple[Callable[..., float], float, Tuple[Any, ...]]]


def rotate(plan: Plan, until: float, rng: random.Random) -> Dict[str, float]:
    """Runs the plan's functions in turn until perf_counter() reaches `until`; returns
    each function's true seconds."""
    truth = {function.__name__: 0.0 for function, _, _ in plan}
    while True:
        round_seconds = rng.uniform(*ROUND_SECONDS)
        for function, share, args in plan:
            left = until - perf_counter()
            if left <= 0:
                return truth
            truth[function.__name__] += function(min(share * round_seconds, left), *args)


def c_inputs(rng: random.Random) -> Tuple[bytes, List[float], bytes]:
    """Inputs that keep each C call busy for about 1 ms."""
    text = "".join(chr(97 + rng.randrange(26)) for _ in range(4096)).encode() * 64  # 256 KiB
    numbers = [rng.random() for _ in range(10000)]
    blob = bytes(rng.getrandbits(8) for _ in range(1 << 16)) * 16  # 1 MiB
    return text, numbers, blob


def single_thread(plan: Plan, duration: float, rng: random.Random) -> Callable[[], Dict[str, float]]:
    return lambda: rotate(plan, perf_counter() + duration, rng)


def setup_busy(duration: float, rng: random.Random) -> Callable[[], Dict[str, float]]:
    return single_thread([(busy_50, 0.5, ()), (busy_30, 0.3, ()), (busy_20, 0.2, ())], duration, rng)


def setup_sleeps(duration: float, rng: random.Random) -> Callable[[], Dict[str, float]]:
    return single_thread([(compute_60, 0.6, ()), (sleep_40, 0.4, ())], duration, rng)


def setup_c_calls(duration: float, rng: random.Random) -> Callable[[], Dict[str, float]]:
    text, numbers, blob = c_inputs(rng)
    plan: Plan = [(c_zlib, 0.3, (text,)), (c_sorted, 0.25, (numbers,)), (c_sha256, 0.2, (blob,)),
                  (py_loop, 0.25, ())]
    return single_thread(plan, duration, rng)


MAIN_PLAN: Plan = [(main_busy, 0.4, ()), (main_sleep, 0.6, ())]
WORKER_PLANS: List[Plan] = [[(worker1_busy, 0.6, ()), (worker1_sleep, 0.4, ())],
                            [(worker2_busy, 0.2, ()), (worker2_sleep, 0.8, ())]]


def setup_threads(duration: float, rng: random.Random) -> Callable[[], Dict[str, float]]:
    """The workers start now and wait; the measured part releases them with a deadline
    shared by all three threads and returns once they have all finished."""
    go = threading.Event()
    until = 0.0
    truths: List[Dict[str, float]] = [{} for _ in WORKER_PLANS]  # one slot per worker keeps their order

    def work(index: int, seed: float) -> None:
        go.wait()
        truths[index] = rotate(WORKER_PLANS[index], until, random.Random(seed))

    workers = [threading.Thread(target=work, args=(i, rng.random()), name=f"worker{i + 1}")
               for i in range(len(WORKER_PLANS))]
    for worker in workers:
        worker.start()

    def measured() -> Dict[str, float]:
        nonlocal until
        until = perf_counter() + duration
        go.set()
        truth = rotate(MAIN_PLAN, until, rng)
        for worker in workers:
            worker.join()
        for worker_truth in truths:
            truth.update(worker_truth)
        return truth

    return measured


# name: (title, setup, threads)
PROGRAMS: Dict[str, Tuple[str, Callable[[float, random.Random], Callable[[], Dict[str, float]]], int]] = {
    "busy": ("busy functions", setup_busy, 1),
    "sleeps": ("sleeps", setup_sleeps, 1),
    "c_calls": ("C calls", setup_c_calls, 1),
    "threads": ("threads", setup_threads, 3),
}
UPSTREAM_SKIPS = {"threads": "upstream profiles only the thread that started it"}


def sampled_seconds(root: Any, names: Sequence[str]) -> Dict[str, float]:
    """Time of the outermost frames of each named function, anywhere in the tree
    (iterative: the tree may be deeper than the recursion limit)."""
    found = dict.fromkeys(names, 0.0)
    pending = [root]
    while pending:
        frame = pending.pop()
        if frame.function in found:
            found[frame.function] += frame.time  # its callees (C calls, sleep) included
        else:
            pending.extend(frame.children)
    return found


def child_accuracy(program: str, profiler: str, seed: int, duration: float, interval: float) -> Dict[str, Any]:
    import importlib.util

    from pyinstrument import Profiler

    is_ours = importlib.util.find_spec("pyinstrument._engine") is not None
    if is_ours != (profiler == "ours"):
        raise SystemExit(f"{sys.executable} does not have the {profiler} pyinstrument")
    _, setup, threads = PROGRAMS[program]
    measured = setup(duration, random.Random(seed))
    options = {"all_threads": True} if threads > 1 else {}  # upstream has no such option
    p = Profiler(interval=interval, **options)
    p.start()
    start = perf_counter()
    truth = measured()
    wall = perf_counter() - start
    session = p.stop()
    root = session.root_frame()
    return {"truth": truth, "sampled": sampled_seconds(root, list(truth)), "wall": wall, "threads": threads,
            "recorded": root.time, "dropped": getattr(session, "dropped_samples", None)}


# -- parent side --------------------------------------------------------------------------


def shares(run: Dict[str, Any]) -> Dict[str, Tuple[float, float]]:
    """{function: (true share, sampled share)} in percent.

    The true share is over the threads' wall time; the sampled share is over the total
    the profiler recorded (the 100% of its report), so evenly missed samples do not count
    as errors, while time given to the wrong function does."""
    capacity = run["wall"] * run["threads"]
    return {name: (100 * true / capacity, 100 * run["sampled"][name] / run["recorded"])
            for name, true in run["truth"].items()}


def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Median over the runs of each function's true share, sampled share and error."""
    per_run = [shares(run) for run in runs]
    functions = []
    for name in runs[0]["truth"]:
        true = [s[name][0] for s in per_run]
        sampled = [s[name][1] for s in per_run]
        errors = [b - a for a, b in zip(true, sampled)]
        functions.append({"function": name, "true": common.spread(true)[0], "sampled": common.spread(sampled)[0],
                          "error": common.spread(errors)[0]})
    dropped = [run["dropped"] for run in runs]
    return {"functions": functions,
            "worst": max(abs(f["error"]) for f in functions),
            "recorded": common.spread([100 * r["recorded"] / (r["wall"] * r["threads"]) for r in runs])[0],
            "dropped": None if None in dropped else sum(dropped),
            "runs": runs}


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    mode = "quick" if quick else "full"
    duration, repeats = SECONDS[mode], REPEATS[mode]
    pythons = {"ours": env.ours, "upstream": env.upstream}
    runs: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    common.log(f"  accuracy: {len(PROGRAMS)} programs x {repeats} runs of {duration:g} s, ours and upstream")
    # the repeat is the outer loop and the seed, so ours and upstream run the same programs side by side
    for seed in range(repeats):
        for program in PROGRAMS:
            for profiler, python in pythons.items():
                if python is None or (profiler == "upstream" and program in UPSTREAM_SKIPS):
                    continue
                run = common.run_child(python, "accuracy.py", "accuracy", program=program, profiler=profiler,
                                       seed=seed, duration=duration, interval=INTERVAL)
                runs.setdefault((program, profiler), []).append(run)
                worst = max(abs(sampled - true) for true, sampled in shares(run).values())
                common.log(f"    run {seed + 1}/{repeats} {program:>8} {profiler:>8}: worst error {worst:.1f} points")
    programs = []
    for program, (title, _, threads) in PROGRAMS.items():
        entry: Dict[str, Any] = {"program": program, "title": title, "threads": threads}
        for profiler, python in pythons.items():
            if (program, profiler) in runs:
                entry[profiler] = summarise(runs[(program, profiler)])
            elif python is None:
                entry[profiler] = {"skipped": f"upstream pyinstrument is not installed for Python {env.short}"}
            else:
                entry[profiler] = {"skipped": UPSTREAM_SKIPS[program]}
        programs.append(entry)
    return {"python": env.version, "upstream_version": env.upstream_version, "interval": INTERVAL,
            "seconds": duration, "repeats": repeats, "goal_points": GOAL_POINTS, "programs": programs}


def profiler_label(result: Dict[str, Any], profiler: str) -> str:
    version = result["upstream_version"]
    return f"upstream {version}" if profiler == "upstream" and version else profiler


def cells(summary: Dict[str, Any], name: str) -> List[str]:
    """true share, sampled share and error of one function, or a reason it is missing."""
    if "skipped" in summary:
        return ["n/a", "n/a", "n/a"]
    f = next(f for f in summary["functions"] if f["function"] == name)
    error = round(f["error"], 1) + 0.0  # + 0.0 turns -0.0 into 0.0, so no "-0.0" is printed
    return [f"{f['true']:.1f}%", f"{f['sampled']:.1f}%", f"**{error:+.1f}**"]


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    ours, upstream = "ours", profiler_label(result, "upstream")
    runs = "runs" if result["repeats"] > 1 else "run"
    threads = max(entry["threads"] for entry in result["programs"])
    lines = [
        f"Each program runs {result['seconds']:g} s in a fresh interpreter, profiled at "
        f"{result['interval'] * 1000:g} ms, rotating between its functions in slices of 4-48 ms "
        "whose lengths vary at random, so no function keeps step with the sampling. Every function times its own "
        "body with `time.perf_counter`: its **true share** is that time over the wall time of the profiled part "
        f"(for the threads program, over {threads} threads x that wall time). Its **sampled share** is the time the "
        "profiler gives the function (its outermost frames anywhere in the tree, callees included) over the "
        "total the profiler recorded, the 100% of its report. **Error** = sampled - true share, in points; "
        f"medians of {result['repeats']} {runs}, ours and upstream running the same programs with the same seeds. "
        "The programs: busy (three pure-Python functions, 50/30/20), sleeps (Python work 60, `time.sleep` 40), "
        "C calls (`zlib.compress`, `sorted`, `hashlib.sha256`, each call about 1 ms, and a Python loop), "
        "threads (the main thread and two workers, each mixing busy work and sleeps; ours with "
        "`all_threads=True`). Goal: every error within "
        f"±{result['goal_points']:g} points.",
        "",
        f"| program | function | true ({ours} runs) | {ours} | error | true ({upstream} runs) | {upstream} | error |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in result["programs"]:
        names = [f["function"] for f in entry["ours"]["functions"]]
        for name in names:
            lines.append(f"| {entry['title']} | `{name}` | " + " | ".join(cells(entry["ours"], name)
                                                                        + cells(entry["upstream"], name)) + " |")
    lines += ["", f"| program | {ours}: worst error | recorded / wall | dropped samples | {upstream}: worst error "
              "| recorded / wall |", "| --- | --- | --- | --- | --- | --- |"]
    for entry in result["programs"]:
        row = [entry["title"]]
        for profiler in ("ours", "upstream"):
            summary = entry[profiler]
            if "skipped" in summary:
                row += [f"n/a: {summary['skipped']}", "n/a"]
            else:
                row += [f"{summary['worst']:.1f} points", f"{summary['recorded']:.1f}%"]
            if profiler == "ours":
                row.append("-" if summary.get("dropped") is None else str(summary["dropped"]))
        lines.append("| " + " | ".join(row) + " |")
    return lines, verdicts(result)


def verdicts(result: Dict[str, Any]) -> List[str]:
    goal = result["goal_points"]
    out = []
    for entry in result["programs"]:
        for profiler in ("ours", "upstream"):
            summary, label = entry[profiler], profiler_label(result, profiler)
            if "skipped" in summary:
                out.append(f"- accuracy, {entry['title']}, {label}: n/a ({summary['skipped']})")
                continue
            met = "met" if summary["worst"] <= goal else "NOT met"
            out.append(f"- accuracy, {entry['title']}, {label}: worst error {summary['worst']:.1f} points: "
                       f"goal (±{goal:g} points) {met}")
    return out


def chart(result: Dict[str, Any], path: str) -> None:
    """Grouped bars: each function's error in points, ours beside upstream, over the goal band."""
    plt = common.pyplot()
    labels: List[str] = []
    groups: List[Tuple[str, int]] = []  # (program title, index of its first function)
    errors: Dict[str, List[Optional[float]]] = {"ours": [], "upstream": []}
    for entry in result["programs"]:
        groups.append((entry["title"], len(labels)))
        for f in entry["ours"]["functions"]:
            labels.append(f["function"])
            for profiler in errors:
                summary = entry[profiler]
                errors[profiler].append(None if "skipped" in summary else next(
                    g["error"] for g in summary["functions"] if g["function"] == f["function"]))
    goal, width = result["goal_points"], 0.38
    fig, ax = plt.subplots(figsize=(max(8.0, 0.75 * len(labels)), 4.5))
    ax.axhspan(-goal, goal, color="#2ca02c", alpha=0.12, label=f"goal: ±{goal:g} points")
    ax.axhline(0, color="black", linewidth=0.8)
    for offset, profiler, color in ((-width / 2, "ours", "#1f77b4"), (width / 2, "upstream", "#ff7f0e")):
        xs = [i + offset for i, e in enumerate(errors[profiler]) if e is not None]
        ys = [e for e in errors[profiler] if e is not None]
        ax.bar(xs, ys, width, color=color, label=profiler_label(result, profiler))
        for i, e in enumerate(errors[profiler]):
            if e is None:
                ax.text(i + offset, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, color=color)
    for title, first in groups:
        if first:
            ax.axvline(first - 0.5, color="grey", linewidth=0.6)
        ax.text(first - 0.4, 1.01, title, transform=ax.get_xaxis_transform(), fontsize=8, va="bottom")
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8, rotation=30, ha="right")
    ax.set_ylabel("sampled share - true share (points)")
    ax.set_title(f"Accuracy per function, Python {result['python']}, {result['interval'] * 1000:g} ms interval",
                 pad=18)
    ax.legend(fontsize=8)
    common.save_chart(fig, path)



if __name__ == "__main__":
    common.module_main(__doc__.split("\n\n")[0], {"accuracy": child_accuracy}, measure, report, chart)
