"""Writing reports and sessions to the path a user names (``-o``, ``Session.save``):
what is at that path (a link, a FIFO, a hard-linked or read-only file, a file in a
folder we may not write) gets the report written into it and stays what it was.

Everything here happens in tmp_path: no test writes to a real device file.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from sessions import simple_session
from helpers import run_pyinstrument, write

from pyinstrument import _files
from pyinstrument._files import write_report_file
from pyinstrument.session import Session

running_as_root = hasattr(os, "geteuid") and os.geteuid() == 0

SCRIPT = """
    import time
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass
"""


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".pyinstrument-"))


def test_a_new_file_gets_the_usual_mode(tmp_path):
    mask = os.umask(0o022)
    try:
        write_report_file(tmp_path / "new.txt", b"report")
    finally:
        os.umask(mask)
    assert (tmp_path / "new.txt").read_bytes() == b"report"
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
    assert leftovers(tmp_path) == []


def test_a_symlink_s_target_is_written_and_the_link_stays(tmp_path):
    (tmp_path / "reports").mkdir()
    target = tmp_path / "reports" / "latest.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write(tmp_path / "s.py", SCRIPT)

    result = run_pyinstrument("-o", "link.txt", "s.py", cwd=tmp_path, check=False)

    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert "Program: s.py" in target.read_text(encoding="utf-8")
    assert leftovers(tmp_path) == leftovers(tmp_path / "reports") == []


def test_session_save_through_a_symlink(tmp_path):
    target = tmp_path / "real.pyisession"
    target.write_text("old")
    link = tmp_path / "link.pyisession"
    link.symlink_to(target.name)  # relative, as links often are
    session = simple_session()
    session.save(link)
    assert link.is_symlink()
    assert Session.load(target).to_json() == session.to_json()


def test_a_fifo_s_reader_gets_the_report(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []

    def read() -> None:
        with open(fifo, "rb") as f:
            received.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    write(tmp_path / "s.py", SCRIPT)
    try:
        result = run_pyinstrument("-o", "fifo", "s.py", cwd=tmp_path, check=False)
    finally:
        reader.join(timeout=60)
        if reader.is_alive():  # the report never came: let the reader go
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            reader.join(timeout=10)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received and b"Program: s.py" in received[0]


def test_both_names_of_a_hard_linked_file_see_the_report(tmp_path):
    first = tmp_path / "first.txt"
    first.write_text("old")
    second = tmp_path / "second.txt"
    os.link(first, second)
    write(tmp_path / "s.py", SCRIPT)

    result = run_pyinstrument("-o", "first.txt", "s.py", cwd=tmp_path, check=False)

    assert result.returncode == 0, result.stderr
    assert os.path.samefile(first, second)
    assert "Program: s.py" in second.read_text(encoding="utf-8")


def test_an_existing_file_keeps_its_mode(tmp_path):
    report = tmp_path / "report.txt"
    report.write_text("old")
    report.chmod(0o640)
    write_report_file(report, b"new")
    assert report.read_bytes() == b"new"
    assert stat.S_IMODE(report.stat().st_mode) == 0o640


@pytest.mark.skipif(not running_as_root, reason="only root can give a file to another user")
def test_an_existing_file_keeps_its_owner(tmp_path):
    report = tmp_path / "report.txt"
    report.write_text("old")
    os.chown(report, 65534, 65534)
    write_report_file(report, b"new")
    assert report.read_bytes() == b"new"
    assert (report.stat().st_uid, report.stat().st_gid) == (65534, 65534)


def test_a_failed_write_keeps_the_old_report(tmp_path, monkeypatch):
    report = tmp_path / "report.txt"
    report.write_text("old")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_files.os, "replace", full_disk)
    with pytest.raises(OSError):
        write_report_file(report, b"new")
    assert report.read_text() == "old"
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(running_as_root, reason="root may write into any folder")
def test_a_writable_file_in_a_folder_we_may_not_write(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    report = folder / "report.txt"
    report.write_text("old")
    folder.chmod(0o555)
    try:
        write_report_file(report, b"new")
        assert report.read_bytes() == b"new"
    finally:
        folder.chmod(0o755)


def test_a_folder_that_is_not_writable_gets_the_file_written_in_place(tmp_path, monkeypatch):
    """The decision itself, also when root (whom permissions do not stop) runs the tests:
    the folder reported as not writable, the file is written where it is."""
    report = tmp_path / "report.txt"
    report.write_text("old")
    inode = report.stat().st_ino
    real_access = os.access

    def folder_not_writable(path, mode, **kwargs):
        if os.path.isdir(path) and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(_files.os, "access", folder_not_writable)
    write_report_file(report, b"new")
    assert report.read_bytes() == b"new"
    assert report.stat().st_ino == inode  # the same file, not a new one renamed over it


@pytest.mark.skipif(running_as_root, reason="root may write read-only files")
def test_a_read_only_file_stays_refused(tmp_path):
    report = tmp_path / "report.txt"
    report.write_text("old")
    report.chmod(0o444)
    with pytest.raises(PermissionError):
        write_report_file(report, b"new")
    assert report.read_text() == "old"


def test_output_to_a_directory_is_one_clear_error(tmp_path):
    (tmp_path / "out").mkdir()
    write(tmp_path / "s.py", SCRIPT)
    result = run_pyinstrument("-o", "out", "s.py", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr == f"pyinstrument: error: cannot write {str(tmp_path / 'out')!r}: it is a directory\n"
    assert list((tmp_path / "out").iterdir()) == []
