"""What a run was made with, kept in its session: the interpreter, the machine, the command
line, the working directory's git commit, and the installed distributions.

A profile is compared with others (before and after a change, across machines); these say
whether the two runs are comparable at all. What cannot change within a process (the
interpreter, the distributions, the commit the code was loaded from) is collected once per
process and working directory, so a web middleware profiling each request pays for it once.

Whether the working tree is dirty takes running ``git``, which only the ``pyinstrument``
command does (:func:`look_at_git`), before the program starts: a child process started
inside a program could be reaped by the program's own ``os.wait()``. A profiler started
from code reads the commit from the repository's files, and leaves ``dirty`` unknown.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import subprocess
import sys
from typing import Any, Dict, Optional

#: a session file's key for it (upstream's reader ignores keys it does not know)
KEY = "run_metadata"

_MAX_DEPTH = 8  # what collect() writes is 3 deep
_GIT_TIMEOUT = 2.0  # seconds; a hung or huge repository must not hold up stop()

_process_part: Optional[Dict[str, Any]] = None
_git_by_directory: Dict[str, Optional[Dict[str, Any]]] = {}


def collect() -> Dict[str, Any]:
    """This run's metadata (see the module's docstring)."""
    global _process_part
    if _process_part is None:
        _process_part = _interpreter_and_machine()
        _process_part.update(_distributions())
    result = dict(_process_part)
    result["argv"] = [str(arg) for arg in sys.argv]
    try:
        directory = os.getcwd()
    except OSError:  # the working directory was removed
        directory = None
    if directory is not None:
        if directory not in _git_by_directory:
            _git_by_directory[directory] = _git_from_files(directory)
        git = _git_by_directory[directory]
        if git is not None:
            result["git"] = git
    return result


def look_at_git() -> None:
    """Asks ``git`` for the working directory's commit and whether it is dirty, for the
    sessions of this process to record: for the command line, before the program runs."""
    try:
        directory = os.getcwd()
    except OSError:
        return
    _git_by_directory[directory] = _git_state(directory)


def _interpreter_and_machine() -> Dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        # False on a free-threaded build running without the GIL (3.13t)
        "gil": bool(getattr(sys, "_is_gil_enabled", lambda: True)()),
    }


def _distributions() -> Dict[str, Any]:
    """The installed distributions, name -> version, and a hash of that list (the same
    list gives the same hash, whatever the order they were found in)."""
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover (3.8 and before)
        return {}
    found: Dict[str, str] = {}
    for distribution in metadata.distributions():
        try:
            name = distribution.metadata["Name"]
            version = distribution.version
        except Exception:  # a broken install's metadata: leave it out, not the run
            continue
        if name:
            found.setdefault(str(name), str(version))
    listing = "\n".join(f"{name.lower()}=={found[name]}" for name in sorted(found, key=str.lower))
    return {
        "distributions": dict(sorted(found.items(), key=lambda item: item[0].lower())),
        "distributions_hash": hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest()[:16],
    }


def _git_state(directory: str) -> Optional[Dict[str, Any]]:
    """The commit checked out in ``directory`` and whether its files differ from it; None
    outside a repository, or without git."""

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=directory,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                timeout=_GIT_TIMEOUT,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None

    if not _in_a_repository(directory):
        return None  # no process started for nothing
    commit = git("rev-parse", "--verify", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def _in_a_repository(directory: str) -> bool:
    return _git_dir(directory) is not None


def _git_dir(directory: str) -> Optional[str]:
    """The repository folder of ``directory``'s working tree (``.git``, or where a ``.git``
    file points: a worktree, a submodule); None outside one."""
    path = os.path.abspath(directory)
    while True:
        dot_git = os.path.join(path, ".git")
        if os.path.isdir(dot_git):
            return dot_git
        if os.path.isfile(dot_git):
            try:
                with open(dot_git, encoding="utf-8") as f:
                    pointer = f.read().strip()
            except (OSError, UnicodeDecodeError):
                return None
            if pointer.startswith("gitdir:"):
                return os.path.join(path, pointer[len("gitdir:") :].strip())
            return None
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def _git_from_files(directory: str) -> Optional[Dict[str, Any]]:
    """The commit checked out, read from the repository's files (HEAD, then the branch's
    ref, loose or packed); ``dirty`` unknown. None outside a repository or when unreadable."""
    git_dir = _git_dir(directory)
    if git_dir is None:
        return None
    try:
        with open(os.path.join(git_dir, "HEAD"), encoding="utf-8") as f:
            head = f.read().strip()
        commit: Optional[str] = head
        if head.startswith("ref:"):
            ref = head[len("ref:") :].strip()
            commit = _read_ref(git_dir, ref)
            if commit is None:  # a worktree's branches live in the main repository
                common = _common_dir(git_dir)
                commit = _read_ref(common, ref) if common else None
    except (OSError, UnicodeDecodeError):
        return None
    if not commit or len(commit) not in (40, 64) or any(c not in "0123456789abcdef" for c in commit):
        return None
    return {"commit": commit, "dirty": None}


def _read_ref(git_dir: str, ref: str) -> Optional[str]:
    try:
        with open(os.path.join(git_dir, *ref.split("/")), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        pass
    try:
        with open(os.path.join(git_dir, "packed-refs"), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        pass
    return None


def _common_dir(git_dir: str) -> Optional[str]:
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as f:
            return os.path.normpath(os.path.join(git_dir, f.read().strip()))
    except OSError:
        return None


def summary(metadata: Optional[Dict[str, Any]]) -> str:
    """One short line for a report's header: ``Python 3.12.1 · Linux x86_64 · 2 CPUs · git
    1a2b3c4d (dirty) · 42 distributions #5f3e9a0c``; "" when the session has none."""
    if not isinstance(metadata, dict):
        return ""
    parts = []
    if metadata.get("python"):
        implementation = metadata.get("implementation")
        other = f" ({implementation})" if implementation and implementation != "CPython" else ""
        free = " (free-threaded: no GIL)" if metadata.get("gil") is False else ""
        parts.append(f"Python {metadata['python']}{other}{free}")
    system = str(metadata.get("platform") or "").split("-", 1)[0]
    machine = " ".join(str(part) for part in (system, metadata.get("machine")) if part)
    if machine:
        parts.append(machine)
    if metadata.get("cpu_count"):
        parts.append(f"{metadata['cpu_count']} CPUs")
    git = metadata.get("git")
    if isinstance(git, dict) and git.get("commit"):
        parts.append(f"git {str(git['commit'])[:8]}" + (" (dirty)" if git.get("dirty") else ""))
    distributions = metadata.get("distributions")
    if isinstance(distributions, dict):
        parts.append(f"{len(distributions)} distributions #{str(metadata.get('distributions_hash', ''))[:8]}")
    return " · ".join(parts)


def read(value: Any) -> Optional[Dict[str, Any]]:
    """A session file's metadata, checked: a mapping of names to JSON values that can be
    written back (finite numbers, a few levels deep). Raises ValueError when it is not."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"'{KEY}' is not a mapping of names")
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth >= _MAX_DEPTH:
                raise ValueError(f"'{KEY}' nests too deeply")
            if isinstance(item, dict):
                if not all(isinstance(key, str) for key in item):
                    raise ValueError(f"'{KEY}' is not a mapping of names")
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"'{KEY}' holds a number that is not finite")
        elif item is not None and not isinstance(item, (str, int, float)):
            raise ValueError(f"'{KEY}' holds something other than JSON values")
    return value
