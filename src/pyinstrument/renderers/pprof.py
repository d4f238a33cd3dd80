"""The pprof format: a gzipped ``profile.proto`` message, read by ``go tool pprof``.

pprof (https://github.com/google/pprof, the format in ``proto/profile.proto``) is the
profile format of Go's tooling; ``go tool pprof`` shows it as top lists, call graphs,
flame graphs and annotated source, and continuous-profiling services (Grafana
Pyroscope, Parca, Google Cloud Profiler, Datadog) accept it as an upload.

What is written: one ``Sample`` per distinct call stack (a frame record of the
session), with two values, ``wall``/``nanoseconds`` (the default) and
``cpu``/``nanoseconds`` (left out when the session recorded no CPU time), and the
labels ``thread`` (its name), ``thread_id`` (when the session knows it), ``phase`` (a
sample taken in a phase of the run, ``Profiler.phase``) and ``gil`` = ``waiting`` (a stack
that ends waiting for the GIL, in a ``[GIL wait]`` leaf). Its
locations are leaf first, as pprof wants. There is one ``Location`` per function and
line being executed, so pprof's ``-lines`` views and ``list`` show the lines that took
the time (``include_lines=False``: one per function). ``Function`` carries the name
(``Class.method`` where known), file and first line; its ``system_name`` is
``name (file:first line)``: never equal to the name, because pprof "demangles" (cuts
``<...>`` and ``(...)`` out of) a name that equals its system name. ``period`` is the
sampling interval, ``time_nanos`` the start and ``duration_nanos`` the length of the
session; the session's description is a comment. pprof does not need the samples in
time order, so the timeline is not used.

The protobuf wire encoding is written here (varints and length-delimited fields: a
handful of helpers), so there is no dependency on a protobuf package.

Names and paths: protobuf strings must be valid UTF-8 (strict readers, such as the
protobuf libraries behind Pyroscope and Grafana, reject the whole file otherwise). A
file name that is not valid UTF-8 reaches Python with each undecodable byte as a lone
surrogate (``surrogateescape``); such a byte is written as the visible text ``\\xE9``,
and any other lone surrogate as U+FFFD. Every other character, NUL and control
characters included, is stored as is.
"""

from __future__ import annotations

import gzip
import re
from typing import Dict, List, Optional, Sequence, Tuple

from pyinstrument.frame import GIL_WAIT_FRAME_IDENTIFIER as GIL_WAIT
from pyinstrument.frame import gc_paused
from pyinstrument.renderers.base import Renderer
from pyinstrument.renderers.stacks import SampleStacks, StackFrame
from pyinstrument.session import Session

# wire types of the protobuf encoding
_VARINT = 0
_LENGTH_DELIMITED = 2
_UINT64_MASK = (1 << 64) - 1

# field numbers, from profile.proto
_PROFILE_SAMPLE_TYPE = 1
_PROFILE_SAMPLE = 2
_PROFILE_MAPPING = 3
_PROFILE_LOCATION = 4
_PROFILE_FUNCTION = 5
_PROFILE_STRING_TABLE = 6
_PROFILE_TIME_NANOS = 9
_PROFILE_DURATION_NANOS = 10
_PROFILE_PERIOD_TYPE = 11
_PROFILE_PERIOD = 12
_PROFILE_COMMENT = 13
_PROFILE_DEFAULT_SAMPLE_TYPE = 14
_VALUE_TYPE_TYPE = 1
_VALUE_TYPE_UNIT = 2
_SAMPLE_LOCATION_ID = 1
_SAMPLE_VALUE = 2
_SAMPLE_LABEL = 3
_LABEL_KEY = 1
_LABEL_STR = 2
_LABEL_NUM = 3
_MAPPING_ID = 1
_MAPPING_FILENAME = 5
_MAPPING_HAS_FUNCTIONS = 7
_MAPPING_HAS_FILENAMES = 8
_MAPPING_HAS_LINE_NUMBERS = 9
_LOCATION_ID = 1
_LOCATION_MAPPING_ID = 2
_LOCATION_LINE = 4
_LINE_FUNCTION_ID = 1
_LINE_LINE = 2
_FUNCTION_ID = 1
_FUNCTION_NAME = 2
_FUNCTION_SYSTEM_NAME = 3
_FUNCTION_FILENAME = 4
_FUNCTION_START_LINE = 5

_MAPPING = 1  # the one mapping: "the Python program", fully symbolized


def _varint(value: int) -> bytes:
    value &= _UINT64_MASK  # negative int64 values take ten bytes, as protobuf says
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _int_field(field: int, value: int) -> bytes:
    """A varint field; zero is the default and is left out."""
    return _key(field, _VARINT) + _varint(value) if value else b""


def _bytes_field(field: int, data: bytes) -> bytes:
    return _key(field, _LENGTH_DELIMITED) + _varint(len(data)) + data


def _packed_field(field: int, values: Sequence[int]) -> bytes:
    return _bytes_field(field, b"".join(map(_varint, values))) if values else b""


_SURROGATE = re.compile("[\ud800-\udfff]")


def _visible_surrogate(match: "re.Match[str]") -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02X}"
    return "\ufffd"


def _utf8(text: str) -> bytes:
    """``text`` as valid UTF-8 (see the module docstring for undecodable bytes)."""
    return _SURROGATE.sub(_visible_surrogate, text).encode("utf-8")


class _StringTable:
    def __init__(self) -> None:
        self.strings: List[str] = [""]  # index 0 must be the empty string
        self._index: Dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self.strings)
            self.strings.append(text)
        return index

    def encode(self) -> bytes:
        return b"".join(_bytes_field(_PROFILE_STRING_TABLE, _utf8(s)) for s in self.strings)


class PprofRenderer(Renderer):
    """The samples as a gzipped pprof ``profile.proto`` (``go tool pprof file.pb.gz``).

    :param include_lines: one location per line being executed (pprof can then show
        time per line); ``False``: one per function, at its first line.
    :param phase_label: the label a sample's phase is given (the agent's pushes to
        Pyroscope name it ``route``: their phases are the requests' routes).
    """

    output_file_extension = "pb.gz"
    output_is_binary = True

    def __init__(self, include_lines: bool = True, phase_label: str = "phase") -> None:
        super().__init__()
        self.include_lines = include_lines
        self.phase_label = phase_label

    @staticmethod
    def _system_name(frame: StackFrame) -> str:
        # pprof "demangles" a function whose system name equals its name, cutting
        # anything in <...> or (...) out of it (``<module>`` would lose its name), so
        # the system name is the function's full identity: name, file and first line
        return f"{frame.name} ({frame.file_path}:{frame.line_no})"

    def render(self, session: Session) -> bytes:  # type: ignore[override]
        with gc_paused():
            return gzip.compress(self.render_uncompressed(session), mtime=0)

    def render_uncompressed(self, session: Session) -> bytes:
        """The ``Profile`` message before gzip."""
        stacks = SampleStacks(session)
        string = _StringTable()
        out: List[bytes] = []

        def value_type(field: int, kind: str, unit: str) -> bytes:
            return _bytes_field(
                field, _int_field(_VALUE_TYPE_TYPE, string(kind)) + _int_field(_VALUE_TYPE_UNIT, string(unit))
            )

        out.append(value_type(_PROFILE_SAMPLE_TYPE, "wall", "nanoseconds"))
        if stacks.has_cpu:
            out.append(value_type(_PROFILE_SAMPLE_TYPE, "cpu", "nanoseconds"))

        # functions get ids in order of first use; locations likewise
        function_ids: Dict[int, int] = {}
        location_by_line: Dict[Tuple[int, int], int] = {}
        # (frame, current line as recorded) -> location id, encoded: the hot path
        location_varints: Dict[Tuple[int, int], bytes] = {}
        functions_out: List[bytes] = []
        locations_out: List[bytes] = []

        def new_location(frame_index: int, recorded_line: int) -> bytes:
            """Adds the location (and its function, on first use); returns its id as a varint."""
            frame = stacks.frames[frame_index]
            line = recorded_line if self.include_lines and recorded_line else frame.line_no
            location = location_by_line.get((frame_index, line))
            if location is None:
                function = function_ids.get(frame_index)
                if function is None:
                    function = function_ids[frame_index] = len(function_ids) + 1
                    functions_out.append(
                        _bytes_field(
                            _PROFILE_FUNCTION,
                            _int_field(_FUNCTION_ID, function)
                            + _int_field(_FUNCTION_NAME, string(frame.name))
                            + _int_field(_FUNCTION_SYSTEM_NAME, string(self._system_name(frame)))
                            + _int_field(_FUNCTION_FILENAME, string(frame.file_path))
                            + _int_field(_FUNCTION_START_LINE, frame.line_no),
                        )
                    )
                location = location_by_line[(frame_index, line)] = len(location_by_line) + 1
                line_message = _int_field(_LINE_FUNCTION_ID, function) + _int_field(_LINE_LINE, line)
                locations_out.append(
                    _bytes_field(
                        _PROFILE_LOCATION,
                        _int_field(_LOCATION_ID, location)
                        + _int_field(_LOCATION_MAPPING_ID, _MAPPING)
                        + _bytes_field(_LOCATION_LINE, line_message),
                    )
                )
            encoded = location_varints[(frame_index, recorded_line)] = _varint(location)
            return encoded

        thread_key, thread_id_key, phase_key = string("thread"), string("thread_id"), string(self.phase_label)
        thread_labels: Dict[Tuple[int, Optional[int]], bytes] = {}
        phases = session.phases
        phase_labels = [b""] + [
            _bytes_field(_SAMPLE_LABEL, _int_field(_LABEL_KEY, phase_key) + _int_field(_LABEL_STR, string(name)))
            for name in (phases.names if phases is not None else ())
        ]
        waiting_label = _bytes_field(
            _SAMPLE_LABEL, _int_field(_LABEL_KEY, string("gil")) + _int_field(_LABEL_STR, string("waiting"))
        )
        for i, frames in enumerate(stacks.stacks):
            if not frames:
                continue
            waiting = stacks.frames[frames[-1]].name == GIL_WAIT
            lines = stacks.lines[i]
            leaf_first = b"".join(
                location_varints.get(key) or new_location(*key) for key in zip(reversed(frames), reversed(lines))
            )
            values = [round(stacks.wall[i] * 1e9)]
            if stacks.has_cpu:
                values.append(round(stacks.cpu[i] * 1e9))
            thread = (stacks.thread_of[i], stacks.thread_idents[stacks.thread_of[i]])
            labels = thread_labels.get(thread)
            if labels is None:
                labels = _bytes_field(
                    _SAMPLE_LABEL,
                    _int_field(_LABEL_KEY, thread_key) + _int_field(_LABEL_STR, string(stacks.threads[thread[0]])),
                )
                if thread[1] is not None:
                    labels += _bytes_field(
                        _SAMPLE_LABEL, _int_field(_LABEL_KEY, thread_id_key) + _int_field(_LABEL_NUM, thread[1])
                    )
                thread_labels[thread] = labels
            out.append(
                _bytes_field(
                    _PROFILE_SAMPLE,
                    _bytes_field(_SAMPLE_LOCATION_ID, leaf_first)
                    + _packed_field(_SAMPLE_VALUE, values)
                    + labels
                    + (phase_labels[phases.records[i]] if phases is not None else b"")
                    + (waiting_label if waiting else b""),
                )
            )

        # one mapping marked as fully symbolized, so pprof does not try to symbolize
        out.append(
            _bytes_field(
                _PROFILE_MAPPING,
                _int_field(_MAPPING_ID, _MAPPING)
                + _int_field(_MAPPING_FILENAME, string("python"))
                + _int_field(_MAPPING_HAS_FUNCTIONS, 1)
                + _int_field(_MAPPING_HAS_FILENAMES, 1)
                + _int_field(_MAPPING_HAS_LINE_NUMBERS, 1),
            )
        )
        out += locations_out
        out += functions_out
        out.append(_int_field(_PROFILE_TIME_NANOS, round(session.start_time * 1e9)))
        out.append(_int_field(_PROFILE_DURATION_NANOS, round(session.duration * 1e9)))
        out.append(value_type(_PROFILE_PERIOD_TYPE, "wall", "nanoseconds"))
        out.append(_int_field(_PROFILE_PERIOD, round(session.min_interval * 1e9)))
        if session.target_description:
            out.append(_packed_field(_PROFILE_COMMENT, [string(session.target_description)]))
        out.append(_int_field(_PROFILE_DEFAULT_SAMPLE_TYPE, string("wall")))
        # the string table last: everything above has added its strings by now
        out.append(string.encode())
        return b"".join(out)
