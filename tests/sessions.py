"""Sessions built by hand for renderer tests: ordinary, threaded, and hostile.

Frame strings are written the way the engine writes them (see pyinstrument.frame).
"""

from __future__ import annotations

import textwrap
import time
from array import array
from pathlib import Path

from pyinstrument.session import Session, Timeline

APP = "/home/user/app"
PREFIX = "/usr/lib/python3"


def frame_string(function, path, line, *, cls=None, current=None):
    """A frame string as the engine writes it."""
    s = f"{function}\x00{path}\x00{line}"
    if cls:
        s += "\x01c" + cls
    if current is not None:
        s += f"\x01l{current}"
    return s


def thread_root(name, ident):
    return f"{name}\x00<thread>\x00{ident}"


MAIN = frame_string("<module>", f"{APP}/demo.py", 1, current=40)
RUN = frame_string("main", f"{APP}/demo.py", 30, current=33)
SLOW = frame_string("slow", f"{APP}/demo.py", 10, current=12)
FAST = frame_string("Worker.fast", f"{APP}/demo.py", 20, cls="Worker", current=21)
SLEEP = frame_string("sleep", "<built-in>", 0)
LIB = frame_string("compile", f"{PREFIX}/re/__init__.py", 225, current=227)


def make_session(records, *, cpu=None, timeline=None, interval=0.001, description="Program: demo.py", **kwargs):
    """A session of ``records`` ([stack, seconds] pairs); ``cpu`` parallel CPU seconds."""
    total = sum(t for _, t in records)
    return Session(
        frame_records=records,
        start_time=time.mktime((2024, 5, 17, 14, 3, 9, 0, 0, -1)),
        duration=total,
        min_interval=interval,
        max_interval=interval,
        sample_count=int(round(total / interval)),
        start_call_stack=kwargs.pop("start_call_stack", []),
        target_description=description,
        cpu_time=sum(cpu) if cpu else total / 2,
        sys_path=kwargs.pop("sys_path", [APP, PREFIX]),
        sys_prefixes=kwargs.pop("sys_prefixes", [PREFIX]),
        frame_records_cpu=cpu,
        timeline=timeline,
        **kwargs,
    )


def simple_session():
    """One thread: <module> > main > {slow > sleep, slow, Worker.fast, compile}; 1 s."""
    return make_session(
        [
            ([MAIN, RUN, SLOW], 0.300),
            ([MAIN, RUN, SLOW, SLEEP], 0.400),
            ([MAIN, RUN, FAST], 0.100),
            ([MAIN, RUN, LIB], 0.150),
            ([MAIN, RUN], 0.050),
        ],
        cpu=[0.300, 0.0, 0.100, 0.150, 0.050],
        timeline=[(0, 0.1), (1, 0.4), (0, 0.2), (2, 0.1), (3, 0.15), (4, 0.05)],
    )


def threaded_session():
    """Two threads with CPU time: MainThread works 0.5 s then joins for 0.2 s; the
    worker, started at 0.5 s, works 0.6 s. As the engine records them, each thread's
    timeline entries add up to its own clock from the session's start, the time before
    the worker existed being a record of no time holding only the thread."""
    main, worker = thread_root("MainThread", 1), thread_root("worker", 2)
    work = frame_string("work", f"{APP}/threads.py", 5, current=7)
    run = frame_string("Thread.run", f"{PREFIX}/threading.py", 990, cls="Thread", current=1010)
    join = frame_string("Thread.join", f"{PREFIX}/threading.py", 1100, cls="Thread", current=1120)
    module = frame_string("<module>", f"{APP}/threads.py", 1, current=12)
    records = [
        ([main, module, work], 0.5),
        ([main, module, join], 0.2),
        ([worker, run, work], 0.6),
        ([worker], 0.0),
    ]
    timeline = Timeline.from_arrays(array("I", [0, 1, 3, 2, 2]), array("f", [0.5, 0.2, 0.5, 0.3, 0.3]))
    return make_session(records, cpu=[0.5, 0.0, 0.6, 0.0], timeline=timeline, description="Program: threads.py")


#: names that break naive writers: markup, quotes, separators, control characters,
#: non-BMP text and a file path that is not valid UTF-8 (a lone surrogate, as Python
#: represents undecodable bytes from the file system)
HOSTILE_FUNCTION = "</script><script>alert(1)</script>"
HOSTILE_NAMES = [
    HOSTILE_FUNCTION,
    'say "hi" & \'bye\' <b>',
    "semi;colon space\ttab",
    "new\nline\rreturn",
    "nul\x00inside",
    "emoji \U0001f525 ünïcödé",
]
HOSTILE_PATHS = [
    "/tmp/we ird/\"quoted\" <dir>/mod.py",
    "/tmp/caf\udce9/bytes.py",
    "C:\\Users\\name\\app.py",
]


def hostile_session():
    """Every hostile name as a function (each in a different hostile file), in a
    chain under <module>, with CPU time and a timeline."""
    frames = [frame_string("<module>", HOSTILE_PATHS[0], 1, current=3)]
    records = []
    for i, name in enumerate(HOSTILE_NAMES):
        frames.append(frame_string(name, HOSTILE_PATHS[i % len(HOSTILE_PATHS)], 10 + i, current=11 + i))
        records.append((list(frames), 0.1 * (i + 1)))
    cpu = [t / 2 for _, t in records]
    return make_session(records, cpu=cpu, timeline=[(i, t) for i, (_, t) in enumerate(records)],
                        sys_path=[], sys_prefixes=[])


# --- real programs through the command line ----------------------------------------------

#: a program whose main thread and a thread named "helper" both run spin()
THREADED_PROGRAM = textwrap.dedent("""
    import threading

    def spin(n):
        total = 0
        for i in range(n):
            total += i * i
        return total

    def in_thread():
        spin(1_000_000)

    def main():
        worker = threading.Thread(target=in_thread, name="helper")
        worker.start()
        spin(1_000_000)
        worker.join()

    main()
""")


#: a short program whose function is named after ``n``: runs of different programs
#: are told apart in their reports and kept sessions
NUMBERED_PROGRAM = textwrap.dedent("""
    import time
    def spin_{n}():
        end = time.perf_counter() + 0.03
        while time.perf_counter() < end:
            pass
    spin_{n}()
""")


def write_numbered_program(directory, n):
    """Writes NUMBERED_PROGRAM ``n`` as ``p{n}.py`` in ``directory``; returns its name."""
    (directory / f"p{n}.py").write_text(NUMBERED_PROGRAM.format(n=n))
    return f"p{n}.py"


def history_directory(data_directory):
    """Where the command line keeps the sessions of recent runs, under a data directory."""
    return Path(data_directory) / "pyinstrument" / "reports"


def load_prev_hint(output):
    """The identifier in the "pyinstrument --load-prev ID [options]" hint of a text report."""
    lines = output.splitlines()
    command = lines[lines.index("To view this report with different options, run:") + 1].split()
    assert command[:2] == ["pyinstrument", "--load-prev"] and command[3] == "[options]"
    return command[2]
