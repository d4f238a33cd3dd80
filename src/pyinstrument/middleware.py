"""Django middleware: profile requests and show or save the reports.

Add ``"pyinstrument.middleware.ProfilerMiddleware"`` to ``MIDDLEWARE`` (after
``AuthenticationMiddleware`` when staff users should be allowed to use ``?profile``).
It does two things, both off by default in production:

- ``?profile`` on a URL returns the HTML report of that request instead of the page,
  when ``PYINSTRUMENT_SHOW_CALLBACK`` allows it. Unlike upstream pyinstrument, the
  default callback allows it only when ``settings.DEBUG`` is true or ``request.user``
  is an authenticated staff user: a public site must not hand its internals to anyone
  who adds ``?profile``.
- ``PYINSTRUMENT_PROFILE_DIR`` profiles every request and writes one report per
  request into that folder, optionally only slow ones (``PYINSTRUMENT_SLOW_THRESHOLD``)
  or only the N slowest of each endpoint (``PYINSTRUMENT_KEEP_SLOWEST``).

Settings are read on every request (so ``override_settings`` works in tests). A
request is profiled on its own thread only, so several requests running at once in
a threaded server each get their own report (the C engine allows one Profiler per
thread at the same time). Writing a report never fails the request: errors are
logged on the ``pyinstrument.middleware`` logger.

The middleware is synchronous; under ASGI Django runs it in a worker thread, which
works, but an async view's own time is then not attributed (see docs/django.md).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict, Optional

from pyinstrument import Profiler
from pyinstrument._web import SlowestReports, path_for_filename, write_new_file
from pyinstrument.renderers.base import Renderer

logger = logging.getLogger("pyinstrument.middleware")

DEFAULT_FILENAME = "{total_time:.3f}s {path} {timestamp:.0f}.{ext}"
DEFAULT_URL_ARGUMENT = "profile"
DEFAULT_INTERVAL = 0.001


def _settings() -> Any:
    from django.conf import settings

    return settings


def _import_dotted(path: str) -> Any:
    from django.utils.module_loading import import_string

    return import_string(path)


def _callable_setting(name: str) -> Optional[Callable[..., Any]]:
    """A setting that holds a callable or the dotted path of one."""
    value = getattr(_settings(), name, None)
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        return _import_dotted(value)
    raise TypeError(f"{name} must be a callable or a dotted path to one, not {type(value).__name__}")


def default_show_callback(request: Any) -> bool:
    """Who may see ``?profile`` reports by default: everyone when DEBUG is on, otherwise
    only authenticated staff users (requests without a ``user`` are refused)."""
    if getattr(_settings(), "DEBUG", False):
        return True
    user = getattr(request, "user", None)
    if user is None:
        return False
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False))


class ProfilerMiddleware:
    """Profiles requests: ``?profile`` shows the HTML report (to those allowed), and
    ``PYINSTRUMENT_PROFILE_DIR`` saves a report per request. See the module docstring."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._slowest: Dict[int, SlowestReports] = {}  # by PYINSTRUMENT_KEEP_SLOWEST (settings can change)
        if hasattr(_settings(), "PYINSTRUMENT_USE_SIGNAL"):
            logger.warning(
                "PYINSTRUMENT_USE_SIGNAL is ignored: this pyinstrument samples from a native "
                "thread and needs no signals; the setting can be removed"
            )

    # -- per request ----------------------------------------------------------------------

    def __call__(self, request: Any) -> Any:
        settings = _settings()
        url_argument = getattr(settings, "PYINSTRUMENT_URL_ARGUMENT", DEFAULT_URL_ARGUMENT)
        profile_dir = getattr(settings, "PYINSTRUMENT_PROFILE_DIR", None)
        show_report = bool(url_argument) and url_argument in request.GET and self._may_show(request)
        if not show_report and not profile_dir:
            return self.get_response(request)

        interval = float(getattr(settings, "PYINSTRUMENT_INTERVAL", DEFAULT_INTERVAL))
        profiler = Profiler(interval=interval, async_mode="disabled")
        # the path only: the query string may carry tokens, which must not reach reports
        profiler.start(target_description=f"{request.method} {request.path}")
        try:
            response = self.get_response(request)
        finally:
            session = profiler.stop()

        if profile_dir:
            self._save_report(request, session, str(profile_dir))
        if show_report:
            from django.http import HttpResponse

            from pyinstrument.renderers.html import HTMLRenderer

            return HttpResponse(HTMLRenderer().render(session), content_type="text/html; charset=utf-8")
        return response

    def _may_show(self, request: Any) -> bool:
        try:
            callback = _callable_setting("PYINSTRUMENT_SHOW_CALLBACK") or default_show_callback
            return bool(callback(request))
        except Exception:
            logger.exception("PYINSTRUMENT_SHOW_CALLBACK failed; the profile is not shown")
            return False

    # -- saving ---------------------------------------------------------------------------

    def _save_report(self, request: Any, session: Any, profile_dir: str) -> None:
        settings = _settings()
        duration = session.duration
        threshold = getattr(settings, "PYINSTRUMENT_SLOW_THRESHOLD", None)
        if threshold is not None and duration <= float(threshold):
            return
        keep = getattr(settings, "PYINSTRUMENT_KEEP_SLOWEST", None)
        slowest = self._slowest.setdefault(int(keep), SlowestReports(int(keep))) if keep is not None else None
        endpoint = (request.method, request.path)
        if slowest is not None and not slowest.admits(endpoint, duration):
            return
        try:
            renderer = self._renderer()
            report = renderer.render(session)
            data = report.encode("utf-8", "surrogateescape") if isinstance(report, str) else bytes(report)
            file_name = self._file_name(request, session, renderer)
            written = write_new_file(os.path.join(profile_dir, file_name), data)
        except Exception:
            logger.exception("could not write the profile of %s %s", request.method, request.path)
            return
        if slowest is not None:
            for old in slowest.add(endpoint, duration, written):
                try:
                    os.remove(old)
                except OSError:
                    logger.warning("could not delete %s (no longer among the slowest)", old, exc_info=True)

    def _renderer(self) -> Renderer:
        path = getattr(_settings(), "PYINSTRUMENT_PROFILE_DIR_RENDERER", None)
        if path is None:
            from pyinstrument.renderers.html import HTMLRenderer

            return HTMLRenderer()
        renderer_class = _import_dotted(path) if isinstance(path, str) else path
        return renderer_class()

    def _file_name(self, request: Any, session: Any, renderer: Renderer) -> str:
        callback = _callable_setting("PYINSTRUMENT_FILENAME_CALLBACK")
        if callback is not None:
            return str(callback(request, session, renderer))
        template = getattr(_settings(), "PYINSTRUMENT_FILENAME", DEFAULT_FILENAME)
        return template.format(
            total_time=session.duration,
            path=path_for_filename(request.path),
            method=path_for_filename(request.method, 20),
            timestamp=session.start_time or time.time(),
            ext=renderer.output_file_extension,
        )
