"""The in-process agent (pyinstrument.agent): what it costs the program that carries it,
and how long a request takes.

The target is attached.py's: a fixed amount of CPU-bound work (about 2.5 s on Python 3.12
here) timed by the program itself with time.perf_counter. It starts, says it is ready, and
attached.SETTLE seconds later is told to go. Conditions: **alone** (the baseline; no PYINSTRUMENT_*
variable in its environment); **armed, idle**: PYINSTRUMENT_AGENT=1, so the .pth installed
with the package starts the agent at start-up, a thread blocked in accept() on a Unix
socket; **continuous**: the program calls `pyinstrument.agent.push_to_pyroscope(url,
"bench", period=2.0)` (default 100 Hz) before it says it is ready, with url a tiny HTTP
server in this process (127.0.0.1, a thread, answers 200 to every POST), so the cost
includes building and sending a pprof every 2 s; **continuous, server stalled**: the same
to a server that accepts the connection and never reads or answers (the push waits out its
5 s timeout in the agent's thread, and the profile is dropped); **flight recorder**:
PYINSTRUMENT_AGENT=1 and PYINSTRUMENT_FLIGHT_SECONDS=60 (records all the time at 100 Hz,
cuts a 2 s segment every 2 s).

Continuous (both) and flight recorder go WARM (2.5 s) after start instead: past the first
push or segment, whose one-off imports would otherwise land in the work (see WARM).

Trigger latency: `python -m pyinstrument --agent PID --duration 0.5 -o FILE.pyisession` to an
armed target, once while it waits to be told to go and once just after it is told (so while
it works); the wall time less the 0.5 s recorded is what a request costs beyond the recording,
client interpreter start-up included (that start-up alone, `python -m pyinstrument
--version`, is timed too).

Groups, rounds, ratios and the load check are attached.py's: **spare core** (nothing
pinned) and **pinned** (the target and the client under `taskset -c 0`; the HTTP server,
in this process, is not pinned); every round runs each condition of each group once, and a
ratio is the condition's time over the same round's alone time in the same group.

    python bench/agent_cost.py [--quick] [--python PATH]    (standalone; run.py --only agent)
"""

from __future__ import annotations

import datetime
import http.server
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Any, Dict, List, Sequence, Tuple

import attached
import common

ROUNDS = {"quick": 2, "full": 7}  # a round is about 50 s here: 7 keep the run near 6 minutes
CONDITIONS = ("alone", "armed, idle", "continuous", "continuous, server stalled", "flight recorder")
REQUEST = 0.5  # seconds the trigger asks the agent to record
# Continuous and flight recorder: the first push (or segment) comes 2 s after the start and
# imports the renderer, urllib and the session code; made while the program works, they
# crawl (a first 0.5 s request takes ~1 s more at work than idle, likely for the GIL: each
# release on a file access waits out the worker's switch interval)
# Going at 2.5 s leaves that one-off behind and puts the next push, the steady cost, in the work.
WARM = 2.5
PUSH = """
import sys, pyinstrument.agent
pyinstrument.agent.push_to_pyroscope(sys.argv[1], "bench", period=2.0)
"""


class Stalled:
    """A server that accepts connections and never reads or answers them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: List[socket.socket] = []
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self) -> None:
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:  # closed
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


class Ingest(http.server.BaseHTTPRequestHandler):
    """A stand-in Pyroscope: reads the POSTed profile, answers 200 at once, counts it."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        Ingest.received += 1

    def log_message(self, format: str, *args: Any) -> None:  # no line per request on stderr
        pass


def clean_environment(condition: str) -> Dict[str, str]:
    """This process's environment without PYTHON* (as attached.py) or PYINSTRUMENT_* variables,
    plus the ones that arm the agent for the armed and flight conditions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYINSTRUMENT"))}
    if condition in ("armed, idle", "flight recorder"):
        env["PYINSTRUMENT_AGENT"] = "1"
    if condition == "flight recorder":
        env["PYINSTRUMENT_FLIGHT_SECONDS"] = "60"
    return env


def agent_socket(pid: int) -> str:
    """Where the agent of *pid* listens (agent.socket_path, computed here: the bench's own
    interpreter need not have pyinstrument)."""
    return os.path.join(tempfile.gettempdir(), f"pyinstrument-{os.getuid()}", f"agent-{pid}.sock")


def request(pin: Sequence[str], python: str, folder: str, pid: int) -> float:
    """Wall seconds of `pyinstrument --agent PID --duration REQUEST`, the client start-up included."""
    out = os.path.join(folder, "x.pyisession")
    started = time.perf_counter()
    client = subprocess.run([*pin, python, "-E", "-s", "-m", "pyinstrument", "--agent", str(pid),
                             "--duration", str(REQUEST), "-o", out], cwd=folder, env=clean_environment("alone"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    seconds = time.perf_counter() - started
    if client.returncode != 0 or not os.path.exists(out):
        raise common.ChildFailed(f"the request failed: {client.stdout.strip()[-300:]}")
    os.remove(out)
    return seconds


def run_once(condition: str, pin: Sequence[str], python: str, folder: str, url: str,
             trigger: str = "") -> Dict[str, Any]:
    """One run of the target: its seconds of work, the profiles pushed meanwhile, and with
    *trigger* ("waiting" or "working") the wall time of a request to its agent made before
    it is told to go or while it works."""
    continuous = condition.startswith("continuous")
    script = "continuous.py" if continuous else "target.py"
    target = subprocess.Popen([*pin, python, "-E", "-s", os.path.join(folder, script), url], cwd=folder,
                              env=clean_environment(condition), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              universal_newlines=True)
    assert target.stdin and target.stdout
    try:
        if target.stdout.readline().strip() != "ready":
            raise common.ChildFailed(f"the target ({condition}) did not start")
        # check that the agent is armed exactly where it should be (and not in the baseline)
        armed = os.path.exists(agent_socket(target.pid))
        if armed != (condition in ("armed, idle", "flight recorder")):
            raise common.ChildFailed(f"{condition}: the agent is {'' if armed else 'not '}armed in the target")
        time.sleep(WARM if continuous or condition == "flight recorder" else attached.SETTLE)
        result: Dict[str, Any] = {}
        if trigger == "waiting":  # the main thread blocked in readline: the agent has the GIL to itself
            result["request"] = request(pin, python, folder, target.pid)
        pushed = Ingest.received
        target.stdin.write("go\n")
        target.stdin.close()
        if trigger == "working":
            result["request"] = request(pin, python, folder, target.pid)
        result["seconds"] = float(target.stdout.readline())
        result["pushed"] = Ingest.received - pushed
        target.wait(timeout=60)
        return result
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()


def client_startup(pin: Sequence[str], python: str) -> float:
    """Wall seconds of `python -m pyinstrument --version`: the client's start-up alone."""
    started = time.perf_counter()
    subprocess.run([*pin, python, "-E", "-s", "-m", "pyinstrument", "--version"], env=clean_environment("alone"),
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def measure(env: common.PythonEnv, quick: bool) -> Dict[str, Any]:
    rounds = ROUNDS["quick" if quick else "full"]
    common.log(f"  agent, Python {env.version}: {rounds} rounds of {', '.join(CONDITIONS)} and a request, "
               "spare core and pinned")
    runs: Dict[str, Dict[str, List[Dict[str, Any]]]] = {g: {c: [] for c in CONDITIONS} for g in attached.GROUPS}
    requests: Dict[str, Dict[str, List[Dict[str, Any]]]] = {g: {"waiting": [], "working": []}
                                                             for g in attached.GROUPS}
    startups: Dict[str, List[float]] = {g: [] for g in attached.GROUPS}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    stalled = Stalled()
    try:
        with tempfile.TemporaryDirectory(prefix="pyi-agent-") as folder:
            with open(os.path.join(folder, "target.py"), "w") as f:
                f.write(attached.TARGET)
            with open(os.path.join(folder, "continuous.py"), "w") as f:
                f.write(PUSH + attached.TARGET)
            others = []  # per round: the cores other processes kept busy meanwhile
            for number in range(rounds):
                wall, busy, own = time.perf_counter(), attached.busy_seconds(), attached.own_seconds()
                for group, pin in attached.GROUPS.items():
                    for condition in CONDITIONS:
                        to = stalled.url if condition == "continuous, server stalled" else url
                        runs[group][condition].append(run_once(condition, pin, env.ours, folder, to))
                    for when in requests[group]:
                        requests[group][when].append(run_once("armed, idle", pin, env.ours, folder, url, when))
                    startups[group].append(client_startup(pin, env.ours))
                    line = ", ".join(f"{c} {runs[group][c][-1]['seconds']:.2f} s" for c in CONDITIONS)
                    common.log(f"    round {number + 1}/{rounds}, {group}: {line}; request "
                               + ", ".join(f"{w} {r[-1]['request']:.2f} s" for w, r in requests[group].items()))
                other = attached.busy_seconds() - busy - (attached.own_seconds() - own)
                # (this process's own CPU, the HTTP server's, counts as ours)
                others.append(max(0.0, other) / (time.perf_counter() - wall))
                common.log(f"    other processes kept {others[-1]:.2f} cores busy")
    finally:
        server.shutdown()
        server.server_close()
        stalled.close()
    return {"version": env.version, "rounds": rounds, "runs": runs, "requests": requests, "startups": startups,
            "others": others, "date": datetime.date.today().isoformat(), "cores": os.cpu_count()}


# -- the report --------------------------------------------------------------------------------


def spread(values: List[float], unit: str = " s") -> str:
    return f"**{statistics.median(values):.2f}{unit}** ({min(values):.2f}–{max(values):.2f})"


def report(result: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    groups = list(attached.GROUPS)
    alone = {g: statistics.median(r["seconds"] for r in result["runs"][g]["alone"]) for g in groups}
    lines = [f"### The agent on Python {result['version']}", "",
             "The program's own time for a fixed CPU-bound work (attached.py's, about 2.5 s alone) with the agent "
             f"in each mode, over its time alone in the same round: median of {result['rounds']} rounds, lowest–"
             "highest in brackets. *Armed, idle*: `PYINSTRUMENT_AGENT=1`, a thread blocked in `accept()`. "
             "*Continuous*: `push_to_pyroscope(url, period=2.0)` at the default 100 Hz, to a local HTTP server "
             "answering 200; *server stalled*: to one that accepts the connection and never answers (each push "
             "waits out its 5 s timeout in the agent's thread, then is dropped). *Flight recorder*: "
             "`PYINSTRUMENT_AGENT=1 PYINSTRUMENT_FLIGHT_SECONDS=60` (100 Hz, 2 s "
             "segments). **Spare core**: nothing pinned (2 cores); **pinned**: the program on core 0 (the HTTP "
             "server, in the bench process, is not). The *alone* row is each alone run over the median alone run: "
             "the noise of one run. Pushes: profiles received while the program worked, median per run.", "",
             "| condition | spare core | pinned | pushes (spare, pinned) |", "| --- | --- | --- | --- |",
             f"| alone ({alone[groups[0]]:.2f} s, {alone[groups[1]]:.2f} s) | "
             + " | ".join(attached.cell(attached.baseline_spread(result, g), count=False) for g in groups) + " | |"]
    for condition in measured_conditions(result):
        pushes = ", ".join(f"{statistics.median(r['pushed'] for r in result['runs'][g][condition]):g}"
                           for g in groups) if condition == "continuous" else ""
        lines.append(f"| {condition} | " + " | ".join(attached.cell(attached.ratios(result, g, condition))
                                                     for g in groups) + f" | {pushes} |")
    latency = {(g, w): [r["request"] - REQUEST for r in result["requests"][g][w]] for g in groups
               for w in ("waiting", "working")}
    lines += ["", "Continuous (both) and flight recorder: the program goes 2.5 s after it starts, past its first push "
              "(or segment), whose one-off imports are thus left out; the next one, 2 s after, falls in the work.",
              "", f"Trigger latency: the wall time of `python -m pyinstrument --agent PID --duration {REQUEST:g} -o "
              f"x.pyisession` to an armed program less the {REQUEST:g} s recorded, median (lowest–highest) of the "
              "rounds. It includes the client interpreter's start-up and import of pyinstrument; that alone "
              "(`python -m pyinstrument --version`) took "
              f"{spread(result['startups'][groups[0]])} spare, {spread(result['startups'][groups[1]])} pinned.", "",
              "| program | spare core | pinned |", "| --- | --- | --- |",
              "| waiting (main thread blocked in a read) | "
              + " | ".join(spread(latency[g, "waiting"]) for g in groups) + " |",
              "| at work (CPU-bound main thread) | " + " | ".join(spread(latency[g, "working"]) for g in groups) + " |"]
    return lines + attached.measured_on(result, "agent"), []


def chart(result: Dict[str, Any], path: str) -> None:
    attached.bar_chart(result, measured_conditions(result), f"The agent's cost, Python {result['version']}", path)


def measured_conditions(result: Dict[str, Any]) -> List[str]:
    """The conditions other than alone that this result holds (one kept from an older run may lack some)."""
    groups = list(attached.GROUPS)
    return [c for c in CONDITIONS[1:] if all(c in result["runs"][g] for g in groups)]


if __name__ == "__main__":
    common.module_main(__doc__ or "", {}, measure, report, chart)
