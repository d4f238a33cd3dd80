"""Renderers turn a profiling session into a report.

``Renderer`` and ``FrameRenderer`` are the base classes for writing your own. The
built-in renderers are imported when first used (``from pyinstrument.renderers
import SpeedscopeRenderer``), so that loading the package does not load them all.
"""

from __future__ import annotations

import importlib
from typing import Any

from pyinstrument.renderers.base import FrameRenderer, Renderer

# class name -> module (in this package) that defines it
_RENDERER_MODULES = {
    "ConsoleRenderer": "console",
    "HTMLRenderer": "html",
    "JSONRenderer": "jsonrenderer",
    "SpeedscopeRenderer": "speedscope",
    "PstatsRenderer": "pstatsrenderer",
    "SessionRenderer": "session",
    "CollapsedRenderer": "collapsed",
    "FlamegraphRenderer": "flamegraph",
    "FirefoxRenderer": "firefox",
    "ChromeTraceRenderer": "chrometrace",
    "PprofRenderer": "pprof",
}


def __getattr__(name: str) -> Any:
    module_name = _RENDERER_MODULES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{module_name}":
            raise
        raise AttributeError(f"{name} is not available in this version of pyinstrument") from None
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> Any:
    return sorted(list(globals()) + list(_RENDERER_MODULES))


__all__ = ["Renderer", "FrameRenderer", *_RENDERER_MODULES]
