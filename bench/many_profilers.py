"""Many profilers at once: what N overlapping profilers cost the program they profile.

Each profiler is a subscription to the process's one sampling thread (engine/sampler.c).
Two workloads, each run with the profilers off and on, in the same run:

- tasks: N asyncio tasks in one loop, each a "request" of 10 steps (20,000 additions,
  then `await asyncio.sleep(0.001)`), each task under its own Profiler (async_mode
  "enabled"), as a profiling middleware does for concurrent requests.
- threads: N threads doing the same steps with time.sleep, each under its own Profiler.
- asgi: uvicorn serving a Starlette app whose endpoint does the same steps, with
  pyinstrument's ASGI middleware on (profile_dir set, slow_threshold high enough that
  nothing is written: every request profiled, none kept) or not added; N concurrent
  requests, 5 times, from a client in the same event loop (plain HTTP/1.1 over asyncio
  streams), so that the client's own work is the same both ways.

Each is timed with a spare core and with the whole process pinned to one core
(`taskset -c 0`, as on a server with no core to spare): the median of the runs (off and on
alternating) and the on/off ratio, against the goal of 1.10x.

    python bench/many_profilers.py [--n 200] [--repeat 3] [--python PATH]    (standalone; `make bench` runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import common

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

async def serve_and_ask(rounds=5):
    import socket, tempfile
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def endpoint(http_request):
        await request()
        return PlainTextResponse("done")

    app = Starlette(routes=[Route("/work", endpoint)])
    if on:
        from pyinstrument.asgi import ProfilerMiddleware
        app.add_middleware(ProfilerMiddleware, profile_dir=tempfile.mkdtemp(), slow_threshold=3600)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, backlog=4096))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)

    async def ask():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /work HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]

    began = time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(ask() for _ in range(n)))
    seconds = time.perf_counter() - began
    server.should_exit = True
    await serving
    return seconds

start = time.perf_counter()
if kind == "asgi":
    print(json.dumps({"seconds": asyncio.run(serve_and_ask())}))
    sys.exit(0)
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


GOAL = 1.10  # issue 14: 200 concurrent profilers cost at most 10%
KINDS = ("tasks", "threads", "asgi")


def run_once(python: str, kind: str, n: int, on: bool, pinned: bool) -> float:
    command = [python, "-c", WORKLOAD, kind, str(n), "on" if on else "off"]
    if pinned:
        command = ["taskset", "-c", "0"] + command
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise common.ChildFailed(f"the {kind} workload failed: {proc.stderr.strip()[-500:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def placements() -> List[bool]:
    """False: a spare core; True: pinned to one (when taskset and a second core exist)."""
    return [False] + ([True] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else [])


def measure_with(python: str, n: int, repeat: int) -> List[Dict[str, Any]]:
    rows = []
    for kind in KINDS:
        for pinned in placements():
            times: Dict[bool, List[float]] = {False: [], True: []}
            for _ in range(repeat):  # off and on alternate, so that a busy moment hits both
                for on in (False, True):
                    times[on].append(run_once(python, kind, n, on, pinned))
            off, on_ = statistics.median(times[False]), statistics.median(times[True])
            rows.append(dict(kind=kind, pinned=pinned, off=off, on=on_, ratio=on_ / off))
            common.log(f"{kind} {'one core' if pinned else 'spare core'}: {off:.2f} s -> {on_:.2f} s ({on_ / off:.2f}x)")
    return rows


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    n, repeat = (50, 1) if quick else (200, 3)
    return dict(version=env.version, n=n, repeat=repeat, rows=measure_with(env.ours, n, repeat))


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    n = result["n"]
    lines = [f"{n} profilers at once on Python {result['version']}, median of {result['repeat']} runs each (off and on "
             f"alternating). **tasks**: {n} asyncio tasks in one loop, each a request of 10 steps (20,000 additions, "
             f"then a 1 ms `asyncio.sleep`) under its own `Profiler(async_mode=\"enabled\")`, as a profiling "
             f"middleware does for concurrent requests. **threads**: {n} threads doing the same steps with "
             f"`time.sleep`, each under its own profiler. **asgi**: uvicorn and Starlette serving {n} concurrent "
             f"requests of the same steps, 5 times, with pyinstrument's ASGI middleware (`profile_dir` set, "
             f"`slow_threshold` above any request: all profiled, none written) or without it. "
             f"Every profiler is a subscription to the process's one "
             f"sampling thread; outside async mode those due together share each tick (each thread read once), "
             f"an async-mode one reads for itself (see docs/architecture.md).", "",
             "| workload | placement | profilers off | profilers on | on / off |", "| --- | --- | --- | --- | --- |"]
    verdicts = []
    for row in result["rows"]:
        placement = "pinned to one core" if row["pinned"] else "spare core"
        lines.append(f"| {row['kind']} | {placement} | {row['off']:.2f} s | {row['on']:.2f} s | **{row['ratio']:.2f}x** |")
        met = "met" if row["ratio"] <= GOAL else "NOT met"
        what = f"concurrent requests through uvicorn + Starlette, middleware on" if row["kind"] == "asgi" \
            else f"profiled {row['kind']}"
        verdicts.append(f"- {n} {what}, {placement}, Python {result['version']}: "
                        f"{row['ratio']:.2f}x (goal <= {GOAL:.2f}x): goal {met}")
    lines.append("")
    return lines, verdicts


def chart(result: Dict[str, Any], path: str) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [f"{r['kind']}\n{'one core' if r['pinned'] else 'spare core'}" for r in result["rows"]]
    ax.bar(labels, [r["ratio"] for r in result["rows"]], color="#4c72b0")
    ax.axhline(GOAL, color="#c44e52", linestyle="--", label=f"goal {GOAL:.2f}x")
    ax.set_ylabel("time, profiled / not")
    ax.set_title(f"{result['n']} profilers at once (Python {result['version']})")
    ax.legend()
    common.save_chart(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    result = dict(version=sys.version.split()[0], n=args.n, repeat=args.repeat,
                  rows=measure_with(args.python, args.n, args.repeat))
    lines, verdicts = report(result)
    print("\n".join(lines + verdicts))


if __name__ == "__main__":
    main()
