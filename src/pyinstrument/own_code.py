"""The profiler's own frames: one rule, by the identity of its code.

Frames of the profiler's own code reach the samples when a tick meets ``start()`` or
``stop()`` at work, and the ``profile`` decorator's wrapper stands above the user's
call. They are told by their code objects: every function of ``pyinstrument.profiler``
(its classes' methods and the functions they define), taken when the module loads and
recorded in each session as (file, first line) pairs, so that what a report leaves out
does not depend on where the file is or what it is called. A session saved without them
(older ones, upstream's) falls back to the file: ``pyinstrument/profiler.py``.

Two kinds: the *machinery* (``Profiler.start``, ``stop``, ``__exit__`` ...) is left out
with everything it called, and its time taken off its callers; a *wrapper* (the
decorator's) is replaced by what it called.
"""

from __future__ import annotations

import re
import types
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from pyinstrument.frame_table import FrameInfo

MACHINERY = "machinery"
WRAPPER = "wrapper"
KINDS = (MACHINERY, WRAPPER)

#: (file, first line) of a code object -> its kind
OwnCode = Dict[Tuple[str, int], str]

#: the name of the decorator's wrappers in profile.__call__
_WRAPPER_NAME = "wrapper"


def profiler_code() -> OwnCode:
    """The profiler's own code, from the code objects of ``pyinstrument.profiler``."""
    global _PROFILER_CODE
    if _PROFILER_CODE is None:
        from pyinstrument import profiler

        found: OwnCode = {}
        for code in _module_codes(profiler):
            kind = WRAPPER if code.co_name == _WRAPPER_NAME else MACHINERY
            found[(code.co_filename, code.co_firstlineno)] = kind
        _PROFILER_CODE = found
    return _PROFILER_CODE


_PROFILER_CODE: Optional[OwnCode] = None


def _module_codes(module: types.ModuleType) -> Iterator[types.CodeType]:
    """Every code object of the functions and classes a module defines, and of the
    functions those define (the decorator's wrappers are inside ``__call__``)."""
    pending: List[types.CodeType] = []
    for value in vars(module).values():
        if getattr(value, "__module__", None) != module.__name__:
            continue
        members = vars(value).values() if isinstance(value, type) else [value]
        for member in members:
            function = getattr(member, "__func__", member)  # staticmethod, classmethod
            if isinstance(member, property):
                function = member.fget
            code = getattr(function, "__code__", None)
            if isinstance(code, types.CodeType):
                pending.append(code)
    while pending:
        code = pending.pop()
        yield code
        pending.extend(const for const in code.co_consts if isinstance(const, types.CodeType))


def to_json(own: Mapping[Tuple[str, int], str]) -> List[List[object]]:
    return [[path, line, kind] for (path, line), kind in own.items()]


def from_json(value: object) -> OwnCode:
    """What :func:`to_json` wrote. Raises ValueError when it is something else."""
    if not isinstance(value, list):
        raise ValueError("'profiler_code' is not a list")
    own: OwnCode = {}
    for item in value:
        if not (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and type(item[1]) is int
            and item[2] in KINDS
        ):
            raise ValueError("'profiler_code' holds something other than [file, first line, kind] entries")
        own[(item[0], item[1])] = item[2]
    return own


def kind_of(
    function: str,
    path: Optional[str],
    line: Optional[int],
    own: Optional[Mapping[Tuple[str, int], str]],
    class_name: Callable[[], Optional[str]] = lambda: None,
) -> Optional[str]:
    """MACHINERY, WRAPPER, or None (not the profiler's) for a frame; with ``own`` None
    (a session that did not record it), by the file name, and a method of Profiler by
    its name or its ``class_name`` (asked only then)."""
    if not path:
        return None
    if own is not None:
        return own.get((path, line if line is not None else -1))
    if "profiler.py" not in path or not _is_profiler_file(path):
        return None
    return MACHINERY if function.startswith("Profiler.") or class_name() == "Profiler" else WRAPPER


def may_contain(frames: Sequence[FrameInfo], own: Optional[Mapping[Tuple[str, int], str]]) -> bool:
    """Whether any of the frames may be the profiler's own code."""
    if own is None:
        return any("profiler.py" in frame.file for frame in frames)
    return any((frame.file, frame.first_line) in own for frame in frames)


def _is_profiler_file(path: str) -> bool:
    return re.search(r"(^|[/\\])pyinstrument[/\\]profiler\.py$", path) is not None
