"""The call tree: :class:`Frame` nodes and the code that builds them from frame records.

A *frame string* (as found in a session's ``frame_records``) looks like::

    function \\x00 file \\x00 first_line [\\x01 <letter><value>]...

The part before the first ``\\x01`` is the frame's *identifier*: two samples
whose frame strings have the same identifier belong to the same node of the
aggregated tree. The ``\\x01`` attributes (class name ``c``, current line ``l``,
traceback-hide flag ``h``) are not part of the identity; a node keeps, for each
attribute, how much time was recorded with it.

Everything here is iterative: profiled programs can be thousands of frames deep,
far beyond Python's recursion limit.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
from array import array
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

# the frame model; the markers are also this module's names, as they are upstream's
from pyinstrument.frame_table import (  # noqa: F401
    ATTRIBUTE_MARKER_CLASS_NAME,
    ATTRIBUTE_MARKER_LINE_NUMBER,
    ATTRIBUTE_MARKER_TRACEBACKHIDE,
    ATTRIBUTES_SEP,
    BUILTIN_FILE,
    IDENTIFIER_SEP,
    THREAD_FILE,
    FrameInfo,
    FrameKind,
    FrameTable,
)

# --- synthetic identifiers -------------------------------------------------------------------

#: time a function spent running its own code (not in a callee)
SELF_TIME_FRAME_IDENTIFIER = "[self]"
#: time a coroutine spent waiting in ``await`` (only found in sessions saved by
#: upstream pyinstrument's async mode; our engine does not produce it)
AWAIT_FRAME_IDENTIFIER = "[await]"
OUT_OF_CONTEXT_FRAME_IDENTIFIER = "[out-of-context]"
#: time a thread spent waiting for the GIL, under the frame that waited
GIL_WAIT_FRAME_IDENTIFIER = "[GIL wait]"
#: synthetic root used when a session has several roots (e.g. several threads)
ROOT_FRAME_IDENTIFIER = "[root]"

SYNTHETIC_LEAF_IDENTIFIERS = frozenset(
    [SELF_TIME_FRAME_IDENTIFIER, AWAIT_FRAME_IDENTIFIER, OUT_OF_CONTEXT_FRAME_IDENTIFIER, GIL_WAIT_FRAME_IDENTIFIER]
)


def frame_info_get_identifier(frame_info: str) -> str:
    """The identity part of a frame string (everything before the first attribute): the
    :attr:`FrameInfo.identifier` of the frame it names, without parsing it."""
    i = frame_info.find(ATTRIBUTES_SEP)
    return frame_info if i < 0 else frame_info[:i]


def parse_frame_info(frame_info: str) -> Tuple[str, Tuple[str, ...]]:
    """Split a frame string into ``(identifier, attributes)`` (upstream's helper)."""
    info = FrameInfo.parse(frame_info)
    return info.identifier, info.attributes


# --- context: what the tree needs to know about the profiled interpreter ------------------

_LIB_DIR_NAMES = ("site-packages", "dist-packages")
# Directories directly below an interpreter prefix that hold user code rather than the
# interpreter's libraries (``/usr/src/app`` is a common place for an application in a
# container whose Python lives in ``/usr``).
_NON_LIBRARY_DIRS_UNDER_PREFIX = frozenset(["src", "home", "srv", "app"])


#: file names of code the user typed or ran as text
_TYPED_CODE_FILES = (
    "<string>",
    "<stdin>",
    "<console>",
    "<input>",
    "<ipython-input-",
    "<pyinstrument-cell-",
    "<doctest ",
)
#: the file name of code run by exec() or eval() of a string
EXEC_FILE = "<string>"


def _is_dunder(function: str) -> bool:
    name = function.rsplit(".", 1)[-1]
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _norm_dir(path: str) -> str:
    if not path:
        return ""
    stripped = path.rstrip("/\\")
    return stripped if stripped else path[:1]


def _split_first_component(rest: str) -> str:
    for i, ch in enumerate(rest):
        if ch in "/\\":
            return rest[:i]
    return rest


class FrameContext:
    """Shared by all frames of one tree: sys.path and sys prefixes of the profiled
    process, with caches so that each file path is examined once."""

    __slots__ = (
        "sys_path",
        "sys_prefixes",
        "_short_cache",
        "_library_cache",
        "has_await",
        "may_have_importlib",
        "may_have_profiler",
        "profiler_code",
        "may_have_class_names",
        "may_have_tracebackhide",
        "_lib_name_cache",
    )

    def __init__(
        self,
        sys_path: Sequence[str] = (),
        sys_prefixes: Sequence[str] = (),
        profiler_code: Optional[Mapping[Tuple[str, int], str]] = None,
    ):
        #: the profiler's own code as the session recorded it (pyinstrument.own_code)
        self.profiler_code = profiler_code
        self.sys_path = [_norm_dir(p) for p in sys_path if p]
        self.sys_prefixes = [_norm_dir(p) for p in sys_prefixes if p]
        self._short_cache: Dict[str, str] = {}
        self._library_cache: Dict[str, bool] = {}
        # set by build_frame_tree after looking at every identifier; None = unknown
        self.has_await: Optional[bool] = None
        self.may_have_importlib: Optional[bool] = None
        self.may_have_profiler: Optional[bool] = None
        self.may_have_class_names: Optional[bool] = None
        self.may_have_tracebackhide: Optional[bool] = None
        self._lib_name_cache: Dict[str, Optional[str]] = {}

    def shorten_path(self, path: str) -> str:
        """``path`` relative to the sys.path entry that gives the shortest result;
        unchanged when it is under none of them."""
        cached = self._short_cache.get(path)
        if cached is not None:
            return cached
        result = path
        if not path.startswith("<"):
            for entry in self.sys_path:
                n = len(entry)
                if len(path) > n and path.startswith(entry):
                    if entry[-1] in "/\\":
                        candidate = path[n:]
                    elif path[n] in "/\\":
                        candidate = path[n + 1 :]
                    else:
                        continue
                    if candidate and len(candidate) < len(result):
                        result = candidate
        self._short_cache[path] = result
        return result

    def library_name(self, path: str) -> Optional[str]:
        """A name for the library a file belongs to: the first part of its short path
        (``re/__init__.py`` -> ``re``, ``six.py`` -> ``six``)."""
        try:
            return self._lib_name_cache[path]
        except KeyError:
            pass
        short = self.shorten_path(path)
        if not short:
            result: Optional[str] = None
        elif short.startswith("<"):
            result = short
        else:
            first = _split_first_component(short)
            if first.endswith(".py"):
                first = first[:-3]
            result = first or short
        self._lib_name_cache[path] = result
        return result

    def is_library_path(self, path: str) -> bool:
        """True for the interpreter's and installed packages' code."""
        cached = self._library_cache.get(path)
        if cached is not None:
            return cached
        result = self._compute_is_library(path)
        self._library_cache[path] = result
        return result

    def is_library_code(self, path: str, function: str) -> bool:
        """True for code that is not the application's: a library path (see
        :meth:`is_library_path`), or a function that ``exec`` generated in ``<string>``."""
        if path == EXEC_FILE and _is_dunder(function):
            # dataclasses (__init__, __repr__, __eq__ ...) and namedtuple write these
            return True
        return self.is_library_path(path)

    def _compute_is_library(self, path: str) -> bool:
        if path.startswith("<"):
            # Code the user typed or ran as text (<stdin>, <string> of -c and exec,
            # IPython's cells) is the application's; every other <name> is the
            # interpreter's (<built-in>, <frozen ...>) or code a library generated
            # (<attrs generated init ...>, <decorator-gen-N> ...).
            return not path.startswith(_TYPED_CODE_FILES)
        parts = re.split(r"[/\\]", path)
        for name in _LIB_DIR_NAMES:
            if name in parts:
                return True
        for prefix in self.sys_prefixes:
            n = len(prefix)
            if len(path) > n and path.startswith(prefix) and (prefix[-1] in "/\\" or path[n] in "/\\"):
                rest = path[n:].lstrip("/\\")
                if _split_first_component(rest) in _NON_LIBRARY_DIRS_UNDER_PREFIX:
                    continue
                return True
        return False


_DEFAULT_CONTEXT = FrameContext()


# --- the tree node -------------------------------------------------------------------------


class Frame:
    """A node of the call tree.

    ``time`` is the total wall-clock time (seconds) of the node including its
    children, ``cpu_time`` likewise for CPU time. Time spent in the function
    itself is represented by a synthetic ``[self]`` child while the tree is
    being processed; :attr:`total_self_time` gives it regardless of how it is
    stored.
    """

    __slots__ = (
        "identifier",
        "time",
        "cpu_time",
        "absorbed_time",
        "attributes",
        "group",
        "parent",
        "_children",
        "_context",
        "_info",
    )

    def __init__(
        self,
        identifier: str = "",
        children: Optional[Sequence["Frame"]] = None,
        time: float = 0.0,
        context: Optional[Any] = None,  # a FrameContext, or a Session (upstream passes one)
        *,
        cpu_time: float = 0.0,
        attributes: Optional[Dict[str, float]] = None,
        identifier_or_frame_info: Optional[str] = None,
    ):
        if identifier_or_frame_info is not None:  # upstream's name for the first argument
            identifier = identifier_or_frame_info
        if context is not None and not isinstance(context, FrameContext):
            context = context.frame_context()  # upstream passes the Session itself
        attrs: Tuple[str, ...] = ()
        self._info: Optional[FrameInfo] = None
        if ATTRIBUTES_SEP in identifier:
            self._info = FrameInfo.parse(identifier)
            identifier, attrs = self._info.identifier, self._info.attributes
        self.identifier = identifier
        self.time = float(time)
        self.cpu_time = float(cpu_time)
        # time of frames a processor removed without moving it to a child (upstream's)
        self.absorbed_time = 0.0
        self.attributes: Dict[str, float] = dict(attributes) if attributes else {}
        for a in attrs:
            self.attributes[a] = self.attributes.get(a, 0.0) + self.time
        self.group: Optional[FrameGroup] = None
        self.parent: Optional[Frame] = None
        self._children: List[Frame] = []
        self._context = context
        if children:
            self.add_children(children)

    # -- identity -------------------------------------------------------------------------

    @property
    def frame_info(self) -> FrameInfo:
        """What the frame is, as the frame model has it (its identity: the time at each
        line, class name and flag are in :attr:`attributes`)."""
        info = self._info
        if info is None:  # made by upstream's API, from its identifier alone
            info = self._info = FrameInfo.parse(self.identifier)
        return info

    def _identifier_parts(self) -> Tuple[str, Optional[str], Optional[int]]:
        """(name, file, first line): None for what a synthetic frame does not have."""
        info = self.frame_info
        if info.kind == FrameKind.SYNTHETIC:
            return info.function, None, None
        return info.function, info.file, info.first_line

    @property
    def qualname(self) -> str:
        """The name as recorded: a code frame's qualified name (``K.meth``,
        ``outer.<locals>.inner``), a C function's, a thread's or a synthetic frame's."""
        return self._identifier_parts()[0]

    def _qualname_split(self) -> Tuple[Optional[str], str]:
        """(class, own name) of a code frame's qualified name, as upstream names them:
        ``K.meth`` -> (``K``, ``meth``), ``outer.<locals>.inner`` -> (None, ``inner``),
        ``f.<locals>.K.meth`` -> (``K``, ``meth``). Other frames keep their name whole."""
        info = self.frame_info
        name = info.function
        if "." not in name or info.kind != FrameKind.CODE:
            return None, name
        scope, _, own = name.rpartition(".")
        owner = scope.rsplit("<locals>", 1)[-1].lstrip(".")
        return owner or None, own

    @property
    def function(self) -> str:
        """The function's own name (``meth``, ``inner``), as upstream's; with its class:
        :attr:`display_name`; as recorded: :attr:`qualname`."""
        return self._qualname_split()[1]

    @property
    def file_path(self) -> Optional[str]:
        """The file of the code; synthetic frames report their parent's file."""
        if self.is_synthetic:
            parent = self.parent
            while parent is not None and parent.is_synthetic:
                parent = parent.parent
            return parent.file_path if parent is not None else None
        return self._identifier_parts()[1]

    @property
    def line_no(self) -> Optional[int]:
        """First line of the function (None for synthetic frames)."""
        if self.is_synthetic:
            return None
        return self._identifier_parts()[2]

    @property
    def is_synthetic(self) -> bool:
        """``[self]``, ``[await]``, ``[root]``... nodes that are not a code frame."""
        return self.frame_info.kind == FrameKind.SYNTHETIC

    @property
    def is_synthetic_leaf(self) -> bool:
        return self.identifier in SYNTHETIC_LEAF_IDENTIFIERS

    @property
    def is_self_time(self) -> bool:
        return self.identifier == SELF_TIME_FRAME_IDENTIFIER

    @property
    def is_thread(self) -> bool:
        return self.frame_info.kind == FrameKind.THREAD

    @property
    def is_root_placeholder(self) -> bool:
        return self.identifier == ROOT_FRAME_IDENTIFIER

    # -- attributes -----------------------------------------------------------------------

    def record_time_from_frame_info(self, frame_info: str, time: float, cpu_time: float = 0.0) -> None:
        """Add ``time`` to this frame, crediting the attributes found in ``frame_info``."""
        self.time += time
        self.cpu_time += cpu_time
        i = frame_info.find(ATTRIBUTES_SEP)
        if i >= 0:
            attributes = self.attributes
            for a in frame_info[i + 1 :].split(ATTRIBUTES_SEP):
                if a:
                    attributes[a] = attributes.get(a, 0.0) + time

    def get_attribute_value(self, marker: str) -> Optional[str]:
        """The value of the attribute with that marker letter that has the most time."""
        best: Optional[str] = None
        best_time = -1.0
        for key, t in self.attributes.items():
            if key[:1] == marker and t > best_time:
                best, best_time = key[1:], t
        return best

    @property
    def class_name(self) -> Optional[str]:
        """The class of a method: recorded with the frame (upstream's sessions), else
        from its qualified name."""
        context = self._context
        if context is None or context.may_have_class_names is not False:
            recorded = self.get_attribute_value(ATTRIBUTE_MARKER_CLASS_NAME)
            if recorded:
                return recorded
        return self._qualname_split()[0]

    @property
    def has_tracebackhide(self) -> bool:
        return ATTRIBUTE_MARKER_TRACEBACKHIDE + "1" in self.attributes

    def line_times(self) -> Dict[int, float]:
        """Time recorded at each current line number of the function."""
        result: Dict[int, float] = {}
        for key, t in self.attributes.items():
            if key[:1] == ATTRIBUTE_MARKER_LINE_NUMBER:
                try:
                    line = int(key[1:])
                except ValueError:
                    continue
                result[line] = result.get(line, 0.0) + t
        return result

    @property
    def is_all_threads_root(self) -> bool:
        """The ``[root]`` above one thread frame per thread."""
        return self.is_root_placeholder and bool(self._children) and all(c.is_thread for c in self._children)

    @property
    def display_name(self) -> str:
        """``Class.function`` when the class is known, else the function's own name; a
        thread's name (with ``#1``, ``#2``... when threads beside it share it)."""
        if self.is_synthetic:
            return "[all threads]" if self.is_all_threads_root else self.qualname
        if self.is_thread:
            return self._thread_label()
        function = self.function
        class_name = self.class_name
        return f"{class_name}.{function}" if class_name else function

    # -- context-dependent ----------------------------------------------------------------

    @property
    def context(self) -> FrameContext:
        frame: Optional[Frame] = self
        while frame is not None:
            if frame._context is not None:
                return frame._context
            frame = frame.parent
        return _DEFAULT_CONTEXT

    def set_context(self, context: FrameContext) -> None:
        self._context = context

    @property
    def file_path_short(self) -> Optional[str]:
        path = self.file_path
        if path is None:
            return None
        return self.context.shorten_path(path)

    @property
    def is_application_code(self) -> bool:
        if self.is_synthetic or self.is_thread:
            return False
        path = self._identifier_parts()[1]
        if not path:
            return False
        return not self.context.is_library_code(path, self.function)

    @property
    def library(self) -> Optional[str]:
        """A name for the library the code belongs to (first part of the short path)."""
        path = self.file_path
        if not path:
            return None
        return self.context.library_name(path)

    def _thread_label(self) -> str:
        name = self.function
        parent = self.parent
        if parent is None:
            return name
        # the same name on several threads: numbered in the order of their idents, as
        # the HTML report does
        namesakes = sorted(c.line_no or 0 for c in parent._children if c.is_thread and c.function == name)
        if len(namesakes) < 2:
            return name
        return f"{name} #{namesakes.index(self.line_no or 0) + 1}"

    @property
    def code_position_short(self) -> Optional[str]:
        """``short/path.py:line``; None for frames that are no code (threads, [self]...)."""
        if self.is_thread:
            return None  # its "line" is the thread's ident: noise in a report
        short = self.file_path_short
        if short is None:
            return None
        line = self.line_no
        if line:
            return f"{short}:{line}"
        return short

    # -- times ----------------------------------------------------------------------------

    @property
    def total_self_time(self) -> float:
        """Time spent in this function itself: its ``[self]``/``[await]`` children plus
        any time not accounted for by its code children (e.g. absorbed small calls)."""
        return self._beyond_code_children("time")

    @property
    def self_time(self) -> float:
        """Time not accounted for by any child (including synthetic children)."""
        t = self.time
        for child in self._children:
            t -= child.time
        return max(t, 0.0)

    @property
    def total_self_cpu_time(self) -> float:
        """CPU time counterpart of :attr:`total_self_time`."""
        return self._beyond_code_children("cpu_time")

    def _beyond_code_children(self, attribute: str) -> float:
        """This frame's ``time`` or ``cpu_time`` less that of its code (non-synthetic) children."""
        own = getattr(self, attribute)
        if self.is_synthetic_leaf:
            return own
        for child in self._children:
            if not child.is_synthetic_leaf:
                own -= getattr(child, attribute)
        return max(own, 0.0)

    def await_time(self) -> float:
        """Time spent awaiting in this subtree: the ``[await]`` frames in it (a method, as
        upstream's)."""
        if self.identifier == AWAIT_FRAME_IDENTIFIER:
            return self.time
        if self.context.has_await is False:
            return 0.0
        total = 0.0
        for frame in self.iter_subtree():
            if frame.identifier == AWAIT_FRAME_IDENTIFIER:
                total += frame.time
        return total

    @property
    def proportion_of_parent(self) -> float:
        parent = self.parent
        if parent is None or parent.time <= 0:
            return 1.0
        return self.time / parent.time

    # -- tree structure -------------------------------------------------------------------

    @property
    def children(self) -> List["Frame"]:
        """A copy of the list of children (modify the tree with add/remove methods)."""
        return list(self._children)

    def add_child(self, frame: "Frame", after: Optional["Frame"] = None) -> None:
        if frame.parent is not None:
            frame.remove_from_parent()
        frame.parent = self
        if after is None:
            self._children.append(frame)
        else:
            self._children.insert(self._children.index(after) + 1, frame)

    def add_children(self, frames: Sequence["Frame"], after: Optional["Frame"] = None) -> None:
        frames = list(frames)
        if after is None:
            for frame in frames:
                self.add_child(frame)
            return
        for frame in frames:
            if frame.parent is not None:
                frame.remove_from_parent()
            frame.parent = self
        i = self._children.index(after) + 1
        self._children[i:i] = frames

    def remove_from_parent(self) -> None:
        parent = self.parent
        if parent is not None:
            siblings = parent._children
            # identity comparison: Frame does not define __eq__, list.remove uses `is` first
            for i in range(len(siblings) - 1, -1, -1):
                if siblings[i] is self:
                    del siblings[i]
                    break
        self.parent = None

    def _set_children(self, children: List["Frame"]) -> None:
        """Replace the children list wholesale (children must already point to self)."""
        self._children = children

    def iter_subtree(self) -> Iterator["Frame"]:
        """All frames of this subtree, depth first, parents before children."""
        stack = [self]
        while stack:
            frame = stack.pop()
            yield frame
            stack.extend(reversed(frame._children))

    def self_check(self, recursive: bool = True) -> None:
        """Assert the tree invariants (used by tests); ``recursive=False`` checks this
        frame and its children only."""
        for frame in self.iter_subtree() if recursive else [self]:
            child_total = 0.0
            for child in frame._children:
                assert child.parent is frame, "child's parent is wrong"
                child_total += child.time
            assert child_total <= frame.time + 1e-9 * max(1.0, frame.time), (
                f"children of {frame.identifier!r} take more time than it"
            )

    def to_json_str(self) -> str:
        """This subtree as JSON: identifier, time, attributes and children (upstream's
        format). Built without recursion, so that deep trees do not overflow the stack."""
        encode = json.encoder.encode_basestring
        parts: List[str] = []
        work: List[Optional[Frame]] = [self]  # None: close the frame opened before it
        while work:
            frame = work.pop()
            if frame is None:
                parts.append("]}")
                continue
            if parts and not parts[-1].endswith("["):
                parts.append(",")
            parts.append(
                '{"identifier": %s,"time": %f,"attributes": %s,"children": ['
                % (encode(frame.identifier), frame.time, json.dumps(frame.attributes))
            )
            work.append(None)
            work.extend(reversed(frame._children))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"Frame(identifier={self.display_name!r}, time={self.time:.6f}, children={len(self._children)})"


class FrameGroup:
    """Library frames folded together below a visible frame (``root``)."""

    __slots__ = ("id", "root", "frames", "hidden_frames", "exit_frames", "_hidden_ids")

    _counter = 0

    def __init__(self, root: Frame):
        FrameGroup._counter += 1
        self.id = f"g{FrameGroup._counter}"
        self.root = root
        self.frames: List[Frame] = []
        self.hidden_frames: List[Frame] = []
        self.exit_frames: List[Frame] = []
        self._hidden_ids: set = set()

    def set_hidden_frames(self, frames: List[Frame]) -> None:
        self.hidden_frames = list(frames)
        self._hidden_ids = {id(f) for f in frames}

    def is_hidden(self, frame: Frame) -> bool:
        """Whether ``frame`` is folded away (not printed) in this group."""
        return id(frame) in self._hidden_ids

    def add_frame(self, frame: Frame) -> None:
        frame.group = self
        self.frames.append(frame)

    @property
    def libraries(self) -> List[str]:
        """Libraries of the hidden frames, most time first."""
        return libraries_of(self.hidden_frames)

    def __repr__(self) -> str:
        return f"FrameGroup(root={self.root!r}, frames={len(self.frames)}, hidden={len(self.hidden_frames)})"


# --- building trees from records -------------------------------------------------------------


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while creating many objects (building or
    rendering a big tree): its repeated full scans would otherwise dominate."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _make_child(
    parent: Frame, identifier: str, context: Optional[FrameContext], info: Optional[FrameInfo] = None
) -> Frame:
    """A new last child of ``parent``; ``info``, when given, is the frame ``identifier`` names."""
    child = Frame.__new__(Frame)
    child.identifier = identifier
    child.time = 0.0
    child.cpu_time = 0.0
    child.absorbed_time = 0.0
    child.attributes = {}
    child.group = None
    child.parent = parent
    child._children = []
    child._context = context
    child._info = info
    parent._children.append(child)
    return child


def _scan_frames(frames: Sequence[FrameInfo], context: FrameContext) -> None:
    """Note which kinds of frames the tree contains, so processors with nothing to
    do can return at once."""
    from pyinstrument import own_code

    context.may_have_importlib = any("<frozen importlib._bootstrap" in f.identifier for f in frames)
    context.may_have_profiler = own_code.may_contain(frames, context.profiler_code)
    context.may_have_class_names = any(f.class_name for f in frames)
    context.may_have_tracebackhide = any(f.hides for f in frames)


def _identity(info: FrameInfo) -> FrameInfo:
    """A frame without what a node of the tree keeps per sample (line, class, flags)."""
    return FrameInfo(info.function, info.file, info.first_line, info.kind)


def build_frame_tree(
    frame_records: Sequence[Tuple[Sequence[str], float]],
    context: Optional[FrameContext] = None,
    *,
    frame_records_cpu: Optional[Sequence[float]] = None,
    order: Optional[Sequence[Tuple[int, float]]] = None,
    merge: bool = True,
) -> Frame:
    """Build a call tree below a synthetic ``[root]`` frame.

    With ``merge`` (the aggregated view) frames with the same identifier under the
    same parent are one node. Without it (the timeline view) a sample only extends
    the previous sample's path: a call is merged with the parent's *last* child only,
    so calls separated by something else stay separate, in chronological order.

    ``order`` (the timeline view only) is a sequence of ``(record_index, seconds)``
    giving the chronological order of samples (the session's timeline); without it the
    records are used in list order.

    Time a frame spent in its own code goes to a ``[self]`` child when the frame
    also has callees; a frame without callees keeps it as its own time.
    """
    table = FrameTable.from_records(frame_records, frame_records_cpu)
    if merge:
        if order is not None:
            raise ValueError("order is for the timeline view (merge=False)")
        return build_frame_tree_from_table(table, context)
    return build_timeline_tree_from_table(table, context, order)


def build_timeline_tree_from_table(
    table: FrameTable, context: Optional[FrameContext] = None, order: Optional[Iterable[Tuple[int, float]]] = None
) -> Frame:
    """The chronological call tree (``build_frame_tree(..., merge=False)``) of a frame
    table's records, in the order of ``order`` (``(record index, seconds)`` pairs, the
    session's timeline) or else of the records."""
    with gc_paused():
        return _build_timeline_tree(table, context, order)


def _build_timeline_tree(
    table: FrameTable, context: Optional[FrameContext], order: Optional[Iterable[Tuple[int, float]]]
) -> Frame:
    root = Frame(ROOT_FRAME_IDENTIFIER, context=context)
    identities = [_identity(info) for info in table.frames]
    identifiers = [info.identifier for info in identities]
    attributes_of = [info.attributes for info in table.frames]
    record_node, record_seconds, cpu = table.record_node, table.record_seconds, table.record_cpu
    items: Iterable[Tuple[int, float]] = enumerate(record_seconds) if order is None else order

    has_await = False
    # Each thread has its own timeline: samples of different threads interleave,
    # so thread frames at the top are merged and each keeps its own current path.
    main_path: List[Frame] = [root]
    thread_paths: Dict[str, List[Frame]] = {}
    # consecutive samples of the same stack are one stretch of time: add them up
    # first (a function running for a second is a thousand identical samples)
    runs: List[List[Any]] = []
    previous_node: Optional[int] = None
    for record_index, seconds in items:
        record_wall = record_seconds[record_index]
        if not record_wall:
            continue  # a record of no time marks time that passed without a sample
        seconds = float(seconds)
        c = 0.0
        if cpu is not None:
            c = cpu[record_index]
            if order is not None:
                c = c * (seconds / record_wall)
        node = record_node[record_index]
        if node == previous_node:
            run = runs[-1]
            run[1] += seconds
            run[2] += c
        else:
            runs.append([node, seconds, c])
            previous_node = node
    for node, seconds, c in runs:
        root.time += seconds
        root.cpu_time += c
        path = main_path
        frames = table.stack_frames(node)
        if frames and identities[frames[0]].kind == FrameKind.THREAD:
            first = frames[0]
            path = thread_paths.get(identifiers[first])  # type: ignore[assignment]
            if path is None:
                path = thread_paths[identifiers[first]] = [
                    _make_child(root, identifiers[first], context, identities[first])
                ]
            thread = path[0]
            thread.time += seconds
            thread.cpu_time += c
            attributes = thread.attributes
            for a in attributes_of[first]:
                attributes[a] = attributes.get(a, 0.0) + seconds
            frames = frames[1:]
        base = path[0]
        depth = 0
        diverged = False
        for frame_index in frames:
            depth += 1
            identifier = identifiers[frame_index]
            child = None
            if not diverged and depth < len(path):
                candidate = path[depth]
                if candidate.identifier == identifier:
                    child = candidate
            if child is None:
                if not diverged:
                    del path[depth:]
                    diverged = True
                child = _make_child(path[depth - 1], identifier, context, identities[frame_index])
                path.append(child)
            child.time += seconds
            child.cpu_time += c
            attributes = child.attributes
            for a in attributes_of[frame_index]:
                attributes[a] = attributes.get(a, 0.0) + seconds
        if not diverged:
            del path[depth + 1 :]
        leaf = path[-1]
        if leaf is not root and not leaf.is_synthetic_leaf and not (leaf is base and not frames):
            # chronological: self time after a callee is a new [self] segment
            last = leaf._children[-1] if leaf._children else None
            if last is None or last.identifier != SELF_TIME_FRAME_IDENTIFIER:
                last = _make_child(leaf, SELF_TIME_FRAME_IDENTIFIER, context)
            last.time += seconds
            last.cpu_time += c
        elif leaf.identifier == AWAIT_FRAME_IDENTIFIER:
            has_await = True
    if context is not None:
        # only ever from unknown to known: a context may serve several trees
        context.has_await = has_await or bool(context.has_await)
        _scan_frames(table.frames, context)
    return root


def build_frame_tree_from_table(table: FrameTable, context: Optional[FrameContext] = None) -> Frame:
    """The aggregated call tree (as ``build_frame_tree(..., merge=True)``) of a frame
    table's records, below a synthetic ``[root]`` frame: one step per node of the
    table's stack trie, however many records share it."""
    with gc_paused():
        return _build_frame_tree_from_table(table, context)


def _build_frame_tree_from_table(table: FrameTable, context: Optional[FrameContext]) -> Frame:
    root = Frame(ROOT_FRAME_IDENTIFIER, context=context)
    parents, node_frames = table.node_parent, table.node_frame
    count = len(parents)
    own_wall, own_cpu = table.node_times()
    on_a_record = bytearray(count)  # nodes no record stands on or below make no frame
    for node in table.record_node:
        while node >= 0 and not on_a_record[node]:
            on_a_record[node] = 1
            node = parents[node]
    total_wall, total_cpu = array("d", own_wall), array("d", own_cpu)
    for node in range(count - 1, -1, -1):  # callees come after their callers
        caller = parents[node]
        if caller >= 0:
            total_wall[caller] += total_wall[node]
            total_cpu[caller] += total_cpu[node]
    root.time = sum(table.record_seconds)
    root.cpu_time = sum(table.record_cpu) if table.record_cpu is not None else 0.0

    identities = [_identity(info) for info in table.frames]
    identifiers = [info.identifier for info in identities]
    attributes_of = [info.attributes for info in table.frames]
    frame_of_node: List[Optional[Frame]] = [None] * count
    # (id of the parent frame, identifier) -> frame: the same function at different
    # current lines is one frame
    children: Dict[Tuple[int, str], Frame] = {}
    self_times: Dict[int, List[Any]] = {}
    has_await = False
    for node in range(count):
        if not on_a_record[node]:
            continue
        parent_node = parents[node]
        parent = root if parent_node < 0 else frame_of_node[parent_node]
        assert parent is not None
        index = node_frames[node]
        identifier, attrs = identifiers[index], attributes_of[index]
        key = (id(parent), identifier)
        frame = children.get(key)
        if frame is None:
            frame = children[key] = _make_child(parent, identifier, context, identities[index])
        frame_of_node[node] = frame
        wall = total_wall[node]
        frame.time += wall
        frame.cpu_time += total_cpu[node]
        if attrs:
            attributes = frame.attributes
            for a in attrs:
                attributes[a] = attributes.get(a, 0.0) + wall
        if own_wall[node] or own_cpu[node]:
            entry = self_times.get(id(frame))
            if entry is None:
                self_times[id(frame)] = [frame, own_wall[node], own_cpu[node]]
            else:
                entry[1] += own_wall[node]
                entry[2] += own_cpu[node]
            if identifier == AWAIT_FRAME_IDENTIFIER:
                has_await = True
    del children, frame_of_node
    for frame, seconds, c in self_times.values():
        if frame._children and not frame.is_synthetic_leaf:
            self_frame = _make_child(frame, SELF_TIME_FRAME_IDENTIFIER, context)
            self_frame.time = seconds
            self_frame.cpu_time = c
    if context is not None:
        # only ever from unknown to known: a context may serve several trees
        context.has_await = has_await or bool(context.has_await)
        _scan_frames(table.frames, context)
    return root


def dispose_tree(root: Optional[Frame]) -> None:
    """Break the parent/child and group reference cycles of a tree that is no longer
    needed, so it is freed at once by reference counting instead of by a later (and
    slower) garbage-collector pass."""
    if root is None:
        return
    stack = [root]
    while stack:
        frame = stack.pop()
        frame.parent = None
        frame.group = None
        stack.extend(frame._children)


def walk_postorder(root: Frame) -> Iterator[Frame]:
    """All frames of the subtree, children before their parent."""
    stack: List[Tuple[Frame, bool]] = [(root, False)]
    while stack:
        frame, expanded = stack.pop()
        if expanded:
            yield frame
        else:
            stack.append((frame, True))
            for child in reversed(frame._children):
                stack.append((child, False))


def is_path_in_package(path: Optional[str], package: str) -> bool:
    """True when ``path`` is a file inside a directory named ``package``."""
    if not path:
        return False
    parts = re.split(r"[/\\]", path)
    return package in parts[:-1]


def libraries_of(frames: List[Frame]) -> List[str]:
    """The libraries the frames belong to, the one with most self time first."""
    times: Dict[str, float] = {}
    for frame in frames:
        if frame.is_synthetic:
            continue
        lib = frame.library
        if lib:
            times[lib] = times.get(lib, 0.0) + frame.total_self_time
    return sorted(times, key=lambda k: (-times[k], k))
