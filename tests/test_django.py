"""pyinstrument.middleware.ProfilerMiddleware in a real Django project served over HTTP.

Django is configured once for this process (a project with no apps, its URLconf a
module made here); each test serves Django's WSGI handler with wsgiref on a free
localhost port under ``override_settings`` and talks to it with urllib.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.urls import path  # noqa: E402

PAGE_TEXT = "the page itself"
APP_MODULE = "pyinstrument_django_test_project"


def spend_time_in_distinctive_view_helper(seconds: float) -> None:
    """Busy for ``seconds`` (measured, not slept: a sleeping thread has no samples)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def distinctive_profiled_view(request: Any) -> HttpResponse:
    spend_time_in_distinctive_view_helper(float(request.GET.get("work", "0.2")))
    return HttpResponse(PAGE_TEXT)


def other_endpoint_view(request: Any) -> HttpResponse:
    spend_time_in_distinctive_view_helper(float(request.GET.get("work", "0.2")))
    return HttpResponse(PAGE_TEXT)


class StaffUserStub:
    """Stands in for AuthenticationMiddleware: a staff user when ?staff is given."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        is_staff = "staff" in request.GET
        request.user = types.SimpleNamespace(is_authenticated=is_staff, is_staff=is_staff)
        return self.get_response(request)


def allow_when_header(request: Any) -> bool:
    return request.headers.get("X-Let-Me-Profile") == "yes"


# the project's URLconf and helpers must be importable by dotted path
project = types.ModuleType(APP_MODULE)
def route_view(request: Any, item: int) -> HttpResponse:
    """Answers the route its thread is labelled with for continuous profiles."""
    from pyinstrument import agent

    return HttpResponse(agent.current_route() or "(none)")


project.urlpatterns = [  # type: ignore[attr-defined]
    path("view/", distinctive_profiled_view),
    path("other/", other_endpoint_view),
    path("items/<int:item>/", route_view),
]
project.StaffUserStub = StaffUserStub  # type: ignore[attr-defined]
project.allow_when_header = allow_when_header  # type: ignore[attr-defined]
sys.modules[APP_MODULE] = project

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=APP_MODULE,
        SECRET_KEY="test only",
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        USE_TZ=True,
    )

PROFILER = "pyinstrument.middleware.ProfilerMiddleware"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(**overrides: Any) -> Iterator[str]:
    """Serve the project with ``overrides`` applied; yields the base URL."""
    from django.core.wsgi import get_wsgi_application

    overrides.setdefault("MIDDLEWARE", [PROFILER])
    with override_settings(**overrides):
        application = get_wsgi_application()  # loads the middleware: settings apply now
        server: WSGIServer = make_server("127.0.0.1", 0, application, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def fetch(url: str, headers: Dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode("utf-8")


def is_report(body: str) -> bool:
    return body.lstrip().lower().startswith("<!doctype html") and "distinctive_profiled_view" in body


def reports_in(folder: str) -> List[str]:
    return sorted(os.listdir(folder))


def seconds_in_name(name: str) -> float:
    return float(re.match(r"([0-9.]+)s ", name).group(1))  # type: ignore[union-attr]


# -- ?profile ----------------------------------------------------------------------------


def test_profile_argument_is_refused_by_default_in_production() -> None:
    with serve() as base:
        body = fetch(f"{base}/view/?profile")
    assert body == PAGE_TEXT


def test_without_the_argument_the_page_is_served() -> None:
    with serve(DEBUG=True) as base:
        assert fetch(f"{base}/view/") == PAGE_TEXT


def test_profile_argument_shows_the_report_with_debug_on() -> None:
    with serve(DEBUG=True) as base:
        body = fetch(f"{base}/view/?profile")
    assert is_report(body)
    assert "spend_time_in_distinctive_view_helper" in body


def test_profile_argument_name_is_configurable() -> None:
    with serve(DEBUG=True, PYINSTRUMENT_URL_ARGUMENT="why_slow") as base:
        assert fetch(f"{base}/view/?profile") == PAGE_TEXT
        assert is_report(fetch(f"{base}/view/?why_slow=1"))


def test_staff_users_see_the_report_and_others_do_not() -> None:
    middleware = [f"{APP_MODULE}.StaffUserStub", PROFILER]
    with serve(MIDDLEWARE=middleware) as base:
        assert is_report(fetch(f"{base}/view/?profile&staff"))
        assert fetch(f"{base}/view/?profile") == PAGE_TEXT


def test_show_callback_by_dotted_path_decides() -> None:
    with serve(PYINSTRUMENT_SHOW_CALLBACK=f"{APP_MODULE}.allow_when_header") as base:
        assert is_report(fetch(f"{base}/view/?profile", {"X-Let-Me-Profile": "yes"}))
        assert fetch(f"{base}/view/?profile") == PAGE_TEXT


def test_show_callback_can_refuse_even_with_debug_on() -> None:
    with serve(DEBUG=True, PYINSTRUMENT_SHOW_CALLBACK=lambda request: False) as base:
        assert fetch(f"{base}/view/?profile") == PAGE_TEXT


def test_a_failing_show_callback_refuses_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: Any) -> bool:
        raise RuntimeError("callback bug")

    with serve(DEBUG=True, PYINSTRUMENT_SHOW_CALLBACK=broken) as base:
        assert fetch(f"{base}/view/?profile") == PAGE_TEXT
    assert "PYINSTRUMENT_SHOW_CALLBACK failed" in caplog.text


# -- PYINSTRUMENT_PROFILE_DIR -----------------------------------------------------------------


def test_profile_dir_gets_one_report_per_request(tmp_path: Any) -> None:
    with serve(PYINSTRUMENT_PROFILE_DIR=str(tmp_path)) as base:
        assert fetch(f"{base}/view/") == PAGE_TEXT
        assert fetch(f"{base}/other/") == PAGE_TEXT
        assert fetch(f"{base}/view/") == PAGE_TEXT
    names = reports_in(str(tmp_path))
    assert len(names) == 3
    assert sum("_view_" in name for name in names) == 2
    assert sum("_other_" in name for name in names) == 1
    for name in names:
        assert name.endswith(".html")
        assert seconds_in_name(name) > 0
        content = (tmp_path / name).read_text(encoding="utf-8")
        assert "spend_time_in_distinctive_view_helper" in content
    view_report = next(n for n in names if "_view_" in n)
    assert "distinctive_profiled_view" in (tmp_path / view_report).read_text(encoding="utf-8")


def test_a_show_callback_also_chooses_the_requests_the_profile_dir_records(tmp_path: Any) -> None:
    # as upstream's middleware: with a callback set, only the requests it allows are recorded
    with serve(
        PYINSTRUMENT_PROFILE_DIR=str(tmp_path), PYINSTRUMENT_SHOW_CALLBACK=f"{APP_MODULE}.allow_when_header"
    ) as base:
        assert fetch(f"{base}/view/") == PAGE_TEXT
        assert fetch(f"{base}/other/", {"X-Let-Me-Profile": "yes"}) == PAGE_TEXT
    (name,) = reports_in(str(tmp_path))
    assert "_other_" in name


def test_old_style_hooks_profile_the_request_as_upstreams_do(tmp_path: Any) -> None:
    # code (and upstream's tests) that call process_request/process_response directly
    from pyinstrument.middleware import ProfilerMiddleware

    with override_settings(PYINSTRUMENT_PROFILE_DIR=str(tmp_path)):
        middleware = ProfilerMiddleware(lambda request: None)
        request = get_request("/view/")
        middleware.process_request(request)
        assert request.profiler.is_running
        assert middleware.process_response(request, "the response") == "the response"
        assert not request.profiler.is_running
    assert len(reports_in(str(tmp_path))) == 1


def test_profile_dir_with_another_renderer_and_name_template(tmp_path: Any) -> None:
    with serve(
        PYINSTRUMENT_PROFILE_DIR=str(tmp_path),
        PYINSTRUMENT_PROFILE_DIR_RENDERER="pyinstrument.renderers.ConsoleRenderer",
        PYINSTRUMENT_FILENAME="{method}-{path}.{ext}",
    ) as base:
        fetch(f"{base}/view/?x=1")
        fetch(f"{base}/view/?x=2")
    names = reports_in(str(tmp_path))
    assert names == ["GET-_view_ (2).txt", "GET-_view_.txt"]
    assert "distinctive_profiled_view" in (tmp_path / names[0]).read_text(encoding="utf-8")


def test_filename_callback(tmp_path: Any) -> None:
    def name_it(request: Any, session: Any, renderer: Any) -> str:
        return f"custom-{request.GET['n']}.{renderer.output_file_extension}"

    with serve(PYINSTRUMENT_PROFILE_DIR=str(tmp_path), PYINSTRUMENT_FILENAME_CALLBACK=name_it) as base:
        fetch(f"{base}/view/?n=7")
    assert reports_in(str(tmp_path)) == ["custom-7.html"]


def test_hostile_paths_make_plain_file_names(tmp_path: Any) -> None:
    with serve(PYINSTRUMENT_PROFILE_DIR=str(tmp_path), PYINSTRUMENT_FILENAME="{path}.{ext}") as base:
        # not routed (404), but still profiled and saved
        for hostile in ("/../..%2F..%2Fetc%2Fpasswd%00%0A%E2%9C%93/", "/a%20b'%22c;d=e%E2%80%AE/", "/%E7%95%8C" * 100):
            with pytest.raises(urllib.error.HTTPError):
                fetch(base + hostile)
    names = reports_in(str(tmp_path))
    assert len(names) == 3, names
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+\.html", name) and ".." not in name, name
        assert len(name) <= 255


def test_write_failures_are_logged_not_raised(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("x")
    with serve(PYINSTRUMENT_PROFILE_DIR=str(blocker / "reports")) as base:
        assert fetch(f"{base}/view/") == PAGE_TEXT
    assert "cannot write a report into" in caplog.text


def test_slow_threshold_keeps_only_slow_requests(tmp_path: Any) -> None:
    # 0.5 s apart: on a loaded machine a request that does nothing was seen taking 0.54 s
    with serve(PYINSTRUMENT_PROFILE_DIR=str(tmp_path), PYINSTRUMENT_SLOW_THRESHOLD=1.0) as base:
        fetch(f"{base}/view/?work=0.001")
        fetch(f"{base}/view/?work=1.5")
        fetch(f"{base}/other/?work=0.001")
    names = reports_in(str(tmp_path))
    assert len(names) == 1
    assert "_view_" in names[0] and seconds_in_name(names[0]) >= 1.5


def test_keep_slowest_keeps_the_n_slowest_per_endpoint(tmp_path: Any) -> None:
    with serve(PYINSTRUMENT_PROFILE_DIR=str(tmp_path), PYINSTRUMENT_KEEP_SLOWEST=2) as base:
        for work in (0.01, 1.0, 0.01, 0.7, 0.01):
            fetch(f"{base}/view/?work={work}")
        fetch(f"{base}/other/?work=0.01")
    names = reports_in(str(tmp_path))
    view_names = [n for n in names if "_view_" in n]
    assert len(view_names) == 2
    assert sorted(seconds_in_name(n) for n in view_names)[0] >= 0.7  # the 1 s and 0.7 s ones
    assert len([n for n in names if "_other_" in n]) == 1


def test_use_signal_setting_is_accepted_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pyinstrument.middleware"):
        with serve(DEBUG=True, PYINSTRUMENT_USE_SIGNAL=False) as base:
            assert is_report(fetch(f"{base}/view/?profile"))
            assert fetch(f"{base}/view/") == PAGE_TEXT
    warnings = [r for r in caplog.records if "PYINSTRUMENT_USE_SIGNAL" in r.getMessage()]
    assert len(warnings) == 1


def test_overlapping_requests_are_each_profiled(tmp_path: Any) -> None:
    """Two requests at once in a threaded server: each report holds its own view only."""
    from socketserver import ThreadingMixIn

    class ThreadedServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    from django.core.wsgi import get_wsgi_application

    with override_settings(MIDDLEWARE=[PROFILER], PYINSTRUMENT_PROFILE_DIR=str(tmp_path)):
        server = make_server("127.0.0.1", 0, get_wsgi_application(), ThreadedServer, _QuietHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            clients = [
                threading.Thread(target=fetch, args=(f"{base}/{endpoint}/?work=0.3",))
                for endpoint in ("view", "other")
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
    names = reports_in(str(tmp_path))
    assert len(names) == 2
    for name in names:
        content = (tmp_path / name).read_text(encoding="utf-8")
        mine, theirs = (
            ("distinctive_profiled_view", "other_endpoint_view")
            if "_view_" in name
            else ("other_endpoint_view", "distinctive_profiled_view")
        )
        assert mine in content and theirs not in content


# -- in-process requests ------------------------------------------------------------------


def plain_view(request: Any) -> HttpResponse:
    """A view that never looks at the query string."""
    return HttpResponse(PAGE_TEXT)


def profiled(view: Any = distinctive_profiled_view) -> Any:
    """The profiling middleware around ``view``, as Django makes it at start-up."""
    from pyinstrument.middleware import ProfilerMiddleware

    return ProfilerMiddleware(view)


def get_request(path: str = "/view/?profile", **meta: Any) -> Any:
    from django.test import RequestFactory

    return RequestFactory().get(path, **meta)


def call(path: str = "/view/?profile", **meta: Any) -> HttpResponse:
    """One request through a new middleware around distinctive_profiled_view."""
    return profiled()(get_request(path, **meta))


def page_and_report(response: HttpResponse) -> str:
    assert response.status_code == 200
    return response.content.decode("utf-8")


PROXY_HEADERS_SEEN_IN_THE_WILD = [
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Real-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "Fastly-Client-IP",
    "Via",
]


@pytest.mark.parametrize("header", PROXY_HEADERS_SEEN_IN_THE_WILD)
def test_with_debug_on_a_proxy_header_refuses_the_report(header: str) -> None:
    meta_key = "HTTP_" + header.upper().replace("-", "_")
    with override_settings(DEBUG=True):
        assert page_and_report(call(**{meta_key: "203.0.113.5"})) == PAGE_TEXT
        assert is_report(page_and_report(call()))  # the header made the difference


def test_staff_users_see_the_report_through_a_proxy() -> None:
    """Staff is who the user is, not where the request comes from: a proxy changes nothing."""
    request = get_request(HTTP_X_FORWARDED_FOR="203.0.113.5")
    request.user = types.SimpleNamespace(is_authenticated=True, is_staff=True)
    assert is_report(page_and_report(profiled()(request)))


@pytest.mark.parametrize(
    "setting, value",
    [
        ("PYINSTRUMENT_KEEP_SLOWEST", "abc"),
        ("PYINSTRUMENT_KEEP_SLOWEST", 0),
        ("PYINSTRUMENT_SLOW_THRESHOLD", "abc"),
        ("PYINSTRUMENT_INTERVAL", "0"),
        ("PYINSTRUMENT_INTERVAL", "fast"),
        ("PYINSTRUMENT_PROFILE_DIR", 42),
        ("PYINSTRUMENT_FILENAME", "{nope}.{ext}"),
        ("PYINSTRUMENT_PROFILE_DIR_RENDERER", "no_such_module.Renderer"),
        ("PYINSTRUMENT_SHOW_CALLBACK", "no_such_module.may_profile"),
        ("PYINSTRUMENT_FILENAME_CALLBACK", f"{APP_MODULE}.no_such_function"),
        ("PYINSTRUMENT_URL_ARGUMENT", 5),
    ],
)
def test_a_setting_that_cannot_be_used_stops_the_start_up(tmp_path: Any, setting: str, value: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.core.wsgi import get_wsgi_application

    overrides = {"PYINSTRUMENT_PROFILE_DIR": str(tmp_path), setting: value, "MIDDLEWARE": [PROFILER]}
    with override_settings(**overrides):
        with pytest.raises(ImproperlyConfigured) as raised:
            get_wsgi_application()  # what a server does when it starts
    message = str(raised.value)
    assert message.startswith(setting) and "\n" not in message, message


def test_slow_only_settings_are_checked_without_a_profile_dir() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(PYINSTRUMENT_KEEP_SLOWEST="abc"):
        with pytest.raises(ImproperlyConfigured, match="PYINSTRUMENT_KEEP_SLOWEST"):
            call()
    with override_settings(PYINSTRUMENT_KEEP_SLOWEST="3", PYINSTRUMENT_SLOW_THRESHOLD="0.5"):
        assert page_and_report(call()) == PAGE_TEXT  # fine, and nothing to do


def warning_lines(caplog: pytest.LogCaptureFixture) -> List[str]:
    records = [r for r in caplog.records if r.name.startswith("pyinstrument") and r.levelno >= logging.WARNING]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records), records
    return [r.getMessage() for r in records]


def test_a_full_disk_leaves_no_file_and_the_page_is_served(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def disk_full(descriptor: int, data: Any) -> int:
        if descriptor > 2 and stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(descriptor, data)

    with override_settings(PYINSTRUMENT_PROFILE_DIR=str(tmp_path), PYINSTRUMENT_KEEP_SLOWEST=2):
        with caplog.at_level(logging.WARNING, logger="pyinstrument"):
            middleware = profiled()
            monkeypatch.setattr(os, "write", disk_full)
            pages = [page_and_report(middleware(get_request("/view/"))) for _ in range(3)]
            monkeypatch.undo()
    assert pages == [PAGE_TEXT] * 3
    assert os.listdir(tmp_path) == []
    (warning,) = warning_lines(caplog)
    assert "No space left on device" in warning


def test_a_report_that_fails_to_render_gives_the_page(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyinstrument.renderers.html import HTMLRenderer

    def broken(self: Any, session: Any) -> str:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(HTMLRenderer, "render", broken)
    with override_settings(DEBUG=True), caplog.at_level(logging.WARNING, logger="pyinstrument"):
        assert page_and_report(call()) == PAGE_TEXT
    (warning,) = warning_lines(caplog)
    assert "renderer bug" in warning


def test_a_profiler_that_cannot_start_leaves_the_request_unprofiled(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyinstrument.profiler import Profiler

    def cannot_start(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("pyinstrument cannot profile here: no sampler")

    monkeypatch.setattr(Profiler, "start", cannot_start)
    with override_settings(DEBUG=True, PYINSTRUMENT_PROFILE_DIR=str(tmp_path)):
        with caplog.at_level(logging.WARNING, logger="pyinstrument"):
            assert page_and_report(call()) == PAGE_TEXT
    assert os.listdir(tmp_path) == []
    (warning,) = warning_lines(caplog)
    assert "no sampler" in warning


def test_too_many_query_fields_are_the_views_business() -> None:
    """Django refuses to parse more than DATA_UPLOAD_MAX_NUMBER_FIELDS query fields; a
    view that never reads them answers normally, with the middleware too."""
    query = "&".join(f"f{n}=1" for n in range(1500))
    assert page_and_report(profiled(plain_view)(get_request(f"/plain/?{query}"))) == PAGE_TEXT


# -- continuous profiles: each request's route -------------------------------------------


def test_a_request_is_labelled_with_its_url_pattern_while_profiles_are_pushed(monkeypatch) -> None:
    from pyinstrument import agent

    with serve() as base:
        assert fetch(f"{base}/items/7/") == "(none)"  # nothing pushed: no label
        monkeypatch.setattr(agent, "pushing", lambda: True)
        assert fetch(f"{base}/items/7/") == "GET items/<int:item>/"
        assert fetch(f"{base}/items/8/") == "GET items/<int:item>/"
