"""Sampler cost: what one tick of our engine costs with 1 to 64 threads at depths 10 and 50,
and how many samples it drops while the program churns (threads, generators, recursion,
functions being created and freed).

It also measures what async mode adds to a tick: a profiler started inside an asyncio task
(so it binds to the task) with async_mode "disabled" and "enabled", while the task mostly
waits in a chain of nested coroutines, 4 `asyncio.to_thread` workers wait in the task's
context, and 200 other tasks keep the event loop busy (0 and 16 idle threads sitting in
Contexts of their own) or no other task runs (the loop thread then stays in one Context).

The cost per tick is the engine's own count (`tick_ns_total / ticks` from the sampler's
snapshot): the wall time the sampler thread spends reading every thread's stack, including
time it was preempted. The sampler thread's CPU time per tick (from
/proc/self/task/TID/schedstat) excludes that but includes its sleep and wake-up.

    python bench/sampler_cost.py [--quick] [--python PATH]    (standalone; `make bench` runs it all)
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Tuple

import common

THREADS = (1, 4, 16, 64)
DEPTHS = (10, 50)
CHURNS = {
    "threads": "a thread started every ~0.5 ms, each living 1-3 ms, 5 deep",
    "generators": "generator pipelines created and exhausted continuously",
    "recursion": "recursion rising and falling between 1 and 300 frames",
    "functions": "new functions compiled, called and freed continuously (code objects die)",
}
ASYNC_MODES = ("disabled", "enabled")
# (other tasks, idle threads in a Context of their own): a busy event loop, with 0 and 16 idle
# threads, and an idle one (the profiled thread stays in one Context between ticks)
ASYNC_CONFIGS = ((200, 0), (200, 16), (0, 0))
ASYNC_CONTEXT_THREADS = 4  # asyncio.to_thread workers in the profiled task's context
ASYNC_DEPTH = 10           # coroutines in the profiled task's await chain, below the task's own
SNAPSHOT_COUNTS = ("ticks", "samples", "dropped", "dropped_walk", "dropped_code", "missed_ticks", "tick_ns_total",
                   "syscalls")


# -- child side ---------------------------------------------------------------------------------


def deep(n: int, leaf: Any) -> Any:
    """Adds n - 1 Python frames above `leaf`."""
    return deep(n - 1, leaf) if n > 1 else leaf()


class SamplerWatch:
    """Our profiler (all threads unless told otherwise), plus the CPU time its sampler thread used."""

    def __init__(self, interval: float, all_threads: bool = True, async_mode: str = "enabled"):
        from pyinstrument import Profiler

        self.profiler = Profiler(interval=interval, all_threads=all_threads, async_mode=async_mode)

    def __enter__(self) -> "SamplerWatch":
        before = set(os.listdir("/proc/self/task"))
        self.profiler.start()
        self.sampler_tasks = set(os.listdir("/proc/self/task")) - before
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cpu_ns = 0
        for task in self.sampler_tasks:
            with open(f"/proc/self/task/{task}/schedstat") as f:  # first field: ns on a CPU
                self.cpu_ns += int(f.read().split()[0])
        self.profiler.stop()
        self.counts = {k: self.profiler._engine_counts[k] for k in SNAPSHOT_COUNTS}
        self.counts["cpu_ns"] = self.cpu_ns


def child_ticks(threads: int, depth: int, interval: float, seconds: float) -> Dict[str, Any]:
    """The main thread busy `depth` frames deep; threads - 1 others waiting at the same depth."""
    import threading

    stop = threading.Event()
    ready = threading.Barrier(threads)
    result: Dict[str, Any] = {}

    def waiting_leaf() -> None:
        ready.wait()
        stop.wait()

    def busy_leaf() -> None:
        ready.wait()
        with SamplerWatch(interval) as watch:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        result.update(watch.counts)

    workers = [threading.Thread(target=deep, args=(depth, waiting_leaf)) for _ in range(threads - 1)]
    for w in workers:
        w.start()
    deep(depth, busy_leaf)
    stop.set()
    for w in workers:
        w.join()
    return result


def churn_threads(end: float) -> None:
    import threading

    def short_life() -> None:
        deep(5, lambda: time.sleep(0.001 + (threading.get_ident() % 3) * 0.001))

    live: List[threading.Thread] = []
    while time.perf_counter() < end:
        t = threading.Thread(target=short_life)
        t.start()
        live.append(t)
        time.sleep(0.0005)
        live = [t for t in live if t.is_alive()]
    for t in live:
        t.join()


def churn_generators(end: float) -> None:
    def numbers(n: int) -> Any:
        yield from range(n)

    def squares(source: Any) -> Any:
        for x in source:
            yield x * x

    def evens(source: Any) -> Any:
        return (x for x in source if x % 2 == 0)

    while time.perf_counter() < end:
        sum(evens(squares(numbers(50))))


def churn_recursion(end: float) -> None:
    def down(n: int) -> int:
        return 0 if n == 0 else 1 + down(n - 1)

    depth = 1
    while time.perf_counter() < end:
        down(depth)
        depth = depth % 300 + 7


def churn_functions(end: float) -> None:
    n = 0
    while time.perf_counter() < end:
        namespace: Dict[str, Any] = {}
        exec(f"def made_{n % 1000}(x):\n    return sum(i * x for i in range(200))\n", namespace)
        namespace[f"made_{n % 1000}"](n)
        n += 1


def child_churn(kind: str, interval: float, seconds: float) -> Dict[str, Any]:
    churn = {"threads": churn_threads, "generators": churn_generators, "recursion": churn_recursion,
             "functions": churn_functions}[kind]
    with SamplerWatch(interval) as watch:
        churn(time.perf_counter() + seconds)
    return watch.counts


async def awaiting(n: int, leaf: Any) -> Any:
    """Adds n - 1 coroutines to the await chain above `leaf()`'s."""
    return await (awaiting(n - 1, leaf) if n > 1 else leaf())


def child_async(mode: str, tasks: int, idle_threads: int, interval: float, seconds: float,
                depth: int = ASYNC_DEPTH, context_threads: int = ASYNC_CONTEXT_THREADS) -> Dict[str, Any]:
    """A profiler started inside a task (with async_mode=`mode`, so enabled binds to the task)
    while: the task awaits through `depth` nested coroutines (a 2 ms sleep, then a little
    work), `tasks` other tasks compute a little and `await asyncio.sleep(0)`, `idle_threads`
    threads wait on an Event inside a Context holding 3 variables, and `context_threads`
    asyncio.to_thread workers started by the profiled task wait on an Event (in a copy of its
    context)."""
    import asyncio
    import contextvars
    import threading

    stop_idle = threading.Event()
    variables = [contextvars.ContextVar(f"bench_var_{i}") for i in range(3)]

    def idle() -> None:
        for i, var in enumerate(variables):
            var.set(i)
        stop_idle.wait()

    idlers = [threading.Thread(target=contextvars.Context().run, args=(idle,)) for _ in range(idle_threads)]
    for t in idlers:
        t.start()
    result: Dict[str, Any] = {}

    async def other(i: int, done: asyncio.Event) -> None:
        while not done.is_set():
            sum(range(20 + i % 40))
            await asyncio.sleep(0)

    async def profiled() -> None:
        stop_workers = threading.Event()
        with SamplerWatch(interval, all_threads=False, async_mode=mode) as watch:
            workers = [asyncio.create_task(asyncio.to_thread(stop_workers.wait)) for _ in range(context_threads)]
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                await awaiting(depth, lambda: asyncio.sleep(0.002))
                sum(range(300))
        stop_workers.set()
        await asyncio.gather(*workers)
        result.update(watch.counts)
        # the event loop thread in the report: the share of the profile's duration it holds (a
        # dropped sample's time is missing) and of that, the share the engine put under [await]
        session = watch.profiler.last_session
        # a thread's root frame ends in its kernel tid (its ident where that is unknown)
        keys = ("\x00" + str(threading.get_native_id()), "\x00" + str(threading.get_ident()))
        loop = [(stack, t) for stack, t in session.frame_records
                if not stack or "\x00<thread>\x00" not in stack[0] or stack[0].endswith(keys)]
        recorded = sum(t for _, t in loop)
        result["loop_recorded"] = recorded / session.duration if session.duration else 0.0
        result["await_share"] = sum(t for stack, t in loop if stack and stack[-1] == "[await]") / recorded \
            if recorded else 0.0

    async def main() -> None:
        done = asyncio.Event()
        others = [asyncio.create_task(other(i, done)) for i in range(tasks)]
        await asyncio.sleep(0)
        await asyncio.create_task(profiled())  # a task of its own: the others are outside its context
        done.set()
        await asyncio.gather(*others)

    asyncio.run(main())
    stop_idle.set()
    for t in idlers:
        t.join()
    return result


# -- parent side ----------------------------------------------------------------------------------


def summed(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {k: sum(r[k] for r in runs) for k in runs[0]}


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    repeats, seconds = (1, 0.3) if quick else (3, 1.0)
    common.log(f"  sampler cost on Python {env.version}")
    ticks = []
    for threads in THREADS:
        for depth in DEPTHS:
            runs = [common.run_child(env.ours, "sampler_cost.py", "ticks", threads=threads, depth=depth,
                                     interval=0.001, seconds=seconds) for _ in range(repeats)]
            per_tick = [r["tick_ns_total"] / r["ticks"] / 1000 for r in runs if r["ticks"]]
            cpu_per_tick = [r["cpu_ns"] / r["ticks"] / 1000 for r in runs if r["ticks"]]
            total = summed(runs)
            ticks.append(dict(threads=threads, depth=depth, us=common.spread(per_tick),
                              cpu_us=common.spread(cpu_per_tick)[0], counts=total))
            common.log(f"    {threads:>2} threads x {depth} frames: {ticks[-1]['us'][0]:.1f} µs per tick")
    churn = []
    for kind in CHURNS:
        for interval in (0.001, 0.0001):
            total = summed([common.run_child(env.ours, "sampler_cost.py", "churn", kind=kind, interval=interval,
                                             seconds=seconds) for _ in range(repeats)])
            churn.append(dict(kind=kind, interval=interval, counts=total))
            common.log(f"    churn {kind} @ {interval * 1000:g} ms: {total['dropped']} of "
                       f"{total['samples'] + total['dropped']} dropped")
    return dict(version=env.version, repeats=repeats, seconds=seconds, ticks=ticks, churn=churn,
                **measure_async(env, repeats, 1.0 if quick else 3.0))


def measure_async(env: common.PythonEnv, repeats: int, seconds: float) -> Dict[str, Any]:
    """Every configuration once per round, disabled and enabled side by side, so that a change
    in the machine's load falls on both; the ratio is the median of the rounds' ratios."""
    configs = [(tasks, idle, mode) for tasks, idle in ASYNC_CONFIGS for mode in ASYNC_MODES]
    runs: Dict[Tuple[int, int, str], List[Dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(repeats):
        for tasks, idle, mode in configs:
            runs[(tasks, idle, mode)].append(common.run_child(env.ours, "sampler_cost.py", "async", mode=mode,
                                                              tasks=tasks, idle_threads=idle, interval=0.001,
                                                              seconds=seconds))
    rows = []
    for tasks, idle, mode in configs:
        mine, base = runs[(tasks, idle, mode)], runs[(tasks, idle, ASYNC_MODES[0])]
        per_tick = [r["tick_ns_total"] / r["ticks"] / 1000 for r in mine if r["ticks"]]
        cpu_per_tick = [r["cpu_ns"] / r["ticks"] / 1000 for r in mine if r["ticks"]]
        ratios = [(r["tick_ns_total"] / r["ticks"]) / (b["tick_ns_total"] / b["ticks"])
                  for r, b in zip(mine, base) if r["ticks"] and b["ticks"] and b["tick_ns_total"]]
        rows.append(dict(tasks=tasks, idle_threads=idle, mode=mode, us=common.spread(per_tick),
                         cpu_us=common.spread(cpu_per_tick)[0],
                         ratio=common.spread(ratios)[0] if mode != ASYNC_MODES[0] and ratios else None,
                         loop_recorded=common.spread([r["loop_recorded"] for r in mine])[0],
                         await_share=common.spread([r["await_share"] for r in mine])[0],
                         counts=summed([{k: r[k] for k in SNAPSHOT_COUNTS + ("cpu_ns",)} for r in mine])))
        c = rows[-1]["counts"]
        common.log(f"    async_mode={mode}, {tasks} other tasks, {idle} idle threads: {rows[-1]['us'][0]:.1f} µs "
                   f"per tick, {share(c['dropped'], c['samples'] + c['dropped'])} of samples dropped, "
                   f"{rows[-1]['loop_recorded']:.0%} of the event loop thread's time recorded")
    return dict(async_seconds=seconds, async_runs=rows)


def share(part: int, whole: int) -> str:
    return f"{part / whole:.2%}" if whole else "-"


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    lines = [f"### Sampler cost on Python {result['version']}", "",
             f"Interval 1 ms, `all_threads=True`; the main thread is busy and the others wait, every thread the "
             f"given number of Python frames deep; {result['repeats']} runs of {result['seconds']:g} s each.", "",
             "| threads | depth | µs per tick (median) | IQR | sampler thread CPU µs/tick | samples/tick | "
             "syscalls/tick | missed ticks | dropped |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in result["ticks"]:
        med, q1, q3 = t["us"]
        c = t["counts"]
        ticks = max(1, c["ticks"])
        lines.append(f"| {t['threads']} | {t['depth']} | **{med:.1f}** | {q1:.1f}-{q3:.1f} | {t['cpu_us']:.1f} | "
                     f"{c['samples'] / ticks:.2f} | {c['syscalls'] / ticks:.1f} | "
                     f"{share(c['missed_ticks'], c['ticks'] + c['missed_ticks'])} | "
                     f"{share(c['dropped'], c['samples'] + c['dropped'])} |")
    lines += ["", "Samples dropped while the program churns (a sample is dropped when a stack read torn by "
              "the running program cannot be confirmed after retries; the report counts them):", "",
              "| churn | interval | samples kept | dropped | of which: walk / code identity | missed ticks |",
              "| --- | --- | --- | --- | --- | --- |"]
    for ch in result["churn"]:
        c = ch["counts"]
        lines.append(f"| {ch['kind']}: {CHURNS[ch['kind']]} | {ch['interval'] * 1000:g} ms | {c['samples']} | "
                     f"**{share(c['dropped'], c['samples'] + c['dropped'])}** | {c['dropped_walk']} / "
                     f"{c['dropped_code']} | {share(c['missed_ticks'], c['ticks'] + c['missed_ticks'])} |")
    if result.get("async_runs"):
        lines += ["", f"Async mode: a profiler started inside an asyncio task, interval 1 ms (`enabled` binds to the "
                  f"task; `disabled` records the thread as it runs). The task spends most of its time awaiting a "
                  f"2 ms sleep through {ASYNC_DEPTH} nested coroutines, while the other tasks each compute a little "
                  f"and `await asyncio.sleep(0)`; {ASYNC_CONTEXT_THREADS} `asyncio.to_thread` workers started by "
                  f"the task wait in its context (`enabled` records them too, hence the samples per tick), and the "
                  f"idle threads wait in a Context of their own holding 3 variables. {result['repeats']} runs of "
                  f"{result['async_seconds']:g} s per configuration, the configurations alternating; enabled / "
                  f"disabled is the median of each round's ratio. The last two columns are the event loop "
                  f"thread in the report: its recorded time over the profile's duration (a dropped sample's time is missing) and "
                  f"the share of that under `[await]`.", "",
                  "| other tasks | idle threads in a Context | async_mode | µs per tick (median) | IQR | "
                  "enabled / disabled | sampler thread CPU µs/tick | samples/tick | syscalls/tick | "
                  "missed ticks | dropped | event loop thread recorded | of which [await] |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for a in result["async_runs"]:
            med, q1, q3 = a["us"]
            c = a["counts"]
            ticks = max(1, c["ticks"])
            ratio = f"**{a['ratio']:.2f}x**" if a["ratio"] is not None else "-"
            lines.append(f"| {a['tasks']} | {a['idle_threads']} | {a['mode']} | **{med:.1f}** | {q1:.1f}-{q3:.1f} | "
                         f"{ratio} | {a['cpu_us']:.1f} | {c['samples'] / ticks:.2f} | {c['syscalls'] / ticks:.1f} | "
                         f"{share(c['missed_ticks'], c['ticks'] + c['missed_ticks'])} | "
                         f"{share(c['dropped'], c['samples'] + c['dropped'])} | {a['loop_recorded']:.0%} | "
                         f"{a['await_share']:.0%} |")
    lines.append("")
    return lines, []


def chart(results: List[Dict[str, Any]], path: str) -> None:
    """µs per tick against the number of threads, one line per Python and depth."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for result in results:
        for depth, style in zip(DEPTHS, ("-", "--")):
            points = [(t["threads"], t["us"][0]) for t in result["ticks"] if t["depth"] == depth]
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o",
                    label=f"Python {result['version']}, depth {depth}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(THREADS))
    ax.set_xticklabels([str(t) for t in THREADS])
    ax.set_xlabel("threads")
    ax.set_ylabel("µs per tick (median)")
    ax.set_title("Our sampler's cost per tick")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=7)
    common.save_chart(fig, path)



if __name__ == "__main__":
    common.module_main(__doc__.split("\n\n")[0], {"ticks": child_ticks, "churn": child_churn, "async": child_async},
                       measure, report, lambda result, path: chart([result], path))
