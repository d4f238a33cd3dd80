"""Experiments: how often `--diff` of two `--repeat 10` sets calls an unchanged program slower
or faster (false verdicts), and the smallest slowdown of one function it finds.

Each trial records two repeat sets of a program with `pyinstrument --repeat N -o FILE`, one
after the other as a user would, and compares them with `pyinstrument --diff -r json`.
False verdicts: the unchanged program against itself, TRIALS times; counted apart for the
nodes that are the whole run (judged on their time alone, so a machine that got busier
between the two sets moves them) and for the rest (judged on time and share). Detection: the
target function (about a third of the run) made 2% to 50% slower, DETECT_TRIALS times each;
the smallest slowdown found in at least 80% of its trials is the one reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from typing import Any, Dict, List, Tuple

import common

RUNS = 10
TRIALS = {"quick": 2, "full": 20}
DETECT_TRIALS = {"quick": 1, "full": 5}
SLOWDOWNS = (0.02, 0.05, 0.10, 0.20, 0.50)
POWER = 0.8

PROGRAM = """
import sys, time

SLOWDOWN = float(sys.argv[1])

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def target():
    spin(0.05 * (1 + SLOWDOWN))

def load():
    spin(0.05)

def save():
    spin(0.05)

def main():
    load()
    target()
    save()

main()
"""


def record(python: str, folder: str, name: str, slowdown: float) -> str:
    path = os.path.join(folder, f"{name}.pyisession")
    subprocess.run([python, "-m", "pyinstrument", "--repeat", str(RUNS), "-o", path, "app.py", str(slowdown)],
                   cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    return path


def verdicts(python: str, folder: str, before: str, after: str) -> List[Dict[str, Any]]:
    """Every node of the diff with its verdict: function, verdict, whether it is the whole run."""
    result = subprocess.run([python, "-m", "pyinstrument", "--diff", before, after, "-r", "json"], cwd=folder,
                            check=True, capture_output=True, text=True, timeout=600)
    nodes = []
    stack = list(json.loads(result.stdout)["root"]["children"])
    while stack:
        node = stack.pop()
        if node["verdict"] is not None:
            whole = min(node["before_share"], node["after_share"]) >= 0.99
            nodes.append({"function": node["function"], "verdict": node["verdict"], "whole_run": whole})
        stack.extend(node["children"])
    return nodes


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    mode = "quick" if quick else "full"
    trials, detect_trials = TRIALS[mode], DETECT_TRIALS[mode]
    common.log(f"  experiments on Python {env.version}: {trials} unchanged trials, {detect_trials} per slowdown, "
               f"--repeat {RUNS}")
    with tempfile.TemporaryDirectory(prefix="pyi-experiments-") as folder:
        with open(os.path.join(folder, "app.py"), "w") as f:
            f.write(PROGRAM)
        baselines = []
        unchanged = []
        for trial in range(trials):
            before = record(env.ours, folder, f"base{trial}", 0.0)
            after = record(env.ours, folder, f"same{trial}", 0.0)
            baselines.append(before)
            called = [n for n in verdicts(env.ours, folder, before, after) if n["verdict"]]
            unchanged.append({"tested": True, "whole_run": sum(n["whole_run"] for n in called),
                              "parts": sum(not n["whole_run"] for n in called),
                              "called": [f"{n['function']} {n['verdict']}" for n in called]})
            common.log(f"    unchanged trial {trial + 1}/{trials}: " + (", ".join(unchanged[-1]["called"]) or "no change"))
        detection = []
        for slowdown in SLOWDOWNS:
            found = 0
            for trial in range(detect_trials):
                after = record(env.ours, folder, f"slow{slowdown}-{trial}", slowdown)
                nodes = verdicts(env.ours, folder, baselines[trial % len(baselines)], after)
                found += any(n["function"] == "target" and n["verdict"] == "slower" for n in nodes)
            detection.append({"slowdown": slowdown, "found": found, "trials": detect_trials})
            common.log(f"    target() {slowdown * 100:g}% slower: found in {found}/{detect_trials}")
    return {"version": env.version, "runs": RUNS, "unchanged": unchanged, "detection": detection}


def smallest_detected(result: Dict[str, Any]) -> Tuple[float, str]:
    for row in result["detection"]:
        if row["found"] >= POWER * row["trials"]:
            return row["slowdown"], f"{row['slowdown'] * 100:g}%"
    return float("inf"), "none of those tried"


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    unchanged = result["unchanged"]
    false_parts = sum(trial["parts"] > 0 for trial in unchanged)
    false_whole = sum(trial["whole_run"] > 0 for trial in unchanged)
    _, smallest = smallest_detected(result)
    lines = [f"### Experiments on Python {result['version']}", "",
             f"Two `--repeat {result['runs']}` sets of a 0.15 s program recorded one after the other and compared "
             "with `--diff`. **Unchanged**: the program against itself; a trial is a false verdict when any node "
             "is called slower or faster. **Detection**: `target()` (a third of the run) made slower; the share of "
             "trials in which `--diff` calls it slower.", "",
             "| unchanged program | trials | with a false verdict |", "| --- | --- | --- |",
             f"| on a function (time and share) | {len(unchanged)} | {false_parts} |",
             f"| on the whole run (time alone) | {len(unchanged)} | {false_whole} |", "",
             "| target() slower by | found |", "| --- | --- |"]
    for row in result["detection"]:
        lines.append(f"| {row['slowdown'] * 100:g}% | {row['found']}/{row['trials']} |")
    lines.append("")
    verdict_lines = [
        f"- experiments: false verdicts on an unchanged program: {false_parts} of {len(unchanged)} trials on its "
        f"functions, {false_whole} on the whole run; goal 0 on its functions: "
        f"{'met' if false_parts == 0 else 'NOT met'}",
        f"- experiments: smallest slowdown of a third of the run found in ≥{POWER:.0%} of trials at N={result['runs']}:"
        f" {smallest}",
    ]
    return lines, verdict_lines


def chart(result: Dict[str, Any], path: str) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    rows = result["detection"]
    ax.plot([r["slowdown"] * 100 for r in rows], [r["found"] / r["trials"] * 100 for r in rows], marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("target() slower by (%)")
    ax.set_ylabel("trials found (%)")
    ax.set_ylim(-5, 105)
    ax.set_title(f"--diff of two --repeat {result['runs']} sets")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
