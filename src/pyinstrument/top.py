"""``pyinstrument --pid PID --top``: a live view of where a running process spends its time.

Each refresh is a recording of its own (one second by default); a function's own time
is the time it was the innermost Python frame (the C function it called included), its
total time the time it was anywhere on a stack. Both are shown for the last refresh and
since the view started. In a terminal, keys change the view; otherwise the table is
printed after each refresh.
"""

from __future__ import annotations

import os
import select
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from pyinstrument.frame_table import FrameInfo, FrameKind
from pyinstrument.session import Session

#: a function: (name, file, first line)
FunctionKey = Tuple[str, str, int]

SORT_KEYS = {"o": "own", "t": "total", "n": "name"}
KEYS_HELP = "q quit · o/t/n sort by own/total/name · w last/all · h next thread"


@dataclass
class Times:
    """Seconds per function, own and total, over some recording."""

    own: Dict[FunctionKey, float] = field(default_factory=dict)
    total: Dict[FunctionKey, float] = field(default_factory=dict)
    seconds: float = 0.0  # of the threads shown

    def add(self, other: "Times") -> None:
        for mine, theirs in ((self.own, other.own), (self.total, other.total)):
            for key, seconds in theirs.items():
                mine[key] = mine.get(key, 0.0) + seconds
        self.seconds += other.seconds


def function_times(session: Session, thread: Optional[str] = None) -> Times:
    """Own and total time of each function in *session* (of one thread, if named)."""
    times = Times()
    for stack, seconds in session.frame_records:
        frames = [FrameInfo.parse(text) for text in stack]
        if frames and frames[0].kind == FrameKind.THREAD:
            if thread is not None and frames[0].function != thread:
                continue
            frames = frames[1:]
        code = [frame for frame in frames if frame.kind == FrameKind.CODE]
        times.seconds += seconds
        if not code:
            continue
        for key in {(frame.function, frame.file, frame.first_line) for frame in code}:
            times.total[key] = times.total.get(key, 0.0) + seconds
        leaf = (code[-1].function, code[-1].file, code[-1].first_line)
        times.own[leaf] = times.own.get(leaf, 0.0) + seconds
    return times


def thread_names(session: Session) -> List[str]:
    names = []
    for stack, _ in session.frame_records:
        first = FrameInfo.parse(stack[0]) if stack else None
        if first is not None and first.kind == FrameKind.THREAD and first.function not in names:
            names.append(first.function)
    return sorted(names)


@dataclass
class View:
    """What the table shows: the sort, the window it is sorted by, the thread."""

    sort: str = "own"
    since_start: bool = False
    thread: Optional[str] = None

    def press(self, key: str, threads: List[str]) -> None:
        if key in SORT_KEYS:
            self.sort = SORT_KEYS[key]
        elif key == "w":
            self.since_start = not self.since_start
        elif key == "h":  # all threads, then each in turn
            choices: List[Optional[str]] = [None, *threads]
            at = choices.index(self.thread) if self.thread in choices else 0
            self.thread = choices[(at + 1) % len(choices)]


def _short_path(path: str) -> str:
    return os.path.basename(path) if path else path


def format_table(
    title: str, last: Times, overall: Times, view: View, interval: float, width: int, height: int
) -> List[str]:
    """The view as lines of at most *width* characters, at most *height* lines."""
    window = overall if view.since_start else last

    def share(times: Times, table: Dict[FunctionKey, float], key: FunctionKey) -> float:
        return 100.0 * table.get(key, 0.0) / times.seconds if times.seconds else 0.0

    keys = list(window.total)
    if view.sort == "name":
        keys.sort(key=lambda key: (key[0], key[1], key[2]))
    else:
        table = window.own if view.sort == "own" else window.total
        keys.sort(key=lambda key: (-table.get(key, 0.0), key))
    lines = [
        f"sort: {view.sort} · {'since start' if view.since_start else 'last refresh'} · "
        f"thread: {view.thread or 'all'} · refresh {interval:g} s · {overall.seconds:.1f} thread-seconds",
        title,
        KEYS_HELP,
        f"{'OWN%':>6} {'TOTAL%':>7} {'OWN s':>8} {'TOTAL s':>8}  FUNCTION (% of the last refresh, s since start)",
    ]
    for key in keys[: max(0, height - len(lines))]:
        name, path, first_line = key
        row = (
            f"{share(last, last.own, key):6.1f} {share(last, last.total, key):7.1f} "
            f"{overall.own.get(key, 0.0):8.2f} {overall.total.get(key, 0.0):8.2f}  "
            f"{name}  {_short_path(path)}:{first_line}"
        )
        lines.append(row)
    return [line[:width] for line in lines]


class _Keys:
    """Single key presses from a terminal, without echo, restored on exit."""

    def __init__(self, stream: IO[str]) -> None:
        import termios
        import tty

        self.fd = stream.fileno()
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)

    def wait(self, seconds: float) -> List[str]:
        """Keys pressed within *seconds* (returns at the first)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, seconds))
        return list(os.read(self.fd, 32).decode("utf-8", "replace")) if ready else []

    def restore(self) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def run(
    recorder: Any,
    is_running: Callable[[], bool],
    title: str,
    refresh: float,
    duration: Optional[float],
    out: Any = None,
    keys_from: Any = None,
) -> None:
    """Shows the view until `q`, Ctrl-C, *duration*, or the process's end. *recorder*
    records from start() to stop(), which returns the session."""
    out = out or sys.stdout
    keys_from = keys_from or sys.stdin
    keys = _Keys(keys_from) if out.isatty() and keys_from.isatty() else None
    view, overall = View(), Times()
    last_session: Optional[Session] = None
    started = time.monotonic()

    def draw() -> None:
        last = function_times(last_session, view.thread) if last_session else Times()
        size = shutil.get_terminal_size()
        width, height = (size.columns, size.lines - 1) if keys else (1000, 40)
        lines = format_table(title, last, overall, view, refresh, width, height)
        if keys:
            out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        else:
            out.write(time.strftime("%H:%M:%S ") + "\n".join(lines) + "\n\n")
        out.flush()

    try:
        recorder.start()
        due = time.monotonic() + refresh
        while True:
            pressed = keys.wait(due - time.monotonic()) if keys else []
            if not keys:
                time.sleep(max(0.0, due - time.monotonic()))
            if "q" in pressed:
                break
            if pressed:
                for key in pressed:
                    if key == "h":
                        overall = Times()  # the totals are of the thread shown
                    view.press(key, thread_names(last_session) if last_session else [])
                draw()
                continue
            if time.monotonic() < due:
                continue
            last_session = recorder.stop()
            ended = not is_running() or (duration is not None and time.monotonic() - started >= duration)
            if not ended:
                recorder.start()
                due += refresh
            overall.add(function_times(last_session, view.thread))
            draw()
            if ended:
                return
    except KeyboardInterrupt:
        pass
    finally:
        recorder.cancel()
        if keys:
            keys.restore()
