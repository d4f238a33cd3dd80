"""Overhead of profiling a call-heavy program, ours vs upstream pyinstrument, and our cost per tick.

    python bench/overhead.py [--quick] [--python PATH ...] [--out docs/benchmarks.md]

Run it with a python that has this project installed (`make bench` does, through
tools/venv.sh); each `--python PATH` that lacks it gets one through tools/venv.sh.
Upstream pyinstrument 5.x is pip-installed from PyPI into bench/.upstream-venv-X.Y,
made with the same interpreter.

Method: every measurement is a fresh subprocess (this file with --child) that times only
the workload, recursive fib(25) repeated to take about 1 s, with time.perf_counter.
Each profiled run is paired with an unprofiled run of the same python right beside it
(the order alternates each round), and we report the median and interquartile range of
the per-pair ratios. The cost per tick comes from the engine's own counters
(tick_ns_total / ticks) with 1 or 16 threads sitting 30 Python frames deep.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
GOAL = 1.02  # ours at 1 ms must slow the program by at most 2%
TARGET_SECONDS = 1.0


# -- child side: runs in the measured interpreter, prints one JSON line ----------------------


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def child_overhead(profiler, interval, reps):
    fib(20)  # warm up (3.11+ specialises the bytecode) in every mode alike
    p = None
    if profiler != "none":
        from pyinstrument import Profiler

        p = Profiler(interval=interval)
        p.start()
    t0 = time.perf_counter()
    for _ in range(reps):
        fib(25)
    elapsed = time.perf_counter() - t0
    result = {"seconds": elapsed}
    if p is not None:
        result["samples"] = p.stop().sample_count
    return result


def child_ticks(threads, busy, depth, interval, duration):
    import threading

    from pyinstrument import Profiler

    stop = threading.Event()
    ready = threading.Barrier(threads)

    def deep(n, leaf):  # each level is one Python frame
        return deep(n - 1, leaf) if n > 1 else leaf()

    def worker_leaf():
        ready.wait()
        if busy:
            i = 0
            while not stop.is_set():
                i += 1
        else:
            stop.wait()

    def main_leaf():
        ready.wait()
        p = Profiler(interval=interval, all_threads=True)
        before = set(os.listdir("/proc/self/task"))
        p.start()
        sampler_tasks = set(os.listdir("/proc/self/task")) - before
        end = time.perf_counter() + duration
        if busy:
            i = 0
            while time.perf_counter() < end:
                i += 1
        else:
            time.sleep(duration)
        cpu_ns = 0  # the sampler thread's own CPU time (schedstat: ns on a CPU), preemption excluded
        for task in sampler_tasks:
            with open(f"/proc/self/task/{task}/schedstat") as f:
                cpu_ns += int(f.read().split()[0])
        p.stop()
        stop.set()
        return dict(p._sampler.snapshot(), cpu_ns=cpu_ns)

    workers = [threading.Thread(target=deep, args=(depth, worker_leaf)) for _ in range(threads - 1)]
    for w in workers:
        w.start()
    snap = deep(depth, main_leaf)
    for w in workers:
        w.join()
    keys = ("ticks", "samples", "dropped", "missed_ticks", "tick_ns_total", "syscalls", "cpu_ns")
    return {k: snap[k] for k in keys}


# -- parent side ---------------------------------------------------------------------------


def run_child(python, *args):
    cmd = [python, "-I", os.path.abspath(__file__), "--child", *map(str, args)]
    env = dict(os.environ, PYINSTRUMENT_IGNORE_OVERHEAD_WARNING="1")  # upstream's timer warning, when contended
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, cwd=HERE, env=env, universal_newlines=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def probe(python, code):
    proc = subprocess.run([python, "-I", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          cwd=HERE, universal_newlines=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ours_python(python):
    """A python with this project installed: the one given, or its venv from tools/venv.sh."""
    if probe(python, "import pyinstrument._engine") is not None:
        return python
    print(f"installing this project for {python} (tools/venv.sh)...", flush=True)
    out = subprocess.run([os.path.join(TOP, "tools", "venv.sh"), python], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    return out.strip().splitlines()[-1]


def upstream_python(python, version):
    """bench/.upstream-venv-X.Y with pyinstrument 5.x from PyPI, made by the same interpreter."""
    venv = os.path.join(HERE, f".upstream-venv-{version}")
    py = os.path.join(venv, "bin", "python")
    check = "import importlib.util as u, pyinstrument as p; assert not u.find_spec('pyinstrument._engine'); print(p.__version__)"
    if not os.path.exists(py):
        print(f"creating {venv} ...", flush=True)
        subprocess.run([python, "-m", "venv", venv], check=True)
    found = probe(py, check)
    if found is None or not found.startswith("5."):
        subprocess.run([py, "-m", "pip", "install", "-q", "pyinstrument>=5,<6"], check=True)
        found = probe(py, check)
        if found is None:
            sys.exit(f"{py}: upstream pyinstrument did not install")
    return py, found


def busy_cpu_seconds():
    """(CPU seconds used by the whole machine, by this process and its children) so far."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    ours = os.times()
    return ((user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"),
            ours.user + ours.system + ours.children_user + ours.children_system)


def ms(interval):
    return f"{interval * 1000:g} ms" if interval else "-"


def spread(values):
    """(median, first quartile, third quartile)"""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q1, q3


def measure(python, repeats):
    version = probe(python, "import sys; print(sys.version.split()[0])")
    short = ".".join(version.split(".")[:2])
    ours = ours_python(python)
    upstream, upstream_version = upstream_python(python, short)
    print(f"\n=== Python {version}: ours {ours}\n    upstream pyinstrument {upstream_version} {upstream}", flush=True)

    cpu_before, wall_before = busy_cpu_seconds(), time.perf_counter()
    one = min(run_child(ours, "overhead", "none", 0, 1)["seconds"] for _ in range(3))
    reps = max(1, round(TARGET_SECONDS / one))
    configs = [("unprofiled (A/A)", ours, 0), ("ours", ours, 0.001), ("ours", ours, 0.0001),
               (f"upstream {upstream_version}", upstream, 0.001), (f"upstream {upstream_version}", upstream, 0.0001)]
    ratios = {i: [] for i in range(len(configs))}
    samples = {i: [] for i in range(len(configs))}
    times = {i: ([], []) for i in range(len(configs))}  # (unprofiled, profiled) seconds
    bases = []
    for r in range(repeats):
        for i, (name, py, interval) in enumerate(configs):
            kind = name.split()[0] if interval else "none"
            first, second = (kind, "none") if r % 2 else ("none", kind)  # A,B then B,A: neither always first
            res = [run_child(py, "overhead", mode, interval, reps) for mode in (first, second)]
            prof, base = (res[0], res[1]) if r % 2 else (res[1], res[0])
            base, prof, count = base["seconds"], prof["seconds"], prof.get("samples", 0)
            bases.append(base)
            times[i][0].append(base)
            times[i][1].append(prof)
            ratios[i].append(prof / base)
            samples[i].append(count / prof)
            print(f"  round {r + 1}/{repeats} {name:>16} @ {ms(interval):>6}: "
                  f"{base:.3f} s -> {prof:.3f} s  x{prof / base:.3f}", flush=True)
    overhead = [dict(profiler=name, interval=interval, ratio=spread(ratios[i]), best=min(times[i][1]) / min(times[i][0]),
                     samples_per_s=statistics.median(samples[i]))
                for i, (name, _, interval) in enumerate(configs)]

    ticks = []
    for threads in (1, 16):
        for busy in (False, True):
            runs = [run_child(ours, "ticks", threads, int(busy), 30, 0.001, 1.0) for _ in range(repeats)]
            per_tick = [x["tick_ns_total"] / x["ticks"] / 1000 for x in runs if x["ticks"]]
            total = {k: sum(x[k] for x in runs) for k in runs[0]}
            cpu_per_tick = [x["cpu_ns"] / x["ticks"] / 1000 for x in runs if x["ticks"]]
            ticks.append(dict(threads=threads, state="busy" if busy else "sleeping", us=spread(per_tick),
                              cpu_us=statistics.median(cpu_per_tick),
                              samples_per_tick=total["samples"] / max(1, total["ticks"]),
                              syscalls_per_tick=total["syscalls"] / max(1, total["ticks"]),
                              missed=total["missed_ticks"] / max(1, total["ticks"] + total["missed_ticks"]),
                              dropped=total["dropped"]))
    (all_after, ours_after), wall = busy_cpu_seconds(), time.perf_counter() - wall_before
    others = max(0.0, (all_after - cpu_before[0]) - (ours_after - cpu_before[1])) / wall
    return dict(version=version, reps=reps, others=others, base=statistics.median(bases), base_range=(min(bases), max(bases)), overhead=overhead, ticks=ticks,
                upstream_version=upstream_version)


def tables(result, repeats):
    """Markdown tables for one interpreter (also readable as plain text)."""
    lines = [f"### Python {result['version']}", "",
             f"Workload: fib(25) x {result['reps']}, unprofiled median {result['base']:.3f} s "
             f"(range {result['base_range'][0]:.3f}-{result['base_range'][1]:.3f} s); "
             f"{repeats} interleaved pairs per row. Other processes kept {result['others']:.2f} of "
             f"{os.cpu_count()} CPUs busy during these runs.", "",
             "| profiler | interval | time ratio (median) | IQR | best / best | samples/s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for o in result["overhead"]:
        med, q1, q3 = o["ratio"]
        lines.append(f"| {o['profiler']} | {ms(o['interval'])} | **{med:.3f}x** | {q1:.3f}-{q3:.3f} | {o['best']:.3f}x "
                     f"| {o['samples_per_s']:.0f} |" if o["interval"] else f"| {o['profiler']} | - | {med:.3f}x "
                     f"| {q1:.3f}-{q3:.3f} | {o['best']:.3f}x | - |")
    lines += ["", "Our sampler's cost per tick (interval 1 ms, all_threads=True, each thread 30 frames deep, "
              "1 s runs):", "",
              "| threads | threads are | µs per tick (median) | IQR | sampler thread CPU µs/tick | samples/tick "
              "| syscalls/tick | missed ticks | dropped |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in result["ticks"]:
        med, q1, q3 = t["us"]
        lines.append(f"| {t['threads']} | {t['state']} | **{med:.1f}** | {q1:.1f}-{q3:.1f} | {t['cpu_us']:.1f} | "
                     f"{t['samples_per_tick']:.2f} | {t['syscalls_per_tick']:.1f} | {t['missed']:.1%} | {t['dropped']} |")
    return lines


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc), {model}, Linux {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help="interpreter to measure (repeatable; default: this one)")
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--repeats", type=int, help="pairs per measurement (default 7, --quick 3)")
    parser.add_argument("--out", default=os.path.join(TOP, "docs", "benchmarks.md"), help="markdown report ('' for none)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    started = time.time()
    results = [measure(py, repeats) for py in (args.python or [sys.executable])]

    verdicts = []
    for r in results:
        ours_1ms = next(o for o in r["overhead"] if o["profiler"] == "ours" and o["interval"] == 0.001)
        med = ours_1ms["ratio"][0]
        _, q1, q3 = r["overhead"][0]["ratio"]  # unprofiled vs unprofiled: the noise floor of this run
        verdict = "met" if med <= GOAL else "NOT met"
        if (q3 - q1) / 2 > GOAL - 1:
            verdict += (f", but inconclusive: unprofiled-vs-unprofiled pairs spread ±{(q3 - q1) / 2:.1%}, wider "
                        f"than the goal (other processes kept {r['others']:.2f} CPUs busy); fastest profiled run / "
                        f"fastest unprofiled run: {ours_1ms['best']:.3f}x")
        verdicts.append(f"- Python {r['version']}: ours at 1 ms **{med:.3f}x**: goal {verdict}")
    body = []
    for r in results:
        body += tables(r, repeats) + [""]
    print("\n" + "\n".join(body + verdicts))

    if args.out:
        doc = ["# Benchmarks: profiling overhead", "",
               "Generated by `bench/overhead.py` (`make bench`); do not edit by hand.", "",
               f"- Date: {datetime.date.today().isoformat()} ({(time.time() - started) / 60:.0f} min run, "
               f"{repeats} repeats{', --quick' if args.quick else ''})",
               f"- Machine: {machine()}",
               f"- Python: {', '.join(r['version'] for r in results)}", "",
               f"**Goal:** profiling at a 1 ms interval slows a call-heavy program by at most 2% "
               f"(time ratio ≤ {GOAL:.2f}x).", ""] + verdicts + ["",
               "## Method", "",
               "The workload is recursive `fib(25)`, repeated to take about 1 s unprofiled. Every run is a fresh "
               "subprocess that times only the workload with `time.perf_counter` (interpreter start-up, imports "
               "and the profiler's start/stop are excluded). Each profiled run is paired with an unprofiled run "
               "of the same interpreter right beside it, alternating which goes first; the tables give the "
               "median and interquartile range of the per-pair ratios. Upstream is pyinstrument from PyPI in "
               "its own virtualenv (`bench/.upstream-venv-X.Y`); it profiles through a hook on every call, so "
               "fib is its worst case. The cost per tick is the engine's own count (`tick_ns_total / ticks` "
               "from `Profiler._sampler.snapshot()`): the wall time the sampler thread spends reading every "
               "thread's stack each tick, including any time it was preempted; the sampler thread's own CPU time "
               "per tick (from `/proc/self/task/TID/schedstat`) excludes that but includes its sleep and wake-up. "
               "`best / best` is the fastest profiled run over the fastest unprofiled one, an estimate less "
               "disturbed by other processes (they only ever add time), though a single lucky run sways it. The machine is a shared 2-core VM whose speed swings from run to run (see the range of the "
               "unprofiled runs; their thread CPU time equals their wall time, so the swings come from the host, "
               "not from preemption): the `unprofiled (A/A)` row pairs two unprofiled runs and shows this run's "
               "noise floor, and the goal can only be judged where that spread is well under 2%.",
               "", "## Results", ""] + body
        with open(args.out, "w") as f:
            f.write("\n".join(doc).rstrip() + "\n")
        print(f"\nwrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "overhead":
            out = child_overhead(rest[0], float(rest[1]), int(rest[2]))
        else:
            out = child_ticks(int(rest[0]), rest[1] == "1", int(rest[2]), float(rest[3]), float(rest[4]))
        print(json.dumps(out))
    else:
        main()
