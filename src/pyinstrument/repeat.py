"""Repeat sets: one program run N times (``pyinstrument --repeat N``), as one session.

A repeat set is a :class:`~pyinstrument.session.Session` holding every run's samples (what
upstream's reader and the single-run renderers show: the runs added up) whose ``runs`` are
the runs themselves, each with what its process used. :class:`RepeatReport` gives, for every
node of the runs' merged tree, the median time and share and their interquartile range
across runs, and the distribution of each run's wall time, CPU time and peak memory.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any, Dict, List, Optional, Sequence

from pyinstrument import run_metadata, stats
from pyinstrument.merge import MergedNode, merge, walk
from pyinstrument.renderers.console import visible
from pyinstrument.session import Session

#: a node's share "varies a lot" when its interquartile range is at least this many points...
VARIES_ABSOLUTE = 0.02
#: ...and at least this fraction of its median share
VARIES_RELATIVE = 0.25
#: nodes whose median share is under this are not shown
DEFAULT_THRESHOLD = 0.01


def repeat_set(runs: Sequence[Session]) -> Session:
    """The session of a repeat set: every run's samples together, the runs kept."""
    if not runs:
        raise ValueError("a repeat set needs at least one run")
    # a new session even for one run: the set must not be among its own runs
    combined = functools.reduce(Session.combine, runs) if len(runs) > 1 else copy.copy(runs[0])
    combined.run_metadata = runs[0].run_metadata
    combined.process_usage = None
    combined.runs = list(runs)
    return combined


def distribution(values: Sequence[float]) -> Dict[str, Any]:
    """Median, interquartile range and 95th percentile of a measure over the runs."""
    q = stats.quartiles(values)
    return {"median": q.median, "iqr": [q.low, q.high], "p95": stats.quantile(values, 0.95), "runs": list(values)}


def run_measures(runs: Sequence[Session]) -> Dict[str, Optional[Dict[str, Any]]]:
    """Each whole-run measure's distribution: the program's wall time (as profiled), its
    process's wall and CPU time and peak resident memory (None when not measured)."""

    def usage(key: str) -> Optional[Dict[str, Any]]:
        values = [run.process_usage.get(key) if run.process_usage else None for run in runs]
        if any(value is None for value in values):
            return None
        return distribution([float(value) for value in values if value is not None])

    return {
        "wall_time": distribution([run.duration for run in runs]),
        "process_wall_time": usage("wall_time"),
        "cpu_time": usage("cpu_time") or distribution([run.cpu_time for run in runs]),
        "max_rss": usage("max_rss"),
    }


def varies(shares: Sequence[float]) -> bool:
    q = stats.quartiles(shares)
    spread = q.high - q.low
    return spread >= VARIES_ABSOLUTE and spread >= VARIES_RELATIVE * q.median


class RepeatReport:
    """A repeat set as the command line writes it: text, or JSON with ``as_json``. Looks
    like a renderer to the command line's output."""

    output_is_binary = False

    def __init__(self, *, as_json: bool = False, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.as_json, self.threshold = as_json, threshold
        self.output_file_extension = "json" if as_json else "txt"

    def render(self, session: Session) -> str:
        runs = session.runs or [session]
        root = merge(runs)
        measures = run_measures(runs)
        if self.as_json:
            return json.dumps(
                {
                    "target": session.target_description,
                    "runs": len(runs),
                    "measures": measures,
                    "run_metadata": session.run_metadata,
                    "root": self._node_json(root, root.times),
                }
            )
        return self._text(session, runs, root, measures)

    def _text(self, session: Session, runs: List[Session], root: MergedNode, measures: Dict[str, Any]) -> str:
        count = f"{len(runs)} run" + ("s" if len(runs) != 1 else "")
        lines = [f"pyinstrument repeat: {count} of {visible(session.target_description or '?')}"]
        made_with = run_metadata.summary(session.run_metadata)
        if made_with:
            lines.append("  " + visible(made_with))
        lines.append("")
        for key, label, unit in (
            ("wall_time", "program wall time", "s"),
            ("process_wall_time", "process wall time", "s"),
            ("cpu_time", "CPU time", "s"),
            ("max_rss", "peak memory", "MB"),
        ):
            measure = measures[key]
            if measure is not None:
                lines.append(f"  {label:<18} {_describe(measure, unit)}")
        lines.append("")
        lines.append("  median time (IQR)         median share (IQR)")
        _sort(root)
        totals = root.times
        for node, depth in walk(root):
            shares = node.shares(totals)
            share = stats.quartiles(shares)
            if share.median < self.threshold:
                continue
            time = stats.quartiles(node.times)
            where = f"  {node.file_short}:{node.line}" if node.file_short else ""
            mark = "  [varies]" if varies(shares) else ""
            lines.append(
                f"  {time.median:7.3f}s ({time.low:.3f}–{time.high:.3f})"
                f"  {share.median * 100:5.1f}% ({share.low * 100:.1f}–{share.high * 100:.1f})"
                f"  {'  ' * depth}{visible(node.name)}{visible(where)}{mark}"
            )
        lines.append("")
        lines.append(
            f"  [varies]: the share's interquartile range is at least {VARIES_ABSOLUTE * 100:.0f} points"
            f" and {VARIES_RELATIVE * 100:.0f}% of its median"
        )
        return "\n".join(lines) + "\n"

    def _node_json(self, root: MergedNode, totals: Sequence[float]) -> Dict[str, Any]:
        """The merged tree as JSON (built without recursion: trees can be deep)."""
        out: Dict[int, Dict[str, Any]] = {}
        order = [root] + [node for node, _ in walk(root)]
        for node in reversed(order):
            shares = node.shares(totals)
            time, share = stats.quartiles(node.times), stats.quartiles(shares)
            out[id(node)] = {
                "function": node.name,
                "file_path": node.file,
                "line_no": node.line,
                "median": time.median,
                "iqr": [time.low, time.high],
                "share_median": share.median,
                "share_iqr": [share.low, share.high],
                "varies": varies(shares),
                "times": list(node.times),
                "children": [out.pop(id(child)) for child in node.children],
            }
        return out[id(root)]


def _describe(measure: Dict[str, Any], unit: str) -> str:
    scale = 1e6 if unit == "MB" else 1.0
    digits = 1 if unit == "MB" else 3
    low, high = (value / scale for value in measure["iqr"])
    return (
        f"median {measure['median'] / scale:.{digits}f}{unit}  IQR {low:.{digits}f}–{high:.{digits}f}{unit}"
        f"  p95 {measure['p95'] / scale:.{digits}f}{unit}"
    )


def _sort(root: MergedNode) -> None:
    """Children by median time, largest first."""
    stack = [root]
    while stack:
        node = stack.pop()
        node.children.sort(key=lambda child: (-stats.quantile(child.times, 0.5), child.name))
        stack.extend(node.children)
