"""The pytest plugin: ``pytest --pyinstrument[=DIR]`` and ``@pytest.mark.pyinstrument``,
run with pytester on a small suite in a new process (as a user's pytest loads it: by its
entry point)."""

from __future__ import annotations

import html.parser
from pathlib import Path

import pytest

from pyinstrument.session import Session

pytest_plugins = ["pytester"]

SUITE = """
import time
import pytest

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def parse_rows():
    spin(0.06)

def render():
    spin(0.02)

def test_slow():
    parse_rows()
    render()

def test_quick():
    spin(0.01)

@pytest.mark.parametrize("n", [1, 2])
def test_odd_id(n):
    spin(0.005 * n)
"""


class Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])


def index_links(directory: Path) -> list:
    parser = Links()
    parser.feed((directory / "index.html").read_text())
    return [link for link in parser.links if link.endswith(".html")]


def test_every_test_gets_a_session_a_report_and_a_place_in_the_index(pytester: pytest.Pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--pyinstrument=profiles", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    directory = pytester.path / "profiles"
    sessions = sorted(directory.glob("*.pyisession"))
    assert len(sessions) == 4
    links = index_links(directory)
    assert len(links) == 4 and all((directory / link).exists() for link in links)
    assert "test_slow" in links[0]  # slowest first
    slow = Session.load(next(path for path in sessions if "test_slow" in path.name))
    assert slow.target_description == "Test: test_suite.py::test_slow"
    functions = {frame.function for stack, _ in slow.frame_records for frame in [*map(FrameName, stack)]}
    assert {"test_slow", "parse_rows", "render"} <= functions
    result.stdout.fnmatch_lines(["*pyinstrument*", "4 test profiles in *profiles*", "*test_suite.py::test_slow"])


class FrameName(str):
    @property
    def function(self) -> str:
        return self.split("\x00")[0]


def test_without_the_option_nothing_is_profiled_or_written(pytester: pytest.Pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert not list(pytester.path.rglob("*.pyisession")) and "test profiles" not in result.stdout.str()


def test_a_marked_test_over_its_budget_fails_naming_the_branch(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_marked=SUITE
        + """
@pytest.mark.pyinstrument(budget={"parse_rows": {"max_share": 0.3}})
def test_over_budget():
    parse_rows()
    render()

@pytest.mark.pyinstrument(budget=[{"match": "render", "max_share": 0.9}], max_seconds=60)
def test_within_budget():
    parse_rows()
    render()

@pytest.mark.pyinstrument(max_seconds=0.001)
def test_too_slow():
    spin(0.05)
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "over_budget or within_budget or too_slow")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_over_budget _*",
            "pyinstrument: parse_rows max_share 0.3: share *%, max 30.0%",
            "*_ test_too_slow _*",
            "pyinstrument: the test took *s, max 0.001s",
        ]
    )


def test_a_bad_marker_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.pyinstrument(budget={"f": {"max_sahre": 0.3}})
        def test_it():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *test_it: @pytest.mark.pyinstrument budget: rule 1: unknown key 'max_sahre'*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_under_xdist_each_worker_writes_its_tests_and_one_index_lists_them_all(pytester: pytest.Pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "--pyinstrument=profiles", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    directory = pytester.path / "profiles"
    assert len(list(directory.glob("*.pyisession"))) == 4
    assert len(index_links(directory)) == 4
    # a second run replaces the index: it lists that run's tests, not the earlier ones too
    pytester.makepyfile(test_suite="def test_only():\n    pass\n")
    pytester.runpytest_subprocess("-n", "2", "--pyinstrument=profiles", "-p", "no:cacheprovider")
    assert [link.split("-")[0] for link in index_links(directory)] == ["test_suite.py_test_only"]
