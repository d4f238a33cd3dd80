"""The C engine, judged by the profiles it records of real programs.

Each test runs a small program in a fresh interpreter, profiles it with the public API,
and inspects the recorded session: time shares, names, leaves, threads, lines. Time
shares are checked against what the program itself measured, within a tolerance.
"""

from __future__ import annotations

import functools
import inspect
import json
import platform
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import FREE_THREADED, HARNESS, REFUSE_PROCESS_VM_READV, run_program, time_in

pytestmark = pytest.mark.engine


def test_time_split_between_busy_code_and_sleep():
    result = run_program(
        """
        def compute():
            spin(0.6)

        def wait():
            time.sleep(0.4)

        with Profiler() as p:
            compute()
            wait()
        report(p.last_session)
        """
    )
    stacks, total = result["stacks"], result["duration"]
    assert time_in(stacks, "compute") / total == pytest.approx(0.6, abs=0.08)
    assert time_in(stacks, "wait") / total == pytest.approx(0.4, abs=0.08)
    # the thread sat in time.sleep: the leaf says so
    sleep_leaf = [k for k in stacks if k.endswith("wait > sleep")]
    assert sleep_leaf, stacks
    assert stacks[sleep_leaf[0]] == pytest.approx(0.4, abs=0.05)


def test_leaves_name_blocking_c_calls():
    result = run_program(
        """
        import socket
        lock = threading.Lock()
        lock.acquire()
        a, b = socket.socketpair()

        waited = []

        def blocked_on_lock():
            threading.Timer(0.2, lock.release).start()
            start = time.perf_counter()
            lock.acquire()
            waited.append(time.perf_counter() - start)

        def blocked_on_socket():
            threading.Timer(0.2, lambda: b.send(b"x")).start()
            a.recv(1)

        with Profiler() as p:
            blocked_on_lock()
            blocked_on_socket()
        report(p.last_session, waited=waited[0])
        """
    )
    stacks = result["stacks"]
    # as long as the program measured (a busy machine may fire the Timer late), and named as
    # upstream names them: the method with the type of the object it belongs to
    assert time_in(stacks, "lock.acquire") == pytest.approx(result["waited"], rel=0.2), stacks
    assert any(k.endswith("blocked_on_socket > socket.recv") for k in stacks), stacks


def test_default_reports_only_the_starting_thread_and_all_threads_reports_each():
    body = """
        def in_alpha():
            spin(0.3)

        with Profiler(all_threads=ALL) as p:
            t = threading.Thread(target=in_alpha, name="alpha")
            t.start()
            t.join()
        report(p.last_session)
        """
    only_main = run_program("ALL = False\n" + textwrap.dedent(body))
    assert time_in(only_main["stacks"], "in_alpha") == 0
    assert time_in(only_main["stacks"], "Thread.join") > 0.2

    every = run_program("ALL = True\n" + textwrap.dedent(body))
    alpha = [k for k in every["stacks"] if k.startswith("alpha > ") and "in_alpha" in k]
    assert alpha, every["stacks"]
    assert sum(every["stacks"][k] for k in alpha) == pytest.approx(0.3, abs=0.06)
    assert any(k.startswith("MainThread > ") for k in every["stacks"])


def test_line_of_the_running_statement_is_recorded():
    result = run_program(
        """
        def hot():
            end = time.perf_counter() + 0.3
            x = 0
            while time.perf_counter() < end:
                x += 1  # HOT
            return x

        hot_line = hot.__code__.co_firstlineno + 4
        with Profiler() as p:
            hot()
        report(p.last_session, hot_line=hot_line)
        """
    )
    lines = {}
    for stack, seconds in result["records"]:
        for frame in stack:
            if frame.startswith("hot\x00"):
                line = [a[1:] for a in frame.split("\x01")[1:] if a.startswith("l")]
                lines[int(line[0])] = lines.get(int(line[0]), 0) + seconds
    # the loop spans the while line and the += line; both are real lines of hot()
    assert set(lines) <= {result["hot_line"] - 1, result["hot_line"]}, lines
    assert sum(lines.values()) > 0.25


def test_deep_recursion_is_recorded_whole():
    result = run_program(
        """
        sys.setrecursionlimit(20000)
        def down(n):
            if n == 0:
                end = time.perf_counter() + 0.2
                while time.perf_counter() < end:
                    pass
                return
            down(n - 1)

        with Profiler() as p:
            down(3000)
        depth = max(sum(1 for f in stack if f.startswith("down\\x00")) for stack, _ in p.last_session.frame_records)
        report(p.last_session, depth=depth)
        """
    )
    assert result["depth"] == 3001
    assert result["dropped"] <= result["samples"] * 0.05


#: threads started and joined 20 at a time, each busy for 2 ms, sampled every 0.2 ms
THREAD_CHURN = """
    def short_lived(i):
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass

    with Profiler(all_threads=True, interval=0.0002) as p:
        for round in range(20):
            threads = [threading.Thread(target=short_lived, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    report(p.last_session, counts=p._engine_counts, causes=p.last_session.dropped_by_cause)
"""


def test_thread_churn_does_not_crash_or_misname():
    result = run_program(THREAD_CHURN)
    stacks = result["stacks"]
    assert time_in(stacks, "short_lived") > 0
    for key in stacks:
        frames = key.split(" > ")[1:]  # after the thread's root
        if "short_lived" in frames:
            # (a call that ended while being read is honestly unknown; the thread may be
            # waiting for the GIL there)
            assert frames[-1] in ("short_lived", "perf_counter", "[unknown C call]", "[GIL wait]"), key


def test_each_walk_that_fails_is_counted_under_the_check_that_failed():
    # threads starting and ending while read make walks fail; each failure is counted
    # once, under the check of the walk that caught it, and the session's dropped samples
    # say which
    result = run_program(THREAD_CHURN)
    counts, causes = result["counts"], result["causes"]
    walk_causes = ("moved", "torn", "unparsable", "loop", "end", "setup", "deep", "memory")
    for kind in ("walk_failed", "walk_retried"):
        assert {f"{kind}_{cause}" for cause in walk_causes} <= set(counts)
    failed = sum(counts[f"walk_failed_{cause}"] for cause in walk_causes)
    assert failed == counts["dropped_walk"]
    assert sum(causes.get(cause, 0) for cause in walk_causes) == failed
    assert "changed" not in causes  # the engine always says which check failed
    assert sum(causes.values()) <= result["dropped"]


def test_code_objects_created_and_dropped_are_not_confused():
    # each generated function lives in its own file name; a sample must never pair one
    # function's name with another's file (code addresses are reused after free)
    result = run_program(
        """
        import gc
        def make(i):
            src = f"def f_{i}():\\n    end = __import__('time').perf_counter() + 0.003\\n" \\
                  f"    while __import__('time').perf_counter() < end:\\n        pass\\n"
            ns = {}
            exec(compile(src, f"gen_{i}.py", "exec"), ns)
            return ns[f"f_{i}"]

        with Profiler(interval=0.0002) as p:
            for i in range(300):
                make(i)()
                gc.collect(0)
        pairs = []
        for stack, seconds in p.last_session.frame_records:
            for frame in stack:
                name, file = frame.split("\\x00")[:2]
                if name.startswith("f_"):
                    pairs.append((name, file))
        report(p.last_session, pairs=pairs)
        """
    )
    assert len(result["pairs"]) > 50
    for name, file in result["pairs"]:
        assert file == f"gen_{name[2:]}.py", (name, file)


def test_fork_while_profiling_leaves_both_processes_working():
    result = run_program(
        """
        with Profiler() as p:
            spin(0.1)
            pid = os.fork()
            if pid == 0:
                spin(0.1)
                os._exit(7)
            _, status = os.waitpid(pid, 0)
            spin(0.1)
        report(p.last_session, child_exit=os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
        """
    )
    assert result["child_exit"] == 7
    assert time_in(result["stacks"], "spin") > 0.15


def test_one_sampling_thread_serves_every_profiler():
    # 10 overlapping profilers at different intervals: one sampling thread for them all,
    # made at the first start and kept after the last stop; each profiler gets its own
    # samples of its own span at its own interval
    result = run_program(
        """
        def threads():
            return len(os.listdir("/proc/self/task"))

        before = threads()
        profilers = []
        for n in range(10):
            p = Profiler(interval=0.001 if n % 2 else 0.004, async_mode="disabled")
            p.start()
            profilers.append(p)
            spin(0.02)
        during = threads()
        sessions = [p.stop() for p in reversed(profilers)][::-1]
        after = threads()
        again = Profiler()
        again.start()
        spin(0.05)
        again_during = threads()
        again.stop()
        report(sessions[0], before=before, during=during, after=after, again_during=again_during,
               durations=[s.duration for s in sessions], samples=[s.sample_count for s in sessions],
               spins=[sum(t for key, t in flatten(s).items() if key.startswith("<module> > spin")) for s in sessions])
        """
    )
    assert result["during"] == result["before"] + 1
    assert result["after"] == result["during"] and result["again_during"] == result["during"]
    for n, (duration, samples, spun) in enumerate(zip(result["durations"], result["samples"], result["spins"])):
        spans = 10 - n  # the spins this profiler saw (it started before the n-th)
        assert duration >= spans * 0.02, (n, duration)
        # the sampling thread spends at most half a core: on a busy machine ticks thin out
        assert samples >= 0.25 * duration / (0.001 if n % 2 else 0.004), (n, samples, duration)
        assert spun >= 0.7 * spans * 0.02, (n, spun)
    rates = [samples / duration for duration, samples in zip(result["durations"], result["samples"])]
    fast, slow = sum(rates[1::2]) / 5, sum(rates[0::2]) / 5
    assert fast >= 1.5 * slow, (fast, slow)  # each at its own interval


def test_profilers_sharing_ticks_each_get_their_own_threads():
    # profilers due together share one read of each thread (pi_tick_group): each must
    # still get only the threads it samples, under the right names, with its own times
    result = run_program(
        """
        def work_a(): spin(0.3)
        def work_b(): spin(0.3)
        def work_c(): spin(0.3)
        sessions = {}
        ready = threading.Barrier(4)

        def run(work):
            ready.wait()
            with Profiler(async_mode="disabled") as p:
                work()
            sessions[work.__name__] = p.last_session

        threads = [threading.Thread(target=run, args=(w,)) for w in (work_a, work_b, work_c)]
        everything = Profiler(all_threads=True, async_mode="disabled")
        everything.start()
        for t in threads:
            t.start()
        ready.wait()
        for t in threads:
            t.join()
        everything.stop()
        out = {name: flatten(s) for name, s in sessions.items()}
        out["all"] = flatten(everything.last_session)
        out["cpu"] = {name: s.cpu_time for name, s in sessions.items()}
        print(json.dumps(out))
        """
    )
    for name in ("work_a", "work_b", "work_c"):
        stacks = result[name]
        mine = sum(t for key, t in stacks.items() if name in key.split(" > "))
        others = [key for key in stacks if any(w in key.split(" > ") for w in {"work_a", "work_b", "work_c"} - {name})]
        assert not others, (name, others)
        assert mine >= 0.2, (name, stacks)  # three spinning threads share two cores and the GIL
    everything = result["all"]
    for name in ("work_a", "work_b", "work_c"):
        assert sum(t for key, t in everything.items() if name in key.split(" > ")) >= 0.2, everything


def test_a_thread_left_unread_while_blocked_is_seen_where_it_goes_next():
    # A thread that has not held the GIL since its stack was copied keeps that stack with
    # no read (stack_unmoved). The moment it moves on, the samples must follow it: here
    # a worker blocks on an Event while the main thread computes, then computes itself,
    # then sleeps in another function; each phase must get its time.
    result = run_program(
        """
        go = threading.Event()

        def blocked(): go.wait()
        def computing(): spin(0.3)
        def napping(): time.sleep(0.3)

        def worker():
            blocked()
            computing()
            napping()

        with Profiler(all_threads=True, async_mode="disabled") as p:
            t = threading.Thread(target=worker)
            t.start()
            spin(0.3)
            go.set()
            t.join()
        stacks = {k: v for k, v in flatten(p.last_session).items() if "worker" in k.split(" > ")}
        print(json.dumps(stacks))
        """
    )
    # the worker shares the GIL with the main thread while both compute: lower bounds
    assert time_in(result, "blocked") >= 0.2, result
    assert time_in(result, "computing") >= 0.2, result
    assert time_in(result, "napping") >= 0.2, result
    for name in ("computing", "napping"):
        wrong = [key for key in result if name in key.split(" > ") and "blocked" in key.split(" > ")]
        assert not wrong, result


def test_the_python_sampler_also_runs_one_thread_for_all():
    result = run_program(
        """
        from pyinstrument._python_sampler import PythonSampler

        samplers = [PythonSampler(0.001, threading.get_ident()) for _ in range(5)]
        for sampler in samplers:
            sampler.start()
        time.sleep(0.1)  # the GIL left free: a spinning thread would hand it over every 5 ms
        sampling = [t.name for t in threading.enumerate() if t.name == "pyinstrument-sampler"]
        for sampler in samplers:
            sampler.stop()
        report_counts = [sampler.snapshot()["samples"] for sampler in samplers]
        print(json.dumps({"sampling_threads": len(sampling), "samples": report_counts}))
        """
    )
    assert result["sampling_threads"] == 1
    assert all(count >= 30 for count in result["samples"]), result["samples"]  # 100 ticks, a busy machine loses some


def test_engine_refuses_bad_intervals():
    from pyinstrument import Profiler

    with pytest.raises(ValueError):
        Profiler(interval=0)
    with pytest.raises(ValueError):
        Profiler(interval=-1)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp filter is written for x86_64")
def test_a_sandbox_refusing_process_vm_readv_still_gets_a_profile():
    result = run_program(
        REFUSE_PROCESS_VM_READV
        + """
def compute():
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass

def wait():
    time.sleep(0.2)

with Profiler() as p:
    compute()
    wait()
report(p.last_session)
"""
    )
    stacks, total = result["stacks"], result["duration"]
    assert time_in(stacks, "compute") / total == pytest.approx(0.6, abs=0.1)
    assert any(k.endswith("wait > sleep") for k in stacks), stacks


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp filter is written for x86_64")
def test_the_fallback_never_touches_objects_a_call_just_freed():
    # the Python sampler takes the GIL from a thread that may stand just after a call,
    # its value stack still holding the callable and arguments it freed: taking those
    # for live objects corrupted the heap (seen as a dying sampler thread on 3.13)
    code = HARNESS + REFUSE_PROCESS_VM_READV + textwrap.dedent(
        """
        import select

        class Shuffled(list):
            pass

        def churn():
            end = time.perf_counter() + 1.0
            while time.perf_counter() < end:
                Shuffled([3, 1, 2]).sort()
                "-".join([str(n) for n in range(3)])

        def wait():
            poller = select.epoll()
            poller.poll(0.2)
            poller.close()

        with Profiler(interval=0.0002) as p:
            churn()
            wait()
        report(p.last_session)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # the fallback's announcement only
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dropped"] == 0
    assert any(key.endswith("wait > epoll.poll") for key in result["stacks"]), result["stacks"]


def test_the_fallback_is_announced_in_one_line():
    code = HARNESS + REFUSE_PROCESS_VM_READV + "\nwith Profiler() as p:\n    time.sleep(0.05)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "process_vm_readv" in lines[0] and "Python thread" in lines[0]


def test_a_stack_of_one_frame_is_recorded():
    # module-level code under `python -c` has no frame above it
    result = run_program(
        """
        p = Profiler()
        p.start()
        time.sleep(0.2)
        p.stop()
        report(p.last_session)
        """
    )
    # (right after start() every code object is seen for the first time, so a stack is
    # walked again to confirm it; on a loaded machine that confirmation fails now and then
    # and the sample is dropped as "code unconfirmed": 1-2 in 40 runs of this program with
    # two busy loops beside it. A one-frame stack that could not be read would lose all ~200)
    assert result["dropped"] <= 2, result
    assert result["stacks"].get("<module> > sleep", 0) == pytest.approx(0.2, abs=0.05), result["stacks"]


def test_generators_finishing_mid_read_never_cut_a_stack_short():
    # generators start and stop thousands of times a second here; a generator frame read
    # just after it finished must not pass for the bottom of the stack
    result = run_program(
        """
        def primes(limit):
            return sum(1 for n in range(2, limit) if all(n % d for d in range(2, int(n ** 0.5) + 1)))

        with Profiler(interval=0.0002) as p:
            primes(150000)
        report(p.last_session)
        """
    )
    roots = {key.split(" > ")[0] for key in result["stacks"]}
    assert roots == {"<module>"}, roots


def test_calls_to_python_functions_are_never_shown_as_c_functions():
    # a thread caught setting up a call to a Python function stands on the call too
    result = run_program(
        """
        def tiny(x):
            return x

        def loop():
            end = time.perf_counter() + 0.5
            while time.perf_counter() < end:
                tiny(1); tiny(2); tiny(3); tiny(4)

        with Profiler(interval=0.0002) as p:
            loop()
        report(p.last_session)
        """
    )
    frames = {frame for stack, _ in result["records"] for frame in stack}
    assert any(f.startswith("tiny\x00") for f in frames)
    assert not any(f.startswith("tiny\x00<built-in>") for f in frames)


def test_each_threads_timeline_runs_on_the_sessions_clock():
    """A thread started late begins its timeline with time without samples, so every
    thread's entries add up to the time since the profiler started."""
    from pyinstrument import Profiler
    from pyinstrument.renderers.stacks import SampleStacks

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    late = threading.Thread(target=spin, args=(0.1,), name="late")
    profiler = Profiler(all_threads=True)
    profiler.start()
    spin(0.2)
    late.start()
    late.join()
    session = profiler.stop()

    stacks = SampleStacks(session)
    clocks = [0.0] * len(stacks.threads)
    first_sample_at = [None] * len(stacks.threads)
    for record, seconds in stacks.chronological():
        thread = stacks.thread_of[record]
        if stacks.stacks[record] and first_sample_at[thread] is None:
            first_sample_at[thread] = clocks[thread]
        clocks[thread] += seconds
    main, late_thread = stacks.threads.index("MainThread"), stacks.threads.index("late")
    assert first_sample_at[late_thread] >= 0.19  # it did not exist before the main thread's 0.2 s
    assert clocks[late_thread] <= clocks[main] + 0.002
    assert clocks[main] == pytest.approx(session.duration, abs=0.02)
    # the time without samples changes neither tree nor totals
    assert session.root_frame().time == pytest.approx(sum(t for _, t in session.frame_records))


def stacks_by_thread(snapshot: dict) -> dict:
    """{thread ident: [(function names root first, samples)]} of a sampler's snapshot."""
    from pyinstrument.profiler import ENGINE_NODE

    identities = snapshot["identities"]
    nodes = list(ENGINE_NODE.iter_unpack(snapshot["nodes"]))
    idents = [ident for ident, *_ in snapshot["threads"]]

    def path(index: int) -> list:
        names = []
        while index < len(nodes) and nodes[index][1] < len(identities):
            names.append(identities[nodes[index][1]][0])
            index = nodes[index][0]
        return names[::-1]

    result: dict = {}
    for index, (parent, identity, line, thread, wall, cpu, samples) in enumerate(nodes):
        if samples:
            result.setdefault(idents[thread], []).append((path(index), samples))
    return result


def park(target) -> threading.Thread:
    """A thread running `target` until it stands in Condition.wait's acquire of its
    waiter lock, where it stays: a known point for a tick to read."""
    import inspect

    source, first = inspect.getsourcelines(threading.Condition.wait)
    # the last `waiter.acquire()` blocks (the first one locks the new waiter)
    acquire_line = first + max(i for i, text in enumerate(source) if "waiter.acquire()" in text)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        if frame is not None and frame.f_code is threading.Condition.wait.__code__ and frame.f_lineno == acquire_line:
            return thread
        time.sleep(0.001)
    raise AssertionError("the thread never got to its wait")


def test_a_tick_reads_a_parked_thread_exactly():
    # the synchronous test hook: two ticks from this thread (the first starts the clock)
    # while a thread stands where we parked it; its one sample is its exact stack
    from pyinstrument import _engine

    go = threading.Event()

    def parked_here():
        go.wait()

    thread = park(parked_here)
    try:
        sampler = _engine.Sampler(0.001, 0)
        sampler._tick()
        sampler._tick()
        snapshot = sampler.snapshot()
    finally:
        go.set()
        thread.join()
    assert snapshot["ticks"] == 2 and snapshot["dropped"] == 0, snapshot
    (names, samples), = stacks_by_thread(snapshot)[thread.ident]
    assert samples == 1
    # each frame's code object names it (qualified from 3.11 on), the C leaf its callable
    codes = [f.__code__ for f in (parked_here, threading.Event.wait, threading.Condition.wait)]
    assert names[-4:] == [getattr(c, "co_qualname", c.co_name) for c in codes] + ["lock.acquire"], names


def parked_session(thread: threading.Thread):
    """The session of two ticks of a sampler over every thread (the first tick starts the
    clock) while ``thread`` stands where it was parked; returns ``thread``'s records as
    lists of frames (root first, below its thread root) and their samples."""
    from pyinstrument import _engine
    from pyinstrument.frame_table import FrameKind
    from pyinstrument.profiler import session_from_snapshot

    sampler = _engine.Sampler(0.001, 0)
    sampler._tick()
    sampler._tick()
    snapshot = sampler.snapshot()
    session = session_from_snapshot(
        snapshot, all_threads=True, thread_names={}, start_time=0.0, duration=0.001, interval=0.001, cpu_time=0.0,
        start_call_stack=[], target_description="parked",
    )
    table = session.frame_table
    keys = {thread.ident, getattr(thread, "native_id", None)}
    records = []
    for node, seconds in zip(table.record_node, table.record_seconds):
        stack = table.stack(node)
        if seconds and stack and stack[0].kind == FrameKind.THREAD and stack[0].first_line in keys:
            records.append(stack[1:])
    return records, snapshot


class Kettle:
    def boil(self, go):
        go.wait()  # PARKED


def traced(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)

    return wrapper


@traced
def wrapped_wait(go):
    go.wait()


def down(n, go):
    if n == 0:
        go.wait()
        return
    down(n - 1, go)


def _parked_stack(target) -> list:
    go = threading.Event()
    thread = park(lambda: target(go))
    try:
        records, snapshot = parked_session(thread)
    finally:
        go.set()
        thread.join()
    assert snapshot["dropped"] == 0, snapshot
    (stack,) = records  # one tick, one sample: its exact stack
    return stack


WAIT_LEAF = ["Event.wait", "Condition.wait", "lock.acquire"]


def test_a_method_is_named_with_its_class_and_the_line_it_runs():
    stack = _parked_stack(lambda go: Kettle().boil(go))
    assert [f.function for f in stack[-4:]] == ["Kettle.boil"] + WAIT_LEAF
    boil = stack[-4]
    source, first = inspect.getsourcelines(Kettle.boil)
    assert boil.file == __file__ and boil.first_line == first
    assert boil.line == first + next(i for i, text in enumerate(source) if "# PARKED" in text)


def test_a_wrapper_made_with_functools_wraps_keeps_its_own_name_exactly():
    # wraps copies the wrapped function's __qualname__ onto the wrapper; 3.9/3.10 name
    # frames after the qualified names of live functions, which must not rename it
    stack = _parked_stack(wrapped_wait)
    assert [f.function for f in stack[-5:]] == ["traced.<locals>.wrapper", "wrapped_wait"] + WAIT_LEAF


def test_deep_recursion_is_recorded_whole_exactly():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))
    try:
        stack = _parked_stack(lambda go: down(3000, go))
    finally:
        sys.setrecursionlimit(limit)
    assert sum(1 for f in stack if f.function == "down") == 3001
    assert [f.function for f in stack[-3:]] == WAIT_LEAF


def test_the_tick_hook_refuses_a_running_sampler():
    from pyinstrument import _engine

    sampler = _engine.Sampler(0.001, 0)
    sampler.start()
    try:
        with pytest.raises(RuntimeError, match="not running"):
            sampler._tick()
    finally:
        sampler.stop()


def test_the_layout_table_agrees_with_this_interpreters_headers():
    # another version's process is read with engine/layouts_table.h: its entry for this
    # version must be what the engine computes from the headers it was compiled against
    # (after changing engine/layout_compiled.h, run tools/gen_layouts.py)
    from pyinstrument import _engine

    if FREE_THREADED:
        pytest.skip("the table holds the GIL builds' layouts: a free-threaded build reads only its own")
    assert _engine._layout_table_differences() == []


def test_the_opcode_table_agrees_with_this_interpreters_stack_effects():
    # the bytecode analysis (which call a thread is in) reads each version's stack effects
    # from engine/opcodes_table.h: they must be the interpreter's own (dis.stack_effect)
    import dis
    import opcode

    from pyinstrument import _engine

    checked = 0
    for name, op in opcode.opmap.items():
        if op >= getattr(opcode, "MIN_INSTRUMENTED_OPCODE", 256) or name in getattr(opcode, "_specialized_opmap", {}):
            continue
        for arg in (0, 1, 2, 3, 4, 7, 8, 255, 256, 257, 1000, 65535, 70000):
            for jump in (False, True):
                try:
                    expected = dis.stack_effect(op, arg if op >= dis.HAVE_ARGUMENT else None, jump=jump)
                except ValueError:  # no effect for this oparg (or no such opcode here)
                    continue
                ours = _engine._opcode_stack_effect(op, arg if op >= dis.HAVE_ARGUMENT else 0, jump)
                if name == "RETURN_GENERATOR" and (3, 11) <= sys.version_info < (3, 13):
                    expected += 1  # counted by the analysis as the generator's first value
                assert ours == expected, (name, arg, jump)
                checked += 1
    assert checked > 1000
