"""Base classes for renderers.

A renderer turns a :class:`~pyinstrument.session.Session` into a report. Options are
constructor keyword arguments (the command line's ``-p KEY=VALUE`` passes them
through), so a renderer written by a user only needs to subclass one of these and
implement :meth:`Renderer.render`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from pyinstrument import processors
from pyinstrument.frame import Frame
from pyinstrument.session import Session

ProcessorType = Callable[[Optional[Frame], Dict[str, Any]], Optional[Frame]]


class Renderer:
    """Abstract base class of all renderers."""

    #: extension of files this renderer writes (without the dot)
    output_file_extension: str = "txt"
    #: True when :meth:`render` returns bytes-like data that must not go to a terminal
    output_is_binary: bool = False

    def __init__(self) -> None:
        pass

    def render(self, session: Session) -> str:
        """Return the report for ``session``."""
        raise NotImplementedError()


class FrameRenderer(Renderer):
    """A renderer that works on the processed call tree of a session.

    :param show_all: keep everything: no library folding, no threshold, no removal of
        import machinery or ``__tracebackhide__`` frames.
    :param timeline: chronological tree: identical calls are only merged when they
        happen one after the other.
    :param processor_options: options read by the processors (``filter_threshold``,
        ``hide_regex``, ``show_regex``).
    """

    def __init__(
        self,
        show_all: bool = False,
        timeline: bool = False,
        processor_options: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.show_all = show_all
        self.timeline = timeline
        self.processor_options: Dict[str, Any] = dict(processor_options or {})
        self.processors: List[ProcessorType] = self.default_processors()

        removed: List[ProcessorType] = []
        if show_all:
            removed += [
                processors.group_library_frames_processor,
                processors.remove_irrelevant_nodes,
                processors.remove_importlib,
                processors.remove_tracebackhide,
            ]
        if timeline:
            removed.append(processors.aggregate_repeated_calls)
        if removed:
            self.processors = [p for p in self.processors if p not in removed]

    def default_processors(self) -> List[ProcessorType]:
        """The processors applied to the call tree, in order. Subclasses override this
        (or edit ``self.processors``) to change the processing."""
        return [
            processors.remove_importlib,
            processors.remove_tracebackhide,
            processors.remove_profiler_frames,
            processors.gil_wait,
            processors.merge_consecutive_self_time,
            processors.aggregate_repeated_calls,
            processors.remove_first_pyinstrument_frames_processor,
            processors.remove_irrelevant_nodes,
            processors.remove_unnecessary_self_time_nodes,
            processors.group_library_frames_processor,
        ]

    def preprocess(self, root_frame: Optional[Frame]) -> Optional[Frame]:
        """Run ``self.processors`` over the tree; returns the new root (or None)."""
        frame = root_frame
        for processor in self.processors:
            frame = processor(frame, self.processor_options)
        return frame

    def session_root_frame(self, session: Session) -> Optional[Frame]:
        """The session's processed call tree, built the way this renderer needs it."""
        return self.preprocess(session.root_frame(timeline=self.timeline))

    def render(self, session: Session) -> str:
        raise NotImplementedError()
