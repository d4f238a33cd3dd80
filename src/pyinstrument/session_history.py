"""The sessions the command line keeps for ``pyinstrument --load-prev ID``.

After a text report, the command line saves the session here and prints its
identifier (the local time it started, ``2024-05-17T14-03-09``), so the same run can be
rendered again with other options or formats without running the program again. The
ten most recent are kept, in the user data directory:

- Linux and other Unix: ``$XDG_DATA_HOME/pyinstrument/reports`` (default
  ``~/.local/share/pyinstrument/reports``);
- macOS: ``~/Library/Application Support/pyinstrument/reports``;
- Windows: ``%LOCALAPPDATA%\\pyinstrument\\reports``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import List

from pyinstrument.session import Session

KEEP = 10
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
    directory = history_directory()
    try:
        names = [p for p in directory.iterdir() if p.suffix == SUFFIX and _IDENTIFIER.fullmatch(p.stem)]
    except OSError:
        return []
    names.sort(key=lambda p: (_modification_time(p), p.stem), reverse=True)
    return [p.stem for p in names]


def save(session: Session) -> str:
    """Keep ``session``, forget all but the ten most recent; returns its identifier.
    Raises OSError when the directory cannot be written."""
    directory = history_directory()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(session.start_time))
    identifier, counter = stamp, 1
    while (directory / (identifier + SUFFIX)).exists():
        counter += 1
        identifier = f"{stamp}-{counter}"
    session.save(directory / (identifier + SUFFIX))
    for old in identifiers()[KEEP:]:
        try:
            (directory / (old + SUFFIX)).unlink()
        except OSError:
            pass  # another run removed it first
    return identifier


def load(identifier: str) -> Session:
    """The kept session ``identifier``. Raises LookupError (naming the ones there are)
    when there is no such session, ValueError when its file is damaged."""
    if not _IDENTIFIER.fullmatch(identifier) or not (history_directory() / (identifier + SUFFIX)).is_file():
        recent = identifiers()
        known = f"the recent ones are {', '.join(recent)}" if recent else "none are kept yet"
        raise LookupError(f"no recent session {identifier!r} ({known})")
    return Session.load(history_directory() / (identifier + SUFFIX))


def _modification_time(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
