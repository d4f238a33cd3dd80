"""An in-process agent: a program armed at start-up records itself when asked.

Reading another process's memory needs ptrace rights; asking a process to profile itself
does not. The agent owns a Unix socket (mode 0600, in a directory only its user may use)
and a thread that waits on it, blocked in ``accept``: it costs nothing until a request
comes. ``pyinstrument --agent PID --duration 10`` sends one; the agent records every
thread of its process but its own for that long and answers with the session.

Armed by ``pyinstrument.agent.start()`` in the program, or by ``PYINSTRUMENT_AGENT=1`` (or
a socket path) in its environment: the ``pyinstrument-agent.pth`` file installed with the
package starts it when Python starts.
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import json
import os
import re
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

ENVIRONMENT_VARIABLE = "PYINSTRUMENT_AGENT"
_THREAD_NAME = "pyinstrument-agent"
_MAX_REQUEST = 4096
_MAX_DURATION = 24 * 3600.0


class AgentError(Exception):
    """The agent cannot be reached or refused the request; the message says why."""


def socket_directory(uid: int) -> str:
    """The directory holding the agents' sockets of user *uid*."""
    return os.path.join(tempfile.gettempdir(), f"pyinstrument-{uid}")


def socket_path(pid: int, uid: Optional[int] = None) -> str:
    """Where process *pid*'s agent listens by default."""
    return os.path.join(socket_directory(os.getuid() if uid is None else uid), f"agent-{pid}.sock")


def _private_directory(path: str) -> None:
    """Makes *path* a directory only we may use, or refuses one that is not ours."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise AgentError(f"{path} is not a directory of this user's alone: remove it or choose another socket path")


class Agent:
    """Listens on *path* and answers recording requests, one at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._listener: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        directory = os.path.dirname(self.path)
        if directory == socket_directory(os.getuid()):
            _private_directory(directory)
        try:
            left = os.lstat(self.path)
        except FileNotFoundError:
            left = None
        if left is not None:
            # only a socket of ours is taken to be left by an earlier agent; anything else stays
            if not stat.S_ISSOCK(left.st_mode) or left.st_uid != os.getuid():
                raise AgentError(f"{self.path} exists and is not a socket of this user's: choose another path")
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is made 0600, with no moment open to others
        try:
            listener.bind(self.path)
        finally:
            os.umask(old_umask)
        listener.listen(4)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name=_THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            listener.close()

    def _serve(self) -> None:
        while self._listener is not None:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed by stop()
            with connection:
                try:
                    self._answer(connection)
                except Exception as exc:  # the agent answers the next request whatever befell this one
                    _reply_error(connection, str(exc) or type(exc).__name__)

    def _answer(self, connection: socket.socket) -> None:
        uid = _peer_uid(connection)
        if uid not in (os.getuid(), 0):
            _reply_error(connection, f"user {uid} may not profile this process")
            return
        connection.settimeout(10)
        request = _read_request(connection)
        if request.get("flight"):
            if _flight is None:
                _reply_error(
                    connection, "this process keeps no flight recorder (PYINSTRUMENT_FLIGHT_SECONDS=N arms it)"
                )
                return
            session = _flight.recording()
        else:
            duration = float(request.get("duration", 10.0))
            interval = float(request.get("interval", 0.001))
            if not (0 < duration <= _MAX_DURATION) or not (0 < interval <= 1):
                raise ValueError("duration must be in (0, 86400] seconds and interval in (0, 1]")
            session = record_here(duration, interval)
        connection.settimeout(None)
        connection.sendall(b"ok\n")
        for chunk in session.to_file_chunks():
            connection.sendall(chunk)


def _import_what_answers_need() -> None:
    """Imports now, in the thread arming the agent, what a recording and its answer use.
    Left to a request, in a program whose main thread is busy, each of an import's many
    file reads gives the GIL away and waits up to a switch interval to get it back
    (measured: ~0.9 s a request); and done in the agent's thread, an import under way
    when the program forks leaves its module locked in the child for good."""
    import email.message  # noqa: F401  (importlib.metadata reads distributions with it)
    import importlib.metadata  # noqa: F401
    import urllib.request  # noqa: F401  (Pyroscope pushes)

    import pyinstrument.profiler  # noqa: F401
    import pyinstrument.renderers.pprof  # noqa: F401
    import pyinstrument.run_metadata  # noqa: F401
    import pyinstrument.session  # noqa: F401


def _peer_uid(connection: socket.socket) -> int:
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", credentials)[1])


def _read_request(connection: socket.socket) -> Dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        piece = connection.recv(_MAX_REQUEST)
        if not piece or len(data) + len(piece) > _MAX_REQUEST:
            raise ValueError("the request is not one line of JSON")
        data += piece
    request = json.loads(data)
    if not isinstance(request, dict):
        raise ValueError("the request is not a JSON object")
    return request


def _reply_error(connection: socket.socket, message: str) -> None:
    try:
        connection.sendall(f"error: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def _agent_threads() -> List[int]:
    """The idents of the agent's own threads, which its recordings leave out."""
    return [thread.ident for thread in threading.enumerate() if thread.name.startswith(_THREAD_NAME) and thread.ident]


def _new_sampler(interval: float, routes: bool = False) -> Any:
    from pyinstrument import _engine

    sampler = _engine.Sampler(interval=interval, thread_id=0, skip_threads=_agent_threads(), thread_labels=routes)
    if routes and _route_node_types is not None:
        sampler.bind_route_var(_route_var, _route_node_types)
    return sampler


#: the routes requests run for (route n: _route_names[n - 1]); past _MAX_ROUTES distinct
#: ones, the rest are counted as one, so that a server's label values stay few
_route_names: List[str] = []
_route_numbers: Dict[str, int] = {}
_MAX_ROUTES = 1000
_OTHER_ROUTE = "[other routes]"
_ID_SEGMENT = re.compile(r"[0-9]+|[0-9a-fA-F-]{16,}")
#: a thread's route (threads serving one request at a time: the engine's thread label)
_thread_route = threading.local()
#: a task's route (tasks sharing an event loop's thread): its context's value of
#: _route_var, one mark object per route that the engine knows by address
_route_var: "contextvars.ContextVar[object]" = contextvars.ContextVar("pyinstrument_agent_route")
_route_marks: List[object] = []
#: the contexts' node types the engine looks _route_var up with (None: it cannot here)
_route_node_types: Optional[Tuple[int, int, int]] = None


class _RouteMark:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _route_number(name: str) -> int:
    from pyinstrument import _engine

    with _lock:
        if name not in _route_numbers and len(_route_names) >= _MAX_ROUTES:
            name = _OTHER_ROUTE
        if name not in _route_numbers:
            mark = _RouteMark(name)
            _engine.set_route_mark(mark, len(_route_names) + 1)
            _route_marks.append(mark)
            _route_names.append(name)
            _route_numbers[name] = len(_route_names)
        return _route_numbers[name]


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


class route:
    """``with pyinstrument.agent.route("GET /users/{id}"):`` labels what runs meanwhile as
    done for that route: continuous profiles pushed to Pyroscope carry it as the label
    ``route``. The web middlewares do this for each request. In a task of a running asyncio
    event loop (or with ``task=True``) the label is the task's, kept in its context, since
    the loop's thread runs other tasks between its awaits; elsewhere it is the thread's."""

    def __init__(self, name: str, task: Optional[bool] = None) -> None:
        self.number = _route_number(name)
        self.task = _in_event_loop() if task is None else task
        self.previous = 0
        self.token: Any = None

    def __enter__(self) -> "route":
        from pyinstrument import _engine

        if self.task:
            self.token = _route_var.set(_route_marks[self.number - 1])
        else:
            self.previous = getattr(_thread_route, "number", 0)
            if _engine.set_thread_label(self.number):  # (else every slot is taken: no label)
                _thread_route.number = self.number
        return self

    def __exit__(self, *exc_info: Any) -> None:
        from pyinstrument import _engine

        if self.task:
            _route_var.reset(self.token)
        else:
            _thread_route.number = self.previous
            _engine.set_thread_label(self.previous)


def current_route() -> Optional[str]:
    """The route what runs here is labelled with (the task's, else the thread's), if any."""
    mark = _route_var.get(None)
    if isinstance(mark, _RouteMark):
        return mark.name
    number = getattr(_thread_route, "number", 0)
    return _route_names[number - 1] if number else None


def pushing() -> bool:
    """Whether this process pushes continuous profiles (so its requests' routes count)."""
    return _pusher is not None


def request_route(method: str, path: str, task: Optional[bool] = None) -> route:
    """The route of a request whose framework names none: its method and path, with the
    segments that look like ids (numbers, long hex or UUIDs) as ``{id}``."""
    segments = ["{id}" if _ID_SEGMENT.fullmatch(part) else part for part in path.split("/")]
    return route(f"{method} {'/'.join(segments)}", task=task)


def _session_of(
    sampler: Any, start_wall: float, duration: float, interval: float, cpu_time: float, routes: bool = False
) -> Any:
    from pyinstrument import run_metadata
    from pyinstrument.profiler import session_from_snapshot

    names = {(thread.ident, thread.native_id): thread.name for thread in threading.enumerate()}
    route_names = list(_route_names) if routes else []
    session = session_from_snapshot(
        sampler.snapshot(),
        phases=(route_names, [0.0] * len(route_names)),
        all_threads=True,
        thread_names=names,  # type: ignore[arg-type]
        start_time=start_wall,
        duration=duration,
        interval=interval,
        cpu_time=cpu_time,
        start_call_stack=[],
        target_description=f"Process {os.getpid()}: {' '.join(sys.argv)}",
        metadata=run_metadata.collect(),
    )
    if session.phases is not None:  # a route's time: its threads' samples in it, added up
        for (_, seconds), number in zip(session.frame_records, session.phases.records):
            if number:
                session.phases.seconds[number - 1] += seconds
    return session


def record_here(duration: float, interval: float) -> Any:
    """Records every thread of this process but the agent's, for *duration* seconds."""
    sampler = _new_sampler(interval)
    start_wall, start, cpu_start = time.time(), time.perf_counter(), time.process_time()
    sampler.start()
    try:
        time.sleep(duration)
    finally:
        sampler.stop()
    return _session_of(sampler, start_wall, time.perf_counter() - start, interval, time.process_time() - cpu_start)


class Pusher:
    """Records the process continuously, at a low rate, and pushes each *period*'s profile
    (pprof) to a Pyroscope server. Sending never holds up the program: it happens in the
    agent's thread, with a timeout, and a profile that cannot be sent is dropped and
    counted (``dropped``), so memory stays bounded whatever the server does."""

    def __init__(
        self,
        url: str,
        service_name: str,
        period: float = 10.0,
        interval: float = 0.01,
        timeout: float = 5.0,
        on_push: Optional[Callable[[Any], None]] = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise AgentError(f"the Pyroscope address must be an http:// or https:// URL, not {url!r}")
        if not 0 < interval < period:
            raise AgentError("the sampling interval must be positive and shorter than the push period")
        self.url, self.service_name = url.rstrip("/"), service_name
        self.period, self.interval, self.timeout, self.on_push = period, interval, timeout, on_push
        self.pushed = self.dropped = 0
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{_THREAD_NAME}-push", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        sampler = _new_sampler(self.interval, routes=True)
        started = (time.time(), time.perf_counter(), time.process_time())
        sampler.start()
        while not self._stopping.wait(max(0.0, self.period - (time.perf_counter() - started[1]))):
            sampler.stop()
            ended = (time.time(), time.perf_counter(), time.process_time())
            previous, previous_started = sampler, started
            sampler, started = _new_sampler(self.interval, routes=True), ended
            sampler.start()  # the next period records while this one is sent
            session = _session_of(
                previous,
                previous_started[0],
                ended[1] - previous_started[1],
                self.interval,
                ended[2] - previous_started[2],
                routes=True,
            )
            self._send(session, previous_started[0], ended[0])
        sampler.stop()

    def _send(self, session: Any, start: float, end: float) -> None:
        import socket as _socket
        import urllib.error
        import urllib.parse
        import urllib.request

        from pyinstrument.renderers.pprof import PprofRenderer

        labels = {"service_name": self.service_name, "host": _socket.gethostname(), "pid": str(os.getpid())}
        name = self.service_name + "{" + ",".join(f"{key}={value}" for key, value in labels.items()) + "}"
        query = urllib.parse.urlencode(
            {"name": name, "format": "pprof", "from": int(start), "until": int(end) + 1, "spyName": "pyinstrument"}
        )
        request = urllib.request.Request(
            f"{self.url}/ingest?{query}",
            data=PprofRenderer(phase_label="route").render(session),
            method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
            self.pushed += 1
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts are OSErrors
            self.dropped += 1
            if self.dropped == 1:
                print(
                    f"pyinstrument: a profile could not be pushed to {self.url} ({exc}); "
                    "the next ones are dropped quietly when they cannot be either",
                    file=sys.stderr,
                )
        if self.on_push is not None:
            self.on_push(session)


class FlightRecorder:
    """Records the process all the time and keeps the last *seconds* of it, within about
    *megabytes* of memory: one session per segment, the oldest dropped first."""

    def __init__(self, seconds: float = 60.0, megabytes: float = 4.0, interval: float = 0.01) -> None:
        if not seconds > 0 or not megabytes > 0 or not 0 < interval < 1:
            raise AgentError("a flight recorder needs positive seconds and megabytes, and an interval under 1 s")
        self.seconds, self.budget, self.interval = seconds, int(megabytes * 1024 * 1024), interval
        self.segment = min(max(1.0, seconds / 30), seconds)
        self._ring: Deque[Tuple[float, Any, int]] = collections.deque()  # (ended at, session, bytes)
        self._kept_bytes = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sampler: Any = None
        self._started = (0.0, 0.0, 0.0)

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"{_THREAD_NAME}-flight", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def kept_bytes(self) -> int:
        return self._kept_bytes

    def _begin(self) -> None:
        self._sampler = _new_sampler(self.interval)
        self._started = (time.time(), time.perf_counter(), time.process_time())
        self._sampler.start()

    def _cut(self) -> Any:
        """Ends the current segment (a new one starts at once); returns its session."""
        sampler, (wall, start, cpu) = self._sampler, self._started
        sampler.stop()
        self._begin()
        return _session_of(sampler, wall, time.perf_counter() - start, self.interval, time.process_time() - cpu)

    def _run(self) -> None:
        with self._lock:
            self._begin()  # here, so that its recordings leave this thread out
        while not self._stopping.wait(max(0.0, self.segment - (time.perf_counter() - self._started[1]))):
            with self._lock:
                self._keep(self._cut())
        with self._lock:
            self._sampler.stop()

    def _keep(self, session: Any) -> None:
        size = _approximate_bytes(session)
        self._ring.append((time.time(), session, size))
        kept = self._kept_bytes + size
        while self._ring and (kept > self.budget or self._ring[0][0] < time.time() - self.seconds + self.segment):
            kept -= self._ring.popleft()[2]
        self._kept_bytes = kept  # one store: a reader in another thread never sees the ring over budget

    def recording(self) -> Any:
        """The last seconds, up to now, as one session."""
        from pyinstrument.session import Session

        with self._lock:
            if self._sampler is None:
                raise AgentError("the flight recorder is starting: ask again in a moment")
            kept = [session for _, session, _ in self._ring] + [self._cut()]
        combined = kept[0]
        for session in kept[1:]:
            combined = Session.combine(combined, session)
        return combined


def _approximate_bytes(session: Any) -> int:
    """What a kept session holds in memory, roughly: its frames, call tree, records and
    timeline (measured with tracemalloc at ~150 bytes a frame and 40 a record)."""
    table = session.frame_table
    timeline = len(session.timeline) if session.timeline is not None else 0
    return 1000 + 150 * len(table.frames) + 16 * len(table.node_parent) + 40 * len(table) + 12 * timeline


_agent: Optional[Agent] = None
_flight: Optional[FlightRecorder] = None
_flight_settings: Optional[Dict[str, float]] = None
_lock = threading.Lock()
_watching_forks = False


def start(path: Optional[str] = None, flight_seconds: Optional[float] = None, flight_megabytes: float = 4.0) -> Agent:
    """Arms this process's agent (once; a second call returns the first agent) on
    *path*, by default :func:`socket_path` of this process. With *flight_seconds*, it
    also keeps a flight recorder of the last that many seconds (within about
    *flight_megabytes*), which ``pyinstrument --agent PID --flight`` asks for."""
    global _agent, _watching_forks, _flight, _flight_settings
    _import_what_answers_need()
    with _lock:
        if _agent is None:
            agent = Agent(path or socket_path(os.getpid()))
            agent.start()
            _agent = agent
            atexit.register(stop)
            if flight_seconds and _flight is None:
                _flight_settings = dict(seconds=flight_seconds, megabytes=flight_megabytes)
                _flight = FlightRecorder(**_flight_settings)
                _flight.start()
            if not _watching_forks:  # a forked child has threads of its own (_rearm_in_child)
                os.register_at_fork(after_in_child=_rearm_in_child)
                _watching_forks = True
        return _agent


def flight_recorder() -> Optional[FlightRecorder]:
    """This process's flight recorder, if the agent keeps one."""
    return _flight


def stop() -> None:
    """Disarms the agent and removes its socket."""
    global _agent
    with _lock:
        if _agent is not None:
            _agent.stop()
            _agent = None


def _rearm_in_child() -> None:
    """In a forked child: the parent's threads, socket and lock are the parent's."""
    global _agent, _lock, _pusher, _flight
    _lock = threading.Lock()
    if _pusher is not None and _pusher_settings is not None:
        _pusher = Pusher(**_pusher_settings)
        _pusher.start()
    if _flight is not None and _flight_settings is not None:
        _flight = FlightRecorder(**_flight_settings)
        _flight.start()
    if _agent is not None and _agent.path == socket_path(os.getppid()):
        _agent = None
        _start_quietly(None)  # (an agent on a path of the program's choosing stays the parent's)


def _start_quietly(path: Optional[str], flight_seconds: float = 0.0, flight_megabytes: float = 4.0) -> None:
    try:
        start(path, flight_seconds or None, flight_megabytes)
    except (OSError, AgentError) as exc:
        print(f"pyinstrument: the agent could not start: {exc}", file=sys.stderr)


_pusher: Optional[Pusher] = None
_pusher_settings: Optional[Dict[str, Any]] = None
_environment_read = False


def push_to_pyroscope(
    url: str,
    service_name: Optional[str] = None,
    period: float = 10.0,
    interval: float = 0.01,
    on_push: Optional[Callable[[Any], None]] = None,
    timeout: float = 5.0,
) -> Pusher:
    """Starts continuous profiling into the Pyroscope server at *url* (once; a second call
    returns the first pusher), each push given up after *timeout* seconds without an answer.
    A forked child pushes its own profiles."""
    global _pusher, _pusher_settings, _watching_forks, _route_node_types
    _import_what_answers_need()
    from pyinstrument import _async

    try:  # the engine's self-checked reading of contexts, for tasks' routes
        _route_node_types = _async.node_types()
    except RuntimeError:
        _route_node_types = None  # routes of threads only
    with _lock:
        if _pusher is None:
            name = service_name or os.path.basename(sys.argv[0] or "python") or "python"
            _pusher_settings = dict(
                url=url, service_name=name, period=period, interval=interval, on_push=on_push, timeout=timeout
            )
            _pusher = Pusher(**_pusher_settings)
            _pusher.start()
            if not _watching_forks:
                os.register_at_fork(after_in_child=_rearm_in_child)
                _watching_forks = True
        return _pusher


def signal_number(name: str) -> int:
    """A signal's number from its name (``USR2``, ``SIGUSR2``) or number."""
    import signal

    if name.isdigit():
        return int(name)
    upper = name.upper()
    try:
        return int(signal.Signals[upper if upper.startswith("SIG") else "SIG" + upper])
    except KeyError:
        raise AgentError(f"{name!r} is not a signal") from None


def signalled_path(pid: int, uid: Optional[int] = None) -> str:
    """Where process *pid* writes the recording a signal asked for."""
    return os.path.join(socket_directory(os.getuid() if uid is None else uid), f"signalled-{pid}.pyisession")


_recording_on_signal = threading.Event()


def listen_for_signal(number: int, seconds: float = 10.0) -> None:
    """On signal *number*, the process records itself for *seconds* and writes the session
    to :func:`signalled_path` (one recording at a time; from the main thread only, as
    Python runs signal handlers there, between two bytecodes)."""
    import signal

    def handler(received: int, frame: Any) -> None:
        if not _recording_on_signal.is_set():
            _recording_on_signal.set()
            threading.Thread(
                target=_record_on_signal, args=(seconds,), name=f"{_THREAD_NAME}-signal", daemon=True
            ).start()

    signal.signal(number, handler)


def _record_on_signal(seconds: float) -> None:
    try:
        session = record_here(seconds, 0.001)
        path = signalled_path(os.getpid())
        _private_directory(os.path.dirname(path))
        partial = f"{path}.{os.getpid()}.part"
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
            for chunk in session.to_file_chunks():
                file.write(chunk)
        os.replace(partial, path)  # whole, or not there
    except (OSError, AgentError) as exc:
        print(f"pyinstrument: the recording asked for by a signal could not be written: {exc}", file=sys.stderr)
    finally:
        _recording_on_signal.clear()


def _catches(pid: int, number: int) -> bool:
    """Whether process *pid* has a handler for signal *number* (the kernel's SigCgt mask)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (number - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def request_by_signal(pid: int, number: int, timeout: float) -> Any:
    """Signals process *pid* (armed with ``PYINSTRUMENT_AGENT_SIGNAL``) and waits up to
    *timeout* seconds for its recording; returns the session."""
    from pyinstrument.session import Session

    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        raise AgentError(f"no process {pid} is running") from None
    if not _catches(pid, number):
        raise AgentError(
            f"process {pid} does not catch signal {number}, which would end it: arm it with "
            "PYINSTRUMENT_AGENT_SIGNAL (or agent.listen_for_signal) first"
        )
    path = signalled_path(pid, uid)
    try:
        os.remove(path)  # one left from an earlier request
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise AgentError(f"cannot remove the earlier recording {path}: {exc.strerror}") from None
    try:
        os.kill(pid, number)
    except PermissionError:
        raise AgentError(f"permission denied signalling process {pid}: signal it as its user or as root") from None
    except ProcessLookupError:
        raise AgentError(f"no process {pid} is running") from None
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline or not os.path.exists(f"/proc/{pid}"):
            raise AgentError(
                f"process {pid} wrote no recording to {path} within {timeout:g} s: is it armed with "
                "PYINSTRUMENT_AGENT_SIGNAL for this signal, and is its main thread running Python code?"
            )
        time.sleep(0.05)
    try:
        return Session.load(path)
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot read the recording {path}: {exc}") from None
    finally:
        try:
            os.remove(path)
        except OSError:
            pass


def start_from_environment() -> None:
    """``PYINSTRUMENT_AGENT=1`` (the default socket) or ``=PATH`` arms the agent;
    ``PYINSTRUMENT_PYROSCOPE_URL`` (with ``PYINSTRUMENT_SERVICE_NAME``,
    ``PYINSTRUMENT_PUSH_SECONDS``, ``PYINSTRUMENT_PUSH_INTERVAL``) starts pushing to
    Pyroscope; ``PYINSTRUMENT_AGENT_SIGNAL=USR2`` (with ``PYINSTRUMENT_SIGNAL_SECONDS``)
    records on that signal. A failure is one line on stderr; the program runs on."""
    global _environment_read
    if _environment_read:
        return  # a venv whose lib64 links to lib has Python run the .pth file twice
    _environment_read = True
    value = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if value not in ("", "0"):
        try:
            flight = float(os.environ.get("PYINSTRUMENT_FLIGHT_SECONDS") or 0)
            megabytes = float(os.environ.get("PYINSTRUMENT_FLIGHT_MB") or 4.0)
        except ValueError:
            print("pyinstrument: PYINSTRUMENT_FLIGHT_SECONDS and _MB are numbers: no flight recorder", file=sys.stderr)
            flight, megabytes = 0.0, 4.0
        _start_quietly(None if value == "1" else value, flight, megabytes)
    signal_name = os.environ.get("PYINSTRUMENT_AGENT_SIGNAL")
    if signal_name:
        try:
            listen_for_signal(signal_number(signal_name), float(os.environ.get("PYINSTRUMENT_SIGNAL_SECONDS") or 10.0))
        except (AgentError, ValueError, OSError) as exc:
            print(f"pyinstrument: not listening for a signal: {exc}", file=sys.stderr)
    url = os.environ.get("PYINSTRUMENT_PYROSCOPE_URL")
    if url:
        try:
            push_to_pyroscope(
                url,
                os.environ.get("PYINSTRUMENT_SERVICE_NAME") or None,
                float(os.environ.get("PYINSTRUMENT_PUSH_SECONDS") or 10.0),
                float(os.environ.get("PYINSTRUMENT_PUSH_INTERVAL") or 0.01),
            )
        except (AgentError, ValueError) as exc:
            print(f"pyinstrument: not pushing to Pyroscope: {exc}", file=sys.stderr)


def request(target: str, duration: float, interval: float, flight: bool = False) -> Any:
    """Asks the agent of *target* (a pid, or a socket path) for a recording (or, with
    *flight*, its flight recorder's last seconds); returns the session. Raises
    AgentError with one line."""
    from pyinstrument.session import Session

    if target.isdigit():
        pid = int(target)
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            raise AgentError(f"no process {pid} is running") from None
        path = socket_path(pid, uid)
    else:
        path = target
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            client.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise AgentError(
                f"no agent listens at {path}: start the program with {ENVIRONMENT_VARIABLE}=1 "
                "in its environment, or call pyinstrument.agent.start() in it"
            ) from None
        except PermissionError:
            raise AgentError(
                f"permission denied connecting to {path}: the agent answers its own user and root"
            ) from None
        client.settimeout(duration + 60)
        client.sendall(json.dumps({"duration": duration, "interval": interval, "flight": flight}).encode() + b"\n")
        with tempfile.TemporaryDirectory(prefix="pyinstrument-") as directory:
            received = os.path.join(directory, "received.pyisession")
            with open(received, "wb") as file:
                status = _read_line(client)
                if not status:
                    raise AgentError(f"the agent at {path} closed the connection without an answer (did it end?)")
                if status != b"ok":
                    reason = status.decode("utf-8", "replace").partition(": ")[2] or "for no reason given"
                    raise AgentError(f"the agent refused: {reason}")
                while True:
                    piece = client.recv(1 << 16)
                    if not piece:
                        break
                    file.write(piece)
            try:
                return Session.load(received)
            except ValueError as exc:
                raise AgentError(f"the agent's answer is not a session: {exc}") from None
    except socket.timeout:
        raise AgentError(f"the agent at {path} did not answer in time") from None
    except OSError as exc:  # reset, broken pipe: the process ended, or its agent with it
        raise AgentError(f"the connection to the agent at {path} broke: {exc.strerror or exc}") from None
    finally:
        client.close()


def inject(pid: int, timeout: float = 10.0) -> str:
    """Starts the agent inside process *pid* with ``sys.remote_exec`` (3.14+, the same
    Python version on both sides); returns its socket's path once it listens."""
    remote_exec = getattr(sys, "remote_exec", None)
    if remote_exec is None:
        raise AgentError("--inject needs Python 3.14 or later (sys.remote_exec), on both sides")
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        raise AgentError(f"no process {pid} is running") from None
    path = socket_path(pid, uid)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import sys\n"
        f"sys.path.append({package_root!r}) if {package_root!r} not in sys.path else None\n"
        "import pyinstrument.agent\n"
        f"pyinstrument.agent.start({path!r})\n"
    )
    with tempfile.TemporaryDirectory(prefix="pyinstrument-inject-") as directory:
        script = os.path.join(directory, "start_agent.py")
        with open(script, "w") as file:
            file.write(code)
        os.chmod(directory, 0o755)  # the process may run as another user (we are root then)
        os.chmod(script, 0o644)
        try:
            remote_exec(pid, script)
        except PermissionError as exc:
            raise AgentError(f"permission denied injecting into process {pid} ({exc.strerror or exc})") from None
        except (OSError, RuntimeError) as exc:
            raise AgentError(f"cannot inject into process {pid}: {exc}") from None
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise AgentError(
                    f"the agent did not start in process {pid} within {timeout:g} s: its main thread must run "
                    f"Python code to start it, and import pyinstrument (from {package_root})"
                )
            time.sleep(0.02)
    return path


def _read_line(connection: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        piece = connection.recv(1)
        if not piece:
            break
        line += piece
    return line.rstrip(b"\n")
