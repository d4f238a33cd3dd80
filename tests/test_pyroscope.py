"""Continuous profiling into a real Grafana Pyroscope server (built by
../shared/tools/get-pyroscope; `make test` builds it and requires these tests to run)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest

SERVER = os.environ.get("PYINSTRUMENT_PYROSCOPE_BIN") or os.path.expanduser("~/.cache/pyroscope-server/bin/pyroscope")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def pyroscope(tmp_path_factory) -> Iterator[str]:
    """A Pyroscope server on loopback, its URL."""
    if not os.access(SERVER, os.X_OK):
        if os.environ.get("PYINSTRUMENT_REQUIRE_PYROSCOPE"):
            pytest.fail(f"no Pyroscope server at {SERVER}: ../shared/tools/get-pyroscope builds it")
        pytest.skip("no Pyroscope server built (../shared/tools/get-pyroscope)")
    data = tmp_path_factory.mktemp("pyroscope")
    http, grpc = free_port(), free_port()
    local = "127.0.0.1"
    ring = [f"-{name}.store=inmemory" for name in (
        "distributor.ring", "ring", "overrides-exporter.ring", "query-scheduler.ring", "compactor.ring",
        "store-gateway.sharding-ring",
    )]
    addresses = [f"-{name}={local}" for name in (
        "distributor.ring.instance-addr", "ingester.lifecycler.addr", "overrides-exporter.ring.instance-addr",
        "query-scheduler.ring.instance-addr", "query-frontend.instance-addr", "compactor.ring.instance-addr",
        "store-gateway.sharding-ring.instance-addr",
    )]
    server = subprocess.Popen(
        [SERVER, "-architecture.storage=v1", "-write-path=ingester", "-storage.backend=",
         f"-pyroscopedb.data-path={data}", f"-server.http-listen-address={local}",
         f"-server.http-listen-port={http}", f"-server.grpc-listen-address={local}",
         f"-server.grpc-listen-port={grpc}", f"-memberlist.bind-addr={local}",
         f"-memberlist.advertise-addr={local}", *ring, *addresses, "-ingester.min-ready-duration=0",
         "-usage-stats.enabled=false", "-self-profiling.disable-push=true", "-tracing.enabled=false"],
        stdout=subprocess.DEVNULL, stderr=open(data / "server.log", "w"),
    )
    url = f"http://{local}:{http}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (data / "server.log").read_text()[-2000:]
            time.sleep(0.2)
        yield url
    finally:
        server.kill()
        server.wait()


PUSHING = """
import json, sys, time, pyinstrument.agent

pushed = {}  # function -> [wall seconds as leaf (self), wall seconds anywhere on the stack]

def keep(session):
    for stack, seconds in session.frame_records:
        # functions, and the time a thread waited for the GIL (the pusher's thread takes it)
        names = [frame.split("\\x00")[0] for frame in stack if "\\x00" in frame or frame.startswith("[GIL wait]")]
        for name in set(names):
            pushed.setdefault(name, [0.0, 0.0])[1] += seconds
        if names:
            pushed[names[-1]][0] += seconds

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def heavy():
    spin(0.02)

def light():
    spin(0.01)

pusher = pyinstrument.agent.push_to_pyroscope(
    sys.argv[1], "pushing-test", period=1.0, interval=0.005, on_push=keep, timeout=float(sys.argv[2])
)
# three pushes (or attempts) at least, however slow a busy machine makes them
start = time.perf_counter()
while time.perf_counter() < start + 3.5 or (pusher.pushed + pusher.dropped < 3 and time.perf_counter() < start + 60):
    heavy()
    light()
pusher.stop()
pusher._thread.join()
print(json.dumps({"pushed": pusher.pushed, "dropped": pusher.dropped, "functions": pushed}))
"""


def run_pushing(url: str, tmp_path: Path, timeout: float = 5.0) -> Dict:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(PUSHING))
    result = subprocess.run(
        [sys.executable, str(script), url, str(timeout)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.splitlines()[-1]), stderr=result.stderr)


def query_totals(url: str, query: str, start: float) -> Dict[str, Tuple[float, float]]:
    """Each function's (self, total) seconds as the server tells them (its flame graph)."""
    params = urllib.parse.urlencode(
        {"query": query, "from": int(start) - 60, "until": int(time.time()) + 60, "format": "json"}
    )
    with urllib.request.urlopen(f"{url}/pyroscope/render?{params}", timeout=30) as answer:
        graph = json.load(answer)["flamebearer"]
    totals: Dict[str, Tuple[float, float]] = {}
    for level in graph["levels"]:
        for i in range(0, len(level), 4):  # offset, total, self, name
            name = graph["names"][level[i + 3]]
            own, total = totals.get(name, (0.0, 0.0))
            totals[name] = (own + level[i + 2] / 1e9, total + level[i + 1] / 1e9)
    return totals


def test_pushed_profiles_add_up_to_what_was_recorded(pyroscope, tmp_path):
    start = time.time()
    report = run_pushing(pyroscope, tmp_path)
    assert report["pushed"] >= 3 and report["dropped"] == 0, report
    query = 'wall:wall:nanoseconds:wall:nanoseconds{service_name="pushing-test"}'
    totals = query_totals(pyroscope, query, start)
    for function in ("heavy", "light", "spin"):
        ours_self, ours_total = report["functions"][function]
        names = [name for name in totals if name == function or name.startswith(function + " ")]
        assert names, (function, sorted(totals))
        theirs_self = sum(totals[name][0] for name in names)
        theirs_total = sum(totals[name][1] for name in names)
        assert theirs_total == pytest.approx(ours_total, rel=1e-3, abs=1e-3), (function, totals)
        assert theirs_self == pytest.approx(ours_self, rel=1e-3, abs=1e-3), (function, totals)
    heavy, light = report["functions"]["heavy"][1], report["functions"]["light"][1]
    assert 0.55 < heavy / (heavy + light) < 0.78


def test_an_absent_server_costs_the_program_one_line(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    report = run_pushing(closed, tmp_path)
    assert report["pushed"] == 0 and report["dropped"] >= 3, report
    assert report["functions"]["heavy"][1] > 1.0  # the program ran on, and was recorded
    assert report["stderr"].count("could not be pushed") == 1, report["stderr"]


@pytest.fixture
def stalled_server() -> Iterator[str]:
    """A server that accepts connections and never reads or answers them: its URL."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    held = []

    def hold() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # closed
                return

    threading.Thread(target=hold, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for connection in held:
        connection.close()


def test_a_stalled_server_drops_profiles_and_the_program_runs_on(stalled_server, tmp_path):
    report = run_pushing(stalled_server, tmp_path, timeout=0.5)
    # each push waits out its timeout in the agent's thread, then is dropped; the next
    # period was recorded meanwhile, so nothing piles up
    assert report["pushed"] == 0 and report["dropped"] >= 3, report
    assert report["functions"]["heavy"][1] > 1.0, report
    heavy, light = report["functions"]["heavy"][1], report["functions"]["light"][1]
    assert 0.55 < heavy / (heavy + light) < 0.78
    assert report["stderr"].count("could not be pushed") == 1 and "timed out" in report["stderr"], report["stderr"]


def test_a_program_ends_without_waiting_for_a_stalled_push(stalled_server, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time, pyinstrument.agent
            pyinstrument.agent.push_to_pyroscope(sys.argv[1], "ending-test", period=0.3, timeout=600)
            time.sleep(1.0)  # a push has begun, and waits on the server
            print("done", flush=True)
            """
        )
    )
    # a push waiting up to 600 s must not hold the program's exit
    result = subprocess.run([sys.executable, str(script), stalled_server], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "done\n", result


ROUTES = """
import json, sys, threading, time, pyinstrument.agent
from pyinstrument.agent import route

routes = {}  # route -> {function: wall seconds anywhere on its stacks}

def keep(session):
    if session.phases is None:
        return
    for (stack, seconds), number in zip(session.frame_records, session.phases.records):
        name = session.phases.names[number - 1] if number else "(none)"
        for function in {frame.split("\\x00")[0] for frame in stack if "\\x00" in frame}:
            routes.setdefault(name, {}).setdefault(function, 0.0)
            routes[name][function] += seconds

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def users():
    spin(0.02)

def orders():
    spin(0.02)

def serve(name, handler, stop):
    while not stop.is_set():
        with route(name):
            handler()
        spin(0.005)  # between requests: no route

pusher = pyinstrument.agent.push_to_pyroscope(sys.argv[1], "routes-test", period=1.0, interval=0.005, on_push=keep)
stop = threading.Event()
threads = [threading.Thread(target=serve, args=("GET /users/{id}", users, stop)),
           threading.Thread(target=serve, args=("POST /orders", orders, stop))]
for thread in threads:
    thread.start()
start = time.perf_counter()
while time.perf_counter() < start + 3.5 or (pusher.pushed + pusher.dropped < 3 and time.perf_counter() < start + 60):
    time.sleep(0.05)
stop.set()
for thread in threads:
    thread.join()
pusher.stop()
pusher._thread.join()
print(json.dumps({"pushed": pusher.pushed, "routes": routes}))
"""


#: the same two routes served by two tasks of one event loop, taking turns on its thread
TASK_ROUTES = ROUTES.replace(
    """def serve(name, handler, stop):
    while not stop.is_set():
        with route(name):
            handler()
        spin(0.005)  # between requests: no route
""",
    """import asyncio

async def request(name, handler):
    with route(name):  # in a task: the task's own route, kept in its context
        for _ in range(3):
            handler()
            await asyncio.sleep(0)  # the other task runs on this thread meanwhile

async def serve_both(stop):
    while not stop.is_set():
        await asyncio.gather(request("GET /users/{id}", users), request("POST /orders", orders))
        spin(0.005)  # between requests: no route

def serve(name, handler, stop):
    if handler is users:
        asyncio.run(serve_both(stop))
""",
)
assert TASK_ROUTES != ROUTES


def run_routes(url: str, tmp_path: Path, program: str = ROUTES) -> Dict:
    script = tmp_path / "routes.py"
    script.write_text(textwrap.dedent(program))
    result = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_each_thread_is_labelled_with_the_route_it_serves(tmp_path):
    report = run_routes(f"http://127.0.0.1:{free_port()}", tmp_path)  # no server: the sessions are still made
    routes = report["routes"]
    assert set(routes) >= {"GET /users/{id}", "POST /orders"}, routes
    # a route holds its own handler only; the time between requests has no route
    assert "users" in routes["GET /users/{id}"] and "orders" not in routes["GET /users/{id}"], routes
    assert "orders" in routes["POST /orders"] and "users" not in routes["POST /orders"], routes
    # the label is read just after the stack is copied: a sample taken as a request ends
    # may land outside its route (one sample in several hundred here)
    unlabelled = routes.get("(none)", {})
    assert unlabelled.get("users", 0.0) < 0.02 * routes["GET /users/{id}"]["users"], routes
    assert unlabelled.get("orders", 0.0) < 0.02 * routes["POST /orders"]["orders"], routes
    assert routes["GET /users/{id}"]["users"] > 0.5 and routes["POST /orders"]["orders"] > 0.5, routes


def test_tasks_sharing_a_thread_are_each_labelled_with_their_route(tmp_path):
    report = run_routes(f"http://127.0.0.1:{free_port()}", tmp_path, TASK_ROUTES)
    routes = report["routes"]
    assert "users" in routes["GET /users/{id}"] and "orders" not in routes["GET /users/{id}"], routes
    assert "orders" in routes["POST /orders"] and "users" not in routes["POST /orders"], routes
    unlabelled = routes.get("(none)", {})
    assert unlabelled.get("users", 0.0) < 0.02 * routes["GET /users/{id}"]["users"], routes
    assert unlabelled.get("orders", 0.0) < 0.02 * routes["POST /orders"]["orders"], routes
    assert routes["GET /users/{id}"]["users"] > 0.5 and routes["POST /orders"]["orders"] > 0.5, routes


def test_routes_arrive_as_series_labels(pyroscope, tmp_path):
    start = time.time()
    report = run_routes(pyroscope, tmp_path)
    assert report["pushed"] >= 3, report
    for name, handler, other in (("GET /users/{id}", "users", "orders"), ("POST /orders", "orders", "users")):
        query = 'wall:wall:nanoseconds:wall:nanoseconds{service_name="routes-test",route="%s"}' % name
        totals = query_totals(pyroscope, query, start)
        functions = {function.split(" ")[0] for function in totals}
        assert handler in functions and other not in functions, (name, sorted(totals))
        pushed = sum(totals[f][1] for f in totals if f.split(" ")[0] == handler)
        assert pushed == pytest.approx(report["routes"][name][handler], rel=1e-3, abs=1e-3), (name, totals)
