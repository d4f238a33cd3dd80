"""Tests of the command line (src/pyinstrument/cli/, entered through __main__.py).

The first part tests argument parsing in-process: ``parse_command_line`` and ``main``
through ``__main__.py``, loaded from the source tree's file (it takes the parser from
``pyinstrument.cli``).

The rest runs ``python -m pyinstrument`` in subprocesses on small scripts written to
tmp_path, and compares what the script sees and how the process ends with the same
script run by plain ``python``. Those tests need the engine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, Optional

import pytest
from helpers import REPO, SRC, clean_env, run_pyinstrument, write

CLI_FILE = SRC / "pyinstrument" / "__main__.py"


# ---------------------------------------------------------------------------------------
# Parsing, in-process
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("_pyinstrument_cli_under_test", CLI_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_stop_at_the_script_name(cli):
    parsed = cli.parse_command_line(["-t", "--show-all", "script.py", "-t", "--help", "-o", "x"])
    assert parsed.target_kind == "script"
    assert parsed.target == "script.py"
    assert parsed.target_args == ["-t", "--help", "-o", "x"]
    assert parsed.options.timeline is True
    assert parsed.options.show_all is True
    assert parsed.options.outfile is None


def test_module_and_program_end_the_options(cli):
    parsed = cli.parse_command_line(["-m", "http.server", "--version", "-c", "x"])
    assert (parsed.target_kind, parsed.target) == ("module", "http.server")
    assert parsed.target_args == ["--version", "-c", "x"]
    assert parsed.options.version is False

    parsed = cli.parse_command_line(["-i", "0.01", "-c", "print(1)", "-m", "a"])
    assert (parsed.target_kind, parsed.target, parsed.target_args) == ("program", "print(1)", ["-m", "a"])
    assert parsed.options.interval == 0.01


@pytest.mark.parametrize(
    "argv, kind, target, args, timeline, interval",
    [
        (["-tm", "mod", "a"], "module", "mod", ["a"], True, 0.001),
        (["-mmod"], "module", "mod", [], False, 0.001),
        (["-ti0.01", "s.py"], "script", "s.py", [], True, 0.01),
        (["-ti", "0.5", "s.py", "-i"], "script", "s.py", ["-i"], True, 0.5),
        (["--interval=0.002", "--", "-weird.py", "x"], "script", "-weird.py", ["x"], False, 0.002),
        (["-cpass", "--", "y"], "program", "pass", ["--", "y"], False, 0.001),
    ],
)
def test_short_option_clusters_and_separators(cli, argv, kind, target, args, timeline, interval):
    parsed = cli.parse_command_line(argv)
    assert (parsed.target_kind, parsed.target, parsed.target_args) == (kind, target, args)
    assert parsed.options.timeline is timeline
    assert parsed.options.interval == interval


def test_option_values_may_start_with_a_dash(cli):
    parsed = cli.parse_command_line(["-o", "-out.txt", "--hide-regex", "-x", "s.py"])
    assert parsed.options.outfile == "-out.txt"
    assert parsed.options.hide_regex == "-x"


def test_unique_prefixes_of_long_options(cli):
    parsed = cli.parse_command_line(["--out=r.html", "--time", "s.py"])
    assert parsed.options.outfile == "r.html"
    assert parsed.options.timeline is True
    assert parsed.renderer_name == "html"


def test_all_the_flags(cli):
    parsed = cli.parse_command_line([
        "--from-path", "-r", "json", "-o", "o.json", "--target-description", "T {args}",
        "--hide", "*/lib/*", "--show-regex", "mine", "--no-unicode", "--color",
        "-a", "--use-timing-thread", "s.py",
    ])
    options = parsed.options
    assert options.from_path and options.all_threads and options.use_timing_thread
    assert (options.renderer, options.outfile) == ("json", "o.json")
    assert (options.hide, options.show_regex) == ("*/lib/*", "mine")
    assert (options.unicode, options.color) == (False, True)
    assert parsed.target_description() == "T s.py"


def test_unicode_and_color_default_to_autodetect_and_last_one_wins(cli):
    parsed = cli.parse_command_line(["s.py"])
    assert (parsed.options.unicode, parsed.options.color) == (None, None)
    parsed = cli.parse_command_line(["--color", "--no-color", "--no-unicode", "--unicode", "s.py"])
    assert (parsed.options.unicode, parsed.options.color) == (True, False)


@pytest.mark.parametrize(
    "outfile, renderer",
    [
        (None, "text"),
        ("out.txt", "text"),
        ("out", "text"),
        ("out.html", "html"),
        ("OUT.HTM", "html"),
        ("out.json", "json"),
        ("out.speedscope.json", "speedscope"),
        ("out.pyisession", "session"),
        ("out.pstats", "pstats"),
        ("out.collapsed", "collapsed"),
        ("Flame.SVG", "flamegraph"),
        ("out.firefox.json", "firefox"),
        ("out.trace.json", "chrometrace"),
        ("out.pb.gz", "pprof"),
        ("out.gz", "text"),
    ],
)
def test_renderer_is_guessed_from_the_output_file(cli, outfile, renderer):
    argv = (["-o", outfile] if outfile else []) + ["s.py"]
    assert cli.parse_command_line(argv).renderer_name == renderer


def test_explicit_renderer_wins_over_the_extension(cli):
    assert cli.parse_command_line(["-o", "x.html", "-r", "text", "s.py"]).renderer_name == "text"


def test_render_options(cli):
    parsed = cli.parse_command_line([
        "-p", "time=percent_of_total", "-p", "flat", "-p", "short_mode=false",
        "-p", "processor_options.filter_threshold=0", "-p", "processor_options.hide_regex=a.*",
        "-p", 'extra={"a": [1, 2]}', "-p", "name=", "s.py",
    ])
    assert parsed.render_options == {
        "time": "percent_of_total",
        "flat": True,
        "short_mode": False,
        "processor_options": {"filter_threshold": 0, "hide_regex": "a.*"},
        "extra": {"a": [1, 2]},
        "name": "",
    }


def test_deprecated_spellings_are_accepted_with_a_note(cli):
    parsed = cli.parse_command_line(["--html", "--setprofile", "s.py"])
    assert parsed.renderer_name == "html"
    assert len(parsed.notes) == 2
    assert any("--html" in note for note in parsed.notes)
    assert any("--setprofile" in note for note in parsed.notes)


def test_version_needs_no_target(cli):
    assert cli.parse_command_line(["--version"]).options.version is True


def test_description_args(cli):
    assert cli.parse_command_line(["s.py", "a", "b"]).target_description() == "Program: s.py a b"
    assert cli.parse_command_line(["-m", "pkg.mod", "a"]).target_description() == "Program: pkg.mod a"
    assert cli.parse_command_line(["-c", "pass", "a"]).target_description() == "Program: -c a"
    described = cli.parse_command_line(["--target-description", "{{x}} {args!r}", "s.py"])
    assert described.target_description() == "{x} 's.py'"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bogus", "s.py"], "unrecognized option --bogus"),
        (["-x", "s.py"], "unrecognized option -x"),
        (["--sho", "x", "s.py"], "ambiguous option"),
        (["--show", "a", "--show-all", "s.py"], "not allowed with"),
        (["--show", "a", "--show-regex", "b", "s.py"], "not allowed with"),
        (["--show-regex", "a", "--show-all", "s.py"], "not allowed with"),
        (["--hide", "a", "--hide-regex", "b", "s.py"], "not allowed with"),
        (["--target-description", "{foo}", "s.py"], "Unknown placeholder"),
        (["--target-description", "{}", "s.py"], "Empty placeholder"),
        (["--target-description", "{0}", "s.py"], "Unknown placeholder"),
        (["--target-description", "oops {", "s.py"], "--target-description"),
        (["-i", "0", "s.py"], "interval"),
        (["-i", "-1", "s.py"], "interval"),
        (["-i", "fast", "s.py"], "interval"),
        (["-o"], "needs a value"),
        (["-m"], "needs a value"),
        (["--timeline=yes", "s.py"], "does not take a value"),
        (["-t"], "nothing to profile"),
        (["--load", "a.pyisession", "s.py"], "cannot be used together"),
        (["--load", "a.pyisession", "--load-prev", "x"], "cannot be used together"),
        (["--load-prev", "x", "-c", "pass"], "cannot be used together"),
        (["--from-path", "-m", "x"], "--from-path"),
        (["-p", "=1", "s.py"], "render option"),
        (["-p", "a=1", "-p", "a.b=2", "s.py"], "render option"),
        (["--html", "-r", "json", "s.py"], "--html"),
        (["--"], "after '--'"),
    ],
)
def test_usage_errors(cli, argv, message):
    with pytest.raises(cli.UsageError) as info:
        cli.parse_command_line(argv)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_usage_errors_print_one_line_and_return_2(cli, capsys):
    assert cli.main(["--bogus", "s.py"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "pyinstrument: error: unrecognized option --bogus\n"


def test_no_arguments_prints_help_and_returns_2(cli, capsys):
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: pyinstrument [options] scriptfile [arg] ...")
    assert "--render-option" in captured.err


def test_help_lists_every_option(cli, capsys):
    with pytest.raises(SystemExit) as info:
        cli.parse_command_line(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ["-m MODULE", "-c PROGRAM", "--load", "--load-prev", "--from-path", "--outfile",
                 "--renderer", "--render-option", "--timeline", "--target-description", "--hide",
                 "--hide-regex", "--show", "--show-regex", "--show-all", "--unicode", "--no-unicode",
                 "--color", "--no-color", "--interval", "--all-threads", "--use-timing-thread"]:
        assert flag in out
    assert "--setprofile" not in out  # accepted, but no longer advertised


# ---------------------------------------------------------------------------------------
# Running programs, in subprocesses
# ---------------------------------------------------------------------------------------


# The subprocesses use the pyinstrument this interpreter finds (an installed build, or
# src/ on PYTHONPATH); only when it finds none is src/ added (an in-place build).
def pyinstrument(*args: str, cwd: Path, env: Optional[Dict[str, str]] = None, **kwargs) -> subprocess.CompletedProcess:
    return run_pyinstrument(*args, cwd=cwd, env=clean_env(env), check=False, **kwargs)


def python(*args: str, cwd: Path, env: Optional[Dict[str, str]] = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd, env=clean_env(env), capture_output=True, text=True, timeout=120, **kwargs,
    )


SHOW_ENVIRONMENT = """
    import json, os, sys
    def busy():
        total = 0
        for i in range(20000):
            total += i * i
        return total
    busy()
    print("ENV:" + json.dumps({
        "argv": sys.argv,
        "path0": sys.path[0],
        "path": sys.path,
        "name": __name__,
        "cwd": os.getcwd(),
        "file": globals().get("__file__"),
        "package": globals().get("__package__"),
        "spec": getattr(globals().get("__spec__"), "name", None),
        "main_is_this_module": sys.modules["__main__"].__dict__ is globals(),
    }))
"""


def seen_environment(result: subprocess.CompletedProcess) -> dict:
    lines = [line for line in result.stdout.splitlines() if line.startswith("ENV:")]
    assert len(lines) == 1, result.stdout + result.stderr
    return json.loads(lines[0][len("ENV:"):])


def test_script_runs_as_under_plain_python(tmp_path):
    write(tmp_path / "app" / "show.py", SHOW_ENVIRONMENT)
    args = ["app/show.py", "-t", "--help", "x y"]
    plain = python(*args, cwd=tmp_path)
    profiled = pyinstrument(*args, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert profiled.returncode == 0, profiled.stderr
    seen = seen_environment(profiled)
    assert seen == seen_environment(plain)
    assert seen["argv"] == args
    assert seen["path0"] == str((tmp_path / "app").resolve())
    assert seen["name"] == "__main__"
    assert seen["main_is_this_module"] is True
    assert "Program: app/show.py -t --help x y" in profiled.stdout


def test_script_in_the_working_directory(tmp_path):
    write(tmp_path / "show.py", SHOW_ENVIRONMENT)
    plain = python("show.py", cwd=tmp_path)
    profiled = pyinstrument("show.py", cwd=tmp_path)
    assert seen_environment(profiled) == seen_environment(plain)


def test_module_runs_as_under_plain_python(tmp_path):
    write(tmp_path / "showmod.py", SHOW_ENVIRONMENT)
    plain = python("-m", "showmod", "a", "--b", cwd=tmp_path)
    profiled = pyinstrument("-m", "showmod", "a", "--b", cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    seen = seen_environment(profiled)
    assert seen == seen_environment(plain)
    assert seen["argv"] == [str(tmp_path / "showmod.py"), "a", "--b"]
    assert seen["spec"] == "showmod"
    assert "Program: showmod a --b" in profiled.stdout


def test_the_module_run_with_dash_m_is_shown_as_the_program_s_code(tmp_path):
    # installed among the libraries, as `pip` or `black` are: folded away before
    packages = tmp_path / "lib" / "site-packages"
    write(packages / "spinpkg" / "__init__.py", "")
    write(packages / "spinpkg" / "__main__.py", "from spinpkg.work import main\nmain()\n")
    write(packages / "spinpkg" / "work.py", """
        import time

        def main():
            outer()

        def outer():
            middle()

        def middle():
            # until the thread has run 0.3 s, however busy the machine is
            end = time.thread_time() + 0.3
            while time.thread_time() < end:
                pass
    """)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(packages), clean_env().get("PYTHONPATH")]))}

    result = pyinstrument("-m", "spinpkg", cwd=tmp_path, env=env)

    assert result.returncode == 0, result.stderr
    for function in ("main", "outer", "middle"):
        assert f"{function}  spinpkg/work.py" in result.stdout, result.stdout
    # --hide/--show given: they decide, as for any program
    folded = pyinstrument("--show", "*/no-such-dir/*", "-m", "spinpkg", cwd=tmp_path, env=env)
    assert "outer  spinpkg/work.py" not in folded.stdout, folded.stdout


def test_package_main_runs_as_under_plain_python(tmp_path):
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "__main__.py", SHOW_ENVIRONMENT)
    plain = python("-m", "pkg", "z", cwd=tmp_path)
    profiled = pyinstrument("-m", "pkg", "z", cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    seen = seen_environment(profiled)
    assert seen == seen_environment(plain)
    assert seen["package"] == "pkg"


def test_program_runs_as_under_plain_python(tmp_path):
    program = textwrap.dedent(SHOW_ENVIRONMENT)
    plain = python("-c", program, "a", "-b", cwd=tmp_path)
    profiled = pyinstrument("-c", program, "a", "-b", cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    seen = seen_environment(profiled)
    assert seen == seen_environment(plain)
    assert seen["argv"] == ["-c", "a", "-b"]
    assert seen["path0"] == ""


def test_directory_with_main_runs_as_under_plain_python(tmp_path):
    write(tmp_path / "tool" / "__main__.py", SHOW_ENVIRONMENT)
    plain = python("tool", "q", cwd=tmp_path)
    profiled = pyinstrument("tool", "q", cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    assert seen_environment(profiled) == seen_environment(plain)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="PYTHONSAFEPATH is new in Python 3.11")
def test_safe_path_mode_adds_no_path_entry(tmp_path):
    write(tmp_path / "app" / "show.py", SHOW_ENVIRONMENT)
    plain = python("app/show.py", cwd=tmp_path, env={"PYTHONSAFEPATH": "1"})
    profiled = pyinstrument("app/show.py", cwd=tmp_path, env={"PYTHONSAFEPATH": "1"})
    assert profiled.returncode == 0, profiled.stderr
    seen = seen_environment(profiled)
    assert seen == seen_environment(plain)
    assert str(tmp_path / "app") not in seen["path"]


def test_program_from_standard_input(tmp_path):
    program = textwrap.dedent(SHOW_ENVIRONMENT)
    plain = python("-", "a", cwd=tmp_path, input=program)
    profiled = pyinstrument("-", "a", cwd=tmp_path, input=program)
    assert profiled.returncode == 0, profiled.stderr
    assert seen_environment(profiled) == seen_environment(plain)


def test_from_path(tmp_path):
    write(tmp_path / "bin" / "mytool", SHOW_ENVIRONMENT)
    path = os.pathsep.join([str(tmp_path / "bin"), os.environ.get("PATH", "")])
    profiled = pyinstrument("--from-path", "mytool", "a", cwd=tmp_path, env={"PATH": path})
    assert profiled.returncode == 0, profiled.stderr
    seen = seen_environment(profiled)
    assert seen["argv"] == [str(tmp_path / "bin" / "mytool"), "a"]
    assert seen["path0"] == str((tmp_path / "bin").resolve())


def test_console_script_runs_as_under_plain_python(tmp_path):
    script = Path(sys.executable).with_name("pyinstrument")
    if not script.exists():
        pytest.skip("no pyinstrument console script installed beside this interpreter")
    write(tmp_path / "show.py", SHOW_ENVIRONMENT)
    plain = python("show.py", "1", cwd=tmp_path)
    profiled = subprocess.run([str(script), "show.py", "1"], cwd=tmp_path, env=clean_env(),
                              capture_output=True, text=True, timeout=120)
    assert profiled.returncode == 0, profiled.stderr
    assert seen_environment(profiled) == seen_environment(plain)


def test_pickling_and_spawned_processes_find_the_main_module(tmp_path):
    write(tmp_path / "mp.py", """
        import multiprocessing, pickle

        class Point:
            def __init__(self, x):
                self.x = x

        def square(n):
            return n * n

        if __name__ == "__main__":
            assert pickle.loads(pickle.dumps(Point(3))).x == 3
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                print("RESULT", pool.map(square, [2, 3]))
    """)
    profiled = pyinstrument("mp.py", cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    assert "RESULT [4, 9]" in profiled.stdout


def test_successful_run_prints_the_report(tmp_path):
    write(tmp_path / "work.py", """
        import time
        def wait():
            time.sleep(0.2)
        print("program output")
        wait()
    """)
    result = pyinstrument("work.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("program output") < result.stdout.index("Program: work.py")
    assert "wait" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("code, status", [("sys.exit(3)", 3), ("sys.exit(0)", 0), ("sys.exit()", 0),
                                          ("raise SystemExit(7)", 7), ("sys.exit(None)", 0)])
def test_exit_status_is_kept(tmp_path, code, status):
    write(tmp_path / "ends.py", f"""
        import sys, time
        time.sleep(0.05)
        {code}
    """)
    plain = python("ends.py", cwd=tmp_path)
    profiled = pyinstrument("ends.py", cwd=tmp_path)
    assert plain.returncode == status
    assert profiled.returncode == status
    assert "Program: ends.py" in profiled.stdout
    assert profiled.stderr == plain.stderr == ""


def test_exit_with_a_message(tmp_path):
    write(tmp_path / "ends.py", """
        import sys
        sys.exit("giving up")
    """)
    plain = python("ends.py", cwd=tmp_path)
    profiled = pyinstrument("ends.py", cwd=tmp_path)
    assert (profiled.returncode, profiled.stderr) == (plain.returncode, plain.stderr) == (1, "giving up\n")
    assert "Program: ends.py" in profiled.stdout


def test_exit_status_from_program_and_module(tmp_path):
    assert pyinstrument("-c", "import sys; sys.exit(4)", cwd=tmp_path).returncode == 4
    write(tmp_path / "quitter.py", "raise SystemExit(5)\n")
    assert pyinstrument("-m", "quitter", cwd=tmp_path).returncode == 5


FAILING = """
    import time

    def inner():
        time.sleep(0.1)
        raise ValueError("something broke")

    def outer():
        inner()

    print("before the error")
    outer()
"""


def test_uncaught_exception_prints_report_then_traceback(tmp_path):
    write(tmp_path / "fails.py", FAILING)
    plain = python("fails.py", cwd=tmp_path)
    profiled = pyinstrument("fails.py", cwd=tmp_path)
    assert plain.returncode == profiled.returncode == 1
    assert "Program: fails.py" in profiled.stdout
    # the traceback is exactly python's: no frame of pyinstrument or runpy
    assert profiled.stderr == plain.stderr
    assert "ValueError: something broke" in profiled.stderr
    assert "pyinstrument" not in profiled.stderr

    merged = subprocess.run([sys.executable, "-m", "pyinstrument", "fails.py"], cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    out = merged.stdout
    assert out.index("before the error") < out.index("Program: fails.py") < out.index("Traceback")


def test_uncaught_exception_in_module_and_program(tmp_path):
    write(tmp_path / "failmod.py", FAILING)
    plain = python("-m", "failmod", cwd=tmp_path)
    profiled = pyinstrument("-m", "failmod", cwd=tmp_path)
    assert profiled.returncode == 1
    assert "ValueError: something broke" in profiled.stderr
    assert "pyinstrument" not in profiled.stderr
    assert "Program: failmod" in profiled.stdout
    # python -m shows runpy's frames, we show only the program's
    assert profiled.stderr.splitlines()[-4:] == plain.stderr.splitlines()[-4:]

    profiled = pyinstrument("-c", "1 / 0", cwd=tmp_path)
    plain = python("-c", "1 / 0", cwd=tmp_path)
    assert profiled.returncode == 1
    assert profiled.stderr == plain.stderr


def test_custom_excepthook_is_used(tmp_path):
    write(tmp_path / "hook.py", """
        import sys
        def hook(kind, value, tb):
            print("custom hook:", kind.__name__, value, file=sys.stderr)
        sys.excepthook = hook
        raise RuntimeError("x")
    """)
    profiled = pyinstrument("hook.py", cwd=tmp_path)
    assert profiled.returncode == 1
    assert profiled.stderr == "custom hook: RuntimeError x\n"


def test_syntax_error_is_reported_like_python(tmp_path):
    write(tmp_path / "broken.py", "x = (\n")
    plain = python("broken.py", cwd=tmp_path)
    profiled = pyinstrument("broken.py", cwd=tmp_path)
    assert profiled.returncode == plain.returncode == 1
    # (python 3.9 reports the position of an unexpected end of file a line later when
    # it reads the script itself; the message is the same)
    assert profiled.stderr.splitlines()[0] == f'  File "{tmp_path / "broken.py"}", line 1'
    assert profiled.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1]
    assert profiled.stdout == ""


@pytest.mark.parametrize("how", ["raise KeyboardInterrupt", "os.kill(os.getpid(), signal.SIGINT); time.sleep(5)"])
def test_keyboard_interrupt_prints_report_and_ends_like_python(tmp_path, how):
    write(tmp_path / "interrupted.py", f"""
        import os, signal, time
        time.sleep(0.1)
        {how}
    """)
    if "os.kill" in how and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("SIGINT is ignored here (a background job), so the program is not interrupted")
    plain = python("interrupted.py", cwd=tmp_path)
    profiled = pyinstrument("interrupted.py", cwd=tmp_path)
    # python ends by SIGINT after a KeyboardInterrupt (a shell shows 130)
    assert plain.returncode == -signal.SIGINT
    assert profiled.returncode == plain.returncode
    assert "Program: interrupted.py" in profiled.stdout
    assert profiled.stderr == plain.stderr
    assert profiled.stderr.count("Traceback") == 1


def test_ctrl_c_while_the_report_renders_keeps_the_session(tmp_path):
    # a renderer that says when it has started and then waits until it is interrupted
    write(tmp_path / "waiting.py", """
        import time
        from pyinstrument.renderers import Renderer

        class Renderer(Renderer):
            output_file_extension = "txt"

            def render(self, session):
                open("rendering", "w").close()
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    time.sleep(0.01)
                return "not interrupted\\n"
    """)
    write(tmp_path / "work.py", "pass\n")
    run = subprocess.Popen([sys.executable, "-m", "pyinstrument", "-r", "waiting.Renderer", "work.py"],
                           cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           # Ctrl-C reaches python even when these tests run with SIGINT ignored
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "rendering").exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, stderr
    assert stdout == ""
    match = re.fullmatch(r"pyinstrument: rendering the report was interrupted; the profile is kept: "
                         r"pyinstrument --load-prev (\S+) \[options\]\n", stderr)
    assert match, stderr
    again = pyinstrument("--load-prev", match.group(1), "-r", "json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["target_description"] == "Program: work.py"


def test_output_file(tmp_path):
    write(tmp_path / "work.py", """
        import time
        print("program output")
        time.sleep(0.1)
    """)
    result = pyinstrument("-o", "report.txt", "work.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "program output\n"
    report = (tmp_path / "report.txt").read_text(encoding="utf-8")
    assert "Program: work.py" in report
    assert "\x1b[" not in report  # no colour in files


def test_output_file_is_relative_to_where_pyinstrument_started(tmp_path):
    write(tmp_path / "elsewhere" / ".keep", "")
    write(tmp_path / "moves.py", """
        import os
        os.chdir("elsewhere")
    """)
    result = pyinstrument("-o", "report.txt", "moves.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Program: moves.py" in (tmp_path / "report.txt").read_text(encoding="utf-8")
    assert not (tmp_path / "elsewhere" / "report.txt").exists()


def test_report_reaches_stdout_when_the_program_replaces_or_closes_it(tmp_path):
    write(tmp_path / "swaps.py", """
        import io, sys
        sys.stdout = io.StringIO()
        print("swallowed")
    """)
    result = pyinstrument("swaps.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Program: swaps.py" in result.stdout
    assert "swallowed" not in result.stdout
    write(tmp_path / "closes.py", """
        import sys
        print("still here")
        sys.stdout.close()
    """)
    result = pyinstrument("closes.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("still here\n")
    assert "Program: closes.py" in result.stdout


def test_output_file_keeps_exit_status_and_traceback(tmp_path):
    write(tmp_path / "fails.py", FAILING)
    result = pyinstrument("--outfile=out.txt", "fails.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "ValueError: something broke" in result.stderr
    assert "Program: fails.py" in (tmp_path / "out.txt").read_text(encoding="utf-8")


def test_output_to_missing_directory_fails_before_running(tmp_path):
    write(tmp_path / "marker.py", "open('ran', 'w').close()\n")
    result = pyinstrument("-o", "no/such/dir/out.txt", "marker.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("pyinstrument: error: ")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "ran").exists()


def test_version(tmp_path):
    result = pyinstrument("--version", cwd=tmp_path)
    assert result.returncode == 0
    version = ".".join(map(str, sys.version_info[:3]))
    assert re.fullmatch(rf"pyinstrument \S+, on Python {re.escape(version)}\S*\n", result.stdout)


def test_no_arguments(tmp_path):
    result = pyinstrument(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: pyinstrument [options] scriptfile [arg] ...")
    assert result.stdout == ""


def test_help_option(tmp_path):
    result = pyinstrument("-h", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: pyinstrument [options] scriptfile [arg] ...")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus", "s.py"], "unrecognized option --bogus"),
        (["--show", "*/x/*", "--show-all", "s.py"], "not allowed with"),
        (["--hide", "a", "--hide-regex", "b", "s.py"], "not allowed with"),
        (["--target-description", "{nope}", "s.py"], "Unknown placeholder"),
        (["--target-description", "{}", "s.py"], "Empty placeholder"),
        (["-r", "no_such_module.Renderer", "s.py"], "no_such_module"),
        (["-r", "nonsense", "s.py"], "unknown renderer"),
        (["-p", "no_such_option=1", "s.py"], "no_such_option"),
        (["-i", "soon", "s.py"], "interval"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path, args, message):
    assert_one_line_error(tmp_path, args, message, 2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.py"], "can't open file 'missing.py'"),
        (["-m", "no_such_module_here"], "no_such_module_here"),
        (["-m", "pkg_without_main"], "package"),
        (["--from-path", "no-such-tool-anywhere"], "not found on PATH"),
    ],
)
def test_a_program_that_is_not_there_is_one_line_and_exit_1_as_upstream(tmp_path, args, message):
    assert_one_line_error(tmp_path, args, message, 1)


def assert_one_line_error(tmp_path, args, message, status):
    write(tmp_path / "s.py", "open('ran', 'w').close()\n")
    write(tmp_path / "pkg_without_main" / "__init__.py", "")
    result = pyinstrument(*args, cwd=tmp_path)
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pyinstrument: error: ")
    assert message in lines[0]
    assert not (tmp_path / "ran").exists()


def test_a_missing_script_that_names_a_module_or_a_command_gets_a_hint(tmp_path):
    write(tmp_path / "lib" / "mytool.py", "print('the module ran')\n")
    write(tmp_path / "bin" / "mycommand", "#!/usr/bin/env python3\nprint('the command ran')\n")
    (tmp_path / "bin" / "mycommand").chmod(0o755)
    write(tmp_path / "bin" / "notpython", "#!/bin/sh\necho not python\n")
    (tmp_path / "bin" / "notpython").chmod(0o755)
    (tmp_path / "work").mkdir()
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "lib"), clean_env().get("PYTHONPATH")])),
           "PATH": os.pathsep.join([str(tmp_path / "bin"), os.environ.get("PATH", "")])}
    hints = {
        "mytool": " (did you mean -m mytool?)",
        "mycommand": " (did you mean --from-path mycommand?)",
        "notpython": "",
        "no_such_thing": "",
    }
    for name, hint in hints.items():
        result = pyinstrument(name, cwd=tmp_path / "work", env=env)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == f"pyinstrument: error: can't open file {name!r}: no such file or directory{hint}\n"
    # the hints are right: each one runs the program
    assert "the module ran" in pyinstrument("-m", "mytool", cwd=tmp_path / "work", env=env).stdout
    assert "the command ran" in pyinstrument("--from-path", "mycommand", cwd=tmp_path / "work", env=env).stdout


def test_target_description(tmp_path):
    write(tmp_path / "s.py", "pass\n")
    result = pyinstrument("--target-description", "Nightly job [{args}]", "s.py", "--fast", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Nightly job [s.py --fast]" in result.stdout


def test_render_options_reach_the_renderer(tmp_path):
    write(tmp_path / "work.py", """
        import time
        time.sleep(0.1)
    """)
    result = pyinstrument("-p", "time=percent_of_total", "-p", "processor_options.filter_threshold=0",
                          "work.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "%" in result.stdout


def test_display_flags_are_accepted(tmp_path):
    write(tmp_path / "work.py", """
        import json, time
        json.dumps(list(range(1000)))
        time.sleep(0.05)
    """)
    for flags in (["--show-all"], ["--show", "*/json/*"], ["--show-regex", ".*json.*"], ["--hide", "*/json/*"],
                  ["--hide-regex", ".*json.*"], ["-t"], ["--unicode", "--color"], ["--no-unicode", "--no-color"],
                  ["-i", "0.01"], ["--use-timing-thread"]):
        result = pyinstrument(*flags, "work.py", cwd=tmp_path)
        assert result.returncode == 0, (flags, result.stderr)
        assert "Program: work.py" in result.stdout, flags


def test_text_output_is_plain_when_not_a_terminal(tmp_path):
    write(tmp_path / "work.py", "import time; time.sleep(0.05)\n")
    result = pyinstrument("work.py", cwd=tmp_path)
    assert "\x1b[" not in result.stdout
    forced = pyinstrument("--color", "work.py", cwd=tmp_path)
    assert "\x1b[" in forced.stdout


def run_in_terminal(*args: str, cwd: Path) -> "tuple[int, str]":
    """Run the CLI with its standard output on a pseudo-terminal."""
    pty = pytest.importorskip("pty")
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pyinstrument", *args], cwd=cwd, env=clean_env(),
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=60)
    finally:
        os.close(master)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace") + stderr


def test_colour_is_detected_from_a_terminal(tmp_path):
    write(tmp_path / "work.py", "import time; time.sleep(0.05)\n")
    returncode, output = run_in_terminal("work.py", cwd=tmp_path)
    assert returncode == 0, output
    assert "Program: work.py" in output
    assert "\x1b[" in output
    returncode, output = run_in_terminal("--no-color", "work.py", cwd=tmp_path)
    assert returncode == 0, output
    assert "\x1b[" not in output


@pytest.mark.parametrize("name", ["pstats", "pprof"])
def test_binary_output_is_not_written_to_a_terminal(tmp_path, name):
    write(tmp_path / "s.py", "open('ran', 'w').close()\n")
    returncode, output = run_in_terminal("-r", name, "s.py", cwd=tmp_path)
    assert returncode == 2
    assert f"pyinstrument: error: the {name} report is binary" in output
    assert not (tmp_path / "ran").exists()


def test_deprecated_setprofile(tmp_path):
    write(tmp_path / "s.py", "pass\n")
    result = pyinstrument("--setprofile", "s.py", cwd=tmp_path)
    assert result.returncode == 0
    assert len(result.stderr.splitlines()) == 1
    assert "deprecated" in result.stderr
    assert "Program: s.py" in result.stdout


def test_custom_renderer_by_dotted_path(tmp_path):
    write(tmp_path / "myrenderers.py", """
        from pyinstrument.renderers import Renderer

        class Greeting(Renderer):
            output_file_extension = "txt"

            def __init__(self, greeting="hello"):
                super().__init__()
                self.greeting = greeting

            def render(self, session):
                return f"{self.greeting}: {session.target_description}\\n"
    """)
    write(tmp_path / "s.py", "pass\n")
    result = pyinstrument("-r", "myrenderers.Greeting", "s.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello: Program: s.py\n"
    result = pyinstrument("-r", "myrenderers.Greeting", "-p", "greeting=hi there", "-o", "g.txt", "s.py",
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "g.txt").read_text() == "hi there: Program: s.py\n"


FILE_FORMATS = [  # -r name, an extension that selects it, whether the output is JSON
    ("json", "r.json", True),
    ("speedscope", "r.speedscope.json", True),
    ("session", "r.pyisession", True),
    ("pyisession", "r.pyisession", True),
    ("pstats", "r.pstats", False),
    ("collapsed", "r.collapsed", False),
    ("flamegraph", "r.svg", False),
    ("firefox", "r.firefox.json", True),
    ("chrometrace", "r.trace.json", True),
    ("pprof", "r.pb.gz", False),
]


def format_signature(data: bytes, is_json: bool):
    """What tells the formats apart: a JSON document's top-level keys, else the first bytes."""
    return sorted(json.loads(data.decode("utf-8"))) if is_json else data[:5]


@pytest.mark.parametrize("name, outfile, is_json", FILE_FORMATS)
def test_every_format_by_name_and_by_extension(tmp_path, name, outfile, is_json):
    write(tmp_path / "s.py", "import time; time.sleep(0.05)\n")
    signatures = []
    for args in (["-r", name, "-o", "out.bin"], ["-o", outfile]):
        result = pyinstrument(*args, "s.py", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        written = tmp_path / args[-1]
        signatures.append(format_signature(written.read_bytes(), is_json))
        written.unlink()
    assert signatures[0] == signatures[1]  # the extension chose the renderer -r names


def test_the_report_never_overwrites_its_input(tmp_path):
    write(tmp_path / "s.py", "pass\n")
    result = pyinstrument("-o", "./s.py", "s.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("pyinstrument: error: will not write the report over 's.py', the program to profile; "
                             "choose another -o file\n")
    assert (tmp_path / "s.py").read_text() == "pass\n"
    assert pyinstrument("-o", "run.pyisession", "s.py", cwd=tmp_path).returncode == 0
    session = (tmp_path / "run.pyisession").read_bytes()
    result = pyinstrument("--load", "run.pyisession", "-r", "text", "-o", "run.pyisession", cwd=tmp_path)
    assert result.returncode == 2
    assert "the session being loaded" in result.stderr
    assert (tmp_path / "run.pyisession").read_bytes() == session


def test_load_renders_a_saved_session(tmp_path):
    saved = python("-c", textwrap.dedent("""
        import time
        from pyinstrument import Profiler

        def record():
            profiler = Profiler()
            profiler.start(target_description="saved earlier")
            time.sleep(0.1)
            profiler.stop().save("run.pyisession")

        record()
    """), cwd=tmp_path)
    assert saved.returncode == 0, saved.stderr
    result = pyinstrument("--load", "run.pyisession", "-p", "time=percent_of_total", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "saved earlier" in result.stdout
    assert "sleep" in result.stdout
    assert "%" in result.stdout
    assert "--load-prev" not in result.stdout  # a loaded session is not kept again

    missing = pyinstrument("--load", "nothing-here.pyisession", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == "pyinstrument: error: can't open session file 'nothing-here.pyisession': no such file\n"


def test_all_threads(tmp_path):
    write(tmp_path / "threads.py", """
        import threading

        def crunch_numbers_in_thread():
            total = 0
            for i in range(3_000_000):
                total += i % 7
            return total

        worker = threading.Thread(target=crunch_numbers_in_thread)
        worker.start()
        worker.join()
    """)
    everything = pyinstrument("--all-threads", "threads.py", cwd=tmp_path)
    assert everything.returncode == 0, everything.stderr
    assert "crunch_numbers_in_thread" in everything.stdout
    main_only = pyinstrument("threads.py", cwd=tmp_path)
    assert main_only.returncode == 0, main_only.stderr
    assert "crunch_numbers_in_thread" not in main_only.stdout


def test_all_threads_waits_for_non_daemon_threads(tmp_path):
    write(tmp_path / "late.py", """
        import threading, time

        def finish_later():
            time.sleep(0.3)
            print("thread done", flush=True)

        threading.Thread(target=finish_later).start()
    """)
    result = pyinstrument("-a", "late.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("thread done") < result.stdout.index("Program: late.py")


def test_closed_output_pipe_is_not_an_error(tmp_path):
    write(tmp_path / "s.py", "import time; time.sleep(0.3)\n")
    proc = subprocess.Popen([sys.executable, "-m", "pyinstrument", "s.py"], cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head -0`
    try:
        stderr = proc.stderr.read().decode()
        returncode = proc.wait(timeout=120)
    finally:
        proc.stderr.close()
    assert returncode == 0
    assert "Traceback" not in stderr


def test_demo_example_runs(tmp_path):
    start = time.monotonic()
    result = pyinstrument("-a", str(REPO / "examples" / "demo.py"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sum of squared primes" in result.stdout
    assert "Worker.compute" in result.stdout
    assert time.monotonic() - start < 60
