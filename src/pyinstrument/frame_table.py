"""The session's samples as one table: each distinct frame once, each stack a node of a trie.

A session's frame records are, in upstream's format, one list of frame strings per
distinct stack. An hour of samples can hold hundreds of thousands of distinct stacks,
each repeating the frames of its callers, so here a stack is a *node*: a frame index
and the node of its caller (its parent), in flat arrays. A record is a node with its
wall time (and CPU time). Nodes always come after their parent, so one pass in order
sees every caller before its callees.

Frames are frame strings in upstream's format (see :mod:`pyinstrument.frame`), each
stored once; records as lists of strings exist only where someone asks for them
(:meth:`FrameTable.records`), such as upstream's ``Session.frame_records``.
"""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

#: the parent of a stack's first frame, and the node of an empty stack
NO_NODE = -1

StackRecord = Tuple[List[str], float]


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
        self.frames: List[str] = []
        self._frame_index: Dict[str, int] = {}
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
        for i, (stack, seconds) in enumerate(records):
            table.add_record(table.add_stack(stack), seconds, cpu[i] if cpu is not None else 0.0)
        return table

    def frame_id(self, frame: str) -> int:
        """The index of a frame string, added when new."""
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

    def add_stack(self, stack: Sequence[str], parent: int = NO_NODE) -> int:
        """The node of a stack of frame strings (root first) below ``parent``."""
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

    def stack(self, node: int) -> List[str]:
        """A node's stack as frame strings, root first."""
        frames = self.frames
        return [frames[f] for f in self.stack_frames(node)]

    def records(self) -> List[StackRecord]:
        """Every record as upstream has them: (stack of frame strings, root first;
        seconds). The strings are the table's own: a record costs its list."""
        return [(self.stack(node), seconds) for node, seconds in zip(self.record_node, self.record_seconds)]

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

    def rooted(self, root: str) -> "FrameTable":
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
            "frames": self.frames,
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
        table.frames = frames
        table._frame_index = {f: i for i, f in enumerate(frames)}
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
