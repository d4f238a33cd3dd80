"""Renderers turn a profiling session into a report.

``Renderer`` and ``FrameRenderer`` are the base classes for writing your own. The
built-in renderers are imported when first used (``from pyinstrument.renderers
import SpeedscopeRenderer``), so that loading the package does not load them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pyinstrument.renderers.base import FrameRenderer, Renderer
from pyinstrument.renderers.registry import MODULE_OF_CLASS

if TYPE_CHECKING:  # what __getattr__ imports on first use, for type checkers
    from pyinstrument.renderers.chrometrace import ChromeTraceRenderer as ChromeTraceRenderer
    from pyinstrument.renderers.collapsed import CollapsedRenderer as CollapsedRenderer
    from pyinstrument.renderers.console import ConsoleRenderer as ConsoleRenderer
    from pyinstrument.renderers.firefox import FirefoxRenderer as FirefoxRenderer
    from pyinstrument.renderers.flamegraph import FlamegraphRenderer as FlamegraphRenderer
    from pyinstrument.renderers.html import HTMLRenderer as HTMLRenderer
    from pyinstrument.renderers.jsonrenderer import JSONRenderer as JSONRenderer
    from pyinstrument.renderers.pprof import PprofRenderer as PprofRenderer
    from pyinstrument.renderers.pstatsrenderer import PstatsRenderer as PstatsRenderer
    from pyinstrument.renderers.session import SessionRenderer as SessionRenderer
    from pyinstrument.renderers.speedscope import SpeedscopeRenderer as SpeedscopeRenderer

# class name -> module (in this package) that defines it
_RENDERER_MODULES = MODULE_OF_CLASS


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
