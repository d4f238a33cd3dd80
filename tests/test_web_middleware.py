"""The WSGI (Flask) and ASGI (FastAPI) profiling middlewares, served over real HTTP on
localhost: ?profile reports, reports written per request, slow-only capture, refusals,
concurrent requests."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import ipaddress
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, List, Tuple

import pytest
from helpers import spin

from pyinstrument.web.common import path_for_filename
from pyinstrument.asgi import ProfilerMiddleware as ASGIProfilerMiddleware
from pyinstrument.wsgi import ProfilerMiddleware as WSGIProfilerMiddleware
from pyinstrument.wsgi import RequestInfo, is_local_request

try:
    import flask
    from werkzeug.serving import make_server
except ImportError:
    flask = make_server = None  # type: ignore[assignment]

needs_flask = pytest.mark.skipif(flask is None, reason="flask is not installed")

# no proxy from the environment between the tests and localhost
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> Tuple[int, str, str]:
    """(status, content type, body text) of a GET."""
    with _opener.open(url, timeout=30) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode("utf-8")


def report_files(folder: Any) -> List[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


#: how long a slow request takes, and the threshold it is over: 0.5 s apart, because on
#: a loaded machine a request that does nothing was seen taking 0.54 s
SLOW = 1.5
THRESHOLD = 1.0


def seconds_in_name(name: str) -> float:
    """The total time the default file name pattern starts with."""
    match = re.match(r"(\d+\.\d+)s ", name)
    assert match, name
    return float(match.group(1))


# -- Flask -----------------------------------------------------------------------------


def flask_app() -> Any:
    app = flask.Flask("profiled_flask_app")

    @app.route("/compute")
    def flask_compute_view() -> str:
        spin(0.2)
        return "computed"

    @app.route("/fast")
    def flask_fast_view() -> str:
        return "fast"

    @app.route("/slow")
    def flask_slow_view() -> str:
        time.sleep(SLOW)
        return "slow"

    @app.route("/delay/<int:milliseconds>")
    def flask_delay_view(milliseconds: int) -> str:
        spin(milliseconds / 1000)
        return f"delayed {milliseconds}"

    @app.route("/stream")
    def flask_stream_view() -> Any:
        def chunks() -> Iterator[str]:
            for number in range(3):
                spin(0.01)
                yield f"chunk{number} "

        return flask.Response(chunks())

    return app


@contextlib.contextmanager
def serve_flask(**options: Any) -> Iterator[Tuple[str, WSGIProfilerMiddleware]]:
    """A threaded werkzeug server on a free port; yields (base URL, the middleware)."""
    app = flask_app()
    middleware = WSGIProfilerMiddleware(app.wsgi_app, **options)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", middleware
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@needs_flask
def test_flask_profile_query_returns_html_report() -> None:
    with serve_flask(show_callback=is_local_request) as (base, _):
        status, content_type, body = get(f"{base}/compute")
        assert (status, body) == (200, "computed")

        status, content_type, body = get(f"{base}/compute?profile")
        assert status == 200
        assert content_type.startswith("text/html")
        assert "<html" in body.lower() and "flask_compute_view" in body


@needs_flask
def test_flask_profile_query_refused_by_show_callback() -> None:
    seen: List[RequestInfo] = []

    def deny(request: RequestInfo) -> bool:
        seen.append(request)
        return False

    with serve_flask(show_callback=deny) as (base, _):
        status, _, body = get(f"{base}/compute?profile=1&x=y")
    assert (status, body) == (200, "computed")
    assert [(r.method, r.path, r.query_string, r.client) for r in seen] == [
        ("GET", "/compute", "profile=1&x=y", "127.0.0.1")
    ]
    assert "host" in seen[0].headers


def call_wsgi(app: Any, environ_extra: dict) -> Tuple[str, bytes]:
    """A direct WSGI call: (status, body)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/compute",
        "QUERY_STRING": "profile",
        "SERVER_NAME": "example.org",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        **environ_extra,
    }
    statuses: List[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return statuses[-1], body


def plain_wsgi_app(environ: dict, start_response: Any) -> List[bytes]:
    """A WSGI application without a framework: /compute runs for 0.2 s, /sleep sleeps SLOW s."""
    path = environ["PATH_INFO"]
    if path == "/compute":
        spin(0.2)
    elif path == "/sleep":
        time.sleep(SLOW)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"plain {path}".encode()]


def is_report(body: bytes) -> bool:
    """An HTML report, not the application's page (whether it holds samples or not)."""
    return body.lstrip().lower().startswith(b"<!doctype html")


def test_wsgi_profile_query_is_refused_to_everyone_by_default() -> None:
    app = WSGIProfilerMiddleware(plain_wsgi_app)
    for client in ("127.0.0.1", "::1", "203.0.113.5", None):
        environ = {"REMOTE_ADDR": client} if client else {}
        assert call_wsgi(app, environ) == ("200 OK", b"plain /compute"), client


def test_is_local_request_allows_only_local_unproxied_clients() -> None:
    app = WSGIProfilerMiddleware(plain_wsgi_app, show_callback=is_local_request)
    normal = ("200 OK", b"plain /compute")
    assert call_wsgi(app, {"REMOTE_ADDR": "203.0.113.5"}) == normal
    assert call_wsgi(app, {}) == normal
    for local in ("127.0.0.1", "::1"):
        status, body = call_wsgi(app, {"REMOTE_ADDR": local})
        assert status == "200 OK" and is_report(body) and b"plain_wsgi_app" in body


#: headers that proxies, load balancers and CDNs add (nginx, Apache, HAProxy, Envoy,
#: Cloudflare, Akamai, Fastly, AWS, Azure, Google, RFC 7239, RFC 7230's Via)
PROXY_HEADERS_SEEN_IN_THE_WILD = [
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Forwarded-Server",
    "X-Original-Forwarded-For",
    "X-Real-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "Fastly-Client-IP",
    "X-Envoy-External-Address",
    "X-Azure-ClientIP",
    "Via",
]


@pytest.mark.parametrize("header", PROXY_HEADERS_SEEN_IN_THE_WILD)
def test_any_proxy_header_refuses_the_report_to_a_local_client(header: str) -> None:
    wsgi = WSGIProfilerMiddleware(plain_wsgi_app, show_callback=is_local_request)
    local = {"REMOTE_ADDR": "127.0.0.1", "PATH_INFO": "/quick"}
    wsgi_key = "HTTP_" + header.upper().replace("-", "_")
    assert call_wsgi(wsgi, {**local, wsgi_key: "203.0.113.5"}) == ("200 OK", b"plain /quick")
    assert is_report(call_wsgi(wsgi, local)[1])  # the header made the difference

    asgi = ASGIProfilerMiddleware(plain_asgi_app, show_callback=is_local_request)
    proxied = asyncio.run(call_asgi(asgi, path="/quick", headers=[(header.lower().encode(), b"203.0.113.5")]))
    assert proxied == (200, b"plain /quick")
    assert is_report(asyncio.run(call_asgi(asgi, path="/quick"))[1])


def from_the_office(request: RequestInfo) -> bool:
    """docs/web.md's example of a trust rule for requests through nginx on this machine."""
    if request.client != "127.0.0.1":
        return False
    # nginx appends the address it saw: earlier entries are whatever the client sent
    visitor = request.headers.get("x-forwarded-for", "").split(",")[-1].strip()
    try:
        return ipaddress.ip_address(visitor) in ipaddress.ip_network("203.0.113.0/24")
    except ValueError:
        return False


def test_a_show_callback_can_allow_reports_through_a_proxy() -> None:
    app = WSGIProfilerMiddleware(plain_wsgi_app, show_callback=from_the_office)

    def through_nginx(forwarded_for: str) -> Tuple[str, bytes]:
        return call_wsgi(
            app, {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": forwarded_for, "PATH_INFO": "/quick"}
        )

    assert is_report(through_nginx("203.0.113.7")[1])
    assert is_report(through_nginx("198.51.100.1, 203.0.113.7")[1])
    assert through_nginx("203.0.113.7, 198.51.100.1") == ("200 OK", b"plain /quick")  # a forged first entry


def test_plain_wsgi_server_with_slow_threshold(tmp_path: Any) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server as make_wsgiref_server

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    middleware = WSGIProfilerMiddleware(
        plain_wsgi_app, profile_dir=tmp_path, slow_threshold=THRESHOLD, show_callback=is_local_request
    )
    server = make_wsgiref_server("127.0.0.1", 0, middleware, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert get(f"{base}/compute")[2] == "plain /compute"
        assert get(f"{base}/sleep")[2] == "plain /sleep"
        assert "plain_wsgi_app" in get(f"{base}/compute?profile")[2]
        assert middleware.wait_for_reports(30)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    names = report_files(tmp_path)
    assert len(names) == 1 and "_sleep" in names[0] and seconds_in_name(names[0]) >= SLOW, names


async def plain_asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI application without a framework; it records the connection types it sees."""
    seen_types.append(scope["type"])
    if scope["type"] != "http":
        return
    if scope["path"] == "/compute":
        spin(0.2)
    elif scope["path"] != "/quick":
        await asyncio.sleep(0.1)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"plain {scope['path']}".encode()})


seen_types: List[str] = []


async def call_asgi(app: Any, scope_type: str = "http", path: str = "/compute", query: bytes = b"profile",
                    client: Any = ("127.0.0.1", 5000), headers: Any = ()) -> Tuple[int, bytes]:
    """A direct ASGI call: (status, body)."""
    scope = {"type": scope_type, "method": "GET", "path": path, "query_string": query, "headers": list(headers),
             "client": client}
    sent: List[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if scope_type != "http":
        return 0, b""
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_plain_asgi_app_direct_calls(tmp_path: Any) -> None:
    app = ASGIProfilerMiddleware(plain_asgi_app, profile_dir=tmp_path, keep_slowest=2, show_callback=is_local_request)

    async def scenario() -> List[Tuple[int, bytes]]:
        results = [
            await call_asgi(app, client=("203.0.113.5", 5000)),  # remote: the normal response
            await call_asgi(app, client=None),
            await call_asgi(app, client=("::1", 5000)),  # local: the report
        ]
        await call_asgi(app, "lifespan")
        await call_asgi(app, "websocket")
        results += await asyncio.gather(*(call_asgi(app, path="/wait", query=b"") for _ in range(4)))
        return results

    del seen_types[:]
    results = asyncio.run(scenario())
    assert results[:2] == [(200, b"plain /compute")] * 2
    assert results[2][0] == 200 and b"plain_asgi_app" in results[2][1]
    assert results[3:] == [(200, b"plain /wait")] * 4
    assert seen_types.count("lifespan") == 1 and seen_types.count("websocket") == 1
    assert app.wait_for_reports(30)
    names = report_files(tmp_path)
    assert len([n for n in names if "_compute" in n]) == 2, names  # 3 requests, keep_slowest=2
    assert len([n for n in names if "_wait" in n]) == 2, names


def test_is_local_request() -> None:
    def request(client: Any, **headers: str) -> RequestInfo:
        return RequestInfo("GET", "/", "", headers, client)

    assert is_local_request(request("127.0.0.1"))
    assert is_local_request(request("127.0.0.2"))
    assert is_local_request(request("::1"))
    assert is_local_request(request("::ffff:127.0.0.1"))
    assert not is_local_request(request("10.0.0.1"))
    assert not is_local_request(request("localhost.evil.example"))
    assert not is_local_request(request(None))
    assert not is_local_request(request("127.0.0.1", forwarded="for=1.2.3.4"))
    assert not is_local_request(request("127.0.0.1", **{"x-forwarded-anything": "1"}))


@needs_flask
def test_flask_profile_dir_writes_a_report_per_request(tmp_path: Any) -> None:
    folder = tmp_path / "profiles" / "nested"  # created on demand
    with serve_flask(profile_dir=folder) as (base, middleware):
        assert get(f"{base}/compute")[2] == "computed"
        assert get(f"{base}/stream")[2] == "chunk0 chunk1 chunk2 "
        assert middleware.wait_for_reports(30)
    names = report_files(folder)
    assert len(names) == 2, names
    compute = next(n for n in names if "_compute" in n)
    stream = next(n for n in names if "_stream" in n)
    assert compute.endswith(".html") and stream.endswith(".html")
    assert seconds_in_name(compute) >= 0.2
    assert "flask_compute_view" in (folder / compute).read_text("utf-8")
    # the streamed body is produced after the view returned: still in the profile
    assert "chunks" in (folder / stream).read_text("utf-8")


@needs_flask
def test_flask_filename_callback_and_renderer_name(tmp_path: Any) -> None:
    def name_report(request: RequestInfo, session: Any, renderer: Any) -> str:
        return f"{request.method}-{path_for_filename(request.path)}.{renderer.output_file_extension}"

    with serve_flask(profile_dir=tmp_path, renderer="text", filename_callback=name_report) as (base, middleware):
        get(f"{base}/compute")
        assert middleware.wait_for_reports(30)
    assert report_files(tmp_path) == ["GET-_compute.txt"]
    assert "flask_compute_view" in (tmp_path / "GET-_compute.txt").read_text("utf-8")


@needs_flask
def test_flask_slow_threshold_keeps_only_slow_requests(tmp_path: Any) -> None:
    with serve_flask(profile_dir=tmp_path, slow_threshold=THRESHOLD) as (base, middleware):
        assert get(f"{base}/fast")[2] == "fast"
        assert get(f"{base}/slow")[2] == "slow"
        assert get(f"{base}/fast")[2] == "fast"
        assert middleware.wait_for_reports(30)
    names = report_files(tmp_path)
    assert len(names) == 1 and "_slow" in names[0], names
    assert seconds_in_name(names[0]) >= SLOW
    assert "flask_slow_view" in (tmp_path / names[0]).read_text("utf-8")


@needs_flask
def test_flask_keep_slowest_counts_each_path_separately(tmp_path: Any) -> None:
    with serve_flask(profile_dir=tmp_path, keep_slowest=2, filename="{method} {path} {total_time:.3f}.{ext}") as (
        base,
        middleware,
    ):
        for milliseconds in (60, 180, 20, 120):
            # each delay is in the path: a different endpoint each time
            assert get(f"{base}/delay/{milliseconds}")[2] == f"delayed {milliseconds}"
        get(f"{base}/fast")
        assert middleware.wait_for_reports(30)
    names = report_files(tmp_path)
    per_delay = {}
    for name in names:
        method, path, seconds = name.rsplit(".", 1)[0].split(" ")
        per_delay.setdefault(path, []).append(float(seconds))
    # each delay is its own endpoint (method + path): one report per path, all kept
    assert sorted(per_delay) == ["_delay_120", "_delay_180", "_delay_20", "_delay_60", "_fast"]


@needs_flask
def test_flask_keep_slowest_keeps_the_n_slowest(tmp_path: Any) -> None:
    app = flask.Flask("keep_slowest_app")

    @app.route("/work")
    def work_view() -> str:
        spin(float(flask.request.args["seconds"]))
        return "done"

    middleware = WSGIProfilerMiddleware(app.wsgi_app, profile_dir=tmp_path, keep_slowest=2)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for seconds in (0.01, 1.0, 0.01, 0.7):
            assert get(f"http://127.0.0.1:{server.server_port}/work?seconds={seconds}")[2] == "done"
        assert middleware.wait_for_reports(30)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    names = report_files(tmp_path)
    assert len(names) == 2, names
    assert sorted(seconds_in_name(n) for n in names)[0] >= 0.7  # the 1 s and 0.7 s ones
    assert all("_work" in n and "work_view" in (tmp_path / n).read_text("utf-8") for n in names)


@needs_flask
def test_flask_concurrent_requests_are_each_profiled(tmp_path: Any) -> None:
    with serve_flask(profile_dir=tmp_path, show_callback=is_local_request) as (base, middleware):
        urls = [f"{base}/delay/{100 + n}" for n in range(6)] + [f"{base}/compute?profile"] * 2
        with ThreadPoolExecutor(len(urls)) as pool:
            results = list(pool.map(get, urls))
        assert middleware.wait_for_reports(30)
    assert [r[2] for r in results[:6]] == [f"delayed {100 + n}" for n in range(6)]
    assert all(r[0] == 200 and "flask_compute_view" in r[2] for r in results[6:])
    names = report_files(tmp_path)
    assert len(names) == 8, names
    for n in range(6):
        (name,) = [name for name in names if f"_delay_{100 + n} " in name]
        assert seconds_in_name(name) >= 0.1
        text = (tmp_path / name).read_text("utf-8")
        assert "flask_delay_view" in text and "flask_compute_view" not in text


@needs_flask
def test_write_failure_is_logged_once_and_the_response_goes_out(tmp_path: Any, caplog: Any) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("in the way")
    with caplog.at_level(logging.DEBUG, logger="pyinstrument"):
        with serve_flask(profile_dir=not_a_folder) as (base, middleware):
            assert get(f"{base}/compute")[2] == "computed"
            assert get(f"{base}/fast")[2] == "fast"
            assert middleware.wait_for_reports(30)
    warnings = [r for r in caplog.records if r.name == "pyinstrument" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot write a report" in warnings[0].getMessage()
    assert not_a_folder.read_text() == "in the way"


def test_path_for_filename() -> None:
    for hostile in ("/../../etc/passwd", "/a/..%2f../b", "/x\\..\\y", '/<>:"|?*\x00\n', "/" + "é" * 300, "/\udcff"):
        safe = path_for_filename(hostile)
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", safe) and ".." not in safe, safe
    assert path_for_filename("/api/users/") == "_api_users_"
    # paths that differ only in what was replaced keep different names
    assert path_for_filename("/café") != path_for_filename("/cafè")


def wsgi_path(text: str) -> str:
    """A URL path as a WSGI server puts it in PATH_INFO: its UTF-8 bytes as latin-1."""
    return text.encode("utf-8").decode("latin-1")


def test_report_file_names_are_plain_and_short_whatever_the_path(tmp_path: Any) -> None:
    app = WSGIProfilerMiddleware(plain_wsgi_app, profile_dir=tmp_path)
    paths = ["/" + "界" * 100, "/" + "🔥" * 100, "/" + "界" * 99 + "世", "/a b'\"c;d=e\u202ef"]
    for path in paths:
        assert call_wsgi(app, {"PATH_INFO": wsgi_path(path), "QUERY_STRING": ""})[0] == "200 OK"
    names = report_files(tmp_path)
    assert len(names) == len(paths), names  # no report lost, none sharing a name
    for name in names:
        assert len(os.fsencode(name)) <= 255, name
        # the default pattern: "{total_time:.3f}s {path} {timestamp:.0f}.{ext}"
        assert re.fullmatch(r"\d+\.\d{3}s [A-Za-z0-9_.-]+ \d+\.html", name), name


def test_a_filename_pattern_of_only_the_path_gives_only_safe_characters(tmp_path: Any) -> None:
    app = WSGIProfilerMiddleware(plain_wsgi_app, profile_dir=tmp_path, filename="{path}.{ext}")
    call_wsgi(app, {"PATH_INFO": wsgi_path("/x y'\";=\u202e\u00e9\U0001f525/.."), "QUERY_STRING": ""})
    (name,) = report_files(tmp_path)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+\.html", name) and ".." not in name, name


def warning_lines(caplog: Any) -> List[str]:
    """The warnings on the pyinstrument logger, each checked to be one line without a
    traceback."""
    records = [r for r in caplog.records if r.name == "pyinstrument" and r.levelno >= logging.WARNING]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records), records
    return [r.getMessage() for r in records]


def test_a_failed_write_leaves_no_file_and_logs_one_line(tmp_path: Any, caplog: Any) -> None:
    """A disk that fills up during the write (the first write goes through in part, the
    next fails with ENOSPC): no file is left, with keep_slowest too."""
    real_write = os.write

    def write_until_the_disk_is_full(descriptor: int, data: Any) -> int:
        if descriptor > 2 and stat.S_ISREG(os.fstat(descriptor).st_mode):
            if os.fstat(descriptor).st_size == 0:
                return real_write(descriptor, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(descriptor, data)

    app = WSGIProfilerMiddleware(plain_wsgi_app, profile_dir=tmp_path, keep_slowest=2)
    quick = {"PATH_INFO": "/quick", "QUERY_STRING": ""}
    with caplog.at_level(logging.WARNING, logger="pyinstrument"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "write", write_until_the_disk_is_full)
            for _ in range(3):
                assert call_wsgi(app, quick) == ("200 OK", b"plain /quick")
    assert os.listdir(tmp_path) == []  # hidden temporary files included
    (warning,) = warning_lines(caplog)
    assert "No space left on device" in warning

    call_wsgi(app, quick)  # space again: reports are written
    assert len(report_files(tmp_path)) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE and SIGXFSZ")
def test_a_file_size_limit_leaves_no_empty_report_files(tmp_path: Any) -> None:
    """A real failed write: the process may write no file over 4 kB (its reports are
    larger), so every write fails with "File too large"."""
    script = """
import resource, signal, sys, logging, io
from pyinstrument.wsgi import ProfilerMiddleware

logging.basicConfig(format="%(levelname)s %(message)s")

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"page"]

middleware = ProfilerMiddleware(app, profile_dir=sys.argv[1], keep_slowest=2)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
for _ in range(3):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/page", "wsgi.input": io.BytesIO()}
    result = middleware(environ, lambda status, headers: print(status))
    print(b"".join(result).decode())
    result.close()
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == ["200 OK", "page"] * 3 + [""]
    assert os.listdir(tmp_path) == []
    warnings = done.stderr.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("WARNING") and "File too large" in warnings[0], warnings


@pytest.mark.parametrize(
    "option, value",
    [
        ("keep_slowest", "abc"),
        ("keep_slowest", 0),
        ("keep_slowest", 2.5),
        ("keep_slowest", True),
        ("slow_threshold", "abc"),
        ("slow_threshold", -1),
        ("slow_threshold", float("nan")),
        ("interval", "abc"),
        ("interval", 0),
        ("interval", None),
        ("profile_dir", 42),
        ("profile_dir", ""),
        ("profile_dir", "a\x00b"),
        ("filename", "{nope}.{ext}"),
        ("filename", "{total_time:d}"),
        ("url_argument", 5),
        ("renderer", "no-such-renderer"),
        ("renderer", 42),
        ("show_callback", "not a function"),
        ("filename_callback", 3),
    ],
)
def test_an_option_that_cannot_be_used_is_one_clear_error_at_construction(option: str, value: Any) -> None:
    options = {"profile_dir": "profiles", option: value}
    for middleware_class, app in ((WSGIProfilerMiddleware, plain_wsgi_app), (ASGIProfilerMiddleware, plain_asgi_app)):
        with pytest.raises(ValueError) as raised:
            middleware_class(app, **options)
        message = str(raised.value)
        assert message.startswith(option) and "\n" not in message, message


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="need profile_dir"):
        WSGIProfilerMiddleware(plain_wsgi_app, slow_threshold=0.1)  # no profile_dir to keep them in
    # numbers as strings (from environment variables) are numbers
    app = WSGIProfilerMiddleware(plain_wsgi_app, profile_dir="p", keep_slowest="5", slow_threshold="0.5")
    assert (app.profiling.keep_slowest, app.profiling.slow_threshold) == (5, 0.5)


class BrokenRenderer:
    output_file_extension = "html"

    def render(self, session: Any) -> str:
        raise RuntimeError("renderer bug")


def test_a_report_that_fails_to_render_gives_the_applications_response(tmp_path: Any, caplog: Any) -> None:
    options = dict(show_callback=is_local_request, renderer=BrokenRenderer(), profile_dir=tmp_path)
    wsgi = WSGIProfilerMiddleware(plain_wsgi_app, **options)
    asgi = ASGIProfilerMiddleware(plain_asgi_app, **options)
    with caplog.at_level(logging.WARNING, logger="pyinstrument"):
        assert call_wsgi(wsgi, {"REMOTE_ADDR": "127.0.0.1"}) == ("200 OK", b"plain /compute")
        assert asyncio.run(call_asgi(asgi)) == (200, b"plain /compute")
        assert asgi.wait_for_reports(30)
    assert report_files(tmp_path) == []
    assert all("renderer bug" in line for line in warning_lines(caplog))


def test_asgi_request_finishing_while_the_loop_shuts_down_is_not_broken(tmp_path: Any) -> None:
    """The loop's executor takes no more work (the server is shutting down): the report
    is written without it, and the request ends normally."""
    app = ASGIProfilerMiddleware(plain_asgi_app, profile_dir=tmp_path)

    async def scenario() -> Tuple[int, bytes]:
        await asyncio.get_running_loop().shutdown_default_executor()
        return await call_asgi(app, query=b"")

    assert asyncio.run(scenario()) == (200, b"plain /compute")
    assert len(report_files(tmp_path)) == 1


# -- FastAPI ---------------------------------------------------------------------------

try:
    import fastapi
    import uvicorn
except ImportError:
    fastapi = uvicorn = None  # type: ignore[assignment]

needs_fastapi = pytest.mark.skipif(fastapi is None, reason="fastapi and uvicorn are not installed")


def fastapi_app(events: List[str]) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        events.append("startup")
        yield
        events.append("shutdown")

    app = fastapi.FastAPI(lifespan=lifespan)

    @app.get("/compute")
    async def fastapi_compute_view() -> dict:
        spin(0.2)
        return {"result": "computed"}

    @app.get("/fast")
    async def fastapi_fast_view() -> dict:
        return {"result": "fast"}

    @app.get("/slow")
    async def fastapi_slow_view() -> dict:
        await asyncio.sleep(SLOW)
        return {"result": "slow"}

    @app.get("/threaded")
    def fastapi_threadpool_view() -> dict:
        spin(0.2)
        return {"result": "threaded"}

    # /alpha waits for /beta to do its work: made to overlap in one event loop
    overlap: dict = {}

    def events_in_loop() -> dict:
        if not overlap:
            overlap.update(alpha_waiting=asyncio.Event(), beta_done=asyncio.Event())
        return overlap

    @app.get("/alpha")
    async def alpha_view() -> dict:
        state = events_in_loop()
        alpha_work(0.05)
        state["alpha_waiting"].set()
        await state["beta_done"].wait()
        return {"result": "alpha"}

    @app.get("/beta")
    async def beta_view() -> dict:
        state = events_in_loop()
        await state["alpha_waiting"].wait()
        beta_work(0.15)
        state["beta_done"].set()
        return {"result": "beta"}

    return app


def alpha_work(seconds: float) -> None:
    spin(seconds)


def beta_work(seconds: float) -> None:
    spin(seconds)


@contextlib.contextmanager
def serve_fastapi(**options: Any) -> Iterator[Tuple[str, Any, List[str]]]:
    """uvicorn on a free port in a thread; yields (base URL, the middleware, lifespan events)."""
    from pyinstrument.asgi import ProfilerMiddleware

    events: List[str] = []
    middleware = ProfilerMiddleware(fastapi_app(events), **options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(middleware, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:  # startup is on another thread: nothing to wait on
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}", middleware, events
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@needs_fastapi
def test_fastapi_profile_query_returns_html_report() -> None:
    with serve_fastapi(show_callback=is_local_request) as (base, _, events):
        assert get(f"{base}/compute")[2] == '{"result":"computed"}'
        status, content_type, body = get(f"{base}/compute?profile")
        assert events == ["startup"]  # lifespan passed through
    assert events == ["startup", "shutdown"]
    assert status == 200 and content_type.startswith("text/html")
    assert "fastapi_compute_view" in body


@needs_fastapi
def test_fastapi_profile_query_refused_by_show_callback() -> None:
    seen: List[RequestInfo] = []

    def deny(request: RequestInfo) -> bool:
        seen.append(request)
        return False

    with serve_fastapi(show_callback=deny) as (base, _, _events):
        assert get(f"{base}/compute?profile") == (200, "application/json", '{"result":"computed"}')
    assert [(r.method, r.path, r.query_string, r.client) for r in seen] == [
        ("GET", "/compute", "profile", "127.0.0.1")
    ]


@needs_fastapi
def test_fastapi_slow_threshold_and_all_threads(tmp_path: Any) -> None:
    with serve_fastapi(profile_dir=tmp_path, slow_threshold=THRESHOLD) as (base, middleware, _):
        for path in ("/fast", "/slow"):
            assert get(base + path)[0] == 200
        assert middleware.wait_for_reports(30)
    names = report_files(tmp_path)
    assert len(names) == 1 and "_slow" in names[0] and seconds_in_name(names[0]) >= SLOW, names

    # a `def` route runs in a worker thread, in the request's context: followed there
    with serve_fastapi(show_callback=is_local_request) as (base, _, _events):
        assert "fastapi_threadpool_view" in get(f"{base}/threaded?profile")[2]
    with serve_fastapi(all_threads=True, show_callback=is_local_request) as (base, _, _events):
        assert "fastapi_threadpool_view" in get(f"{base}/threaded?profile")[2]


@needs_fastapi
def test_fastapi_keep_slowest_and_concurrent_requests(tmp_path: Any) -> None:
    with serve_fastapi(profile_dir=tmp_path, keep_slowest=2, show_callback=is_local_request) as (base, middleware, _):
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(get, [f"{base}/slow"] * 4 + [f"{base}/compute?profile"] * 2))
        assert middleware.wait_for_reports(30)
    assert [r[2] for r in results[:4]] == ['{"result":"slow"}'] * 4
    assert all(r[0] == 200 and "fastapi_compute_view" in r[2] for r in results[4:])
    names = report_files(tmp_path)
    assert len([n for n in names if "_slow" in n]) == 2, names
    assert len([n for n in names if "_compute" in n]) == 2, names


@needs_fastapi
def test_fastapi_concurrent_requests_in_one_loop_do_not_mix(tmp_path: Any) -> None:
    with serve_fastapi(profile_dir=tmp_path, renderer="text") as (base, middleware, _):
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(get, [f"{base}/alpha", f"{base}/beta"]))
        assert middleware.wait_for_reports(30)
    assert [r[2] for r in results] == ['{"result":"alpha"}', '{"result":"beta"}']
    (alpha_name,) = [n for n in report_files(tmp_path) if "_alpha" in n]
    (beta_name,) = [n for n in report_files(tmp_path) if "_beta" in n]
    alpha = (tmp_path / alpha_name).read_text()
    beta = (tmp_path / beta_name).read_text()
    # each report holds its own request's work; alpha's wait for beta is [await]
    assert "alpha_work" in alpha and "beta_work" not in alpha, alpha
    assert "beta_work" in beta and "alpha_work" not in beta, beta
    waited = re.search(r"(\d+\.\d+) \[await\]", alpha)
    assert waited and float(waited.group(1)) >= 0.1, alpha


def route_answering_app(environ: dict, start_response: Any) -> List[bytes]:
    """Answers the route its thread is labelled with for continuous profiles."""
    from pyinstrument import agent

    start_response("200 OK", [("Content-Type", "text/plain")])
    return [(agent.current_route() or "(none)").encode()]


def test_wsgi_requests_are_labelled_with_their_route_while_profiles_are_pushed(monkeypatch) -> None:
    from pyinstrument import agent

    app = WSGIProfilerMiddleware(route_answering_app)
    path = {"PATH_INFO": "/users/42/orders/6f1c2d3e4a5b6c7d8e9f"}
    assert call_wsgi(app, path)[1] == b"(none)"  # nothing pushed: no label
    monkeypatch.setattr(agent, "pushing", lambda: True)
    assert call_wsgi(app, path)[1] == b"GET /users/{id}/orders/{id}"  # ids folded: few distinct routes
    assert call_wsgi(app, {"PATH_INFO": "/v2/items", "REQUEST_METHOD": "POST"})[1] == b"POST /v2/items"
    assert agent.current_route() is None  # taken off when the request ends
