"""The in-process agent: armed by PYINSTRUMENT_AGENT, asked by pyinstrument --agent."""

import json
import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from pyinstrument.agent import socket_path

TARGET = """
import os, sys, time

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def serve():
    print("running", flush=True)
    while True:
        spin(0.05)

serve()
"""


@pytest.fixture
def armed(tmp_path):
    """A program started with the agent armed from its environment, as a user would."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(TARGET))
    env = dict(os.environ, PYINSTRUMENT_AGENT="1")
    target = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    assert target.stdout is not None and target.stdout.readline() == "running\n"
    yield target
    target.kill()
    target.wait()


def pyinstrument(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "pyinstrument", *args], capture_output=True, text=True, timeout=120, **kwargs
    )


def names_in(node):
    return [node["function"]] + [name for child in node.get("children", []) for name in names_in(child)]


def test_the_agent_records_its_program_and_not_itself(tmp_path, armed):
    out = tmp_path / "report.json"
    result = pyinstrument("--agent", str(armed.pid), "--duration", "1", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    names = names_in(report["root_frame"])
    assert "serve" in names and "spin" in names
    assert not [name for name in names if "agent" in name], names  # its own thread is left out
    assert report["duration"] >= 1.0
    assert armed.poll() is None


def test_the_socket_is_the_users_alone(armed):
    path = socket_path(armed.pid)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert os.stat(path).st_uid == os.getuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_another_user_is_refused_in_one_line(armed):
    # everything the client needs is imported before it becomes nobody (who cannot read
    # this interpreter's files)
    program = (
        "import os, sys, json, socket, tempfile, locale, gettext, argparse, pyinstrument.__main__, pyinstrument.agent\n"
        "os.setgid(65534); os.setuid(65534)\n"
        f"sys.exit(pyinstrument.__main__.main(['--agent', '{armed.pid}', '--duration', '1']))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"pyinstrument: error: permission denied connecting to {socket_path(armed.pid)}: "
        "the agent answers its own user and root"
    )


def test_a_process_without_an_agent_says_how_to_arm_one(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        result = pyinstrument("--agent", str(sleeper.pid), "--duration", "1")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"pyinstrument: error: no agent listens at {socket_path(sleeper.pid)}: start the program with "
        "PYINSTRUMENT_AGENT=1 in its environment, or call pyinstrument.agent.start() in it"
    )


def test_a_program_arms_its_agent_on_a_path_of_its_choosing(tmp_path):
    path = tmp_path / "agent.sock"
    program = textwrap.dedent(
        f"""
        import time, pyinstrument.agent
        pyinstrument.agent.start({str(path)!r})
        def work():
            end = time.perf_counter() + 60
            while time.perf_counter() < end:
                pass
        print("running", flush=True)
        work()
        """
    )
    target = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline() == "running\n"
        result = pyinstrument("--agent", str(path), "--duration", "0.5", "-r", "text")
        assert result.returncode == 0, result.stderr
        assert "work" in result.stdout
    finally:
        target.kill()
        target.wait()


def test_a_forked_worker_answers_on_its_own_socket(tmp_path):
    program = textwrap.dedent(
        """
        import os, sys, time, pyinstrument.agent
        pyinstrument.agent.start()
        def worker_loop():
            end = time.perf_counter() + 60
            while time.perf_counter() < end:
                pass
        if os.fork() == 0:  # its agent is armed by the time fork() returns here
            print(os.getpid(), flush=True)
            worker_loop()
            os._exit(0)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        result = pyinstrument("--agent", str(child), "--duration", "0.5", "-r", "text")
        assert result.returncode == 0, result.stderr
        assert "worker_loop" in result.stdout
    finally:
        parent.kill()
        parent.wait()
        try:
            os.kill(child, 9)
        except (OSError, UnboundLocalError):
            pass


@pytest.mark.skipif(sys.version_info < (3, 14), reason="sys.remote_exec is new in 3.14")
def test_inject_starts_the_agent_inside_a_process_that_did_not_arm_one(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(TARGET))
    target = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline() == "running\n"
        result = pyinstrument("--pid", str(target.pid), "--inject", "--duration", "1", "-r", "text")
        assert result.returncode == 0, result.stderr
        assert "serve" in result.stdout and "spin" in result.stdout
        assert "pyinstrument-agent" not in result.stdout and "_serve" not in result.stdout  # its threads
        assert target.poll() is None
    finally:
        target.kill()
        target.wait()


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="before 3.14 there is no sys.remote_exec")
def test_inject_before_314_says_what_it_needs():
    result = pyinstrument("--pid", str(os.getpid()), "--inject", "--duration", "1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "pyinstrument: error: --inject needs Python 3.14 or later (sys.remote_exec), on both sides"
    )


FLIGHT = """
import time

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def before_anyone_asked():
    spin(1.5)

def afterwards():
    while True:
        spin(0.05)

before_anyone_asked()
print("running", flush=True)
afterwards()
"""


def test_the_flight_recorder_shows_what_ran_before_the_request(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(FLIGHT))
    env = dict(os.environ, PYINSTRUMENT_AGENT="1", PYINSTRUMENT_FLIGHT_SECONDS="30")
    target = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    out = tmp_path / "flight.json"
    try:
        assert target.stdout is not None and target.stdout.readline() == "running\n"
        result = pyinstrument("--agent", str(target.pid), "--flight", "-o", str(out))
        assert result.returncode == 0, result.stderr
    finally:
        target.kill()
        target.wait()
    report = json.loads(out.read_text())
    names = names_in(report["root_frame"])
    assert "before_anyone_asked" in names and "afterwards" in names
    assert not [name for name in names if "FlightRecorder" in name or "_serve" in name], names

    def time_in(node, name):
        return (node["time"] if node["function"] == name else 0.0) + sum(
            time_in(child, name) for child in node.get("children", [])
        )

    assert time_in(report["root_frame"], "before_anyone_asked") > 1.0  # of its 1.5 s


def test_a_flight_recorder_keeps_within_its_memory():
    # two threads of varied stacks for 3 s, 20 ms segments: the ring outgrows 60 kB at once
    program = textwrap.dedent(
        """
        import json, random, threading, time
        from pyinstrument.agent import FlightRecorder

        def make(name):
            namespace = {}
            exec(f"def {name}(n, then):\\n    return then(n - 1) if n else sum(range(500))\\n", namespace)
            return namespace[name]

        functions = [make(f"f{i}") for i in range(200)]

        def call(n):
            return random.choice(functions)(n, call) if n else 0

        def churn():
            end = time.perf_counter() + 3
            while time.perf_counter() < end:
                call(random.randint(1, 10))

        recorder = FlightRecorder(seconds=30, megabytes=0.06, interval=0.001)
        recorder.segment = 0.02
        recorder.start()
        while not recorder._ring:  # armed at start-up, before the load: its first segments are cut
            time.sleep(0.01)
        threads = [threading.Thread(target=churn) for _ in range(2)]
        for thread in threads:
            thread.start()
        most = 0
        while any(thread.is_alive() for thread in threads):
            most = max(most, recorder.kept_bytes)
            time.sleep(0.005)
        session = recorder.recording()
        print(json.dumps({"most": most, "budget": recorder.budget, "kept": len(recorder._ring),
                          "duration": session.duration}))
        """
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert 0 < report["most"] <= report["budget"], report
    assert report["duration"] < 3, report  # the oldest segments were dropped for the budget


def test_flight_without_a_recorder_says_how_to_arm_it(armed):
    result = pyinstrument("--agent", str(armed.pid), "--flight")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "pyinstrument: error: the agent refused: this process keeps no flight recorder "
        "(PYINSTRUMENT_FLIGHT_SECONDS=N arms it)"
    )


def test_a_slow_requests_report_keeps_the_flight_recording_beside_it(tmp_path):
    program = textwrap.dedent(
        f"""
        import io, os, threading, time
        import pyinstrument.agent
        from pyinstrument.wsgi import ProfilerMiddleware

        pyinstrument.agent.start({str(tmp_path / "agent.sock")!r}, flight_seconds=20)

        def spin(seconds):
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass

        def housekeeping():  # another thread, busy before and during the request
            while True:
                spin(0.01)
                time.sleep(0.01)

        threading.Thread(target=housekeeping, daemon=True).start()
        time.sleep(1.5)

        def app(environ, start_response):
            spin(0.3)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"done"]

        middleware = ProfilerMiddleware(app, profile_dir={str(tmp_path / "profiles")!r}, slow_threshold=0.2)
        environ = {{"REQUEST_METHOD": "GET", "PATH_INFO": "/slow", "QUERY_STRING": "", "SERVER_NAME": "x",
                    "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http"}}
        response = middleware(environ, lambda status, headers, exc_info=None: None)
        b"".join(response)
        response.close()  # the report is written once the response is done
        assert middleware.wait_for_reports(30)
        print(sorted(os.listdir({str(tmp_path / "profiles")!r})))
        """
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from pyinstrument.session import Session

    files = sorted((tmp_path / "profiles").iterdir())
    flights = [path for path in files if path.name.endswith(".flight.pyisession")]
    assert len(files) == 2 and len(flights) == 1, files
    flight = Session.load(flights[0])
    functions = {frame.split("\x00")[0] for stack, _ in flight.frame_records for frame in stack}
    assert {"housekeeping", "app"} <= functions, functions
    assert flight.duration > 1.5  # from before the request


def test_a_signal_asks_for_a_recording_where_the_socket_is_not_used(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(TARGET))
    env = dict(os.environ, PYINSTRUMENT_AGENT_SIGNAL="USR2", PYINSTRUMENT_SIGNAL_SECONDS="1")
    target = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert target.stdout is not None and target.stdout.readline() == "running\n"
        result = pyinstrument("--agent", str(target.pid), "--signal", "USR2", "-r", "text")
        assert result.returncode == 0, result.stderr
        assert "serve" in result.stdout and "spin" in result.stdout
        assert "pyinstrument-agent" not in result.stdout
        assert target.poll() is None  # the signal was handled, not fatal
    finally:
        target.kill()
        target.wait()


def test_a_signal_that_would_end_the_process_is_not_sent():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        result = pyinstrument("--agent", str(sleeper.pid), "--signal", "USR2")
        assert result.returncode == 1
        assert result.stderr.splitlines()[-1] == (
            f"pyinstrument: error: process {sleeper.pid} does not catch signal 12, which would end it: "
            "arm it with PYINSTRUMENT_AGENT_SIGNAL (or agent.listen_for_signal) first"
        )
        time.sleep(0.2)  # a signal sent would have ended it by now
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_signal_needs_a_process_id():
    result = pyinstrument("--agent", "abc", "--signal", "USR2")
    assert result.returncode == 2
    assert "--signal goes with --agent PID (a process id)" in result.stderr


def test_an_agent_that_hangs_up_gives_one_line(tmp_path):
    import socket
    import threading

    path = str(tmp_path / "rude.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def hang_up():  # closes with the request unread: the client sees a reset or an end
        connection, _ = listener.accept()
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        result = pyinstrument("--agent", path, "--duration", "0.1")
    finally:
        listener.close()
    assert result.returncode == 1
    line = result.stderr.splitlines()[-1]
    assert line.startswith(f"pyinstrument: error: the connection to the agent at {path} broke: ") or line == (
        f"pyinstrument: error: the agent at {path} closed the connection without an answer (did it end?)"
    ), result.stderr
    assert "Traceback" not in result.stderr


def test_an_agent_never_replaces_a_file_at_its_path(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    program = f"import pyinstrument.agent; pyinstrument.agent.start({str(precious)!r})"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        f"AgentError: {precious} exists and is not a socket of this user's: choose another path"
    )
    assert precious.read_text() == "keep me"


def test_the_environment_never_replaces_a_file_and_the_program_runs_on(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    env = dict(os.environ, PYINSTRUMENT_AGENT=str(precious))
    result = subprocess.run([sys.executable, "-c", "print('ran')"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and result.stdout == "ran\n"
    assert result.stderr == (
        f"pyinstrument: the agent could not start: {precious} exists and is not a socket of this user's: "
        "choose another path\n"
    )
    assert precious.read_text() == "keep me"
