"""``%pyinstrument`` and ``%%pyinstrument``: profile a statement or a cell in IPython/Jupyter.

``%load_ext pyinstrument`` registers the magic. The code runs in the user's namespace
(like ``%time``); its profile is displayed as a mimebundle: ``text/html`` is the HTML
report inside an ``<iframe srcdoc>`` (notebooks show that), ``text/plain`` the text
report (terminal IPython shows that). IPython's own frames above the cell are cut
from the report, so its root is the cell.

Ctrl-C stops the code quietly and shows what was recorded. Cells with top-level
``await`` run on IPython's event loop when none is running (terminal IPython), or on a
fresh event loop in a worker thread when one is (Jupyter's kernel runs its own loop):
that thread is the one profiled. With ``--async_mode enabled`` (or ``strict``) the
profiler starts inside the cell's task, so the time the cell spends awaiting shows as
``[await]`` under the ``await`` that waited.
"""

from __future__ import annotations

import ast
import asyncio
import html
import inspect
import sys
import threading
from array import array
from typing import Any, Dict, List, Optional, Tuple

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.display import display

from pyinstrument import Profiler
from pyinstrument.frame_table import NO_NODE, FrameTable
from pyinstrument.renderers.console import ConsoleRenderer
from pyinstrument.renderers.html import HTMLRenderer
from pyinstrument.renderers.options import accepted_parameters, merge, parse_render_options, processor_options_from
from pyinstrument.renderers.registry import RendererError
from pyinstrument.session import Session

#: holds the value of the cell's last expression while the cell runs
_RESULT_NAME = "__pyinstrument_cell_result__"
_BOOLEAN_WORDS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}
_DEFAULT_HEIGHT = 400

USAGE = """\
%pyinstrument [options] statement
%%pyinstrument [options]
<cell>

Options:
  -p, --render-option KEY[=VALUE]  renderer option, as on the command line (repeat);
                                   applied to whichever report (HTML, text) takes it
  --show GLOB, --show-regex REGEX  always show frames whose file path matches
  --show-all                       show every frame, library code included
  --hide GLOB, --hide-regex REGEX  hide frames whose file path matches
  --interval SECONDS               time between samples (default 0.001)
  --async_mode MODE                enabled, disabled (default) or strict
  --timeline [true|false]          keep calls in the order they happened
  --height PIXELS                  height of the HTML report (default 400)
  --                               ends the options (the statement follows)"""


class _MagicParser:
    """The options: argparse, with errors raised as IPython's one-line UsageError."""

    # options that take the following word as their value (when not written with "=")
    value_options = {
        "-p",
        "--render-option",
        "--show",
        "--show-regex",
        "--hide",
        "--hide-regex",
        "--interval",
        "--async_mode",
        "--async-mode",
        "--height",
    }

    def __init__(self) -> None:
        import argparse

        class Parser(argparse.ArgumentParser):
            def error(self, message: str) -> Any:
                raise UsageError(f"%pyinstrument: {message}")

        parser = Parser(prog="%pyinstrument", add_help=False, allow_abbrev=False)
        parser.add_argument("-p", "--render-option", dest="render_options", action="append", default=[])
        show = parser.add_mutually_exclusive_group()
        show.add_argument("--show")
        show.add_argument("--show-regex")
        show.add_argument("--show-all", action="store_true")
        hide = parser.add_mutually_exclusive_group()
        hide.add_argument("--hide")
        hide.add_argument("--hide-regex")
        parser.add_argument("--interval", type=_positive_float, default=0.001)
        parser.add_argument(
            "--async_mode",
            "--async-mode",
            dest="async_mode",
            default="disabled",
            choices=["enabled", "disabled", "strict"],
        )
        parser.add_argument("--timeline", nargs="?", const="true", default="false", type=_boolean)
        parser.add_argument("--height", type=int, default=_DEFAULT_HEIGHT)
        self.parser = parser

    def split(self, line: str) -> Tuple[Any, str]:
        """The options at the start of ``line``, and the rest of it verbatim (the code)."""
        words: List[str] = []
        position = 0
        while True:
            word, end = _next_word(line, position)
            if word is None or not word.startswith("-") or word == "-":
                break
            position = end
            if word == "--":
                break
            words.append(word)
            if word in self.value_options:
                value, end = _next_word(line, position)
                if value is None:
                    raise UsageError(f"%pyinstrument: option {word} needs a value")
                words.append(value)
                position = end
            elif word == "--timeline":
                value, end = _next_word(line, position)
                if value is not None and value.lower() in _BOOLEAN_WORDS:
                    words.append(value)
                    position = end
        return self.parser.parse_args(words), line[position:].strip()


def _next_word(line: str, position: int) -> Tuple[Optional[str], int]:
    """The shell-like word starting at or after ``position`` (quotes removed) and where it ends."""
    length = len(line)
    while position < length and line[position].isspace():
        position += 1
    if position == length:
        return None, position
    word: List[str] = []
    quote = ""
    while position < length:
        char = line[position]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"' and position + 1 < length and line[position + 1] in '"\\':
                position += 1
                word.append(line[position])
            else:
                word.append(char)
        elif char in "'\"":
            quote = char
        elif char.isspace():
            break
        else:
            word.append(char)
        position += 1
    if quote:
        raise UsageError("%pyinstrument: unterminated quote in the options")
    return "".join(word), position


def _positive_float(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _boolean(text: str) -> bool:
    import argparse

    try:
        return _BOOLEAN_WORDS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def make_renderers(options: Any) -> Tuple[HTMLRenderer, ConsoleRenderer]:
    """The HTML and text renderers for these options; bad options raise UsageError."""

    try:
        render_options = parse_render_options(options.render_options)
    except RendererError as error:
        raise UsageError(f"%pyinstrument: {error}") from None

    processor_options = processor_options_from(options)
    common: Dict[str, Any] = {"show_all": options.show_all, "timeline": options.timeline}
    if processor_options:
        common["processor_options"] = processor_options

    html_accepts = accepted_parameters(HTMLRenderer) or set()
    text_accepts = accepted_parameters(ConsoleRenderer) or set()
    unknown = sorted(set(render_options) - html_accepts - text_accepts)
    if unknown:
        raise UsageError(
            f"%pyinstrument: no report takes the option {', '.join(map(repr, unknown))} "
            f"(options: {', '.join(sorted(html_accepts | text_accepts))})"
        )
    try:
        html_renderer = HTMLRenderer(**merge(common, {k: v for k, v in render_options.items() if k in html_accepts}))
        text_renderer = ConsoleRenderer(
            **merge(
                dict(common, unicode=True, color=True),  # as upstream's: terminals and notebooks show it
                {k: v for k, v in render_options.items() if k in text_accepts},
            )
        )
    except (TypeError, ValueError) as error:
        raise UsageError(f"%pyinstrument: bad render option: {error}") from None
    return html_renderer, text_renderer


def keep_only_the_cell(session: Session, cell_filename: str) -> None:
    """Cut every stack above the cell's own frame (IPython, this magic, the event loop).

    Samples taken outside the cell keep their time with an empty stack, as the
    profiler's own gaps do, so the session's total and timeline stay true."""
    table = session.frame_table
    in_cell = [frame.file == cell_filename for frame in table.frames]

    def retarget(copy: FrameTable) -> Tuple["array[int]", bytearray]:
        # a node's stack from the cell's frame on, in the copy; NO_NODE above the cell
        target = array("i", [NO_NODE]) * len(table.node_parent)
        for node, (parent, frame) in enumerate(zip(table.node_parent, table.node_frame)):
            above = target[parent] if parent != NO_NODE else NO_NODE
            if above != NO_NODE or in_cell[frame]:
                target[node] = copy.add_node(above, frame)
        return target, bytearray(len(target))

    session.frame_table = table.mapped(retarget)
    session.start_call_stack = []  # the cell is the root now; nothing to trim


def _from_the_cell(tb: Any, cell_filename: str) -> Any:
    """The traceback from the cell's own frame on, as the cell would have had it run
    without the magic (this module's and the event loop's frames go)."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename != cell_filename:
        start = start.tb_next
    return start if start is not None else tb


def _show_from_the_cell(shell: Any, error: BaseException, cell_filename: str) -> None:
    """Have IPython show the error's traceback from the cell's own frame on, as for a
    cell run without the magic. IPython renders an exception that has a
    ``_render_traceback_`` with it: one is set on the error for that one display."""
    if hasattr(error, "_render_traceback_"):
        return  # the exception renders itself
    tb = _from_the_cell(error.__traceback__, cell_filename)

    def render_traceback() -> List[str]:
        try:
            del error._render_traceback_  # type: ignore[attr-defined]
        except AttributeError:
            pass
        return shell.InteractiveTB.structured_traceback(type(error), error, tb, tb_offset=0)

    try:
        error._render_traceback_ = render_traceback  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass  # an exception that takes no attributes: shown as raised


def iframe_for(report: str, height: int) -> str:
    return (
        f'<iframe srcdoc="{html.escape(report, quote=True)}" width="100%" height="{int(height)}" '
        'frameborder="0" style="border: 1px solid #ddd"></iframe>'
    )


@magics_class
class PyinstrumentMagic(Magics):
    """``%pyinstrument statement`` and ``%%pyinstrument`` cells."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._shell = shell  # the InteractiveShell (Magics.shell may be None by its type)
        self._parser = _MagicParser()

    @no_var_expand
    @line_cell_magic
    def pyinstrument(self, line: str, cell: Optional[str] = None) -> Any:
        # the docstring (shown by %pyinstrument?) is USAGE, set below
        options, code = self._parser.split(line)
        if cell is not None:
            if code:
                raise UsageError("%%pyinstrument: only options go on the first line of the cell")
            code = cell
        if not code.strip():
            # as upstream: nothing happens (a notebook's "Run All" goes on)
            print("pyinstrument: nothing to profile (see %pyinstrument?)", file=sys.stderr)
            return None
        html_renderer, text_renderer = make_renderers(options)
        compiled, cell_filename = self._compile(code)

        # upstream's "Cell [N]" (the cell's In [N]), then what the code starts with
        first_line = next((text.strip() for text in code.splitlines() if text.strip()), "")
        count = self._shell.execution_count
        where = f"Cell [{count}]" if cell is not None else f"Line in cell [{count}]"
        description = f"{where}: {first_line[:80]}"
        session, outcome, error, interrupted = self._run(compiled, options, description)
        keep_only_the_cell(session, cell_filename)
        if interrupted:
            print("pyinstrument: interrupted; the report covers the time until then")
        display(
            {
                "text/html": iframe_for(html_renderer.render(session), options.height),
                "text/plain": text_renderer.render(session),
            },
            raw=True,
        )
        if error is not None:
            _show_from_the_cell(self._shell, error, cell_filename)
            raise error
        if interrupted:
            _interrupt_silently(self._shell)
        return outcome

    pyinstrument.__doc__ = "Profile a statement or a cell with pyinstrument.\n\n" + USAGE

    # -- compiling ------------------------------------------------------------------------

    def _compile(self, code: str) -> Tuple[Any, str]:
        """The code compiled for the user's namespace (top-level await allowed), with the
        last expression's value kept, and its file name (cached for tracebacks)."""
        shell = self._shell
        source = shell.transform_cell(code)
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            raise UsageError(f"%pyinstrument: syntax error in the code: {error}") from None
        tree = shell.transform_ast(tree)
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body[-1]
            tree.body[-1] = ast.copy_location(
                ast.Assign(targets=[ast.Name(id=_RESULT_NAME, ctx=ast.Store())], value=last.value), last
            )
            ast.fix_missing_locations(tree)
        try:
            filename = shell.compile.cache(source, shell.execution_count, raw_code=code)
        except Exception:
            filename = f"<pyinstrument-cell-{shell.execution_count}>"
        flags = shell.compile.flags | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        return compile(tree, filename, "exec", flags=flags, dont_inherit=True), filename

    # -- running --------------------------------------------------------------------------

    def _run(self, compiled: Any, options: Any, description: str) -> Tuple[Session, Any, Optional[BaseException], bool]:
        """Runs the code profiled: (session, last expression's value, exception, interrupted)."""
        namespace = self._shell.user_ns
        namespace.pop(_RESULT_NAME, None)
        profiler = Profiler(interval=options.interval, async_mode=options.async_mode)
        error: Optional[BaseException] = None
        interrupted = False
        if compiled.co_flags & inspect.CO_COROUTINE:
            coroutine = eval(compiled, self._shell.user_global_ns, namespace)  # not run yet
            in_task = options.async_mode != "disabled"  # bound to the cell's task: [await] attributed
            if in_task:
                coroutine = _profiled_in_task(coroutine, profiler, description)
            session, error, interrupted = self._run_coroutine(coroutine, profiler, description, not in_task)
        else:
            profiler.start(target_description=description)
            try:
                exec(compiled, self._shell.user_global_ns, namespace)
            except KeyboardInterrupt:
                interrupted = True
            except BaseException as exc:
                error = exc
            finally:
                session = profiler.stop()
        return session, namespace.pop(_RESULT_NAME, None), error, interrupted

    def _run_coroutine(
        self, coroutine: Any, profiler: Profiler, description: str, start_here: bool
    ) -> Tuple[Session, Optional[BaseException], bool]:
        """Runs the cell's coroutine; start_here: the profiler starts before the loop runs
        it (else the coroutine starts it)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop runs here (terminal IPython): use IPython's, on this thread
        else:
            return _run_in_worker_thread(coroutine, profiler, description, start_here)
        runner = getattr(self._shell, "loop_runner", None) or asyncio.run
        error: Optional[BaseException] = None
        interrupted = False
        if start_here:
            profiler.start(target_description=description)
        try:
            runner(coroutine)
        except (KeyboardInterrupt, asyncio.CancelledError):
            interrupted = True
        except BaseException as exc:
            error = exc
        finally:
            session = _stop(profiler)
        return session, error, interrupted


async def _profiled_in_task(coroutine: Any, profiler: Profiler, description: str) -> Any:
    """The cell's coroutine, with the profiler started inside its task: async_mode then
    attributes the time the cell spends awaiting to its awaits."""
    profiler.start(caller_frame=inspect.currentframe(), target_description=description)
    return await coroutine


class InterruptSilently(Exception):
    """Raised once the report of a cell interrupted with Ctrl-C is shown: it stops a
    notebook's "Run All" as the interrupt would have, without a traceback."""


def _interrupt_silently(shell: Any) -> None:
    """Raises InterruptSilently, with IPython told to show nothing for it (once)."""
    before = (shell.CustomTB, shell.custom_exceptions)

    def show_nothing(shell: Any, etype: Any, value: Any, tb: Any, tb_offset: Any = None) -> None:
        shell.CustomTB, shell.custom_exceptions = before

    shell.set_custom_exc((InterruptSilently,), show_nothing)
    raise InterruptSilently()


def _stop(profiler: Profiler) -> Session:
    if not profiler.is_running:  # the cell's task was cancelled before it started
        profiler.start()
    return profiler.stop()


def _run_in_worker_thread(
    coroutine: Any, profiler: Profiler, description: str, start_here: bool
) -> Tuple[Session, Optional[BaseException], bool]:
    """Runs the coroutine on a new event loop in a new thread, profiling that thread:
    the loop of this thread (Jupyter's kernel) is busy running this very cell."""
    outcome: Dict[str, Any] = {}
    loop_ready = threading.Event()
    finished = threading.Event()  # waited on, not join(): a join cut by Ctrl-C cannot be resumed

    def work() -> None:
        loop = asyncio.new_event_loop()
        outcome["loop"] = loop
        try:
            if start_here:
                profiler.start(target_description=description)
            try:
                task = loop.create_task(coroutine)
                outcome["task"] = task
                loop_ready.set()
                loop.run_until_complete(task)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                outcome["session"] = _stop(profiler)
        except BaseException as exc:  # the profiler could not start
            coroutine.close()
            outcome.setdefault("error", exc)
        finally:
            loop_ready.set()
            loop.close()
            finished.set()

    threading.Thread(target=work, name="pyinstrument cell", daemon=True).start()
    interrupted = False
    while True:
        try:
            finished.wait()
            break
        except KeyboardInterrupt:
            # Ctrl-C reaches this (the main) thread: cancel the cell's task, then
            # wait for the worker to stop its profiler
            interrupted = True
            loop_ready.wait()
            task = outcome.get("task")
            if task is not None:
                try:
                    outcome["loop"].call_soon_threadsafe(task.cancel)
                except RuntimeError:
                    pass  # the loop finished and closed meanwhile
    error = outcome.get("error")
    if "session" not in outcome:
        raise error  # type: ignore[misc]
    if isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)):
        interrupted, error = True, None
    return outcome["session"], error, interrupted


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext pyinstrument``."""
    ipython.register_magics(PyinstrumentMagic)
