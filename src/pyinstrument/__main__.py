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

import argparse
import builtins
import importlib
import importlib.machinery
import importlib.util
import io
import linecache
import os
import re
import signal
import string
import sys
import threading
import types
import zipfile
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple

from pyinstrument.renderers import registry
from pyinstrument.renderers.options import accepted_parameters, merge, parse_render_options, processor_options_from
from pyinstrument.renderers.registry import RendererError

PROG = "pyinstrument"
USAGE = "pyinstrument [options] scriptfile [arg] ..."
DEFAULT_TARGET_DESCRIPTION = "Program: {args}"


class UsageError(Exception):
    """A problem with the command line: reported as one line on stderr, exit status 2."""


class ReportNotWritten(Exception):
    """The report could not be written: reported as one line on stderr, exit status 1."""


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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
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

    # spellings from older documentation, still accepted
    add(parser, "--setprofile", action="store_true", help=argparse.SUPPRESS)
    add(parser, "--html", action="store_true", help=argparse.SUPPRESS)

    return parser, table


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
    ):
        self.options = options
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
            raise UsageError("empty placeholder '{}' in --target-description; the only placeholder is {args}")
        base = field.split(".", 1)[0].split("[", 1)[0]
        if base != "args":
            raise UsageError(
                f"unknown placeholder '{{{field}}}' in --target-description; the only placeholder is {{args}}"
            )
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
    option_words, target_kind, target, target_args = _split_argv(argv, table)
    options = parser.parse_args(option_words)
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
    if not sources:
        raise UsageError("nothing to profile: give a script, -m MODULE, -c PROGRAM, --load FILE or --load-prev ID")
    if len(sources) > 1:
        raise UsageError(f"{' and '.join(sources)} cannot be used together")
    if options.load is not None:
        target_kind, target = "load", options.load
    elif options.load_prev is not None:
        target_kind, target = "load_prev", options.load_prev
    if options.from_path and target_kind != "script":
        raise UsageError("--from-path needs a script name")

    if options.renderer == "":
        raise UsageError("-r needs a renderer name")
    if options.outfile == "":
        raise UsageError("-o needs a file name")

    return CommandLine(options, target_kind, target, target_args, notes, render_options)


# ---------------------------------------------------------------------------------------
# Renderers
# ---------------------------------------------------------------------------------------


def _stream_supports_unicode(stream: Any) -> bool:
    encoding = getattr(stream, "encoding", None) or ""
    return encoding.lower().replace("-", "").replace("_", "").startswith("utf")


def _stream_is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _wants_color(stream: Any) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return _stream_is_terminal(stream)


def _renderer_names_text() -> str:
    """``text, html, ..., session (or pyisession), ...``: the -r names, for --help."""
    return ", ".join(
        info.names[0] + (f" (or {', '.join(info.names[1:])})" if len(info.names) > 1 else "")
        for info in registry.BUILT_IN
    )


def _renderer_suffixes_text() -> str:
    """``.html/.htm, .json, ...``: the -o suffixes that choose a renderer, for --help."""
    return ", ".join("/".join(info.suffixes) for info in registry.BUILT_IN if info.suffixes)


def get_renderer_class(name: str) -> type:
    """The renderer class for a -r value (see pyinstrument.renderers.registry)."""
    try:
        return registry.renderer_class(name)
    except RendererError as exc:
        raise UsageError(str(exc)) from None


def guess_renderer_name(outfile: Optional[str]) -> str:
    return registry.name_for_file(outfile) or "text"


def create_renderer(cli: CommandLine, stdout: Any, own_code_regex: Optional[str] = None) -> Any:
    """Build the renderer from the command line before anything runs, so that bad
    renderer options stop us before the program does. Frames whose path matches
    ``own_code_regex`` are shown as the program's code unless --hide/--show decide."""
    options = cli.options
    name = cli.renderer_name
    renderer_class = get_renderer_class(name)
    accepted = accepted_parameters(renderer_class)

    # options from flags: passed when the renderer takes them; a flag the user gave
    # explicitly that this renderer cannot use gets a note
    processor_options = processor_options_from(options)

    explicit: Dict[str, Tuple[str, Any]] = {}
    if options.show_all:
        explicit["show_all"] = ("--show-all", True)
    if options.timeline:
        explicit["timeline"] = ("--timeline", True)
    if processor_options:
        explicit["processor_options"] = ("--hide/--show", processor_options)
    if options.unicode is not None:
        explicit["unicode"] = ("--unicode/--no-unicode", options.unicode)
    if options.color is not None:
        explicit["color"] = ("--color/--no-color", options.color)

    kwargs: Dict[str, Any] = {}
    for key, (flag, value) in explicit.items():
        if accepted is None or key in accepted:
            kwargs[key] = value
        else:
            cli.notes.append(f"{flag} does not apply to the {name} renderer; ignored")

    if options.outfile:
        auto_unicode, auto_color = True, False  # the file is written as UTF-8
    else:
        auto_unicode, auto_color = _stream_supports_unicode(stdout), _wants_color(stdout)
    for key, value in (("unicode", auto_unicode), ("color", auto_color)):
        if key not in kwargs and accepted is not None and key in accepted:
            kwargs[key] = value
    if own_code_regex and not processor_options and (accepted is None or "processor_options" in accepted):
        kwargs["processor_options"] = {"show_regex": own_code_regex}

    if accepted is not None:
        unknown = sorted(set(cli.render_options) - accepted)
        if unknown:
            raise UsageError(
                f"{renderer_class.__name__} has no option {', '.join(map(repr, unknown))}"
                f" (its options: {', '.join(sorted(accepted)) or 'none'})"
            )
    kwargs = merge(kwargs, cli.render_options)

    try:
        return renderer_class(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot create {renderer_class.__name__} with these options: {exc}") from None


# ---------------------------------------------------------------------------------------
# Running the program
# ---------------------------------------------------------------------------------------


def _python_abspath(path: str) -> str:
    """An absolute path the way the interpreter makes ``__main__.__file__``: the working
    directory joined to a relative path, without normalising it."""
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def _may_set_path0() -> bool:
    """Plain python puts the script's directory (or cwd, or '') first on sys.path,
    except in safe-path (-P, PYTHONSAFEPATH) and isolated (-I) modes."""
    return not (getattr(sys.flags, "safe_path", False) or sys.flags.isolated)


def _set_path0(entry: str) -> None:
    # Our own launcher got the entry python prepends for *it* (cwd for
    # `python -m pyinstrument`, the bin directory for the console script): swap it.
    if _may_set_path0():
        if sys.path:
            sys.path[0] = entry
        else:
            sys.path.insert(0, entry)


def _new_main_module(**attributes: Any) -> types.ModuleType:
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    if sys.version_info < (3, 14):
        # before lazy annotations, the interpreter gave __main__ an empty __annotations__
        module.__dict__["__annotations__"] = {}
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


class _ModuleNotFound(UsageError):
    pass


class Target:
    """A program ready to run: ``prepare()`` sets up sys.argv/sys.path (like python
    does before running anything); ``load()`` returns the code and the ``__main__``
    module to run it in. ``load()`` runs while profiling, since finding a module
    imports its parent packages, which is part of the program's own run."""

    def prepare(self) -> None:
        raise NotImplementedError

    def load(self) -> Tuple[types.CodeType, types.ModuleType]:
        raise NotImplementedError

    def own_code_regex(self) -> Optional[str]:
        """A regular expression for the file paths of the program's own code where
        they would otherwise be taken for library code; None when there is none."""
        return None


def _compile(source: Any, filename: str) -> types.CodeType:
    # dont_inherit: this module's `from __future__ import annotations` must not leak
    try:
        return compile(source, filename, "exec", dont_inherit=True)
    except ValueError as exc:  # e.g. null bytes, on Pythons that do not call it a SyntaxError
        raise UsageError(f"can't compile {filename}: {exc}") from None


class ScriptTarget(Target):
    def __init__(self, path: str, args: List[str], from_path: bool = False):
        self.given = path
        self.args = args
        self.from_path = from_path
        self.code: Optional[types.CodeType] = None
        self.module: Optional[types.ModuleType] = None

    def prepare(self) -> None:
        path = self.given
        if self.from_path:
            path = self._find_on_path(path)
        if path == "-":
            self._prepare_stdin()
            return
        if not os.path.exists(path):
            hint = "" if self.from_path else _hint_for_missing_script(path)
            raise UsageError(f"can't open file {path!r}: no such file or directory{hint}")
        if os.path.isdir(path) or zipfile.is_zipfile(path):
            self._prepare_path_entry(path)
            return
        filename = _python_abspath(path)
        try:
            with io.open_code(path) as f:
                source = f.read()
        except OSError as exc:
            raise UsageError(f"can't open file {path!r}: {exc.strerror or exc}") from None
        sys.argv = [path] + self.args
        _set_path0(os.path.dirname(os.path.realpath(path)))
        # a SyntaxError here propagates: it is reported like python does, before profiling
        self.code = _compile(source, filename)
        self.module = _new_main_module(
            __file__=filename,
            __cached__=None,
            __loader__=importlib.machinery.SourceFileLoader("__main__", filename),
        )

    def _find_on_path(self, name: str) -> str:
        found = _find_on_path(name)
        if found is None:
            raise UsageError(f"script {name!r} not found on PATH")
        return found

    def _prepare_stdin(self) -> None:
        sys.argv = ["-"] + self.args
        _set_path0("")
        self.code = _compile(sys.stdin.read(), "<stdin>")
        self.module = _new_main_module(
            __file__="<stdin>", __cached__=None, __loader__=importlib.machinery.BuiltinImporter
        )

    def _prepare_path_entry(self, path: str) -> None:
        # a directory or zip file with a __main__.py, as `python DIR` runs it
        entry = _python_abspath(path)
        spec = importlib.machinery.PathFinder.find_spec("__main__", [entry])
        if spec is None or spec.loader is None:
            raise UsageError(f"can't find '__main__' module in {path!r}")
        sys.argv = [path] + self.args
        _set_path0(entry)
        code = spec.loader.get_code("__main__")  # type: ignore[attr-defined]
        if code is None:
            raise UsageError(f"no code object available for '__main__' in {path!r}")
        self.code = code
        self.module = _module_for_spec(spec)

    def load(self) -> Tuple[types.CodeType, types.ModuleType]:
        assert self.code is not None and self.module is not None
        return self.code, self.module


def _find_on_path(name: str) -> Optional[str]:
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or os.curdir, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _hint_for_missing_script(name: str) -> str:
    """For `pyinstrument black`: the module or the installed command it may mean."""
    parts = name.split(".")
    if all(part.isidentifier() for part in parts) and parts[-1] not in ("py", "pyw"):
        # where -m would look, without importing anything
        top = parts[0]
        search_path = [os.getcwd()] + sys.path[1:]
        if top in sys.builtin_module_names or importlib.machinery.PathFinder.find_spec(top, search_path):
            return f" (did you mean -m {name}?)"
    if os.sep not in name:
        command = _find_on_path(name)
        if command is not None and _is_python_script(command):
            return f" (did you mean --from-path {name}?)"
    return ""


def _is_python_script(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            first_line = f.readline(256)
    except OSError:
        return False
    return first_line.startswith(b"#!") and b"python" in first_line


class ProgramTarget(Target):
    def __init__(self, program: str, args: List[str]):
        self.program = program
        self.args = args
        self.code: Optional[types.CodeType] = None

    def prepare(self) -> None:
        sys.argv = ["-c"] + self.args
        _set_path0("")
        self.code = _compile(self.program, "<string>")
        _remember_program_source(self.code, self.program)

    def load(self) -> Tuple[types.CodeType, types.ModuleType]:
        assert self.code is not None
        return self.code, _new_main_module(__loader__=importlib.machinery.BuiltinImporter)


def _remember_program_source(code: types.CodeType, program: str) -> None:
    """Python 3.13+ keeps the source of -c so that tracebacks can show its lines."""
    if sys.version_info < (3, 13):
        return
    lines = [line + "\n" for line in program.splitlines()]
    if hasattr(linecache, "_interactive_cache"):  # 3.14+: looked up by code object
        linecache._register_code(code, program, "<string>")
    else:  # 3.13: looked up by file name
        linecache.cache["<string>"] = (len(program), None, lines, "<string>")


def _module_for_spec(spec: Any) -> types.ModuleType:
    attributes = dict(__spec__=spec, __loader__=spec.loader, __package__=spec.parent)
    if spec.has_location:
        attributes["__file__"] = spec.origin
        attributes["__cached__"] = spec.cached
    return _new_main_module(**attributes)


class ModuleTarget(Target):
    def __init__(self, name: str, args: List[str]):
        self.name = name
        self.args = args

    def prepare(self) -> None:
        if not self.name or self.name.startswith("."):
            raise UsageError(f"relative or empty module names are not supported: {self.name!r}")
        # like python -m: argv[0] is '-m' while the module is looked up
        sys.argv = ["-m"] + self.args
        _set_path0(os.getcwd())

    def own_code_regex(self) -> Optional[str]:
        # `-m pip`: pip's package is the program, though it lives among the libraries
        top = self.name.partition(".")[0]
        try:
            spec = importlib.machinery.PathFinder.find_spec(top, sys.path)  # imports nothing
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return None
        if spec.submodule_search_locations:
            places = [re.escape(os.path.join(location, "")) for location in spec.submodule_search_locations]
        elif spec.origin:
            places = [re.escape(spec.origin) + "$"]
        else:
            return None
        return "(?:" + "|".join(places) + ")"

    def load(self) -> Tuple[types.CodeType, types.ModuleType]:
        spec = self._find_spec(self.name)
        if spec.loader is None or not hasattr(spec.loader, "get_code"):
            raise _ModuleNotFound(f"no code object available for module {spec.name!r}")
        code = spec.loader.get_code(spec.name)
        if code is None:
            raise _ModuleNotFound(f"no code object available for module {spec.name!r}")
        sys.argv[0] = spec.origin if spec.origin is not None else "-m"
        return code, _module_for_spec(spec)

    def _find_spec(self, name: str, package_of: Optional[str] = None) -> Any:
        parent = name.rpartition(".")[0]
        if parent:
            try:
                __import__(parent)  # runs the parent packages' __init__, as python -m does
            except ModuleNotFoundError as exc:
                if exc.name is not None and (parent == exc.name or parent.startswith(exc.name + ".")):
                    raise _ModuleNotFound(self._not_found(name, package_of)) from None
                raise
            if not hasattr(sys.modules.get(parent), "__path__"):
                raise _ModuleNotFound(f"no module named {name!r} ({parent!r} is not a package)")
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            raise _ModuleNotFound(self._not_found(name, package_of))
        if spec.submodule_search_locations is not None:
            if name == "__main__" or name.endswith(".__main__"):
                raise _ModuleNotFound("cannot use a package as the __main__ module")
            return self._find_spec(name + ".__main__", package_of=name)
        return spec

    @staticmethod
    def _not_found(name: str, package_of: Optional[str]) -> str:
        if package_of is not None:
            return (
                f"no module named {name!r}: {package_of!r} is a package and cannot "
                f"be run directly (it has no __main__ module)"
            )
        return f"no module named {name!r}"


def make_target(cli: CommandLine) -> Target:
    if cli.target_kind == "script":
        return ScriptTarget(cli.target or "", cli.target_args, from_path=cli.options.from_path)
    if cli.target_kind == "module":
        return ModuleTarget(cli.target or "", cli.target_args)
    if cli.target_kind == "program":
        return ProgramTarget(cli.target or "", cli.target_args)
    raise ValueError(f"not a runnable target: {cli.target_kind}")


def _wait_for_threads() -> None:
    """What the interpreter does after __main__ ends: wait for non-daemon threads."""
    current = threading.current_thread()
    while True:
        pending = [t for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive()]
        if not pending:
            return
        for thread in pending:
            thread.join()


def _exec_target(profiler: Any, target: Target, description: str, wait_for_threads: bool) -> None:
    """Runs the program under the profiler. The profile's stem ends here: this frame
    (which hides itself) calls the program's ``<module>`` directly."""
    __tracebackhide__ = True  # noqa: F841 -- read by the profiler and by traceback tools
    try:
        profiler.start(target_description=description)
    except Exception as exc:  # noqa: BLE001 -- reported as one line by main()
        raise _ProfilerFailed(f"could not start the profiler: {exc}") from exc
    code, module = target.load()
    sys.modules["__main__"] = module
    exec(code, module.__dict__)
    if wait_for_threads:
        _wait_for_threads()


def _without_our_frames(tb: Optional[types.TracebackType]) -> Optional[types.TracebackType]:
    """The traceback as the program would have had it under plain python: the leading
    entries of this module (and of importlib, while it looks a module up for -m) go."""
    ours = _exec_target.__code__.co_filename
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename != ours and not filename.startswith("<frozen importlib._bootstrap"):
            break
        tb = tb.tb_next
    return tb


def _report_exception(exc: BaseException) -> None:
    """Print the program's uncaught exception the way python would (through
    sys.excepthook, which the program may have replaced)."""
    tb = _without_our_frames(exc.__traceback__)
    exc.__traceback__ = tb
    sys.excepthook(type(exc), exc, tb)


def _run_profiled(cli: CommandLine, target: Target) -> Tuple[Any, Optional[BaseException]]:
    """Run the program under the profiler; returns (session, what ended the program:
    None, or the SystemExit / KeyboardInterrupt / other exception)."""
    try:
        from pyinstrument import Profiler
    except ImportError as exc:
        raise _EngineMissing(f"the profiler is not available: {exc}") from None
    options = cli.options
    profiler_kwargs: Dict[str, Any] = dict(
        interval=options.interval,
        async_mode="disabled",  # the whole program is profiled, not one async context
        use_timing_thread=True if options.use_timing_thread else None,
    )
    if options.all_threads:
        profiler_kwargs["all_threads"] = True
    if options.subprocesses:
        profiler_kwargs["subprocesses"] = True
    profiler = Profiler(**profiler_kwargs)
    description = cli.target_description()

    outcome: Optional[BaseException] = None
    try:
        _exec_target(profiler, target, description, options.all_threads)
    except (_ModuleNotFound, _ProfilerFailed):
        if profiler.is_running:
            profiler.stop()
        raise
    except BaseException as exc:  # noqa: B902 -- whatever ends the program, report first
        outcome = exc
    finally:
        session = profiler.stop() if profiler.is_running else profiler.last_session
    return session, outcome


class _EngineMissing(Exception):
    """The profiler could not be imported (the C engine is not built or installed)."""


class _ProfilerFailed(Exception):
    """The profiler refused to start."""


# ---------------------------------------------------------------------------------------
# Sessions kept for --load-prev, and --load
# ---------------------------------------------------------------------------------------


def remember_session_for_load_prev(session: Any) -> Optional[str]:
    """Keep *session* so that ``pyinstrument --load-prev ID`` can render it again, and
    return ID; None (with a note) when it cannot be kept."""
    from pyinstrument import session_history

    try:
        return session_history.save(session)
    except OSError as exc:
        print(f"{PROG}: note: this session was not kept for --load-prev: {exc}", file=sys.stderr)
        return None


def load_previous_session(identifier: str) -> Any:
    from pyinstrument import session_history

    try:
        return session_history.load(identifier)
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"can't load previous session {identifier!r}: {exc}") from None


def load_session_file(path: str) -> Any:
    from pyinstrument.session import Session

    try:
        return Session.load(path)
    except FileNotFoundError:
        raise UsageError(f"can't open session file {path!r}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"can't load session file {path!r}: {getattr(exc, 'strerror', None) or exc}") from None


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------


def _check_output(cli: CommandLine, renderer: Any, stdout: Any) -> None:
    """Refuse, before running anything, an output we could not write."""
    outfile = cli.options.outfile
    source = cli.target if cli.target_kind in ("script", "load") else None
    if outfile and source and os.path.isfile(outfile) and os.path.isfile(source) and os.path.samefile(outfile, source):
        what = "the session being loaded" if cli.target_kind == "load" else "the program to profile"
        raise UsageError(f"will not write the report over {source!r}, {what}; choose another -o file")
    if outfile:
        directory = os.path.dirname(os.path.abspath(outfile))
        if not os.path.isdir(directory):
            raise UsageError(f"cannot write {outfile!r}: directory {directory!r} does not exist")
        if os.path.isdir(outfile):
            raise UsageError(f"cannot write {outfile!r}: it is a directory")
    elif getattr(renderer, "output_is_binary", False) and _stream_is_terminal(stdout):
        raise UsageError(
            f"the {cli.renderer_name} report is binary and will not be written "
            f"to a terminal; use -o FILE or redirect the output"
        )


def _as_bytes(report: Any) -> bytes:
    if isinstance(report, bytes):
        return report
    return str(report).encode("utf-8", errors="surrogateescape")


def _silence_stdout() -> None:
    # the reader went away (e.g. `| head`): drop the rest, don't fail at exit
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _write_stdout(stdout: Any, report: Any, binary: bool) -> None:
    try:
        try:
            if binary:
                stdout.flush()
                stdout.buffer.write(_as_bytes(report))
                stdout.buffer.flush()
            else:
                stdout.write(report)
                stdout.flush()
        except ValueError:
            # the program closed sys.stdout: write to file descriptor 1 directly
            with os.fdopen(os.dup(1), "wb") as raw:
                raw.write(_as_bytes(report))
    except BrokenPipeError:
        _silence_stdout()


def _open_in_browser(renderer: Any, session: Any, report: str) -> None:
    import tempfile
    import webbrowser

    with tempfile.NamedTemporaryFile("w", suffix=".html", prefix="pyinstrument-", delete=False, encoding="utf-8") as f:
        f.write(report)
    print(f"{PROG}: report written to {f.name}", file=sys.stderr)
    webbrowser.open("file://" + f.name)


def write_report(cli: CommandLine, renderer: Any, session: Any, stdout: Any, from_run: bool) -> None:
    report = renderer.render(session)
    binary = bool(getattr(renderer, "output_is_binary", False))
    outfile = cli.options.outfile
    if outfile:
        from pyinstrument._files import write_report_file

        try:
            write_report_file(outfile, _as_bytes(report))
        except OSError as exc:
            identifier = remember_session_for_load_prev(session) if from_run else None
            kept = f"; the profile is kept: pyinstrument --load-prev {identifier} -o ANOTHER_FILE" if identifier else ""
            raise ReportNotWritten(f"can't write {outfile!r}: {exc.strerror or exc}{kept}") from None
        return
    if getattr(renderer, "output_file_extension", None) == "html" and _stream_is_terminal(stdout):
        _open_in_browser(renderer, session, report)
        return
    _write_stdout(stdout, report, binary)
    if from_run and cli.renderer_name == "text":
        identifier = remember_session_for_load_prev(session)
        if identifier:
            _write_stdout(
                stdout,
                "To view this report with different options, run:\n"
                f"    pyinstrument --load-prev {identifier} [options]\n\n",
                False,
            )


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


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
        if cli.target_kind in ("load", "load_prev"):
            _set_path0(os.getcwd())  # so that -r can name a renderer in the working directory
            renderer = create_renderer(cli, stdout)
            _check_output(cli, renderer, stdout)
            if cli.target_kind == "load":
                session = load_session_file(cli.target or "")
            else:
                session = load_previous_session(cli.target or "")
            _flush_notes(cli)
            try:
                write_report(cli, renderer, session, stdout, from_run=False)
            except KeyboardInterrupt:
                return _rendering_interrupted(None)
            return 0

        target = make_target(cli)
        try:
            target.prepare()
        except SyntaxError as exc:
            # python reports a script that does not compile without running anything
            exc.__traceback__ = None
            sys.excepthook(type(exc), exc, None)
            return 1
        # the renderer is imported with the program's sys.path, so -r can name a
        # renderer that lives beside the script
        renderer = create_renderer(cli, stdout, target.own_code_regex())
        _check_output(cli, renderer, stdout)
        _flush_notes(cli)
        session, outcome = _run_profiled(cli, target)
    except UsageError as exc:
        return _error(str(exc))
    except (_EngineMissing, _ProfilerFailed, ReportNotWritten) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1

    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    try:
        write_report(cli, renderer, session, stdout, from_run=True)
    except ReportNotWritten as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        if outcome is None:
            return 1
    except KeyboardInterrupt:
        return _rendering_interrupted(session)

    if outcome is None:
        return 0
    if isinstance(outcome, SystemExit):
        raise SystemExit(outcome.code)
    try:
        stdout.flush()
    except (OSError, ValueError):
        pass
    _report_exception(outcome)
    if isinstance(outcome, KeyboardInterrupt):
        # re-raised so the interpreter ends the process as it does for Ctrl-C
        # (killed by SIGINT, after the usual clean-up); already printed above
        _suppress_in_excepthook(outcome)
        raise outcome
    return 1


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
