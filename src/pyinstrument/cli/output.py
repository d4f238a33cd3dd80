"""The report: the renderer the command line asks for, where the report goes, and the
sessions kept for ``--load-prev`` and read by ``--load``."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Optional, Tuple

from pyinstrument.cli.arguments import PROG, CommandLine, UsageError
from pyinstrument.renderers import registry
from pyinstrument.renderers.options import accepted_parameters, merge, processor_options_from
from pyinstrument.renderers.registry import RendererError


class ReportNotWritten(Exception):
    """The report could not be written: reported as one line on stderr, exit status 1."""


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


def get_renderer_class(name: str) -> type:
    """The renderer class for a -r value (see pyinstrument.renderers.registry)."""
    try:
        return registry.renderer_class(name)
    except RendererError as exc:
        raise UsageError(str(exc)) from None


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


def check_output(cli: CommandLine, renderer: Any, stdout: Any) -> None:
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
    binary = bool(getattr(renderer, "output_is_binary", False))
    outfile = cli.options.outfile
    if outfile:
        from pyinstrument._files import write_report_file

        # a renderer may give its file in pieces (a session file can be hundreds of MB)
        render_chunks = getattr(renderer, "render_chunks", None)
        data = render_chunks(session) if render_chunks is not None else _as_bytes(renderer.render(session))
        try:
            write_report_file(outfile, data)
        except OSError as exc:
            identifier = remember_session_for_load_prev(session) if from_run else None
            kept = f"; the profile is kept: pyinstrument --load-prev {identifier} -o ANOTHER_FILE" if identifier else ""
            raise ReportNotWritten(f"can't write {outfile!r}: {exc.strerror or exc}{kept}") from None
        return
    report = renderer.render(session)
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
