"""The WSGI (Flask) and ASGI (FastAPI) profiling middlewares, served over real HTTP on
localhost: ?profile reports, reports written per request, slow-only capture, refusals,
concurrent requests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, List, Tuple

import pytest

from pyinstrument._web import RequestInfo, is_local_request, path_for_filename

from pyinstrument.asgi import ProfilerMiddleware as ASGIProfilerMiddleware
from pyinstrument.wsgi import ProfilerMiddleware as WSGIProfilerMiddleware

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


def busy(seconds: float) -> None:
    """Runs Python code for ``seconds``, so that samples land in the caller."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def report_files(folder: Any) -> List[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


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
        busy(0.03)
        return "computed"

    @app.route("/fast")
    def flask_fast_view() -> str:
        return "fast"

    @app.route("/slow")
    def flask_slow_view() -> str:
        time.sleep(0.2)
        return "slow"

    @app.route("/delay/<int:milliseconds>")
    def flask_delay_view(milliseconds: int) -> str:
        busy(milliseconds / 1000)
        return f"delayed {milliseconds}"

    @app.route("/stream")
    def flask_stream_view() -> Any:
        def chunks() -> Iterator[str]:
            for number in range(3):
                busy(0.01)
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
    with serve_flask() as (base, _):
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
    """A WSGI application without a framework: /compute runs for 30 ms, /sleep sleeps 0.2 s."""
    path = environ["PATH_INFO"]
    if path == "/compute":
        busy(0.03)
    elif path == "/sleep":
        time.sleep(0.2)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"plain {path}".encode()]


def test_wsgi_default_show_callback_allows_only_local_unproxied_clients() -> None:
    app = WSGIProfilerMiddleware(plain_wsgi_app)
    normal = ("200 OK", b"plain /compute")
    # a remote client, a local one behind a reverse proxy, and no address: no report
    assert call_wsgi(app, {"REMOTE_ADDR": "203.0.113.5"}) == normal
    assert call_wsgi(app, {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}) == normal
    assert call_wsgi(app, {}) == normal
    for local in ("127.0.0.1", "::1"):
        status, body = call_wsgi(app, {"REMOTE_ADDR": local})
        assert status == "200 OK" and b"plain_wsgi_app" in body and b"<html" in body.lower()


def test_plain_wsgi_server_with_slow_threshold(tmp_path: Any) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server as make_wsgiref_server

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    middleware = WSGIProfilerMiddleware(plain_wsgi_app, profile_dir=tmp_path, slow_threshold=0.1)
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
    assert len(names) == 1 and "_sleep" in names[0] and seconds_in_name(names[0]) >= 0.2, names


async def plain_asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI application without a framework; it records the connection types it sees."""
    seen_types.append(scope["type"])
    if scope["type"] != "http":
        return
    if scope["path"] == "/compute":
        busy(0.03)
    else:
        await asyncio.sleep(0.1)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"plain {scope['path']}".encode()})


seen_types: List[str] = []


async def call_asgi(app: Any, scope_type: str = "http", path: str = "/compute", query: bytes = b"profile",
                    client: Any = ("127.0.0.1", 5000)) -> Tuple[int, bytes]:
    """A direct ASGI call: (status, body)."""
    scope = {"type": scope_type, "method": "GET", "path": path, "query_string": query, "headers": [],
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
    app = ASGIProfilerMiddleware(plain_asgi_app, profile_dir=tmp_path, keep_slowest=2)

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
    assert seconds_in_name(compute) >= 0.03
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
    with serve_flask(profile_dir=tmp_path, slow_threshold=0.1) as (base, middleware):
        assert get(f"{base}/fast")[2] == "fast"
        assert get(f"{base}/slow")[2] == "slow"
        assert get(f"{base}/fast")[2] == "fast"
        assert middleware.wait_for_reports(30)
    names = report_files(tmp_path)
    assert len(names) == 1 and "_slow" in names[0], names
    assert seconds_in_name(names[0]) >= 0.2
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
        busy(float(flask.request.args["seconds"]))
        return "done"

    middleware = WSGIProfilerMiddleware(app.wsgi_app, profile_dir=tmp_path, keep_slowest=2)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for seconds in (0.06, 0.18, 0.02, 0.12):
            assert get(f"http://127.0.0.1:{server.server_port}/work?seconds={seconds}")[2] == "done"
        assert middleware.wait_for_reports(30)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    names = report_files(tmp_path)
    assert len(names) == 2, names
    assert sorted(seconds_in_name(n) for n in names)[0] >= 0.12  # the 0.18 s and 0.12 s ones
    assert all("_work" in n and "work_view" in (tmp_path / n).read_text("utf-8") for n in names)


@needs_flask
def test_flask_concurrent_requests_are_each_profiled(tmp_path: Any) -> None:
    with serve_flask(profile_dir=tmp_path) as (base, middleware):
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
    assert len(warnings) == 1 and "cannot write the report" in warnings[0].getMessage()
    assert not_a_folder.read_text() == "in the way"


def test_path_for_filename() -> None:
    for hostile in ("/../../etc/passwd", "/a/..%2f../b", "/x\\..\\y", '/<>:"|?*\x00\n', "/" + "é" * 300, "/\udcff"):
        safe = path_for_filename(hostile)
        assert "/" not in safe and "\\" not in safe and ".." not in safe and "\x00" not in safe
        assert len(safe) <= 100
        safe.encode("utf-8")
    assert path_for_filename("/api/users/") == "_api_users_"


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        WSGIProfilerMiddleware(plain_wsgi_app, slow_threshold=0.1)  # no profile_dir to keep them in
    with pytest.raises(ValueError):
        ASGIProfilerMiddleware(plain_asgi_app, renderer="no-such-renderer")
    with pytest.raises(ValueError):
        WSGIProfilerMiddleware(plain_wsgi_app, profile_dir=".", keep_slowest=0)
    with pytest.raises(TypeError):
        WSGIProfilerMiddleware(plain_wsgi_app, renderer=42)


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
        busy(0.03)
        return {"result": "computed"}

    @app.get("/fast")
    async def fastapi_fast_view() -> dict:
        return {"result": "fast"}

    @app.get("/slow")
    async def fastapi_slow_view() -> dict:
        await asyncio.sleep(0.2)
        return {"result": "slow"}

    @app.get("/threaded")
    def fastapi_threadpool_view() -> dict:
        busy(0.03)
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
    busy(seconds)


def beta_work(seconds: float) -> None:
    busy(seconds)


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
    with serve_fastapi() as (base, _, events):
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
    with serve_fastapi(profile_dir=tmp_path, slow_threshold=0.1) as (base, middleware, _):
        for path in ("/fast", "/slow", "/compute"):
            assert get(base + path)[0] == 200
        assert middleware.wait_for_reports(30)
    names = report_files(tmp_path)
    assert len(names) == 1 and "_slow" in names[0] and seconds_in_name(names[0]) >= 0.2, names

    # a `def` route runs in a worker thread, in the request's context: followed there
    with serve_fastapi() as (base, _, _events):
        assert "fastapi_threadpool_view" in get(f"{base}/threaded?profile")[2]
    with serve_fastapi(all_threads=True) as (base, _, _events):
        assert "fastapi_threadpool_view" in get(f"{base}/threaded?profile")[2]


@needs_fastapi
def test_fastapi_keep_slowest_and_concurrent_requests(tmp_path: Any) -> None:
    with serve_fastapi(profile_dir=tmp_path, keep_slowest=2) as (base, middleware, _):
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
