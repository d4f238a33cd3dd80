"""Several runs' call trees as one: the tree that ``--repeat``, ``--diff`` and budgets read.

Each run's tree is the reports' (import machinery, ``__tracebackhide__`` frames and the
profiler's own frames left out, repeated calls merged, no time threshold). The trees are
matched node by node: a function by its qualified name and file (not its first line, which
an edit above it moves), a thread by its name (its number differs from run to run). Each
node of the merged tree holds its time in every run (0.0 where a run never got there).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from pyinstrument import processors
from pyinstrument.frame import Frame, dispose_tree
from pyinstrument.session import Session

_PROCESSORS = [
    processors.remove_importlib,
    processors.remove_tracebackhide,
    processors.merge_consecutive_self_time,
    processors.aggregate_repeated_calls,
    processors.remove_unnecessary_self_time_nodes,
    processors.remove_first_pyinstrument_frames_processor,
]


def report_tree(session: Session) -> Optional[Frame]:
    """The session's call tree as the reports show it, without the time threshold."""
    root = session.root_frame()
    options: Dict[str, Any] = {}
    for processor in _PROCESSORS:
        root = processor(root, options)
    return root


class MergedNode:
    """A function (or thread) of the merged tree: its time in each run, in seconds."""

    __slots__ = ("name", "qualname", "file", "file_short", "line", "times", "children")

    def __init__(
        self, name: str, qualname: str, file: Optional[str], file_short: Optional[str], line: Optional[int], runs: int
    ):
        self.name = name  # as the reports show it
        self.qualname = qualname
        self.file, self.file_short, self.line = file, file_short, line
        self.times = [0.0] * runs
        self.children: List[MergedNode] = []

    def shares(self, totals: Sequence[float]) -> List[float]:
        """The node's share of each run's total (*totals*: the root's times)."""
        return [time / total if total else 0.0 for time, total in zip(self.times, totals)]


def walk(root: Any) -> Iterator[Tuple[Any, int]]:
    """The nodes below *root* (anything with ``children``), depth first in child order, with
    their depth (0 for its children); without recursion, since trees can be deep."""
    stack = [(child, 0) for child in reversed(root.children)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((child, depth + 1) for child in reversed(node.children))


def merge(sessions: Sequence[Session]) -> MergedNode:
    """The runs' trees merged below a ``[root]`` whose times are the runs' totals."""
    runs = len(sessions)
    root = MergedNode("[root]", "[root]", None, None, None, runs)
    trees = [report_tree(session) for session in sessions]
    try:
        root.times = [tree.time if tree is not None and tree.time > 0 else 0.0 for tree in trees]
        # (merged node, each run's frames that are its children)
        pending: List[Tuple[MergedNode, List[List[Frame]]]] = [(root, [_tops(tree) for tree in trees])]
        while pending:
            node, per_run = pending.pop()
            children: Dict[Tuple[str, Optional[str]], Tuple[MergedNode, List[List[Frame]]]] = {}
            for run, frames in enumerate(per_run):
                for frame in frames:
                    key = _key(frame)
                    if key not in children:
                        children[key] = (_node_for(frame, runs), [[] for _ in range(runs)])
                    child, below = children[key]
                    child.times[run] += frame.time
                    below[run].extend(frame.children)
            for child, below in children.values():
                node.children.append(child)
                pending.append((child, below))
    finally:
        for tree in trees:
            dispose_tree(tree)
    return root


def _tops(tree: Optional[Frame]) -> List[Frame]:
    """A tree's top frames: its root, or the roots that a ``[root]`` joins (a run whose
    stacks start in several places), so that one such run still lines up with the others."""
    if tree is None:
        return []
    return list(tree.children) if tree.is_root_placeholder else [tree]


def _key(frame: Frame) -> Tuple[str, Optional[str]]:
    if frame.is_thread:
        return ("thread", frame.function)
    if frame.is_synthetic:
        return (frame.identifier, None)
    return (frame.qualname, frame.file_path)


def _node_for(frame: Frame, runs: int) -> MergedNode:
    if frame.is_thread or frame.is_synthetic:
        return MergedNode(frame.display_name, frame.display_name, None, None, None, runs)
    return MergedNode(frame.display_name, frame.qualname, frame.file_path, frame.file_path_short, frame.line_no, runs)
