"""Django middleware: profile requests and show or save the reports.

Add ``"pyinstrument.middleware.ProfilerMiddleware"`` to ``MIDDLEWARE`` (after
``AuthenticationMiddleware`` when staff users should be allowed to use ``?profile``).
It does two things, both off by default in production:

- ``?profile`` on a URL returns the HTML report of that request instead of the page,
  when ``PYINSTRUMENT_SHOW_CALLBACK`` allows it. Unlike upstream pyinstrument, the
  default callback allows it only to an authenticated staff user (``request.user``),
  or, when ``settings.DEBUG`` is true, to a request that carries no header a proxy
  adds: a public site must not hand its internals to anyone who adds ``?profile``.
- ``PYINSTRUMENT_PROFILE_DIR`` profiles every request and writes one report per
  request into that folder, optionally only slow ones (``PYINSTRUMENT_SLOW_THRESHOLD``)
  or only the N slowest of each endpoint (``PYINSTRUMENT_KEEP_SLOWEST``).

The settings are checked when Django creates the middleware (at start-up): a value
that cannot be used raises ImproperlyConfigured naming it. They are read again when
they change (``override_settings`` in tests). A request is profiled on its own thread
only, so several requests running at once in a threaded server each get their own
report. Profiling, rendering or writing a report never fails the request: failures
are logged on the ``pyinstrument`` logger.

The middleware is synchronous; under ASGI Django runs it in a worker thread, which
works, but an async view's own time is then not attributed (see docs/django.md).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from pyinstrument.session import Session
from pyinstrument.web.common import (
    DEFAULT_FILENAME,
    WebProfiling,
    came_through_proxy,
    count_option,
    has_query_argument,
    seconds_option,
)

logger = logging.getLogger("pyinstrument.middleware")

#: the WebProfiling option each setting gives
SETTING_NAMES: Dict[str, str] = {
    "profile_dir": "PYINSTRUMENT_PROFILE_DIR",
    "url_argument": "PYINSTRUMENT_URL_ARGUMENT",
    "show_callback": "PYINSTRUMENT_SHOW_CALLBACK",
    "interval": "PYINSTRUMENT_INTERVAL",
    "renderer": "PYINSTRUMENT_PROFILE_DIR_RENDERER",
    "filename": "PYINSTRUMENT_FILENAME",
    "filename_callback": "PYINSTRUMENT_FILENAME_CALLBACK",
    "slow_threshold": "PYINSTRUMENT_SLOW_THRESHOLD",
    "keep_slowest": "PYINSTRUMENT_KEEP_SLOWEST",
}
DEFAULTS: Dict[str, Any] = {"url_argument": "profile", "interval": 0.001, "filename": DEFAULT_FILENAME}


def _settings() -> Any:
    from django.conf import settings

    return settings


def header_names(request: Any) -> Iterable[str]:
    """The lower-case names of a Django request's headers."""
    return (key[5:].replace("_", "-").lower() for key in request.META if key.startswith("HTTP_"))


def default_show_callback(request: Any) -> bool:
    """Who may see ``?profile`` reports by default: an authenticated staff user, and,
    when DEBUG is on, a request that carries no header a proxy adds (behind a proxy,
    DEBUG would hand reports to every visitor)."""
    if getattr(_settings(), "DEBUG", False) and not came_through_proxy(header_names(request)):
        return True
    user = getattr(request, "user", None)
    if user is None:
        return False
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False))


def _imported(setting: str, value: Any) -> Any:
    """A setting that holds an object or the dotted path of one."""
    if not isinstance(value, str):
        return value
    from django.utils.module_loading import import_string

    try:
        return import_string(value)
    except ImportError as error:
        raise ValueError(f"{setting}: cannot import {value!r} ({error})") from None


def _setting_values() -> Tuple[Any, ...]:
    settings = _settings()
    return tuple(getattr(settings, name, DEFAULTS.get(keyword)) for keyword, name in SETTING_NAMES.items())


def profiling_from_settings(values: Tuple[Any, ...]) -> WebProfiling:
    """The WebProfiling the settings' ``values`` (in SETTING_NAMES order) describe;
    ImproperlyConfigured, one line naming the setting, when one cannot be used."""
    from django.core.exceptions import ImproperlyConfigured

    options = dict(zip(SETTING_NAMES, values))
    try:
        options["profile_dir"] = options["profile_dir"] or None  # "" (an unset variable) is off too
        options["show_callback"] = _imported(SETTING_NAMES["show_callback"], options["show_callback"])
        options["show_callback"] = options["show_callback"] or default_show_callback
        options["filename_callback"] = _imported(SETTING_NAMES["filename_callback"], options["filename_callback"])
        if options["profile_dir"] is None:
            # they choose which files to write, so do nothing without a folder, which
            # settings often give only in some environments: checked, then left out
            seconds_option(SETTING_NAMES["slow_threshold"], options.pop("slow_threshold"))
            count_option(SETTING_NAMES["keep_slowest"], options.pop("keep_slowest"))
        return WebProfiling(**options, option_names=SETTING_NAMES)
    except ValueError as error:
        raise ImproperlyConfigured(str(error)) from None


class ProfilerMiddleware:
    """Profiles requests: ``?profile`` shows the HTML report (to those allowed), and
    ``PYINSTRUMENT_PROFILE_DIR`` saves a report per request. See the module docstring."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._lock = threading.Lock()
        self._values = _setting_values()
        self._current = profiling_from_settings(self._values)
        if hasattr(_settings(), "PYINSTRUMENT_USE_SIGNAL"):
            logger.warning(
                "PYINSTRUMENT_USE_SIGNAL is ignored: this pyinstrument samples from a native "
                "thread and needs no signals; the setting can be removed"
            )

    def _profiling(self) -> WebProfiling:
        """The profiling the settings describe now (they change in tests)."""
        values = _setting_values()
        with self._lock:
            if values != self._values:
                self._current = profiling_from_settings(values)
                self._values = values
            return self._current

    def process_request(self, request: Any) -> None:
        """Starts profiling the request (``request.profiler``) when the settings say so:
        ``?profile`` from someone PYINSTRUMENT_SHOW_CALLBACK allows, or every request when
        PYINSTRUMENT_PROFILE_DIR is set (only those the callback allows, when one is set,
        as upstream's middleware does). Upstream's old-style hook; ``__call__`` uses it."""
        profiling = self._profiling()
        url_argument = profiling.url_argument
        # the raw query string, not request.GET, whose parsing can fail (too many fields)
        asks = url_argument is not None and has_query_argument(request.META.get("QUERY_STRING", ""), url_argument)
        show_report = asks and profiling.allows(request)
        callback_set = dict(zip(SETTING_NAMES, self._values))["show_callback"] is not None
        records = profiling.records and (show_report or not callback_set or profiling.allows(request))
        if not (show_report or records):
            return
        profiler = profiling.start(request)
        if profiler is not None:
            request.profiler = profiler
            request._pyinstrument_profiling = (profiling, show_report)

    def process_response(self, request: Any, response: Any) -> Any:
        """Stops the request's profiling (process_request) and keeps its report; returns
        the response, or the HTML report when the request asked for it."""
        finished = self._finish(request)
        if finished is None:
            return response
        profiling, show_report, session = finished
        report = profiling.report_response(session, _html_renderer()) if show_report and session else None
        if report is None:
            return response
        from django.http import HttpResponse

        content, content_type = report
        report_response = HttpResponse(content, content_type=content_type)
        report_response["Cache-Control"] = "no-store"
        return report_response

    def _finish(self, request: Any) -> Optional[Tuple[WebProfiling, bool, Optional[Session]]]:
        """Stops the request's profiling and keeps its session: (profiling, whether the
        report is to be shown, session or None when stopping failed), or None when the
        request was not profiled."""
        started = getattr(request, "_pyinstrument_profiling", None)
        if started is None:
            return None
        del request._pyinstrument_profiling
        profiling, show_report = started
        try:
            session = profiling.stop(request.profiler)
            if session is not None:
                profiling.keep(request, session)
        finally:
            profiling.done()
        return profiling, show_report, session

    def process_view(self, request: Any, view: Any, args: Any, kwargs: Any) -> None:
        """With continuous profiles pushed to Pyroscope, the rest of the request is
        labelled with its URL pattern (``GET users/<int:id>/``) as its route."""
        from pyinstrument import agent

        match = getattr(request, "resolver_match", None)
        if agent.pushing() and match is not None and getattr(request, "_pyinstrument_route", None) is None:
            pattern = getattr(match, "route", None) or match.view_name or "?"
            request._pyinstrument_route = agent.route(f"{request.method} {pattern}").__enter__()
        return None

    def __call__(self, request: Any) -> Any:
        self.process_request(request)
        try:
            try:
                response = self.get_response(request)
            finally:
                labelled = getattr(request, "_pyinstrument_route", None)
                if labelled is not None:
                    labelled.__exit__(None, None, None)
        except BaseException:
            self._finish(request)
            raise
        return self.process_response(request, response)


def _html_renderer() -> Any:
    from pyinstrument.renderers.html import HTMLRenderer

    return HTMLRenderer
