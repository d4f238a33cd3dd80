"""Two sessions compared: ``pyinstrument --diff BEFORE AFTER``.

Each session's call tree (as the reports build it, without the time threshold) is matched
node by node: a function by its qualified name and file (not its first line, which an edit
above it moves), a thread by its name. Each node of the merged tree has its time and share
(of its run's total) before and after; a branch only one side has is new or gone. What
the runs were made with is compared too (``run_metadata``): a new Python or a library's new
version is often the change.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from pyinstrument import processors, run_metadata
from pyinstrument.frame import Frame, dispose_tree
from pyinstrument.session import Session

#: nodes whose share is under this in both runs, and whose share changed by less, are not shown
DEFAULT_THRESHOLD = 0.01

_PROCESSORS = [
    processors.remove_importlib,
    processors.remove_tracebackhide,
    processors.merge_consecutive_self_time,
    processors.aggregate_repeated_calls,
    processors.remove_unnecessary_self_time_nodes,
    processors.remove_first_pyinstrument_frames_processor,
]


class DiffNode:
    """A node of the merged tree: a function (or thread) with its time in both runs."""

    __slots__ = ("name", "file", "line", "before", "after", "before_share", "after_share", "children")

    def __init__(self, name: str, file: Optional[str], line: Optional[int]) -> None:
        self.name, self.file, self.line = name, file, line
        self.before = self.after = 0.0  # seconds
        self.before_share = self.after_share = 0.0  # of the run's total
        self.children: List[DiffNode] = []

    @property
    def delta(self) -> float:
        return self.after - self.before

    @property
    def delta_share(self) -> float:
        return self.after_share - self.before_share

    @property
    def status(self) -> str:
        """ "new" (only after), "gone" (only before), or ""."""
        if not self.before and self.after:
            return "new"
        if self.before and not self.after:
            return "gone"
        return ""

    def to_json(self) -> Dict[str, Any]:
        """The node and its subtree (built without recursion: trees can be deep)."""
        out: Dict[int, Dict[str, Any]] = {}
        order = []
        stack = [self]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(node.children)
        for node in reversed(order):
            out[id(node)] = {
                "function": node.name,
                "file_path": node.file,
                "line_no": node.line,
                "before": node.before,
                "after": node.after,
                "before_share": node.before_share,
                "after_share": node.after_share,
                "delta": node.delta,
                "delta_share": node.delta_share,
                "status": node.status,
                "children": [out.pop(id(child)) for child in node.children],
            }
        return out[id(self)]


def compare(before: Session, after: Session) -> DiffNode:
    """The merged tree of two sessions (below a ``[root]`` of both runs' totals), children
    sorted by the size of their change."""
    trees = [_tree(before), _tree(after)]
    root = DiffNode("[root]", None, None)
    try:
        totals = [tree.time if tree is not None and tree.time > 0 else 0.0 for tree in trees]
        root.before, root.after = totals
        root.before_share = root.after_share = 1.0
        # (diff node, each side's frames that are its children)
        pending: List[Tuple[DiffNode, List[List[Frame]]]] = [
            (root, [[tree] if tree is not None else [] for tree in trees])
        ]
        while pending:
            node, sides = pending.pop()
            children: Dict[Tuple[str, Optional[str]], Tuple[DiffNode, List[List[Frame]]]] = {}
            for side, frames in enumerate(sides):
                for frame in frames:
                    key = _key(frame)
                    if key not in children:
                        children[key] = (DiffNode(*_label(frame)), [[], []])
                    child, below = children[key]
                    if side == 0:
                        child.before += frame.time
                    else:
                        child.after += frame.time
                    below[side].extend(frame.children)
            for child, below in children.values():
                child.before_share = child.before / totals[0] if totals[0] else 0.0
                child.after_share = child.after / totals[1] if totals[1] else 0.0
                node.children.append(child)
                pending.append((child, below))
        _sort(root)
    finally:
        for tree in trees:
            dispose_tree(tree)
    return root


def _tree(session: Session) -> Optional[Frame]:
    root = session.root_frame()
    options: Dict[str, Any] = {}
    for processor in _PROCESSORS:
        root = processor(root, options)
    return root


def _key(frame: Frame) -> Tuple[str, Optional[str]]:
    if frame.is_thread:
        return ("thread", frame.function)  # a thread's number differs from run to run
    if frame.is_synthetic:
        return (frame.identifier, None)
    return (frame.qualname, frame.file_path)


def _label(frame: Frame) -> Tuple[str, Optional[str], Optional[int]]:
    if frame.is_thread or frame.is_synthetic:
        return frame.display_name, None, None
    return frame.display_name, frame.file_path_short, frame.line_no


def _sort(root: DiffNode) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        node.children.sort(key=lambda child: (-abs(child.delta), child.name))
        stack.extend(node.children)


# -- what the runs were made with -----------------------------------------------------------


def metadata_changes(before: Optional[Dict[str, Any]], after: Optional[Dict[str, Any]]) -> List[str]:
    """What differs between the two runs' metadata: ``Python 3.11.4 → 3.12.1``,
    ``django 4.2.7 → 5.0.1``, ``+requests 2.31.0``, ``-six 1.16.0``..."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return []
    changes = []
    for key, label in (
        ("python", "Python"),
        ("implementation", "implementation"),
        ("platform", "platform"),
        ("cpu_count", "CPUs"),
    ):
        if before.get(key) != after.get(key):
            changes.append(f"{label} {before.get(key)} → {after.get(key)}")
    commits = [(side.get("git") or {}).get("commit") for side in (before, after)]
    if commits[0] != commits[1]:
        changes.append(f"git {str(commits[0])[:8]} → {str(commits[1])[:8]}")
    old, new = (_distributions_of(side) for side in (before, after))
    for name in sorted(set(old) | set(new), key=str.lower):
        if name not in new:
            changes.append(f"-{name} {old[name]}")
        elif name not in old:
            changes.append(f"+{name} {new[name]}")
        elif old[name] != new[name]:
            changes.append(f"{name} {old[name]} → {new[name]}")
    return changes


def _distributions_of(metadata: Dict[str, Any]) -> Dict[str, Any]:
    found = metadata.get("distributions")
    return found if isinstance(found, dict) else {}


# -- output ---------------------------------------------------------------------------------


class DiffReport:
    """The comparison as the command line writes it: ``render()`` gives the text (or, with
    ``as_json``, the JSON) report. Looks like a renderer to the command line's output."""

    output_is_binary = False

    def __init__(
        self,
        before: Session,
        after: Session,
        *,
        as_json: bool = False,
        color: bool = False,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.before, self.after = before, after
        self.as_json, self.color, self.threshold = as_json, color, threshold
        self.output_file_extension = "json" if as_json else "txt"

    def render(self, _session: Any = None) -> str:
        root = compare(self.before, self.after)
        changes = metadata_changes(self.before.run_metadata, self.after.run_metadata)
        if self.as_json:
            return json.dumps(
                {
                    "before": _summary(self.before),
                    "after": _summary(self.after),
                    "metadata_changes": changes,
                    "root": root.to_json(),
                },
                indent=None,
            )
        return self._text(root, changes)

    def _text(self, root: DiffNode, changes: List[str]) -> str:
        lines = ["pyinstrument diff"]
        for label, session in (("before", self.before), ("after", self.after)):
            lines.append(f"  {label}: {_one_line(session)}")
        if changes:
            lines.append("  changed: " + "; ".join(changes))
        lines.append("")
        lines.append("  Δ time    Δ share  before → after")
        stack: List[Tuple[DiffNode, int]] = [(child, 0) for child in reversed(root.children)]
        while stack:
            node, depth = stack.pop()
            if not self._shown(node):
                continue
            lines.append(self._line(node, depth))
            stack.extend((child, depth + 1) for child in reversed(node.children))
        lines.append("")
        return "\n".join(lines) + "\n"

    def _shown(self, node: DiffNode) -> bool:
        threshold = self.threshold
        return max(node.before_share, node.after_share) >= threshold or abs(node.delta_share) >= threshold

    def _line(self, node: DiffNode, depth: int) -> str:
        delta = f"{node.delta:+.3f}s {node.delta_share * 100:+6.1f}%"
        sides = f"{node.before:.3f}s {node.before_share * 100:.1f}% → {node.after:.3f}s {node.after_share * 100:.1f}%"
        where = f"  {node.file}:{node.line}" if node.file else ""
        mark = f" [{node.status}]" if node.status else ""
        text = f"  {delta}  {sides}  {'  ' * depth}{_visible(node.name)}{mark}{_visible(where)}"
        if self.color and node.delta:
            return ("\033[31m" if node.delta > 0 else "\033[32m") + text + "\033[0m"
        return text


def _summary(session: Session) -> Dict[str, Any]:
    return {
        "target": session.target_description,
        "start_time": session.start_time,
        "duration": session.duration,
        "sample_count": session.sample_count,
        "run_metadata": session.run_metadata,
    }


def _one_line(session: Session) -> str:
    parts = [_visible(session.target_description or "?"), f"{session.duration:.3f}s", f"{session.sample_count} samples"]
    made_with = run_metadata.summary(session.run_metadata)
    if made_with:
        parts.append(_visible(made_with))
    return " · ".join(parts)


def _visible(text: str) -> str:
    """Control characters from the profiled program shown as escapes, never sent to the terminal."""
    return "".join(
        ch if ch >= " " and ch != "\x7f" and not ("\x80" <= ch <= "\x9f") else f"\\x{ord(ch):02x}" for ch in text
    )
