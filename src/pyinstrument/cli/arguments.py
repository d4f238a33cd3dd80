"""The command line's arguments: the parser, and what it makes of them (:class:`CommandLine`)."""

from __future__ import annotations

import argparse
import string
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple

from pyinstrument.processors import GIL_WAIT_MODES
from pyinstrument.renderers import registry
from pyinstrument.renderers.options import parse_render_options
from pyinstrument.renderers.registry import RendererError

PROG = "pyinstrument"
USAGE = "pyinstrument [options] scriptfile [arg] ..."
DEFAULT_TARGET_DESCRIPTION = "Program: {args}"
MAX_REPEAT = 10_000  # the most runs a repeat set holds (pyinstrument.session.MAX_RUNS)


class UsageError(Exception):
    """A problem with the command line: reported as one line on stderr, exit status 2."""

    exit_status = 2


class TargetNotFound(UsageError):
    """The script, module or command to run does not exist: exit status 1, as upstream's
    (which scripts written for it may check)."""

    exit_status = 1


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but errors raise UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _OptionTable:
    """Records every option string as it is added to the parser, so that the scanner
    in :func:`_split_argv` knows which options take a value and what to call them."""

    def __init__(self) -> None:
        self.takes_value: Dict[str, bool] = {}  # option string -> consumes a value
        self.canonical: Dict[str, str] = {}  # option string -> its long spelling (or itself)
        self.long_options: List[str] = []

    def add(self, container: Any, *flags: str, **kwargs: Any) -> None:
        container.add_argument(*flags, **kwargs)
        action = kwargs.get("action", "store")
        takes_value = action in ("store", "append")
        longs = [f for f in flags if f.startswith("--")]
        for flag in flags:
            self.takes_value[flag] = takes_value
            self.canonical[flag] = longs[0] if longs else flag
        self.long_options.extend(longs)


def _process_id(text: str) -> int:
    try:
        pid = int(text)
    except ValueError:
        pid = 0
    if pid <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process id")
    return pid


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _run_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of runs, got {text!r}") from None
    if not 1 <= value <= MAX_REPEAT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_REPEAT}, got {text!r}")
    return value


def _build_parser() -> Tuple[_Parser, _OptionTable]:
    parser = _Parser(
        prog=PROG,
        usage=USAGE,
        description=(
            "Run a Python program and report where its time went. The program runs as "
            "it would under plain python; a sampling profiler written in C records its "
            "call stacks, and the report is written when the program ends."
        ),
        epilog=(
            "Options must come before the script name (or -m MODULE / -c PROGRAM): "
            "everything after it is passed to the program. "
            "Example: pyinstrument -r html -o report.html myscript.py --its-own-flag"
        ),
        add_help=False,
        allow_abbrev=False,
    )
    table = _OptionTable()
    add = table.add

    general = parser.add_argument_group("general")
    add(general, "-h", "--help", action="help", help="show this help and exit")
    add(general, "--version", action="store_true", help="show the pyinstrument and Python versions and exit")

    target = parser.add_argument_group("what to profile (one of, besides a script file)")
    add(
        target,
        "-m",
        dest="module",
        metavar="MODULE",
        help="run a library module as the program, like 'python -m MODULE'; the remaining arguments go to it",
    )
    add(
        target,
        "-c",
        dest="program",
        metavar="PROGRAM",
        help="run the program given as a string, like 'python -c PROGRAM'",
    )
    add(
        target,
        "--load",
        dest="load",
        metavar="FILENAME",
        help="do not run anything: render a session saved earlier (.pyisession)",
    )
    add(
        target,
        "--load-prev",
        dest="load_prev",
        metavar="IDENTIFIER",
        help="do not run anything: render one of the recent sessions kept by "
        "pyinstrument, by the identifier printed after its report",
    )
    add(
        target,
        "--diff",
        dest="diff",
        metavar="BEFORE AFTER",
        help="do not run anything: compare two saved sessions (.pyisession): each function's time "
        "and share before and after, biggest changes first (-r json: as JSON)",
    )
    add(
        target,
        "--pid",
        dest="pid",
        type=_process_id,
        metavar="PID",
        help="do not run anything: record process PID, already running the same Python as this "
        "pyinstrument, until Ctrl-C, --duration, or its end; it is read, never stopped (docs/attach.md)",
    )
    add(
        target,
        "--agent",
        dest="agent",
        metavar="PID_OR_SOCKET",
        help="do not run anything: ask the agent of a running process (armed by PYINSTRUMENT_AGENT=1 or "
        "pyinstrument.agent.start()) to record itself for --duration seconds (default 10); needs no ptrace rights",
    )
    add(
        target,
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help="with --pid: stop recording after SECONDS",
    )
    add(
        target,
        "--dump",
        action="store_true",
        help="with --pid: print every thread's current stack once, like a traceback, and exit",
    )
    add(
        target,
        "--inject",
        action="store_true",
        help="with --pid (Python 3.14+ on both sides): start pyinstrument's in-process sampler inside the "
        "process (sys.remote_exec) and record there, instead of reading it from outside",
    )
    add(
        target,
        "--signal",
        metavar="SIGNAL",
        help="with --agent PID: ask by a signal (USR2...) instead of the socket, for a process armed with "
        "PYINSTRUMENT_AGENT_SIGNAL; it records for its PYINSTRUMENT_SIGNAL_SECONDS",
    )
    add(
        target,
        "--flight",
        action="store_true",
        help="with --agent: the agent's flight recorder (PYINSTRUMENT_FLIGHT_SECONDS=N): the last N seconds, "
        "recorded before you asked",
    )
    add(
        target,
        "--top",
        action="store_true",
        help="with --pid: a live view of its functions' own and total time, refreshed each second "
        "(keys: q quits, o/t/n sort, w last refresh/since start, h next thread); plain text when not a terminal",
    )
    add(
        target,
        "--from-path",
        action="store_true",
        help="look the script up on $PATH instead of in the working directory",
    )

    output = parser.add_argument_group("output")
    add(output, "-o", "--outfile", metavar="FILE", help="write the report to FILE instead of standard output")
    add(
        output,
        "-r",
        "--renderer",
        metavar="RENDERER",
        help=f"report format: {_renderer_names_text()}, or the dotted import path of a "
        "Renderer class. Without it the format follows the -o extension "
        f"({_renderer_suffixes_text()}), and is text otherwise",
    )
    add(
        output,
        "-p",
        "--render-option",
        dest="render_options",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="pass an option to the renderer; VALUE is read as JSON when it parses, "
        "as a string otherwise; a bare KEY means true; a dotted KEY sets a key "
        "inside a dict option, e.g. -p processor_options.filter_threshold=0. "
        "Repeat for several options",
    )
    add(
        output,
        "-t",
        "--timeline",
        action="store_true",
        help="keep calls in the order they happened instead of merging repeated calls",
    )
    add(
        output,
        "--target-description",
        metavar="TEXT",
        default=DEFAULT_TARGET_DESCRIPTION,
        help="description shown in the report header; '{args}' stands for the "
        "program and its arguments (default: %(default)r)",
    )

    frames = parser.add_argument_group("which frames to show")
    hide = frames.add_mutually_exclusive_group()
    add(
        hide,
        "--hide",
        metavar="GLOB",
        help="hide frames whose file path matches this glob (by default, library code is folded away)",
    )
    add(hide, "--hide-regex", metavar="REGEX", help="hide frames whose file path matches this regular expression")
    show = frames.add_mutually_exclusive_group()
    add(
        show,
        "--show",
        metavar="GLOB",
        help="always show frames whose file path matches this glob, e.g. "
        "--show '*/requests/*' to look inside a library",
    )
    add(
        show, "--show-regex", metavar="REGEX", help="always show frames whose file path matches this regular expression"
    )
    add(show, "--show-all", action="store_true", help="show every frame, library code included")

    text = parser.add_argument_group("text output (detected from the output stream when not given)")
    add(
        text,
        "--unicode",
        dest="unicode",
        action="store_const",
        const=True,
        default=None,
        help="draw the tree with unicode characters",
    )
    add(
        text,
        "--no-unicode",
        dest="unicode",
        action="store_const",
        const=False,
        help="draw the tree with ASCII characters only",
    )
    add(
        text,
        "--color",
        dest="color",
        action="store_const",
        const=True,
        default=None,
        help="colour the report with ANSI escapes",
    )
    add(text, "--no-color", dest="color", action="store_const", const=False, help="do not colour the report")

    sampling = parser.add_argument_group("sampling")
    add(
        sampling,
        "-i",
        "--interval",
        type=_positive_float,
        default=0.001,
        metavar="SECONDS",
        help="time between two samples (default: %(default)s). A shorter interval "
        "resolves shorter calls; a longer one keeps a long run's profile smaller",
    )
    add(
        sampling,
        "-a",
        "--all-threads",
        action="store_true",
        help="sample every thread of the program, not only the main thread; the "
        "report then also waits for the program's non-daemon threads to finish",
    )
    add(
        sampling,
        "--use-timing-thread",
        action="store_true",
        help="accepted for compatibility; the C engine always times samples from its own thread",
    )
    add(
        sampling,
        "--subprocesses",
        action="store_true",
        help="profile the program's Python child processes too (os.fork, "
        "multiprocessing, subprocess running Python) and merge them into the "
        "report, one subtree per process",
    )

    experiments = parser.add_argument_group("experiments (docs/experiments.md)")
    add(
        experiments,
        "--repeat",
        type=_run_count,
        metavar="N",
        help="run the program N times, each in a new process, and report each function's median time "
        "and share with their interquartile range; -o FILE.pyisession keeps all the runs",
    )
    add(
        experiments,
        "--budget",
        metavar="FILE",
        help="check the profile against the rules of a budget file (TOML) and exit with status 3 "
        "when one fails; with a run, --repeat, or --load",
    )
    add(
        experiments,
        "--baseline",
        metavar="FILE",
        help="the session (.pyisession) that the budget's max_growth rules compare with",
    )
    add(
        experiments,
        "--budget-report",
        metavar="FILE",
        help="also write the budget's verdicts to FILE: JUnit XML (.xml) or Markdown (.md)",
    )

    # spellings from older documentation, still accepted
    add(parser, "--setprofile", action="store_true", help=argparse.SUPPRESS)
    add(parser, "--html", action="store_true", help=argparse.SUPPRESS)

    return parser, table


def _renderer_names_text() -> str:
    """``text, html, ..., session (or pyisession), ...``: the -r names, for --help."""
    return ", ".join(
        info.names[0] + (f" (or {', '.join(info.names[1:])})" if len(info.names) > 1 else "")
        for info in registry.BUILT_IN
    )


def _renderer_suffixes_text() -> str:
    """``.html/.htm, .json, ...``: the -o suffixes that choose a renderer, for --help."""
    return ", ".join("/".join(info.suffixes) for info in registry.BUILT_IN if info.suffixes)


def guess_renderer_name(outfile: Optional[str]) -> str:
    return registry.name_for_file(outfile) or "text"


class CommandLine:
    """The parsed command line.

    ``options`` is the argparse namespace. ``target_kind`` is one of ``"script"``,
    ``"module"``, ``"program"``, ``"load"``, ``"load_prev"`` or ``None`` (only for
    ``--version``); ``target`` is the script path, module name, program text, file or
    identifier; ``target_args`` are the arguments given after it.
    """

    def __init__(
        self,
        options: argparse.Namespace,
        target_kind: Optional[str],
        target: Optional[str],
        target_args: List[str],
        notes: List[str],
        render_options: Dict[str, Any],
        option_words: Sequence[str] = (),
        phase: Optional[str] = None,
    ):
        self.options = options
        self.option_words = list(option_words)  # pyinstrument's own options, as --long=VALUE
        self.phase = phase  # -p phase=NAME: the report shows that phase of the run alone
        self.target_kind = target_kind
        self.target = target
        self.target_args = target_args
        self.notes = notes  # one-line notes for stderr (deprecated spellings)
        self.render_options = render_options

    @property
    def renderer_name(self) -> str:
        """The -r value, or the one guessed from the -o extension."""
        if self.options.renderer:
            return self.options.renderer
        return guess_renderer_name(self.options.outfile)

    def description_args(self) -> str:
        """What ``{args}`` stands for in --target-description: the script (or module
        name, or ``-c``) and its arguments."""
        first = "-c" if self.target_kind == "program" else (self.target or "")
        return " ".join([first] + self.target_args)

    def target_description(self) -> str:
        return self.options.target_description.format(args=self.description_args())


def _resolve_long_option(word: str, table: _OptionTable) -> str:
    if word in table.takes_value:
        return word
    matches = [opt for opt in table.long_options if opt.startswith(word)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"ambiguous option {word} (could be {', '.join(sorted(matches))})")
    raise UsageError(f"unrecognized option {word}")


def _take_diff(argv: Sequence[str], table: _OptionTable) -> Tuple[List[str], Optional[List[str]]]:
    """``--diff BEFORE AFTER`` taken out of pyinstrument's own options (before any script
    name): the other words, and the two paths (None without --diff)."""
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--diff" or word.startswith("--diff="):
            first = word.partition("=")[2] if "=" in word else None
            values = [first] if first is not None else []
            taken = 1
            while len(values) < 2 and i + taken < len(words) and not words[i + taken].startswith("-"):
                values.append(words[i + taken])
                taken += 1
            if len(values) != 2 or not all(values):
                raise UsageError("--diff compares two sessions: --diff BEFORE AFTER")
            return words[:i] + words[i + taken :], values
        if word == "--" or not word.startswith("-") or word in ("-m", "-c") or word.startswith(("-m", "-c")):
            break  # the program and its arguments: their own --diff is theirs
        name = word.partition("=")[0]
        if "=" not in word and table.takes_value.get(name, False):
            i += 1  # its value
        i += 1
    return words, None


def _split_argv(argv: Sequence[str], table: _OptionTable) -> Tuple[List[str], Optional[str], Optional[str], List[str]]:
    """Separate pyinstrument's own options from the program to run.

    Scanning stops at the first word that is not an option (the script), after ``--``,
    and after the value of ``-m`` or ``-c`` (as python itself does). Options are
    returned in a normalised form (``--long=VALUE``) so argparse never has to guess
    whether a value that starts with '-' is an option.

    Returns (option words, target kind, target, target arguments).
    """
    options: List[str] = []
    i = 0
    n = len(argv)
    while i < n:
        word = argv[i]
        if word == "--":
            if i + 1 < n:
                return options, "script", argv[i + 1], list(argv[i + 2 :])
            raise UsageError("expected a script after '--'")
        if word.startswith("--"):
            name, has_value, value = word.partition("=")
            name = _resolve_long_option(name, table)
            if table.takes_value[name]:
                if not has_value:
                    if i + 1 >= n:
                        raise UsageError(f"option {name} needs a value")
                    i += 1
                    value = argv[i]
                options.append(f"{name}={value}")
            else:
                if has_value:
                    raise UsageError(f"option {name} does not take a value")
                options.append(name)
            i += 1
            continue
        if word.startswith("-") and word != "-":
            # one or more short options clustered together: -ti0.01, -tm module
            j = 1
            while j < len(word):
                flag = "-" + word[j]
                if flag not in table.takes_value:
                    raise UsageError(f"unrecognized option {flag}" + (f" (in {word})" if len(word) > 2 else ""))
                if not table.takes_value[flag]:
                    options.append(table.canonical[flag])
                    j += 1
                    continue
                value = word[j + 1 :]
                if not value:
                    if i + 1 >= n:
                        raise UsageError(f"option {flag} needs a value")
                    i += 1
                    value = argv[i]
                if flag == "-m":
                    return options, "module", value, list(argv[i + 1 :])
                if flag == "-c":
                    return options, "program", value, list(argv[i + 1 :])
                options.append(f"{table.canonical[flag]}={value}")
                break
            i += 1
            continue
        # the first plain word is the script ("-" means: read the program from stdin)
        return options, "script", word, list(argv[i + 1 :])
    return options, None, None, []


def check_target_description(text: str) -> None:
    """Only ``{args}`` may be used as a placeholder; anything else is a usage error."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as exc:
        raise UsageError(f"invalid --target-description {text!r}: {exc}") from None
    for field in fields:
        if field == "":
            raise UsageError("Empty placeholder '{}' in --target-description; the only placeholder is {args}")
        base = field.split(".", 1)[0].split("[", 1)[0]
        if base != "args":
            raise UsageError(f"Unknown placeholder '{field}' in --target-description; the only placeholder is {{args}}")
    try:
        text.format(args="program arg")
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise UsageError(f"invalid --target-description {text!r}: {exc}") from None


def format_help() -> str:
    return _build_parser()[0].format_help()


def parse_command_line(argv: Sequence[str]) -> CommandLine:
    """Parse pyinstrument's arguments (without the program name).

    Raises :class:`UsageError` for anything wrong with them; ``-h`` prints the help and
    raises ``SystemExit(0)`` as argparse does.
    """
    parser, table = _build_parser()
    argv, diff_paths = _take_diff(argv, table)
    option_words, target_kind, target, target_args = _split_argv(argv, table)
    options = parser.parse_args(option_words)
    options.diff = diff_paths
    notes: List[str] = []

    if options.setprofile:
        notes.append(
            "--setprofile is deprecated and has no effect: the C engine samples "
            "stacks from its own thread and installs no profile hook"
        )
    if options.html:
        notes.append("--html is deprecated; use -r html")
        if options.renderer and options.renderer != "html":
            raise UsageError(f"--html conflicts with -r {options.renderer}")
        options.renderer = "html"

    try:
        render_options = parse_render_options(options.render_options)
    except RendererError as exc:
        raise UsageError(str(exc)) from None
    check_target_description(options.target_description)
    phase = render_options.pop("phase", None)
    if isinstance(phase, int) and not isinstance(phase, bool):
        phase = str(phase)  # a name that reads as a number
    if phase is not None and (not isinstance(phase, str) or not phase):
        raise UsageError("-p phase=NAME takes the name of a phase of the run (Profiler.phase)")
    if "gil_wait" in render_options:  # -p gil_wait=hide: short for processor_options.gil_wait
        render_options.setdefault("processor_options", {})["gil_wait"] = render_options.pop("gil_wait")
    if render_options.get("processor_options", {}).get("gil_wait", "show") not in GIL_WAIT_MODES:
        raise UsageError(
            f"-p gil_wait= takes one of {', '.join(GIL_WAIT_MODES)} ([GIL wait] leaves: "
            "as they are, folded into the frame that waited, or alone)"
        )

    if options.version:
        return CommandLine(options, None, None, [], notes, render_options)

    sources = []
    if target_kind == "script":
        sources.append("a script")
    elif target_kind == "module":
        sources.append("-m")
    elif target_kind == "program":
        sources.append("-c")
    if options.load is not None:
        sources.append("--load")
    if options.load_prev is not None:
        sources.append("--load-prev")
    if options.diff is not None:
        sources.append("--diff")
    if options.pid is not None:
        sources.append("--pid")
    if options.agent is not None:
        sources.append("--agent")
    if not sources:
        raise UsageError(
            "nothing to profile: give a script, -m MODULE, -c PROGRAM, --pid PID, --agent PID, "
            "--load FILE or --load-prev ID"
        )
    if len(sources) > 1:
        raise UsageError(f"{' and '.join(sources)} cannot be used together")
    if options.load is not None:
        target_kind, target = "load", options.load
    elif options.load_prev is not None:
        target_kind, target = "load_prev", options.load_prev
    elif options.diff is not None:
        target_kind, target = "diff", None
    elif options.pid is not None:
        target_kind, target = "pid", str(options.pid)
    elif options.agent is not None:
        target_kind, target = "agent", options.agent
    if options.duration is not None and target_kind not in ("pid", "agent"):
        raise UsageError("--duration goes with --pid PID or --agent PID")
    for flag, given in (("--dump", options.dump), ("--top", options.top), ("--inject", options.inject)):
        if given and target_kind != "pid":
            raise UsageError(f"{flag} goes with --pid PID")
    if options.dump and options.duration is not None:
        raise UsageError("--dump prints the stacks once: it takes no --duration")
    if options.dump and options.top:
        raise UsageError("--dump and --top cannot be used together")
    if options.flight and target_kind != "agent":
        raise UsageError("--flight goes with --agent PID")
    if options.signal is not None and (target_kind != "agent" or not (options.agent or "").isdigit()):
        raise UsageError("--signal goes with --agent PID (a process id)")
    if options.signal is not None and options.flight:
        raise UsageError("--signal and --flight cannot be used together")
    if options.flight and options.duration is not None:
        raise UsageError("--flight gives what the flight recorder kept: it takes no --duration")
    if options.inject and (options.dump or options.top):
        raise UsageError("--inject records for --duration seconds; it takes no --dump or --top")
    if options.from_path and target_kind != "script":
        raise UsageError("--from-path needs a script name")

    if options.renderer == "":
        raise UsageError("-r needs a renderer name")
    if options.outfile == "":
        raise UsageError("-o needs a file name")
    _check_experiment_options(options, target_kind)

    return CommandLine(options, target_kind, target, target_args, notes, render_options, option_words, phase)


def _check_experiment_options(options: argparse.Namespace, target_kind: Optional[str]) -> None:
    if options.repeat is not None and target_kind not in ("script", "module", "program"):
        raise UsageError("--repeat runs a program: give a script, -m MODULE or -c PROGRAM")
    if target_kind == "diff" and (options.budget or options.baseline):
        raise UsageError(
            "--diff compares two sessions; to check a budget, use --budget with --load AFTER --baseline BEFORE"
        )
    if options.baseline is not None and options.budget is None:
        raise UsageError("--baseline is what a budget's max_growth rules compare with: give --budget FILE too")
    if options.budget_report is not None and options.budget is None:
        raise UsageError("--budget-report writes a budget's verdicts: give --budget FILE too")
    for name in ("budget", "baseline", "budget_report"):
        if getattr(options, name) == "":
            raise UsageError(f"--{name.replace('_', '-')} needs a file name")
