"""The session's samples as one table: each distinct frame once, each stack a node of a trie.

A session's frame records are, in upstream's format, one list of frame strings per
distinct stack. An hour of samples can hold hundreds of thousands of distinct stacks,
each repeating the frames of its callers, so here a stack is a *node*: a frame index
and the node of its caller (its parent), in flat arrays. A record is a node with its
wall time (and CPU time). Nodes always come after their parent, so one pass in order
sees every caller before its callees.

A frame is a :class:`FrameInfo`: its function, file, first line, kind (code, C
function, thread, synthetic), the line it was executing, its recorded class and its
``__tracebackhide__`` flag, as typed fields. Upstream's frame strings
(``function NUL file NUL first line``, then ``\x01``-marked attributes) are parsed here
and nowhere else (:meth:`FrameInfo.parse`), where a session file or upstream's
``frame_records`` bring them in, and written back (:attr:`FrameInfo.text`) only where
a file or someone asks for them, such as upstream's ``Session.frame_records`` or
``Frame.identifier``.
"""

from __future__ import annotations

import base64
import sys
from array import array
from enum import IntEnum
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

#: the parent of a stack's first frame, and the node of an empty stack
NO_NODE = -1

StackRecord = Tuple[List[str], float]

# --- one frame -----------------------------------------------------------------------------

IDENTIFIER_SEP = "\x00"
ATTRIBUTES_SEP = "\x01"

ATTRIBUTE_MARKER_CLASS_NAME = "c"
ATTRIBUTE_MARKER_LINE_NUMBER = "l"
ATTRIBUTE_MARKER_TRACEBACKHIDE = "h"

#: the file of a thread's root frame (its first line is the thread's key)
THREAD_FILE = "<thread>"
#: the file of a C function
BUILTIN_FILE = "<built-in>"


class FrameKind(IntEnum):
    CODE = 0  # Python code: qualified name, file, first line
    C_FUNCTION = 1  # a function written in C (file <built-in>)
    THREAD = 2  # a thread's root: its name, and its key where the first line would be
    SYNTHETIC = 3  # a name only: [self], [await], [N frames truncated], [root]...


class FrameInfo(NamedTuple):
    """One distinct frame of a session."""

    function: str  # as recorded: a qualified name, a thread's name, a synthetic frame's text
    file: str  # "" for synthetic frames
    first_line: int  # a thread's key for a thread root; 0 for synthetic frames
    kind: FrameKind
    line: int = 0  # the line being executed; 0 when unknown
    class_name: str = ""  # as recorded by upstream's sampler; "" when not recorded
    hides: bool = False  # the code sets __tracebackhide__
    other: Tuple[str, ...] = ()  # attributes this version does not know, kept as read

    @staticmethod
    def code(function: str, file: str, first_line: int, *, line: int = 0, hides: bool = False) -> "FrameInfo":
        kind = FrameKind.C_FUNCTION if file.startswith(BUILTIN_FILE) else FrameKind.CODE
        return FrameInfo(function, file, first_line, kind, line, "", hides)

    @staticmethod
    def thread(name: str, key: int) -> "FrameInfo":
        """A thread's root frame. The program names its threads, and the separators of the
        frame string cannot be part of a name (they would break it where it is written)."""
        name = name.replace(IDENTIFIER_SEP, " ").replace(ATTRIBUTES_SEP, " ")
        return FrameInfo(name, THREAD_FILE, key, FrameKind.THREAD)

    @staticmethod
    def synthetic(name: str) -> "FrameInfo":
        return FrameInfo(name, "", 0, FrameKind.SYNTHETIC)

    @staticmethod
    def parse(text: str) -> "FrameInfo":
        """A frame string in upstream's format. Anything that is not ``function NUL file
        NUL first line`` is a synthetic frame named by the whole identifier, so that
        nothing read is lost."""
        identifier, _, attributes = text.partition(ATTRIBUTES_SEP)
        # split from the right: a function name may itself contain NUL
        pieces = identifier.rsplit(IDENTIFIER_SEP, 2)
        first_line = _exact_int(pieces[2]) if len(pieces) == 3 else None
        if first_line is None:
            info = FrameInfo.synthetic(identifier)
        elif pieces[1] == THREAD_FILE:
            info = FrameInfo.thread(pieces[0], first_line)
        else:
            info = FrameInfo.code(pieces[0], pieces[1], first_line)
        if not attributes:
            return info
        line, class_name, hides, other = 0, "", False, []
        for attribute in attributes.split(ATTRIBUTES_SEP):
            marker, value = attribute[:1], attribute[1:]
            number = _exact_int(value) if marker == ATTRIBUTE_MARKER_LINE_NUMBER else None
            if number is not None and number > 0 and not line:
                line = number
            elif marker == ATTRIBUTE_MARKER_CLASS_NAME and value and not class_name:
                class_name = value
            elif attribute == ATTRIBUTE_MARKER_TRACEBACKHIDE + "1":
                hides = True
            elif attribute:
                other.append(attribute)
        return info._replace(line=line, class_name=class_name, hides=hides, other=tuple(other))

    @property
    def identifier(self) -> str:
        """What a node of the call tree is told by: the frame without its attributes."""
        if self.kind == FrameKind.SYNTHETIC:
            return self.function
        return f"{self.function}{IDENTIFIER_SEP}{self.file}{IDENTIFIER_SEP}{self.first_line}"

    @property
    def attributes(self) -> Tuple[str, ...]:
        """The attributes as upstream writes them (marker letter, value)."""
        found: Tuple[str, ...] = ()
        if self.class_name:
            found += (ATTRIBUTE_MARKER_CLASS_NAME + self.class_name,)
        if self.line:
            found += (f"{ATTRIBUTE_MARKER_LINE_NUMBER}{self.line}",)
        if self.hides:
            found += (ATTRIBUTE_MARKER_TRACEBACKHIDE + "1",)
        return found + self.other

    @property
    def text(self) -> str:
        """The frame string, as a session file holds it."""
        attributes = self.attributes
        if not attributes:
            return self.identifier
        return self.identifier + ATTRIBUTES_SEP + ATTRIBUTES_SEP.join(attributes)


def _exact_int(text: str) -> Optional[int]:
    """The number a decimal text is, when it reads back the same (so nothing is lost)."""
    if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())) or not text.isascii():
        return None
    number = int(text)
    return number if str(number) == text else None


class FrameTable:
    """Frames, the stack trie over them, and the records (a node and its times each)."""

    __slots__ = (
        "frames",
        "_frame_index",
        "node_parent",
        "node_frame",
        "_node_index",
        "record_node",
        "record_seconds",
        "record_cpu",
    )

    def __init__(self, with_cpu: bool = True) -> None:
        self.frames: List[FrameInfo] = []
        self._frame_index: Dict[FrameInfo, int] = {}
        self.node_parent = array("i")
        self.node_frame = array("i")
        # (parent, frame) -> node, made on the first add_stack (a table built node by
        # node from the engine's trie needs none)
        self._node_index: Optional[Dict[Tuple[int, int], int]] = None
        self.record_node = array("i")
        self.record_seconds = array("d")
        self.record_cpu: Optional["array[float]"] = array("d") if with_cpu else None

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_records(
        cls, records: Iterable[Tuple[Sequence[str], float]], cpu: Optional[Sequence[float]] = None
    ) -> "FrameTable":
        records = list(records)
        if cpu is not None and len(cpu) != len(records):
            raise ValueError("frame_records_cpu must be parallel to frame_records")
        table = cls(with_cpu=cpu is not None)
        parsed: Dict[str, int] = {}  # each distinct frame string is parsed once
        for i, (stack, seconds) in enumerate(records):
            node = NO_NODE
            for text in stack:
                frame = parsed.get(text)
                if frame is None:
                    frame = parsed[text] = table.frame_id(FrameInfo.parse(text))
                node = table.child(node, frame)
            table.add_record(node, seconds, cpu[i] if cpu is not None else 0.0)
        return table

    def frame_id(self, frame: FrameInfo) -> int:
        """The index of a frame, added when new."""
        index = self._frame_index.get(frame)
        if index is None:
            index = self._frame_index[frame] = len(self.frames)
            self.frames.append(frame)
        return index

    def add_node(self, parent: int, frame: int) -> int:
        """A new node (even when its parent has a child of that frame already)."""
        self.node_parent.append(parent)
        self.node_frame.append(frame)
        return len(self.node_parent) - 1

    def child(self, parent: int, frame: int) -> int:
        """The node of ``frame`` called from ``parent``, added when new."""
        index = self._node_index
        if index is None:
            index = self._node_index = {}
            for node, (p, f) in enumerate(zip(self.node_parent, self.node_frame)):
                index.setdefault((p, f), node)
        found = index.get((parent, frame))
        if found is None:
            found = index[(parent, frame)] = self.add_node(parent, frame)
        return found

    def add_stack(self, stack: Sequence[FrameInfo], parent: int = NO_NODE) -> int:
        """The node of a stack of frames (root first) below ``parent``."""
        node = parent
        for frame in stack:
            node = self.child(node, self.frame_id(frame))
        return node

    def add_record(self, node: int, seconds: float, cpu: float = 0.0) -> int:
        self.record_node.append(node)
        self.record_seconds.append(seconds)
        if self.record_cpu is not None:
            self.record_cpu.append(cpu)
        return len(self.record_node) - 1

    def set_cpu(self, cpu: Optional[Sequence[float]]) -> None:
        if cpu is not None and len(cpu) != len(self.record_node):
            raise ValueError("frame_records_cpu must be parallel to frame_records")
        self.record_cpu = None if cpu is None else array("d", cpu)

    # -- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of records."""
        return len(self.record_node)

    def stack_frames(self, node: int) -> List[int]:
        """The frame indices of a node's stack, root first."""
        frames: List[int] = []
        parent, frame = self.node_parent, self.node_frame
        while node != NO_NODE:
            frames.append(frame[node])
            node = parent[node]
        frames.reverse()
        return frames

    def root_frames(self) -> "array[int]":
        """For each node, the frame its stack starts with."""
        parent, frame = self.node_parent, self.node_frame
        roots = array("i", frame)
        for node, above in enumerate(parent):
            if above != NO_NODE:
                roots[node] = roots[above]
        return roots

    def stack(self, node: int) -> List[FrameInfo]:
        """A node's stack, root first."""
        frames = self.frames
        return [frames[f] for f in self.stack_frames(node)]

    def frame_texts(self) -> List[str]:
        """Each frame as a frame string (upstream's format)."""
        return [frame.text for frame in self.frames]

    def records(self) -> List[StackRecord]:
        """Every record as upstream has them: (stack of frame strings, root first;
        seconds). Each frame's string is made once: a record costs its list."""
        texts = self.frame_texts()
        return [
            ([texts[f] for f in self.stack_frames(node)], seconds)
            for node, seconds in zip(self.record_node, self.record_seconds)
        ]

    def node_times(self) -> Tuple["array[float]", "array[float]"]:
        """Each node's own wall and CPU seconds (the records at it)."""
        count = len(self.node_parent)
        wall, cpu = array("d", bytes(8 * count)), array("d", bytes(8 * count))
        cpu_of = self.record_cpu if self.record_cpu is not None else None
        for i, (node, seconds) in enumerate(zip(self.record_node, self.record_seconds)):
            if node != NO_NODE:
                wall[node] += seconds
                if cpu_of is not None:
                    cpu[node] += cpu_of[i]
        return wall, cpu

    # -- new tables -----------------------------------------------------------------------

    def rooted(self, root: FrameInfo) -> "FrameTable":
        """The same records with ``root`` above every stack (an empty one becomes just it)."""
        table = FrameTable(with_cpu=self.record_cpu is not None)
        table.frames = [root] + [f for f in self.frames if f != root]
        table._frame_index = {f: i for i, f in enumerate(table.frames)}
        moved = array("i", (table._frame_index[f] for f in self.frames))
        table.node_parent = array("i", [NO_NODE]) + array("i", (p + 1 for p in self.node_parent))
        table.node_frame = array("i", [0]) + array("i", (moved[f] for f in self.node_frame))
        table.record_node = array("i", (n + 1 for n in self.record_node))
        table.record_seconds = array("d", self.record_seconds)
        if self.record_cpu is not None:
            table.record_cpu = array("d", self.record_cpu)
        return table

    def mapped(self, retarget: Callable[["FrameTable"], Tuple["array[int]", bytearray]]) -> "FrameTable":
        """A copy whose records move to other nodes: ``retarget(copy)`` gives, for each
        node, the node of the copy its records go to (it may add nodes to the copy) and
        whether they lose their time there. Nodes no record uses any more are dropped."""
        table = FrameTable(with_cpu=self.record_cpu is not None)
        table.frames = list(self.frames)
        table._frame_index = dict(self._frame_index)
        table.node_parent = array("i", self.node_parent)
        table.node_frame = array("i", self.node_frame)
        target, zeroed = retarget(table)
        cpu = self.record_cpu
        for i, (node, seconds) in enumerate(zip(self.record_node, self.record_seconds)):
            if node == NO_NODE:
                table.add_record(NO_NODE, seconds, cpu[i] if cpu is not None else 0.0)
            elif zeroed[node]:
                table.add_record(target[node], 0.0, 0.0)
            else:
                table.add_record(target[node], seconds, cpu[i] if cpu is not None else 0.0)
        return table.compacted()

    def compacted(self) -> "FrameTable":
        """The same records without the nodes no record stands on or below."""
        count = len(self.node_parent)
        used = bytearray(count)
        for node in self.record_node:
            while node != NO_NODE and not used[node]:
                used[node] = 1
                node = self.node_parent[node]
        if all(used):
            return self
        new_index = array("i", [NO_NODE]) * count
        table = FrameTable(with_cpu=self.record_cpu is not None)
        frame_used = bytearray(len(self.frames))
        for node in range(count):
            if used[node]:
                frame_used[self.node_frame[node]] = 1
        table.frames = [f for f, u in zip(self.frames, frame_used) if u]
        table._frame_index = {f: i for i, f in enumerate(table.frames)}
        frame_new = array("i", [NO_NODE]) * len(self.frames)
        for old, f in enumerate(self.frames):
            if frame_used[old]:
                frame_new[old] = table._frame_index[f]
        for node in range(count):
            if used[node]:
                parent = self.node_parent[node]
                new_index[node] = table.add_node(
                    new_index[parent] if parent != NO_NODE else NO_NODE, frame_new[self.node_frame[node]]
                )
        table.record_node = array("i", (new_index[n] if n != NO_NODE else NO_NODE for n in self.record_node))
        table.record_seconds = array("d", self.record_seconds)
        table.record_cpu = array("d", self.record_cpu) if self.record_cpu is not None else None
        return table

    @staticmethod
    def combined(first: "FrameTable", second: "FrameTable") -> "FrameTable":
        """The records of ``first`` then those of ``second``, in one table."""
        with_cpu = first.record_cpu is not None or second.record_cpu is not None
        table = FrameTable(with_cpu=with_cpu)
        for part in (first, second):
            frame_map = [table.frame_id(f) for f in part.frames]
            offset = len(table.node_parent)
            for parent, frame in zip(part.node_parent, part.node_frame):
                table.add_node(parent + offset if parent != NO_NODE else NO_NODE, frame_map[frame])
            cpu = part.record_cpu
            for i, (node, seconds) in enumerate(zip(part.record_node, part.record_seconds)):
                table.add_record(
                    node + offset if node != NO_NODE else NO_NODE, seconds, cpu[i] if cpu is not None else 0.0
                )
        return table

    # -- the session file -------------------------------------------------------------------

    def to_json(self) -> Dict[str, object]:
        """A compact JSON form: the frames, and the arrays as little-endian base64. The
        CPU times are not in it (a session file has them under frame_records_cpu)."""
        return {
            "frames": self.frame_texts(),
            "node_parent": encode_array(self.node_parent),
            "node_frame": encode_array(self.node_frame),
            "record_node": encode_array(self.record_node),
            "record_seconds": encode_array(self.record_seconds),
        }

    @classmethod
    def from_json(cls, value: object) -> "FrameTable":
        """The table :meth:`to_json` wrote. Raises ValueError when it is not consistent."""
        if not isinstance(value, dict):
            raise ValueError("the frame table is not an object")
        frames = value.get("frames")
        if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
            raise ValueError("the frame table's frames are not strings")
        table = cls(with_cpu=False)
        table.frames = [FrameInfo.parse(text) for text in frames]
        table._frame_index = {f: i for i, f in enumerate(table.frames)}
        if len(table._frame_index) != len(frames):
            raise ValueError("the frame table lists a frame twice")
        table.node_parent = decode_array("i", value.get("node_parent"))
        table.node_frame = decode_array("i", value.get("node_frame"))
        table.record_node = decode_array("i", value.get("record_node"))
        table.record_seconds = decode_array("d", value.get("record_seconds"))
        table._check()
        return table

    def _check(self) -> None:
        nodes = len(self.node_parent)
        if len(self.node_frame) != nodes:
            raise ValueError("the frame table's node arrays differ in length")
        if any(not (NO_NODE <= p < i) for i, p in enumerate(self.node_parent)):
            raise ValueError("a node of the frame table comes before its parent")
        if nodes and not (0 <= min(self.node_frame) and max(self.node_frame) < len(self.frames)):
            raise ValueError("a node of the frame table names a frame that does not exist")
        records = len(self.record_node)
        if len(self.record_seconds) != records or (self.record_cpu is not None and len(self.record_cpu) != records):
            raise ValueError("the frame table's record arrays differ in length")
        if records and not (NO_NODE <= min(self.record_node) and max(self.record_node) < nodes):
            raise ValueError("a record of the frame table names a node that does not exist")


def encode_array(values: "array[int] | array[float]") -> str:
    """An array as base64 of its little-endian bytes: compact in JSON, and read back
    without a Python object per element."""
    if sys.byteorder == "big":
        values = array(values.typecode, values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def decode_array(typecode: str, text: object, what: str = "an array of the frame table") -> "array":
    """The array encode_array wrote. Raises ValueError, naming ``what``, when it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError(f"{what} is not base64 text") from None
    values = array(typecode)
    if len(data) % values.itemsize:
        raise ValueError(f"{what} is cut short")
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values
