"""Framework-neutral logic shared by the web profiling middlewares (WSGI, ASGI, Django).

A middleware turns its framework's request into a :class:`RequestInfo` (Django passes its
own request) and drives one :class:`WebProfiling` object, which holds the options,
checked when it is made, and decides everything else:

- ``profiling.shows_report(request)``: the query string asks for the report
  (``?profile``) and the show callback allows it: the client gets the report instead of
  the application's response. Without a show callback nobody gets it;
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
on the ``pyinstrument`` logger in one line (the first of each kind as a warning, later
ones and the tracebacks at debug level) and the application's response goes out as if
profiling were off.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import logging
import math
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union
from urllib.parse import parse_qs

from pyinstrument.profiler import Profiler
from pyinstrument.renderers import registry
from pyinstrument.renderers.registry import RendererError
from pyinstrument.session import Session

logger = logging.getLogger("pyinstrument")

DEFAULT_FILENAME = "{total_time:.3f}s {path} {timestamp:.0f}.{ext}"

#: request headers that a reverse proxy, load balancer or CDN adds: with any of them, the
#: peer's address is the proxy's, not the visitor's
PROXY_HEADERS = frozenset(
    {
        "forwarded",
        "via",
        "x-real-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "cf-connecting-ipv6",
        "cf-ray",
        "cf-visitor",
        "cdn-loop",
        "x-client-ip",
        "x-cluster-client-ip",
        "fastly-client-ip",
        "x-proxyuser-ip",
        "x-envoy-external-address",
        "x-azure-clientip",
        "x-azure-socketip",
        "x-appengine-user-ip",
        "akamai-origin-hop",
        "client-ip",
    }
)
#: ...and the families of them: X-Forwarded-For/-Host/-Proto/-Port/-Server/-Prefix...,
#: X-Original-Forwarded-For
PROXY_HEADER_PREFIXES = ("x-forwarded", "x-original-forwarded")

#: the longest file name written, in bytes: file systems allow 255, and " (N)" may follow
MAX_NAME_BYTES = 200


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
        return has_query_argument(self.query_string, name)


def has_query_argument(query_string: str, name: str) -> bool:
    return name in parse_qs(query_string, keep_blank_values=True)


def came_through_proxy(header_names: Iterable[str]) -> bool:
    """Whether any of these (lower-case) request header names is one a proxy adds."""
    return any(name in PROXY_HEADERS or name.startswith(PROXY_HEADER_PREFIXES) for name in header_names)


def is_local_request(request: RequestInfo) -> bool:
    """A show callback: True for a request from this machine (127.0.0.0/8, ::1,
    ::ffff:127.x) that carries no header a proxy adds (see PROXY_HEADERS).

    A reverse proxy on this machine that adds no header (nginx's bare ``proxy_pass``)
    makes every visitor look local: use it only where no such proxy forwards to the
    application."""
    if request.client is None or came_through_proxy(request.headers):
        return False
    try:
        address = ipaddress.ip_address(request.client.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def path_for_filename(path: str, limit: int = 100) -> str:
    """The request path as part of a file name: only ASCII letters, digits, ``_``, ``.``
    and ``-`` (every other character, ``/`` included, becomes ``_``, and so does each run
    of dots), at most ``limit`` characters. When more than slashes were replaced or the
    path was cut, 8 hex digits of a hash of the path end the name, so that paths that
    differ only there (``/café``, ``/cafè``) keep different names."""
    safe = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9_.-]", "_", path))
    if safe != path.replace("/", "_") or len(safe) > limit:
        safe = safe[: max(limit - 9, 0)] + "-" + _short_hash(path)
    return safe or "_"


def fit_file_name(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """``name`` (one path component) cut to at most ``limit`` bytes in UTF-8, keeping
    its extension and ending the cut part with a hash of the whole name."""
    encoded = os.fsencode(name)
    if len(encoded) <= limit:
        return name
    stem, extension = os.path.splitext(name)
    if len(os.fsencode(extension)) > 16:
        stem, extension = name, ""
    room = limit - len(os.fsencode(extension)) - 9
    cut = os.fsencode(stem)[:room].decode("utf-8", "ignore")
    return f"{cut}-{_short_hash(name)}{extension}"


# -- options ---------------------------------------------------------------------------
# Each checker takes the option's name as the user wrote it (``keep_slowest`` or, for
# Django, ``PYINSTRUMENT_KEEP_SLOWEST``) and raises ValueError with one line naming it.


def _seconds(value: Any) -> float:
    """A number of seconds from a number or a string such as ``"0.5"``; NaN if none."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def seconds_option(name: str, value: Any) -> Optional[float]:
    """None, or a finite number of seconds, 0 or more."""
    if value is None:
        return None
    seconds = _seconds(value)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    return seconds


def interval_option(name: str, value: Any) -> float:
    """A finite number of seconds, more than 0."""
    seconds = _seconds(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return seconds


def count_option(name: str, value: Any) -> Optional[int]:
    """None, or a whole number of at least 1 (an int or a string such as ``"5"``)."""
    if value is None:
        return None
    count = None
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, str) and value.strip().isdigit():
        count = int(value)
    if count is None or count < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
    return count


def folder_option(name: str, value: Any) -> Optional[str]:
    """None, or a folder path (a string or os.PathLike) that can name a file."""
    if value is None:
        return None
    try:
        folder = os.fspath(value)
    except TypeError:
        raise ValueError(f"{name} must be a folder path, not {value!r}") from None
    if isinstance(folder, bytes):
        folder = os.fsdecode(folder)
    if not folder or "\x00" in folder:
        raise ValueError(f"{name} must be a folder path, not {value!r}")
    return folder


def filename_option(name: str, pattern: Any) -> str:
    """A file name pattern whose fields are the ones a report name is made with."""
    try:
        pattern.format(total_time=1.0, path="_", method="GET", timestamp=1.0, ext="html")
    except (AttributeError, LookupError, ValueError, TypeError) as error:
        raise ValueError(
            f"{name} must be a pattern with the fields total_time, path, method, timestamp and ext, "
            f"not {pattern!r} ({type(error).__name__}: {error})"
        ) from None
    return str(pattern)


def callback_option(name: str, value: Any) -> Optional[Callable[..., Any]]:
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be a function, not {value!r}")
    return value


def url_argument_option(name: str, value: Any) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be the name of a query argument (a string) or None, not {value!r}")
    return value or None


def renderer_class_for(renderer: Union[None, str, type, Any], name: str = "renderer") -> Any:
    """A renderer class (or instance, used as is) from None (HTML), a ``-r`` name such
    as ``"html"`` or ``"speedscope"``, a dotted path, a class or an instance."""
    if renderer is None:
        renderer = "html"
    if isinstance(renderer, str):
        try:
            return registry.renderer_class(renderer)
        except RendererError as error:
            raise ValueError(f"{name}: {error}") from None
    if not callable(getattr(renderer, "render", None)):
        raise ValueError(f"{name} must be a renderer class or object (with a render(session) method), not {renderer!r}")
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
    returns the path used. The data goes to a temporary file in the folder first, which
    then replaces the reserved name, so that a report is never seen half-written, and a
    failure (a full disk) leaves no file behind."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".pyinstrument-{secrets.token_hex(8)}.tmp")
    reserved = None
    try:
        _write_all(temporary, data)
        reserved = _reserve_name(path)
        os.replace(temporary, reserved)
        return reserved
    except BaseException:
        for leftover in (temporary, reserved):
            try:
                if leftover is not None:
                    os.remove(leftover)
            except OSError:
                pass  # already gone, or never made
        raise


def _write_all(path: str, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


def _reserve_name(path: str) -> str:
    """``path`` or the first free ``path (N)``, created empty."""
    stem, suffix = os.path.splitext(path)
    candidate, number = path, 1
    while True:
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return candidate
        except FileExistsError:
            number += 1
            candidate = f"{stem} ({number}){suffix}"


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())


class WebProfiling:
    """The options of a profiling middleware and what follows from them (see the module
    docstring for the order of calls). Thread-safe: one object serves all requests.

    The options are checked here: a value that cannot be used raises ValueError naming
    it (``option_names`` maps the keyword names to those the user wrote, such as
    Django's settings)."""

    def __init__(
        self,
        *,
        profile_dir: "Optional[str | os.PathLike[str]]" = None,
        url_argument: Optional[str] = "profile",
        show_callback: Optional[Callable[[Any], bool]] = None,
        interval: float = 0.001,
        renderer: Union[None, str, type, Any] = None,
        filename: str = DEFAULT_FILENAME,
        filename_callback: Optional[Callable[[Any, Session, Any], str]] = None,
        slow_threshold: Optional[float] = None,
        keep_slowest: Optional[int] = None,
        all_threads: bool = False,
        option_names: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._option_names = dict(option_names or {})
        name = self._option_name
        self.profile_dir = folder_option(name("profile_dir"), profile_dir)
        self.url_argument = url_argument_option(name("url_argument"), url_argument)
        self.show_callback = callback_option(name("show_callback"), show_callback)
        self.interval = interval_option(name("interval"), interval)
        self.renderer = renderer_class_for(renderer, name("renderer"))
        self.filename = filename_option(name("filename"), filename)
        self.filename_callback = callback_option(name("filename_callback"), filename_callback)
        self.slow_threshold = seconds_option(name("slow_threshold"), slow_threshold)
        self.keep_slowest = count_option(name("keep_slowest"), keep_slowest)
        if (self.slow_threshold is not None or self.keep_slowest is not None) and self.profile_dir is None:
            raise ValueError(
                f"{name('slow_threshold')} and {name('keep_slowest')} choose which reports to write: "
                f"they need {name('profile_dir')}"
            )
        self.all_threads = bool(all_threads)
        self._slowest = SlowestReports(self.keep_slowest) if self.keep_slowest is not None else None
        self._pending = 0  # profiles started, not yet done()
        self._pending_changed = threading.Condition()
        self._failures_logged: set = set()
        self._failures_lock = threading.Lock()

    def _option_name(self, keyword: str) -> str:
        return self._option_names.get(keyword, keyword)

    # -- deciding --------------------------------------------------------------------

    @property
    def records(self) -> bool:
        """Every request is profiled, to write reports into profile_dir."""
        return self.profile_dir is not None

    def shows_report(self, request: RequestInfo) -> bool:
        """The request asks for its report and the show callback allows it."""
        if not self.url_argument or not request.has_query_argument(self.url_argument):
            return False
        return self.allows(request)

    def allows(self, request: Any) -> bool:
        """The show callback allows this request (the framework's, for Django) to see
        its report; no show callback allows nobody."""
        if self.show_callback is None:
            return False
        try:
            return bool(self.show_callback(request))
        except Exception as error:
            self._log_failure("show", f"{self._option_name('show_callback')} failed, the report is not shown", error)
            return False

    # -- profiling -------------------------------------------------------------------

    def start(self, request: Any, async_mode: str = "disabled") -> Optional[Profiler]:
        """A running profiler of the calling thread (with async_mode "enabled": of the
        calling task), or None when it cannot start."""
        try:
            profiler = Profiler(interval=self.interval, async_mode=async_mode, all_threads=self.all_threads)
            # the path only: the query string may carry tokens, which must not reach reports
            profiler.start(target_description=f"{request.method} {request.path}")
        except Exception as error:
            self._log_failure("start", "cannot profile the request, it runs unprofiled", error)
            return None
        with self._pending_changed:
            self._pending += 1
        return profiler

    def stop(self, profiler: Profiler) -> Optional[Session]:
        """The request's session, or None (logged) when stopping failed. Call done()
        after, whatever this returns."""
        try:
            return profiler.stop()
        except Exception as error:
            self._log_failure("stop", "stopping the request's profiler failed", error)
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

    def new_renderer(self, renderer: Any = None) -> Any:
        """A renderer for one report: a fresh one from a class, or the instance given."""
        renderer = self.renderer if renderer is None else renderer
        return renderer() if isinstance(renderer, type) else renderer

    def render(self, session: Session, renderer: Any) -> bytes:
        output = renderer.render(session)
        # binary formats come as str too (pstats, as upstream's): their bytes, surrogate-escaped
        return output.encode("utf-8", errors="surrogateescape") if isinstance(output, str) else bytes(output)

    def report_response(self, session: Session, renderer: Any = None) -> Optional[Tuple[bytes, str]]:
        """(body, content type) of the report to send instead of the response, or None
        (logged) when rendering failed. ``renderer``: a class or instance other than
        the option's."""
        try:
            renderer = self.new_renderer(renderer)
            body = self.render(session, renderer)
        except Exception as error:
            self._log_failure("render", "rendering the report failed, the application's response is sent", error)
            return None
        return body, registry.content_type(renderer)

    def keep(self, request: Any, session: Session) -> Optional[str]:
        """Write the request's report into profile_dir if the slow-only rules keep it;
        the file's path, or None (not kept, or a failure that is logged). ``request``:
        anything with ``method`` and ``path`` (a RequestInfo, a Django request)."""
        try:
            return self._keep(request, session)
        except Exception as error:
            self._log_failure("write", f"cannot write a report into {self.profile_dir}", error)
            return None

    def _keep(self, request: Any, session: Session) -> Optional[str]:
        if self.profile_dir is None:
            return None
        duration = session.duration
        if self.slow_threshold is not None and not duration > self.slow_threshold:
            return None
        endpoint = (request.method, request.path)
        if self._slowest is not None and not self._slowest.admits(endpoint, duration):
            return None
        path = self._write(request, session)
        self._keep_flight_recording(path)
        if self._slowest is not None:
            for pushed_out in self._slowest.add(endpoint, duration, path):
                try:
                    os.remove(pushed_out)
                except FileNotFoundError:
                    pass  # removed by someone else: nothing to do
                except OSError as error:
                    self._log_failure("remove", f"cannot remove {pushed_out}", error)
        return path

    def _keep_flight_recording(self, report: str) -> None:
        """With the agent's flight recorder armed, what the whole process did in its last
        seconds (before the request too, and in its other threads) is kept beside a kept
        report, as REPORT.flight.pyisession."""
        from pyinstrument import agent

        recorder = agent.flight_recorder()
        if recorder is None:
            return
        try:
            session = recorder.recording()
        except agent.AgentError:
            return  # still starting: nothing recorded yet
        write_new_file(os.path.splitext(report)[0] + ".flight.pyisession", b"".join(session.to_file_chunks()))

    def _write(self, request: Any, session: Session) -> str:
        assert self.profile_dir is not None
        renderer = self.new_renderer()
        extension = getattr(renderer, "output_file_extension", "txt")
        if self.filename_callback is not None:
            name = str(self.filename_callback(request, session, renderer))
        else:
            name = self.filename.format(
                total_time=session.duration,
                path=path_for_filename(request.path),
                method=path_for_filename(request.method, 20),
                timestamp=session.start_time,
                ext=extension,
            )
        folder, base = os.path.split(os.path.join(self.profile_dir, name))
        body = self.render(session, renderer)
        return write_new_file(os.path.join(folder, fit_file_name(base)), body)

    def _log_failure(self, kind: str, message: str, error: BaseException) -> None:
        """One line on the pyinstrument logger: a warning the first time for each kind,
        then at debug level; the traceback only at debug level."""
        line = f"pyinstrument: {message}: {_one_line(error)}"
        with self._failures_lock:
            first = kind not in self._failures_logged
            self._failures_logged.add(kind)
        if first:
            logger.warning("%s (later failures of this kind are logged at debug level)", line)
        else:
            logger.debug("%s", line)
        logger.debug("pyinstrument: the traceback of that failure", exc_info=error)


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
