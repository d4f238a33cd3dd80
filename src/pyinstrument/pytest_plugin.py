"""The pytest plugin (entry point ``pytest11``): off unless asked.

- ``pytest --pyinstrument[=DIR]`` profiles each test's call (not its fixtures) and writes,
  per test, a session file and an HTML report into DIR (default ``pyinstrument-tests``),
  and an index of the tests, slowest first (``index.html``). Under pytest-xdist each worker
  writes its own tests' files and the controller writes the index.
- ``@pytest.mark.pyinstrument(max_seconds=..., budget=...)`` profiles that test even without
  the option and fails it when its profile breaks the limits: ``max_seconds`` for the
  whole call, ``budget`` as rules of a budget file (:mod:`pyinstrument.budget`), either
  ``{"parse_rows": {"max_share": 0.3}}`` or ``[{"match": "parse_rows", "max_share": 0.3}]``.
  The failure names the branch over its limit.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

import pytest

DEFAULT_DIR = "pyinstrument-tests"
_SIDECAR = ".pyinstrument-test.json"  # per test: what the index lists
_RUN_KEY = "pyinstrument_run"
_PLUGIN = pytest.StashKey["_Plugin"]()
_LIMITS = pytest.StashKey["tuple[Optional[float], List[Any]]"]()  # a marked test's (max_seconds, rules)


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("pyinstrument", "profiling tests with pyinstrument")
    group.addoption(
        "--pyinstrument",
        dest="pyinstrument_dir",
        nargs="?",
        const=DEFAULT_DIR,
        default=None,
        metavar="DIR",
        help=f"profile each test; write a session and an HTML report per test and an index into DIR "
        f"(default: {DEFAULT_DIR}; write --pyinstrument=DIR when a path follows)",
    )
    group.addoption(
        "--pyinstrument-interval",
        dest="pyinstrument_interval",
        type=float,
        default=0.001,
        metavar="SECONDS",
        help="the sampling interval of the test profiles (default: 0.001)",
    )


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers",
        "pyinstrument(max_seconds=None, budget=None): profile this test and fail it when its profile breaks "
        "these limits (budget: {match: {max_share|max_seconds: limit}} or a list of budget rules)",
    )
    directory = config.getoption("pyinstrument_dir")
    if directory is not None:
        directory = os.path.abspath(directory)
        os.makedirs(directory, exist_ok=True)
    workerinput = getattr(config, "workerinput", None)
    run = workerinput.get(_RUN_KEY) if workerinput else None
    config.stash[_PLUGIN] = _Plugin(directory, config.getoption("pyinstrument_interval"), run or uuid.uuid4().hex)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: each worker tags its files with the controller's run, for its index."""
    node.workerinput[_RUN_KEY] = node.config.stash[_PLUGIN].run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: Any) -> Iterator[None]:
    plugin = item.config.stash[_PLUGIN]
    limits = item.stash.get(_LIMITS, None)
    if plugin.directory is None and limits is None:
        return (yield)
    from pyinstrument import Profiler

    profiler = Profiler(interval=plugin.interval, async_mode="disabled")
    profiler.start()
    started = time.perf_counter()
    try:
        result = yield
    finally:
        elapsed = time.perf_counter() - started
        session = profiler.stop()
        session.target_description = f"Test: {item.nodeid}"
        if plugin.directory is not None:
            plugin.write(item.nodeid, session, elapsed)
    if limits is not None:
        problems = _check_marker(limits, session, elapsed)
        if problems:
            pytest.fail("pyinstrument: " + "; ".join(problems), pytrace=False)
    return result


def pytest_collection_modifyitems(items: List[Any]) -> None:
    """A marker's limits are checked as the tests are collected: a mistake stops the run
    with one line, before any test runs."""
    for item in items:
        marker = item.get_closest_marker("pyinstrument")
        if marker is not None:
            item.stash[_LIMITS] = _read_marker(marker, item.nodeid)


def _read_marker(marker: Any, nodeid: str) -> "tuple[Optional[float], List[Any]]":
    from pyinstrument import budget

    where = f"{nodeid}: @pytest.mark.pyinstrument"
    unknown = sorted(set(marker.kwargs) - {"max_seconds", "budget"})
    if marker.args or unknown:
        raise pytest.UsageError(f"{where} takes max_seconds= and budget=, not {unknown or list(marker.args)}")
    max_seconds = marker.kwargs.get("max_seconds")
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))):
        raise pytest.UsageError(f"{where}: max_seconds must be a number of seconds, got {max_seconds!r}")
    given = marker.kwargs.get("budget") or []
    if isinstance(given, dict):
        tables = [{"match": match, **limits} if isinstance(limits, dict) else limits for match, limits in given.items()]
    else:
        tables = list(given)
    rules = []
    if tables:
        try:
            rules = budget.parse({"rule": tables}, f"{where} budget")
        except budget.BudgetError as exc:
            raise pytest.UsageError(str(exc)) from None
        if budget.needs_baseline(rules):
            raise pytest.UsageError(f"{where} budget: max_growth compares with a baseline, which a test has not")
    return max_seconds, rules


def _check_marker(limits: "tuple[Optional[float], List[Any]]", session: Any, elapsed: float) -> List[str]:
    from pyinstrument import budget

    max_seconds, rules = limits
    problems = []
    if max_seconds is not None and elapsed > max_seconds:
        problems.append(f"the test took {elapsed:.3f}s, max {max_seconds:g}s")
    if rules:
        for verdict in budget.check(rules, session):
            if verdict.status == "fail":
                problems.append(f"{verdict.rule.description}: {verdict.measured}")
    return problems


class _Plugin:
    def __init__(self, directory: Optional[str], interval: float, run: str) -> None:
        self.directory, self.interval, self.run = directory, interval, run

    def write(self, nodeid: str, session: Any, elapsed: float) -> None:
        from pyinstrument._files import write_report_file
        from pyinstrument.renderers.html import HTMLRenderer

        assert self.directory is not None
        stem = os.path.join(self.directory, _file_stem(nodeid))
        session.save(stem + ".pyisession")
        write_report_file(stem + ".html", HTMLRenderer().render(session).encode("utf-8"))
        sidecar = {"run": self.run, "nodeid": nodeid, "seconds": elapsed, "stem": os.path.basename(stem)}
        write_report_file(stem + _SIDECAR, json.dumps(sidecar).encode("utf-8"))

    def entries(self) -> List[Dict[str, Any]]:
        """This run's tests (not an earlier run's left in the directory), slowest first."""
        assert self.directory is not None
        found = []
        for name in os.listdir(self.directory):
            if not name.endswith(_SIDECAR):
                continue
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8") as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(entry, dict) and entry.get("run") == self.run:
                found.append(entry)
        found.sort(key=lambda entry: (-float(entry["seconds"]), entry["nodeid"]))
        return found

    def write_index(self) -> Optional[str]:
        from pyinstrument._files import write_report_file

        assert self.directory is not None
        entries = self.entries()
        rows = "\n".join(
            f'<tr><td class="t">{entry["seconds"]:.3f}s</td>'
            f'<td><a href="{html.escape(entry["stem"])}.html">{html.escape(entry["nodeid"])}</a></td>'
            f'<td><a href="{html.escape(entry["stem"])}.pyisession">session</a></td></tr>'
            for entry in entries
        )
        page = (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            "<title>pyinstrument: tests, slowest first</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em}td{padding:2px 12px}.t{text-align:right;"
            "font-variant-numeric:tabular-nums}</style></head><body>"
            f"<h1>{len(entries)} tests, slowest first</h1><table>\n{rows}\n</table></body></html>\n"
        )
        path = os.path.join(self.directory, "index.html")
        write_report_file(path, page.encode("utf-8"))
        return path


def _file_stem(nodeid: str) -> str:
    """A file name for a test: its id made safe, shortened, and kept unique by a hash."""
    digest = hashlib.sha1(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("._")[:100]
    return f"{safe}-{digest}"


def pytest_sessionfinish(session: Any) -> None:
    config = session.config
    plugin = config.stash[_PLUGIN]
    if plugin.directory is None or getattr(config, "workerinput", None):
        return  # an xdist worker: the controller writes the index
    plugin.write_index()


def pytest_terminal_summary(terminalreporter: Any, config: Any) -> None:
    plugin = config.stash[_PLUGIN]
    if plugin.directory is None:
        return
    entries = plugin.entries()
    terminalreporter.write_sep("-", "pyinstrument")
    terminalreporter.write_line(f"{len(entries)} test profiles in {plugin.directory} (index.html: slowest first)")
    for entry in entries[:5]:
        terminalreporter.write_line(f"  {entry['seconds']:8.3f}s  {entry['nodeid']}")
