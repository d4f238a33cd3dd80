"""Compatibility with code written against upstream pyinstrument's internals.

Upstream pyinstrument has a module ``pyinstrument.stack_sampler``: its sampler is a
per-thread object driven by ``sys.setprofile``, and code outside the profiler (upstream's
own test suite, and tools built on it) looks at it: ``get_stack_sampler().subscribers``
(the profilers sampling the calling thread), ``thread_locals`` (where the per-thread
sampler lives) and ``get_stack_sampler().timer_func`` (a replacement clock).

Our sampling engine is written in C and has no such object, so this module offers just
those names, with the same meaning where there is one:

- ``get_stack_sampler().subscribers``: the profilers running now that were started in
  the calling thread (a fresh list each time it is read).
- ``thread_locals``: a ``threading.local()``; nothing of ours is kept there, so clearing
  it is harmless.
- ``get_stack_sampler().timer_func``: can be set (to a function returning the time, or
  None), and reads back what was set, but our engine does not use it: samples are
  timed by the engine's own clock.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional

__all__ = ["StackSampler", "get_stack_sampler", "thread_locals"]

thread_locals = threading.local()


class StackSampler:
    """Stands for upstream's per-thread sampler; see the module's docstring."""

    def __init__(self) -> None:
        # not used by our engine (it times samples with its own clock)
        self.timer_func: Optional[Callable[[], float]] = None

    @property
    def subscribers(self) -> List[Any]:
        """The profilers running now that were started in the calling thread."""
        from pyinstrument.profiler import running_profilers

        return list(running_profilers(threading.get_ident()))


_SAMPLER = StackSampler()


def get_stack_sampler() -> StackSampler:
    """The one sampler object (upstream has one per thread; ours answers per calling thread)."""
    return _SAMPLER
