"""Framework-neutral logic shared by the web profiling middlewares (WSGI, ASGI, Django).

A middleware turns its framework's request into a :class:`RequestInfo` and drives one
:class:`WebProfiling` object, which holds the options and decides everything else:

- ``profiling.shows_report(request)``: the query string asks for the report
  (``?profile``) and the show callback allows it: the client gets the report instead of
  the application's response;
- ``profiling.records``: every request is profiled to write reports into ``profile_dir``;
- ``profiler = profiling.start(request)`` before running the application and
  ``session = profiling.stop(profiler)`` after (``None`` when profiling failed: the
  request goes on unprofiled);
- ``profiling.report_response(session)``: the ``(body, content type)`` to send back;
- ``profiling.keep(request, session)``: writes the report file when the slow-only rules
  (``slow_threshold``, ``keep_slowest``) keep it;
- ``profiling.done()`` once per started profile, when its file (if any) is written;
  ``profiling.wait_for_reports(timeout)`` waits for those still being written.

Nothing here raises into the request: failures to profile, render or write are logged
on the ``pyinstrument`` logger (the first of each kind with its traceback, later ones at
debug level) and the application's response goes out as if profiling were off.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import parse_qs

from pyinstrument.profiler import Profiler
from pyinstrument.session import Session, write_file_atomically

logger = logging.getLogger("pyinstrument")

DEFAULT_FILENAME = "{total_time:.3f}s {path} {timestamp:.0f}.{ext}"

#: headers a reverse proxy adds: behind one, every request comes from its address
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")

_CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class RequestInfo:
    """What a show or filename callback learns about a request, whatever the framework.

    ``path`` is the decoded URL path (``SCRIPT_NAME`` + ``PATH_INFO`` for WSGI),
    ``query_string`` the raw query without ``?``, ``headers`` maps lower-case header
    names to values (repeated headers joined with ``", "``), ``client`` is the peer's
    address (``REMOTE_ADDR``, ``scope["client"][0]``) or None when the server gave none.
    """

    method: str
    path: str
    query_string: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    client: Optional[str] = None

    def has_query_argument(self, name: str) -> bool:
        return name in parse_qs(self.query_string, keep_blank_values=True)


def is_local_request(request: RequestInfo) -> bool:
    """True for a request from this machine (127.0.0.0/8, ::1, ::ffff:127.x) that did
    not come through a reverse proxy (no X-Forwarded-For, Forwarded, X-Real-IP header):
    a proxy on the same machine would make every visitor look local."""
    if request.client is None or any(name in request.headers for name in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.client.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


#: the default show callback: only local requests may see their report
default_show_callback = is_local_request


def path_for_filename(path: str, limit: int = 100) -> str:
    """The request path made safe as part of a file name: slashes and characters that
    file systems refuse become ``_``, ``..`` cannot remain, at most ``limit`` chars."""
    text = path.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    text = re.sub(r'[/\\\x00-\x1f\x7f<>:"|?*]', "_", text)
    while ".." in text:
        text = text.replace("..", "_")
    return text[:limit] or "_"


def renderer_class_for(renderer: Union[None, str, type, Any]) -> Any:
    """A renderer class (or instance, used as is) from None (HTML), a ``-r`` name such
    as ``"html"`` or ``"speedscope"``, a dotted path, a class or an instance."""
    if renderer is None:
        renderer = "html"
    if isinstance(renderer, str):
        from pyinstrument.__main__ import UsageError, get_renderer_class

        try:
            return get_renderer_class(renderer)
        except UsageError as error:
            raise ValueError(str(error)) from None
    if not callable(getattr(renderer, "render", None)):
        raise TypeError(f"{renderer!r} is not a renderer (a class or object with a render(session) method)")
    return renderer


class SlowestReports:
    """The N slowest reports kept per endpoint; the files pushed out are deleted by the
    caller. Known only to this process: files from earlier runs or other worker
    processes in the same folder are not counted. Thread-safe."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._by_endpoint: Dict[Tuple[str, str], List[Tuple[float, str]]] = {}

    def admits(self, endpoint: Tuple[str, str], duration: float) -> bool:
        """Whether a report of this duration would be among the slowest."""
        with self._lock:
            kept = self._by_endpoint.get(endpoint, [])
            return len(kept) < self.keep or duration > kept[0][0]

    def add(self, endpoint: Tuple[str, str], duration: float, path: str) -> List[str]:
        """Records a written report; returns the files no longer among the slowest."""
        with self._lock:
            kept = self._by_endpoint.setdefault(endpoint, [])
            heapq.heappush(kept, (duration, path))
            return [heapq.heappop(kept)[1] for _ in range(len(kept) - self.keep)]


def write_new_file(path: str, data: bytes) -> str:
    """Write ``data`` to ``path``, or, when that name is taken (the same endpoint,
    duration and second), to ``path`` with " (2)", " (3)"... before the extension;
    returns the path used. The name is reserved first and the content written
    atomically, so concurrent writers never share or half-write a file."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    stem, suffix = os.path.splitext(path)
    candidate, number = path, 1
    while True:
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            number += 1
            candidate = f"{stem} ({number}){suffix}"
    write_file_atomically(candidate, data)
    return candidate


class WebProfiling:
    """The options of a profiling middleware and what follows from them (see the module
    docstring for the order of calls). Thread-safe: one object serves all requests."""

    def __init__(
        self,
        *,
        profile_dir: "Optional[str | os.PathLike[str]]" = None,
        url_argument: Optional[str] = "profile",
        show_callback: Optional[Callable[[RequestInfo], bool]] = None,
        interval: float = 0.001,
        renderer: Union[None, str, type, Any] = None,
        filename: str = DEFAULT_FILENAME,
        filename_callback: Optional[Callable[[RequestInfo, Session, Any], str]] = None,
        slow_threshold: Optional[float] = None,
        keep_slowest: Optional[int] = None,
        all_threads: bool = False,
    ) -> None:
        if (slow_threshold is not None or keep_slowest is not None) and profile_dir is None:
            raise ValueError("slow_threshold and keep_slowest choose which reports to write: they need profile_dir")
        if keep_slowest is not None and keep_slowest < 1:
            raise ValueError("keep_slowest must be at least 1")
        if not interval > 0:
            raise ValueError("interval must be a positive number of seconds")
        self.profile_dir = os.fspath(profile_dir) if profile_dir is not None else None
        self.url_argument = url_argument
        self.show_callback = show_callback if show_callback is not None else default_show_callback
        self.interval = float(interval)
        self.renderer = renderer_class_for(renderer)
        self.filename = filename
        self.filename_callback = filename_callback
        self.slow_threshold = slow_threshold
        self.keep_slowest = keep_slowest
        self.all_threads = all_threads
        self._slowest = SlowestReports(keep_slowest) if keep_slowest is not None else None
        self._pending = 0  # profiles started, not yet done()
        self._pending_changed = threading.Condition()
        self._failures_logged: set = set()

    # -- deciding --------------------------------------------------------------------

    @property
    def records(self) -> bool:
        """Every request is profiled, to write reports into profile_dir."""
        return self.profile_dir is not None

    def shows_report(self, request: RequestInfo) -> bool:
        """The request asks for its report and the show callback allows it."""
        if not self.url_argument or not request.has_query_argument(self.url_argument):
            return False
        try:
            return bool(self.show_callback(request))
        except Exception:
            self._log_failure("show", "pyinstrument: the show callback failed; the report is not shown")
            return False

    # -- profiling -------------------------------------------------------------------

    def start(self, request: RequestInfo, async_mode: str = "disabled") -> Optional[Profiler]:
        """A running profiler of the calling thread (with async_mode "enabled": of the
        calling task), or None when it cannot start."""
        profiler = Profiler(interval=self.interval, async_mode=async_mode, all_threads=self.all_threads)
        try:
            profiler.start(target_description=f"{request.method} {request.path}")
        except Exception:
            self._log_failure("start", "pyinstrument: cannot profile the request")
            return None
        with self._pending_changed:
            self._pending += 1
        return profiler

    def stop(self, profiler: Profiler) -> Optional[Session]:
        """The request's session, or None (logged) when stopping failed. Call done()
        after, whatever this returns."""
        try:
            return profiler.stop()
        except Exception:
            self._log_failure("stop", "pyinstrument: stopping the request's profiler failed")
            return None

    def done(self) -> None:
        """One started profile is finished with (its report written or left out)."""
        with self._pending_changed:
            self._pending -= 1
            self._pending_changed.notify_all()

    def wait_for_reports(self, timeout: Optional[float] = None) -> bool:
        """Wait until every profiled request so far is finished (its report written,
        if kept); False when ``timeout`` seconds passed first."""
        with self._pending_changed:
            return self._pending_changed.wait_for(lambda: self._pending <= 0, timeout)

    # -- reports ---------------------------------------------------------------------

    def new_renderer(self) -> Any:
        """A renderer for one report: a fresh one from a class, or the instance given."""
        return self.renderer() if isinstance(self.renderer, type) else self.renderer

    def render(self, session: Session, renderer: Any) -> bytes:
        output = renderer.render(session)
        return output.encode("utf-8") if isinstance(output, str) else bytes(output)

    def report_response(self, session: Session) -> Optional[Tuple[bytes, str]]:
        """(body, content type) of the report to send instead of the response, or None
        (logged) when rendering failed."""
        try:
            renderer = self.new_renderer()
            body = self.render(session, renderer)
        except Exception:
            self._log_failure("render", "pyinstrument: rendering the request's report failed")
            return None
        extension = getattr(renderer, "output_file_extension", "txt")
        binary = getattr(renderer, "output_is_binary", False)
        default = "application/octet-stream" if binary else "text/plain; charset=utf-8"
        return body, _CONTENT_TYPES.get(extension, default)

    def keep(self, request: RequestInfo, session: Session) -> Optional[str]:
        """Write the request's report into profile_dir if the slow-only rules keep it;
        the file's path, or None (not kept, or a failure that is logged)."""
        if self.profile_dir is None:
            return None
        duration = session.duration
        if self.slow_threshold is not None and not duration > self.slow_threshold:
            return None
        endpoint = (request.method, request.path)
        if self._slowest is not None and not self._slowest.admits(endpoint, duration):
            return None
        try:
            path = self._write(request, session)
        except Exception:
            self._log_failure("write", f"pyinstrument: cannot write the report into {self.profile_dir}")
            return None
        if self._slowest is not None:
            for pushed_out in self._slowest.add(endpoint, duration, path):
                try:
                    os.remove(pushed_out)
                except FileNotFoundError:
                    pass  # removed by someone else: nothing to do
                except OSError:
                    self._log_failure("remove", f"pyinstrument: cannot remove {pushed_out}")
        return path

    def _write(self, request: RequestInfo, session: Session) -> str:
        assert self.profile_dir is not None
        renderer = self.new_renderer()
        extension = getattr(renderer, "output_file_extension", "txt")
        if self.filename_callback is not None:
            name = self.filename_callback(request, session, renderer)
        else:
            name = self.filename.format(
                total_time=session.duration,
                path=path_for_filename(request.path),
                method=path_for_filename(request.method, 20),
                timestamp=session.start_time,
                ext=extension,
            )
        body = self.render(session, renderer)
        return write_new_file(os.path.join(self.profile_dir, name), body)

    def _log_failure(self, kind: str, message: str) -> None:
        if kind in self._failures_logged:
            logger.debug(message, exc_info=True)
            return
        self._failures_logged.add(kind)
        logger.warning(message + " (later failures of this kind are logged at debug level)", exc_info=True)


def headers_mapping(pairs: Any) -> Dict[str, str]:
    """Lower-case header names to values; repeated headers joined with ", "."""
    headers: Dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class ProfilingMiddleware:
    """What the WSGI and ASGI middlewares share: their options and the waiting for
    reports. ``app`` is the wrapped application; see wsgi.ProfilerMiddleware for the
    options."""

    def __init__(
        self,
        app: Any,
        *,
        profile_dir: "Optional[str | os.PathLike[str]]" = None,
        url_argument: Optional[str] = "profile",
        show_callback: Optional[Callable[[RequestInfo], bool]] = None,
        interval: float = 0.001,
        renderer: Union[None, str, type, Any] = None,
        filename: str = DEFAULT_FILENAME,
        filename_callback: Optional[Callable[[RequestInfo, Session, Any], str]] = None,
        slow_threshold: Optional[float] = None,
        keep_slowest: Optional[int] = None,
        all_threads: bool = False,
    ) -> None:
        self.app = app
        self.profiling = WebProfiling(
            profile_dir=profile_dir,
            url_argument=url_argument,
            show_callback=show_callback,
            interval=interval,
            renderer=renderer,
            filename=filename,
            filename_callback=filename_callback,
            slow_threshold=slow_threshold,
            keep_slowest=keep_slowest,
            all_threads=all_threads,
        )

    def wait_for_reports(self, timeout: Optional[float] = None) -> bool:
        """Wait until the reports of the requests profiled so far are written (a report
        is written after its response is sent); False if ``timeout`` passed first.
        Blocking: under ASGI, call it from a thread, not from the event loop."""
        return self.profiling.wait_for_reports(timeout)
