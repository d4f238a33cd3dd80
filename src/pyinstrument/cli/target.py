"""Running the program the command line names (a script, ``-m module`` or ``-c``) as plain
``python`` would, under the profiler."""

from __future__ import annotations

import builtins
import importlib
import importlib.machinery
import importlib.util
import io
import linecache
import os
import re
import sys
import threading
import types
import zipfile
from typing import Any, Dict, List, Optional, Tuple

from pyinstrument.cli.arguments import CommandLine, TargetNotFound, UsageError

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


def set_path0(entry: str) -> None:
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


class _ModuleNotFound(TargetNotFound):
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
            raise TargetNotFound(f"can't open file {path!r}: no such file or directory{hint}")
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
        set_path0(os.path.dirname(os.path.realpath(path)))
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
            raise TargetNotFound(f"script {name!r} not found on PATH")
        return found

    def _prepare_stdin(self) -> None:
        sys.argv = ["-"] + self.args
        set_path0("")
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
        set_path0(entry)
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
        set_path0("")
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
        set_path0(os.getcwd())

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
        raise ProfilerFailed(f"could not start the profiler: {exc}") from exc
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


def report_exception(exc: BaseException) -> None:
    """Print the program's uncaught exception the way python would (through
    sys.excepthook, which the program may have replaced)."""
    tb = _without_our_frames(exc.__traceback__)
    exc.__traceback__ = tb
    sys.excepthook(type(exc), exc, tb)


def run_profiled(cli: CommandLine, target: Target) -> Tuple[Any, Optional[BaseException]]:
    """Run the program under the profiler; returns (session, what ended the program:
    None, or the SystemExit / KeyboardInterrupt / other exception)."""
    try:
        from pyinstrument import Profiler
    except ImportError as exc:
        raise EngineMissing(f"the profiler is not available: {exc}") from None
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
    from pyinstrument import run_metadata

    run_metadata.look_at_git()  # before the program runs: it starts a git process

    outcome: Optional[BaseException] = None
    try:
        _exec_target(profiler, target, description, options.all_threads)
    except (_ModuleNotFound, ProfilerFailed):
        if profiler.is_running:
            profiler.stop()
        raise
    except BaseException as exc:  # noqa: B902 -- whatever ends the program, report first
        outcome = exc
    finally:
        session = profiler.stop() if profiler.is_running else profiler.last_session
    return session, outcome


class EngineMissing(Exception):
    """The profiler could not be imported (the C engine is not built or installed)."""


class ProfilerFailed(Exception):
    """The profiler refused to start."""
