"""A report you can trust: the cases of issue 13 that are not about naming C leaves.

Each test runs a short real program in a fresh interpreter (test_engine's harness) and
checks what a user would read in the report: every thread that ran, the time of the last
moments before stop(), nothing printed that plain Python would not print.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from helpers import (
    FREE_THREADED,
    HARNESS,
    UNDER_SANITIZERS,
    run_program,
    share_beside_concurrent_reader,
    time_in,
)

pytestmark = pytest.mark.engine


def test_stop_returns_at_once_and_counts_the_last_partial_interval():
    # a 5 s interval: no tick falls inside the 0.3 s of work, the one at stop() must count it
    result = run_program(
        """
        def main():
            p = Profiler(interval=5)
            p.start()
            spin(0.3)
            before = time.perf_counter()
            session = p.stop()
            return session, time.perf_counter() - before

        session, stop_took = main()
        report(session, stop_took=stop_took)
        """
    )
    assert result["stop_took"] < 2.5  # the next tick would have come 4.7 s later
    assert 0.3 <= result["duration"] < 4.0
    # the partial interval is credited to the code that called stop(), at its real length
    assert time_in(result["stacks"], "main") >= 0.3
    assert not any("stop" in key.split(" > ") for key in result["stacks"])


def test_fork_prints_nothing_plain_python_would_not_and_both_processes_go_on():
    program = HARNESS + textwrap.dedent(
        """
        with Profiler() as p:
            spin(0.1)
            pid = os.fork()
            if pid == 0:
                spin(0.1)
                print("child done", flush=True)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            spin(0.2)
        assert os.waitstatus_to_exitcode(status) == 0 if hasattr(os, "waitstatus_to_exitcode") else status == 0
        print(p.output_text())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", program], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # CPython 3.12+ warns when a process with threads forks
    assert "child done" in proc.stdout
    assert "spin" in proc.stdout  # the parent's profile goes on after the fork


def test_threads_reusing_an_ident_each_get_their_own_subtree_and_name():
    result = run_program(
        """
        idents = set()
        with Profiler(all_threads=True) as p:
            for i in range(6):
                thread = threading.Thread(target=spin, args=(0.2,), name=f"worker-{i}")
                thread.start()
                idents.add(thread.ident)
                thread.join()
        report(p.last_session, distinct_idents=len(idents))
        """
    )
    per_thread: dict = {}
    for key, seconds in result["stacks"].items():
        names = key.split(" > ")
        if "spin" in names:
            per_thread[names[0]] = per_thread.get(names[0], 0.0) + seconds
    assert sorted(per_thread) == [f"worker-{i}" for i in range(6)], (result["distinct_idents"], per_thread)
    for name, seconds in per_thread.items():
        assert seconds >= 0.1, (name, per_thread)


def test_qualified_names_without_walking_the_heap():
    # 3.9/3.10 code objects have no qualified name: stop() finds them without gc.get_objects()
    result = run_program(
        """
        import functools, gc

        def logged(function):
            def wrapper(*args):
                return function(*args)
            return wrapper

        class Shop:
            def method(self):
                spin(0.1)

            @staticmethod
            def static():
                spin(0.1)

            @property
            def total(self):
                spin(0.1)
                return 0

            @logged
            def decorated(self):
                spin(0.1)

            class Inner:
                def deep(self):
                    spin(0.1)

        def outer():
            def inner():
                spin(0.1)
            inner()

        def heap_walk(*args, **kwargs):
            raise AssertionError("stop() walked the whole heap")

        with Profiler() as p:
            shop = Shop()
            shop.method(); Shop.static(); shop.total; shop.decorated(); Shop.Inner().deep(); outer()
            gc.get_objects = heap_walk
        report(p.last_session)
        """
    )
    names = {name for key in result["stacks"] for name in key.split(" > ")}
    expected = {"Shop.method", "Shop.static", "Shop.total", "Shop.decorated", "Shop.Inner.deep", "outer.<locals>.inner"}
    assert expected <= names, sorted(names)


#: a loop calling short Python functions from C: a sort key, map's and reduce's callbacks
CALLBACKS_FROM_C = textwrap.dedent(
    """
    import functools

    def key(x):
        return -x

    def add(a, b):
        return a + b

    def churn(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sorted(range(50), key=key)
            list(map(key, range(50)))
            functools.reduce(add, range(50))
    """
)


def test_no_interpreter_plumbing_in_the_report():
    # every call from C back into Python (key functions, map, reduce) pushes an entry frame
    # (3.12+: a shim whose code is the interpreter's trampoline): never shown as a frame
    result = run_program(
        CALLBACKS_FROM_C
        + textwrap.dedent(
            """
        with Profiler(interval=0.0001) as p:
            churn(1.0)
        report(p.last_session)
        """
        )
    )
    files = {frame.split("\x00")[1] for stack, _ in result["records"] for frame in stack if "\x00" in frame}
    names = {name for key in result["stacks"] for name in key.split(" > ")}
    assert "<shim>" not in files and not any(name.startswith("<interpreter") for name in names), names
    assert time_in(result["stacks"], "key") > 0  # the calls back into Python were sampled (their share: below)


@pytest.mark.xfail(
    sys.version_info[:2] < (3, 11),
    reason="known bias, not fixed on 3.9/3.10: short callbacks are credited to their C caller; measured "
    "here key 2-3% (docs/architecture.md, 'Short callbacks from C')",
    strict=False,
)
def test_short_callbacks_from_c_get_their_share():
    # Python functions called from C for ~50 ns each (a sort key, map's and reduce's
    # callbacks) are current ~25% of this loop's time (py-spy, which stops the process to
    # read it: key 16-19%, add 7-9% on 3.11-3.13). A sampler that reads the thread state
    # at one moment and the frames a microsecond later finds the callback gone and credits
    # its time to the C caller. The sampler thread is kept off the profiled thread's core,
    # where it would run between the profiled thread's instructions rather than beside them.
    ours, limit = share_beside_concurrent_reader(CALLBACKS_FROM_C, "churn(1.5)", "key", 0.0001, 1)
    # What a reader that does not stop the thread can see of the callbacks depends on the
    # machine: py-spy --nonblocking sees key 2.7% on 3.12 on one (ours 1.4-3.6% there, 8-15% on
    # 3.11 and 3.13-3.15), where an engine that credits callbacks to their caller shows 2-3%
    # (3.9/3.10). The bound: half of what it sees of this process meanwhile, less a point.
    assert ours > limit / 2 - 0.01, (ours, limit)


BUSY_WAIT_LOOP = """
def do_nothing():
    pass

def busy_wait(duration):
    end = time.time() + duration
    while time.time() < end:
        do_nothing()
"""
BUSY_WAIT = BUSY_WAIT_LOOP + """
with Profiler(interval=0.0005) as p:
    busy_wait(2.0)
report(p.last_session)
"""


@pytest.mark.xfail(
    sys.version_info[:2] < (3, 11),
    reason="known bias, not fixed on 3.9/3.10: a short call's frame object has mostly returned when read, "
    "and walking again samples a later moment; measured here do_nothing 0.1-1.5% (docs/architecture.md, "
    "'Short Python calls')",
    strict=False,
)
@pytest.mark.xfail(
    sys.version_info[:2] >= (3, 14),
    reason="known bias, not fixed on 3.14/3.15: a call into Python is often named [unknown C call] (here 2-4% "
    "of the loop on 3.14, 4.5-8% on 3.15, against ~1% on 3.13), taken from do_nothing: 2.8-4.9% measured, "
    "1.1% once on a loaded CI preview",
    strict=False,
)
def test_short_python_calls_get_their_share():
    # Upstream's busy-wait loop: do_nothing runs ~4-6% of it (py-spy, which stops the
    # process to read it: 3.5-5.9% on 3.9-3.13). A call this short (a few ns) is seen less
    # often by any reader that does not stop the thread, by how much depending on the
    # machine and the process: on 3.13, plain loads of the current frame from another thread
    # see it 2.5-2.9% of the time on one machine, py-spy --nonblocking 0.05-0.3% on another
    # (docs/architecture.md, 'Short Python calls'). The bound: a third of what py-spy
    # --nonblocking sees of this process meanwhile, less a fifth of a point (beside a busy
    # process, ours 1.76% where it saw 4.35%); an engine that loses short calls shows
    # 0.1-0.9% where that limit is 2.5%.
    ours, limit = share_beside_concurrent_reader(BUSY_WAIT_LOOP, "busy_wait(2.6)", "do_nothing", 0.0005, 2)
    assert ours > limit / 3 - 0.002, (ours, limit)


@pytest.mark.skipif(
    sys.version_info[:2] < (3, 11), reason="3.9/3.10 often read a call's slots apart from its frame: unknown is honest"
)
def test_a_thread_on_a_call_into_python_is_in_no_c_call():
    # A thread caught on the call into do_nothing (setting it up, or just back from it with
    # its None in the callable's slot) was shown in an "[unknown C call]": 4-16% of this
    # loop's samples on 3.11-3.13. A call into a Python function is no C call.
    result = run_program(BUSY_WAIT)
    total = sum(result["stacks"].values())
    call_line = (HARNESS + textwrap.dedent(BUSY_WAIT)).splitlines().index("        do_nothing()") + 1
    unknown = sum(
        seconds
        for stack, seconds in result["records"]
        if len(stack) >= 2
        and stack[-1].startswith("[unknown C call]\x00")
        and stack[-2].startswith("busy_wait\x00<string>\x00")
        and stack[-2].endswith(f"\x01l{call_line}")
    )
    assert unknown / total < 0.02, unknown / total


def test_stacks_deeper_than_the_engine_keeps_lose_no_time():
    # 12,000 frames: more than the 8,192 a sample keeps; the middle gives way to a marker
    result = run_program(
        """
        sys.setrecursionlimit(30000)

        def down(n):
            if n == 0:
                spin(0.5)
            else:
                down(n - 1)

        with Profiler() as p:
            started = time.perf_counter()
            down(12000)
            elapsed = time.perf_counter() - started
        session = p.last_session
        markers = {f for stack, _ in session.frame_records for f in stack if f.endswith("frames truncated]")}
        depth = max(len(stack) for stack, _ in session.frame_records)
        report(session, markers=sorted(markers), truncated=session.truncated_samples, depth=depth, elapsed=elapsed,
               header=p.output_text().split("Profile at")[0].splitlines())
        """
    )
    assert result["dropped"] <= result["samples"] * 0.05 + 1
    if not result["dropped"]:  # a dropped sample's time is counted as dropped, not lost
        # (against the program's own clock: stop() also waits for its last, slow, tick)
        assert sum(result["stacks"].values()) >= 0.9 * result["elapsed"]
    # the innermost frames are kept: the leaf is there (deep walks are slow on 3.9/3.10, so
    # the last tick's time, credited to stop()'s caller, can be a large part of the run)
    assert time_in(result["stacks"], "spin") > 0
    assert result["truncated"] >= 1 and any("Truncated:" in line for line in result["header"])
    # outermost + marker + innermost: 8,192 frames, the marker counting the ones left out
    assert result["depth"] <= 8192
    counts = {int(marker.strip("[").split()[0]) for marker in result["markers"]}
    assert counts and all(0 < count <= 12003 - 8000 for count in counts), result["markers"]



def test_code_objects_freed_and_reused_never_credit_a_sample_to_another_function():
    # each round makes an outer/inner pair of new functions, runs them for a millisecond
    # and drops them: their code objects die and the next pair's take their addresses.
    # Every sample must pair outer_k with its own inner_k.
    result = run_program(
        """
        import gc

        def make(i):
            src = (f"def inner_{i:04}(end):\\n    while time.perf_counter() < end:\\n        pass\\n"
                   f"def outer_{i:04}():\\n    inner_{i:04}(time.perf_counter() + 0.001)\\n")
            ns = {"time": time}
            exec(compile(src, "generated.py", "exec"), ns)
            return ns[f"outer_{i:04}"]

        with Profiler(interval=0.0001) as p:
            for i in range(1500):
                make(i)()
                gc.collect(0)
        report(p.last_session)
        """
    )
    pairs = {}
    for key, seconds in result["stacks"].items():
        names = key.split(" > ")
        outer = [name[6:] for name in names if name.startswith("outer_")]
        inner = [name[6:] for name in names if name.startswith("inner_")]
        if outer and inner:
            pairs[key] = (outer[0], inner[0])
    assert len(pairs) > 200, result["stacks"]
    assert not [key for key, (outer, inner) in pairs.items() if outer != inner]


def test_a_class_instantiated_in_a_loop_keeps_its_samples():
    # 3.13+ runs a class's __init__ under an interpreter shim frame between the caller
    # and __init__: that is no torn call, and the stacks are kept
    result = run_program(
        """
        class Slow:
            def __init__(self):
                end = time.perf_counter() + 0.002
                while time.perf_counter() < end:
                    pass

        with Profiler(interval=0.0005) as p:
            for i in range(200):
                Slow()
        report(p.last_session)
        """
    )
    assert result["dropped"] <= 0.05 * (result["samples"] + result["dropped"]), result["dropped"]
    assert time_in(result["stacks"], "Slow.__init__") >= 0.2


def test_no_stack_the_program_never_had():
    # 64 functions calling each other along 200 fixed random paths, each call lasting about
    # a microsecond: every recorded chain of them must be the start of one of the paths
    # (py-spy, which stops the process to read it: none that is not). A data-stack chunk
    # copied while the thread returns and calls again joins one chain's callers to
    # another's callees (before the two copies were compared: 0.4-0.9% of the time here,
    # 20-40% with two busy threads on 3.11/3.12); so does a 3.9/3.10 frame object reused
    # for another call between two reads (before the chain was read twice: 0.2-0.6%)
    result = run_program(
        """
        import random
        rng = random.Random(15)
        source = "".join(
            f"def f{i:02d}(path, depth):\\n"
            f"    total = 0\\n"
            f"    for k in range({rng.randrange(5, 40)}):\\n"
            f"        total += k\\n"
            f"    if depth < len(path):\\n"
            f"        total += FUNCS[path[depth]](path, depth + 1)\\n"
            f"    return total\\n"
            for i in range(64)
        )
        namespace = {}
        exec(compile(source, "<paths>", "exec"), namespace)
        namespace["FUNCS"] = [namespace[f"f{i:02d}"] for i in range(64)]
        paths = [[rng.randrange(64) for _ in range(rng.randrange(1, 31))] for _ in range(200)]

        def run(seconds):
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                path = paths[rng.randrange(len(paths))]
                namespace["FUNCS"][path[0]](path, 1)

        with Profiler(interval=0.0001) as p:
            run(2.0)
        report(p.last_session, paths=paths)
        """
    )
    starts = {tuple(path[:depth]) for path in result["paths"] for depth in range(1, len(path) + 1)}
    spliced = total = 0.0
    for stack, seconds in result["records"]:
        chain = tuple(int(f.split("\x00")[0][1:]) for f in stack if f.split("\x00")[1:2] == ["<paths>"])
        if chain:
            total += seconds
            spliced += seconds if chain not in starts else 0.0
    assert total > 0.5
    assert spliced / total < 0.001, f"{spliced / total:.2%} of the time in stacks the program never had"
    # what could not be read consistently is dropped and counted, but not most of it (on an
    # AMD EPYC VM: 3.10 11-23%, 3.12 33% beside a busy process; 3.10 33-45% with the
    # sanitizers' slower engine, where drop rates mean nothing)
    if not UNDER_SANITIZERS:
        assert result["dropped"] < 0.5 * (result["samples"] + result["dropped"]), result["dropped"]


@pytest.mark.xfail(
    sys.version_info[:2] < (3, 11),
    reason="known, not fixed on 3.9/3.10: a frame object reused between the two reads of a chain makes "
    "its walk fail; 55-62% of this recursion's samples are dropped there",
    strict=False,
)
@pytest.mark.xfail(
    FREE_THREADED,
    reason="known, not fixed on 3.13t: 48-59% of this recursion's samples are dropped (counted) since a walk's "
    "last attempt is no longer kept unconfirmed, which put stacks the program never had in the splice test",
    strict=False,
)
def test_a_recursion_rising_and_falling_keeps_its_samples():
    # a recursion rising to up to 300 frames and falling back every few microseconds: the
    # stack changes under every read. Its frames at each depth are other calls of the same
    # function, which make the same stack: comparing the two copies byte for byte dropped
    # 57-66% of these samples on 3.14 (an interpreter that recursed this way was reported
    # as spending a third of its time there); now 3-5% on 3.12, 29-40% on 3.14 (dropped, counted)
    result = run_program(
        """
        def down(n):
            return 0 if n == 0 else 1 + down(n - 1)

        with Profiler(interval=0.001) as p:
            end = time.perf_counter() + 1.5
            depth = 1
            while time.perf_counter() < end:
                down(depth)
                depth = depth % 300 + 7
        report(p.last_session)
        """
    )
    # not most of them (the engine that compared the copies byte for byte dropped 57-66%)
    assert result["dropped"] < 0.5 * (result["samples"] + result["dropped"]), result["dropped"]
    assert time_in(result["stacks"], "down") >= 0.5 * result["duration"]
