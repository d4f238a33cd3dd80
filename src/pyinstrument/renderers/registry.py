"""The built-in renderers, by name: the one table that the command line (``-r``, and
the output file's suffix), the web middlewares and the IPython magic read.

This module imports no renderer: a class is imported when it is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple


class RendererError(ValueError):
    """A renderer name, class or option that cannot be used; its message is one line
    for the user."""


@dataclass(frozen=True)
class RendererInfo:
    names: Tuple[str, ...]  #: the ``-r`` names, the first one its own
    class_name: str  #: in ``pyinstrument.renderers``
    module: str  #: the module of ``pyinstrument.renderers`` that defines it
    suffixes: Tuple[str, ...] = ()  #: output file names ending so choose it


BUILT_IN: Tuple[RendererInfo, ...] = (
    RendererInfo(("text",), "ConsoleRenderer", "console"),
    RendererInfo(("html",), "HTMLRenderer", "html", (".html", ".htm")),
    RendererInfo(("json",), "JSONRenderer", "jsonrenderer", (".json",)),
    RendererInfo(("speedscope",), "SpeedscopeRenderer", "speedscope", (".speedscope.json",)),
    RendererInfo(("session", "pyisession"), "SessionRenderer", "session", (".pyisession",)),
    RendererInfo(("pstats",), "PstatsRenderer", "pstatsrenderer", (".pstats",)),
    RendererInfo(("collapsed",), "CollapsedRenderer", "collapsed", (".collapsed",)),
    RendererInfo(("flamegraph",), "FlamegraphRenderer", "flamegraph", (".svg",)),
    RendererInfo(("firefox",), "FirefoxRenderer", "firefox", (".firefox.json",)),
    RendererInfo(("chrometrace",), "ChromeTraceRenderer", "chrometrace", (".trace.json",)),
    RendererInfo(("pprof",), "PprofRenderer", "pprof", (".pb.gz",)),
)

#: every ``-r`` name
BY_NAME: Dict[str, RendererInfo] = {name: info for info in BUILT_IN for name in info.names}
#: class name -> module, for ``pyinstrument.renderers``' lazy imports
MODULE_OF_CLASS: Dict[str, str] = {info.class_name: info.module for info in BUILT_IN}
#: (suffix, -r name), longest suffix first: ``.speedscope.json`` before ``.json``
_SUFFIXES = sorted(
    ((suffix, info.names[0]) for info in BUILT_IN for suffix in info.suffixes), key=lambda pair: -len(pair[0])
)
#: web content types of the output file extensions renderers declare
_CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
}


def name_for_file(path: Optional[str]) -> Optional[str]:
    """The ``-r`` name an output file's name chooses, or None."""
    lowered = (path or "").lower()
    for suffix, name in _SUFFIXES:
        if lowered.endswith(suffix):
            return name
    return None


def content_type(renderer: Any) -> str:
    """The content type of a renderer's report as a web response (from the output file
    extension it declares)."""
    extension = getattr(renderer, "output_file_extension", "txt")
    default = "application/octet-stream" if getattr(renderer, "output_is_binary", False) else _CONTENT_TYPES["txt"]
    return _CONTENT_TYPES.get(extension, default)


def renderer_class(name: str) -> type:
    """The renderer class for a ``-r`` value: a built-in one's name, or the dotted path
    of a class with a ``render(session)`` method."""
    info = BY_NAME.get(name)
    if info is not None:
        renderers = importlib.import_module("pyinstrument.renderers")
        found = getattr(renderers, info.class_name, None)
        if found is None:
            raise RendererError(f"the {name} renderer is not available in this version of pyinstrument")
        return found
    found = _import_object(name)
    if not isinstance(found, type) or not callable(getattr(found, "render", None)):
        raise RendererError(f"{name!r} is not a renderer class (a class with a render(session) method)")
    return found


def _import_object(path: str) -> Any:
    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise RendererError(
            f"unknown renderer {path!r}: use one of {', '.join(BY_NAME)}, or a dotted path such as mypackage.MyRenderer"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RendererError(f"cannot import renderer {path!r}: {exc}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RendererError(f"cannot import renderer {path!r}: module {module_name!r} has no {attribute!r}") from None
