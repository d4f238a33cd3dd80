"""pyinstrument --pid: recording and dumping a process that is already running."""

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator, List

import pytest
from helpers import FREE_THREADED

#: a program that says when it runs its known split: two thirds in `heavy`, one in `light`
KNOWN_SPLIT = """
import sys, time

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def heavy():
    spin(0.02)

def light():
    spin(0.01)

def main(seconds):
    end = time.perf_counter() + seconds
    print("running", flush=True)
    while time.perf_counter() < end:
        heavy()
        light()

main(float(sys.argv[1]))
print("done", flush=True)
"""

DEADLOCK = """
import threading, time

first, second = threading.Lock(), threading.Lock()
both_hold_one = threading.Barrier(2)

def take(one, other):
    one.acquire()
    both_hold_one.wait()
    other.acquire()

threads = [threading.Thread(target=take, args=(first, second), daemon=True),
           threading.Thread(target=take, args=(second, first), daemon=True)]
for thread in threads:
    thread.start()
while not (first.locked() and second.locked() and both_hold_one.n_waiting == 0):
    time.sleep(0.01)
print("running", flush=True)
for thread in threads:
    thread.join()
"""


def start_target(tmp_path: Path, source: str, *args: str, python: str = sys.executable, preexec=None):
    script = tmp_path / "target.py"
    script.write_text(textwrap.dedent(source))
    target = subprocess.Popen([python, str(script), *args], stdout=subprocess.PIPE, text=True, preexec_fn=preexec)
    assert target.stdout is not None
    assert target.stdout.readline() == "running\n"
    return target


@pytest.fixture
def targets() -> Iterator[List[subprocess.Popen]]:
    started: List[subprocess.Popen] = []
    yield started
    for target in started:
        target.kill()
        target.wait()


def pyinstrument(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyinstrument", *args], capture_output=True, text=True, timeout=120
    )


def shares_under(node: dict, name: str) -> float:
    """Time of every node called `name` in a JSON report's tree."""
    own = node["time"] if node["function"] == name else 0.0
    return own + sum(shares_under(child, name) for child in node.get("children", []))


def record_known_split(tmp_path: Path, target: subprocess.Popen) -> dict:
    """Records KNOWN_SPLIT's process for 1.5 s; checks the split; returns the JSON report."""
    out = tmp_path / "report.json"
    result = pyinstrument("--pid", str(target.pid), "--duration", "1.5", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    heavy, light = shares_under(report["root_frame"], "heavy"), shares_under(report["root_frame"], "light")
    assert heavy + light > 0.9 * 1.5, report
    assert 0.55 < heavy / (heavy + light) < 0.78, (heavy, light)
    return report


def test_a_running_program_is_recorded_and_goes_on(tmp_path, targets):
    target = start_target(tmp_path, KNOWN_SPLIT, "30")
    targets.append(target)
    record_known_split(tmp_path, target)
    assert target.poll() is None  # read, not stopped or killed


def test_the_header_names_the_process(tmp_path, targets):
    target = start_target(tmp_path, KNOWN_SPLIT, "30")
    targets.append(target)
    result = pyinstrument("--pid", str(target.pid), "--duration", "0.3")
    assert result.returncode == 0, result.stderr
    assert f"Process {target.pid}: {sys.executable} {tmp_path / 'target.py'} 30" in result.stdout
    assert "MainThread" in result.stdout and "heavy" in result.stdout


def test_a_target_that_ends_gives_the_report_of_what_was_seen(tmp_path, targets):
    target = start_target(tmp_path, KNOWN_SPLIT, "0.8")
    targets.append(target)
    result = pyinstrument("--pid", str(target.pid), "-r", "text")  # no --duration: until it ends
    assert result.returncode == 0, result.stderr
    assert "heavy" in result.stdout and "light" in result.stdout
    assert target.stdout.readline() == "done\n"


def test_dump_shows_both_threads_of_a_deadlock_waiting_on_their_locks(tmp_path, targets):
    target = start_target(tmp_path, DEADLOCK)
    targets.append(target)
    result = pyinstrument("--pid", str(target.pid), "--dump")
    assert result.returncode == 0, result.stderr
    blocks = [block for block in result.stdout.split("\n\n") if "(most recent call last)" in block]
    waiting = [block for block in blocks if "in take" in block]
    assert len(waiting) == 2, result.stdout
    line = textwrap.dedent(DEADLOCK).splitlines().index("    other.acquire()") + 1
    for block in waiting:
        assert block.splitlines()[-1] == "  in C: lock.acquire", result.stdout
        assert f'File "{tmp_path / "target.py"}", line {line}, in take' in block, result.stdout
    assert target.poll() is None


def test_no_such_process_is_one_line(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    result = pyinstrument("--pid", str(ended.pid), "--dump")
    assert result.returncode == 1
    assert result.stderr == f"pyinstrument: error: no process {ended.pid} is running\n"


def interpreters(free_threaded: bool = False) -> List[str]:
    """Every CPython 3.9-3.15 on this machine (tools/pythons.sh) of the GIL build, or of the
    free-threaded one (python3.13t)."""
    tool = Path(__file__).resolve().parent.parent / "tools" / "pythons.sh"
    found = subprocess.run([str(tool)], capture_output=True, text=True, check=True).stdout.split()
    return [python for python in found if python.endswith("t") == free_threaded]


def version_of(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()


def other_pythons() -> List[str]:
    """Interpreters of other versions to attach to: the next older and newer ones, and the
    oldest and newest (so 3.9 -> 3.15 and 3.15 -> 3.9): each version is attached to from
    at least two others across the suite's runs, at a fraction of every pair's time."""
    if FREE_THREADED:
        return []  # it reads only its own build: test_builds_with_and_without_the_gil_refuse_each_other
    versions = [(tuple(int(part) for part in version_of(python).split(".")[:2]), python) for python in interpreters()]
    own = sys.version_info[:2]
    below = [python for version, python in versions if version < own]
    above = [python for version, python in versions if version > own]
    return list(dict.fromkeys(below[-1:] + above[:1] + below[:1] + above[-1:]))


OTHER_PYTHONS = other_pythons()


@pytest.mark.parametrize("other", OTHER_PYTHONS, ids=[os.path.basename(python) for python in OTHER_PYTHONS])
def test_a_process_of_another_python_version_is_recorded(tmp_path, targets, other):
    target = start_target(tmp_path, KNOWN_SPLIT, "30", python=other)
    targets.append(target)
    report = record_known_split(tmp_path, target)
    # the header names the target's Python, not ours (3.9/3.10 tell only their minor version)
    text = pyinstrument("--pid", str(target.pid), "--duration", "0.2")
    major_minor = ".".join(version_of(other).split(".")[:2])
    assert f"Python {major_minor}" in text.stdout and f"Python {platform.python_version()}" not in text.stdout
    assert shares_under(report["root_frame"], "perf_counter") > 0.5, report  # the C function at the leaf
    assert target.poll() is None


@pytest.mark.parametrize("other", OTHER_PYTHONS, ids=[os.path.basename(python) for python in OTHER_PYTHONS])
def test_a_deadlock_in_another_python_version_is_dumped(tmp_path, targets, other):
    target = start_target(tmp_path, DEADLOCK, python=other)
    targets.append(target)
    result = pyinstrument("--pid", str(target.pid), "--dump")
    assert result.returncode == 0, result.stderr
    blocks = [block for block in result.stdout.split("\n\n") if "in take" in block]
    line = textwrap.dedent(DEADLOCK).splitlines().index("    other.acquire()") + 1
    assert len(blocks) == 2, result.stdout
    for block in blocks:  # the C function too: its version's bytecode is analysed with its own table
        assert block.splitlines()[-1] == "  in C: lock.acquire", result.stdout
        assert f'File "{tmp_path / "target.py"}", line {line}, in take' in block, result.stdout


def old_python():
    import glob

    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.[5-8].*/bin/python3.[5-8]")))
    return found[-1] if found else None


OTHER_BUILD = interpreters(free_threaded=not FREE_THREADED)


@pytest.mark.skipif(not OTHER_BUILD, reason="no interpreter of the other build (GIL / free-threaded) here")
def test_builds_with_and_without_the_gil_refuse_each_other_in_one_line(tmp_path, targets):
    other = OTHER_BUILD[-1]
    target = start_target(tmp_path, KNOWN_SPLIT, "30", python=other)
    targets.append(target)
    result = pyinstrument("--pid", str(target.pid), "--dump")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"pyinstrument: error: process {target.pid}: it runs "), result.stderr
    assert "attach with the pyinstrument installed for its interpreter" in result.stderr
    assert target.poll() is None


@pytest.mark.skipif(old_python() is None, reason="no Python older than 3.9 installed")
def test_a_python_older_than_3_9_is_refused_in_one_line(tmp_path, targets):
    target = start_target(tmp_path, KNOWN_SPLIT, "30", python=old_python())
    targets.append(target)
    result = pyinstrument("--pid", str(target.pid), "--dump")
    assert result.returncode == 1
    assert result.stderr.startswith(f"pyinstrument: error: process {target.pid}: it runs Python 3."), result
    assert "pyinstrument cannot read (it reads 3.9 to 3.15)" in result.stderr
    assert result.stderr.count("\n") == 1


def make_undumpable() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: only CAP_SYS_PTRACE may read it


@pytest.mark.skipif(not shutil.which("capsh") and os.geteuid() == 0, reason="needs capsh to drop CAP_SYS_PTRACE")
def test_a_refused_read_says_why_in_one_line(tmp_path, targets):
    target = start_target(tmp_path, KNOWN_SPLIT, "30", preexec=make_undumpable)
    targets.append(target)
    # root would be let in: without CAP_SYS_PTRACE it is refused, as another user is
    prefix = ["capsh", "--drop=cap_sys_ptrace", "--"] if os.geteuid() == 0 else []
    if prefix:
        result = subprocess.run(
            [*prefix, "-c", f"exec {sys.executable} -m pyinstrument --pid {target.pid} --dump"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    else:
        result = pyinstrument("--pid", str(target.pid), "--dump")
    assert result.returncode == 1
    assert result.stderr.startswith(f"pyinstrument: error: permission denied reading process {target.pid}"), result
    assert "CAP_SYS_PTRACE" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pid", "abc"], "'abc' is not a process id"),
        (["--pid", "0"], "'0' is not a process id"),
        (["--duration", "1", "-c", "pass"], "--duration goes with --pid PID"),
        (["--dump", "-c", "pass"], "--dump goes with --pid PID"),
        (["--pid", "1", "--dump", "--duration", "1"], "--dump prints the stacks once: it takes no --duration"),
        (["--pid", "1", "-c", "pass"], "-c and --pid cannot be used together"),
    ],
)
def test_attach_usage_errors_are_one_line(args, message):
    result = pyinstrument(*args)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_attach_waits_until_ctrl_c(tmp_path, targets):
    import signal

    target = start_target(tmp_path, KNOWN_SPLIT, "30")
    targets.append(target)
    attacher = subprocess.Popen(
        [sys.executable, "-m", "pyinstrument", "--pid", str(target.pid)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert attacher.stderr is not None
    assert attacher.stderr.readline() == f"pyinstrument: recording process {target.pid} until Ctrl-C\n"
    time.sleep(0.5)  # something to record; the report's content is not timed
    attacher.send_signal(signal.SIGINT)
    stdout, stderr = attacher.communicate(timeout=60)
    assert attacher.returncode == 0, stderr
    assert "heavy" in stdout


@pytest.mark.skipif(sys.version_info < (3, 14), reason="threads take their kernel names from threading from 3.14")
def test_threads_are_named_as_the_program_names_them(tmp_path, targets):
    target = start_target(
        tmp_path,
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(60,), name="uploader", daemon=True).start()
        print("running", flush=True)
        time.sleep(60)
        """,
    )
    targets.append(target)
    result = pyinstrument("--pid", str(target.pid), "--dump")
    assert result.returncode == 0, result.stderr
    assert "uploader (most recent call last):" in result.stdout
    assert "MainThread (most recent call last):" in result.stdout  # asleep: the GIL is released


TOP_TARGETS = [sys.executable] + OTHER_PYTHONS[-1:]


@pytest.mark.parametrize("python", TOP_TARGETS, ids=["this-python", "another-version"][: len(TOP_TARGETS)])
def test_top_prints_the_table_after_each_refresh_when_not_in_a_terminal(tmp_path, targets, python):
    target = start_target(tmp_path, KNOWN_SPLIT, "30", python=python)
    targets.append(target)
    result = pyinstrument("--pid", str(target.pid), "--top", "--duration", "2.5")
    assert result.returncode == 0, result.stderr
    tables = [block for block in result.stdout.split("\n\n") if "pyinstrument top" in block]
    assert len(tables) >= 2, result.stdout
    total_share = {}
    for row in tables[-1].splitlines()[4:]:
        columns = row.split()
        total_share[columns[-2]] = float(columns[1])
    assert total_share["spin"] > 90, tables[-1]
    assert 55 < total_share["heavy"] < 78 and 22 < total_share["light"] < 45, tables[-1]


class Screen:
    """A program run in a real terminal (tmux), its screen read back."""

    def __init__(self, command: str) -> None:
        self.server = f"pyinstrument-test-{os.getpid()}"
        subprocess.run(
            ["tmux", "-L", self.server, "new-session", "-d", "-x", "150", "-y", "40", "-s", "top",
             f"{command}; echo EXITED $?; sleep 60"],
            check=True,
        )

    def text(self) -> str:
        return subprocess.run(
            ["tmux", "-L", self.server, "capture-pane", "-p", "-t", "top"], capture_output=True, text=True
        ).stdout

    def wait_for(self, words: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            if words in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{words!r} never appeared on the screen:\n{self.text()}")

    def press(self, key: str) -> None:
        subprocess.run(["tmux", "-L", self.server, "send-keys", "-t", "top", key], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True)


@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux for a real terminal")
def test_top_in_a_terminal_answers_keys(tmp_path, targets):
    target = start_target(tmp_path, KNOWN_SPLIT, "60")
    targets.append(target)
    screen = Screen(f"{sys.executable} -m pyinstrument --pid {target.pid} --top")
    try:
        screen.wait_for("target.py:9")  # heavy, named after a refresh
        assert "sort: own · last refresh · thread: all" in screen.text()
        screen.press("t")
        by_total = screen.wait_for("sort: total")
        functions = [line.split()[-2] for line in by_total.splitlines()[4:] if ".py:" in line]
        assert functions[:3] == ["<module>", "main", "spin"] or functions[:3] == ["main", "<module>", "spin"], by_total
        screen.press("w")
        screen.wait_for("sort: total · since start")
        screen.press("h")
        screen.wait_for("thread: MainThread")
        screen.press("q")
        screen.wait_for("EXITED 0")
    finally:
        screen.close()
    assert target.poll() is None


@pytest.mark.skipif(not getattr(sys, "_is_gil_enabled", lambda: True)(), reason="a free-threaded build has no GIL")
def test_dump_names_the_thread_holding_the_gil(tmp_path, targets):
    target = start_target(
        tmp_path,
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        print("running", flush=True)
        while True:  # holds the GIL but when the interpreter hands it over (every 5 ms)
            pass
        """,
    )
    targets.append(target)
    result = pyinstrument("--pid", str(target.pid), "--dump")
    assert result.returncode == 0, result.stderr
    assert "MainThread (holds the GIL; most recent call last):" in result.stdout, result.stdout
    assert result.stdout.count("holds the GIL") == 1


def test_a_process_that_runs_no_python_is_named_as_such():
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        result = pyinstrument("--pid", str(sleeper.pid), "--dump")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.returncode == 1
    # (the kernel names the file it runs: coreutils' sleep, wherever the distribution put it)
    assert result.stderr.startswith(f"pyinstrument: error: process {sleeper.pid} does not run Python (it runs /")
    assert result.stderr.rstrip().endswith("sleep)") and result.stderr.count("\n") == 1, result.stderr
