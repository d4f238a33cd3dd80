"""A standalone, interactive flame graph as one SVG file.

Open the file in a web browser: no server, no other file and no network are needed.
The graph is an *icicle*: the root at the top, each function's callees below it, a
frame's width proportional to its time (wall or CPU, see ``time``). The x axis is not
time: callees are sorted alphabetically, so a function keeps its place between
graphs. All samples of all threads are shown; when the session has several threads,
each thread is a frame under the root ``all``, and a list at the top jumps to each.

A small script embedded in the SVG shows a frame's details (name, file:line, wall and
CPU time, percent of the total) when the pointer is over it, zooms into a frame on
click (click ``all``, "Reset zoom" or press Esc to go back), and highlights the
functions whose name matches a regular expression (the "Search" button or Ctrl-F).
Without scripting (an image viewer), the graph and the native tooltips still work.

Colours tell the kind of code: warm reds and oranges for the application's code, blues
for libraries (the interpreter's and installed packages), lavender for built-in
functions, greys for the root and the threads.

To keep the file small, frames narrower than ``min_width`` pixels are not drawn (their
time still counts in their caller); a note at the bottom of the graph says how many
and how much time they held. Zooming does not bring them back.

Text safety: every name and path from the profiled program is XML-escaped, and the
script reads names only from the document (``data-name`` attributes, ``<title>``
text) and writes them with ``textContent``, so no name can become markup. XML cannot
hold most control characters, lone surrogates (Python's stand-in for undecodable
bytes in file names) or U+FFFE/U+FFFF: control characters U+0000-U+001F other than
tab, newline and carriage return become their Unicode "control pictures" (NUL is
U+2400 ␀, U+0001 is ␁ and so on; reversible unless a name already holds such a
picture), the others become U+FFFD. Tabs, newlines and carriage returns are kept, as
character references where XML would otherwise normalize them away.
"""

from __future__ import annotations

import colorsys
import math
import re
import time as time_module
import unicodedata
import zlib
from typing import Dict, List, Optional, Tuple

from pyinstrument.frame_table import NO_NODE
from pyinstrument.renderers.base import Renderer
from pyinstrument.renderers.stacks import SampleStacks, StackFrame
from pyinstrument.session import Session

TIME_CHOICES = ("wall", "cpu")

FRAME_HEIGHT = 16
FONT_SIZE = 12
CHAR_WIDTH = 7.3  # a monospace glyph at FONT_SIZE px is about 0.6 em wide (7.22 px in DejaVu Sans Mono)
TITLE_CHAR_WIDTH = 10.4  # the same at the title's 17 px
LEGEND_ROW = 18  # the legend on a row of its own, when it does not fit between the buttons
RESET_WIDTH, SEARCH_WIDTH = 100, 60  # room kept for the "Reset zoom" and "Search" buttons
PAD = 10
TOP = 84  # title, subtitle, buttons and legend above the frames
THREADS_ROW = 22  # the list of threads, below the legend, when there are several
BOTTOM = 56  # details, note and search result below them

_KIND_ROOT = "root"
_KIND_THREAD = "thread"
_KIND_APP = "app"
_KIND_LIBRARY = "lib"
_KIND_BUILTIN = "builtin"

# Characters XML 1.0 cannot hold at all (not even as character references).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_char(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return chr(0x2400 + code) if code < 0x20 else "\ufffd"


def xml_safe(text: str) -> str:
    """``text`` with the characters XML cannot hold replaced visibly (control
    characters by their control pictures, the others by U+FFFD)."""
    return _XML_INVALID.sub(_xml_char, text)


def _text(text: str) -> str:
    """Escaped for XML character data (``\\r`` as a reference: parsers turn a
    literal one into ``\\n``)."""
    return xml_safe(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _attr(text: str) -> str:
    """Escaped for a double-quoted attribute (whitespace as references: parsers turn
    literal tabs and line breaks in attributes into spaces)."""
    return _text(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


def text_columns(text: str) -> int:
    """Columns ``text`` takes in a monospace font: East Asian wide and fullwidth
    characters (CJK, most emoji) take two, combining marks none."""
    columns = 0
    for character in text:
        if character < "\u0300":
            columns += 1
        elif not unicodedata.combining(character):
            columns += 2 if unicodedata.east_asian_width(character) in ("W", "F") else 1
    return columns


def fit_text(text: str, width: float, char_width: float = CHAR_WIDTH, ellipsis: str = "..") -> str:
    """``text``, or its start followed by ``ellipsis``, in at most ``width`` px of a
    monospace font whose glyphs are ``char_width`` px wide ("" when not even the
    ellipsis and one character fit)."""
    available = math.floor(width / char_width)
    if text_columns(text) <= available:
        return text
    room = available - len(ellipsis)
    if room < 1:
        return ""
    kept, used = [], 0
    for character in text:
        need = text_columns(character)
        if used + need > room:
            break
        kept.append(character)
        used += need
    return "".join(kept) + ellipsis


def fit_label(name: str, width: float) -> str:
    """The part of ``name`` that fits in a frame ``width`` px wide, 3 px from each edge
    (the embedded script does the same after a zoom, and measures the text it writes)."""
    if math.floor((width - 6) / CHAR_WIDTH) < 3:
        return ""
    return fit_text(name, width - 6)


def wrap_text(text: str, width: float, char_width: float = CHAR_WIDTH) -> List[str]:
    """``text`` broken at spaces into lines of at most ``width`` px (a word longer than
    a line is cut to fit)."""
    lines: List[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and text_columns(candidate) * char_width > width:
            lines.append(line)
            candidate = word
        line = fit_text(candidate, width, char_width)
    lines.append(line)
    return lines


def _seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.0f} \u00b5s"


def _color(kind: str, name: str) -> str:
    """A fill colour: the hue range says the kind of code, the name picks a shade in it
    (stable, so a function has the same colour in every graph)."""
    if kind == _KIND_ROOT:
        return "#b8b8b8"
    if kind == _KIND_THREAD:
        return "#d2d2d2"
    h = zlib.crc32(name.encode("utf-8", "surrogatepass"))
    v1, v2 = (h & 0xFF) / 255.0, ((h >> 8) & 0xFF) / 255.0
    if kind == _KIND_APP:
        hue, lightness, saturation = 5 + 35 * v1, 0.58 + 0.10 * v2, 0.85
    elif kind == _KIND_LIBRARY:
        hue, lightness, saturation = 190 + 35 * v1, 0.66 + 0.10 * v2, 0.55
    else:
        hue, lightness, saturation = 255 + 30 * v1, 0.76 + 0.08 * v2, 0.40
    r, g, b = colorsys.hls_to_rgb(hue / 360.0, lightness, saturation)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


_LEGEND = (
    ("your code", _color(_KIND_APP, "main")),
    ("libraries", _color(_KIND_LIBRARY, "compile")),
    ("built-in", _color(_KIND_BUILTIN, "sleep")),
)


class _Node:
    """A call path in the aggregated tree: its time and its callees."""

    __slots__ = ("key", "wall", "cpu", "children")

    def __init__(self, key: int) -> None:
        self.key = key  # frame index; -1 for the root, -2 - i for thread i
        self.wall = 0.0
        self.cpu = 0.0
        self.children: Dict[int, "_Node"] = {}

    def child(self, key: int) -> "_Node":
        node = self.children.get(key)
        if node is None:
            node = self.children[key] = _Node(key)
        return node


def _made_child(parent: _Node, key: int, made: List[Tuple[_Node, _Node]]) -> _Node:
    child = parent.child(key)
    made.append((child, parent))
    return child


class FlamegraphRenderer(Renderer):
    """An interactive flame graph (icicle) in a standalone SVG file. See the module
    docstring for what it shows and how it escapes text.

    :param time: ``"wall"`` (elapsed time) or ``"cpu"`` (CPU time; the session must
        have recorded it) sets the frames' widths. The details show both.
    :param width: width of the image in pixels.
    :param title: the heading (default "Flame graph").
    :param min_width: frames narrower than this many pixels are not drawn, to keep
        the file small (0 draws everything). Threads are always drawn.
    """

    output_file_extension = "svg"
    output_is_binary = False

    def __init__(
        self,
        time: str = "wall",
        width: int = 1200,
        title: Optional[str] = None,
        min_width: float = 0.1,
    ) -> None:
        super().__init__()
        if time not in TIME_CHOICES:
            raise ValueError(f"time must be one of {', '.join(TIME_CHOICES)}, not {time!r}")
        width = int(width)
        if width < 200:
            raise ValueError("width must be at least 200 pixels")
        min_width = float(min_width)
        if not min_width >= 0:
            raise ValueError("min_width must be 0 or more pixels")
        self.time = time
        self.width = width
        self.title = "Flame graph" if title is None else str(title)
        self.min_width = min_width

    # -- the tree -----------------------------------------------------------------------

    def _build_tree(self, stacks: SampleStacks, with_threads: bool) -> _Node:
        # each record's time at its node of the stacks' trie (per thread), in order of
        # first appearance; nodes that differ only by current line are one flame node
        own: Dict[Tuple[int, int], List[float]] = {}
        for node, thread, wall, cpu in zip(stacks.node_of, stacks.thread_of, stacks.wall, stacks.cpu):
            if node == NO_NODE:
                continue
            key = (thread if with_threads else 0, node)
            times = own.get(key)
            if times is None:
                own[key] = [wall, cpu]
            else:
                times[0] += wall
                times[1] += cpu

        root = _Node(-1)
        made: List[Tuple[_Node, _Node]] = []  # (node, its parent), parents first
        flame_of: Dict[Tuple[int, int], _Node] = {}
        parents, frames = stacks.trie_parent, stacks.trie_frame

        def flame_node(thread: int, node: int) -> _Node:
            found = flame_of.get((thread, node))
            if found is not None:
                return found
            path = []  # trie nodes from here up to the first with a flame node
            while node != NO_NODE and (thread, node) not in flame_of:
                path.append(node)
                node = parents[node]
            if node != NO_NODE:
                above = flame_of[(thread, node)]
            elif with_threads:
                above = root.children.get(-2 - thread) or _made_child(root, -2 - thread, made)
            else:
                above = root
            for node in reversed(path):
                child = above.children.get(frames[node]) or _made_child(above, frames[node], made)
                flame_of[(thread, node)] = above = child
            return above

        for (thread, node), (wall, cpu) in own.items():
            leaf = flame_node(thread, node)
            leaf.wall += wall
            leaf.cpu += cpu
        for callee, caller in reversed(made):  # callees first: their totals go to callers
            caller.wall += callee.wall
            caller.cpu += callee.cpu
        return root

    # -- rendering ----------------------------------------------------------------------

    def render(self, session: Session) -> str:
        stacks = SampleStacks(session)
        if self.time == "cpu" and not stacks.has_cpu:
            raise ValueError("this session has no CPU time: render it with time=wall")
        with_threads = len(stacks.threads) > 1
        root = self._build_tree(stacks, with_threads)
        # Everything written stays inside the image: names are cut to their box (the
        # script measures them again in the browser), our own text wraps.
        text_width = self.width - 2 * PAD
        legend = self._legend_positions()
        top = TOP + (legend[-1][3] - 68 if legend else 0)
        threads_y = top + 6
        top += THREADS_ROW if with_threads else 0
        layout = _Layout(self, stacks, root, top)
        layout.draw(with_threads)
        total = layout.total

        omitted = layout.omitted_frames
        if omitted:
            note = (
                f"Note: {omitted} {'frame' if omitted == 1 else 'frames'} narrower than "
                f"{self.min_width:g} px {'is' if omitted == 1 else 'are'} not drawn "
                f"({100.0 * layout.omitted_time / total:.3g}% of the time); render with a smaller "
                "min_width or a larger width to see them."
            )
        else:
            note = f"Note: every frame is drawn (none narrower than {self.min_width:g} px)."
        note_lines = wrap_text(note, text_width)
        details = "Point at a frame for details. Click to zoom, Esc to reset, Ctrl-F to search."

        height = top + (layout.max_depth + 1) * FRAME_HEIGHT + BOTTOM + (len(note_lines) - 1) * 16
        middle = f"{self.width / 2:.1f}"
        title = fit_text(xml_safe(self.title), text_width, TITLE_CHAR_WIDTH)
        subtitle = fit_text(xml_safe(self._subtitle(session, stacks)), text_width)
        out: List[str] = [
            '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n',
            f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{self.width}" '
            f'height="{height}" viewBox="0 0 {self.width} {height}" data-pad="{PAD}" '
            f'data-graph-width="{layout.graph_width}" data-char-width="{CHAR_WIDTH}">\n',
            f'<style type="text/css"><![CDATA[{_CSS}]]></style>\n',
            f'<rect class="background" x="0" y="0" width="{self.width}" height="{height}"/>\n',
            f'<text id="title" class="fit" x="{middle}" y="24">{_text(title)}</text>\n',
            f'<text id="subtitle" class="fit" x="{middle}" y="44">{_text(subtitle)}</text>\n',
            f'<text id="reset" class="button" x="{PAD}" y="68" display="none">Reset zoom</text>\n',
            f'<text id="search" class="button" x="{self.width - PAD}" y="68">Search</text>\n',
        ]
        for label, color, legend_x, legend_y in legend:
            out.append(
                f'<rect class="legend" x="{legend_x:.1f}" y="{legend_y - 10}" width="12" height="12" fill="{color}"/>'
                f'<text x="{legend_x + 16:.1f}" y="{legend_y}">{_text(label)}</text>\n'
            )
        if layout.thread_links:
            out.append(self._thread_list(layout.thread_links, threads_y, text_width))
        out.append('<g id="frames">\n')
        out.extend(layout.body)
        out.append("</g>\n")
        if total <= 0:
            empty = "No CPU time was recorded." if stacks.total_wall() > 0 else "No samples were recorded."
            out.append(f'<text id="empty" x="{middle}" y="{top + 16}">{empty}</text>\n')
        details_y = height - BOTTOM - (len(note_lines) - 1) * 16 + 22
        out.append(
            f'<text id="details" class="fit" x="{PAD}" y="{details_y}">{_text(fit_text(details, text_width))}</text>\n'
        )
        out.append(f'<text id="note" x="{PAD}" y="{details_y + 18}">')
        for i, line in enumerate(note_lines):
            out.append(f'<tspan x="{PAD}" dy="{16 if i else 0}">{_text(line)}</tspan>')
        out.append("</text>\n")
        out.append(f'<text id="matched" x="{self.width - PAD}" y="{details_y + 18}"></text>\n')
        out.append(f'<script type="text/ecmascript"><![CDATA[{_SCRIPT}]]></script>\n')
        out.append("</svg>\n")
        return "".join(out)

    def _legend_positions(self) -> List[Tuple[str, str, float, int]]:
        """(label, colour, x, baseline y) of each legend entry: centred between the
        buttons when it fits there, else on rows of its own below them."""
        widths = [16 + text_columns(label) * CHAR_WIDTH + 16 for label, _ in _LEGEND]
        if sum(widths) <= self.width - 2 * PAD - RESET_WIDTH - SEARCH_WIDTH:
            x, y = self.width / 2 - sum(widths) / 2, 68
        else:
            x, y = float(PAD), 68 + LEGEND_ROW
        positions = []
        for (label, color), width in zip(_LEGEND, widths):
            if y > 68 and x > PAD and x + width - 16 > self.width - PAD:
                x, y = float(PAD), y + LEGEND_ROW
            positions.append((label, color, x, y))
            x += width
        return positions

    @staticmethod
    def _thread_list(links: List[Tuple[str, str]], y: int, width: float) -> str:
        """ "Threads: a, b, ..." as links to the threads' frames, as many as fit, then
        how many more there are."""
        parts = [f'<text id="threads" x="{PAD}" y="{y}">Threads: ']
        used = text_columns("Threads: ") * CHAR_WIDTH
        for i, (target, name) in enumerate(links):
            remaining = len(links) - i - 1
            more = f", +{remaining} more" if remaining else ""
            name = xml_safe(name)
            room = width - used - text_columns(", " + more) * CHAR_WIDTH
            shown = fit_text(name, room)
            if i and (not shown or shown != name and room < 20 * CHAR_WIDTH):
                parts.append(_text(f", +{len(links) - i} more"))
                break
            separator = ", " if i else ""
            parts.append(f'{separator}<tspan class="button thread-link" data-target="{target}">{_text(shown)}</tspan>')
            used += text_columns(separator + shown) * CHAR_WIDTH
        parts.append("</text>\n")
        return "".join(parts)

    def _subtitle(self, session: Session, stacks: SampleStacks) -> str:
        parts = []
        if session.target_description:
            parts.append(session.target_description)
        started = time_module.strftime("%Y-%m-%d %H:%M:%S", time_module.localtime(session.start_time))
        parts.append(f"recorded {started}")
        parts.append(f"duration {_seconds(session.duration)}")
        parts.append(f"widths: {'CPU' if self.time == 'cpu' else 'wall'} time")
        if len(stacks.threads) > 1:
            parts.append(f"{len(stacks.threads)} threads")
        return " \u00b7 ".join(parts)


class _Layout:
    """Places the tree's frames (depth first, callees left to right) and writes one
    ``<g>`` per frame wide enough to draw."""

    def __init__(self, renderer: FlamegraphRenderer, stacks: SampleStacks, root: _Node, top: int) -> None:
        self.stacks = stacks
        self.root = root
        self.top = top
        self.min_width = renderer.min_width
        self.by_cpu = renderer.time == "cpu"
        self.total = root.cpu if self.by_cpu else root.wall
        self.graph_width = renderer.width - 2 * PAD
        self.body: List[str] = []
        self.thread_links: List[Tuple[str, str]] = []  # (frame id, thread name)
        self.omitted_frames = 0
        self.omitted_time = 0.0
        self.max_depth = -1
        self._sort_keys = [(f.name, f.file_path, f.line_no) for f in stacks.frames]
        self._colors: Dict[int, str] = {}

    def draw(self, with_threads: bool) -> None:
        if self.total <= 0:
            return
        todo: List[Tuple[_Node, float, int]] = [(self.root, float(PAD), 0)]
        while todo:
            node, x, depth = todo.pop()
            self.max_depth = max(self.max_depth, depth)
            width = self._time(node) / self.total * self.graph_width
            self._write(node, x, depth, width)

            if node.key == -1 and with_threads:
                children = sorted(node.children.values(), key=lambda n: -n.key)  # thread order
            else:
                children = sorted(node.children.values(), key=lambda n: self._sort_keys[n.key])
            placed = []
            child_x = x
            for child in children:
                child_time = self._time(child)
                if child_time <= 0:
                    continue
                child_width = child_time / self.total * self.graph_width
                if child_width < self.min_width and child.key > -2:  # threads always drawn
                    self.omitted_frames += _count_nodes(child, self.by_cpu)
                    self.omitted_time += child_time
                else:
                    placed.append((child, child_x, depth + 1))
                child_x += child_width
            todo.extend(reversed(placed))  # popped left to right, so written in order

    def _time(self, node: _Node) -> float:
        return node.cpu if self.by_cpu else node.wall

    def _describe(self, node: _Node) -> Tuple[str, str, str]:
        """(kind, name, location) of a node."""
        if node.key == -1:
            return _KIND_ROOT, "all", ""
        if node.key <= -2:
            return _KIND_THREAD, self.stacks.threads[-2 - node.key], ""
        frame: StackFrame = self.stacks.frames[node.key]
        if frame.is_builtin:
            kind = _KIND_BUILTIN
        elif frame.is_application_code:
            kind = _KIND_APP
        else:
            kind = _KIND_LIBRARY
        location = f"{frame.file_path}:{frame.line_no}" if frame.line_no else frame.file_path
        return kind, frame.name, location

    def _write(self, node: _Node, x: float, depth: int, width: float) -> None:
        kind, name, location = self._describe(node)
        title_lines = [f"thread {name}" if kind == _KIND_THREAD else name]
        if location:
            title_lines.append(location)
        title_lines.append(f"wall {_seconds(node.wall)} ({_percent(node.wall, self.root.wall)})")
        if self.stacks.has_cpu:
            title_lines.append(f"CPU {_seconds(node.cpu)} ({_percent(node.cpu, self.root.cpu)})")
        color = self._colors.get(node.key)
        if color is None:
            color = self._colors[node.key] = _color(kind, name)
        frame_id = ""
        if kind == _KIND_THREAD:
            frame_id = f"thread-{-2 - node.key}"
            self.thread_links.append((frame_id, name))
            frame_id = f' id="{frame_id}"'
        y = self.top + depth * FRAME_HEIGHT
        label = fit_label(xml_safe(name), width)
        self.body.append(
            f'<g class="f {kind}"{frame_id} data-name="{_attr(name)}">'
            f"<title>{_text(chr(10).join(title_lines))}</title>"
            f'<rect x="{x:.2f}" y="{y}" width="{width:.2f}" height="{FRAME_HEIGHT - 1}" fill="{color}"/>'
            f'<text x="{x + 3:.2f}" y="{y + FRAME_HEIGHT - 4.5}">{_text(label)}</text>'
            "</g>\n"
        )


def _percent(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole > 0 else "-"


def _count_nodes(node: _Node, by_cpu: bool) -> int:
    """How many frames with time ``node`` and its callees hold."""
    count = 0
    todo = [node]
    while todo:
        current = todo.pop()
        if (current.cpu if by_cpu else current.wall) > 0:
            count += 1
            todo.extend(current.children.values())
    return count


_CSS = """
.background { fill: #fafafa; }
text { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace;
       font-size: 12px; fill: #111; }
#title { font-size: 17px; text-anchor: middle; font-weight: bold; }
#subtitle { fill: #555; text-anchor: middle; }
#search, #matched { text-anchor: end; }
#note { fill: #666; }
.button { fill: #1a5fb4; cursor: pointer; text-decoration: underline; }
.f { cursor: pointer; }
.f rect { stroke: #fafafa; stroke-width: 0.5; }
.f:hover > rect { stroke: #000; stroke-width: 1; }
.f text { pointer-events: none; }
.f.parent > rect { opacity: 0.55; }
.legend { stroke: #888; stroke-width: 0.5; }
"""

# Written for this project. It only reads the document (data-* attributes, <title>
# text, the geometry written above) and only writes attributes and textContent.
_SCRIPT = r"""
(function () {
  "use strict";
  var HIGHLIGHT = "#e040fb";
  var EPSILON = 0.015;  // positions are written with 2 decimals
  var svg = document.documentElement;
  var pad = parseFloat(svg.getAttribute("data-pad"));
  var fullWidth = parseFloat(svg.getAttribute("data-graph-width"));
  var charWidth = parseFloat(svg.getAttribute("data-char-width"));
  var details = document.getElementById("details");
  var resetButton = document.getElementById("reset");
  var searchButton = document.getElementById("search");
  var matched = document.getElementById("matched");
  var framesGroup = document.getElementById("frames");
  var defaultDetails = details.textContent;
  var lastPattern = "";

  var frames = [];
  var byElement = new Map();
  var elements = framesGroup.querySelectorAll("g.f");
  for (var i = 0; i < elements.length; i++) {
    var g = elements[i];
    var rect = g.querySelector("rect");
    var frame = {
      g: g,
      rect: rect,
      label: g.querySelector("text"),
      title: g.querySelector("title"),
      name: g.getAttribute("data-name") || "",
      x: parseFloat(rect.getAttribute("x")),
      width: parseFloat(rect.getAttribute("width")),
      top: parseFloat(rect.getAttribute("y")),
      fill: rect.getAttribute("fill"),
      isRoot: g.classList.contains("root")
    };
    frames.push(frame);
    byElement.set(g, frame);
  }

  // as text_columns and fit_text in flamegraph.py: wide (CJK, emoji) characters take
  // two columns of the monospace font, combining marks none
  var WIDE = new RegExp("[\u1100-\u115F\u2E80-\u303E\u3041-\u33FF\u3400-\u4DBF\u4E00-\u9FFF\uA000-\uA4CF" +
    "\uAC00-\uD7A3\uF900-\uFAFF\uFE30-\uFE4F\uFF00-\uFF60\uFFE0-\uFFE6\u{1F000}-\u{1FAFF}\u{20000}-\u{3FFFD}]", "u");
  var MARK = /\p{M}/u;
  function columns(character) {
    return MARK.test(character) ? 0 : WIDE.test(character) ? 2 : 1;
  }

  function fitText(text, width) {
    var available = Math.floor(width / charWidth);
    var points = Array.from(text), total = 0, k;
    for (k = 0; k < points.length; k++) { total += columns(points[k]); }
    if (total <= available) { return text; }
    var room = available - 2, used = 0, kept = [];
    if (room < 1) { return ""; }
    for (k = 0; k < points.length && used + columns(points[k]) <= room; k++) {
      used += columns(points[k]);
      kept.push(points[k]);
    }
    return kept.join("") + "..";
  }

  function fitLabel(name, width) {
    if (Math.floor((width - 6) / charWidth) < 3) { return ""; }
    return fitText(name, width - 6);
  }

  // The font may draw some characters wider than the estimate (a fallback font for
  // a script the monospace font lacks): the text drawn is measured and shortened
  // until it fits.
  function fitMeasured(element, text, width) {
    element.textContent = text;
    if (!text || typeof element.getComputedTextLength !== "function") { return; }
    var points = Array.from(text.slice(-2) === ".." && text.length > 2 ? text.slice(0, -2) : text);
    while (points.length && element.getComputedTextLength() > width) {
      points.pop();
      element.textContent = points.length ? points.join("") + ".." : "";
    }
  }

  function place(frame, x, width, isParent) {
    frame.g.removeAttribute("display");
    frame.rect.setAttribute("x", x.toFixed(2));
    frame.rect.setAttribute("width", width.toFixed(2));
    frame.label.setAttribute("x", (x + 3).toFixed(2));
    fitMeasured(frame.label, fitLabel(frame.name, width), width - 6);
    frame.g.classList.toggle("parent", isParent);
  }

  frames.forEach(function (frame) {
    if (frame.label.textContent) { fitMeasured(frame.label, frame.label.textContent, frame.width - 6); }
  });
  var fitted = document.querySelectorAll("text.fit");
  for (var t = 0; t < fitted.length; t++) {
    fitMeasured(fitted[t], fitted[t].textContent, fullWidth);
  }

  function zoom(target) {
    if (!(target.width > 0)) { return; }
    var start = target.x, end = target.x + target.width, scale = fullWidth / target.width;
    frames.forEach(function (frame) {
      if (frame.top < target.top) {
        // a caller of the target: its span holds the target's start
        if (frame.x <= start + EPSILON && start < frame.x + frame.width - EPSILON) {
          place(frame, pad, fullWidth, true);
        } else {
          frame.g.setAttribute("display", "none");
        }
      } else if (frame.x >= start - EPSILON && frame.x < end - EPSILON) {
        place(frame, pad + (frame.x - start) * scale, frame.width * scale, false);
      } else {
        frame.g.setAttribute("display", "none");
      }
    });
    if (target.isRoot) {
      resetButton.setAttribute("display", "none");
    } else {
      resetButton.removeAttribute("display");
    }
  }

  function resetZoom() {
    if (frames.length) { zoom(frames[0]); }
  }

  function clearSearch() {
    frames.forEach(function (frame) { frame.rect.setAttribute("fill", frame.fill); });
    matched.textContent = "";
  }

  function search(pattern) {
    var expression;
    try {
      expression = new RegExp(pattern);
    } catch (error) {
      matched.textContent = "Not a regular expression";
      return;
    }
    var spans = [];
    frames.forEach(function (frame) {
      var hit = !frame.isRoot && expression.test(frame.name);
      frame.rect.setAttribute("fill", hit ? HIGHLIGHT : frame.fill);
      if (hit) { spans.push([frame.x, frame.x + frame.width]); }
    });
    // share of the total: matches nested in other matches count once
    spans.sort(function (a, b) { return a[0] - b[0]; });
    var covered = 0, reached = -Infinity;
    spans.forEach(function (span) {
      if (span[1] > reached) {
        covered += span[1] - Math.max(span[0], reached);
        reached = span[1];
      }
    });
    var share = (100 * covered / fullWidth).toFixed(1) + "%";
    var count = spans.length + (spans.length === 1 ? " frame" : " frames");
    matched.textContent = "Matched: " + share + " (" + count + ")";
  }

  function askSearch() {
    var pattern = window.prompt("Highlight functions whose name matches (regular expression):", lastPattern);
    if (pattern === null) { return; }
    lastPattern = pattern;
    if (pattern === "") { clearSearch(); } else { search(pattern); }
  }

  function frameOf(event) {
    var element = event.target;
    var g = element && element.closest ? element.closest("g.f") : null;
    return g ? byElement.get(g) : undefined;
  }

  framesGroup.addEventListener("mouseover", function (event) {
    var frame = frameOf(event);
    if (frame) {
      fitMeasured(details, fitText(frame.title.textContent.split("\n").join("  |  "), fullWidth), fullWidth);
    }
  });
  framesGroup.addEventListener("mouseout", function () { details.textContent = defaultDetails; });
  framesGroup.addEventListener("click", function (event) {
    var frame = frameOf(event);
    if (frame) { zoom(frame); }
  });
  resetButton.addEventListener("click", resetZoom);
  searchButton.addEventListener("click", askSearch);
  var links = document.querySelectorAll(".thread-link");
  for (var j = 0; j < links.length; j++) {
    links[j].addEventListener("click", function (event) {
      var g = document.getElementById(event.currentTarget.getAttribute("data-target"));
      if (g && byElement.has(g)) { zoom(byElement.get(g)); }
    });
  }
  document.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && (event.key === "f" || event.key === "F")) {
      event.preventDefault();
      askSearch();
    } else if (event.key === "Escape") {
      resetZoom();
      clearSearch();
    }
  });
})();
"""

# the script and the style sit in CDATA sections, which this would end
assert "]]>" not in _SCRIPT and "]]>" not in _CSS
