"""Renderers turn a profiling session into a report.

``Renderer`` and ``FrameRenderer`` are the base classes for writing your own;
``ConsoleRenderer`` is the text report.
"""

from __future__ import annotations

from pyinstrument.renderers.base import FrameRenderer, Renderer
from pyinstrument.renderers.console import ConsoleRenderer

__all__ = ["Renderer", "FrameRenderer", "ConsoleRenderer"]
