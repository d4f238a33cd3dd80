"""Many profilers at once: what N overlapping profilers cost the program they profile.

Each profiler is a subscription to the process's one sampling thread (engine/sampler.c).
Two workloads, each run with the profilers off and on, in the same run:

- tasks: N asyncio tasks in one loop, each a "request" of 10 steps (20,000 additions,
  then `await asyncio.sleep(0.001)`), each task under its own Profiler (async_mode
  "enabled"), as a profiling middleware does for concurrent requests.
- threads: N threads doing the same steps with time.sleep, each under its own Profiler.

Each is timed with a spare core and with the whole process pinned to one core
(`taskset -c 0`, as on a server with no core to spare). Prints the median of --repeat runs
and the on/off ratio.

    python bench/many_profilers.py [--n 200] [--repeat 3] [--python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

WORKLOAD = r'''
import asyncio, json, sys, threading, time
from pyinstrument import Profiler
kind, n, on = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "on"

def step():
    total = 0
    for i in range(20000):
        total += i * i
    return total

async def request():
    for _ in range(10):
        step()
        await asyncio.sleep(0.001)

async def profiled_request():
    if not on:
        return await request()
    profiler = Profiler(async_mode="enabled")
    profiler.start()
    await request()
    profiler.stop()

def thread_body():
    profiler = Profiler(async_mode="disabled") if on else None
    if profiler:
        profiler.start()
    for _ in range(10):
        step()
        time.sleep(0.001)
    if profiler:
        profiler.stop()

async def all_tasks():
    await asyncio.gather(*(profiled_request() for _ in range(n)))

start = time.perf_counter()
if kind == "tasks":
    asyncio.run(all_tasks())
else:
    threads = [threading.Thread(target=thread_body) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
print(json.dumps({"seconds": time.perf_counter() - start}))
'''


def run_once(python: str, kind: str, n: int, on: bool, pinned: bool) -> float:
    command = [python, "-c", WORKLOAD, kind, str(n), "on" if on else "off"]
    if pinned:
        command = ["taskset", "-c", "0"] + command
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"many_profilers: the {kind} workload failed: {proc.stderr.strip()[-500:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    placements = [False] + ([True] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else [])
    print(f"{args.n} profilers at once, median of {args.repeat} ({args.python})")
    print(f"{'workload':10} {'placement':12} {'off (s)':>8} {'on (s)':>8} {'ratio':>6}")
    for kind in ("tasks", "threads"):
        for pinned in placements:
            times = {on: statistics.median(run_once(args.python, kind, args.n, on, pinned) for _ in range(args.repeat))
                     for on in (False, True)}
            placement = "one core" if pinned else "spare core"
            print(f"{kind:10} {placement:12} {times[False]:8.2f} {times[True]:8.2f} {times[True] / times[False]:6.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
