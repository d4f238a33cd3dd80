"""`make bench`: overhead, sampler cost, pinned to one core, many profilers at once, memory, accuracy, render
speed, scale, experiments, the slowdown of a process attached from outside, the cost of the in-process
agent, and four parallel threads on a free-threaded build, against the goals.

    python bench/run.py [--quick] [--python PATH ...] [--only SECTION ...] [--out FILE]

Full run (about 75 minutes): overhead, sampler cost and pinned on each CPython 3.11-3.14 present (or
each --python), many profilers at once, memory, accuracy and render speed on the first of them; writes
docs/benchmarks.md, its charts under docs/benchmarks/ and the raw numbers as
docs/benchmarks/results.json. --quick (under 3 minutes): everything shorter, on this
interpreter's version only, written under bench/out/ so the published numbers stay put.
Everything the runs need (virtualenvs, Django, py-spy, upstream pyinstrument from PyPI,
matplotlib) is installed on first use.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from typing import Any, Dict, List, Tuple

import accuracy
import agent_cost
import attached
import common
import experiments
import freethreaded
import many_profilers
import memory
import overhead
import pinned
import render_speed
import sampler_cost
import scale

FULL_VERSIONS = ("3.11", "3.12", "3.13", "3.14")
SECTIONS = ("overhead", "sampler", "pinned", "many", "memory", "accuracy", "render", "scale", "experiments",
            "attach", "agent", "freethreaded")
PER_PYTHON = {"overhead": overhead, "sampler": sampler_cost, "pinned": pinned}   # measured on every interpreter
ON_FIRST = {"many": many_profilers, "memory": memory, "accuracy": accuracy, "render": render_speed,
            "scale": scale, "experiments": experiments, "attach": attached,
            "agent": agent_cost, "freethreaded": freethreaded}  # on the first one only
TITLES = {"overhead": "Overhead", "sampler": "Sampler cost per tick and drops under churn",
          "pinned": "No spare core: pinned to one core",
          "many": "Many profilers at once",
          "memory": "Memory", "accuracy": "Accuracy", "render": "Render speed",
          "scale": "Scale: a long 0.1 ms run, end to end",
          "experiments": "Experiments: false verdicts and the smallest slowdown found",
          "attach": "Attached from outside: the target's slowdown under --pid and py-spy",
          "agent": "The in-process agent: its cost to the program, and trigger latency",
          "freethreaded": "Free-threaded CPython: four threads running at once"}


def default_pythons(quick: bool) -> List[str]:
    """Full: the base interpreters of 3.11-3.14 present. Quick: the one this venv was made from."""
    found = common.pythons_present()
    if quick:
        mine = "%d.%d" % sys.version_info[:2]
        return [p for p in found if p.endswith("python" + mine)][:1] or [sys.executable]
    return [p for p in found if any(p.endswith("python" + v) for v in FULL_VERSIONS)]


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_gb = int(f.readline().split()[1]) / 1024 ** 2
    return f"{os.cpu_count()} CPUs (nproc), {model}, {mem_gb:.0f} GB, Linux {platform.release()}"


def charts_available() -> bool:
    missing = common.ensure_modules(sys.executable, {"matplotlib": "matplotlib"})
    if missing:
        common.log("matplotlib would not install: no charts this time")
    return not missing


def run_sections(envs: List[common.PythonEnv], sections: List[str], quick: bool) -> Tuple[Dict[str, Any], List[str]]:
    """The results of each part, and one line for each part that could not be measured
    (a failed part costs its own numbers, not the rest of a long run)."""
    results: Dict[str, Any] = {}
    failures: List[str] = []
    for name in sections:
        common.log(f"\n### {TITLES[name]}")
        for env in envs if name in PER_PYTHON else envs[:1]:
            module = PER_PYTHON.get(name) or ON_FIRST[name]
            try:
                result = module.measure(env, quick)
            except common.ChildFailed as exc:
                reason = " ".join(str(exc).split())[:300]
                failures.append(f"- {TITLES[name].lower()}, Python {env.version}: not measured ({reason}): "
                                "goal NOT met")
                common.log(failures[-1])
                continue
            if name in PER_PYTHON:
                results.setdefault(name, []).append(result)
            else:
                results[name] = result
    return results, failures


def draw_charts(results: Dict[str, Any], folder: str) -> Dict[str, str]:
    """{section: chart file}; a chart that fails is reported, not fatal."""
    os.makedirs(folder, exist_ok=True)
    files = {}
    for name, result in results.items():
        module = PER_PYTHON.get(name) or ON_FIRST[name]
        path = os.path.join(folder, f"{name}.svg")
        try:
            module.chart(result, path)
            files[name] = path
        except Exception as exc:  # a chart is a nicety: the tables carry the numbers
            common.log(f"chart for {name} failed: {exc!r}")
    return files


def section_markdown(name: str, result: Any) -> Tuple[List[str], List[str]]:
    module = PER_PYTHON.get(name) or ON_FIRST[name]
    lines: List[str] = []
    verdicts: List[str] = []
    for one in result if name in PER_PYTHON else [result]:
        body, found = module.report(one)
        lines += body
        verdicts += found
    return lines, verdicts


def describe_run(envs: List[common.PythonEnv], quick: bool, minutes: float) -> Dict[str, Any]:
    return dict(date=datetime.date.today().isoformat(), minutes=round(minutes), quick=quick, machine=machine(),
                pythons=[env.version for env in envs], first=envs[0].version,
                upstream=sorted({env.upstream_version for env in envs if env.upstream_version}))


def where_measured(results: Dict[str, Any], run: Dict[str, Any]) -> str:
    """Which interpreters each part was measured on: every one it has results for, or
    for the parts run on the first only, the first of the run that measured it."""
    parts = []
    for name in [s for s in SECTIONS if s in results]:
        if name in PER_PYTHON:
            versions = sorted({r["version"] for r in results[name]}, key=lambda v: tuple(map(int, v.split("."))))
        else:
            versions = [run.get("first_of", {}).get(name, run["first"])]
        parts.append(f"{TITLES[name].lower()} on {', '.join(versions)}")
    return "; ".join(parts)


def document(results: Dict[str, Any], failures: List[str], run: Dict[str, Any], charts: Dict[str, str],
             out: str) -> List[str]:
    """Writes the markdown report; returns the verdict lines."""
    body: List[str] = []
    verdicts: List[str] = list(failures)
    for name in [s for s in SECTIONS if s in results]:
        lines, found = section_markdown(name, results[name])
        verdicts += found
        body += [f"## {TITLES[name]}", ""]
        if name in charts:
            body += [f"![{TITLES[name]}]({os.path.relpath(charts[name], os.path.dirname(out))})", ""]
        body += lines
    missed = [v for v in verdicts if "NOT met" in v]
    reruns = "".join(f"; {TITLES[name].lower()} re-run on {date}" for name, date in run.get("reruns", {}).items())
    doc = ["# Benchmarks", "",
           "Generated by `make bench` (`bench/run.py`); do not edit by hand. The method of each part is in "
           "the docstring of its module under `bench/` and in the paragraph above each table.", "",
           f"- Date: {run['date']} ({run['minutes']} min run{', --quick' if run['quick'] else ''}{reruns})",
           f"- Machine: {run['machine']}",
           f"- Python: {', '.join(run['pythons'])} ({where_measured(results, run)})",
           f"- Compared with: upstream pyinstrument {', '.join(run['upstream']) or 'not installed'} (PyPI), "
           "cProfile (standard library), py-spy (PyPI)", "",
           "## Goals", "",
           f"{len(verdicts) - len(missed)} of {len(verdicts)} checks met." if verdicts else "No goals checked.",
           ""] + verdicts + [""] + body
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(doc).rstrip() + "\n")
    return verdicts


def merge_with_previous(path: str, results: Dict[str, Any], run: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """With --only, the parts not re-run keep their numbers from the last run."""
    try:
        with open(path) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        return results, run
    if previous.get("run", {}).get("quick") != run["quick"]:
        return results, run
    merged = dict(previous["sections"])
    for name, result in results.items():
        if name in PER_PYTHON and name in merged:  # one entry per interpreter: replace or add by version
            fresh = {r["version"] for r in result}
            result = [r for r in merged[name] if r["version"] not in fresh] + result
        merged[name] = result
    kept = dict(previous["run"])
    versions = [r["version"] for r in merged.get("overhead", [])]
    kept["pythons"] = sorted(set(kept["pythons"]) | set(versions), key=lambda v: tuple(map(int, v.split("."))))
    kept["upstream"] = sorted(set(kept["upstream"]) | set(run["upstream"]))
    # the parts measured on the first interpreter keep the one each was measured on
    first_of = kept.get("first_of") or {name: kept["first"] for name in ON_FIRST}
    kept["first_of"] = dict(first_of, **{name: run["first"] for name in results if name in ON_FIRST})
    kept["reruns"] = dict(kept.get("reruns", {}), **{name: run["date"] for name in results})
    return merged, kept


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmarks of this profiler against the goals of issue 3.")
    parser.add_argument("--quick", action="store_true", help="a shorter run on this interpreter's version only")
    parser.add_argument("--python", action="append", help="interpreter to measure (repeatable)")
    parser.add_argument("--only", action="append", choices=SECTIONS,
                        help="run only these parts, keeping the others' last numbers (repeatable)")
    parser.add_argument("--out", help="markdown report (default docs/benchmarks.md; --quick: bench/out/quick.md)")
    args = parser.parse_args()
    default_out = os.path.join(common.HERE, "out", "quick.md") if args.quick else \
        os.path.join(common.TOP, "docs", "benchmarks.md")
    out = os.path.abspath(args.out or default_out)
    # charts and raw numbers: docs/benchmarks/ beside docs/benchmarks.md, or beside the quick report
    chart_folder = os.path.splitext(out)[0] if not args.quick else os.path.dirname(out)
    raw_file = os.path.join(chart_folder, "results.json")
    started = time.perf_counter()

    # a relative path made absolute: the interpreters are probed from another directory
    pythons = [os.path.abspath(p) if os.sep in p else p for p in args.python or default_pythons(args.quick)]
    if not pythons:
        common.log(f"no CPython {', '.join(FULL_VERSIONS)} found (tools/pythons.sh); give --python PATH")
        return 1
    try:
        envs = [common.prepare(p) for p in pythons]
    except common.ChildFailed as exc:
        common.log(f"bench: {exc}")
        return 1
    can_chart = charts_available()
    results, failures = run_sections(envs, list(args.only or SECTIONS), args.quick)
    run = describe_run(envs, args.quick, (time.perf_counter() - started) / 60)
    if args.only:
        results, run = merge_with_previous(raw_file, results, run)
    charts = draw_charts(results, chart_folder) if can_chart else {}
    os.makedirs(chart_folder, exist_ok=True)
    with open(raw_file, "w") as f:
        json.dump({"run": run, "sections": results}, f, indent=1)
    verdicts = document(results, failures, run, charts, out)
    common.log("\n" + "\n".join(verdicts))
    common.log(f"\nwrote {os.path.relpath(out)} and {os.path.relpath(chart_folder)}/ "
               f"in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
