"""The processed call tree as JSON, in upstream pyinstrument's JSON report format.

Read by scripts and by tools written for upstream pyinstrument's ``-r json``. The
document is::

    {"start_time": epoch seconds, "duration": s, "sample_count": n,
     "target_description": "...", "cpu_time": s, "root_frame": FRAME or null}

and each FRAME (the tree after the same processing as the text report)::

    {"function", "file_path_short", "file_path", "line_no", "time", "await_time",
     "is_application_code", "children": [FRAME...], "group_id"?, "class_name"?}

``group_id`` is present on frames folded into a library group (frames with the same
id are one group), ``class_name`` when the class is known; ``root_frame`` is null when
nothing was recorded. Our additions, under keys upstream readers ignore: per frame
``cpu_time`` (seconds, when the session recorded CPU time), and at the top
``thread_names`` (the profiled threads, when recorded). Synthetic frames keep
upstream's names: ``[self]`` (time in the caller's own code), ``[await]``; several
threads sit under a ``[root]`` frame, each thread being a frame whose
``file_path`` is ``<thread>``.

Strings are written as ASCII JSON (``\\uXXXX`` escapes), so every name survives
exactly, including a lone surrogate standing for bytes of a file path that are not
UTF-8 (``json.loads`` gives back the same string). The text is assembled without
recursion, because call trees can be thousands of frames deep, beyond both Python's
recursion limit and the ``json`` module's.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple, Union

from pyinstrument.frame import AWAIT_FRAME_IDENTIFIER, Frame, dispose_tree, gc_paused, walk_postorder
from pyinstrument.renderers.base import FrameRenderer
from pyinstrument.session import Session

# note: this module is not called json.py so that it does not hide the json module

_encode_string = json.encoder.encode_basestring_ascii
_encode_float = float.__repr__  # what json.dumps writes for a float


class JSONRenderer(FrameRenderer):
    """The processed call tree as JSON (upstream pyinstrument's ``-r json`` format).

    ``show_all``, ``timeline`` and ``processor_options`` are those of
    :class:`~pyinstrument.renderers.base.FrameRenderer`.
    """

    output_file_extension = "json"
    output_is_binary = False

    def render(self, session: Session) -> str:
        with gc_paused():
            root = self.session_root_frame(session)
            try:
                return self._render(session, root)
            finally:
                dispose_tree(root)

    def _render(self, session: Session, root: Optional[Frame]) -> str:
        parts: List[str] = [
            '{"start_time": ',
            _encode_float(float(session.start_time)),
            ', "duration": ',
            _encode_float(float(session.duration)),
            ', "sample_count": ',
            str(int(session.sample_count)),
            ', "target_description": ',
            _encode_string(session.target_description or ""),
            ', "cpu_time": ',
            _encode_float(float(session.cpu_time or 0.0)),
        ]
        if session.thread_names is not None:
            parts += [', "thread_names": ', json.dumps(session.thread_names, ensure_ascii=True, default=str)]
        parts.append(', "root_frame": ')
        if root is None:
            parts.append("null")
        else:
            self._render_tree(root, session.frame_records_cpu is not None, parts)
        parts.append("}\n")
        return "".join(parts)

    def _render_tree(self, root: Frame, with_cpu: bool, parts: List[str]) -> None:
        await_times = _await_times(root)
        # work list: a frame to write, with the separator that goes before it, or
        # literal text (the end of a frame, written after all its children)
        work: List[Union[Tuple[Frame, str], str]] = [(root, "")]
        while work:
            item = work.pop()
            if isinstance(item, str):
                parts.append(item)
                continue
            frame, separator = item
            parts += [
                separator,
                '{"function": ',
                _encode_string(frame.function),
                ', "file_path_short": ',
                _encode_string(frame.file_path_short or ""),
                ', "file_path": ',
                _encode_string(frame.file_path or ""),
                ', "line_no": ',
                str(frame.line_no or 0),
                ', "time": ',
                _encode_float(frame.time),
                ', "await_time": ',
                _encode_float(await_times.get(id(frame), 0.0)),
                ', "is_application_code": ',
                "true" if frame.is_application_code else "false",
                ', "children": [',
            ]
            end = ["]"]
            if frame.group is not None:
                end += [', "group_id": ', _encode_string(frame.group.id)]
            class_name = frame.class_name
            if class_name:
                end += [', "class_name": ', _encode_string(class_name)]
            if with_cpu:
                end += [', "cpu_time": ', _encode_float(frame.cpu_time)]
            end.append("}")
            work.append("".join(end))
            children = frame._children
            for n in range(len(children) - 1, 0, -1):
                work.append((children[n], ", "))
            if children:
                work.append((children[0], ""))


def _await_times(root: Frame) -> Dict[int, float]:
    """Time spent in ``[await]`` below each frame, by frame id (empty when the tree has
    none: sessions of our engine never do). One pass, instead of walking every
    frame's subtree again."""
    if root.context.has_await is False:
        return {}
    totals: Dict[int, float] = {}
    for frame in walk_postorder(root):
        if frame.identifier == AWAIT_FRAME_IDENTIFIER:
            total = frame.time
        else:
            total = 0.0
            for child in frame._children:
                total += totals[id(child)]
        totals[id(frame)] = total
    return totals
