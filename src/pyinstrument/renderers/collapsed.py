"""Collapsed ("folded") stacks: the text format of flame graph tools.

Brendan Gregg's ``flamegraph.pl``, inferno (``inferno-flamegraph``), speedscope and
many other tools read it. Each line is one distinct call stack, root first, frames
separated by ``;``, then a space and an integer count::

    <module> (demo.py:1);main (demo.py:30);slow (demo.py:10) 700000

Choices made here:

* **Frames** are ``name (file:line)``: the function (``Class.method`` when the class
  is known), the file shortened to the ``sys.path`` entry that gives the shortest
  path (``full_paths=True`` keeps the absolute path) and the function's *first* line,
  so that one function is one frame wherever in its body the sample was taken. A
  function without a line number (built-ins) is ``name (file)``.
* **Counts** are microseconds by default (``unit="us"``): integers, as the tools
  require, that keep the precision of sub-millisecond intervals. ``unit="ms"`` gives
  milliseconds and ``unit="samples"`` the number of sampling intervals (time divided
  by the session's interval, rounded, like py-spy's counts). Stacks whose count
  rounds to 0 are left out.
* **Threads**: when the session holds several threads, each stack starts with a
  ``[thread NAME]`` frame (``threads=False`` merges them).
* **Escaping**: ``;``, line breaks and other control characters would break the
  format, so they are percent-encoded as in URLs (``;`` is ``%3B``, a newline
  ``%0A``, NUL ``%00``), and so is ``%`` itself (``%25``). A path that was not valid
  UTF-8 (Python holds its undecodable bytes as lone surrogates) gets its original
  bytes percent-encoded (``caf%E9``), so the file is always valid UTF-8. This is
  reversible: ``urllib.parse.unquote(frame, errors="surrogateescape")`` gives back
  the exact text Python had. (A lone surrogate that cannot stand for a byte, which
  file systems do not produce, becomes U+FFFD.)

Lines are sorted, so the output is stable for diffs. An empty session gives an empty
file.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from pyinstrument.renderers.base import Renderer
from pyinstrument.renderers.stacks import SampleStacks, StackFrame
from pyinstrument.session import Session

TIME_CHOICES = ("wall", "cpu")
UNIT_CHOICES = ("us", "ms", "samples")

# characters that would end a frame or a line, or that tools choke on; ``%`` because
# it starts our escapes; lone surrogates (undecodable bytes from file names)
_NEEDS_ESCAPE = re.compile(r"[%;\x00-\x1f\x7f\ud800-\udfff]")


def _escape_char(match: "re.Match[str]") -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
        return f"%{code - 0xDC00:02X}"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"%{code:02X}"


def escape_frame_text(text: str) -> str:
    """``text`` with the characters the format cannot hold percent-encoded (see the
    module docstring); ``urllib.parse.unquote(..., errors="surrogateescape")`` undoes it."""
    return _NEEDS_ESCAPE.sub(_escape_char, text)


class CollapsedRenderer(Renderer):
    """Collapsed stacks (``frame;frame;frame count`` lines) for ``flamegraph.pl``,
    inferno and speedscope. See the module docstring for the frame syntax and escaping.

    :param time: ``"wall"`` (elapsed time) or ``"cpu"`` (CPU time; the session must
        have recorded it).
    :param unit: what the counts measure: ``"us"`` (microseconds, the default),
        ``"ms"`` or ``"samples"`` (sampling intervals).
    :param threads: start each stack with a ``[thread NAME]`` frame when the session
        has several threads.
    :param full_paths: show absolute file paths instead of paths relative to
        ``sys.path``.
    """

    output_file_extension = "collapsed"
    output_is_binary = False

    def __init__(
        self,
        time: str = "wall",
        unit: str = "us",
        threads: bool = True,
        full_paths: bool = False,
    ) -> None:
        super().__init__()
        if time not in TIME_CHOICES:
            raise ValueError(f"time must be one of {', '.join(TIME_CHOICES)}, not {time!r}")
        if unit not in UNIT_CHOICES:
            raise ValueError(f"unit must be one of {', '.join(UNIT_CHOICES)}, not {unit!r}")
        self.time = time
        self.unit = unit
        self.threads = threads
        self.full_paths = full_paths

    def render(self, session: Session) -> str:
        stacks = SampleStacks(session)
        if self.time == "cpu" and not stacks.has_cpu:
            raise ValueError("this session has no CPU time: render it with time=wall")
        seconds = stacks.cpu if self.time == "cpu" else stacks.wall
        show_threads = self.threads and len(stacks.threads) > 1

        # seconds per distinct (thread, frames) first: records differ by current line
        # only, which the format does not show
        by_stack: Dict[Tuple[int, Tuple[int, ...]], float] = {}
        for i, frames in enumerate(stacks.stacks):
            if not frames or not seconds[i]:
                continue
            key = (stacks.thread_of[i] if show_threads else 0, frames)
            by_stack[key] = by_stack.get(key, 0.0) + seconds[i]

        frame_texts: List[Optional[str]] = [None] * len(stacks.frames)
        thread_texts = [escape_frame_text(f"[thread {name}]") for name in stacks.threads]
        scale = self._counts_per_second(session)
        # two stacks may still render alike (two files with the same short path)
        by_line: Dict[str, float] = {}
        for (thread, frames), total in by_stack.items():
            parts = [thread_texts[thread]] if show_threads else []
            for index in frames:
                text = frame_texts[index]
                if text is None:
                    text = frame_texts[index] = self._frame_text(stacks.frames[index])
                parts.append(text)
            line = ";".join(parts)
            by_line[line] = by_line.get(line, 0.0) + total

        out = []
        for line in sorted(by_line):
            count = int(round(by_line[line] * scale))
            if count > 0:
                out.append(f"{line} {count}\n")
        return "".join(out)

    def _counts_per_second(self, session: Session) -> float:
        if self.unit == "us":
            return 1e6
        if self.unit == "ms":
            return 1e3
        interval = session.min_interval
        if not interval or interval <= 0:
            raise ValueError("this session has no sampling interval: use unit=us or unit=ms")
        return 1.0 / interval

    def _frame_text(self, frame: StackFrame) -> str:
        path = frame.file_path if self.full_paths else frame.file_path_short
        location = f"{path}:{frame.line_no}" if frame.line_no else path
        text = f"{frame.name} ({location})" if location else frame.name
        return escape_frame_text(text)
