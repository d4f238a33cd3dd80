"""Attached from outside: how much slower a running program gets while another process
records it, ours (`pyinstrument --pid`) against py-spy.

The target does a fixed amount of CPU-bound work (pure-Python calls, JSON round trips,
regular expressions; about 2.5 s on Python 3.12 here) and times it with its own clock
(time.perf_counter around the work), so the slowdown is what the program itself sees.
It starts, says it is ready and waits; the attacher starts, and once it says it is
sampling (and SETTLE seconds more) the target is told to go. The attacher records for
longer than the work and stops by itself when the target ends.

Conditions, all at 1 ms: **alone** (the baseline); **ours**, `python -m pyinstrument --pid
PID --duration D -o FILE.pyisession` run by the target's own interpreter; **py-spy**, `py-spy
record --pid PID -r 1000 -f raw -o FILE` (it stops the target for each sample); **py-spy
--nonblocking** (it reads without stopping it). Two groups: **spare core** (nothing
pinned) and **pinned** (the target and the attacher both under `taskset -c 0`). Every
round runs each condition of each group once, in that order; a condition's ratio in a
round is its time over the same round's alone time in the same group, and the table
gives the median ratio over the rounds with the lowest and highest. Each round also
measures how many cores other processes kept busy meanwhile (the machine's busy time from
/proc/stat less the CPU time of this process and its children): a spare core is spare only
when that is near 0.

    python bench/attached.py [--quick] [--python PATH]    (standalone; `make bench` runs it all)
"""

from __future__ import annotations

import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import common

ROUNDS = {"quick": 2, "full": 9}
SETTLE = 0.5  # seconds between the attacher saying it samples and the work starting
DURATION = 300  # ours' --duration: far longer than the work (it stops when the target ends)
CONDITIONS = ("alone", "ours", "py-spy", "py-spy --nonblocking")
GROUPS = {"spare core": [], "pinned": ["taskset", "-c", "0"]}

TARGET = """
import json, re, sys, time

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

DOC = {"id": 7, "name": "widget", "tags": ["a", "b", "c"] * 5, "price": 9.99,
       "parts": [{"part": i, "ok": i % 2 == 0, "label": "p%d" % i} for i in range(20)]}
EMAIL = re.compile(r"(\\w+)@(\\w+)\\.(?:com|org)")
TEXT = " ".join("user%d@host%d.%s" % (i, i % 7, "com" if i % 2 else "org") for i in range(200))

def work():
    for _ in range(530):
        fib(22)
    for _ in range(38000):
        json.loads(json.dumps(DOC))
    for _ in range(17000):
        EMAIL.findall(TEXT)

print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
work()
print(time.perf_counter() - start, flush=True)
"""


def attacher(condition: str, python: str, pyspy: str, pid: int, out: str) -> List[str]:
    if condition == "ours":
        return [python, "-E", "-s", "-m", "pyinstrument", "--pid", str(pid), "--duration", str(DURATION),
                "--interval", "0.001", "-o", out + ".pyisession"]
    extra = ["--nonblocking"] if condition == "py-spy --nonblocking" else []
    return [pyspy, "record", "--pid", str(pid), "-r", "1000", "-f", "raw", "-o", out + ".txt", *extra]


def sampling_rate(condition: str, out: str, output: str, seconds: float) -> Optional[float]:
    """Samples per second the attacher took: ours over its whole recording (from its session),
    py-spy over the target's seconds of work (it counts only the samples of a busy target)."""
    if condition == "ours":
        with open(out + ".pyisession") as f:
            session = json.load(f)
        return session["sample_count"] / session["duration"]
    for line in output.splitlines():  # "py-spy> Wrote raw flamegraph data to '...'. Samples: 2531 Errors: 0"
        if "Samples:" in line:
            return int(line.split("Samples:")[1].split()[0]) / seconds
    return None


def run_once(condition: str, pin: Sequence[str], python: str, pyspy: str, folder: str) -> Dict[str, Any]:
    """One run of the target, attached or not: its seconds of work and the attacher's samples per second."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = os.path.join(folder, "record")
    target = subprocess.Popen([*pin, python, "-E", "-s", os.path.join(folder, "target.py")], cwd=folder, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
    assert target.stdin and target.stdout
    recorder = None
    try:
        if target.stdout.readline().strip() != "ready":
            raise common.ChildFailed("the target did not start")
        if condition != "alone":
            recorder = subprocess.Popen([*pin, *attacher(condition, python, pyspy, target.pid, out)], cwd=folder,
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        universal_newlines=True)
            assert recorder.stdout
            recorder.stdout.readline()  # ours: "recording process ..."; py-spy: "Sampling process ..."
            time.sleep(SETTLE)
            if recorder.poll() is not None:
                raise common.ChildFailed(f"{condition} stopped before the work: {recorder.stdout.read().strip()}")
        target.stdin.write("go\n")
        target.stdin.close()
        seconds = float(target.stdout.readline())
        target.wait(timeout=60)
        result: Dict[str, Any] = {"seconds": seconds, "rate": None}
        if recorder is not None:
            output, _ = recorder.communicate(timeout=120)
            if recorder.returncode != 0:
                raise common.ChildFailed(f"{condition} failed (exit code {recorder.returncode}): "
                                         f"{output.strip()[-300:]}")
            result["rate"] = sampling_rate(condition, out, output, seconds)
        return result
    finally:
        for proc in (recorder, target):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this process and its children that ended (the targets and attachers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def find_pyspy(env: common.PythonEnv) -> Optional[str]:
    return env.pyspy or shutil.which("py-spy")


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    rounds = ROUNDS["quick" if quick else "full"]
    pyspy = find_pyspy(env)
    conditions = [c for c in CONDITIONS if pyspy or not c.startswith("py-spy")]
    common.log(f"  attached, Python {env.version}: {rounds} rounds of {', '.join(conditions)}, "
               f"spare core and pinned" + ("" if pyspy else " (py-spy not found: skipped)"))
    runs: Dict[str, Dict[str, List[Dict[str, Any]]]] = {g: {c: [] for c in conditions} for g in GROUPS}
    with tempfile.TemporaryDirectory(prefix="pyi-attached-") as folder:
        with open(os.path.join(folder, "target.py"), "w") as f:
            f.write(TARGET)
        others = []  # per round: the cores that processes other than ours kept busy meanwhile
        for number in range(rounds):
            wall, busy, own = time.perf_counter(), busy_seconds(), own_seconds()
            for group, pin in GROUPS.items():
                for condition in conditions:
                    runs[group][condition].append(run_once(condition, pin, env.ours, pyspy or "", folder))
                line = ", ".join(f"{c} {runs[group][c][-1]['seconds']:.2f} s" for c in conditions)
                common.log(f"    round {number + 1}/{rounds}, {group}: {line}")
            other = busy_seconds() - busy - (own_seconds() - own)  # can dip below 0 by a clock tick
            others.append(max(0.0, other) / (time.perf_counter() - wall))
            common.log(f"    other processes kept {others[-1]:.2f} cores busy")
    return {"version": env.version, "rounds": rounds, "pyspy": bool(pyspy), "runs": runs, "others": others,
            "date": datetime.date.today().isoformat(), "cores": os.cpu_count()}


# -- the report --------------------------------------------------------------------------------


def ratios(result: Dict[str, Any], group: str, condition: str) -> List[float]:
    """Per round: the condition's seconds over that round's alone seconds, in the same group."""
    runs = result["runs"][group]
    return [r["seconds"] / a["seconds"] for r, a in zip(runs[condition], runs["alone"])]


def baseline_spread(result: Dict[str, Any], group: str) -> List[float]:
    """The alone runs against their own median: how much an unattached run moves."""
    seconds = [r["seconds"] for r in result["runs"][group]["alone"]]
    middle = statistics.median(seconds)
    return [s / middle for s in seconds]


def cell(values: List[float], count: bool = True) -> str:
    """Median (lowest–highest), and in how many rounds it was slower."""
    slower = f", slower in {sum(v > 1 for v in values)}/{len(values)}" if count else ""
    return f"**{statistics.median(values):.3f}x** ({min(values):.3f}–{max(values):.3f}{slower})"


def rate(result: Dict[str, Any], group: str, condition: str) -> str:
    """The attacher's samples per second, median over the rounds."""
    per_run = [r["rate"] for r in result["runs"][group][condition] if r["rate"]]
    return f"{statistics.median(per_run):.0f}" if per_run else "?"


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    groups = list(GROUPS)
    alone = {g: statistics.median(r["seconds"] for r in result["runs"][g]["alone"]) for g in groups}
    lines = [f"### Attached on Python {result['version']}", "",
             "The target's own time for a fixed CPU-bound work (about 2.5 s alone) while another process records "
             f"it at 1 ms, over its time alone in the same round: median of {result['rounds']} rounds, lowest–"
             "highest in brackets. **Spare core**: nothing pinned (2 cores); **pinned**: the target and the "
             "attacher both on core 0. The *alone* row is each alone run over the median alone run: the noise "
             "of one run. Samples/s: what the attacher took (asked for 1000): ours over its whole recording, "
             "py-spy over the seconds of work (it counts only the samples of a busy target).", "",
             "| condition | spare core | pinned | samples/s (spare, pinned) |", "| --- | --- | --- | --- |",
             f"| alone ({alone[groups[0]]:.2f} s, {alone[groups[1]]:.2f} s) | "
             + " | ".join(cell(baseline_spread(result, g), count=False) for g in groups) + " | |"]
    conditions = [c for c in CONDITIONS[1:] if c in result["runs"][groups[0]]]
    for condition in conditions:
        name = "ours (`--pid`)" if condition == "ours" else f"`{condition}`"
        lines.append(f"| {name} | " + " | ".join(cell(ratios(result, g, condition)) for g in groups)
                     + f" | {rate(result, groups[0], condition)}, {rate(result, groups[1], condition)} |")
    if not result["pyspy"]:
        lines += ["", "py-spy was not found (neither in the venv nor on $PATH): its rows are not measured."]
    return lines + measured_on(result, "attach"), []


def measured_on(result: Dict[str, Any], section: str) -> List[str]:
    """The closing paragraph of a section measured this way: when, how, and the run's noise."""
    noise = [abs(v - 1) for g in GROUPS for v in baseline_spread(result, g)]
    others = result["others"]
    return ["", f"Measured on {result['date']}, {result['cores']} cores, with `python bench/run.py --only {section} "
            "--python PYTHON`. Other processes on the machine kept "
            f"{statistics.median(others):.2f} cores busy meanwhile (median of the rounds, up to {max(others):.2f}; "
            "the spare core is spare only when that is near 0). One alone run moved up to "
            f"{max(noise) * 100:.1f}% from the median: a median ratio much closer to 1 than that is within the "
            "noise of this run.", ""]


def chart(result: Dict[str, Any], path: str) -> None:
    conditions = [c for c in CONDITIONS[1:] if c in result["runs"]["spare core"]]
    bar_chart(result, conditions, f"Attached at 1 ms, Python {result['version']}", path)


def bar_chart(result: Dict[str, Any], conditions: Sequence[str], title: str, path: str) -> None:
    """Per condition and group, the median slowdown as a bar and each round as a dot
    (shared with agent_cost.py, whose results have the same shape)."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    width = 0.8 / len(GROUPS)
    for offset, group in enumerate(GROUPS):
        for x, condition in enumerate(conditions):
            slower = [(r - 1) * 100 for r in ratios(result, group, condition)]
            position = x + (offset - (len(GROUPS) - 1) / 2) * width
            ax.bar(position, statistics.median(slower), width, color=f"C{offset}", label=group if x == 0 else None)
            ax.plot([position] * len(slower), slower, "k.", markersize=3)  # each round
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(conditions)))
    ax.set_xticklabels(conditions)
    ax.set_ylabel("target slower by (%)")
    ax.set_title(title)
    ax.legend()
    common.save_chart(fig, path)


if __name__ == "__main__":
    common.module_main(__doc__ or "", {}, measure, report, chart)
