"""Tree processors: plain functions ``(frame, options) -> frame | None``.

Each one takes the root of a call tree (or None) and the renderer's
``processor_options`` dict, may modify the tree in place, and returns the new root
(None when nothing is left). Renderers apply them in the order given by
``FrameRenderer.default_processors()``.

Options read here:

- ``filter_threshold`` (default 0.01): frames taking less than this fraction of the
  root's time are folded into their parent (``remove_irrelevant_nodes``);
- ``hide_regex``: library grouping hides frames whose file path matches;
- ``show_regex``: library grouping never hides frames whose file path matches.

All of them are iterative and linear in the size of the tree.
"""

from __future__ import annotations

import re
from operator import attrgetter
from typing import Any, Callable, Dict, List, Optional, Tuple

from pyinstrument import own_code
from pyinstrument.frame import (
    BUILTIN_FILE,
    GIL_WAIT_FRAME_IDENTIFIER,
    SELF_TIME_FRAME_IDENTIFIER,
    Frame,
    FrameGroup,
    is_path_in_package,
)

ProcessorOptions = Dict[str, Any]

DEFAULT_FILTER_THRESHOLD = 0.01
#: a hidden library frame whose own time is above this share of the total stays visible
LARGE_SELF_TIME_SHARE = 0.2

_by_time = attrgetter("time")


# --- helpers ---------------------------------------------------------------------------------


def _splice_out(frame: Frame, should_remove: Callable[[Frame], bool]) -> None:
    """Remove every frame below ``frame`` for which ``should_remove`` is true, moving
    its children up to take its place. The removed frame's own time stays in the
    parent's time (it becomes the parent's own time)."""
    stack = [frame]
    while stack:
        node = stack.pop()
        children = node._children
        for child in children:
            if should_remove(child):
                break
        else:
            stack.extend(children)
            continue
        new_children: List[Frame] = []
        pending = list(reversed(children))
        while pending:
            child = pending.pop()
            if should_remove(child):
                grandchildren = child._children
                child._children = []
                child.parent = None
                if grandchildren:
                    pending.extend(reversed(grandchildren))
                elif not child.is_synthetic and (child.time > 0 or child.cpu_time > 0):
                    # a removed frame without callees: its time is its caller's own time
                    self_frame = Frame(SELF_TIME_FRAME_IDENTIFIER, time=child.time, cpu_time=child.cpu_time)
                    self_frame.parent = node
                    new_children.append(self_frame)
            else:
                child.parent = node
                new_children.append(child)
        node._set_children(new_children)
        stack.extend(new_children)


def _add_self_time(frame: Frame, time: float, cpu_time: float) -> None:
    if time <= 0 and cpu_time <= 0:
        return
    self_frame = Frame(SELF_TIME_FRAME_IDENTIFIER, time=time, cpu_time=cpu_time)
    self_frame.parent = frame
    frame._children.append(self_frame)


def _merge_into(target: Frame, other: Frame) -> None:
    """Add ``other``'s time, attributes and children to ``target`` (same identifier)."""
    # A frame without children keeps its own time implicitly; once the merged frame
    # has children that time must be a [self] node, or it would look absorbed.
    if not target._children and other._children and not target.is_synthetic:
        _add_self_time(target, target.time, target.cpu_time)
    elif target._children and not other._children and not other.is_synthetic:
        _add_self_time(target, other.time, other.cpu_time)
        target.time += other.time
        target.cpu_time += other.cpu_time
        _merge_attributes(target, other)
        other.parent = None
        return
    target.time += other.time
    target.cpu_time += other.cpu_time
    _merge_attributes(target, other)
    for child in other._children:
        child.parent = target
    target._children.extend(other._children)
    other._children = []
    other.parent = None


def _merge_attributes(target: Frame, other: Frame) -> None:
    attributes = target.attributes
    for key, t in other.attributes.items():
        attributes[key] = attributes.get(key, 0.0) + t


def _context_says_none(frame: Frame, flag: str) -> bool:
    """True when the tree was built by build_frame_tree and it found no frame of the
    kind ``flag`` names (so a processor has nothing to do)."""
    context = frame._context
    return context is not None and getattr(context, flag) is False


# --- processors ------------------------------------------------------------------------------


def remove_importlib(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """Remove the import machinery's frames (``<frozen importlib._bootstrap>`` and
    ``_bootstrap_external``); the modules being imported move up to the importer."""
    if frame is None or _context_says_none(frame, "may_have_importlib"):
        return frame

    def is_importlib(f: Frame) -> bool:
        identifier = f.identifier
        if "<frozen importlib._bootstrap" not in identifier:
            return False
        path = f._identifier_parts()[1]
        return path is not None and "<frozen importlib._bootstrap" in path

    _splice_out(frame, is_importlib)
    return frame


def remove_tracebackhide(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """Remove frames of functions that set ``__tracebackhide__``; their callees move up."""
    if frame is None or _context_says_none(frame, "may_have_tracebackhide"):
        return frame
    stack = [frame]
    found = False
    while stack:
        node = stack.pop()
        if "h1" in node.attributes:
            found = True
            break
        stack.extend(node._children)
    if not found:
        return frame
    _splice_out(frame, lambda f: "h1" in f.attributes)
    return frame


def _profiler_kind(frame: Frame) -> Optional[str]:
    """own_code.MACHINERY or WRAPPER for the profiler's own frames, else None."""
    if frame.is_synthetic:
        return None
    function, path, line = frame._identifier_parts()
    return own_code.kind_of(function, path, line, frame.context.profiler_code, lambda: frame.class_name)


def _is_profiler_frame(frame: Frame) -> bool:
    return _profiler_kind(frame) is not None


def _is_profiler_machinery(frame: Frame) -> bool:
    """A method of the Profiler class itself (start, stop, __exit__...)."""
    return _profiler_kind(frame) == own_code.MACHINERY


def _calls_other_code(frame: Frame) -> bool:
    """Whether the subtree reaches code outside pyinstrument (other than built-in
    functions), not counting what the Profiler's own methods call."""
    stack = list(frame._children)
    while stack:
        node = stack.pop()
        if node.is_synthetic:
            continue
        path = node._identifier_parts()[1]
        if _is_profiler_frame(node) and _is_profiler_machinery(node):
            continue
        if path and not path.startswith(BUILTIN_FILE) and not is_path_in_package(path, "pyinstrument"):
            return True
        stack.extend(node._children)
    return False


def _resolve_profiler_frame(frame: Frame) -> List[Frame]:
    """What takes the place of ``frame`` once profiler frames are gone: the frame itself
    (not profiler code), nothing (the Profiler's own work), or the code that a wrapper
    in profiler.py (the ``profile`` decorator) called."""
    if not _is_profiler_frame(frame):
        return [frame]
    if _is_profiler_machinery(frame) or not _calls_other_code(frame):
        return []
    result: List[Frame] = []
    for child in frame._children:
        if not child.is_synthetic:  # the wrapper's own time is overhead too
            result.extend(_resolve_profiler_frame(child))
    return result


def remove_profiler_frames(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """Remove the profiler's own code (``pyinstrument/profiler.py``).

    The Profiler's methods (start, stop, ``__exit__``), which can appear in the first
    or last samples, are dropped with everything they called, and their time is taken
    off their callers. Other functions there (the wrapper that the ``profile``
    decorator puts around a function) are replaced by what they called.
    """
    if frame is None or _context_says_none(frame, "may_have_profiler"):
        return frame
    if not frame.is_synthetic and _is_profiler_frame(frame):
        replacement = _resolve_profiler_frame(frame)
        if not replacement:
            return None
        context = frame.context
        if len(replacement) == 1:
            new_root = replacement[0]
            new_root.remove_from_parent()
            if new_root._context is None:
                new_root.set_context(context)
            frame = new_root
        else:
            for child in frame._children:
                child.parent = None
            for child in replacement:
                child.remove_from_parent()
                child.parent = frame
            frame._set_children(replacement)
            frame.time = sum(c.time for c in replacement)
            frame.cpu_time = sum(c.cpu_time for c in replacement)
    stack = [frame]
    while stack:
        node = stack.pop()
        children = node._children
        for child in children:
            if _is_profiler_frame(child):
                break
        else:
            stack.extend(children)
            continue
        kept: List[Frame] = []
        for child in children:
            kept.extend(_resolve_profiler_frame(child))
        removed_time = sum(c.time for c in children) - sum(c.time for c in kept)
        removed_cpu = sum(c.cpu_time for c in children) - sum(c.cpu_time for c in kept)
        for child in children:
            child.parent = None
        for child in kept:
            if child.parent is not None:
                child.remove_from_parent()
            child.parent = node
        node._set_children(kept)
        _subtract_from_ancestors_of(node, removed_time, removed_cpu)
        stack.extend(kept)
    if frame.time <= 0:
        return None
    return frame


def _subtract_from_ancestors_of(node: Frame, time: float, cpu_time: float) -> None:
    f: Optional[Frame] = node
    while f is not None:
        f.time = max(f.time - time, 0.0)
        f.cpu_time = max(f.cpu_time - cpu_time, 0.0)
        f = f.parent


def merge_consecutive_self_time(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """Combine ``[self]`` nodes that follow each other among a frame's children."""
    if frame is None:
        return None
    stack = [frame]
    while stack:
        node = stack.pop()
        children = node._children
        if not children:
            continue
        stack.extend(children)
        if len(children) < 2:
            continue
        for child in children:
            if child.identifier == SELF_TIME_FRAME_IDENTIFIER:
                break
        else:
            continue
        merged: List[Frame] = []
        previous: Optional[Frame] = None
        changed = False
        for child in children:
            if (
                previous is not None
                and child.identifier == SELF_TIME_FRAME_IDENTIFIER
                and previous.identifier == SELF_TIME_FRAME_IDENTIFIER
            ):
                _merge_into(previous, child)
                changed = True
                continue
            merged.append(child)
            previous = child
        if changed:
            node._set_children(merged)
    return frame


def aggregate_repeated_calls(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """Merge children with the same identifier (same function called again from the
    same place) and sort children by time, most first."""
    if frame is None:
        return None
    stack = [frame]
    while stack:
        node = stack.pop()
        children = node._children
        if len(children) > 1:
            if len({c.identifier for c in children}) == len(children):
                children.sort(key=_by_time, reverse=True)
                stack.extend(children)
                continue
            by_identifier: Dict[str, Frame] = {}
            kept: List[Frame] = []
            for child in children:
                existing = by_identifier.get(child.identifier)
                if existing is None:
                    by_identifier[child.identifier] = child
                    kept.append(child)
                else:
                    _merge_into(existing, child)
            kept.sort(key=_by_time, reverse=True)
            node._set_children(kept)
        stack.extend(node._children)
    return frame


GIL_WAIT = GIL_WAIT_FRAME_IDENTIFIER
#: -p gil_wait=...: show the [GIL wait] leaves (default), hide them (their time becomes
#: the waiting frame's own), or show only the time spent waiting for the GIL
GIL_WAIT_MODES = ("show", "hide", "only")


def _is_gil_wait(frame: Frame) -> bool:
    return frame.is_synthetic and frame.function == GIL_WAIT


def gil_wait(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """``gil_wait="hide"``: each ``[GIL wait]`` leaf folds into the frame that waited (its own
    time); ``"only"``: only the time threads spent waiting for the GIL, under the frames
    that waited; ``"show"`` (the default) leaves the tree as it is."""
    mode = options.get("gil_wait", "show")
    if frame is None or mode == "show":
        return frame
    if mode not in GIL_WAIT_MODES:
        raise ValueError(f"gil_wait is one of {', '.join(GIL_WAIT_MODES)}, not {mode!r}")
    nodes, stack = [], [frame]
    while stack:  # parents before children
        node = stack.pop()
        nodes.append(node)
        stack.extend(node._children)
    if mode == "hide":
        for node in nodes:
            waits = [c for c in node._children if _is_gil_wait(c)]
            if waits:
                node._set_children([c for c in node._children if not _is_gil_wait(c)])
                _add_self_time(node, sum(c.time for c in waits), sum(c.cpu_time for c in waits))
        return frame
    waited: Dict[int, Tuple[float, float]] = {}
    for node in reversed(nodes):  # children before parents
        if _is_gil_wait(node):
            waited[id(node)] = (node.time, node.cpu_time)
            continue
        kept = [c for c in node._children if waited[id(c)][0] > 0]
        node._set_children(kept)
        node.time = sum(waited[id(c)][0] for c in kept)
        node.cpu_time = sum(waited[id(c)][1] for c in kept)
        waited[id(node)] = (node.time, node.cpu_time)
    return frame


def remove_irrelevant_nodes(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """Fold frames taking less than ``filter_threshold`` of the total time into their
    parent (their time stays in the parent as its own time)."""
    if frame is None:
        return None
    threshold = options.get("filter_threshold", DEFAULT_FILTER_THRESHOLD)
    if threshold is None:
        threshold = DEFAULT_FILTER_THRESHOLD
    total = frame.time
    if total <= 0 or threshold <= 0:
        return frame
    limit = total * float(threshold)
    stack = [frame]
    while stack:
        node = stack.pop()
        children = node._children
        if children:
            kept = [c for c in children if c.time >= limit]
            if len(kept) != len(children):
                for c in children:
                    if c.time < limit:
                        c.parent = None
                node._set_children(kept)
            stack.extend(kept)
    return frame


def remove_unnecessary_self_time_nodes(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """Remove a ``[self]`` node when it is its parent's only child: the parent's line
    already says the same."""
    if frame is None:
        return None
    stack = [frame]
    while stack:
        node = stack.pop()
        children = node._children
        if len(children) == 1:
            if children[0].identifier == SELF_TIME_FRAME_IDENTIFIER:
                children[0].parent = None
                node.absorbed_time += children[0].time  # as upstream's: time of no child
                node._set_children([])
            else:
                stack.append(children[0])
        elif children:
            stack.extend(children)
    return frame


def _is_launcher_file(path: Optional[str]) -> bool:
    if not path:
        return False
    if path.startswith("<frozen runpy") or re.search(r"(^|[/\\])runpy\.py$", path):
        return True
    return is_path_in_package(path, "pyinstrument")


def _heaviest_child(frame: Frame) -> Optional[Frame]:
    best: Optional[Frame] = None
    for child in frame._children:
        if child.is_synthetic:
            continue
        if best is None or child.time > best.time:
            best = child
    return best


def _strip_launcher(frame: Frame) -> Frame:
    path = None if frame.is_synthetic else frame._identifier_parts()[1]
    if not is_path_in_package(path, "pyinstrument"):
        return frame
    current: Optional[Frame] = frame
    while current is not None:
        cpath = None if current.is_synthetic else current._identifier_parts()[1]
        if _is_launcher_file(cpath):
            current = _heaviest_child(current)
            continue
        if cpath is not None and cpath.startswith("<string>"):
            # the `exec` wrapper that a launcher may use to call runpy
            child = _heaviest_child(current)
            if child is not None and _is_launcher_file(None if child.is_synthetic else child._identifier_parts()[1]):
                current = child
                continue
        break
    if current is None or current is frame:
        return frame
    return current


def remove_first_pyinstrument_frames_processor(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """Remove the command line's own frames (pyinstrument's ``__main__``, ``runpy``,
    an ``exec`` wrapper) above the user's script or module, when the tree starts
    with them. Applied to each thread when the root is a thread or ``[root]`` frame."""
    if frame is None:
        return None
    if frame.is_root_placeholder or frame.is_thread:
        for child in list(frame._children):
            if child.is_thread:
                remove_first_pyinstrument_frames_processor(child, options)
                continue
            new = _strip_launcher(child)
            if new is not child:
                removed_time = child.time - new.time
                removed_cpu = child.cpu_time - new.cpu_time
                _replace_child(frame, child, new)
                _subtract_from_ancestors_of(frame, removed_time, removed_cpu)
        return frame
    new = _strip_launcher(frame)
    if new is not frame:
        context = frame._context
        new.remove_from_parent()
        if new._context is None:
            new.set_context(context)  # type: ignore[arg-type]
        return new
    return frame


# the name used in this project's brief
remove_first_pyinstrument_frames = remove_first_pyinstrument_frames_processor


def _replace_child(parent: Frame, old: Frame, new: Frame) -> None:
    new.remove_from_parent()
    children = parent._children
    for i, c in enumerate(children):
        if c is old:
            children[i] = new
            break
    old.parent = None
    new.parent = parent


def group_library_frames_processor(frame: Optional[Frame], options: ProcessorOptions) -> Optional[Frame]:
    """Fold library code into groups so the report shows the user's code.

    A group starts at a library frame called from visible code (the group's root,
    which stays visible) and takes in the library frames below it. Of those, a frame
    stays visible if it calls back into code that is not hidden (it is the way back
    to the application) or if it spends a large share of the total time itself
    (``LARGE_SELF_TIME_SHARE``). The others are hidden; renderers print them as
    ``[N frames hidden]  lib1, lib2``.

    ``show_regex`` (matched against the file path) keeps frames visible, ``hide_regex``
    hides frames even if they are application code.
    """
    if frame is None:
        return None
    hide_regex = options.get("hide_regex")
    show_regex = options.get("show_regex")
    hide_re = re.compile(hide_regex) if hide_regex else None
    show_re = re.compile(show_regex) if show_regex else None

    large = frame.time * LARGE_SELF_TIME_SHARE

    VISIBLE, HIDEABLE, FOLLOW = 0, 1, 2
    kind_cache: Dict[str, int] = {}

    def kind_of(f: Frame) -> int:
        if f.is_synthetic:
            return VISIBLE if f.is_root_placeholder else FOLLOW
        if f.is_thread:
            return VISIBLE
        path = f._identifier_parts()[1] or ""
        if show_re is not None and show_re.match(path):
            return VISIBLE
        if hide_re is not None and hide_re.match(path):
            return HIDEABLE
        return VISIBLE if f.is_application_code else HIDEABLE

    groups: List[FrameGroup] = []
    # members of some group that have a child outside it (their way back out)
    exits: set = set()
    # stack entries: (frame, what the parent is): a FrameGroup when the parent is in a
    # group; the parent itself when it is a hideable frame without a group yet (groups
    # of a single frame hide nothing, so they are only made once a second member
    # turns up); None when the parent is visible.
    stack: List[Any] = [(frame, None)]
    pop = stack.pop
    push = stack.append
    while stack:
        node, parent_state = pop()
        node.group = None
        identifier = node.identifier
        kind = kind_cache.get(identifier)
        if kind is None:
            kind = kind_cache[identifier] = kind_of(node)
        state: Any = None
        if kind == FOLLOW:
            # synthetic ([self]): belongs to its parent's group, if any
            if parent_state.__class__ is FrameGroup:
                parent_state.add_frame(node)
                state = parent_state
        elif kind == HIDEABLE:
            if parent_state is None:
                # a possible group root
                state = node
            else:
                if parent_state.__class__ is FrameGroup:
                    group = parent_state
                else:
                    group = parent_state.group
                    if group is None:
                        group = FrameGroup(parent_state)
                        group.add_frame(parent_state)
                        groups.append(group)
                group.add_frame(node)
                state = group
        elif parent_state is not None:
            exits.add(id(node.parent))
        children = node._children
        if children:
            for child in children:
                push((child, state))

    for group in groups:
        members = group.frames
        if len(members) == 1:
            members[0].group = None
            continue
        root = group.root
        hidden: List[Frame] = []
        exit_frames: List[Frame] = []
        shown = set()
        any_hidden_code = False
        for member in members:
            if member is root or member.is_synthetic:
                continue
            if id(member) in exits:
                exit_frames.append(member)
                shown.add(id(member))
            elif member.time > large and member.total_self_time > large:
                shown.add(id(member))
            else:
                hidden.append(member)
                any_hidden_code = True
        if not any_hidden_code:
            # nothing would be hidden: no group at all
            for member in members:
                member.group = None
            continue
        # a [self] node is hidden exactly when its parent is
        for member in members:
            if member.is_synthetic:
                parent = member.parent
                if parent is not None and parent is not root and id(parent) not in shown:
                    hidden.append(member)
        group.exit_frames = exit_frames
        group.set_hidden_frames(hidden)
    return frame


def is_hidden(frame: Frame) -> bool:
    """True when ``frame`` was folded away by :func:`group_library_frames_processor`."""
    group = frame.group
    return group is not None and group.is_hidden(frame)


__all__ = [
    "remove_importlib",
    "remove_tracebackhide",
    "remove_profiler_frames",
    "merge_consecutive_self_time",
    "aggregate_repeated_calls",
    "remove_irrelevant_nodes",
    "remove_unnecessary_self_time_nodes",
    "remove_first_pyinstrument_frames_processor",
    "remove_first_pyinstrument_frames",
    "group_library_frames_processor",
    "is_hidden",
    "DEFAULT_FILTER_THRESHOLD",
]
