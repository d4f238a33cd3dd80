"""The sessions the command line keeps for ``pyinstrument --load-prev ID``.

After a text report, the command line saves the session here and prints its
identifier (the local time it started, ``2024-05-17T14-03-09``), so the same run can be
rendered again with other options or formats without running the program again. The
ten most recent are kept, and any saved in the last 15 minutes (up to 200), in the
user data directory:

- Linux and other Unix: ``$XDG_DATA_HOME/pyinstrument/reports`` (default
  ``~/.local/share/pyinstrument/reports``);
- macOS: ``~/Library/Application Support/pyinstrument/reports``;
- Windows: ``%LOCALAPPDATA%\\pyinstrument\\reports``.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

from pyinstrument.session import Session

KEEP = 10
#: a session saved this recently is kept even beyond the ten most recent ...
GRACE_SECONDS = 15 * 60
#: ... unless there are more than this many
LIMIT = 200
SUFFIX = ".pyisession"
# what save() makes: a timestamp, and a counter when several runs start in one second
_IDENTIFIER = re.compile(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(-\d+)?")


def history_directory() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pyinstrument" / "reports"


def identifiers() -> List[str]:
    """The kept sessions, most recent first."""
    return [identifier for _, identifier, size in _entries(history_directory()) if size > 0]


def _entries(directory: Path) -> List[Tuple[float, str, int]]:
    """(modification time, identifier, size) of the session files, most recent first.
    A size of 0 is a name reserved by a run still saving its session (or killed while
    doing so)."""
    try:
        paths = [p for p in directory.iterdir() if p.suffix == SUFFIX and _IDENTIFIER.fullmatch(p.stem)]
    except OSError:
        return []
    entries = []
    for path in paths:
        status = _status(path)
        if status is not None and stat.S_ISREG(status.st_mode):
            entries.append((status.st_mtime, path.stem, status.st_size))
    entries.sort(reverse=True)
    return entries


def save(session: Session) -> str:
    """Keep ``session`` and return its identifier; forget the sessions beyond the ten
    most recent that are older than ``GRACE_SECONDS``. Raises OSError when the
    directory cannot be written."""
    directory = history_directory()
    directory.mkdir(parents=True, exist_ok=True)
    identifier = _reserve(directory, time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(session.start_time)))
    try:
        session.save(directory / (identifier + SUFFIX))
    except BaseException:
        _remove(directory / (identifier + SUFFIX))
        raise
    _forget_old(directory, keep=identifier)
    return identifier


def _reserve(directory: Path, stamp: str) -> str:
    """Create the session's file, empty, under the first free identifier: runs that
    start in the same second get ``stamp``, ``stamp-2``, ``stamp-3``... and never the
    same one (the file is created exclusively, so only one run can get each name)."""
    counter = 1
    while True:
        identifier = stamp if counter == 1 else f"{stamp}-{counter}"
        try:
            os.close(os.open(directory / (identifier + SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return identifier
        except FileExistsError:
            counter += 1


def _forget_old(directory: Path, keep: str) -> None:
    """Remove sessions beyond the ``KEEP`` most recent, except those saved in the last
    ``GRACE_SECONDS`` (so that runs in parallel, a test suite's, do not remove each
    other's sessions before they are looked at) while there are at most ``LIMIT``."""
    now = time.time()
    position = 0
    for modified, identifier, size in _entries(directory):
        recent = now - modified < GRACE_SECONDS
        if size == 0:
            if not recent:  # a run that died while saving
                _remove(directory / (identifier + SUFFIX))
            continue
        position += 1
        if position <= KEEP or identifier == keep or (recent and position <= LIMIT):
            continue
        _remove(directory / (identifier + SUFFIX))


def load(identifier: str) -> Session:
    """The kept session ``identifier``. Raises LookupError (naming the ones there are)
    when there is no such session, ValueError when its file is damaged."""
    kept = identifiers()
    if identifier not in kept:
        more = f" and {len(kept) - KEEP} older" if len(kept) > KEEP else ""
        known = f"the recent ones are {', '.join(kept[:KEEP])}{more}" if kept else "none are kept yet"
        raise LookupError(f"no recent session {identifier!r} ({known})")
    return Session.load(history_directory() / (identifier + SUFFIX))


def _status(path: Path) -> Optional[os.stat_result]:
    try:
        return path.stat()
    except OSError:
        return None


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass  # another run removed it first
