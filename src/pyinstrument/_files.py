"""Writing a report or session to a path the user named.

A user's ``-o`` can name anything: a new file, their existing report, a symbolic link,
a hard-linked file, a FIFO another program reads, ``/dev/stdout``. Each must get the
report the way ``open(path, "w")`` would deliver it, never be replaced by a new file.

Where it cannot change what the name stands for (a regular file with one name that we
own, in a folder we may write), the report goes to a temporary file beside it that is
then renamed over it: a failure (a full disk, an interrupted run) leaves the old
content in place. Everything else is written in place.
"""

from __future__ import annotations

import os
import secrets
import stat
from typing import BinaryIO, Optional, Sequence

__all__ = ["write_report_file"]


def write_report_file(path: "str | os.PathLike[str]", data: "bytes | Sequence[bytes]") -> None:
    """Write ``data`` (bytes, or pieces of bytes one after another) to ``path``. A
    symbolic link's target is written and the link stays a link; an existing file keeps
    its mode, owner and other names (hard links); a FIFO or device gets the bytes
    written into it. Raises OSError."""
    real = _resolve_for_rename(path)
    if real is None:
        # /dev/stdout and the like: after what the program wrote there, as `>>` would
        _write_in_place(path, data, os.O_APPEND)
        return
    try:
        status: Optional[os.stat_result] = os.stat(path)
    except FileNotFoundError:
        status = None  # a new file (or a dangling link's future target)
    if status is None or (
        stat.S_ISREG(status.st_mode)
        and status.st_nlink == 1
        and _is_same_file(real, status)
        and _may_replace(real, status)
    ):
        try:
            _replace(real, data, keep=status)
            return
        except _CannotKeepOwner:
            pass
    _write_in_place(path, data, os.O_TRUNC)


_KERNEL_DIRECTORIES = ("/dev/", "/proc/")


def _resolve_for_rename(path: "str | os.PathLike[str]") -> Optional[str]:
    """The path a rename must replace to change the file ``path`` names, following
    symbolic links; None when the way goes through /dev or /proc, whose links
    (/dev/stdout, /proc/self/fd/N) stand for open files: replacing the file a
    redirected standard output writes to would lose what the program printed."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links in a row
        current = os.path.join(os.path.realpath(os.path.dirname(current)), os.path.basename(current))
        if current.startswith(_KERNEL_DIRECTORIES):
            return None
        if not os.path.islink(current):
            return current
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    return None


class _CannotKeepOwner(Exception):
    pass


def _is_same_file(path: str, status: os.stat_result) -> bool:
    # realpath cannot follow every link the kernel follows (/proc/self/fd/N)
    try:
        real_status = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (real_status.st_dev, real_status.st_ino) == (status.st_dev, status.st_ino)


def _may_replace(path: str, status: os.stat_result) -> bool:
    """True when a new file renamed over ``path`` can look like the old one, and the
    user could have written the old one anyway (a read-only file stays refused)."""
    effective = os.access in os.supports_effective_ids
    if not os.access(path, os.W_OK, effective_ids=effective):
        return False
    if not os.access(os.path.dirname(path), os.W_OK | os.X_OK, effective_ids=effective):
        return False
    return status.st_uid == os.geteuid() or os.geteuid() == 0


def _replace(path: str, data: "bytes | Sequence[bytes]", keep: Optional[os.stat_result]) -> None:
    """Write a temporary file beside ``path`` and rename it over ``path``, giving it
    ``keep``'s mode and owner. Raises _CannotKeepOwner (having changed nothing)
    when the owner cannot be kept."""
    # a short name of its own, so a long target name cannot make it too long
    temporary = os.path.join(os.path.dirname(path), f".pyinstrument-{secrets.token_hex(6)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        # about the file the caller named, not our temporary one
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
    try:
        with os.fdopen(descriptor, "wb") as f:
            if keep is not None:
                _copy_owner_and_mode(f.fileno(), keep)
            _write_all(f, data)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _copy_owner_and_mode(descriptor: int, keep: os.stat_result) -> None:
    current = os.fstat(descriptor)
    if (current.st_uid, current.st_gid) != (keep.st_uid, keep.st_gid):
        try:
            os.fchown(descriptor, keep.st_uid, keep.st_gid)
        except PermissionError:
            raise _CannotKeepOwner() from None
    # after fchown, which clears the set-user-ID and set-group-ID bits
    os.fchmod(descriptor, stat.S_IMODE(keep.st_mode))


def _write_in_place(path: "str | os.PathLike[str]", data: "bytes | Sequence[bytes]", mode_flag: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | mode_flag, 0o666)
    with os.fdopen(descriptor, "wb") as f:
        _write_all(f, data)


def _write_all(f: BinaryIO, data: "bytes | Sequence[bytes]") -> None:
    for chunk in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
        f.write(chunk)
