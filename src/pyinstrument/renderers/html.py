"""The HTML report: one self-contained page to explore a session in a web browser.

The page needs no network and no build step: the styles (``html_assets/app.css``), the
program (``html_assets/app.js``, plain JavaScript) and the session's data are inlined
into one file, which a browser opens from disk. It shows a header (what was profiled,
when, duration, samples, CPU time, drop rate), the call tree (library code folded with
the console's rules, a threshold, search), a flame graph, a timeline and the time per
source line of a function; ``docs/html.md`` describes the page.

Data. The session is embedded as JSON in a ``<script type="application/json">``
element and read with ``JSON.parse``; it holds:

- a frame table (name, file, short path, first line, application or library code,
  library name), shared by every view;
- per thread, the aggregated call tree as flat node arrays (parent, frame, wall and
  CPU microseconds), built with the console's processors except those the page does
  itself (the threshold and library folding, so that both can be changed in the page);
- per frame and thread, the wall time at each source line (and, when the file can be
  read while rendering, the text of those lines);
- per thread, the timeline as consecutive runs (duration, stack) on the thread's clock
  (see :class:`~pyinstrument.renderers.stacks.SampleStacks`), the stacks stored once
  as a trie (parent, frame).

Large sessions. An hour at 1 ms has millions of timeline entries. When there are more
than :data:`MAX_TIMELINE_RUNS`, or ``resample_interval`` is given, runs shorter than
the resampling interval are pooled into spans of that length, each shown with the
stack that took most of its time (longer runs stay exact, every thread's clock stays
exact). A tree of more than :data:`MAX_TREE_NODES` nodes keeps its largest nodes. The
page says when either happened.

Untrusted text. Function names and paths come from the profiled program. They only
reach the page inside the JSON, where ``json.dumps`` escapes everything outside ASCII
(so U+2028/U+2029 cannot end a line) and ``<`` is written ``\\u003c`` (so no
``</script>`` or ``<!--`` can end the element); the program shows them with
``textContent`` and canvas text only. A lone surrogate (a path's undecodable byte) is
kept as its ``\\udcXX`` escape and shown as a replacement character. A
Content-Security-Policy allows only the page's own script and style (by hash) and no
network access.
"""

from __future__ import annotations

import base64
import hashlib
import json
import linecache
import math
import os
import re
from array import array
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from pyinstrument import processors, run_metadata
from pyinstrument.frame import (
    AWAIT_FRAME_IDENTIFIER,
    OUT_OF_CONTEXT_FRAME_IDENTIFIER,
    SELF_TIME_FRAME_IDENTIFIER,
    Frame,
    dispose_tree,
    gc_paused,
)
from pyinstrument.frame_table import NO_NODE
from pyinstrument.renderers.base import FrameRenderer, ProcessorType
from pyinstrument.renderers.stacks import MAIN_THREAD_NAME, SampleStacks
from pyinstrument.session import Session

#: data format version (``data.version`` in the page)
DATA_VERSION = 1
#: most timeline runs written before resampling (all threads together)
MAX_TIMELINE_RUNS = 200_000
#: most call-tree nodes written; beyond this the smallest are left out
MAX_TREE_NODES = 250_000
#: most characters of source text embedded for the lines view
MAX_SOURCE_CHARS = 1_000_000
#: most source lines shown for one function, and characters kept of one line
MAX_SOURCE_LINES_PER_FUNCTION = 400
MAX_SOURCE_LINE_CHARS = 400

_ASSETS = os.path.join(os.path.dirname(__file__), "html_assets")
_MICRO = 1e6


def asset(name: str) -> str:
    """A file of html_assets, to inline into a page."""
    with open(os.path.join(_ASSETS, name), encoding="utf-8") as f:
        text = f.read()
    for end in ("</script", "</style"):
        if end in text.lower():  # our own assets: a mistake to catch here, not in a browser
            raise ValueError(f"the HTML asset {name} contains {end}")
    return text


def csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def embed_json(value: Any) -> str:
    """``value`` as JSON that can sit inside a ``<script>`` element: ASCII only and no
    ``<``, so nothing in it can close the element or start a comment."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def _python_version(session: Session) -> Optional[str]:
    """The profiled interpreter's version as its paths show it (``.../python3.12/...``);
    sessions do not record it otherwise."""
    made_with = session.run_metadata or {}
    version = made_with.get("python") or getattr(session, "python_version", None)
    if version:
        return str(version)
    for path in list(session.sys_path) + list(session.sys_prefixes):
        match = re.search(r"python(\d+\.\d+)", path)
        if match:
            return match.group(1)
    return None


def _finite(value: float) -> Optional[float]:
    """A number JSON can carry (a damaged session's NaN or infinity becomes null)."""
    return value if math.isfinite(value) else None


def _pyinstrument_version() -> str:
    try:
        from pyinstrument import __version__
    except Exception:  # pragma: no cover - a broken install
        return "?"
    return str(__version__)


class _FrameTable:
    """Unique functions, as the page shows them, in columns."""

    def __init__(self, hide_re: Optional["re.Pattern[str]"], show_re: Optional["re.Pattern[str]"]) -> None:
        self.index: Dict[Tuple[str, str, int], int] = {}
        self.name: List[str] = []
        self.file: List[str] = []
        self.short: List[str] = []
        self.line: List[int] = []
        self.app: List[int] = []
        self.lib: List[str] = []
        self.flag: List[int] = []  # 1: always shown (show_regex), 2: hidden (hide_regex)
        self.hide_re = hide_re
        self.show_re = show_re

    def add(self, name: str, path: str, short: str, line: int, app: bool, lib: str) -> int:
        key = (name, path, line)
        index = self.index.get(key)
        if index is None:
            index = self.index[key] = len(self.name)
            self.name.append(name)
            self.file.append(path)
            self.short.append(short)
            self.line.append(line)
            self.app.append(1 if app else 0)
            self.lib.append(lib)
            flag = 0
            if self.show_re is not None and self.show_re.match(path):
                flag = 1
            elif self.hide_re is not None and self.hide_re.match(path):
                flag = 2
            self.flag.append(flag)
        return index

    def as_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "short": self.short,
            "line": self.line,
            "app": self.app,
            "lib": self.lib,
            "flag": self.flag,
        }


class HTMLRenderer(FrameRenderer):
    """A self-contained HTML page to explore the session in a browser.

    :param show_all: start with library code unfolded and no threshold (the page can
        change both).
    :param timeline: the call tree is chronological (identical calls merged only when
        they follow each other) instead of aggregated.
    :param processor_options: ``filter_threshold`` (the page's initial threshold),
        ``hide_regex`` and ``show_regex`` (file paths hidden or always shown by library
        folding), as for the console.
    :param resample_interval: pool timeline runs shorter than this many seconds (see
        the module docstring); by default only sessions with more than
        :data:`MAX_TIMELINE_RUNS` runs are resampled, at an interval chosen to fit.
    :param include_source: embed the source lines of the functions in the lines view,
        when their files can be read while rendering.
    """

    output_file_extension = "html"
    output_is_binary = False

    def __init__(
        self,
        show_all: bool = False,
        timeline: bool = False,
        processor_options: Optional[Dict[str, Any]] = None,
        resample_interval: Optional[float] = None,
        include_source: bool = True,
    ) -> None:
        super().__init__(show_all=show_all, timeline=timeline, processor_options=processor_options)
        if resample_interval is not None:
            resample_interval = float(resample_interval)
            if not resample_interval >= 0 or math.isinf(resample_interval):
                raise ValueError("resample_interval must be a number of seconds, 0 or more")
        self.resample_interval = resample_interval
        self.include_source = bool(include_source)

    def default_processors(self) -> List[ProcessorType]:
        # The threshold and library folding are left to the page, which can change them.
        left_to_the_page = (
            processors.remove_irrelevant_nodes,
            processors.remove_unnecessary_self_time_nodes,
            processors.group_library_frames_processor,
        )
        return [p for p in super().default_processors() if p not in left_to_the_page]

    # -- entry point ----------------------------------------------------------------------

    def render(self, session: Session) -> str:
        with gc_paused():
            data = self.session_data(session)
            phases = self._phases_data(session)
        return self.page(data, phases)

    def _phases_data(self, session: Session) -> List[Dict[str, Any]]:
        """A run's phases (Profiler.phase), each with the page's data of that phase alone,
        for the page's phase selector; none when the run had none, or is all one phase."""
        phases = session.phases
        if phases is None or not phases.names or len(set(phases.records)) == 1 and phases.records[0] != 0:
            return []
        return [
            {"name": name, "seconds": _finite(seconds), "data": self.session_data(session.phase(name))}
            for name, seconds in zip(phases.names, phases.seconds)
        ]

    def open_in_browser(self, session: Session, output_filename: Optional[str] = None) -> str:
        """Write the report to ``output_filename`` (a new temporary file by default), open
        it in the web browser, and return the file's name."""
        import tempfile
        import webbrowser
        from pathlib import Path

        report = self.render(session)
        if output_filename is None:
            with tempfile.NamedTemporaryFile(
                "w", suffix=".html", prefix="pyinstrument-", delete=False, encoding="utf-8"
            ) as f:
                f.write(report)
                output_filename = f.name
        else:
            with open(output_filename, "w", encoding="utf-8") as f:
                f.write(report)
        webbrowser.open(Path(output_filename).resolve().as_uri())
        return output_filename

    def page(self, data: Dict[str, Any], phases: Sequence[Dict[str, Any]] = ()) -> str:
        """The HTML page around ``data`` (what :meth:`session_data` returns), and each of
        the run's *phases* (``{"name", "seconds", "data"}``), which the page can show instead."""
        script = asset("app.js")
        style = asset("app.css")
        policy = (
            "default-src 'none'; "
            f"script-src {csp_hash(script)}; style-src {csp_hash(style)}; "
            "img-src data:; base-uri 'none'; form-action 'none'"
        )
        return "".join(
            [
                '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
                f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n',
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
                '<meta name="generator" content="pyinstrument">\n',
                "<title>pyinstrument report</title>\n",
                "<style>",
                style,
                "</style>\n</head>\n<body>\n",
                '<noscript><p class="noscript">This report needs JavaScript to show the profile.</p></noscript>\n',
                '<div id="app" class="app"></div>\n',
                '<script type="application/json" id="pyinstrument-data">',
                embed_json(data),
                "</script>\n",
                *(
                    [
                        '<script type="application/json" id="pyinstrument-phases">',
                        embed_json([{"name": phase["name"], "seconds": phase["seconds"]} for phase in phases]),
                        "</script>\n",
                    ]
                    if phases
                    else []
                ),
                *(
                    f'<script type="application/json" id="pyinstrument-data-phase-{number}">{embed_json(phase["data"])}'
                    "</script>\n"
                    for number, phase in enumerate(phases, 1)
                ),
                "<script>",
                script,
                "</script>\n</body>\n</html>\n",
            ]
        )

    # -- data -----------------------------------------------------------------------------

    def session_data(self, session: Session) -> Dict[str, Any]:
        """Everything the page shows, as plain JSON-able data."""
        options = self.processor_options
        hide_regex = options.get("hide_regex")
        show_regex = options.get("show_regex")
        table = _FrameTable(
            re.compile(hide_regex) if hide_regex else None,
            re.compile(show_regex) if show_regex else None,
        )
        notes: List[str] = []
        stacks = SampleStacks(session)
        threads = _Threads(stacks)

        root = self.session_root_frame(session)
        tree, lines = self._tree(root, table, threads, notes)
        dispose_tree(root)

        timeline = None
        if session.timeline is not None:
            timeline = self._timeline(session, stacks, table, threads, notes)
        else:
            notes.append("This session has no timeline (it was saved without one), so the timeline view is empty.")

        sources = self._sources(table, lines) if self.include_source else {}
        thread_list = _drop_threads_without_samples(threads.as_json(), tree, lines, timeline)

        threshold = options.get("filter_threshold")
        data: Dict[str, Any] = {
            "format": "pyinstrument-html",
            "version": DATA_VERSION,
            "meta": {
                "target": session.target_description,
                "start_time": _finite(session.start_time),
                "duration": _finite(session.duration),
                "sample_count": session.sample_count,
                "dropped_samples": session.dropped_samples,
                "truncated_samples": session.truncated_samples,
                "cpu_time": _finite(session.cpu_time),
                "has_cpu": stacks.has_cpu,
                "interval": _finite(session.min_interval),
                "python_version": _python_version(session),
                # what the run was made with, in one line (pyinstrument.run_metadata)
                "made_with": run_metadata.summary(session.run_metadata) or None,
                "pyinstrument_version": _pyinstrument_version(),
                # {thread: [held, waiting, outside] seconds}: where threads stood with the GIL
                "gil": session.gil,
            },
            "options": {
                # null: not given, the page uses the viewer's remembered settings
                "show_all": True if self.show_all else None,
                "threshold": (0.0 if self.show_all else (float(threshold) if threshold is not None else None)),
                "default_threshold": processors.DEFAULT_FILTER_THRESHOLD,
                "large_self_time_share": processors.LARGE_SELF_TIME_SHARE,
                "hide_regex": hide_regex or None,
                "show_regex": show_regex or None,
                "chronological_tree": bool(self.timeline),
            },
            "frames": table.as_json(),
            "threads": thread_list,
            "tree": tree,
            "lines": lines,
            "sources": sources,
            "timeline": timeline,
            "notes": notes,
        }
        return data

    # -- the call tree --------------------------------------------------------------------

    def _tree(
        self, root: Optional[Frame], table: _FrameTable, threads: "_Threads", notes: List[str]
    ) -> Tuple[Dict[str, List[int]], List[Any]]:
        """Flat node arrays (parents before children) and the per-line times."""
        parent_of: List[int] = []
        thread_of: List[int] = []
        frame_of: List[int] = []
        wall: List[int] = []
        cpu: List[int] = []
        lines: Dict[Tuple[int, int], Dict[int, float]] = {}
        if root is None:
            return {"parent": parent_of, "thread": thread_of, "frame": frame_of, "wall": wall, "cpu": cpu}, []

        # (frame, parent node index, thread index): thread frames and [root] are not nodes
        tops: List[Tuple[Frame, int]] = []
        pending = [root]
        while pending:
            frame = pending.pop()
            if frame.is_root_placeholder:
                pending.extend(reversed(frame._children))
            elif frame.is_thread:
                thread = threads.of_tree_thread(frame.function, frame.line_no)
                tops.extend((child, thread) for child in frame._children)
            else:
                tops.append((frame, threads.default()))

        limit = self._node_time_limit(root)
        if limit > 0:
            notes.append(
                f"The call tree is large: calls shorter than {limit * 1000:.3g} ms are left out of it "
                "(their time stays with their callers)."
            )
        context = root.context
        chronological = self.timeline
        frame_index_cache: Dict[Tuple[str, Optional[str]], int] = {}

        def frame_index(frame: Frame) -> int:
            identifier = frame.identifier
            if frame.is_synthetic:
                # [await] or [out-of-context]: a leaf named after what it stands for
                key: Tuple[str, Optional[str]] = (identifier, None)
                found = frame_index_cache.get(key)
                if found is None:
                    label = {
                        AWAIT_FRAME_IDENTIFIER: "[await]",
                        OUT_OF_CONTEXT_FRAME_IDENTIFIER: "[out-of-context]",
                        SELF_TIME_FRAME_IDENTIFIER: "[self]",
                    }
                    found = frame_index_cache[key] = table.add(label.get(identifier, identifier), "", "", 0, False, "")
                return found
            class_name = frame.class_name
            key = (identifier, class_name)
            found = frame_index_cache.get(key)
            if found is None:
                path = frame.file_path or ""
                found = frame_index_cache[key] = table.add(
                    frame.display_name,
                    path,
                    context.shorten_path(path) if path else "",
                    frame.line_no or 0,
                    frame.is_application_code,
                    (context.library_name(path) or "") if path else "",
                )
            return found

        # depth-first, parents before children; entries: (frame, parent index, thread)
        stack: List[Tuple[Frame, int, int]] = [(f, -1, t) for f, t in reversed(tops)]
        # for the per-line times: how often each frame is on the current path, so that
        # a recursive function's lines are counted once
        on_path: Dict[Tuple[int, int], int] = {}
        exits: List[Any] = []
        while stack:
            frame, parent, thread = stack.pop()
            if frame is None:  # leaving a node
                key = exits.pop()
                on_path[key] -= 1
                continue
            if (frame.is_self_time and not chronological) or frame.time < limit:
                # an aggregated tree's [self] nodes are its nodes' own time, which the
                # page works out; a chronological tree keeps them in their places
                continue
            index = len(frame_of)
            f = frame_index(frame)
            parent_of.append(parent)
            thread_of.append(thread)
            frame_of.append(f)
            wall.append(round(frame.time * _MICRO))
            cpu.append(round(frame.cpu_time * _MICRO))
            key = (f, thread)
            depth = on_path.get(key, 0)
            if depth == 0 and frame.attributes:
                line_times = frame.line_times()
                if line_times:
                    totals = lines.setdefault(key, {})
                    for line, t in line_times.items():
                        totals[line] = totals.get(line, 0.0) + t
            on_path[key] = depth + 1
            exits.append(key)
            stack.append((None, 0, 0))  # type: ignore[arg-type]
            children = frame._children
            for i in range(len(children) - 1, -1, -1):
                stack.append((children[i], index, thread))

        line_rows: List[Any] = []
        for (f, thread), totals in lines.items():
            flat: List[int] = []
            for line in sorted(totals):
                micro = round(totals[line] * _MICRO)
                if micro > 0:
                    flat += [line, micro]
            if flat:
                line_rows.append([f, thread, flat])
        tree = {"parent": parent_of, "thread": thread_of, "frame": frame_of, "wall": wall, "cpu": cpu}
        return tree, line_rows

    @staticmethod
    def _node_time_limit(root: Frame) -> float:
        """0, or the time below which nodes are left out to keep MAX_TREE_NODES."""
        times = [f.time for f in root.iter_subtree() if not f.is_self_time]
        if len(times) <= MAX_TREE_NODES:
            return 0.0
        times.sort(reverse=True)
        # strictly above the cut, so that equal times do not overshoot the budget
        cut = times[MAX_TREE_NODES]
        return math.nextafter(cut, math.inf) if hasattr(math, "nextafter") else cut * (1 + 1e-12)

    # -- the timeline ---------------------------------------------------------------------

    def _timeline(
        self,
        session: Session,
        stacks: SampleStacks,
        table: _FrameTable,
        threads: "_Threads",
        notes: List[str],
    ) -> Dict[str, Any]:
        # the stack trie: one node per distinct (parent, frame); the samples' trie less
        # the lines being executed
        trie_parent: List[int] = []
        trie_frame: List[int] = []
        trie_index: Dict[Tuple[int, int], int] = {}
        context = session.frame_context()
        frame_map = [
            table.add(
                f.name,
                f.file_path,
                f.file_path_short,
                f.line_no,
                f.is_application_code,
                (context.library_name(f.file_path) or "") if f.file_path else "",
            )
            for f in stacks.frames
        ]
        node_map = array("i", [NO_NODE]) * len(stacks.trie_parent)
        for node, (above, frame) in enumerate(zip(stacks.trie_parent, stacks.trie_frame)):
            key = (node_map[above] if above != NO_NODE else NO_NODE, frame_map[frame])
            child = trie_index.get(key)
            if child is None:
                child = trie_index[key] = len(trie_parent)
                trie_parent.append(key[0])
                trie_frame.append(key[1])
            node_map[node] = child
        record_stack = [node_map[node] if node != NO_NODE else NO_NODE for node in stacks.node_of]
        lane_of_record = [threads.of_stacks_thread(t) for t in stacks.thread_of]

        entries = len(session.timeline or ())
        interval = self.resample_interval
        automatic = interval is None
        if interval is None:
            interval = 0.0
            if entries > MAX_TIMELINE_RUNS:
                # as many spans as the budget holds; the runs longer than a span are
                # fewer than the spans, so this lands between one and two budgets and
                # usually well under one
                total = sum(session.timeline.seconds) if session.timeline is not None else 0.0
                interval = total / MAX_TIMELINE_RUNS
        while True:
            lanes = _resample(stacks.chronological(), record_stack, lane_of_record, threads.count(), interval)
            written = sum(len(lane["stack"]) for lane in lanes)
            if not automatic or written <= MAX_TIMELINE_RUNS or interval <= 0:
                break
            interval *= 2 * written / MAX_TIMELINE_RUNS
        if interval > 0:
            notes.append(
                f"The timeline is resampled: of its {entries:,} runs of samples, those shorter than "
                f"{_format_duration(interval)} are pooled into spans of that length, each shown with the "
                f"call stack that took most of its time ({written:,} runs drawn). Zoomed in that far, "
                "the timeline is approximate; the call tree, flame graph and line times are exact."
            )
        return {
            "entries": entries,
            "runs": written,
            "resample_interval": interval,
            "stacks": {"parent": trie_parent, "frame": trie_frame},
            "threads": lanes,
        }

    # -- source lines ---------------------------------------------------------------------

    @staticmethod
    def _sources(table: _FrameTable, lines: List[Any]) -> Dict[str, Any]:
        """``{frame: [first line number, [text, ...]]}`` for the functions in the lines
        view whose files can be read now."""
        wanted: Dict[int, int] = {}
        for f, _, flat in lines:
            last = max(flat[0::2])
            wanted[f] = max(wanted.get(f, 0), last)
        result: Dict[str, Any] = {}
        budget = MAX_SOURCE_CHARS
        for f in sorted(wanted, key=lambda f: (table.file[f], table.line[f])):
            path = table.file[f]
            if not path or path.startswith("<") or not os.path.isfile(path):
                continue
            first = table.line[f] or 1
            last = min(wanted[f] + 2, first + MAX_SOURCE_LINES_PER_FUNCTION - 1)
            if last < first:
                continue
            texts = []
            for n in range(first, last + 1):
                texts.append(linecache.getline(path, n).rstrip("\r\n")[:MAX_SOURCE_LINE_CHARS])
            while texts and not texts[-1].strip():
                texts.pop()
            # a method's lines without the class's indentation
            indents = [len(t) - len(t.lstrip(" \t")) for t in texts if t.strip()]
            common = min(indents) if indents else 0
            if common:
                texts = [t[common:] if t[:common].strip(" \t") == "" else t for t in texts]
            size = sum(len(t) for t in texts)
            if not texts or size > budget:
                continue
            budget -= size
            result[str(f)] = [first, texts]
        return result


# -- threads ----------------------------------------------------------------------------------


class _Threads:
    """The threads as the page lists them: those of the samples (main thread first),
    matched between the call tree's thread frames and the sample stacks."""

    def __init__(self, stacks: SampleStacks) -> None:
        self.names: List[str] = []
        self.idents: List[Optional[int]] = []
        self._by_key: Dict[Tuple[str, Optional[int]], int] = {}
        self._stacks_map: List[int] = []
        for name, ident in zip(stacks.threads, stacks.thread_idents):
            self._stacks_map.append(self._add(name, ident))

    def _add(self, name: str, ident: Optional[int]) -> int:
        key = (name, ident)
        index = self._by_key.get(key)
        if index is None:
            index = self._by_key[key] = len(self.names)
            self.names.append(name)
            self.idents.append(ident)
        return index

    def count(self) -> int:
        return len(self.names)

    def default(self) -> int:
        """The thread of frames recorded without a thread frame."""
        return self._add(MAIN_THREAD_NAME, None)

    def of_tree_thread(self, name: str, ident: Optional[int]) -> int:
        return self._add(name or MAIN_THREAD_NAME, ident)

    def of_stacks_thread(self, index: int) -> int:
        return self._stacks_map[index]

    def as_json(self) -> List[Dict[str, Any]]:
        return [{"name": n, "ident": i} for n, i in zip(self.names, self.idents)]


def _drop_threads_without_samples(
    threads: List[Dict[str, Any]], tree: Dict[str, List[int]], lines: List[Any], timeline: Optional[Dict[str, Any]]
) -> List[Dict[str, Any]]:
    """The threads that have samples, renumbering the data that refers to them (the
    engine can see a thread before it has an ident, leaving an empty one behind)."""
    used = set(tree["thread"])
    if timeline is not None:
        for index, lane in enumerate(timeline["threads"]):
            if any(stack >= 0 for stack in lane["stack"]):
                used.add(index)
    if len(used) == len(threads):
        return threads
    keep = sorted(used)
    number = {old: new for new, old in enumerate(keep)}
    tree["thread"] = [number[t] for t in tree["thread"]]
    for row in lines:
        row[1] = number[row[1]]
    if timeline is not None:
        timeline["threads"] = [timeline["threads"][t] for t in keep]
    return [threads[t] for t in keep]


# -- resampling -------------------------------------------------------------------------------


def _resample(
    chronological: Iterable[Tuple[int, float]],
    record_stack: Sequence[int],
    lane_of_record: Sequence[int],
    lane_count: int,
    interval: float,
) -> List[Dict[str, List[int]]]:
    """Each lane's runs as ``{"duration": [µs], "stack": [trie leaf or -1]}``.

    Consecutive entries of one lane with the same stack make one run. With an
    ``interval``, runs shorter than it are pooled until the pool holds ``interval``
    seconds (or a longer run comes), and the pool becomes one run of the stack with the
    most time in it. Durations are differences of the lane's clock rounded to whole
    microseconds, so lanes stay aligned however many runs there are.

    One loop with the current lane's state in local variables: it sees every timeline
    entry (millions for an hour), and the lane changes rarely (the engine writes one
    thread after the other).
    """
    # per lane: [ends, stacks, clock, open run's stack, its seconds, pool, pool seconds];
    # stack -2: no open run
    saved: List[List[Any]] = [[[], [], 0.0, -2, 0.0, {}, 0.0] for _ in range(lane_count)]
    lane = -1
    ends: List[float] = []
    out: List[int] = []
    clock = run_seconds = pool_seconds = 0.0
    run_stack = -2
    pool: Dict[int, float] = {}
    for record, seconds in chronological:
        stack = record_stack[record]
        record_lane = lane_of_record[record]
        if record_lane != lane:
            if lane >= 0:
                saved[lane] = [ends, out, clock, run_stack, run_seconds, pool, pool_seconds]
            lane = record_lane
            ends, out, clock, run_stack, run_seconds, pool, pool_seconds = saved[lane]
        if stack == run_stack:
            run_seconds += seconds
            clock += seconds
            continue
        if run_stack != -2:
            # the open run ends at `clock`
            if run_seconds < interval:
                pool[run_stack] = pool.get(run_stack, 0.0) + run_seconds
                pool_seconds += run_seconds
                if pool_seconds >= interval:
                    best = max(pool, key=pool.__getitem__)
                    if out and out[-1] == best:
                        ends[-1] = clock
                    else:
                        out.append(best)
                        ends.append(clock)
                    pool = {}
                    pool_seconds = 0.0
            else:
                if pool:
                    best = max(pool, key=pool.__getitem__)
                    if out and out[-1] == best:
                        ends[-1] = clock - run_seconds
                    else:
                        out.append(best)
                        ends.append(clock - run_seconds)
                    pool = {}
                    pool_seconds = 0.0
                if out and out[-1] == run_stack:
                    ends[-1] = clock
                else:
                    out.append(run_stack)
                    ends.append(clock)
        run_stack = stack
        run_seconds = seconds
        clock += seconds
    if lane >= 0:
        saved[lane] = [ends, out, clock, run_stack, run_seconds, pool, pool_seconds]

    lanes: List[Dict[str, List[int]]] = []
    for ends, out, clock, run_stack, run_seconds, pool, _ in saved:
        # what is still open at the end: the pool (earlier), then the run
        if run_stack != -2 and run_seconds < interval:
            pool[run_stack] = pool.get(run_stack, 0.0) + run_seconds
            run_stack = -2
        if pool:
            out.append(max(pool, key=pool.__getitem__))
            ends.append(clock if run_stack == -2 else clock - run_seconds)
        if run_stack != -2:
            out.append(run_stack)
            ends.append(clock)
        durations: List[int] = []
        stacks: List[int] = []
        previous = 0
        for end, stack in zip(ends, out):
            micro = round(end * _MICRO)
            if stacks and stacks[-1] == stack:
                durations[-1] += micro - previous
            else:
                durations.append(micro - previous)
                stacks.append(stack)
            previous = micro
        lanes.append({"duration": durations, "stack": stacks})
    return lanes


def _format_duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"
