"""The naming oracle: every C leaf the engine records is checked against the interpreter.

Each program calls C functions in the ways real code does (aliases, attributes, methods
of C types, decorators, dict dispatch, lambdas, functools.partial, Python functions named
like builtins), each call long enough to be sampled. It runs twice in a fresh
interpreter: once under sys.setprofile, whose c_call events are the interpreter's own
account of which C function each Python function called (named as upstream pyinstrument
names them: the callable's __qualname__), and once under the engine. Every C leaf the
engine records, with the Python function it sits under, must be one the interpreter
reported: a wrong name is a failure, `[unknown C call]` is counted, printed (pytest -s)
and bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.engine

UNKNOWN = "[unknown C call]"

SETUP = """
import functools, random, re, select, sys, threading, time, zlib

random.seed(1)
DATA = [(i * 2654435761) % 1000003 for i in range(200_000)]  # no runs: sorting takes a while
BLOB = random.randbytes(1_500_000)
WORDS = ["word"] * 2_000_000
"""

PROGRAMS = {
    # C functions reached through names that are not theirs
    "aliases": """
        def main():
            f = sorted
            f(DATA)
            z = zlib.compress
            z(BLOB, 6)
            functools.partial(sorted, DATA)()  # a partial object is no C function
            nap = time.sleep
            nap(0.2)
        """,
    # methods of C types: named after the type of the object they run on
    "methods": """
        class Shuffled(list):
            pass

        def main():
            Shuffled(DATA).sort()
            poller = select.epoll()
            poller.poll(0.25)
            poller.close()
            ",".join(WORDS)
            str.join(";", WORDS)
        """,
    # decorators, dict dispatch, lambdas, generators
    "dispatch": """
        def traced(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                return fn(*args, **kwargs)
            return wrapper

        ordered = traced(sorted)
        table = {"sort": sorted, "pack": zlib.compress}

        class Holder:
            pass

        holder = Holder()
        holder.run = lambda data: sorted(data)

        def batches():  # a generator's frame lives outside the thread's frame stack
            yield sorted(DATA)

        def main():
            list(batches())
            ordered(DATA)
            for key, arg in (("sort", DATA), ("pack", BLOB)):
                table[key](arg)
            holder.run(DATA)
        """,
    # Python functions named like C functions, and one called through an alias
    "lookalikes": """
        def compress(data):
            return zlib.compress(data)

        class Backoff:
            def sleep(self, seconds):
                time.sleep(seconds)

        def real_work(i, b=0):
            total = 0
            for k in range(3000):
                total += k * b
            return total

        def main():
            compress(BLOB)
            Backoff().sleep(0.2)
            semaphore = threading.Semaphore(0)
            threading.Timer(0.2, semaphore.release).start()
            semaphore.acquire()
            handler = real_work
            for i in range(600):
                handler(i, b=3)
        """,
}

# one call site calling one C function after another, each for many ticks: the name a
# thread standing on a call keeps from tick to tick must not outlive the call
PROGRAMS["one call site"] = """
    class Shuffled(list):
        pass

    def main():
        work = [(time.sleep, 0.15), (zlib.compress, BLOB), (list.sort, list(DATA)), (list.sort, Shuffled(DATA)),
                (time.sleep, 0.15)]
        for function, argument in work:
            function(argument)
    """

PROGRAMS["short calls"] = """
    # calls of a microsecond or two in a hot loop: most have ended before their
    # callable is read, and must still be named
    PATTERN = re.compile(r"(\\w+)=(\\d+)")
    LINES = [f"key{i % 97}={i} rest of the line {i}" for i in range(50_000)]

    def main():
        counts = {}
        for _ in range(6):
            for line in LINES:
                match = PATTERN.match(line)
                fields = line.split()
                counts[match.group(1)] = counts.get(fields[0], 0) + len(fields)
    """

# (the Python function, the C function it calls) that each program must show: calls
# long enough that missing them means the leaf was lost or misnamed. The Python sampler
# only runs while the GIL is free, so it sees only those that release it.
HOLDS_GIL = {"sorted", "list.sort", "Shuffled.sort", "str.join", "Pattern.match", "str.split"}
MUST_SHOW = {
    "aliases": [("main", "sorted"), ("main", "compress"), ("main", "sleep")],
    "methods": [("main", "Shuffled.sort"), ("main", "epoll.poll"), ("main", "str.join")],
    "dispatch": [("wrapper", "sorted"), ("main", "sorted"), ("main", "compress"), ("<lambda>", "sorted"),
                 ("batches", "sorted")],
    "lookalikes": [("compress", "compress"), ("sleep", "sleep"), ("wait", "lock.acquire")],
    "short calls": [("main", "Pattern.match"), ("main", "str.split")],
    "one call site": [("main", "sleep"), ("main", "compress"), ("main", "list.sort"), ("main", "Shuffled.sort")],
}


HARNESS = """
import json, struct, sys, threading
MODE = sys.argv[1]
namespace = {}
exec(compile(SETUP + PROGRAM, "<program>", "exec"), namespace)


def short(name):
    return name.rsplit(".", 1)[-1]


if MODE == "setprofile":
    calls = set()

    def observe(frame, event, arg):
        if event == "c_call":
            calls.add((short(frame.f_code.co_name), getattr(arg, "__qualname__", arg.__name__)))

    sys.setprofile(observe)
    namespace["main"]()
    sys.setprofile(None)
    print(json.dumps(sorted(calls)))
else:
    from pyinstrument import _engine
    from pyinstrument._python_sampler import PythonSampler
    from pyinstrument.profiler import ENGINE_NODE

    Sampler = _engine.Sampler if MODE == "engine" else PythonSampler
    sampler = Sampler(0.001, threading.get_ident())
    sampler.start()
    namespace["main"]()
    sampler.stop()
    snapshot = sampler.snapshot()
    identities = snapshot["identities"]
    nodes = list(ENGINE_NODE.iter_unpack(snapshot["nodes"]))
    leaves = {}

    def in_main(index):  # the program's calls, not the sampler's own start and stop
        while index < len(nodes) and nodes[index][1] < len(identities):
            if identities[nodes[index][1]][0] == "main":
                return True
            index = nodes[index][0]
        return False

    for parent, identity, line, thread, wall, cpu, samples in nodes:
        if not samples or identity >= len(identities) or identities[identity][1] != "<built-in>":
            continue
        if not in_main(parent):
            continue
        caller = short(identities[nodes[parent][1]][0]) if nodes[parent][1] < len(identities) else ""
        key = caller + "\\x00" + identities[identity][0]
        leaves[key] = leaves.get(key, 0) + samples
    stats = {k: snapshot[k] for k in ("ticks", "samples", "dropped", "missed_ticks", "calls_ended")}
    print(json.dumps(dict(leaves=leaves, stats=stats)))
"""


def run(name: str, mode: str):
    script = f"SETUP = {SETUP!r}\nPROGRAM = {textwrap.dedent(PROGRAMS[name])!r}\n" + HARNESS
    proc = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr, proc.stderr  # a sampler thread that died says so here
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("sampler", ["engine", "python-sampler"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_c_leaf_is_what_the_interpreter_called(name, sampler):
    # python-sampler: the fallback where process_vm_readv is refused names leaves too
    truth = {tuple(pair) for pair in run(name, "setprofile")}
    must_show = [p for p in MUST_SHOW[name] if sampler == "engine" or p[1] not in HOLDS_GIL]
    leaves = {}
    runs = []  # each run's sampler statistics, for the message of a failure
    # a sampler starved by a busy machine may miss a call: up to five runs, all checked
    for attempt in range(5):
        result = run(name, sampler)
        runs.append(result["stats"])
        for key, samples in result["leaves"].items():
            pair = tuple(key.split("\x00"))
            leaves[pair] = leaves.get(pair, 0) + samples
        if all(leaves.get(pair, 0) > 0 for pair in must_show):
            break
    total = sum(leaves.values())
    unknown = sum(samples for (_, leaf), samples in leaves.items() if leaf == UNKNOWN)
    ended = sum(stats["calls_ended"] for stats in runs)
    wrong = {pair: samples for pair, samples in leaves.items() if pair[1] != UNKNOWN and pair not in truth}
    print(f"\n{name} ({sampler}) on {sys.version.split()[0]}: {total} C-leaf samples, {sum(wrong.values())} wrong, "
          f"{unknown} unknown ({unknown / max(total, 1):.1%}), of which {ended} ended while read")
    assert not wrong, (wrong, sorted(truth))
    for pair in MUST_SHOW[name]:
        assert pair in truth, (pair, sorted(truth))  # the program does make that call
    for pair in must_show:
        assert leaves.get(pair, 0) > 0, (pair, leaves, runs)
    # an unknown leaf the engine cannot explain is a failure to name; one whose call
    # ended while it was read is the honest answer, and common only for short calls
    assert unknown - ended <= 0.05 * total, (leaves, runs)
    assert ended <= ended_bound(name) * total, (leaves, runs)


def ended_bound(name: str) -> float:
    """The share of C-leaf samples allowed to be calls that ended while being read.

    A call that returns between the copy of its frame's instruction and that of its
    value stack leaves its result where the callable was (on 3.9/3.10 the value stack
    is read a round after the frame): the leaf is honestly unknown. Calls of a
    microsecond or two meet that often, more on a busy machine: 5-17% of their samples
    measured here on 3.9-3.15 (2026-12-06). The bound catches a lost way of naming
    them: with the slots copied with the frame ignored, 100% of them are unknown."""
    return 0.05 if name != "short calls" else 0.50
