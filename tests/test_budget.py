"""Budgets (``--budget FILE``): rules checked against real runs, repeat sets and saved sessions."""

from __future__ import annotations

import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
from helpers import run_pyinstrument, write
from sessions import APP, frame_string, make_session

from pyinstrument import budget
from pyinstrument.repeat import repeat_set

PROGRAM = """
import sys, time

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def parse_rows():
    spin(0.06 * (float(sys.argv[1]) if len(sys.argv) > 1 else 1.0))

def render():
    spin(0.03)

def main():
    parse_rows()
    render()

main()
"""


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    write(tmp_path / "app.py", PROGRAM)
    return tmp_path


def test_a_share_over_its_limit_fails_with_status_3_and_reports_for_ci(app: Path):
    write(
        app / "budget.toml",
        """
        [[rule]]
        match = "parse_rows"
        max_share = 0.30
        [[rule]]
        match = "*/app.py:render"
        max_share = 0.9
        max_seconds = 10
        """,
    )
    result = run_pyinstrument(
        "--budget", "budget.toml", "--budget-report", "budget.xml", "app.py", cwd=app, check=False
    )
    assert result.returncode == 3, result.stderr
    assert "budget budget.toml: 1 of 3 checks failed" in result.stderr
    [failure] = [line for line in result.stderr.splitlines() if line.lstrip().startswith("FAIL")]
    assert "parse_rows max_share 0.3" in failure and "max 30.0%" in failure
    assert "main" in result.stdout  # the report is written as usual
    suite = ElementTree.parse(app / "budget.xml").getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["rule 1: parse_rows max_share 0.3"]
    # within its limits: status 0, and a Markdown summary
    write(app / "loose.toml", '[[rule]]\nmatch = "parse_*"\nmax_share = 0.95\n')
    result = run_pyinstrument(
        "--budget", "loose.toml", "--budget-report", "summary.md", "app.py", cwd=app, check=False
    )
    assert result.returncode == 0, result.stderr
    summary = (app / "summary.md").read_text()
    assert "every check passed" in summary and "| ✅ pass | `parse_* max_share 0.95` |" in summary


def test_growth_against_a_baseline_follows_the_change(app: Path):
    run_pyinstrument("-r", "session", "-o", "before.pyisession", "app.py", cwd=app)
    run_pyinstrument("-r", "session", "-o", "after.pyisession", "app.py", "2", cwd=app)
    write(app / "growth.toml", '[[rule]]\nmatch = "parse_rows"\nmax_growth = 0.25\n')
    args = ["--budget", "growth.toml", "--baseline", "before.pyisession", "--load"]
    slower = run_pyinstrument(*args, "after.pyisession", cwd=app, check=False)
    assert slower.returncode == 3 and "FAIL" in slower.stderr, slower.stderr
    same = run_pyinstrument(*args, "before.pyisession", cwd=app, check=False)
    assert same.returncode == 0 and "growth +0.0%" in same.stderr, same.stderr
    missing = run_pyinstrument("--budget", "growth.toml", "--load", "after.pyisession", cwd=app, check=False)
    assert missing.returncode == 2 and "give --baseline FILE" in missing.stderr


def test_a_repeat_set_fails_only_beyond_its_noise(app: Path):
    write(app / "growth.toml", '[[rule]]\nmatch = "parse_rows"\nmax_growth = 0.25\n')
    run_pyinstrument("--repeat", "6", "-o", "before.pyisession", "app.py", cwd=app)
    result = run_pyinstrument(
        "--repeat", "6", "--budget", "growth.toml", "--baseline", "before.pyisession", "app.py", "2",
        cwd=app, check=False,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "p=" in result.stderr  # decided by the test across runs


def runs_of_parse(seconds):
    """A repeat set whose runs spent these seconds in parse_rows() (and 0.1 s in render())."""
    main = frame_string("main", f"{APP}/demo.py", 30)
    parse = frame_string("parse_rows", f"{APP}/demo.py", 10)
    render = frame_string("render", f"{APP}/demo.py", 20)
    return repeat_set([make_session([([main, parse], t), ([main, render], 0.1)]) for t in seconds])


def test_over_the_limit_within_the_noise_is_not_a_failure():
    rules = budget.parse({"rule": [{"match": "parse_rows", "max_growth": 0.0, "max_seconds": 0.1}]})
    before = runs_of_parse([0.10, 0.09, 0.11, 0.10, 0.12, 0.08])
    after = runs_of_parse([0.11, 0.09, 0.12, 0.10, 0.11, 0.09])  # the same, by chance a little over
    verdicts = {v.rule.limit: v for v in budget.check(rules, after, before)}
    assert verdicts["max_growth"].status == "noise", verdicts
    assert verdicts["max_seconds"].status == "noise"  # median 0.105 s: over, but the lower quartile is not
    assert not budget.failed(verdicts.values())
    clearly = runs_of_parse([0.20, 0.21, 0.19, 0.22, 0.20, 0.21])
    verdicts = {v.rule.limit: v for v in budget.check(rules, clearly, before)}
    assert verdicts["max_growth"].status == verdicts["max_seconds"].status == "fail"


def test_a_pattern_names_a_function_a_qualified_name_or_a_file_and_qualname():
    session = make_session(
        [([frame_string("main", f"{APP}/demo.py", 1), frame_string("Parser.parse", f"{APP}/lib/parser.py", 5)], 0.3),
         ([frame_string("main", f"{APP}/demo.py", 1), frame_string("parse", f"{APP}/demo.py", 9)], 0.1)]
    )  # fmt: skip
    from pyinstrument.merge import merge

    root = merge([session])
    assert budget.branch_times(root, "parse") == [pytest.approx(0.4)]  # both, by function name
    assert budget.branch_times(root, "Parser.parse") == [pytest.approx(0.3)]
    assert budget.branch_times(root, "*/lib/parser.py:*") == [pytest.approx(0.3)]
    assert budget.branch_times(root, "main") == [pytest.approx(0.4)]  # its callees inside it, once
    assert budget.branch_times(root, "nothing_like_it") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no rules"),
        ("[[rule]]\nmax_share = 0.3\n", "rule 1: needs match"),
        ('[[rule]]\nmatch = "f"\n', "rule 1: no limit"),
        ('[[rule]]\nmatch = "f"\nmax_share = 1.5\n', "max_share = 1.5 is out of range"),
        ('[[rule]]\nmatch = "f"\nmax_share = "a lot"\n', "max_share must be a number"),
        ('[[rule]]\nmatch = "f"\nmax_sahre = 0.3\n', "unknown key 'max_sahre'"),
        ('[[rule]\nmatch = "f"', "is not valid TOML"),
        ("[rules]\n", "unknown key 'rules'"),
    ],
)
def test_a_bad_budget_file_gets_one_line_before_anything_runs(app: Path, text: str, message: str):
    (app / "budget.toml").write_text(text)
    result = run_pyinstrument("--budget", "budget.toml", "-c", "open('ran', 'w')", cwd=app, check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (app / "ran").exists()


def test_budget_options_are_checked_together(app: Path):
    for args, message in [
        (["--baseline", "x.pyisession", "app.py"], "give --budget FILE too"),
        (["--budget-report", "r.xml", "app.py"], "give --budget FILE too"),
        (["--budget", "missing.toml", "app.py"], "can't open budget file 'missing.toml': no such file"),
    ]:
        result = run_pyinstrument(*args, cwd=app, check=False, stdin=subprocess.DEVNULL)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    write(app / "b.toml", '[[rule]]\nmatch = "f"\nmax_share = 0.5\n')
    result = run_pyinstrument("--budget", "b.toml", "--budget-report", "r.txt", "app.py", cwd=app, check=False)
    assert result.returncode == 2 and "JUnit XML (FILE.xml) or Markdown (FILE.md)" in result.stderr
