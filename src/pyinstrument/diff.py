"""Two sessions compared: ``pyinstrument --diff BEFORE AFTER``.

Each side is a session of one run or a repeat set (``--repeat N``). Their runs' call trees
are merged (:mod:`pyinstrument.merge`); each node of the merged tree has its time and share
(of its run's total) before and after: a run's own, or the median of a set's runs. A branch
only one side has is new or gone. When both sides are repeat sets, each node shown gets a
verdict (:func:`_judge`): slower or faster only when the change is beyond the runs' noise.
What the runs were made with is compared too (``run_metadata``): a new Python or a
library's new version is often the change.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pyinstrument import run_metadata, stats
from pyinstrument.merge import MergedNode, merge, walk
from pyinstrument.renderers.console import visible
from pyinstrument.session import Session

#: nodes whose share is under this in both runs, and whose share changed by less, are not shown
DEFAULT_THRESHOLD = 0.01
#: the chance of calling any unchanged node of a comparison slower or faster
ALPHA = 0.05
#: the engine's name for a C call it could not name: no verdict, since how the time of a C
#: call splits between its name and this depends on where the ticks land, not on the program
UNKNOWN_C_CALL = "[unknown C call]"
#: a node with at least this share in every run is the whole run: judged on its time alone
WHOLE_RUN = 0.99
VERDICT_TEST = (
    f"two-sided Mann-Whitney U on per-run time and on per-run share (time alone for a node that is the whole run),"
    f" both below alpha = {ALPHA} after Holm's correction over the nodes shown, and the time's interquartile"
    f" ranges apart; none for {UNKNOWN_C_CALL}"
)


def runs_of(session: Session) -> List[Session]:
    """The runs a session stands for: a repeat set's, or itself."""
    return list(session.runs) if session.runs else [session]


class DiffNode:
    """A node of the merged tree: a function (or thread) with its time in both runs."""

    __slots__ = (
        "name", "file", "line", "before", "after", "before_share", "after_share",
        "before_iqr", "after_iqr", "p_value", "verdict", "children",
    )  # fmt: skip

    def __init__(self, name: str, file: Optional[str], line: Optional[int]) -> None:
        self.name, self.file, self.line = name, file, line
        self.before = self.after = 0.0  # seconds: the run's, or the median of the set's runs
        self.before_share = self.after_share = 0.0  # of the run's total (median over runs)
        self.before_iqr = self.after_iqr = (0.0, 0.0)  # the time's interquartile range
        # with repeat sets on both sides: the adjusted p-value, and "slower", "faster" or
        # "" (within the noise); None for a comparison of single runs (or a node not tested)
        self.p_value: Optional[float] = None
        self.verdict: Optional[str] = None
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
                "before_iqr": list(node.before_iqr),
                "after_iqr": list(node.after_iqr),
                "delta": node.delta,
                "delta_share": node.delta_share,
                "status": node.status,
                "verdict": node.verdict,
                "p_value": node.p_value,
                "children": [out.pop(id(child)) for child in node.children],
            }
        return out[id(self)]


def compare(before: Session, after: Session, threshold: float = DEFAULT_THRESHOLD) -> DiffNode:
    """The merged tree of two sessions (below a ``[root]`` of both sides' totals), children
    sorted by the size of their change; with repeat sets on both sides, the nodes at or
    above *threshold* carry a verdict."""
    runs = [runs_of(before), runs_of(after)]
    merged = merge(runs[0] + runs[1])
    split = len(runs[0])
    totals = merged.times
    root = _diff_node(merged, split, totals)
    pending = [(merged, root)]
    tested: List[Tuple[DiffNode, float]] = []
    while pending:
        merged_node, node = pending.pop()
        for merged_child in merged_node.children:
            child = _diff_node(merged_child, split, totals)
            node.children.append(child)
            pending.append((merged_child, child))
            if min(split, len(totals) - split) >= 2 and _shown(child, threshold) and child.name != UNKNOWN_C_CALL:
                tested.append((child, _p_value(merged_child, split, totals)))
    for (node, _), adjusted in zip(tested, stats.holm([p for _, p in tested])):
        node.p_value = adjusted
        node.verdict = _judge(node, adjusted)
    _sort(root)
    return root


def _diff_node(merged: MergedNode, split: int, totals: Sequence[float]) -> DiffNode:
    node = DiffNode(merged.name, merged.file_short, merged.line)
    before, after = merged.times[:split], merged.times[split:]
    before_q, after_q = stats.quartiles(before), stats.quartiles(after)
    node.before, node.after = before_q.median, after_q.median
    node.before_iqr, node.after_iqr = (before_q.low, before_q.high), (after_q.low, after_q.high)
    shares = merged.shares(totals)
    node.before_share = stats.quantile(shares[:split], 0.5)
    node.after_share = stats.quantile(shares[split:], 0.5)
    return node


def _p_value(merged: MergedNode, split: int, totals: Sequence[float]) -> float:
    """The time must differ, and so must the share: a uniformly slower machine moves every
    time but no share, a sibling's slowdown moves a share but not the time. A node that is
    the whole run on both sides (its share cannot move) is judged on its time."""
    times = merged.times
    shares = merged.shares(totals)
    _, p_time = stats.mann_whitney_u(times[:split], times[split:])
    if min(shares) >= WHOLE_RUN:
        return p_time
    _, p_share = stats.mann_whitney_u(shares[:split], shares[split:])
    return max(p_time, p_share)


def _judge(node: DiffNode, adjusted_p: float) -> str:
    if adjusted_p >= ALPHA:
        return ""
    if node.before_iqr[1] < node.after_iqr[0] and node.delta_share >= 0:
        return "slower"
    if node.after_iqr[1] < node.before_iqr[0] and node.delta_share <= 0:
        return "faster"
    return ""


def _shown(node: DiffNode, threshold: float) -> bool:
    return max(node.before_share, node.after_share) >= threshold or abs(node.delta_share) >= threshold


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
    """The comparison as the command line writes it: ``render()`` gives the report in the
    *output* format, ``text``, ``json`` or ``html`` (a page with a differential flame graph
    and both sides node by node). Looks like a renderer to the command line's output."""

    output_is_binary = False
    FORMATS = {"text": "txt", "json": "json", "html": "html"}

    def __init__(
        self,
        before: Session,
        after: Session,
        *,
        output: str = "text",
        color: bool = False,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        if output not in self.FORMATS:
            raise ValueError(f"a diff is written as {', '.join(self.FORMATS)}, not {output}")
        self.before, self.after = before, after
        self.output, self.color, self.threshold = output, color, threshold
        self.output_file_extension = self.FORMATS[output]

    @property
    def judged(self) -> bool:
        """Whether the nodes carry verdicts: both sides are sets of at least two runs."""
        return min(len(runs_of(self.before)), len(runs_of(self.after))) >= 2

    def render(self, _session: Any = None) -> str:
        root = compare(self.before, self.after, self.threshold)
        changes = metadata_changes(self.before.run_metadata, self.after.run_metadata)
        if self.output == "text":
            return self._text(root, changes)
        document = {
            "before": _summary(self.before),
            "after": _summary(self.after),
            "metadata_changes": changes,
            "verdict_test": VERDICT_TEST if self.judged else None,
            "root": root.to_json(),
        }
        if self.output == "json":
            return json.dumps(document)
        return _page({"format": "pyinstrument-diff", "version": 1, "threshold": self.threshold, **document})

    def _text(self, root: DiffNode, changes: List[str]) -> str:
        lines = ["pyinstrument diff"]
        for label, session in (("before", self.before), ("after", self.after)):
            lines.append(f"  {label}: {_one_line(session)}")
        if changes:
            lines.append("  changed: " + "; ".join(changes))
        if self.judged:
            verdicts = [node.verdict for node, _ in walk(root)]
            lines.append(
                f"  verdict: {verdicts.count('slower')} slower, {verdicts.count('faster')} faster"
                f" (times are medians over the runs; {VERDICT_TEST})"
            )
        else:
            lines.append("  no verdict: each side is one run, so the noise is unknown (use --repeat N on both)")
        lines.append("")
        lines.append("  Δ time    Δ share  before → after")
        for node, depth in walk(root):
            if _shown(node, self.threshold):
                lines.append(self._line(node, depth))
        lines.append("")
        return "\n".join(lines) + "\n"

    def _line(self, node: DiffNode, depth: int) -> str:
        delta = f"{node.delta:+.3f}s {node.delta_share * 100:+6.1f}%"
        sides = f"{node.before:.3f}s {node.before_share * 100:.1f}% → {node.after:.3f}s {node.after_share * 100:.1f}%"
        where = f"  {node.file}:{node.line}" if node.file else ""
        marks = [mark for mark in (node.status, node.verdict) if mark]
        mark = "".join(f" [{mark}]" for mark in marks)
        text = f"  {delta}  {sides}  {'  ' * depth}{visible(node.name)}{mark}{visible(where)}"
        slower = node.verdict == "slower" if self.judged else node.delta > 0
        faster = node.verdict == "faster" if self.judged else node.delta < 0
        if self.color and (slower or faster):
            return ("\033[31m" if slower else "\033[32m") + text + "\033[0m"
        return text


def _summary(session: Session) -> Dict[str, Any]:
    runs = runs_of(session)
    return {
        "target": session.target_description,
        "start_time": session.start_time,
        "duration": session.duration,
        "sample_count": session.sample_count,
        "runs": len(runs),
        "median_duration": stats.quantile([run.duration for run in runs], 0.5),
        "made_with": run_metadata.summary(session.run_metadata) or None,
        "run_metadata": session.run_metadata,
    }


def _page(data: Dict[str, Any]) -> str:
    """The self-contained diff page: its data as inert JSON, its script and style allowed
    by hash and nothing else (as the HTML report)."""
    from pyinstrument.renderers.html import asset, csp_hash, embed_json

    script, style = asset("diff.js"), asset("diff.css")
    policy = (
        f"default-src 'none'; script-src {csp_hash(script)}; style-src {csp_hash(style)}; "
        "base-uri 'none'; form-action 'none'"
    )
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n',
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            '<meta name="generator" content="pyinstrument">\n<title>pyinstrument diff</title>\n',
            f"<style>{style}</style>\n</head>\n<body>\n",
            '<noscript><p class="noscript">This page needs JavaScript to show the comparison.</p></noscript>\n',
            '<div id="app"></div>\n',
            f'<script type="application/json" id="pyinstrument-diff">{embed_json(data)}</script>\n',
            f"<script>{script}</script>\n</body>\n</html>\n",
        ]
    )


def _one_line(session: Session) -> str:
    runs = runs_of(session)
    parts = [visible(session.target_description or "?")]
    if len(runs) > 1:
        parts.append(f"{len(runs)} runs, median {stats.quantile([run.duration for run in runs], 0.5):.3f}s")
    else:
        parts += [f"{session.duration:.3f}s", f"{session.sample_count} samples"]
    made_with = run_metadata.summary(session.run_metadata)
    if made_with:
        parts.append(visible(made_with))
    return " · ".join(parts)
