"""Child processes of a profiled program: unaffected by default; with --subprocesses
(or Profiler(subprocesses=True)) profiled and merged, one subtree per process."""

from __future__ import annotations

import atexit
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Dict, Set

import pytest

from pyinstrument import Profiler
from pyinstrument.frame import IDENTIFIER_SEP, THREAD_FILE
from pyinstrument.session import Session
from helpers import REFUSE_PROCESS_VM_READV, run_pyinstrument

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os, signal, subprocess, sys, time

    def pool_busy_worker_fn(n):
        t = time.perf_counter()
        while time.perf_counter() - t < 0.1:
            pass
        return n * 2, os.getpid()

    def sigterm_default():
        return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

    CHILD = '''
    import os, sys, time
    def subprocess_busy_child_fn():
        t = time.perf_counter()
        while time.perf_counter() - t < 0.1:
            pass
    subprocess_busy_child_fn()
    print("child", os.environ.get("PYINSTRUMENT_CHILD_DIR") is not None, "pyinstrument" in sys.modules)
    '''

    if __name__ == "__main__":
        for method in ("spawn", "fork"):
            with multiprocessing.get_context(method).Pool(2) as pool:
                results = pool.map(pool_busy_worker_fn, range(4))
                print(method, [result for result, _ in results])
                print(method, "tasks ran in", *sorted({pid for _, pid in results}))
                print(method, "SIGTERM default:", pool.apply(sigterm_default))
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
        print(out.stdout.strip())
    """
)


def _env(tmp_path: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # to see that no temporary directory is left: a short path, as multiprocessing's
    # forkserver puts a socket there (at most 107 bytes; tmp_path under xdist is longer)
    shown = tmp_path / "tmp"
    if not shown.exists():
        short = tempfile.mkdtemp(prefix="pyi-")
        atexit.register(shutil.rmtree, short, True)
        shown.symlink_to(short)
    env["TMPDIR"] = str(shown.resolve())
    return env


def _run_cli(tmp_path: Path, *options: str) -> "subprocess.CompletedProcess[str]":
    (tmp_path / "script.py").write_text(SCRIPT)
    return run_pyinstrument(*options, "script.py", cwd=tmp_path, env=_env(tmp_path), check=False)


def _task_pids(stdout: str) -> Set[str]:
    """The pool workers that ran tasks, as the script says (a worker that started late
    may run none, and one still starting when its pool ends never gets profiled)."""
    return {pid for line in stdout.splitlines() if " tasks ran in " in line for pid in line.split()[4:]}


def _process_functions(session: Session) -> Dict[str, Set[str]]:
    """For each process root of the session: the functions sampled under it."""
    result: Dict[str, Set[str]] = {}
    marker = IDENTIFIER_SEP + THREAD_FILE + IDENTIFIER_SEP
    for stack, _ in session.frame_records:
        assert marker in stack[0], "every record is under a process root"
        functions = result.setdefault(stack[0], set())
        functions.update(frame.split(IDENTIFIER_SEP)[0] for frame in stack[1:])
    return result


def test_cli_subprocesses_merges_pool_workers_and_subprocess(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "--subprocesses", "-r", "session", "-o", "out.pyisession")
    assert result.returncode == 0, result.stderr
    session = Session.load(tmp_path / "out.pyisession")
    processes = _process_functions(session)
    # the parent, the pool workers (2 spawn, 2 fork: those that ran tasks at least), the
    # python -c child: each in a subtree of its own
    task_pids = _task_pids(result.stdout)
    assert 2 + len(task_pids) <= len(processes) <= 6, list(processes)
    assert all(root.startswith("process ") for root in processes)
    assert len({root.rsplit(IDENTIFIER_SEP, 1)[1] for root in processes}) == len(processes)
    # exactly the workers that ran tasks show them
    workers = [root for root, functions in processes.items() if "pool_busy_worker_fn" in functions]
    assert {root.rsplit(IDENTIFIER_SEP, 1)[1] for root in workers} == task_pids
    children = [root for root, functions in processes.items() if "subprocess_busy_child_fn" in functions]
    assert len(children) == 1
    # the workers' busy time is there: each pool ran 4 tasks of 0.1 s
    busy = sum(t for stack, t in session.frame_records if stack[0] in workers and any(
        f.startswith("pool_busy_worker_fn" + IDENTIFIER_SEP) for f in stack))
    assert 0.7 < busy < 1.2
    # the program itself behaved as usual (the child saw the settings: it was profiled)
    assert "spawn [0, 2, 4, 6]" in result.stdout
    assert "fork [0, 2, 4, 6]" in result.stdout
    assert "child True True" in result.stdout
    assert "spawn SIGTERM default: False" in result.stdout  # workers save their profile at SIGTERM
    assert "fork SIGTERM default: False" in result.stdout
    assert os.listdir(tmp_path / "tmp") == []


def test_cli_subprocesses_text_report_shows_one_subtree_per_process(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "--subprocesses", "-r", "text", "--show-all")
    assert result.returncode == 0, result.stderr
    assert re.search(r"process \d+: Program: script\.py", result.stdout)  # the parent
    for pid in _task_pids(result.stdout):
        assert f"process {pid}: script.py" in result.stdout  # each pool worker that ran tasks
    assert re.search(r"process \d+: -c", result.stdout)  # the python -c child
    assert "pool_busy_worker_fn" in result.stdout
    assert "subprocess_busy_child_fn" in result.stdout


def test_cli_without_subprocesses_children_run_unaffected(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "-r", "session", "-o", "out.pyisession")
    assert result.returncode == 0, result.stderr
    assert "spawn [0, 2, 4, 6]" in result.stdout
    assert "fork [0, 2, 4, 6]" in result.stdout
    assert "child False False" in result.stdout  # no bootstrap ran in the child
    assert "spawn SIGTERM default: True" in result.stdout  # and no handler in the workers
    assert "fork SIGTERM default: True" in result.stdout
    session = Session.load(tmp_path / "out.pyisession")
    functions = {frame.split(IDENTIFIER_SEP)[0] for stack, _ in session.frame_records for frame in stack}
    assert "pool_busy_worker_fn" not in functions
    assert "subprocess_busy_child_fn" not in functions
    assert not any(name.startswith("process ") for name in functions)
    assert os.listdir(tmp_path / "tmp") == []


def _forked_busy_fn() -> None:
    import time

    t = time.perf_counter()
    while time.perf_counter() - t < 0.1:
        pass


def _fork_and_wait() -> int:
    """Fork a child that runs _forked_busy_fn and ends with os._exit(7), as
    multiprocessing's forked workers end."""
    pid = os.fork()
    if pid == 0:
        try:
            _forked_busy_fn()
        finally:
            os._exit(7)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7
    return pid


EXIT_FROM_A_THREAD = textwrap.dedent(
    """
    import os, subprocess, sys

    CHILD = (
        "import os, threading, time\\n"
        "def child_busy_in_thread_fn():\\n"
        "    t = time.perf_counter()\\n"
        "    while time.perf_counter() - t < 0.1:\\n"
        "        pass\\n"
        "    os._exit(3)\\n"
        "threading.Thread(target=child_busy_in_thread_fn).start()\\n"
        "threading.Event().wait()\\n"
    )
    print("child exited", subprocess.run([sys.executable, "-c", CHILD]).returncode)
    """
)


def test_child_that_exits_from_another_thread_still_saves_its_profile(tmp_path: Path) -> None:
    # os._exit in a thread other than the one that started the child's profiler: stop()
    # refuses other threads (as upstream's), our own saving must not
    (tmp_path / "script.py").write_text(EXIT_FROM_A_THREAD)
    result = subprocess.run(
        [sys.executable, "-m", "pyinstrument", "--subprocesses", "-a", "-r", "session", "-o", "out.pyisession",
         "script.py"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "child exited 3" in result.stdout
    processes = _process_functions(Session.load(tmp_path / "out.pyisession"))
    assert any("child_busy_in_thread_fn" in functions for functions in processes.values()), processes


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with the sampling thread running
def test_api_subprocesses_profiles_a_forked_child() -> None:
    profiler = Profiler(subprocesses=True)
    profiler.start()
    child_pid = _fork_and_wait()
    session = profiler.stop()
    processes = _process_functions(session)
    assert len(processes) == 2
    (child_root,) = [root for root in processes if root.endswith(IDENTIFIER_SEP + str(child_pid))]
    assert "_forked_busy_fn" in processes[child_root]
    (parent_root,) = [root for root in processes if root.endswith(IDENTIFIER_SEP + str(os.getpid()))]
    assert "_forked_busy_fn" not in processes[parent_root]
    assert "PYINSTRUMENT_CHILD_DIR" not in os.environ
    assert "_child" not in os.environ.get("PYTHONPATH", "")  # the bootstrap directory is gone again
    # the tree shows one subtree per process
    root = session.root_frame()
    assert root is not None
    assert len(root.children) == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_api_default_leaves_forked_child_alone() -> None:
    profiler = Profiler()
    profiler.start()
    _fork_and_wait()
    session = profiler.stop()
    for stack, _ in session.frame_records:
        assert not any(frame.startswith("_forked_busy_fn" + IDENTIFIER_SEP) for frame in stack)
        assert not any(frame.startswith("process ") for frame in stack)


def test_subprocess_keeps_its_own_sitecustomize(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.environ['THEIR_SITECUSTOMIZE_RAN'] = 'yes'\n")
    code = textwrap.dedent(
        f"""
        import os, subprocess, sys
        from pyinstrument import Profiler
        p = Profiler(subprocesses=True)
        p.start()
        env = dict(os.environ, PYTHONPATH=os.environ["PYTHONPATH"] + os.pathsep + {str(site)!r})
        out = subprocess.run([sys.executable, "-c", "import os, sys, time; print(os.environ.get('THEIR_SITECUSTOMIZE_RAN')); "
                              "t = time.perf_counter()\\nwhile time.perf_counter() - t < 0.2: pass\\n"
                              "print('pyinstrument' in sys.modules, any('_child' in p for p in sys.path))"],
                             env=env, capture_output=True, text=True, check=True).stdout.split()
        s = p.stop()
        roots = {{stack[0] for stack, _ in s.frame_records if stack}}
        print(*out, len(roots))
        """
    )
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # their sitecustomize ran, the child was profiled (our bootstrap directory is off its
    # sys.path again), and it shows as a second process
    assert result.stdout.split() == ["yes", "True", "False", "2"]


# --- SIGTERM: a profiled child saves its profile, and always dies of it ---------------------

BLOCKED_CHILD = textwrap.dedent(
    """
    import signal, sys, threading, time

    def blocked_when_sigterm_came():
        time.sleep(0.1)  # something to save
        lock = threading.Lock()
        lock.acquire()
        lock.acquire()  # blocks for good: only a signal can end this process

    def sigterm_while_main_thread_blocked():
        # Python's SIGTERM handler runs in the main thread once the signal interrupts
        # what it waits in; a SIGTERM that came just before it blocked interrupts nothing
        # (how a pool worker once outlived Pool.terminate()). Here the signal goes to
        # this thread, once the main thread is inside the second acquire (this thread
        # holds the GIL while it looks, so the main thread cannot be about to get there).
        main, code = threading.main_thread().ident, blocked_when_sigterm_came.__code__
        while True:
            frame = sys._current_frames().get(main)
            if frame is not None and frame.f_code is code and frame.f_lineno == code.co_firstlineno + 4:
                break
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    threading.Thread(target=sigterm_while_main_thread_blocked, daemon=True).start()
    blocked_when_sigterm_came()
    """
)


def test_child_blocked_when_sigterm_came_saves_and_dies_of_it(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(BLOCKED_CHILD)
    profiler = Profiler(subprocesses=True)
    profiler.start()
    try:
        child = subprocess.run([sys.executable, "child.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    finally:
        session = profiler.stop()
    assert child.returncode == -15, child.stderr  # died of SIGTERM, as without pyinstrument
    assert child.stderr == ""
    (child_root,) = [root for root in _process_functions(session) if "child.py" in root]
    assert "blocked_when_sigterm_came" in _process_functions(session)[child_root]


def test_child_whose_save_never_ends_still_dies_of_sigterm(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(textwrap.dedent(
        """
        import threading, time
        import pyinstrument.session

        def save_that_never_ends(filename, data):
            time.sleep(3)  # longer than a handler has to start (2 s), shorter than a save has (10 s)
            open("saved-for-3-s", "w").close()
            threading.Event().wait()

        pyinstrument.session.write_report_file = save_that_never_ends
        threading.Event().wait(0.1)  # something to save
        print("ready", flush=True)
        threading.Event().wait()
        """
    ))
    profiler = Profiler(subprocesses=True)
    profiler.start()
    try:
        child = subprocess.Popen([sys.executable, "child.py"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        child.terminate()
        assert child.wait(timeout=60) == -15
    finally:
        profiler.stop()
    assert (tmp_path / "saved-for-3-s").exists()


POOL_TERMINATE_SCRIPT = textwrap.dedent(
    """
    import ctypes, multiprocessing, sys, threading, time

    def init(queue):
        global started
        started = queue

    # each says it has started once it has been at it for 0.1 s (so it has samples there)

    def busy_forever_fn():
        t = time.perf_counter()
        while time.perf_counter() - t < 0.1:
            pass
        started.put("busy_forever_fn")
        while True:
            pass

    def blocked_forever_fn():
        threading.Event().wait(0.1)
        started.put("blocked_forever_fn")
        threading.Event().wait()

    def wedged_forever_fn():
        libc = ctypes.CDLL(None)
        mutex = ctypes.create_string_buffer(64)
        libc.pthread_mutex_lock(mutex)
        threading.Thread(target=say_started_once_stuck, args=(sys._getframe().f_lineno + 1,)).start()
        libc.pthread_mutex_lock(mutex)  # a default mutex locked twice: stuck in C, deaf to signals

    def say_started_once_stuck(line):
        # the main thread at that line while this thread holds the GIL: it is in the C call
        main, code = threading.main_thread().ident, wedged_forever_fn.__code__
        while True:
            frame = sys._current_frames().get(main)
            if frame is not None and frame.f_code is code and frame.f_lineno == line:
                break
        started.put("wedged_forever_fn")

    def task(name):
        globals()[name]()

    if __name__ == "__main__":
        context = multiprocessing.get_context(sys.argv[1])
        queue = context.SimpleQueue()
        names = ["busy_forever_fn", "blocked_forever_fn", "wedged_forever_fn"]
        pool = context.Pool(3, initializer=init, initargs=(queue,))
        pool.map_async(task, names, chunksize=1)
        print("started", sorted(queue.get() for _ in names))
        pool.terminate()
        pool.join()
        print("terminated")
    """
)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_cli_pool_terminate_ends_busy_blocked_and_wedged_workers(tmp_path: Path, method: str) -> None:
    (tmp_path / "script.py").write_text(POOL_TERMINATE_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "pyinstrument", "--subprocesses", "-r", "session", "-o", "out.pyisession",
         "script.py", method],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Pool.terminate() returned: every worker died of its SIGTERM, the wedged one too
    assert result.stdout.splitlines() == [
        "started ['blocked_forever_fn', 'busy_forever_fn', 'wedged_forever_fn']",
        "terminated",
    ]
    assert result.stderr == ""
    processes = _process_functions(Session.load(tmp_path / "out.pyisession"))
    # what the busy and the blocked worker were doing when terminated, each in its process
    (busy,) = [root for root, functions in processes.items() if "busy_forever_fn" in functions]
    (blocked,) = [root for root, functions in processes.items() if "blocked_forever_fn" in functions]
    assert busy != blocked
    # the wedged worker could not run Python again to save its profile: it is left out
    assert not any("wedged_forever_fn" in functions for functions in processes.values())


def test_children_forked_after_profiling_ended_run_unaffected(tmp_path: Path) -> None:
    # the forkserver, started while profiling, is a profiled child: it forks the
    # workers of the second pool too, after profiling ended
    (tmp_path / "script.py").write_text(textwrap.dedent(
        """
        import multiprocessing, os, signal
        from pyinstrument import Profiler

        def unaffected():
            return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL and os._exit.__module__ == "posix"

        if __name__ == "__main__":
            context = multiprocessing.get_context("forkserver")
            with Profiler(subprocesses=True):
                with context.Pool(1) as pool:
                    print("while profiling", pool.apply(unaffected))
            with context.Pool(1) as pool:
                print("after profiling", pool.apply(unaffected))
        """
    ))
    result = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["while profiling False", "after profiling True"]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp filter is written for x86_64")
def test_children_in_a_sandbox_are_profiled_and_say_nothing(tmp_path: Path) -> None:
    # where process_vm_readv is refused the parent says once that it samples from a
    # Python thread; its children do the same, silently
    code = REFUSE_PROCESS_VM_READV + textwrap.dedent(
        """
        import subprocess, sys
        from pyinstrument import Profiler

        with Profiler(subprocesses=True) as profiler:
            child = subprocess.run([sys.executable, "-c", "import time; time.sleep(0.1)"],
                                   capture_output=True, text=True)
        roots = {stack[0] for stack, _ in profiler.last_session.frame_records}
        print(child.returncode, repr(child.stderr), len(roots))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "''", "2"]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # the parent's notice
