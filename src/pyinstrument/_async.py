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

import contextlib
import contextvars
import sys
import types
from typing import Any, Dict, Iterator, List, Optional, Tuple

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
    probe: contextvars.ContextVar[object] = contextvars.ContextVar("pyinstrument_probe")
    marker = object()
    others: List[contextvars.ContextVar[object]] = [
        contextvars.ContextVar(f"pyinstrument_probe_{i}") for i in range(96)
    ]
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


# ---- following an await into the tasks it waits for ----
#
# asyncio's Future and Task are C objects with private layouts (_asynciomodule.c). The
# engine needs a few of their fields to continue an await chain from an awaited Future
# or Task into the coroutines of the tasks it waits for (engine/context.c). They are
# learned here from objects made for the purpose, read through the engine as the
# sampler reads them, and the result is checked by walking real (hand-driven) await
# chains through gather, shield, wait_for, TaskGroup and a plain awaited Task with the
# engine: if anything differs, the chain stops at the Future as before.

_task_layout: Optional[Dict[str, Any]] = None
_task_layout_error: Optional[str] = None


async def _probe_wait(future: Any) -> None:
    await future


async def _probe_wait_other(future: Any) -> None:
    await future


async def _probe_await(awaitable: Any) -> Any:
    return await awaitable


def task_layout() -> Optional[Dict[str, Any]]:
    """What the engine needs of asyncio's Future and Task, for bind_async; None when
    asyncio is not in use, or when it could not be learned or checked (then
    task_layout_error() says why)."""
    global _task_layout, _task_layout_error
    if _task_layout is None and _task_layout_error is None and "asyncio" in sys.modules:
        try:
            _task_layout = _probe_task_layout()
        except Exception as error:  # anything unexpected: keep the plain await chain
            _task_layout_error = str(error) or type(error).__name__
    return _task_layout


def task_layout_error() -> Optional[str]:
    return _task_layout_error


_task_layout_noticed = False


def task_layout_notice() -> Optional[str]:
    """Why awaited tasks are not followed, the first time it is asked after the check
    failed (it is reported once a process); else None."""
    global _task_layout_noticed
    if _task_layout_error is None or _task_layout_noticed:
        return None
    _task_layout_noticed = True
    return _task_layout_error


def _words(obj: object, size: int) -> List[int]:
    data = _engine._read_memory(id(obj), size)
    return [int.from_bytes(data[i : i + 8], sys.byteorder) for i in range(0, size - 7, 8)]


def _offset_of(holders: List[Tuple[object, object]], what: str) -> int:
    """The one word offset at which each holder keeps a pointer to its target."""
    found = None
    for holder, target in holders:
        offsets = {8 * i for i, word in enumerate(_words(holder, type(holder).__basicsize__)) if word == id(target)}
        found = offsets if found is None else found & offsets
    if not found or len(found) != 1:
        raise RuntimeError(f"cannot find asyncio's {what}")
    return found.pop()


def _int_offset_of(holders: List[Tuple[object, int]], what: str) -> int:
    """The one 4-byte-aligned offset at which each holder keeps its int."""
    found = None
    for holder, value in holders:
        size = type(holder).__basicsize__
        data = _engine._read_memory(id(holder), size)
        header = object.__basicsize__  # 16 bytes, 32 on a free-threaded build
        offsets = {i for i in range(header, size - 3, 4) if int.from_bytes(data[i : i + 4], sys.byteorder) == value}
        found = offsets if found is None else found & offsets
    if not found or len(found) != 1:
        raise RuntimeError(f"cannot find asyncio's {what}")
    return found.pop()


class _ProbeLoop:
    """A new event loop that never runs, made this thread's running loop while the probe
    uses it (asyncio's functions look for one, and must not find the caller's). The
    caller's loop and current task are set aside meanwhile and restored after."""

    def __init__(self, asyncio: Any) -> None:
        self.events, self.tasks = asyncio.events, asyncio.tasks
        self.loop = asyncio.new_event_loop()

    def __enter__(self) -> "_ProbeLoop":
        self.previous = self.events._get_running_loop()
        self.previous_task = self.tasks.current_task(self.previous) if self.previous else None
        if self.previous_task is not None:
            self.tasks._leave_task(self.previous, self.previous_task)
        self.events._set_running_loop(self.loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self.events._set_running_loop(self.previous)
        if self.previous_task is not None:
            self.tasks._enter_task(self.previous, self.previous_task)
        self.loop.close()

    @contextlib.contextmanager
    def in_task(self, task: Any) -> Iterator[None]:
        """As if `task` ran: wait_for() and TaskGroup ask for the current task."""
        self.tasks._enter_task(self.loop, task)
        try:
            yield
        finally:
            self.tasks._leave_task(self.loop, task)


def _started(coroutine: Any) -> Any:
    """The coroutine, run to its first suspension."""
    coroutine.send(None)
    return coroutine


def _probe_task_layout() -> Dict[str, Any]:
    import asyncio

    try:
        import _asyncio
    except ImportError:
        raise RuntimeError("asyncio's C accelerator is missing") from None
    if asyncio.Future is not _asyncio.Future or asyncio.Task is not _asyncio.Task:
        raise RuntimeError("asyncio's Future and Task are not its C ones")
    gathering_type = getattr(asyncio.tasks, "_GatheringFuture", None)
    if gathering_type is None:
        raise RuntimeError("asyncio.gather's future is not where expected")
    coroutines: List[Any] = []
    tasks: List[Any] = []
    with _ProbeLoop(asyncio) as probe:
        try:
            return _learn_and_check(asyncio, probe, gathering_type, coroutines, tasks)
        finally:
            for task in tasks:
                task._log_destroy_pending = False  # the probe's loop never runs them
            for coroutine in reversed(coroutines):
                coroutine.close()


def _learn_and_check(
    asyncio: Any, probe: _ProbeLoop, gathering_type: type, coroutines: List[Any], tasks: List[Any]
) -> Dict[str, Any]:
    loop = probe.loop

    def suspended(coroutine: Any) -> Any:
        coroutines.append(coroutine)
        return _started(coroutine)

    def task(coroutine: Any) -> Any:
        tasks.append(loop.create_task(coroutine))
        return tasks[-1]

    waits_a, waits_b = loop.create_future(), loop.create_future()
    task_a = task(suspended(_probe_wait(waits_a)))
    task_b = task(suspended(_probe_wait_other(waits_b)))
    cancelled, finished = loop.create_future(), loop.create_future()
    cancelled.cancel()
    finished.set_result(None)
    gathered = asyncio.gather(task_a, finished, task_b)
    callback_holder = loop.create_future()
    callback_holder.add_done_callback(_probe_wait)
    outer = asyncio.shield(task_a)
    shield_callback = next(callback for callback, _ in outer._callbacks)
    layout: Dict[str, Any] = {
        "future_iter_type": id(type(waits_a.__await__())),
        "future_type": id(asyncio.Future),
        "task_type": id(asyncio.Task),
        **_attribute_place("gathering", gathering_type),
        "iter_future": _offset_of([(waits_a.__await__(), waits_a), (task_b.__await__(), task_b)], "Future iterator"),
        "fut_state": _int_offset_of([(waits_a, 0), (task_a, 0), (cancelled, 1), (finished, 2)], "Future state"),
        "fut_callback0": _offset_of([(callback_holder, _probe_wait), (outer, shield_callback)], "Future callback"),
        "task_coro": _offset_of([(task_a, task_a.get_coro()), (task_b, task_b.get_coro())], "Task coroutine"),
        # the keys of attribute dicts are the interned attribute names
        "children_key": id(sys.intern("_children")),
        "tasks_key": id(sys.intern("_tasks")),
        "shield_code": 0,
        "shield_inner_cell": 0,
        "wait_for_code": 0,
        "taskgroup_codes": (0, 0),
        **_attribute_place("taskgroup", None),
    }
    freevars = shield_callback.__code__.co_freevars
    if "inner" in freevars:
        layout["shield_code"] = id(shield_callback.__code__)
        layout["shield_inner_cell"] = freevars.index("inner")

    def chain(coroutine: Any, pick: int = 0) -> List[Any]:
        return _engine._await_chain(coroutine, layout, pick)

    wait_a, wait_b = id(_probe_wait.__code__), id(_probe_wait_other.__code__)
    awaits = id(_probe_await.__code__)
    awaits_gather = suspended(_probe_await(gathered))
    checks = {
        "await task": chain(suspended(_probe_await(task_b))) == [awaits, wait_b],
        # the pending children in turn; the finished one is passed over
        "gather": [chain(awaits_gather, pick) for pick in range(3)]
        == [[awaits, wait_a], [awaits, wait_b], [awaits, wait_a]],
        "shield": chain(suspended(_probe_await(outer))) == [awaits, wait_a],
    }
    wait_for = asyncio.tasks.wait_for
    if sys.version_info < (3, 12) and wait_for.__code__.co_varnames[0] == "fut":
        # before 3.12 wait_for() awaits a Future of its own; the task is its local `fut`
        layout["wait_for_code"] = id(wait_for.__code__)
        with probe.in_task(task_a):
            waiting = suspended(wait_for(task_b, 1000))
        checks["wait_for"] = chain(waiting) == [id(wait_for.__code__), wait_b]
    task_group = getattr(asyncio, "TaskGroup", None)
    if task_group is not None:
        try:
            group_exit = _learn_taskgroup(probe, task_group, layout, suspended, task_a, tasks)
        except Exception:  # TaskGroup works differently here: it is not followed
            group_exit = None
        if group_exit is not None:
            exits = [code for code in layout["taskgroup_codes"] if code]
            checks["TaskGroup"] = sorted(chain(group_exit, pick) for pick in range(2)) == sorted(
                [exits + [wait_a], exits + [wait_b]]
            )
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise RuntimeError(f"the engine's reading of asyncio's {', '.join(failed)} does not match Python's")
    return layout


def _learn_taskgroup(
    probe: _ProbeLoop, task_group: type, layout: Dict[str, Any], suspended: Any, parent: Any, tasks: List[Any]
) -> Optional[Any]:
    """TaskGroup's exit awaits a plain Future; its tasks are in self._tasks, found from
    the exit coroutine's `self`. Fills in the layout's TaskGroup fields and returns a
    TaskGroup's exit waiting for two tasks, or None if it is not laid out as expected."""
    exits = [getattr(task_group, name, None) for name in ("__aexit__", "_aexit")]
    codes = [exit.__code__ for exit in exits if exit is not None]
    if not codes or any(code.co_varnames[:1] != ("self",) for code in codes):
        return None
    group = task_group()
    loop = probe.loop
    with probe.in_task(parent):
        try:
            group.__aenter__().send(None)
        except StopIteration:
            pass
        for coroutine in (_probe_wait(loop.create_future()), _probe_wait_other(loop.create_future())):
            tasks.append(group.create_task(suspended(coroutine)))
        group_exit = suspended(group.__aexit__(None, None, None))
    layout.update(_attribute_place("taskgroup", task_group))
    layout["taskgroup_codes"] = tuple(id(code) for code in codes) + (0,) * (2 - len(codes))
    return group_exit


def _attribute_place(name: str, cls: Optional[type]) -> Dict[str, int]:
    """Where instances of cls keep their attributes (pi_attr_place): a dict at a fixed
    offset, or (3.11+) a managed dict or values array."""
    if cls is None:
        return {f"{name}.type": 0, f"{name}.dict_offset": 0, f"{name}.basicsize": 0, f"{name}.inline_values": 0}
    managed = sys.version_info >= (3, 11) and bool(cls.__flags__ & (1 << 4))  # Py_TPFLAGS_MANAGED_DICT
    if not managed and cls.__dictoffset__ <= 0:
        raise RuntimeError(f"{cls.__name__} instances keep their attributes where the engine does not look")
    return {
        f"{name}.type": id(cls),
        f"{name}.dict_offset": 0 if managed else cls.__dictoffset__,
        f"{name}.basicsize": cls.__basicsize__,
        f"{name}.inline_values": int(sys.version_info >= (3, 13) and bool(cls.__flags__ & (1 << 2))),
    }
