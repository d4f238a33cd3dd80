"""Runs upstream pyinstrument's own test suite against the pyinstrument installed in this
interpreter (ours): `python tests/upstream/run.py` with a venv's python (tools/venv.sh),
or `tools/upstream-suite.sh VENV_PYTHON`; `make test` does it on every interpreter.

The suite comes from upstream's sdist on PyPI (VERSION below, checked against SHA256),
downloaded once into .cache/upstream, which links to a directory outside the clone
($PYINSTRUMENT_UPSTREAM_CACHE, else ~/.cache/pyinstrument-in-c/upstream) so that fresh
clones reuse it. Its test/ folder is copied into a temporary directory (the cache is never
changed) and pytest runs there, where `import pyinstrument` finds the installed package,
not upstream's source (which is not copied). The tests listed in tests/upstream/excluded.txt
are not run (deselected; a file or folder there is not even collected). Upstream's
IPython magic tests run in a second pytest process, as upstream's CI runs them
(`--only-ipython-magic`).

Options: --not-yet-passing runs only the "not yet passing" exclusions (to see which pass
now); other arguments go to both pytest runs (e.g. -x, -k NAME, -v).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import List, Tuple

VERSION = "5.1.3"
SDIST = f"pyinstrument-{VERSION}.tar.gz"
SHA256 = "93dc5576fa90bb267c46d864712329e8e057f51a6b15d0b4f917558d82066ba7"

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
EXCLUDED = HERE / "excluded.txt"
SECTIONS = ("[permanent]", "[not yet passing]")


def cache_dir() -> Path:
    link = TOP / ".cache" / "upstream"
    if not link.exists():
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        default = os.path.join(base, "pyinstrument-in-c", "upstream")
        shared = Path(os.environ.get("PYINSTRUMENT_UPSTREAM_CACHE") or default)
        try:
            shared.mkdir(parents=True, exist_ok=True)
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():  # dangling
                link.unlink()
            link.symlink_to(shared)
        except OSError:
            link.mkdir(parents=True, exist_ok=True)
    return link


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sdist() -> Path:
    cache = cache_dir()
    path = cache / SDIST
    if not path.exists():
        print(f"=== downloading upstream pyinstrument {VERSION}'s sdist into .cache/upstream", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                 f"pyinstrument=={VERSION}", "-d", tmp],
                check=True,
                stdout=sys.stderr,
            )  # fmt: skip
            got = Path(tmp) / SDIST
            if sha256(got) != SHA256:
                sys.exit(f"upstream-suite: {SDIST} from PyPI has sha256 {sha256(got)}, expected {SHA256}")
            os.replace(got, path)
    if sha256(path) != SHA256:
        sys.exit(f"upstream-suite: {path} has sha256 {sha256(path)}, expected {SHA256}; delete it to fetch again")
    return path


def exclusions() -> Tuple[List[str], List[str]]:
    """The permanent and not-yet-passing entries of excluded.txt (node ids, files, folders)."""
    found: dict = {s: [] for s in SECTIONS}
    section = None
    for n, raw in enumerate(EXCLUDED.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line in SECTIONS:
            section = line
            continue
        entry, sep, reason = line.partition(" # ")
        if section is None or not sep or not reason.strip():
            sys.exit(f"{EXCLUDED}:{n}: expected `NODE_ID  # reason` under {' or '.join(SECTIONS)}")
        found[section].append(entry.strip())
    return found[SECTIONS[0]], found[SECTIONS[1]]


def main(argv: List[str]) -> int:
    only_not_yet = "--not-yet-passing" in argv
    extra = [a for a in argv if a != "--not-yet-passing"]
    permanent, not_yet = exclusions()
    archive = sdist()
    with tempfile.TemporaryDirectory(prefix="pyinstrument-upstream-") as tmp:
        root = Path(tmp)
        prefix = f"pyinstrument-{VERSION}/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix + "test/") and (m.isfile() or m.isdir())]
            for m in members:
                m.name = m.name[len(prefix) :]
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(root, members=members, **safe)
        # upstream's setup.cfg has only `testpaths = test` for pytest; this file also fixes
        # the rootdir (node ids are test/...), so no configuration from above applies
        (root / "pytest.ini").write_text("[pytest]\ntestpaths = test\nasyncio_default_fixture_loop_scope = function\n")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        # as in an activated venv (upstream's CI runs in one): its `pyinstrument` command first
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")

        where = subprocess.run(
            [sys.executable, "-c", "import pyinstrument; print(pyinstrument.__file__)"],
            cwd=root, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        if Path(where).resolve().is_relative_to(root.resolve()) or Path(where).resolve().is_relative_to(TOP / "src"):
            sys.exit(f"upstream-suite: pyinstrument imports from {where}, not from the installed package")

        args: List[str] = []
        if only_not_yet:
            for entry in permanent:
                args.append(("--ignore=" if "::" not in entry else "--deselect=") + entry)
            args += ["--continue-on-collection-errors"] + not_yet  # run just these
        else:
            for entry in permanent + not_yet:
                args.append(("--ignore=" if "::" not in entry else "--deselect=") + entry)
        print(
            f"=== upstream pyinstrument {VERSION}'s test suite against {where}: "
            f"{len(permanent)} permanent and {len(not_yet)} not-yet-passing exclusions (tests/upstream/excluded.txt)",
            file=sys.stderr,
        )
        base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"] + args + extra
        if only_not_yet and not not_yet:
            return 0
        failed = 0
        for run in ([], ["--only-ipython-magic"]):
            status = subprocess.run(base + run, cwd=root, env=env).returncode
            # 5: nothing collected (or all deselected) -- not a failure
            if status not in (0, 5):
                failed = status
        return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
