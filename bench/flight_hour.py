"""The flight recorder over an hour: does the agent's ring keep its memory bounded?
(issue 18: "ring memory bounded over an hour")

    python bench/flight_hour.py [--minutes 60] [--out bench/out/flight_hour.md] [--python PATH]

One target program, written by this script to a temporary directory, does varied work
until it is killed: three worker threads walking a pool of 40 functions along recursions
of random depth (1-40), a sleeper thread, **code churn** (every 3 s the main thread
compiles 25 new functions with new names, in a new file name, via exec, calls them, and
hands them to the workers; the previous generation is dropped, so the program itself keeps
meeting new code objects but holds only one generation) and **thread churn** (two
short-lived threads started every second, each living 0.1-0.4 s). Workers sleep about
four times as long as they work, so one program uses about half a core.

Two copies run side by side for the same time: **armed**, with
``PYINSTRUMENT_AGENT=1 PYINSTRUMENT_FLIGHT_SECONDS=60`` (100 Hz, 2 s segments, a fresh
engine Sampler each, within the default 4 MB budget), and **baseline**, the same program
with no PYINSTRUMENT_* variable. Both carry the same reporter thread, which every 30 s
appends to the file named by $FLIGHT_HOUR_REPORT its own VmRSS, ``sys.getallocatedblocks()``
(the Python object heap, to tell Python growth from C growth) and, in the armed one,
``pyinstrument.agent.flight_recorder().kept_bytes`` (the ring's own estimate) and its
number of segments. Every 30 s this script also reads both programs' VmRSS from
/proc/PID/status (the numbers of the table) and their CPU time.

Every 5 minutes it asks the armed program for its ring, ``python -m pyinstrument --agent
PID --flight -o x.pyisession``, and loads the session with ``Session.load``: a fetch fails
when the command fails, the session does not load, or it covers more than 60 s + one
segment (2 s) + 1 s of slack, by its duration or by its start time to the moment the
fetch returned.

The growth is the least-squares slope of (armed RSS - baseline RSS) over the samples from
minute 5 on (from half the run for runs shorter than 10 minutes), in MB per hour: the
baseline grows on its own too (3.12 keeps every interned name for good, and code churn makes
new names), and the difference takes that out. Bounded: a slope under 1 MB/hour and the
ring's kept_bytes never above its budget. The verdict takes the slope over the second half
of the run: each of the first few fetches leaves a high-water mark (a fetch joins the whole
ring into one session, about ten times kept_bytes at its peak, and the allocator keeps what
it freed), which the slope from minute 5 includes and the report shows per fetch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
MB = 1024 * 1024
FLIGHT_SECONDS = 60.0
SEGMENT = min(max(1.0, FLIGHT_SECONDS / 30), FLIGHT_SECONDS)  # agent.FlightRecorder's rule
BUDGET = 4 * MB  # PYINSTRUMENT_FLIGHT_MB's default
SAMPLE_EVERY = 30.0
FETCH_EVERY = 300.0
SLACK = 1.0  # seconds a fetched session may cover beyond FLIGHT_SECONDS + SEGMENT
FIT_FROM_MINUTE = 5.0
GOAL_MB_PER_HOUR = 1.0

TARGET = r'''
import json, os, random, sys, threading, time

REPORT = os.environ["FLIGHT_HOUR_REPORT"]
try:
    import pyinstrument.agent as agent  # in both runs; the baseline has no recorder
except ImportError:
    agent = None

rng = random.Random(1)


def vm_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def reporter():
    while True:
        time.sleep(30.0)
        recorder = agent.flight_recorder() if agent is not None else None
        line = {"t": time.time(), "rss": vm_rss(), "blocks": sys.getallocatedblocks(),
                "threads": threading.active_count(),
                "kept": recorder.kept_bytes if recorder is not None else None,
                "segments": len(getattr(recorder, "_ring", ())) if recorder is not None else None}
        with open(REPORT, "a") as f:
            f.write(json.dumps(line) + "\n")


# a pool of functions calling each other with a depth budget
POOL_SIZE = 40
pool = []
source = []
for i in range(POOL_SIZE):
    source.append(
        f"def pool_{i}(depth, n):\n"
        f"    total = 0\n"
        f"    for k in range(n):\n"
        f"        total += (k * {i + 3}) % 7\n"
        f"    if depth > 0:\n"
        f"        total += pool[(depth * {i + 7}) % POOL_SIZE](depth - 1, n)\n"
        f"    return total\n")
exec(compile("".join(source), "<pool>", "exec"), globals())
pool.extend(globals()[f"pool_{i}"] for i in range(POOL_SIZE))

churned = []  # the current generation of churned functions (replaced every 3 s)


def recurse(depth, n):
    if depth <= 0:
        return pool[rng.randrange(POOL_SIZE)](rng.randrange(1, 8), n)
    return recurse(depth - 1, n) + 1


def worker(seed):
    r = random.Random(seed)
    while True:
        started = time.perf_counter()
        while time.perf_counter() - started < 0.01:  # ~10 ms of work
            depth = r.randrange(1, 40)
            if churned and r.random() < 0.3:
                fns = churned  # read once: the main thread replaces the list
                fns[r.randrange(len(fns))](r.randrange(1, 6), 50)
            else:
                recurse(depth, 30)
        time.sleep(r.uniform(0.02, 0.06))  # about four times as long asleep as at work


def sleeper():
    def nap():
        time.sleep(0.5)

    def doze():
        nap()

    while True:
        doze()


def short_lived(seed):
    r = random.Random(seed)
    until = time.perf_counter() + r.uniform(0.1, 0.4)
    while time.perf_counter() < until:
        recurse(r.randrange(1, 15), 20)
        time.sleep(0.01)


def thread_churn():
    n = 0
    while True:
        for _ in range(2):
            n += 1
            threading.Thread(target=short_lived, args=(n,), name=f"short-{n}", daemon=True).start()
        time.sleep(1.0)


def new_generation(g):
    """25 new functions, new names, a new file name; they call each other and the pool."""
    names = [f"churn_{g}_{i}" for i in range(25)]
    text = []
    for i, name in enumerate(names):
        callee = names[(i + 1) % len(names)]
        text.append(
            f"def {name}(depth, n):\n"
            f"    acc = {i}\n"
            f"    for k in range(n):\n"
            f"        acc = (acc * 31 + k + {g}) % 1000003\n"
            f"    if depth > 0:\n"
            f"        acc += {callee}(depth - 1, n)\n"
            f"    else:\n"
            f"        acc += pool[{(g + i) % 40}](2, n)\n"
            f"    return acc\n")
    namespace = {"pool": pool}
    exec(compile("".join(text), f"<generated-{g}>", "exec"), namespace)
    return [namespace[name] for name in names]


threading.Thread(target=reporter, name="reporter", daemon=True).start()
threading.Thread(target=sleeper, name="sleeper", daemon=True).start()
threading.Thread(target=thread_churn, name="thread-churn", daemon=True).start()
for w in range(3):
    threading.Thread(target=worker, args=(w,), name=f"worker-{w}", daemon=True).start()
print("ready", flush=True)

generation = 0
while True:
    generation += 1
    fresh = new_generation(generation)
    for fn in fresh:
        fn(3, 100)
    churned = fresh  # the previous generation is dropped
    time.sleep(3.0)
'''


# -- the processes ---------------------------------------------------------------------------


def clean_environment(armed: bool, report: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYINSTRUMENT"))}
    env["FLIGHT_HOUR_REPORT"] = report
    if armed:
        env["PYINSTRUMENT_AGENT"] = "1"
        env["PYINSTRUMENT_FLIGHT_SECONDS"] = f"{FLIGHT_SECONDS:g}"
    return env


def own_group_dying_with_us() -> None:
    """In the target, before it runs: a process group of its own (Ctrl-C in a terminal reaches
    only this script, which then kills the group) and SIGKILL should this script die anyhow."""
    import ctypes

    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def agent_socket(pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"pyinstrument-{os.getuid()}", f"agent-{pid}.sock")


class Target:
    """One copy of the target program, its report file and its output."""

    def __init__(self, name: str, python: str, folder: str, armed: bool) -> None:
        self.name, self.armed = name, armed
        self.report = os.path.join(folder, f"{name}.jsonl")
        self.stderr_path = os.path.join(folder, f"{name}.stderr")
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([python, "-E", "-s", os.path.join(folder, "target.py")], cwd=folder,
                                     env=clean_environment(armed, self.report), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._stderr, universal_newlines=True,
                                     preexec_fn=own_group_dying_with_us)

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {self.name} program did not start: {self.stderr_tail()}")
        if os.path.exists(agent_socket(self.proc.pid)) != self.armed:
            raise RuntimeError(f"the agent is {'not ' if self.armed else ''}armed in the {self.name} program")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the {self.name} program ended (exit code {self.proc.returncode}): "
                               f"{self.stderr_tail()}")

    def stderr_tail(self) -> str:
        self._stderr.flush()
        with open(self.stderr_path) as f:
            return " | ".join(f.read().strip().splitlines()[-6:])

    def vm_rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for the {self.name} program")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the whole process (all its threads) so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def last_report(self) -> Dict[str, Any]:
        try:
            with open(self.report) as f:
                lines = f.read().strip().splitlines()
        except FileNotFoundError:
            return {}
        return json.loads(lines[-1]) if lines else {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its group: it and nothing else of ours
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.armed and self.proc.poll() is not None:
            try:
                os.remove(agent_socket(self.proc.pid))  # killed, its agent could not remove it
            except FileNotFoundError:
                pass
        self._stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def fetch(python: str, folder: str, pid: int) -> Dict[str, Any]:
    """`pyinstrument --agent PID --flight`: what it returned and whether it is within bounds."""
    from pyinstrument.session import Session

    out = os.path.join(folder, "flight.pyisession")
    if os.path.exists(out):
        os.remove(out)
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYINSTRUMENT"))}
    try:
        client = subprocess.run([python, "-E", "-s", "-m", "pyinstrument", "--agent", str(pid), "--flight",
                                 "-o", out], cwd=folder, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    except subprocess.TimeoutExpired:
        return {"ok": False, "why": "the client took over 120 s"}
    returned, seconds = time.time(), time.perf_counter() - started
    result: Dict[str, Any] = {"seconds": seconds}
    if client.returncode != 0 or not os.path.exists(out):
        result.update(ok=False, why=f"exit code {client.returncode}: {client.stdout.strip()[-300:]}")
        return result
    try:
        session = Session.load(out)
    except Exception as exc:
        result.update(ok=False, why=f"Session.load: {type(exc).__name__}: {exc}")
        return result
    result.update(duration=session.duration, span=returned - session.start_time, samples=session.sample_count,
                  file_bytes=os.path.getsize(out))
    limit = FLIGHT_SECONDS + SEGMENT + SLACK
    if session.duration > limit or result["span"] > limit + seconds:  # the span includes the client's own time
        result.update(ok=False, why=f"covers {session.duration:.1f} s (span {result['span']:.1f} s), "
                      f"over {limit:g} s")
    else:
        result["ok"] = True
    os.remove(out)
    return result


# -- the run ------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def measure(python: str, minutes: float, fetch_every: float = FETCH_EVERY) -> Dict[str, Any]:
    samples: List[Dict[str, Any]] = []
    fetches: List[Dict[str, Any]] = []
    busy_start, own_start = busy_seconds(), sum(own_cpu())
    with tempfile.TemporaryDirectory(prefix="pyi-flight-hour-") as folder:
        with open(os.path.join(folder, "target.py"), "w") as f:
            f.write(TARGET)
        targets: List[Target] = []
        try:
            targets = [Target("armed", python, folder, armed=True), Target("baseline", python, folder, armed=False)]
            for t in targets:
                t.wait_ready()
            armed, baseline = targets
            log(f"armed pid {armed.proc.pid}, baseline pid {baseline.proc.pid}; {minutes:g} minutes")
            start = time.monotonic()
            cpu_start = {t.name: t.cpu_seconds() for t in targets}
            end = start + minutes * 60
            tick = 0
            while True:
                tick += 1
                due = start + tick * SAMPLE_EVERY
                if due > end + 0.5:
                    break
                time.sleep(max(0.0, due - time.monotonic()))
                for t in targets:
                    t.check_alive()
                elapsed = time.monotonic() - start
                a, b = armed.last_report(), baseline.last_report()
                sample = {"minute": elapsed / 60, "rss_armed": armed.vm_rss(), "rss_baseline": baseline.vm_rss(),
                          "kept": a.get("kept"), "segments": a.get("segments"),
                          "blocks_armed": a.get("blocks"), "blocks_baseline": b.get("blocks"),
                          "threads_armed": a.get("threads"), "threads_baseline": b.get("threads"),
                          "cpu_armed": (armed.cpu_seconds() - cpu_start["armed"]) / elapsed,
                          "cpu_baseline": (baseline.cpu_seconds() - cpu_start["baseline"]) / elapsed}
                samples.append(sample)
                log(f"minute {sample['minute']:5.1f}: RSS armed {sample['rss_armed'] / MB:6.1f} MB, baseline "
                    f"{sample['rss_baseline'] / MB:6.1f} MB, difference "
                    f"{(sample['rss_armed'] - sample['rss_baseline']) / MB:5.1f} MB, kept "
                    f"{(sample['kept'] or 0) / MB:.2f} MB in {sample['segments']} segments; CPU "
                    f"{sample['cpu_armed']:.2f} + {sample['cpu_baseline']:.2f} cores")
                if tick % max(1, round(fetch_every / SAMPLE_EVERY)) == 0:
                    before = armed.vm_rss()
                    got = fetch(python, folder, armed.proc.pid)
                    armed.check_alive()
                    got.update(minute=elapsed / 60, rss_before=before, rss_after=armed.vm_rss())
                    fetches.append(got)
                    if got["ok"]:
                        log(f"  fetch: {got['duration']:.1f} s (span {got['span']:.1f} s), {got['samples']} "
                            f"samples, {got['file_bytes'] / 1024:.0f} KB, in {got['seconds']:.2f} s; armed RSS "
                            f"{(got['rss_after'] - got['rss_before']) / MB:+.1f} MB")
                    else:
                        log(f"  fetch FAILED: {got['why']}")
            wall = time.monotonic() - start
            stderr = {t.name: t.stderr_tail() for t in targets}
        finally:
            for t in targets:
                t.kill()
    return {"samples": samples, "fetches": fetches, "minutes": minutes, "stderr": stderr, "fetch_every": fetch_every,
            "others": max(0.0, busy_seconds() - busy_start - (sum(own_cpu()) - own_start)) / wall,
            "date": datetime.datetime.now().isoformat(timespec="minutes"), "cores": os.cpu_count(),
            "machine": machine(), "python": python_version(python)}


def busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> Tuple[float, float]:
    """CPU seconds of this script and of its children that ended (targets, clients)."""
    import resource

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def python_version(python: str) -> str:
    out = subprocess.run([python, "-E", "-s", "-c", "import sys, pyinstrument; "
                          "print(sys.version.split()[0], pyinstrument.__version__)"],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.split()
    return f"Python {out[0]}, pyinstrument {out[1]}"


# -- the report -------------------------------------------------------------------------------


def slope(points: Sequence[Tuple[float, float]]) -> Optional[float]:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return None
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


def fit_from(minutes: float) -> float:
    return FIT_FROM_MINUTE if minutes >= 2 * FIT_FROM_MINUTE else minutes / 2


def mb(value: Optional[float], digits: int = 1) -> str:
    return "–" if value is None else f"{value / MB:.{digits}f}"


def report(result: Dict[str, Any]) -> Tuple[List[str], bool]:
    samples, fetches = result["samples"], result["fetches"]
    since = fit_from(result["minutes"])
    fitted = [s for s in samples if s["minute"] >= since - 1e-6]

    def per_hour(key: str) -> Optional[float]:
        value = slope([(s["minute"] / 60, key_value(s, key)) for s in fitted])
        return None if value is None else value / MB

    def key_value(s: Dict[str, Any], key: str) -> float:
        return float(s["rss_armed"] - s["rss_baseline"]) if key == "difference" else float(s[key])

    diff_slope, armed_slope, base_slope = per_hour("difference"), per_hour("rss_armed"), per_hour("rss_baseline")
    half = [s for s in samples if s["minute"] >= result["minutes"] / 2 - 1e-6]
    half_slope = slope([(s["minute"] / 60, float(s["rss_armed"] - s["rss_baseline"])) for s in half])
    kept = [s["kept"] for s in samples if s["kept"] is not None]
    max_kept = max(kept) if kept else None
    failures = [f for f in fetches if not f["ok"]]
    steady = None if half_slope is None else half_slope / MB
    bounded = steady is not None and steady < GOAL_MB_PER_HOUR and max_kept is not None and max_kept <= BUDGET
    first, last = samples[0], samples[-1]
    blocks = [s for s in fitted if s["blocks_armed"] is not None and s["blocks_baseline"] is not None]
    block_slope = slope([(s["minute"] / 60, s["blocks_armed"] - s["blocks_baseline"]) for s in blocks])

    lines = [f"### The flight recorder over {result['minutes']:g} minutes", "",
             "The same program (`bench/flight_hour.py`'s target: three threads recursing through a pool of "
             "functions, a sleeper, 25 new functions compiled under new names every 3 s, two short-lived threads "
             "every second) run twice side by side: **armed** with `PYINSTRUMENT_AGENT=1 "
             f"PYINSTRUMENT_FLIGHT_SECONDS={FLIGHT_SECONDS:g}` (100 Hz, {SEGMENT:g} s segments, "
             f"{BUDGET // MB} MB budget) and **baseline** (no agent). RSS: VmRSS from /proc/PID/status, MB "
             "(2^20 bytes). Kept: the ring's own estimate (`flight_recorder().kept_bytes`), read by the program "
             "up to 30 s before the RSS. One row a minute; the fit uses every 30 s sample.", "",
             "| minute | RSS armed | RSS baseline | difference | kept (MB) | segments | fetch after the sample: "
             "seconds covered, armed RSS change |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for s in samples:
        if abs(s["minute"] - round(s["minute"])) < 0.05:
            got = [f for f in fetches if abs(f["minute"] - s["minute"]) < 0.01]
            note = ""
            if got:
                f = got[0]
                note = (f"{f['duration']:.1f} s" if f["ok"] else "FAILED") + \
                    f", {(f['rss_after'] - f['rss_before']) / MB:+.1f} MB"
            lines.append(f"| {s['minute']:.0f} | {mb(s['rss_armed'])} | {mb(s['rss_baseline'])} | "
                         f"{mb(s['rss_armed'] - s['rss_baseline'])} | {mb(s['kept'], 2)} | "
                         f"{s['segments'] if s['segments'] is not None else '–'} | {note} |")

    def rate(value: Optional[float]) -> str:
        return "–" if value is None else f"{value:+.2f} MB/hour"

    ok = len(fetches) - len(failures)
    durations = [f["duration"] for f in fetches if "duration" in f]
    lines += ["", "Summary:", "",
              f"- RSS difference (armed - baseline), least-squares slope from minute {since:g} to the end "
              f"({len(fitted)} samples): **{rate(diff_slope)}** (armed alone {rate(armed_slope)}, baseline "
              f"alone {rate(base_slope)}). Over the second half alone (minute {result['minutes'] / 2:g} on, "
              f"{len(half)} samples): {rate(None if half_slope is None else half_slope / MB)}.",
              f"- Python heap blocks (`sys.getallocatedblocks()`), armed - baseline, slope over the same samples: "
              f"{'–' if block_slope is None else f'{block_slope:+,.0f} blocks/hour'}.",
              f"- At minute {first['minute']:.1f}: armed {mb(first['rss_armed'])} MB, baseline "
              f"{mb(first['rss_baseline'])} MB, difference {mb(first['rss_armed'] - first['rss_baseline'])} MB. "
              f"At the end (minute {last['minute']:.1f}): armed **{mb(last['rss_armed'])} MB**, baseline "
              f"**{mb(last['rss_baseline'])} MB**, difference **{mb(last['rss_armed'] - last['rss_baseline'])} MB**.",
              f"- Ring kept_bytes: max **{mb(max_kept, 2)} MB** of a {BUDGET / MB:g} MB budget "
              f"(last {mb(kept[-1] if kept else None, 2)} MB).",
              f"- Fetches (`--flight` every {result['fetch_every'] / 60:g} minutes): {ok} of {len(fetches)} "
              f"succeeded within {FLIGHT_SECONDS + SEGMENT + SLACK:g} s; **{len(failures)} failed**"
              + (f"; sessions covered {min(durations):.1f}–{max(durations):.1f} s" if durations else "") + ".",
              ]
    for f in failures:
        lines.append(f"  - minute {f['minute']:.1f}: {f['why']}")
    if fetches:
        steps = [(f["rss_after"] - f["rss_before"]) / MB for f in fetches]
        lines.append("- Armed RSS across each fetch (just before to just after): "
                     + ", ".join(f"{x:+.1f}" for x in steps) + f" MB (sum {sum(steps):+.1f} MB).")
    cpu = (last["cpu_armed"], last["cpu_baseline"])
    lines += [f"- CPU: the armed program used {cpu[0]:.2f} cores, the baseline {cpu[1]:.2f} (mean over the run); "
              f"other processes on the machine kept {result['others']:.2f} cores busy meanwhile.",
              f"- Threads alive at the end: armed {last['threads_armed']}, baseline {last['threads_baseline']}.",
              "", f"**Verdict: the flight recorder's memory is {'BOUNDED' if bounded else 'NOT BOUNDED'}** "
              f"(goal: difference slope over the second half < {GOAL_MB_PER_HOUR:g} MB/hour and kept_bytes <= "
              f"budget; got {rate(steady)} and {mb(max_kept, 2)} MB of {BUDGET / MB:g} MB).", "",
              f"Measured on {result['date']}, {result['machine']}, {result['python']}, with `python "
              f"bench/flight_hour.py --minutes {result['minutes']:g}"
              + (f" --fetch-minutes {result['fetch_every'] / 60:g}" if result["fetch_every"] != FETCH_EVERY else "")
              + "`.", ""]
    return lines, bounded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="how long both programs run (default 60)")
    parser.add_argument("--out", default=os.path.join(HERE, "out", "flight_hour.md"),
                        help="the Markdown report (default bench/out/flight_hour.md); the samples go beside it "
                        "as .json")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the targets and the client "
                        "(with pyinstrument installed; default: this one)")
    parser.add_argument("--fetch-minutes", type=float, default=FETCH_EVERY / 60,
                        help=f"ask for the ring this often (default {FETCH_EVERY / 60:g}; rounded to 30 s steps)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(f"stopped by signal {number}"))  # runs finally:
    if args.minutes * 60 < SAMPLE_EVERY * 2:
        parser.error(f"--minutes must allow two samples ({2 * SAMPLE_EVERY / 60:g} minutes at least)")
    result = measure(args.python, args.minutes, args.fetch_minutes * 60)
    lines, _ = report(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(result, f, indent=1)
    print("\n".join(lines))
    print(f"(written to {args.out})")


if __name__ == "__main__":
    main()
