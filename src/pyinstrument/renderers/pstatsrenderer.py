"""The profile as a ``.pstats`` file: the statistics format of the standard library's
``cProfile``, read by ``pstats``, snakeviz, gprof2dot, tuna and others.

The file is ``marshal.dumps(stats)``, as ``cProfile.Profile.dump_stats`` writes it:
``stats`` maps each function, keyed ``(file path, first line, function name)``, to
``(primitive calls, total calls, tottime, cumtime, callers)``, where ``callers`` maps
the key of each calling function to that caller's share, ``(primitive calls, total
calls, tottime, cumtime)``.

A sampling profiler measures time, not calls, so the numbers are derived from the
aggregated call tree with nothing left out but the profiler's own frames: no time
threshold, no library folding, no removal of import machinery or
``__tracebackhide__`` frames. Tools that read pstats (snakeviz...) filter for
themselves; a function left out here would have its time counted as its caller's
own time.

- tottime: time in the function's own code; cumtime: time with its callees, counted
  once per stack, so a recursive function is not counted again inside itself (the
  same rule as cProfile's, which keeps ``cumtime <= total time``);
- calls: the number of distinct call paths the function was seen on (``total``), of
  which ``primitive`` are those not inside another call of the same function. They
  only mark recursion and how spread out a function is: they are not call counts,
  and the "percall" columns divide by them.

Thread frames (the file ``<thread>``, line = thread id) appear as functions that call
the thread's top function, so each thread's total shows as their cumtime. Built-in
functions keep the file ``<built-in>`` and line 0.

``marshal`` stores strings as UTF-8 with lone surrogates passed through, so every
name, even a file path that is not valid UTF-8, loads back exactly.
"""

from __future__ import annotations

import marshal
from typing import Dict, List, Optional, Tuple

from pyinstrument import processors
from pyinstrument.frame import Frame, dispose_tree, gc_paused
from pyinstrument.renderers.base import FrameRenderer, ProcessorType
from pyinstrument.session import Session

FunctionKey = Tuple[str, int, str]
#: (primitive calls, total calls, tottime, cumtime)
CallerStats = Tuple[int, int, float, float]
#: (primitive calls, total calls, tottime, cumtime, callers)
FunctionStats = Tuple[int, int, float, float, Dict[FunctionKey, CallerStats]]


class PstatsRenderer(FrameRenderer):
    """The profile in cProfile's ``.pstats`` format. It is binary: ``render`` returns it as
    upstream does, a ``str`` of the bytes decoded with ``surrogateescape``; write it with
    ``.encode("utf-8", errors="surrogateescape")``.

    ``show_all``, ``timeline`` and ``processor_options`` are those of
    :class:`~pyinstrument.renderers.base.FrameRenderer`, but every function is kept
    whatever they say (see the module docstring).
    """

    output_file_extension = "pstats"
    output_is_binary = True

    def default_processors(self) -> List[ProcessorType]:
        # only the processors that drop nothing but the profiler's and the command
        # line's own frames
        return [
            processors.remove_profiler_frames,
            processors.merge_consecutive_self_time,
            processors.aggregate_repeated_calls,
            processors.remove_first_pyinstrument_frames_processor,
        ]

    def render(self, session: Session) -> str:
        with gc_paused():
            root = self.session_root_frame(session)
            try:
                stats = stats_of_tree(root)
            finally:
                dispose_tree(root)
        return marshal.dumps(stats).decode("utf-8", errors="surrogateescape")


def function_key(frame: Frame) -> FunctionKey:
    # the qualified name (``Worker.fast``): pstats readers show no class beside it
    return (frame.file_path or "", frame.line_no or 0, frame.qualname)


def stats_of_tree(root: Optional[Frame]) -> Dict[FunctionKey, FunctionStats]:
    """The pstats dict of a call tree (see the module docstring)."""
    # [primitive calls, total calls, tottime, cumtime, callers]; callers' values are
    # lists too until the end
    stats: Dict[FunctionKey, list] = {}
    if root is None:
        return {}
    # Depth first, without recursion. ``active`` counts the functions on the current
    # path: a function already on it is a recursive call, whose cumtime is already
    # inside the outer call's. Entries: (frame, caller key or None) to visit a frame,
    # (None, key) once the subtree of a frame with that key is done.
    active: Dict[FunctionKey, int] = {}
    work: List[Tuple[Optional[Frame], Optional[FunctionKey]]] = [(root, None)]
    while work:
        frame, caller = work.pop()
        if frame is None:
            assert caller is not None
            remaining = active[caller] - 1
            if remaining:
                active[caller] = remaining
            else:
                del active[caller]
            continue
        if frame.is_synthetic:
            # [root] holds threads or several stacks; [self]/[await] are time in the
            # caller's own code, already in its tottime
            if frame.is_root_placeholder:
                work.extend((child, None) for child in reversed(frame._children))
            continue
        key = function_key(frame)
        recursive = key in active
        self_time = frame.total_self_time
        cumulative = 0.0 if recursive else frame.time
        primitive = 0 if recursive else 1
        entry = stats.get(key)
        if entry is None:
            entry = stats[key] = [0, 0, 0.0, 0.0, {}]
        entry[0] += primitive
        entry[1] += 1
        entry[2] += self_time
        entry[3] += cumulative
        if caller is not None:
            edge = entry[4].get(caller)
            if edge is None:
                edge = entry[4][caller] = [0, 0, 0.0, 0.0]
            edge[0] += primitive
            edge[1] += 1
            edge[2] += self_time
            edge[3] += cumulative
        children = frame._children
        if children:
            active[key] = active.get(key, 0) + 1
            work.append((None, key))
            work.extend((child, key) for child in reversed(children))
    return {
        key: (entry[0], entry[1], entry[2], entry[3], {k: tuple(v) for k, v in entry[4].items()})
        for key, entry in stats.items()
    }
