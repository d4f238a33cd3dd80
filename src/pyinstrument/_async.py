"""Async mode: binding a Profiler to the async context it was started in.

A profiler started with async_mode "enabled" or "strict" sets a context variable in its
context; tasks started from there inherit it. The engine's sampler looks that variable
up in the profiled thread's current Context on every tick (engine/context.c). While the
thread runs outside the context (the event loop, other tasks), the profiled task is
suspended, and the sampler records what it awaits, ending in ``[await]``; in strict
mode time outside the context with no awaiting task is ``[out-of-context]``.
Nothing runs per call or per await.
"""

from __future__ import annotations

import contextvars
import sys
import types
from typing import Any, List, Optional, Tuple

from pyinstrument import _engine


class AsyncBinding:
    """What marks one running profiler's context; its value in the context variable."""

    def __init__(self) -> None:
        self.running = True


#: the profiler bound to the current async context (upstream's active_profiler_context_var)
active_profiler: contextvars.ContextVar[Optional[AsyncBinding]] = contextvars.ContextVar(
    "pyinstrument_active_profiler", default=None
)

_node_types: Optional[Tuple[int, int, int]] = None
_node_types_error: Optional[str] = None


def _context_with(variables: List[contextvars.ContextVar[Any]], value: object) -> contextvars.Context:
    context = contextvars.Context()
    context.run(lambda: [variable.set(value) for variable in variables])
    return context


def node_types() -> Tuple[int, int, int]:
    """The types of a Context's HAMT and of its bitmap and array nodes, learned from
    Contexts made here, after checking the engine's lookup finds what Python finds.
    Raises RuntimeError when the engine cannot read this Python's Contexts."""
    global _node_types, _node_types_error
    if _node_types is not None:
        return _node_types
    if _node_types_error is None:
        try:
            _node_types = _probe_node_types()
            return _node_types
        except RuntimeError as error:
            _node_types_error = str(error)
    raise RuntimeError(_node_types_error)


def _probe_node_types() -> Tuple[int, int, int]:
    probe = contextvars.ContextVar("pyinstrument_probe")
    marker = object()
    others = [contextvars.ContextVar(f"pyinstrument_probe_{i}") for i in range(96)]
    small = _context_with([probe], marker)
    # 97 variables over 32 slots at the root: the root becomes an array node
    large = _context_with(others + [probe], marker)
    without = _context_with(others, marker)
    hamt_type, bitmap_type = _engine._hamt_types(small)
    large_hamt_type, array_type = _engine._hamt_types(large)
    if large_hamt_type != hamt_type or array_type == bitmap_type:
        raise RuntimeError("this Python's context variables are laid out differently than expected")
    found = (hamt_type, bitmap_type, array_type)
    if not (
        _engine._context_get(small, probe, found) == id(marker)
        and _engine._context_get(large, probe, found) == id(marker)
        and _engine._context_get(without, probe, found) is None
        and all(_engine._context_get(large, other, found) == id(marker) for other in others)
    ):
        raise RuntimeError("the engine's reading of context variables does not match Python's")
    return found


def current_task_coroutine() -> Optional[Any]:
    """The coroutine of the asyncio or trio task running now, if any."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running event loop
            task = None
        if task is not None:
            return task.get_coro()
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return trio.lowlevel.current_task().coro
        except RuntimeError:  # not inside trio.run
            pass
    return None


def start_prefix(
    caller_frame: Optional[types.FrameType], task_coroutine: Optional[Any]
) -> Tuple[List[types.CodeType], List[int], Optional[Any]]:
    """The stack the awaiting task's frames hang from: the code objects and lines from
    the root down to the frame that runs the task's coroutine (exclusive), and that
    coroutine; without a task (or not on the stack), the whole stack and None."""
    frames = []
    frame = caller_frame
    task_frame = getattr(task_coroutine, "cr_frame", None) or getattr(task_coroutine, "gi_frame", None)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    if task_frame is not None and any(f is task_frame for f in frames):
        frames = frames[: next(i for i, f in enumerate(frames) if f is task_frame)]
    else:
        task_coroutine = None
    return [f.f_code for f in frames], [f.f_lineno or 0 for f in frames], task_coroutine
