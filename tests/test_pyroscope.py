"""Continuous profiling into a real Grafana Pyroscope server (built by
../shared/tools/get-pyroscope; `make test` builds it and requires these tests to run)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
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
        names = [frame.split("\\x00")[0] for frame in stack if "\\x00" in frame]
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

pusher = pyinstrument.agent.push_to_pyroscope(sys.argv[1], "pushing-test", period=1.0, interval=0.005, on_push=keep)
end = time.perf_counter() + 3.5
while time.perf_counter() < end:
    heavy()
    light()
pusher.stop()
pusher._thread.join()
print(json.dumps({"pushed": pusher.pushed, "dropped": pusher.dropped, "functions": pushed}))
"""


def run_pushing(url: str, tmp_path: Path) -> Dict:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(PUSHING))
    result = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=120)
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
