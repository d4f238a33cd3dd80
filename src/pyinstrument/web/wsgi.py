"""WSGI middleware that profiles requests: for Flask and any WSGI application.

``app.wsgi_app = ProfilerMiddleware(app.wsgi_app, profile_dir="profiles")`` profiles
every request and writes a report per request; ``?profile`` in a request's query string
returns that request's report instead of the response, for the requests a show
callback allows (there is none by default: nobody gets a report until you say who may,
e.g. ``show_callback=is_local_request``). See docs/web.md.

Each request is profiled in its own thread by its own Profiler, so a threaded server's
concurrent requests are profiled at the same time, each report holding its own thread.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, List, Optional

from pyinstrument.profiler import Profiler
from pyinstrument.session import Session
from pyinstrument.web.common import ProfilingMiddleware, RequestInfo, headers_mapping, is_local_request

__all__ = ["ProfilerMiddleware", "RequestInfo", "is_local_request", "request_info"]


def _wsgi_text(value: str) -> str:
    """PEP 3333 carries URL bytes as latin-1 text: the path as it was sent (UTF-8)."""
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value  # a server that decoded it already


def request_info(environ: dict) -> RequestInfo:
    """The framework-neutral description of a WSGI request."""
    headers = headers_mapping(
        (key[5:].replace("_", "-"), value) for key, value in environ.items() if key.startswith("HTTP_")
    )
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return RequestInfo(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=_wsgi_text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/",
        query_string=_wsgi_text(environ.get("QUERY_STRING", "")),
        headers=headers,
        client=environ.get("REMOTE_ADDR") or None,
    )


class ProfilerMiddleware(ProfilingMiddleware):
    """Profiles requests to the WSGI application ``app``.

    :param profile_dir: profile every request and write its report into this folder
        (created when missing).
    :param url_argument: the query argument (``?profile``) that returns the request's
        report instead of its response; None turns this off.
    :param show_callback: ``callback(request_info) -> bool``: may this request see its
        report? Default: None, nobody may. ``is_local_request`` allows requests from
        this machine that carry no proxy header (see docs/web.md for what it cannot
        tell apart).
    :param interval: seconds between samples.
    :param renderer: the report format: a ``-r`` name (``"html"``, ``"speedscope"``, ...),
        a dotted path, a Renderer class, or an instance (used for every report). HTML by
        default.
    :param filename: file name pattern with ``{total_time}``, ``{path}`` (made safe for a
        file name), ``{method}``, ``{timestamp}`` and ``{ext}``.
    :param filename_callback: ``callback(request_info, session, renderer) -> name``,
        instead of ``filename``.
    :param slow_threshold: write only the reports of requests that took longer than
        this many seconds.
    :param keep_slowest: keep only the reports of the N slowest requests per endpoint
        (method and path), deleting the files of those pushed out.
    :param all_threads: sample every thread during the request, not only the one
        running it (for work handed to other threads; concurrent requests then mix).
    :raises ValueError: an option that cannot be used (one line naming it).
    """

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        from pyinstrument import agent

        if not agent.pushing():
            return self._call(environ, start_response)
        # continuous profiles into Pyroscope carry the request's route (no framework names it here)
        with agent.request_route(environ.get("REQUEST_METHOD", "GET"), request_info(environ).path):
            return self._call(environ, start_response)

    def _call(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = request_info(environ)
        show = self.profiling.shows_report(request)
        if not show and not self.profiling.records:
            return self.app(environ, start_response)
        profiler = self.profiling.start(request)
        if profiler is None:
            return self.app(environ, start_response)
        if show:
            return self._report_instead(request, profiler, environ, start_response)
        try:
            result = self.app(environ, start_response)
        except BaseException:
            self._finish(request, profiler)
            raise
        # the body is produced while the server iterates it: the profile ends at close()
        return _ProfiledBody(result, lambda: self._finish(request, profiler))

    def _finish(self, request: RequestInfo, profiler: Profiler) -> Optional[Session]:
        try:
            session = self.profiling.stop(profiler)
            if session is not None:
                self.profiling.keep(request, session)
            return session
        finally:
            self.profiling.done()

    def _report_instead(
        self, request: RequestInfo, profiler: Profiler, environ: dict, start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        status_and_headers: List[Any] = []
        body: List[bytes] = []

        def remember_start(status: str, headers: List[Any], exc_info: Any = None) -> Callable[[bytes], None]:
            status_and_headers[:] = [status, headers, exc_info]
            return body.append  # the legacy write() callable

        try:
            result = self.app(environ, remember_start)
            try:
                for chunk in result:  # the whole response runs while profiled
                    body.append(chunk)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            session = self._finish(request, profiler)
        report = self.profiling.report_response(session) if session is not None else None
        if report is None:  # profiling or rendering failed (logged): the normal response
            if not status_and_headers:
                raise RuntimeError("the WSGI application returned without calling start_response")
            status, headers, exc_info = status_and_headers
            start_response(status, headers, exc_info)
            return body
        content, content_type = report
        start_response(
            "200 OK",
            [("Content-Type", content_type), ("Content-Length", str(len(content))), ("Cache-Control", "no-store")],
        )
        return [content]


class _ProfiledBody:
    """The application's response body, calling ``finish`` once when the server closes
    it (PEP 3333: the server always calls close())."""

    def __init__(self, result: Iterable[bytes], finish: Callable[[], Any]) -> None:
        self._result = result
        self._finish: Optional[Callable[[], Any]] = finish

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            finish, self._finish = self._finish, None
            if finish is not None:
                finish()
