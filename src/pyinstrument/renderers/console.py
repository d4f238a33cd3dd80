"""The text report printed to a terminal."""

from __future__ import annotations

import math
import re
import time as time_module
from operator import attrgetter
from typing import Any, Dict, List, Optional, Tuple

from pyinstrument import processors, run_metadata
from pyinstrument.frame import Frame, dispose_tree, gc_paused, libraries_of
from pyinstrument.renderers.base import FrameRenderer
from pyinstrument.session import DROP_CAUSES, Session

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# a lone surrogate other than U+DC80-U+DCFF (surrogateescape's stand-in for a file
# name's undecodable byte, written back as that byte) cannot be written as UTF-8
_UNWRITABLE_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_PROCESS_ROOT_RE = re.compile(r"process \d+(: |$)")
# control characters in text from the profiled program (a thread's name, a file's path):
# printed as they are, an escape sequence would act on the terminal showing the report
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """Text from the session as harmless characters: controls as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_by_time = attrgetter("time")

TIME_CHOICES = ("seconds", "percent_of_total")
FLAT_TIME_CHOICES = ("self", "total")


class _Colors:
    """ANSI escape codes, or empty strings when colour is off."""

    def __init__(self, enabled: bool):
        def code(s: str) -> str:
            return s if enabled else ""

        self.red = code("\x1b[31m")
        self.yellow = code("\x1b[33m")
        self.green = code("\x1b[32m")
        self.dim = code("\x1b[2m")
        self.bold = code("\x1b[1m")
        self.app = code("\x1b[48;5;24m\x1b[38;5;15m")
        self.reset = code("\x1b[0m")


def _version() -> str:
    try:
        from pyinstrument import __version__
    except Exception:
        return "?"
    return str(__version__)


def time_precision(interval: float) -> int:
    """Decimals needed to show times sampled at ``interval`` seconds (at least 3)."""
    if not interval or interval <= 0 or math.isnan(interval):
        return 3
    digits = math.ceil(round(-math.log10(interval), 6))
    return int(min(max(digits, 3), 6))


class ConsoleRenderer(FrameRenderer):
    """The call tree as text, for a terminal or a ``.txt`` file.

    :param unicode: draw the tree with box-drawing characters instead of ASCII.
    :param color: colour the output with ANSI escape codes.
    :param flat: list each function once, sorted by time (see ``flat_time``),
        instead of the call tree.
    :param time: ``"seconds"`` or ``"percent_of_total"``.
    :param flat_time: in flat mode, sort and show by ``"self"`` time (time in the
        function's own code) or ``"total"`` time (including callees).
    :param short_mode: a compact report in a dotted box (used by ``@profile``).
    :param show_cpu: beside each frame's wall-clock time, the CPU time its thread
        spent running in it (``-p show_cpu`` on the command line).

    ``show_all``, ``timeline`` and ``processor_options`` are those of
    :class:`~pyinstrument.renderers.base.FrameRenderer`.
    """

    output_file_extension = "txt"
    output_is_binary = False

    def __init__(
        self,
        show_all: bool = False,
        timeline: bool = False,
        processor_options: Optional[Dict[str, Any]] = None,
        unicode: bool = False,
        color: bool = False,
        flat: bool = False,
        time: str = "seconds",
        flat_time: str = "self",
        short_mode: bool = False,
        show_cpu: bool = False,
    ) -> None:
        if time not in TIME_CHOICES:
            raise ValueError(f"time must be one of {', '.join(map(repr, TIME_CHOICES))}, not {time!r}")
        if flat_time not in FLAT_TIME_CHOICES:
            raise ValueError(f"flat_time must be one of {', '.join(map(repr, FLAT_TIME_CHOICES))}, not {flat_time!r}")
        super().__init__(show_all=show_all, timeline=timeline, processor_options=processor_options)
        self.unicode = unicode
        self.color = color
        self.flat = flat
        self.time = time
        self.flat_time = flat_time
        self.short_mode = short_mode
        self.show_cpu = show_cpu
        self._cpu_column = False  # show_cpu, and the session has CPU time per stack
        self.colors = _Colors(color)
        if flat:
            # the flat list covers every function; small entries are filtered on the
            # list itself, so a function called from many places is not lost
            self.processors = [
                p
                for p in self.processors
                if p not in (processors.group_library_frames_processor, processors.remove_irrelevant_nodes)
            ]
        self._precision = 3
        self._total = 0.0
        self._label_cache: Dict[Any, str] = {}
        self._no_class_names = False

    # -- entry point ----------------------------------------------------------------------

    def render(self, session: Session) -> str:
        with gc_paused():
            report = self._render(session)
        return _UNWRITABLE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", report)

    def _render(self, session: Session) -> str:
        self._label_cache = {}
        self._precision = time_precision(session.min_interval)
        self._cpu_column = self.show_cpu and session.frame_records_cpu is not None
        root = self.session_root_frame(session)
        if root is None or root.time <= 0:
            body = ["No samples were recorded."]
        else:
            self._total = root.time
            context = root.context
            self._no_class_names = context.may_have_class_names is False
            body = self.render_flat(root) if self.flat else self.render_tree(root)
        dispose_tree(root)

        if self.show_cpu:
            body = [self._cpu_legend(), ""] + body
        if self.short_mode:
            return self._render_short(session, body)

        lines = [""]
        lines += self._header(session)
        lines.append("")
        if session.target_description:
            lines.append(visible(session.target_description))
            lines.append("")
        lines += body
        lines.append("")
        return "\n".join(lines) + "\n"

    # -- header ---------------------------------------------------------------------------

    def _format_seconds(self, seconds: float) -> str:
        return f"{seconds:.{self._precision}f}"

    def _header(self, session: Session) -> List[str]:
        c = self.colors
        recorded = time_module.strftime("%H:%M:%S", time_module.localtime(session.start_time))
        rows: List[List[str]] = [
            ["pyinstrument", f"Recorded: {recorded}", f"Samples:  {session.sample_count}"],
            [
                f"v{_version()}",
                f"Duration: {self._format_seconds(session.duration)}",
                f"CPU time: {self._format_seconds(session.cpu_time)}",
            ],
        ]
        if session.dropped_samples:
            rows.append(["", "", f"Dropped:  {session.dropped_samples} thread samples{self._drop_causes(session)}"])
        if session.truncated_samples:
            rows.append(["", "", f"Truncated: {session.truncated_samples} deep stacks"])
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = []
        for n, row in enumerate(rows):
            cells = [row[i].ljust(widths[i]) for i in range(3)]
            if n == 0 and c.bold:
                cells[0] = c.bold + row[0] + c.reset + " " * (widths[0] - len(row[0]))
            lines.append(("  " + "   ".join(cells)).rstrip())
        made_with = run_metadata.summary(session.run_metadata)
        if made_with:
            lines.append("  " + visible(made_with))
        if session.phases is not None:
            phases = " · ".join(
                f"{visible(name)} {seconds:.3f}s" for name, seconds in zip(session.phases.names, session.phases.seconds)
            )
            lines.append(
                f"  Phases: {phases}" + ("  (-p phase=NAME: one alone)" if len(session.phases.names) > 1 else "")
            )
        return lines + self._gil_lines(session)

    #: threads listed in the header's GIL table, those that waited longest first
    GIL_ROWS = 8

    @staticmethod
    def _gil_lines(session: Session) -> List[str]:
        """Each thread's share of its time holding, waiting for and outside the GIL, when a
        thread waited for it (1% of its time or more)."""
        gil = session.gil or {}
        shares = {name: [t / sum(times) for t in times] for name, times in gil.items() if sum(times) > 0}
        waiting = sorted((name for name in shares if shares[name][1] >= 0.01), key=lambda n: -shares[n][1])
        if not waiting:
            return []
        listed = sorted(shares, key=lambda n: -shares[n][1])[: ConsoleRenderer.GIL_ROWS]
        width = max(len(visible(name)) for name in listed)
        lines = [f"  GIL  {'thread'.ljust(width)}   held  waiting  outside"]
        for name in listed:
            held, wait, out = (f"{share:.0%}" for share in shares[name])
            lines.append(f"       {visible(name).ljust(width)}  {held:>5}  {wait:>7}  {out:>7}")
        if len(shares) > len(listed):
            lines.append(f"       ... {len(shares) - len(listed)} more threads")
        return lines

    @staticmethod
    def _drop_causes(session: Session) -> str:
        """`` (3 changed while read, 1 code unconfirmed)``: why samples were dropped."""
        causes = [f"{count} {DROP_CAUSES[cause]}" for cause, count in session.dropped_by_cause.items() if count]
        other = session.dropped_samples - sum(session.dropped_by_cause.values())
        if causes and other > 0:
            causes.append(f"{other} other")
        return f" ({', '.join(causes)})" if causes else ""

    def _cpu_legend(self) -> str:
        if not self._cpu_column:
            return "(show_cpu: this session has no CPU time per frame; sessions from upstream pyinstrument do not)"
        legend = "Each frame: wall-clock time, then (cpu ...) the CPU time its thread spent running in it"
        if self.time == "percent_of_total":
            return legend + ", both in % of the total wall-clock time"
        return legend + " (none while sleeping or waiting)"

    def _render_short(self, session: Session, body: List[str]) -> str:
        summary = (
            f"Duration: {self._format_seconds(session.duration)}   "
            f"Samples: {session.sample_count}   CPU time: {self._format_seconds(session.cpu_time)}"
        )
        title = "pyinstrument"
        if session.target_description:
            title += ": " + visible(session.target_description)
        content = body + ["", summary]
        width = max([72, len(title) + 8] + [len(_ANSI_RE.sub("", line)) + 5 for line in content])
        out = [""]
        out.append(".. " + title + " " + "." * max(width - len(title) - 4, 2))
        out.append(".")
        for line in content:
            out.append((".  " + line) if line else ".")
        out.append("." * width)
        out.append("")
        return "\n".join(out) + "\n"

    # -- lines ----------------------------------------------------------------------------

    def _time_color(self, proportion: float) -> str:
        c = self.colors
        if proportion > 0.6:
            return c.red
        if proportion > 0.2:
            return c.yellow
        if proportion > 0.05:
            return c.green
        return c.dim

    def frame_description(self, frame: Frame, value: Optional[float] = None, cpu_value: Optional[float] = None) -> str:
        """One report line (without tree glyphs): time, name and position. ``value``
        and ``cpu_value`` replace the frame's own times (the flat list's self times)."""
        if frame.is_all_threads_root:
            # the sum of the threads' times is no time the program took: not in the
            # time column, where it would read as the run's duration
            children = frame._children
            # --subprocesses writes one root per process, named "process PID: ..."
            kind = "processes" if all(_PROCESS_ROOT_RE.match(c.function) for c in children) else "threads"
            added_up = self._format_seconds(frame.time)
            return f"{self._label(frame)}  {len(children)} {kind}; their times add up to {added_up} s"
        seconds = frame.time if value is None else value
        time_str = self._format_time(seconds)
        if self.color:
            total = self._total
            proportion = seconds / total if total > 0 else 0.0
            time_str = self._time_color(proportion) + time_str + self.colors.reset
        if self._cpu_column:
            cpu = f"(cpu {self._format_time(frame.cpu_time if cpu_value is None else cpu_value)})"
            time_str += " " + (self.colors.dim + cpu + self.colors.reset if self.color else cpu)
        return time_str + " " + self._label(frame)

    def _format_time(self, seconds: float) -> str:
        if self.time == "percent_of_total":
            total = self._total
            return f"{(seconds / total * 100 if total else 0.0):.1f}%"
        return f"{seconds:.{self._precision}f}"

    def _label(self, frame: Frame) -> str:
        """``name  position`` of a frame (cached: most frames share identifiers)."""
        identifier = frame.identifier
        key: Any
        owner: Optional[Frame] = None
        if "\x00" in identifier:
            key = identifier if self._no_class_names else (identifier, frame.class_name)
        elif frame.is_root_placeholder:
            key = None
        else:
            parent = frame.parent
            owner = self._self_time_owner(frame)
            key = (identifier, parent.identifier if parent is not None else None, owner is not None)
        if key is not None:
            cached = self._label_cache.get(key)
            if cached is not None:
                return cached
        c = self.colors
        name = visible(frame.display_name)
        if owner is not None:
            name = f"{name} (in {visible(owner.display_name)})"
        if c.reset and frame.is_application_code:
            name = c.app + name + c.reset
        position = visible(frame.code_position_short or "")
        if position:
            if c.reset:
                position = c.dim + position + c.reset
            label = f"{name}  {position}"
        else:
            label = name
        if key is not None:
            self._label_cache[key] = label
        return label

    @staticmethod
    def _self_time_owner(frame: Frame) -> Optional[Frame]:
        """The caller of a ``[self]`` line printed below a ``[N frames hidden]`` line (all
        the children of a frame with hidden ones are), where it would read as the
        hidden frames' time; None for other lines."""
        parent = frame.parent
        if parent is None or not frame.is_self_time:
            return None
        for sibling in parent._children:
            group = sibling.group
            if group is not None and group.is_hidden(sibling):
                return parent
        return None

    def _hidden_line(self, count: int, libraries: List[str]) -> str:
        c = self.colors
        if len(libraries) > 6:
            libraries = libraries[:6] + ["..."]
        libs = visible(", ".join(libraries))
        if libs and c.reset:
            libs = c.dim + libs + c.reset
        text = f"[{count} frames hidden]"
        return f"{text}  {libs}" if libs else text

    # -- tree -----------------------------------------------------------------------------

    def render_tree(self, root: Frame) -> List[str]:
        if self.unicode:
            branch, last_branch, pipe = "├─ ", "└─ ", "│  "
        else:
            branch, last_branch, pipe = "|- ", "`- ", "|  "
        space = "   "
        timeline = self.timeline
        describe = self.frame_description
        out: List[str] = []
        append = out.append
        stack: List[Tuple[Frame, str, str]] = [(root, "", "")]
        pop = stack.pop
        push = stack.append
        while stack:
            frame, indent, child_indent = pop()
            append(indent + describe(frame))
            children = frame._children
            if not children:
                continue
            has_hidden = False
            for child in children:
                group = child.group
                if group is not None and group.is_hidden(child):
                    has_hidden = True
                    break
            if has_hidden:
                surfaced, hidden = self._surface(frame)
                count = sum(1 for f in hidden if not f.is_synthetic)
                append(child_indent + space + self._hidden_line(count, libraries_of(hidden)))
                hoisted_indent = child_indent + space + space
                if not timeline and len(surfaced) > 1:
                    surfaced.sort(key=_by_time, reverse=True)
                for child in reversed(surfaced):
                    push((child, hoisted_indent, hoisted_indent))
            else:
                if len(children) == 1:
                    push((children[0], child_indent + last_branch, child_indent + space))
                    continue
                ordered = children if timeline else sorted(children, key=_by_time, reverse=True)
                push((ordered[-1], child_indent + last_branch, child_indent + space))
                first_indent = child_indent + branch
                next_indent = child_indent + pipe
                for i in range(len(ordered) - 2, -1, -1):
                    push((ordered[i], first_indent, next_indent))
        return out

    @staticmethod
    def _surface(frame: Frame) -> Tuple[List[Frame], List[Frame]]:
        """Frames to print below ``frame`` when some of its children are hidden: the
        first visible frames reached through hidden ones (in tree order), and the
        hidden frames passed through."""
        surfaced: List[Frame] = []
        hidden: List[Frame] = []
        stack = list(reversed(frame._children))
        while stack:
            f = stack.pop()
            group = f.group
            if group is not None and group.is_hidden(f):
                hidden.append(f)
                stack.extend(reversed(f._children))
            else:
                surfaced.append(f)
        return surfaced, hidden

    # -- flat -----------------------------------------------------------------------------

    def render_flat(self, root: Frame) -> List[str]:
        # identifier -> [value, representative frame, representative's share, CPU value]
        entries: Dict[str, List[Any]] = {}

        def add(frame: Frame, value: float, cpu: float) -> None:
            entry = entries.get(frame.identifier)
            if entry is None:
                entries[frame.identifier] = [value, frame, value, cpu]
            else:
                entry[0] += value
                entry[3] += cpu
                if value > entry[2]:
                    entry[1], entry[2] = frame, value

        if self.flat_time == "self":
            for frame in root.iter_subtree():
                if frame.is_synthetic:
                    continue
                value = frame.total_self_time
                if value > 0:
                    add(frame, value, frame.total_self_cpu_time)
        else:
            # total time, counting recursive calls once
            on_path: Dict[str, int] = {}
            stack: List[Tuple[Frame, bool]] = [(root, False)]
            while stack:
                frame, leaving = stack.pop()
                if frame.is_synthetic:
                    if not leaving:
                        stack.extend((c, False) for c in frame._children)
                    continue
                identifier = frame.identifier
                if leaving:
                    on_path[identifier] -= 1
                    continue
                depth = on_path.get(identifier, 0)
                if depth == 0:
                    add(frame, frame.time, frame.cpu_time)
                on_path[identifier] = depth + 1
                stack.append((frame, True))
                stack.extend((c, False) for c in frame._children)

        threshold = self.processor_options.get("filter_threshold", processors.DEFAULT_FILTER_THRESHOLD)
        if threshold is None:
            threshold = processors.DEFAULT_FILTER_THRESHOLD
        limit = 0.0 if self.show_all else self._total * float(threshold)
        rows = [(v, f, cpu) for v, f, _, cpu in entries.values() if v > 0 and v >= limit]
        # (rounded so that float noise does not reorder equal times)
        rows.sort(key=lambda row: (-round(row[0], 9), row[1].display_name))
        return [self.frame_description(f, value=v, cpu_value=cpu) for v, f, cpu in rows]
