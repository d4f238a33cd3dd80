"""The ``pyinstrument`` command line.

    pyinstrument [options] scriptfile [arg] ...
    pyinstrument [options] -m module [arg] ...
    pyinstrument [options] -c program [arg] ...
    python -m pyinstrument ...

The program runs exactly as it would under plain ``python`` (same ``sys.argv``,
``sys.path[0]``, ``__main__`` module, working directory and exit status) while the
sampling engine records it; the report is written when it ends, however it ends.

At import time this module takes from the rest of the package only the renderer
registry and the option parsing it shares with the web middlewares and the magic
(``pyinstrument.renderers.registry``, ``.options``); the profiler is imported when a
program is run.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Optional, Sequence, Tuple

from pyinstrument.cli.arguments import (  # noqa: F401 (the command line's API, as before the split)
    DEFAULT_TARGET_DESCRIPTION,
    PROG,
    USAGE,
    CommandLine,
    UsageError,
    check_target_description,
    format_help,
    guess_renderer_name,
    parse_command_line,
)
from pyinstrument.cli.output import (  # noqa: F401
    ReportNotWritten,
    _wants_color,
    check_output,
    create_renderer,
    get_renderer_class,
    load_previous_session,
    load_session_file,
    remember_session_for_load_prev,
    write_report,
)
from pyinstrument.cli.target import (  # noqa: F401
    EngineMissing,
    ProfilerFailed,
    Target,
    _exec_target,
    make_target,
    report_exception,
    run_profiled,
    set_path0,
)

# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def _error(message: str, status: int = 2) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def _version_text() -> str:
    try:
        from pyinstrument import __version__ as version
    except ImportError:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("pyinstrument")
        except Exception:  # noqa: BLE001 -- any failure means: unknown
            version = "(unknown version)"
    import platform

    return f"pyinstrument {version}, on Python {platform.python_version()}"


def _suppress_in_excepthook(exc: BaseException) -> None:
    """Let *exc* reach the interpreter (so it exits the way it would for it) without
    printing it a second time."""
    previous = sys.excepthook

    def hook(exc_type: type, value: BaseException, tb: Any) -> None:
        if value is exc:
            return
        previous(exc_type, value, tb)

    sys.excepthook = hook


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console-script entry point: ``sys.exit(main())``."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        print(format_help(), end="", file=sys.stderr)
        return 2
    try:
        cli = parse_command_line(args)
    except UsageError as exc:
        return _error(str(exc))

    _flush_notes(cli)
    if cli.options.version:
        print(_version_text())
        return 0
    # PYINSTRUMENT_IGNORE_OVERHEAD_WARNING is accepted and needs nothing: the C engine
    # installs no per-call hook, so it has no overhead warning to silence.

    stdout = sys.stdout  # the report goes here even if the program replaces sys.stdout
    if cli.options.outfile:
        # relative to where pyinstrument was started, even if the program changes directory
        cli.options.outfile = os.path.abspath(cli.options.outfile)
    try:
        if cli.target_kind == "diff":
            return _diff(cli, stdout)
        budget = _Budget(cli) if cli.options.budget else None
        if cli.options.repeat is not None:
            return _repeat(cli, stdout, budget)
        if cli.target_kind == "pid" and cli.options.inject:
            return _ask_agent(cli, stdout, budget, inject=True)
        if cli.target_kind == "pid":
            return _attach(cli, stdout, budget)
        if cli.target_kind == "agent":
            return _ask_agent(cli, stdout, budget)
        if cli.target_kind in ("load", "load_prev"):
            set_path0(os.getcwd())  # so that -r can name a renderer in the working directory
            renderer = create_renderer(cli, stdout)
            check_output(cli, renderer, stdout)
            if cli.target_kind == "load":
                session = load_session_file(cli.target or "")
            else:
                session = load_previous_session(cli.target or "")
            _flush_notes(cli)
            try:
                session = session.phase(cli.phase) if cli.phase else session
            except LookupError as exc:
                raise UsageError(str(exc.args[0])) from None
            try:
                write_report(cli, _for_repeat_set(cli, renderer, session), session, stdout, from_run=False)
            except KeyboardInterrupt:
                return _rendering_interrupted(None)
            return budget.check(session) if budget else 0

        prepared = _prepare(cli, stdout)
        if prepared is None:
            return 1
        target, renderer = prepared
        session, outcome = run_profiled(cli, target)
    except UsageError as exc:
        return _error(str(exc), exc.exit_status)
    except (EngineMissing, ProfilerFailed, ReportNotWritten) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1

    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    try:
        session = _phase_of_run(cli, session)
        write_report(cli, renderer, session, stdout, from_run=True)
    except ReportNotWritten as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        if outcome is None:
            return 1
    except KeyboardInterrupt:
        return _rendering_interrupted(session)

    budget_status = budget.check(session) if budget else 0
    if outcome is None:
        return budget_status
    if isinstance(outcome, SystemExit):
        raise SystemExit(outcome.code)
    try:
        stdout.flush()
    except (OSError, ValueError):
        pass
    report_exception(outcome)
    if isinstance(outcome, KeyboardInterrupt):
        # re-raised so the interpreter ends the process as it does for Ctrl-C
        # (killed by SIGINT, after the usual clean-up); already printed above
        _suppress_in_excepthook(outcome)
        raise outcome
    return 1


def _attach(cli: CommandLine, stdout: Any, budget: Optional["_Budget"]) -> int:
    """``--pid PID``: a running process recorded (or, with --dump, its stacks printed)."""
    from pyinstrument import top
    from pyinstrument.attach import AttachError, Recorder, command_line, current_stacks, format_dump, record, running

    pid = int(cli.target or 0)
    set_path0(os.getcwd())  # so that -r can name a renderer in the working directory
    try:
        if cli.options.dump:
            print(format_dump(pid, current_stacks(pid)), file=stdout)
            return 0
        if cli.options.top:
            title = f"pyinstrument top · process {pid}: {' '.join(command_line(pid))}"
            recorder = Recorder(pid, cli.options.interval)
            top.run(recorder, lambda: running(pid), title, 1.0, cli.options.duration, out=stdout)
            return 0
        renderer = create_renderer(cli, stdout)
        check_output(cli, renderer, stdout)
        until = f"for {cli.options.duration:g} s" if cli.options.duration else "until Ctrl-C"
        print(f"{PROG}: recording process {pid} {until}", file=sys.stderr)
        session = record(pid, cli.options.interval, cli.options.duration)
    except AttachError as exc:
        return _error(str(exc), 1)
    try:
        write_report(cli, renderer, _phase_of_run(cli, session), stdout, from_run=True)
    except KeyboardInterrupt:
        return _rendering_interrupted(session)
    return budget.check(session) if budget else 0


def _ask_agent(cli: CommandLine, stdout: Any, budget: Optional["_Budget"], inject: bool = False) -> int:
    """``--agent PID``: the process's agent records itself; its session is rendered here.
    With ``--pid PID --inject``, the agent is first started in the process."""
    from pyinstrument import agent

    set_path0(os.getcwd())
    renderer = create_renderer(cli, stdout)
    check_output(cli, renderer, stdout)
    duration = cli.options.duration or 10.0
    try:
        target = agent.inject(int(cli.target or 0)) if inject else cli.target or ""
        if cli.options.signal is not None:
            print(f"{PROG}: signalling process {cli.target} to record itself", file=sys.stderr)
            number = agent.signal_number(cli.options.signal)
            session = agent.request_by_signal(int(target), number, duration + 30)
        elif cli.options.flight:
            print(f"{PROG}: asking the agent of {cli.target} for its flight recorder", file=sys.stderr)
            session = agent.request(target, duration, cli.options.interval, flight=True)
        else:
            print(f"{PROG}: asking the agent of {cli.target} to record itself for {duration:g} s", file=sys.stderr)
            session = agent.request(target, duration, cli.options.interval)
    except agent.AgentError as exc:
        return _error(str(exc), 1)
    except KeyboardInterrupt:
        return _error("interrupted before the agent answered", 130)
    try:
        write_report(cli, renderer, _phase_of_run(cli, session), stdout, from_run=True)
    except KeyboardInterrupt:
        return _rendering_interrupted(session)
    return budget.check(session) if budget else 0


def _diff(cli: CommandLine, stdout: Any) -> int:
    """``--diff BEFORE AFTER``: the two sessions compared, as text or JSON."""
    from pyinstrument.diff import DiffReport

    outfile = cli.options.outfile
    for path in cli.options.diff:
        if outfile and os.path.isfile(outfile) and os.path.isfile(path) and os.path.samefile(outfile, path):
            raise UsageError(
                f"will not write the report over {path!r}, a session being compared; choose another -o file"
            )
    name = cli.renderer_name
    if name not in DiffReport.FORMATS:
        raise UsageError(f"--diff writes text, json or html, not {name}")
    before, after = (load_session_file(path) for path in cli.options.diff)
    if cli.phase:
        try:
            before, after = before.phase(cli.phase), after.phase(cli.phase)
        except LookupError as exc:
            raise UsageError(str(exc.args[0])) from None
    color = cli.options.color
    if color is None:
        color = not outfile and _wants_color(stdout)
    report = DiffReport(before, after, output=name, color=bool(color))
    check_output(cli, report, stdout)
    try:
        write_report(cli, report, None, stdout, from_run=False)
    except ReportNotWritten as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _prepare(cli: CommandLine, stdout: Any) -> Optional[Tuple[Target, Any]]:
    """The program to run, found and compiled, and the renderer of its report; None when
    it does not compile (reported as python reports it, without running anything)."""
    target = make_target(cli)
    try:
        target.prepare()
    except SyntaxError as exc:
        exc.__traceback__ = None
        sys.excepthook(type(exc), exc, None)
        return None
    # the renderer is imported with the program's sys.path, so -r can name a renderer
    # that lives beside the script
    renderer = create_renderer(cli, stdout, target.own_code_regex())
    check_output(cli, renderer, stdout)
    _flush_notes(cli)
    return target, renderer


class _Budget:
    """``--budget FILE`` (with ``--baseline``, ``--budget-report``): its rules, read before
    anything runs, and checked on the session afterwards."""

    def __init__(self, cli: CommandLine) -> None:
        from pyinstrument import budget

        self.cli = cli
        self.path = cli.options.budget
        try:
            self.rules = budget.load(self.path)
        except budget.BudgetError as exc:
            raise UsageError(str(exc)) from None
        self.baseline = load_session_file(cli.options.baseline) if cli.options.baseline else None
        if budget.needs_baseline(self.rules) and self.baseline is None:
            raise UsageError(f"{self.path} has max_growth rules, which compare with a baseline: give --baseline FILE")
        report = cli.options.budget_report
        if report is not None:
            report = cli.options.budget_report = os.path.abspath(report)
            if not report.endswith((".xml", ".md")):
                raise UsageError("--budget-report writes JUnit XML (FILE.xml) or Markdown (FILE.md)")
            if not os.path.isdir(os.path.dirname(report)):
                raise UsageError(f"cannot write {report!r}: its directory does not exist")

    def check(self, session: Any) -> int:
        """Print the verdicts (and write the budget report): exit status 3 when one failed."""
        from pyinstrument import budget
        from pyinstrument._files import write_report_file

        verdicts = budget.check(self.rules, session, self.baseline)
        print(f"{PROG}: " + budget.table(verdicts, self.path), end="", file=sys.stderr)
        report = self.cli.options.budget_report
        if report:
            text = (
                budget.junit(verdicts, self.path) if report.endswith(".xml") else budget.markdown(verdicts, self.path)
            )
            try:
                write_report_file(report, text.encode("utf-8"))
            except OSError as exc:
                print(f"{PROG}: error: can't write {report!r}: {exc.strerror or exc}", file=sys.stderr)
                return 1
        return 3 if budget.failed(verdicts) else 0


def _phase_of_run(cli: CommandLine, session: Any) -> Any:
    """-p phase=NAME: that phase of the run; a run without it is kept for --load-prev."""
    if not cli.phase:
        return session
    try:
        return session.phase(cli.phase)
    except LookupError as exc:
        identifier = remember_session_for_load_prev(session)
        kept = f"; the profile is kept: pyinstrument --load-prev {identifier}" if identifier else ""
        raise ReportNotWritten(f"{exc.args[0]}{kept}") from None


def _for_repeat_set(cli: CommandLine, renderer: Any, session: Any) -> Any:
    """A repeat set's text and JSON reports are the repeat report; the other formats show
    its runs added up."""
    if getattr(session, "runs", None) and cli.renderer_name in ("text", "json"):
        from pyinstrument.repeat import RepeatReport

        return RepeatReport(as_json=cli.renderer_name == "json")
    return renderer


def _repeat(cli: CommandLine, stdout: Any, budget: Optional[_Budget]) -> int:
    """``--repeat N``: the program run N times, reported as one repeat set."""
    from pyinstrument.cli.repeat import run_repeated

    prepared = _prepare(cli, stdout)  # a missing script or module is one error here, not N
    if prepared is None:
        return 1
    _, renderer = prepared
    session, status = run_repeated(cli, cli.options.repeat)
    if session is None:
        return status
    try:
        session = _phase_of_run(cli, session)
        write_report(cli, _for_repeat_set(cli, renderer, session), session, stdout, from_run=True)
    except ReportNotWritten as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return status or 1
    except KeyboardInterrupt:
        return _rendering_interrupted(session)
    budget_status = budget.check(session) if budget else 0
    return status or budget_status


def _rendering_interrupted(session: Any) -> int:
    """Ctrl-C while the report was being made: one line, and the profile (when it
    comes from this run) kept for --load-prev; exit status 130, as a shell gives it."""
    message = "rendering the report was interrupted"
    if session is not None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not lose it
        try:
            identifier = remember_session_for_load_prev(session)
        finally:
            signal.signal(signal.SIGINT, previous)
        if identifier:
            message += f"; the profile is kept: pyinstrument --load-prev {identifier} [options]"
    print(f"{PROG}: {message}", file=sys.stderr)
    return 130


def _flush_notes(cli: CommandLine) -> None:
    for note in cli.notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    del cli.notes[:]


if __name__ == "__main__":
    sys.exit(main())
